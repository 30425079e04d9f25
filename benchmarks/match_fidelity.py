"""``infer --match``: how often the kept cells fire like the recording, next to the recorded cell's own ceiling.

For each model and noise level σ: ``--points`` observations (one cell of the degenerate population of a DIC
target drawn uniformly over the published box, simulated with the shipped posterior's protocol and noise σ;
silent ones skipped, as in ``class_matching.py``). For each, with the shipped posterior (its learned
free-conductance law included) conditioned on it:

- *matched*: ``class_matched_population(..., observed=features)`` (what ``dic-sbi infer --match`` keeps: cells
  that fire like the recording by :func:`dic_sbi.spiketrains.fires_like` — class, rate ± 10 %, bursters' period
  ± 10 % and spikes per burst ± 1 — in each of ``--repeats`` noise realisations); the kept cells are then
  simulated **again with fresh noise** and scored with ``fires_like`` (without noise the simulation is
  deterministic: the re-simulation checks that 100 % is met, not assumed);
- *ceiling* (σ > 0): the observed cell itself simulated ``--ceiling`` more times with fresh noise and scored the
  same way: what a population of exact copies of the recorded cell would score;
- *cost*: simulations per kept cell (noise repeats included).

    python benchmarks/match_fidelity.py --models stg,da --noise 0,5 --points 30 --cells 50

Writes ``benchmarks/results/match_fidelity.json`` and prints a Markdown table (means over observations).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

import dic_sbi
from dic_sbi.sbi.matching import class_matched_population
from dic_sbi.sbi.pretrained import load_pretrained
from dic_sbi.spiketrains import fires_like

from class_matching import observations, protocol  # noqa: E402  (a sibling benchmark: same observations)

HERE = Path(__file__).resolve().parent


def fraction_like(post, g: np.ndarray, observed: dict, sigma: float, seed) -> float:
    """Fraction of cells ``g`` that fire like ``observed`` when simulated with the posterior's protocol (σ)."""
    res = dic_sbi.simulate(post.model, g, **protocol(post, sigma, seed), progress=False)
    return float(fires_like(res.features(), observed)[1].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="stg,da")
    ap.add_argument("--noise", default="0,5", help="noise levels σ (µA/cm²) of the observations")
    ap.add_argument("--points", type=int, default=30)
    ap.add_argument("--cells", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3, help="noise realisations a kept cell must all match")
    ap.add_argument("--ceiling", type=int, default=20, help="fresh-noise realisations of the observed cell itself")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default=str(HERE / "results" / "match_fidelity.json"))
    args = ap.parse_args()
    machine = f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()}"
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {machine}", flush=True)
    rows = []
    for name in args.models.split(","):
        post = load_pretrained(name)
        for sigma in (float(s) for s in args.noise.split(",")):
            t0 = time.perf_counter()
            rng = np.random.default_rng(args.seed + 1)
            per: dict[str, list[float]] = {k: [] for k in ("matched", "ceiling", "sims_per_kept", "kept", "unfiltered")}
            for observed, x, g_obs in observations(post, args.points, sigma, args.seed):
                mp = class_matched_population(post, x, observed["firing_class"], args.cells, observed=observed,
                                              noise_std=sigma, noise_repeats=args.repeats, seed=rng)  # fmt: skip
                kept = len(mp.conductances)
                per["kept"].append(kept)
                per["unfiltered"].append(mp.first_fraction)
                per["sims_per_kept"].append(mp.simulated / kept if kept else np.nan)
                per["matched"].append(fraction_like(post, mp.conductances, observed, sigma, rng) if kept else np.nan)
                if sigma > 0:
                    copies = np.repeat(g_obs[None], args.ceiling, axis=0)
                    per["ceiling"].append(fraction_like(post, copies, observed, sigma, rng))
            row = {"model": name, "noise_std": sigma, "observations": len(per["kept"]), "cells": args.cells,
                   "noise_repeats": args.repeats if sigma > 0 else 1, "seconds": time.perf_counter() - t0,
                   "incomplete_populations": int(np.sum(np.array(per["kept"]) < args.cells)),
                   **{f"{k}_mean": float(np.nanmean(v)) if v else None for k, v in per.items()},
                   **{f"{k}_median": float(np.nanmedian(v)) if v else None for k, v in per.items()}}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "machine": machine, "rows": rows}, indent=1))
    print("\n| model | σ | observations | unfiltered: fire like the recording | --match, re-simulated with fresh noise | "
          "recorded cell itself, fresh noise (ceiling) | simulations per kept cell (median) | populations short |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ceil = f"{100 * r['ceiling_mean']:.1f} %" if r["ceiling_mean"] is not None else "100 % (deterministic)"
        print(f"| {r['model']} | {r['noise_std']:g} | {r['observations']} | {100 * r['unfiltered_mean']:.1f} % | "
              f"{100 * r['matched_mean']:.1f} % | {ceil} | {r['sims_per_kept_median']:.2f} | "
              f"{r['incomplete_populations']} |")  # fmt: skip


if __name__ == "__main__":
    main()
