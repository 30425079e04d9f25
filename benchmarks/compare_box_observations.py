"""Where a comparison's observations lie, against how each method did on them.

For each observation of one set (default: the conductance box's), whether its DICs lie in the model's published
DIC box and whether its free conductances lie in the seed law widened ``--widening`` times (the law the wide
DIC-space method draws from), next to the per-observation fidelity of methods of stored ``dic-sbi compare`` runs
(``per_observation.csv``; the observations are redrawn with :func:`dic_sbi.comparison.draw_observations`, so the
runs must share model, count, seed and protocol, and those must be the defaults or as stored). Each column is
``FOLDER:METHOD``::

    python benchmarks/compare_box_observations.py --budget 10000 \
        benchmarks/results/compare_da_screen:dic_learned_wide benchmarks/results/compare_da_screen:conductance_linear

``--routed I,J`` adds a column that takes column I's fidelity on the spiking observations and column J's on the
bursting ones: what a method that picked between two runs by the observed firing class (a function of x) would
reach, with each run's own posterior for its class. With ``--gs-thresholds T1,T2,...`` it also prints, for each
threshold, column J's fidelity on observations whose slow DIC g_s is below it and column I's on the others (a
seed law whose tail weight depends on the DICs, at best).
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

_SAME = ("model", "n_observations", "seed", "protocol")


def _column(spec: str, budget: int, obs_set: str) -> tuple[str, np.ndarray, dict]:
    """Label, per-observation fidelity and config of one ``FOLDER:METHOD`` column."""
    folder, _, method = spec.rpartition(":")
    run = Path(folder)
    if not method or not (run / "config.json").is_file():
        raise SystemExit(f"{spec}: expected FOLDER:METHOD, FOLDER a dic-sbi compare output (config.json, "
                         "per_observation.csv) and METHOD one of its methods")  # fmt: skip
    config = json.loads((run / "config.json").read_text())
    n = config["n_observations"]
    fid: dict[int, float] = {}
    with open(run / "per_observation.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["observation_set"] == obs_set and int(r["budget"]) == budget and r["method"] == method:
                fid[int(r["observation"])] = float(r["fidelity"])
    if sorted(fid) != list(range(n)):
        raise SystemExit(f"{run}: {method} at budget {budget} has {len(fid)} observations of {obs_set}, expected {n}")
    return f"{run.name}:{method}", np.array([fid[i] for i in range(n)]), config


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("columns", nargs="+", help="FOLDER:METHOD of a dic-sbi compare output (per_observation.csv, config.json)")
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--set", default="conductance_box", dest="obs_set")
    ap.add_argument("--widening", type=float, default=4.0, help="seed-law widening of the law to check against")
    ap.add_argument("--routed", metavar="I,J", help="add column I on spiking observations, column J on bursting ones (0-based)")
    ap.add_argument("--gs-thresholds", help="with --routed: also route by g_s < T (column J) for each T (comma-separated)")
    args = ap.parse_args(argv)

    cols = [_column(c, args.budget, args.obs_set) for c in args.columns]
    first = cols[0][2]
    for label, _, config in cols:
        if any(config[k] != first[k] for k in _SAME):
            raise SystemExit(f"{label}: another model, observation count, seed or protocol than {cols[0][0]}")
    model = get_model(first["model"])
    obs = draw_observations(model, first["n_observations"], seed=first["seed"], **first["protocol"])[args.obs_set]
    classes = np.array(obs["classes"])
    labels, fids = [c[0] for c in cols], [c[1] for c in cols]
    if args.routed:
        try:
            i, j = (int(v) for v in args.routed.split(","))
            routed = np.where(classes == "bursting", fids[j], fids[i])
        except (ValueError, IndexError):
            raise SystemExit(f"--routed: expected two column numbers I,J below {len(cols)}, got {args.routed!r}") from None
        labels.append(f"routed: spiking {i}, bursting {j}")
        fids.append(routed)
        if args.gs_thresholds:
            for t in (float(v) for v in args.gs_thresholds.split(",")):
                print(f"routed by g_s < {t:g} (column {j}) else column {i}: {np.where(obs['dics'][:, 0] < t, fids[j], fids[i]).mean():.3f}")
    law = widen_seed_law(model, args.widening).seed_population
    names = list(model.conductance_names)
    (s0, s1), (u0, u1) = model.dic_box
    d, g = obs["dics"], obs["g"]
    in_box = (d[:, 0] >= s0) & (d[:, 0] <= s1) & (d[:, 1] >= u0) & (d[:, 1] <= u1)
    # The law's ranges hold values at its reference leak: a cell's free conductances scale with its own leak.
    at_ref = g * (law.reference_leak / g[:, names.index("leak")])[:, None]
    outside = {k: (at_ref[:, names.index(k)] < lo) | (at_ref[:, names.index(k)] > hi) for k, (lo, hi) in law.free_ranges.items()}
    any_out = np.any(np.stack(list(outside.values())), axis=0)
    print(f"model {model.name}, {args.obs_set}, budget {args.budget}; law x {args.widening:g}: "
          + ", ".join(f"{k} in [{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in law.free_ranges.items()))  # fmt: skip
    for k, label in enumerate(labels):
        print(f"  column {k}: {label}")
    print(f"{'class':9s} {'subset':34s} {'n':>4s} " + " ".join(f"{k:>7d}" for k in range(len(labels))))
    for cls in ["all", *sorted(set(classes))]:
        c = np.ones(len(classes), bool) if cls == "all" else classes == cls
        subsets = [("all", c), ("DICs in the published box", c & in_box), ("DICs outside it", c & ~in_box),
                   ("free conductances inside the law", c & ~any_out), ("some free conductance outside", c & any_out)]
        subsets += [(f"{k} outside the law", c & v) for k, v in outside.items()]
        for label, sel in subsets:
            idx = np.flatnonzero(sel)
            if idx.size:
                print(f"{cls:9s} {label:34s} {idx.size:4d} " + " ".join(f"{f[idx].mean():7.3f}" for f in fids))


if __name__ == "__main__":
    main()
