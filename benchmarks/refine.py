"""``infer --refine``: a posterior specific to one recording against the amortised one, on the same observations.

For each model: ``--points`` new noise-free non-silent observations per firing class (one cell of the degenerate
population of a uniform DIC target, the shipped posterior's protocol; seeds unused in training). For each, the
shipped posterior (learned free-conductance law included) and its refinement
(:func:`dic_sbi.sbi.refine.refine_posterior`, ``--simulations`` per round, ``--rounds``) each give ``--cells``
cells, all simulated and scored with :func:`dic_sbi.spiketrains.fires_like` (the population fidelity of issue
17), and their DIC samples' absolute error to the observation's true DICs. Prints a Markdown table of means and
medians per model and class with the simulations and seconds a refinement cost.

    python benchmarks/refine.py --models stg,da --points 8 --simulations 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dic_sbi.core.simulator import simulate
from dic_sbi.sbi.evaluation import heldout_set, observed_features
from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info
from dic_sbi.sbi.refine import refine_posterior
from dic_sbi.spiketrains import features_from_csr, fires_like

HERE = Path(__file__).resolve().parent


def score(post, x, observed: dict, true_t: np.ndarray, n: int, proto: dict, seed: int) -> tuple[float, float, float]:
    """Fidelity of ``n`` posterior cells, and the mean absolute error of their DICs (g_s, g_u) to ``true_t``."""
    g, d = post.sample((n,), x=x, seed=seed, return_dics=True)
    res = simulate(post.model, g.numpy(), progress=False, **proto)
    f = features_from_csr(res.times, res.offsets, res.t_start, res.t_stop)
    err = np.abs(d.to(torch.float64).numpy() - true_t).mean(axis=0)
    return float(fires_like(f, observed)[1].mean()), float(err[0]), float(err[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="stg,da")
    ap.add_argument("--points", type=int, default=8, help="observations per firing class")
    ap.add_argument("--simulations", type=int, default=1000, help="simulations per refinement round")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default=str(HERE / "results" / "refine.json"))
    args = ap.parse_args()
    machine = f"{platform.machine()} {os.cpu_count()} cores, load {os.getloadavg()}"
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {machine}", flush=True)
    rows, per_obs = [], []
    for name in args.models.split(","):
        post, info = load_pretrained(name), pretrained_info(name)
        proto = {k: info["protocol"][k] for k in ("duration", "transient", "dt")}
        ho = heldout_set(post.model, n_points=60 * args.points, cells_per_point=1, seed=args.seed,
                         output=info["features"]["output"], **proto)  # fmt: skip
        for code, klass in ((1, "spiking"), (2, "bursting")):
            idx = np.flatnonzero(ho.klass == code)[: args.points]
            raw = ho.x[torch.as_tensor(idx)]
            observed = observed_features(raw)
            xs = post.condition(raw, **post.conditions_among(noise_std=0.0))
            for j, i in enumerate(idx):
                x, obs = xs[j : j + 1], {k: v[j] for k, v in observed.items()}
                true_t = ho.theta[i].numpy().astype(float)
                t0 = time.perf_counter()
                ref = refine_posterior(post, x, num_simulations=args.simulations, rounds=args.rounds, seed=args.seed + j)
                secs = time.perf_counter() - t0
                a = score(post, x, obs, true_t, args.cells, proto, seed=j)
                r = score(ref.posterior, x, obs, true_t, args.cells, proto, seed=j)
                per_obs.append({"model": name, "class": klass, "amortised": a, "refined": r, "seconds": secs,
                                "simulations": ref.simulations})  # fmt: skip
                print(json.dumps(per_obs[-1]), flush=True)
            block = [p for p in per_obs if p["model"] == name and p["class"] == klass]
            if not block:
                continue
            am, rf = np.array([p["amortised"] for p in block]), np.array([p["refined"] for p in block])
            rows.append({"model": name, "class": klass, "observations": len(block),
                         "fidelity_amortised_mean": float(am[:, 0].mean()), "fidelity_refined_mean": float(rf[:, 0].mean()),
                         "fidelity_amortised_median": float(np.median(am[:, 0])),
                         "fidelity_refined_median": float(np.median(rf[:, 0])),
                         "mae_amortised": am[:, 1:].mean(axis=0).tolist(), "mae_refined": rf[:, 1:].mean(axis=0).tolist(),
                         "refined_better": int(np.sum(rf[:, 0] > am[:, 0])), "refined_worse": int(np.sum(rf[:, 0] < am[:, 0])),
                         "simulations": args.simulations * args.rounds,
                         "seconds_median": float(np.median([p["seconds"] for p in block]))})  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "machine": machine, "rows": rows,
                                          "per_observation": per_obs}, indent=1))  # fmt: skip
    print("\n| model | class | observations | fidelity amortised (mean / median) | refined (mean / median) | "
          "refined better / worse | DIC MAE g_s, g_u amortised | refined | simulations | seconds (median) |")
    print("|---|---|---:|---|---|---|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['class']} | {r['observations']} | {r['fidelity_amortised_mean']:.3f} / "
              f"{r['fidelity_amortised_median']:.3f} | {r['fidelity_refined_mean']:.3f} / {r['fidelity_refined_median']:.3f} | "
              f"{r['refined_better']} / {r['refined_worse']} | {r['mae_amortised'][0]:.2f}, {r['mae_amortised'][1]:.2f} | "
              f"{r['mae_refined'][0]:.2f}, {r['mae_refined'][1]:.2f} | {r['simulations']} | {r['seconds_median']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
