"""Can a stronger fiber law close ``dic_box``'s gap to standard NPE? Retrain only ``q(o | g_s, g_u, x)``.

``benchmarks/box_dic_factors.py`` finds the fiber law (the conductances off the compensating pair given the DICs)
to be where the box-trained DIC-space posterior loses fidelity. This retrains that factor on the very simulations
of the ``dic_box`` run in a ``dic-sbi compare`` checkpoint (regenerated from the harness's seeds), with other
architectures and coordinates, keeps the run's DIC factor, and evaluates each variant on the run's box
observations against the checkpoint's NPE, observation by observation.

    python benchmarks/box_dic_fiber.py CHECKPOINT --budget 10000 --variants logit:64:5:2,logit:64:5:ar,...

A variant is ``COORDINATES:WIDTH:TRANSFORMS:PASSES`` (PASSES ``ar``: fully autoregressive).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from box_dic_factors import load_runs, npe_cells, paired  # noqa: E402  (a sibling benchmark: the same runs)
from dic_sbi.comparison import _batch_size, _evaluate, _method_seeds, draw_observations
from dic_sbi.core import dics
from dic_sbi.sbi import ConductancePrior, ConductanceSimulator
from dic_sbi.sbi.box_dic import BoxDICPosterior, _to_w
from dic_sbi.sbi.free_conductances import fit_conditional_flow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--budget", type=int, default=10000)
    ap.add_argument("--set", default="conductance_box")
    ap.add_argument("--variants", default="logit:64:5:ar,logit:128:8:2,linear:64:5:2")
    ap.add_argument("--seed", type=int, default=5, help="seed of the variants' training")
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(args.torch_threads)
    folder = Path(args.checkpoint)
    settings, box, npe, model, proto = load_runs(folder, args.budget)
    S = int(settings["num_posterior_samples"])
    # The dic_box run's simulations, from the harness's own seeds.
    sim_seed = _method_seeds(settings["seed"], args.budget, "dic_box", settings.get("replicate", 0))[0]
    prior = ConductancePrior(model, "linear")
    sim = ConductanceSimulator(model, duration=proto["duration"], transient=proto["transient"], dt=proto["dt"],
                               noise_std=proto["noise_std"])  # fmt: skip
    t0 = time.perf_counter()
    theta = prior.sample((args.budget,), seed=sim_seed)
    x = sim(theta, seed=sim_seed)
    t_sim = time.perf_counter() - t0
    keep = torch.isfinite(x).all(dim=1)
    g, x = theta.to(torch.float64).numpy()[keep.numpy()], x[keep]
    cond = torch.cat([x, torch.as_tensor(dics(model, g)[:, 1:], dtype=torch.float32)], dim=1)
    obs = draw_observations(model, settings["n_observations"], seed=settings["seed"], **proto)[args.set]
    n = len(obs["classes"])

    def fidelity(draw) -> np.ndarray:
        return _evaluate(model, draw, obs, S, np.random.default_rng(7), proto)["fidelity"]

    rng = np.random.default_rng(0)

    base = fidelity(lambda i: npe_cells(npe, obs["x"][i : i + 1], S, int(rng.integers(0, 2**31))))
    rows = {"npe": {"fidelity": float(base.mean())}}

    def record(name: str, f: np.ndarray, **extra) -> None:
        d, lo, hi = paired(f, base, 1)
        rows[name] = {"fidelity": float(f.mean()), "minus_npe": d, "lo": lo, "hi": hi, **extra}
        print(f"{name}: fidelity {f.mean():.3f}, − NPE {d:+.3f} [{lo:+.3f}, {hi:+.3f}] {extra}", flush=True)

    print(f"{model.name}, budget {args.budget}, {args.set}: NPE {base.mean():.3f} ({t_sim:.0f} s of simulation)", flush=True)
    record("dic_box (the run's)", fidelity(lambda i: box.sample((S,), x=obs["x"][i : i + 1], seed=i).numpy()))
    others = box.others
    for spec in args.variants.split(","):
        coords, width, depth, passes = spec.split(":")
        w = torch.as_tensor(_to_w(g[:, others], box.low[others], box.high[others], coords), dtype=torch.float32)
        st = dict(hidden_features=int(width), num_transforms=int(depth), passes=None if passes == "ar" else int(passes))
        t0 = time.perf_counter()
        net, fit = fit_conditional_flow(w, cond, st, training=dict(training_batch_size=_batch_size(args.budget)),
                                        seed=args.seed, show_progress_bars=False)  # fmt: skip
        t_train = time.perf_counter() - t0
        post = BoxDICPosterior(box.dic_posterior, net, model, pair=box.pair, x_dim=box.x_dim, prior=box.prior,
                               coordinates=coords)  # fmt: skip
        record(spec, fidelity(lambda i, p=post: p.sample((S,), x=obs["x"][i : i + 1], seed=i).numpy()),
               epochs=fit["epochs"], training_seconds=round(t_train, 1))  # fmt: skip
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads"
    print(f"machine: {machine}; {n} observations, {S} samples each")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "checkpoint": str(folder), "budget": args.budget,
                                               "set": args.set, "rows": rows}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
