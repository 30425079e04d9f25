"""Accuracy of dic_sbi.simulate against the reference integrator, as a function of dt (issue 2).

Uses the stored reference set (``tests/reference_data/reference_cells.json``: scipy LSODA at rtol = atol = 1e-8,
both models, every firing class) and prints, per model and dt, the number of cells meeting the criteria of the
accuracy test (same class; mean ISI, burst period and intra-burst ISI within 1 %; same spikes per burst) and the
largest relative errors. The default dt of each model is the largest one that meets them on every cell.

    python benchmarks/accuracy.py [--dts 0.0125,0.025,0.05,0.1]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import dic_sbi
from dic_sbi.spiketrains import spike_train_features

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "reference_data" / "reference_cells.json"


def errors(fast: np.ndarray, ref: np.ndarray, t_start: float, t_stop: float) -> dict[str, float]:
    a = spike_train_features(fast, t_start=t_start, t_stop=t_stop)
    b = spike_train_features(ref, t_start=t_start, t_stop=t_stop)
    out = {"class": float(a.firing_class != b.firing_class)}
    if a.firing_class != b.firing_class:
        return out
    if b.firing_class == "spiking":
        out["mean_isi"] = abs(a.mean_isi / b.mean_isi - 1)
    elif b.firing_class == "bursting":
        out["burst_period"] = abs(a.burst_period / b.burst_period - 1)
        out["intra_burst_isi"] = abs(b.intra_burst_frequency / a.intra_burst_frequency - 1)
        out["spikes_per_burst"] = float(a.spikes_per_burst != b.spikes_per_burst)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dts", default="0.0125,0.025,0.05,0.1")
    args = ap.parse_args()
    cells = json.loads(REFERENCE.read_text())["cells"]
    print("| model | dt (ms) | cells passing | worst mean ISI | worst burst period | worst intra-burst ISI | class / spikes-per-burst mismatches |")
    print("|---|---|---|---|---|---|---|")
    for model in ("stg", "da"):
        sel = [c for c in cells if c["model"] == model]
        g = np.array([c["conductances"] for c in sel])
        for dt in (float(x) for x in args.dts.split(",")):
            res = dic_sbi.simulate(model, g, dt=dt, progress=False)
            errs = [errors(res.spike_times(i), np.array(c["spike_times"]), c["t_start"], c["t_stop"])
                    for i, c in enumerate(sel)]  # fmt: skip
            ok = sum(
                e["class"] == 0 and e.get("spikes_per_burst", 0) == 0
                and all(e.get(k, 0) <= 0.01 for k in ("mean_isi", "burst_period", "intra_burst_isi"))
                for e in errs
            )  # fmt: skip
            worst = {k: max((e.get(k, 0.0) for e in errs), default=0.0) for k in ("mean_isi", "burst_period", "intra_burst_isi")}
            mism = int(sum(e["class"] + e.get("spikes_per_burst", 0) for e in errs))
            print(f"| {model} | {dt:g} | {ok}/{len(sel)} | {100 * worst['mean_isi']:.2f} % | "
                  f"{100 * worst['burst_period']:.2f} % | {100 * worst['intra_burst_isi']:.2f} % | {mism} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
