"""Where a comparison's observations lie, against how each method did on them.

For each observation of one set (default: the conductance box's), whether its DICs lie in the model's published
DIC box and whether its free conductances lie in the seed law widened ``--widening`` times (the law the wide
DIC-space method draws from), next to the per-observation fidelity of two methods of a stored ``dic-sbi compare``
run (``per_observation.csv``; the observations are redrawn with :func:`dic_sbi.comparison.draw_observations`, so
the run's model, count, seed and protocol must be the defaults or given)::

    python benchmarks/compare_box_observations.py benchmarks/results/compare_da_screen --budget 10000
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from dic_sbi import get_model
from dic_sbi.comparison import draw_observations
from dic_sbi.models import widen_seed_law


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a dic-sbi compare output folder (per_observation.csv, config.json)")
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--set", default="conductance_box", dest="obs_set")
    ap.add_argument("--methods", default="dic_learned_wide,conductance_linear", help="two methods of the run")
    ap.add_argument("--widening", type=float, default=4.0, help="seed-law widening of the law to check against")
    args = ap.parse_args(argv)

    config = json.loads((args.run / "config.json").read_text())
    model = get_model(config["model"])
    proto = config["protocol"]
    obs = draw_observations(model, config["n_observations"], seed=config["seed"], **proto)[args.obs_set]
    methods = args.methods.split(",")
    fid: dict[str, dict[int, float]] = {m: {} for m in methods}
    with open(args.run / "per_observation.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["observation_set"] == args.obs_set and int(r["budget"]) == args.budget and r["method"] in fid:
                fid[r["method"]][int(r["observation"])] = float(r["fidelity"])
    for m in methods:
        if len(fid[m]) != len(obs["classes"]):
            raise SystemExit(f"{args.run}: {m} at budget {args.budget} has {len(fid[m])} observations of {args.obs_set}")
    law = widen_seed_law(model, args.widening).seed_population
    names = list(model.conductance_names)
    (s0, s1), (u0, u1) = model.dic_box
    d, g = obs["dics"], obs["g"]
    in_box = (d[:, 0] >= s0) & (d[:, 0] <= s1) & (d[:, 1] >= u0) & (d[:, 1] <= u1)
    # The law's ranges hold values at its reference leak: a cell's free conductances scale with its own leak.
    at_ref = g * (law.reference_leak / g[:, names.index("leak")])[:, None]
    outside = {k: (at_ref[:, names.index(k)] < lo) | (at_ref[:, names.index(k)] > hi) for k, (lo, hi) in law.free_ranges.items()}
    any_out = np.any(np.stack(list(outside.values())), axis=0)
    classes = np.array(obs["classes"])
    print(f"model {model.name}, {args.obs_set}, budget {args.budget}; law x {args.widening:g}: "
          + ", ".join(f"{k} in [{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in law.free_ranges.items()))  # fmt: skip
    print(f"{'class':9s} {'subset':34s} {'n':>4s} " + " ".join(f"{m:>20s}" for m in methods))
    for cls in sorted(set(classes)):
        c = classes == cls
        subsets = [("all", c), ("DICs in the published box", c & in_box), ("DICs outside it", c & ~in_box),
                   ("free conductances inside the law", c & ~any_out), ("some free conductance outside", c & any_out)]
        subsets += [(f"{k} outside the law", c & v) for k, v in outside.items()]
        for label, sel in subsets:
            idx = np.flatnonzero(sel)
            if idx.size:
                print(f"{cls:9s} {label:34s} {idx.size:4d} "
                      + " ".join(f"{np.mean([fid[m][i] for i in idx]):20.3f}" for m in methods))  # fmt: skip


if __name__ == "__main__":
    main()
