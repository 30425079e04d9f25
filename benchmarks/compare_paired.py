"""Paired differences between methods of stored ``dic-sbi compare`` runs, on the same observations.

Each run's folder (``--out`` of ``dic-sbi compare``: ``per_observation.csv`` and ``config.json``, or a
checkpoint folder: ``budget*.json`` and ``settings.json``) holds the per-observation metrics. Runs of one model with
the same seed, observation count and protocol drew the same observations, so their methods can be compared
observation by observation (:func:`dic_sbi.comparison.paired_differences`), which is much tighter than setting
their bootstrap intervals side by side::

    python benchmarks/compare_paired.py benchmarks/results/compare_da_screen_1e5 --baseline conductance_linear

With several folders, a method × budget present in more than one is taken from the first that has it. Runs of
different replicates (``dic-sbi compare --replicate R``: other training seeds, the same observations) are paired
within each replicate, and each difference is then also summarised over the replicates (mean, min, max): the
spread that the bootstrap over observations does not hold::

    python benchmarks/compare_paired.py rep0 rep1 rep2
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from dic_sbi.comparison import paired_differences

#: Settings that fix the observation sets: runs must agree on them to be paired.
_SAME = ("model", "seed", "n_observations", "protocol")


def load_run(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The settings and per-observation rows of one compare output or checkpoint folder."""
    if (folder / "per_observation.csv").exists():
        config = json.loads((folder / "config.json").read_text())
        with open(folder / "per_observation.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        return config, rows
    entries = sorted(folder.glob("budget*.json"))
    if not entries or not (folder / "settings.json").exists():
        sys.exit(f"{folder}: neither per_observation.csv + config.json nor budget*.json + settings.json")
    rows = [r for e in entries for r in json.loads(e.read_text())["per_observation"]]
    return json.loads((folder / "settings.json").read_text()), rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="compare output or checkpoint folders (same observations)")
    ap.add_argument("--baseline", default="conductance_linear")
    ap.add_argument("--metric", default="fidelity")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args(argv)

    first, rows, seen = None, {}, set()
    for folder in args.folders:
        config, run_rows = load_run(folder)
        if first is None:
            first = config
        differ = [k for k in _SAME if config.get(k) != first.get(k)]
        if differ:
            sys.exit(f"{folder}: {', '.join(differ)} differ from {args.folders[0]}: not the same observations")
        rep = int(config.get("replicate", 0))
        keys = {(rep, r["method"], int(r["budget"])) for r in run_rows}
        rows.setdefault(rep, []).extend(r for r in run_rows if (rep, r["method"], int(r["budget"])) not in seen)
        seen |= keys
    table = []
    for rep, rep_rows in sorted(rows.items()):
        table += [{**r, "replicate": rep} for r in paired_differences(
            rep_rows, args.baseline, metric=args.metric, n_bootstrap=args.bootstrap, seed=int(first.get("seed", 0)))]
    if not table:
        sys.exit(f"no method to pair with {args.baseline!r} in {', '.join(map(str, args.folders))}")
    print(f"model {first['model']}, {first['n_observations']} observations per set, seed {first['seed']}; "
          f"{args.metric}: method − baseline, paired bootstrap 95 % interval")
    print(f"{'set':16s} {'budget':>7s} {'rep':>3s} {'method':34s} {'baseline':34s} {'class':9s} {'n':>4s} "
          f"{'method':>7s} {'base':>7s} {'diff [95 %]':>24s}")
    for r in table:
        print(f"{r['observation_set']:16s} {r['budget']:7d} {r['replicate']:3d} {r['method']:34s} {r['baseline']:34s} "
              f"{r['class']:9s} {r['n_observations']:4d} {r['method_mean']:7.3f} {r['baseline_mean']:7.3f} "
              f"{r['difference']:+7.3f} [{r['difference_lo']:+.3f}, {r['difference_hi']:+.3f}]")
    summary = over_replicates(table)
    if summary:
        print("\nover replicates (difference: mean, min, max; baseline's own spread: max - min of its mean)")
        for r in summary:
            print(f"{r['observation_set']:16s} {r['budget']:7d} {r['method']:34s} {r['baseline']:34s} {r['class']:9s} "
                  f"{len(r['replicates'])} runs: {r['mean']:+.3f} [{r['min']:+.3f}, {r['max']:+.3f}], "
                  f"baseline spread {r['baseline_spread']:.3f}")
    if args.out:
        args.out.write_text(json.dumps({"folders": [str(f) for f in args.folders], "baseline": args.baseline,
                                        "metric": args.metric, "rows": table, "over_replicates": summary},
                                       indent=1))  # fmt: skip


def over_replicates(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each paired difference held by two or more replicates, summarised over them."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in table:
        groups.setdefault((r["observation_set"], r["budget"], r["method"], r["baseline"], r["class"]), []).append(r)
    out = []
    for (set_name, budget, method, base, cls), rs in groups.items():
        if len(rs) < 2:
            continue
        d = [r["difference"] for r in rs]
        b = [r["baseline_mean"] for r in rs]
        out.append({"observation_set": set_name, "budget": budget, "method": method, "baseline": base, "class": cls,
                    "replicates": [r["replicate"] for r in rs], "mean": sum(d) / len(d), "min": min(d), "max": max(d),
                    "baseline_spread": max(b) - min(b)})  # fmt: skip
    return out


if __name__ == "__main__":
    main()
