"""Build the reference set of the Pospischil-model accuracy tests (``tests/test_pospischil.py``): cells of every
firing class the model has, integrated with the tight-tolerance reference integrator (scipy LSODA,
rtol = atol = 1e-8), with the same selection rules as ``make_reference.py`` (a cell is kept only if its features
are converged in dt and well conditioned) and one more: its reference features do not depend on the reference's
tolerance (rtol = atol = 1e-8 and 1e-10 agree within 0.3 %): a population cell that fires once and then either
rests or fires again after a 1e-8 difference has no integrator-independent class.

Cells: the paper's four cells (RS, FS, IB, LTS, each in its variant model), the IB cell with more L current
(the paper's repetitive bursting from 0.22 mS/cm²: 0.22, 0.25, 0.3), and cells of degenerate populations at DIC
targets drawn uniformly over the model's DIC box (spiking and silent: bursting is rare there, see
``benchmarks/dic_map.py``). Run from the repository root (~10 min on 2 cores):

    python tests/reference_data/make_pospischil_reference.py

and commit ``tests/reference_data/pospischil_reference.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import dic_sbi
from dic_sbi.models.pospischil import VARIANTS

sys.path.insert(0, str(Path(__file__).parent))
from make_reference import ATOL, RTOL, converged, integrate, population_draws  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

from dic_sbi.core.reference import simulate_reference  # noqa: E402
from dic_sbi.spiketrains import features_from_csr  # noqa: E402

OUT = Path(__file__).with_name("pospischil_reference.json")
POPULATION_QUOTA = {"spiking": 3, "silent": 2, "bursting": 0}
CANDIDATES = {"spiking": 6, "silent": 3, "bursting": 0}  # population cells integrated twice, before the quota
TIGHT = 1e-10
SEED = 2026


def stable(name: str, g: np.ndarray) -> np.ndarray:
    """Whether each cell's features are converged in dt (0.0125 vs 0.025 ms) and well conditioned (a 1e-6
    relative perturbation of its conductances)."""
    fine = dic_sbi.simulate(name, g, dt=0.0125, progress=False).features()
    coarse = dic_sbi.simulate(name, g, dt=0.025, progress=False).features()
    signs = np.random.default_rng(SEED).choice([-1.0, 1.0], size=g.shape)
    perturbed = dic_sbi.simulate(name, g * (1 + 1e-6 * signs), dt=0.0125, progress=False).features()
    ok = [converged(fine, coarse, i) and converged(fine, perturbed, i) for i in range(len(g))]
    return np.array(ok), fine["firing_class"]


def tight_reference(args: tuple[str, list[float]]) -> list[float]:
    name, g = args
    return simulate_reference(name, np.array(g), rtol=TIGHT, atol=TIGHT).spike_times.tolist()


def tolerance_independent(cells: list[dict]) -> list[bool]:
    """Whether each integrated cell's features agree with a second reference at rtol = atol = 1e-10."""
    with ProcessPoolExecutor(2) as pool:
        tight = list(pool.map(tight_reference, [(c["model"], c["conductances"]) for c in cells]))
    def feats(trains: list) -> dict:
        times = np.concatenate([np.asarray(t, dtype=float) for t in trains])
        offsets = np.concatenate([[0], np.cumsum([len(t) for t in trains])])
        return features_from_csr(times, offsets, [c["t_start"] for c in cells], [c["t_stop"] for c in cells])
    a, b = feats([c["spike_times"] for c in cells]), feats(tight)
    return [converged(a, b, i) for i in range(len(cells))]


def main() -> None:
    cells, skipped = [], []
    for key, v in VARIANTS.items():
        cells.append({"model": f"pospischil-{key}", "source": f"the paper's {key.upper()} cell",
                      "conductances": list(v.conductances)})  # fmt: skip
    ib = np.array(VARIANTS["ib"].conductances)
    more_l = np.array([np.where(np.arange(6) == 3, gl, ib) for gl in (0.22, 0.25, 0.3)])
    ok, classes = stable("pospischil", more_l)
    for row, good, cls in zip(more_l, ok, classes):
        if good:
            cells.append({"model": "pospischil", "source": f"IB cell with L = {row[3]:g} ({cls})", "conductances": row.tolist()})
        else:
            skipped.append(f"IB cell with L = {row[3]:g} (dt or conditioning)")
    g = population_draws("pospischil", SEED, 60)
    ok, classes = stable("pospischil", g)
    count = dict.fromkeys(CANDIDATES, 0)
    for row, good, cls in zip(g, ok, classes):
        cls = str(cls)
        if count[cls] >= CANDIDATES[cls]:
            continue
        if not good:
            skipped.append("population cell (dt or conditioning)")
            continue
        cells.append({"model": "pospischil", "source": f"DIC population cell ({cls})", "conductances": row.tolist()})
        count[cls] += 1
    integrate(cells)
    kept, count = [], dict.fromkeys(POPULATION_QUOTA, 0)
    for c, good in zip(cells, tolerance_independent(cells)):
        if not good:
            skipped.append(f"{c['source']} (reference tolerance)")
            continue
        if c["source"].startswith("DIC population"):
            cls = c["source"][len("DIC population cell ("):-1]
            if count[cls] >= POPULATION_QUOTA[cls]:
                continue
            count[cls] += 1
        kept.append(c)
    if count != POPULATION_QUOTA:
        raise RuntimeError(f"could not fill the quota {POPULATION_QUOTA}, got {count}")
    print(f"{len(kept)} cells; skipped {skipped}", file=sys.stderr)
    OUT.write_text(json.dumps({
        "integrator": {"method": "LSODA", "rtol": RTOL, "atol": ATOL, "scipy": __import__("scipy").__version__},
        "selection": {"population_quota": POPULATION_QUOTA, "seed": SEED, "tolerance_check": TIGHT,
                      "skipped": skipped},
        "cells": kept,
    }, indent=1))  # fmt: skip
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
