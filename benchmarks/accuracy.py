"""Accuracy of dic_sbi.simulate against the reference integrator, as a function of the step settings (issue 2).

Uses the stored reference set (``tests/reference_data/reference_cells.json``: scipy LSODA at rtol = atol = 1e-8,
both models, every firing class, cells of the default conductance box and of degenerate populations) and prints,
per model and setting, the number of cells meeting the criteria of the accuracy test (same class; mean ISI,
burst period and intra-burst ISI within 1 %; same spikes per burst) and the largest relative errors. A setting is
``dt:fine_above:fine_substeps:fine_min_slope[:table_step]`` (ms, mV, count, mV/ms, mV): a step that starts above
``fine_above`` while V moved faster than ``fine_min_slope`` over the previous step is split into
``fine_substeps`` substeps; the rate tables have a row every ``table_step`` mV (default: the protocol's). The
first row of each model is its default protocol.

    python benchmarks/accuracy.py [--stg 0.05:-45:3:0,0.1:-45:5:2:0.02,...] [--da ...]
"""

from __future__ import annotations

import argparse
import dataclasses
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


# alternatives to each default: the previous defaults (and their 0.02-mV tables), other dt and substep rules
SETTINGS = {
    "stg": "0.1:-45:6:2:0.02,0.1:-45:5:2:0.02,0.1:-45:6:2,0.05:-45:3:0:0.02,0.1:-45:5:0,0.1:-45:5:10,0.1:-45:4:2,0.2:-45:12:2",
    "da": "0.1:-65:8:0:0.02,0.05:-55:4:0:0.02,0.025:-55:2:0,0.05:-65:4:0,0.1:-65:6:0,0.1:-65:8:1",
}


def with_settings(model, setting: str):
    """The model with its protocol's step settings replaced by ``dt:fine_above:fine_substeps:fine_min_slope`` and,
    when a fifth field is given, its rate-table grid (mV)."""
    dt, above, substeps, slope, *table = setting.split(":")
    proto = dataclasses.replace(model.protocol, dt=float(dt), fine_above=float(above), fine_substeps=int(substeps),
                                fine_min_slope=float(slope), table_step=float(table[0]) if table else model.protocol.table_step)  # fmt: skip
    return dataclasses.replace(model, protocol=proto)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, settings in SETTINGS.items():
        ap.add_argument(f"--{name}", default=settings, help=f"settings besides the {name} default")
    args = ap.parse_args()
    cells = json.loads(REFERENCE.read_text())["cells"]
    print("| model | dt (ms) | substeps above (mV) | substeps | min slope (mV/ms) | table step (mV) | cells passing | "
          "worst mean ISI | worst burst period | worst intra-burst ISI | class / spikes-per-burst mismatches |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in ("stg", "da"):
        default = dic_sbi.get_model(name)
        p = default.protocol
        sel = [c for c in cells if c["model"] == name]
        g = np.array([c["conductances"] for c in sel])
        models = [(default, "**default**")] + [(with_settings(default, s), "") for s in getattr(args, name).split(",") if s]
        for model, tag in models:
            p = model.protocol
            res = dic_sbi.simulate(model, g, progress=False)
            errs = [errors(res.spike_times(i), np.array(c["spike_times"]), c["t_start"], c["t_stop"])
                    for i, c in enumerate(sel)]  # fmt: skip
            ok = sum(
                e["class"] == 0 and e.get("spikes_per_burst", 0) == 0
                and all(e.get(k, 0) <= 0.01 for k in ("mean_isi", "burst_period", "intra_burst_isi"))
                for e in errs
            )  # fmt: skip
            worst = {k: max((e.get(k, 0.0) for e in errs), default=0.0) for k in ("mean_isi", "burst_period", "intra_burst_isi")}
            mism = int(sum(e["class"] + e.get("spikes_per_burst", 0) for e in errs))
            print(f"| {name} {tag} | {p.dt:g} | {p.fine_above:g} | {p.fine_substeps} | {p.fine_min_slope:g} | {p.table_step:g} | {ok}/{len(sel)} | "
                  f"{100 * worst['mean_isi']:.2f} % | {100 * worst['burst_period']:.2f} % | "
                  f"{100 * worst['intra_burst_isi']:.2f} % | {mism} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
