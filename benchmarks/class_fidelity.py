"""Population fidelity per firing class, with as many observations of each class (issue 17's acceptance bar).

The fidelity stored with a shipped free-conductance law is scored on the first 100 non-silent held-out
observations, so a rare class gets few of them (DA: 12 bursters). Here one noise-free held-out set of new DIC
targets (one cell each, seed not used in training) is split by the observation's firing class, and the first
``--per-class`` spiking and the first ``--per-class`` bursting observations are scored with
:func:`dic_sbi.sbi.evaluation.population_fidelity` (``--cells`` cells each, simulated with the posterior's protocol;
fires alike: same class, rate ± 10 %, bursters also period ± 10 % and spikes per burst ± 1), for every posterior
given: its seed law and its learned law on the same DIC samples. With ``--true-dics`` every posterior is also scored
with the observations' *true* DICs in place of its DIC samples (``population_fidelity(at_true_dics=True)``): the DIC
estimate taken out, what is left is the free-conductance law's own share.

    python benchmarks/class_fidelity.py --model da --posterior shipped=da --posterior new=PATH \\
        --out benchmarks/results/class_fidelity_da.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dic_sbi.sbi.evaluation import heldout_set, population_fidelity
from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info

CLASS_CODES = {"spiking": 1, "bursting": 2}


def class_subset(ho, code: int, n: int):
    """The first ``n`` observations of firing class ``code`` of a one-cell-per-target held-out set."""
    idx = np.flatnonzero(ho.klass == code)[:n]
    return dataclasses.replace(ho, theta=ho.theta[torch.as_tensor(idx)], cells=ho.cells[idx], x=ho.x[torch.as_tensor(idx)],
                               point=np.arange(idx.size), klass=ho.klass[idx])  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, choices=("stg", "da"))
    p.add_argument("--posterior", action="append", required=True, metavar="LABEL=NAME_OR_PATH",
                   help="a posterior with a learned free-conductance law (shipped name or dic-sbi train path); repeatable")
    p.add_argument("--per-class", type=int, default=60, help="observations scored per firing class")
    p.add_argument("--cells", type=int, default=64, help="population cells per observation")
    p.add_argument("--points", type=int, default=3000, help="held-out targets drawn (the classes are taken from them)")
    p.add_argument("--seed", type=int, default=9100)
    p.add_argument("--true-dics", action="store_true", help="also score each law at the observations' true DICs")
    p.add_argument("--screen", type=int, default=1, metavar="K", help="also score the screened population infer "
                   "returns: K x --cells learned cells per observation, the --cells the posterior's emulator ranks "
                   "first kept (default 1: no screen)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if any("=" not in v for v in a.posterior):
        p.error("--posterior: expected LABEL=NAME_OR_PATH")
    t0 = time.perf_counter()
    posts = [(label, where, load_pretrained(where)) for label, where in (v.split("=", 1) for v in a.posterior)]
    if any(post.model.name != a.model for _, _, post in posts):
        p.error(f"--posterior: every posterior must be one of {a.model!r}")
    info = pretrained_info(posts[0][1])
    proto = {k: info["protocol"][k] for k in ("duration", "transient", "dt")}
    ho = heldout_set(a.model, n_points=a.points, cells_per_point=1, seed=a.seed, output=info["features"]["output"], **proto)
    out = {"model": a.model, "settings": vars(a), "machine": f"{platform.machine()} {platform.processor()}",
           "available": {c: int((ho.klass == k).sum()) for c, k in CLASS_CODES.items()}, "results": {}}  # fmt: skip
    print(f"held-out set: {out['available']} observations per class ({time.perf_counter() - t0:.0f} s)", flush=True)
    for label, where, post in posts:
        row = {"path": str(where)}
        for cname, code in CLASS_CODES.items():
            sub = class_subset(ho, code, a.per_class)
            if len(sub) == 0:
                continue
            row[cname] = {}
            for dics in ("posterior", "true") if a.true_dics else ("posterior",):
                r = population_fidelity(post, sub, n_observations=a.per_class, n_cells=a.cells, seed=a.seed + code,
                                        at_true_dics=dics == "true", screen=a.screen)  # fmt: skip
                for law in ("seed_law", "learned", "screened"):
                    if law in r:
                        b = r[law]["non_silent"]
                        key = law if dics == "posterior" else f"{law}_at_true_dics"
                        row[cname][key] = {"n": b["n"], "fidelity": round(b["fidelity"], 4),
                                           "same_class": round(b["same_class"], 4), "coverage_log_std": b["coverage_log_std"],
                                           "passes": {k: round(v, 4) for k, v in b.get("passes", {}).items()}}  # fmt: skip
            print(f"{label} {cname}: {row[cname]} ({time.perf_counter() - t0:.0f} s)", flush=True)
        out["results"][label] = row
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
