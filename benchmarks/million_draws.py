"""No NaN or inf escapes from ``simulate``, ``dics`` or ``degenerate_population`` over 10⁶ draws of each prior
(issue 7, item 4). The test suite checks 10⁶ draws through ``dics`` / ``degenerate_population`` and 10 000
simulated cells; this script simulates all 10⁶ of each prior and model.

    python benchmarks/million_draws.py                 # 10⁶ per prior and model, 200 ms of model time each
    python benchmarks/million_draws.py --num 100000    # smaller

A NaN membrane potential would not show in the spike times (a NaN never crosses the threshold: the cell would
look silent), so the membrane potential is recorded every 50 ms and checked too, with the spike times, the
17 encoded features, the DICs and the population conductances. The protocol is short (200 ms from the initial
state, the part where an unstable integration would blow up); the full 6-s protocol over 10⁶ DIC-prior draws is
the campaign benchmark (benchmarks/README.md, Campaigns).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dic_sbi  # noqa: E402
from dic_sbi.sbi import ConductancePrior, DICPrior  # noqa: E402
from dic_sbi.sbi.features import encode  # noqa: E402


def check(model: str, prior: str, num: int, chunk: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    bad = {"conductances": 0, "dics": 0, "spike_times": 0, "voltage": 0, "features": 0}
    spikes = silent = 0
    for a in range(0, num, chunk):
        n = min(chunk, num - a)
        if prior == "dic":
            theta = DICPrior(model).sample((n,), seed=rng).numpy().astype(np.float64)
            g = dic_sbi.degenerate_population(model, theta[:, 0], theta[:, 1], 1, seed=rng)[:, 0]
        else:
            g = ConductancePrior(model, prior.split("-")[1]).sample((n,), seed=rng).numpy().astype(np.float64)
        bad["conductances"] += int((~np.isfinite(g).all(axis=1) | (g < 0).any(axis=1)).sum())
        bad["dics"] += int((~np.isfinite(dic_sbi.dics(model, g))).any(axis=1).sum())
        res = dic_sbi.simulate(model, g, duration=200.0, transient=0.0, record_voltage=True, sampling_interval=50.0,
                               progress=False)  # fmt: skip
        bad["spike_times"] += int((~np.isfinite(res.times)).sum())
        bad["voltage"] += int((~np.isfinite(res.voltage)).any(axis=1).sum())
        x = encode(res.times, res.offsets, res.t_start, res.t_stop, "summary", 8)
        bad["features"] += int((~np.isfinite(x)).any(axis=1).sum())
        spikes += int(res.times.size)
        silent += int((np.diff(res.offsets) == 0).sum())
    return {"model": model, "prior": prior, "num": num, "seconds": time.perf_counter() - t0, "bad": bad,
            "spikes": spikes, "cells_without_spikes": silent}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=1_000_000)
    p.add_argument("--chunk", type=int, default=100_000)
    args = p.parse_args()
    ok = True
    for i, (model, prior) in enumerate([(m, pr) for m in ("stg", "da") for pr in ("dic", "conductance-linear", "conductance-log")]):
        r = check(model, prior, args.num, args.chunk, seed=100 + i)
        clean = not any(r["bad"].values())
        ok &= clean
        print(f"{model:3s} {prior:18s} {r['num']} draws simulated in {r['seconds']:.0f} s: "
              f"{'no NaN/inf' if clean else 'NaN/inf FOUND ' + str(r['bad'])}; {r['spikes']} spikes, "
              f"{r['cells_without_spikes']} cells without a spike in 200 ms", flush=True)  # fmt: skip
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
