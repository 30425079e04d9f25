"""Build the reference set of the simulator-accuracy tests: cells of every firing class in both models,
integrated with the tight-tolerance reference integrator (scipy LSODA, rtol = atol = 1e-8).

Cells: the published test vector of each model, plus cells drawn uniformly from the model's default conductance
box (seeded), taken in draw order until each class has its quota, plus cells of degenerate populations at DIC
targets drawn uniformly over the model's published DIC box (the cells the pipeline simulates most; one cell per
target, ``--append-population`` adds them to an existing file). Chaotic, irregular or ill-conditioned cells
(e.g. a 4-s ISI near a saddle-node, whose 2-or-3 spikes in the window flip the class) have no
integrator-independent features, so a drawn cell is kept only if its features are (1) converged in dt: the fast
simulator at dt = 0.0125 and 0.025 ms agrees within 0.3 % and on spikes per burst, and (2) well conditioned: a
1e-6 relative perturbation of its conductances changes them by less than 0.3 %. How many cells were skipped is
stored in the output. Run from the repository root:

    python tests/reference_data/make_reference.py            # ~20 min on 2 cores
    python tests/reference_data/make_reference.py --append-population   # ~6 min: only the population cells

and commit ``tests/reference_data/reference_cells.json``.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

import dic_sbi
from dic_sbi.core.reference import simulate_reference

OUT = Path(__file__).with_name("reference_cells.json")
QUOTA = {"spiking": 6, "bursting": 6, "silent": 3}
POPULATION_QUOTA = {"spiking": 6, "bursting": 6, "silent": 0}
RTOL = ATOL = 1e-8
TEST_VECTORS = {
    "stg": [3951.841874625046, 137.74048912522852, 2.9127829247578534, 7.284855521681209, 109.17735788681486,
            239.38396353795864, 0.29088220179767166, 0.009126662525247945],
    "da": [42.17872311164837, 8.972168993357155, 0.02539789992130862, 0.0644062068629352, 0.16653562721303106,
           0.13891638491433672, 0.01504927503238648],
}  # fmt: skip


def converged(fa: dict, fb: dict, i: int) -> bool:
    if fa["firing_class"][i] != fb["firing_class"][i]:
        return False
    cls = fa["firing_class"][i]
    if cls == "silent":
        return True
    if cls == "spiking":
        return abs(fa["mean_isi"][i] / fb["mean_isi"][i] - 1) < 3e-3
    keys = ("burst_period", "intra_burst_frequency")
    ok = all(np.isfinite(fa[k][i]) and abs(fa[k][i] / fb[k][i] - 1) < 3e-3 for k in keys)
    return ok and fa["spikes_per_burst"][i] == fb["spikes_per_burst"][i] and float(fa["spikes_per_burst"][i]).is_integer()


def box_draws(name: str, seed: int, n_draws: int) -> np.ndarray:
    """Conductances drawn uniformly from the model's default box."""
    model = dic_sbi.get_model(name)
    lo, hi = model.default_bounds()
    return lo + (hi - lo) * np.random.default_rng(seed).random((n_draws, model.n_conductances))


def population_draws(name: str, seed: int, n_draws: int) -> np.ndarray:
    """One degenerate-population cell per DIC target drawn uniformly over the published DIC box (unreachable
    targets skipped)."""
    model = dic_sbi.get_model(name)
    rng = np.random.default_rng(seed)
    (s_lo, s_hi), (u_lo, u_hi) = model.dic_box
    g_s, g_u = rng.uniform(s_lo, s_hi, n_draws), rng.uniform(u_lo, u_hi, n_draws)
    g = dic_sbi.degenerate_population(name, g_s, g_u, 1, seed=rng, on_unreachable="nan")[:, 0]
    return g[np.isfinite(g).all(axis=1)]


