"""SBC / TARP of the posteriors a ``dic-sbi compare --checkpoint`` run kept, at more pairs than the run used.

The comparison calibrates each method on ``max(n_observations, 50)`` prior-predictive pairs (100 in the stored
runs); a miscalibration too small to show there may show at thousands. This runs
:func:`dic_sbi.comparison.checkpoint_calibration` for each method at ``--pairs`` pairs and each of ``--seeds``,
prints the KS p of every parameter's SBC ranks, their minimum against the Bonferroni line 0.05 / k, and TARP's
ATC, and writes them to ``--out`` (JSON) with the machine. Several folders (replicates of one comparison) calibrate
the equal-weight mixture of their posteriors::

    python benchmarks/compare_calibration.py CHECKPOINT --budget 10000 --methods dic_learned_wide,conductance_linear \
        --pairs 2000 --seeds 12,13 --out benchmarks/results/compare_calibration_stg_ens.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from dic_sbi.comparison import checkpoint_calibration


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path, nargs="+",
                    help="a dic-sbi compare --checkpoint folder; several: the mixture of their posteriors (e.g. replicates)")
    ap.add_argument("--budget", type=int, required=True)
    ap.add_argument("--methods", required=True, help="comma-separated methods kept in the folder")
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--seeds", default="12,13", help="comma-separated seeds, one set of pairs each")
    ap.add_argument("--samples", type=int, help="posterior samples per pair (default: the run's)")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    rows = []
    for method in args.methods.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.perf_counter()
            c = checkpoint_calibration(args.checkpoint, method, args.budget, n_pairs=args.pairs, seed=seed,
                                       num_posterior_samples=args.samples)  # fmt: skip
            line = 0.05 / len(c["parameters"])
            rows.append({"method": method, "budget": args.budget, **c, "bonferroni": line, "passes": c["sbc_ks_pval_min"] > line,
                         "seconds": time.perf_counter() - t0})  # fmt: skip
            print(f"{method:22s} seed {seed}: {c['n_pairs']} pairs, SBC min KS p {c['sbc_ks_pval_min']:.4g} "
                  f"({'pass' if c['sbc_ks_pval_min'] > line else 'FAIL'} at 0.05/{len(c['parameters'])} = {line:.4g}), "
                  f"TARP ATC {c['tarp_atc']:+.4f}; " + ", ".join(f"{n} {p:.3g}" for n, p in zip(c["parameters"], c["sbc_ks_pvals"])),
                  flush=True)  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"checkpoint": [str(c) for c in args.checkpoint], "rows": rows,
                                        "machine": f"{platform.machine()} {platform.processor()}, torch threads {args.torch_threads}"},
                                       indent=1) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