def select(name: str, seed: int = 2024, n_draws: int = 400, draw=box_draws, quota: dict = QUOTA) -> tuple[np.ndarray, list[str], int]:
    g = draw(name, seed, n_draws)
    n_draws = len(g)
    fine = dic_sbi.simulate(name, g, dt=0.0125, progress=False).features()
    coarse = dic_sbi.simulate(name, g, dt=0.025, progress=False).features()
    signs = np.random.default_rng(seed + 1).choice([-1.0, 1.0], size=g.shape)
    perturbed = dic_sbi.simulate(name, g * (1 + 1e-6 * signs), dt=0.0125, progress=False).features()
    chosen, classes, skipped = [], [], 0
    count = dict.fromkeys(quota, 0)
    for i in range(n_draws):
        cls = str(fine["firing_class"][i])
        if count[cls] >= quota[cls]:
            continue
        if not (converged(fine, coarse, i) and converged(fine, perturbed, i)):
            skipped += 1
            continue
        chosen.append(g[i])
        classes.append(cls)
        count[cls] += 1
    if count != quota:
        raise RuntimeError(f"{name}: could not fill the quota {quota}, got {count}")
    return np.array(chosen), classes, skipped


def run_one(args: tuple[str, list[float]]) -> dict:
    name, g = args
    t = time.process_time()
    res = simulate_reference(name, np.array(g), rtol=RTOL, atol=ATOL)
    return {"spike_times": res.spike_times.tolist(), "n_rhs": res.n_rhs, "cpu_s": time.process_time() - t}


def integrate(cells: list[dict]) -> None:
    """Integrate every cell with the reference integrator (2 processes), storing its spikes and window."""
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(run_one, [(c["model"], c["conductances"]) for c in cells]))
    for c, r in zip(cells, results):
        model = dic_sbi.get_model(c["model"])
        c.update(r, t_start=model.protocol.transient, t_stop=model.protocol.duration)


def population_cells(skipped: dict) -> list[dict]:
    cells = []
    for name in ("stg", "da"):
        g, classes, skipped[name] = select(name, seed=2025, n_draws=300, draw=population_draws, quota=POPULATION_QUOTA)
        cells += [{"model": name, "source": f"DIC population cell ({c})", "conductances": row.tolist()}
                  for row, c in zip(g, classes)]  # fmt: skip
    return cells


def main() -> None:
    if "--append-population" in sys.argv[1:]:
        data = json.loads(OUT.read_text())
        if any(c["source"].startswith("DIC population") for c in data["cells"]):
            raise SystemExit(f"{OUT} already has the population cells")
        skipped: dict = {}
        new = population_cells(skipped)
        integrate(new)
        data["cells"] += new
        data["selection"]["population"] = {"quota": POPULATION_QUOTA, "seed": 2025, "skipped_not_converged_or_ill_conditioned": skipped}
        OUT.write_text(json.dumps(data, indent=1))
        print(f"appended {len(new)} cells to {OUT}", file=sys.stderr)
        return
    cells = []
    skipped = {}
    for name in ("stg", "da"):
        g, classes, skipped[name] = select(name)
        cells.append({"model": name, "source": "published test vector", "conductances": TEST_VECTORS[name]})
        cells += [{"model": name, "source": f"default box draw ({c})", "conductances": row.tolist()}
                  for row, c in zip(g, classes)]  # fmt: skip
    pop_skipped: dict = {}
    cells += population_cells(pop_skipped)
    print(f"{len(cells)} cells; skipped as not converged in dt or ill-conditioned: {skipped}, {pop_skipped}", file=sys.stderr)
    integrate(cells)
    OUT.write_text(json.dumps({
        "integrator": {"method": "LSODA", "rtol": RTOL, "atol": ATOL, "scipy": __import__("scipy").__version__},
        "selection": {"quota": QUOTA, "seed": 2024, "skipped_not_converged_or_ill_conditioned": skipped,
                      "population": {"quota": POPULATION_QUOTA, "seed": 2025, "skipped_not_converged_or_ill_conditioned": pop_skipped}},
        "cells": cells,
    }, indent=1))  # fmt: skip
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
