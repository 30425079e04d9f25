"""How the fixed input standardisation hides the burst features (issue 16, the bursting-STG gap).

An estimator that tries to beat the shipped posterior on bursting STG cells: a regression MLP (L1 loss, so it
estimates the posterior median, the MAE-optimal point) on the same 35 inputs (17 summary features + interval
statistics), trained on noise-free DIC-prior simulations, evaluated on the bursting cells of new held-out cells
(``--points`` targets × ``--cells``). The same MLP, training set and seed are run with four input scalings:

* ``bursters``: each column standardised over the bursting training cells (the network sees only bursters);
* ``posterior_before``: what the posteriors' first layer did before 2026-12-05 (:class:`~dic_sbi.sbi.Standardize`
  fitted on all rows, summary columns only, spread floor 0.1; the interval statistics passed unscaled);
* ``all_rows``: every column standardised over all rows (sentinels and zero fill of other classes included);
* ``defined_rows``: every column over the rows where it is defined, undefined entries mapped to 0
  (``Standardize.from_data(names=...)``, what ``build_density_estimator(defined_scaling=True)`` uses).

The shipped posterior's mean is scored on the same cells. Posterior-mean MAE of (g_s, g_u), bursting cells.

    python benchmarks/standardisation.py --out benchmarks/results/standardisation_stg.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dic_sbi.core.populations import degenerate_population
from dic_sbi.core.simulator import simulate
from dic_sbi.models import get_model
from dic_sbi.sbi import DICPrior, Standardize
from dic_sbi.sbi.evaluation import classes_of
from dic_sbi.sbi.features import SUMMARY_NAMES, encode, feature_names, with_conditions

N_SUMMARY = len(SUMMARY_NAMES)


def cells(model, points: int, per_point: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """DIC targets (repeated per cell) and the ``intervals`` x of one compensated cell each, noise-free."""
    rng = np.random.default_rng(seed)
    t = DICPrior(model).sample((points,), seed=rng).double().numpy()
    g = degenerate_population(model, t[:, 0], t[:, 1], per_point, seed=rng).reshape(points * per_point, -1)
    xs = []
    for a in range(0, len(g), 20000):
        r = simulate(model, g[a : a + 20000], progress=False)
        xs.append(encode(r.times, r.offsets, r.t_start, r.t_stop, "intervals", 0))
    return np.repeat(t, per_point, axis=0), np.concatenate(xs)


def fit_mlp(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, epochs: int, seed: int,
            net: torch.nn.Module | None = None) -> np.ndarray:  # fmt: skip
    """L1 regression (3 hidden layers, GELU, one-cycle AdamW) on already-scaled inputs; predictions for x_test.
    ``net`` replaces the MLP (any module mapping rows of ``x`` to 2 outputs, built after seeding by the caller
    or here), so other architectures train with the same loop, loss and schedule."""
    torch.manual_seed(seed)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    ym, ys = yt.mean(0), yt.std(0)
    if net is None:
        net = torch.nn.Sequential(torch.nn.Linear(xt.shape[1], 256), torch.nn.GELU(), torch.nn.Linear(256, 256),
                                  torch.nn.GELU(), torch.nn.Linear(256, 128), torch.nn.GELU(), torch.nn.Linear(128, 2))  # fmt: skip
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * (len(xt) // 512 + 1))
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for a in range(0, len(xt), 512):
            i = perm[a : a + 512]
            loss = (net(xt[i]) - (yt[i] - ym) / ys).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        xq = torch.as_tensor(x_test, dtype=torch.float32)
        return (torch.cat([net(xq[a : a + 4096]) for a in range(0, len(xq), 4096)]) * ys + ym).numpy()


def scalings(x: np.ndarray, bursting: np.ndarray) -> dict[str, Standardize]:
    """The four input scalings, each fitted on the training ``x``."""
    xt = torch.as_tensor(x, dtype=torch.float32)
    names = feature_names("intervals")
    return {
        "bursters": Standardize.from_data(xt[torch.as_tensor(bursting)], min_std=1e-6),
        "posterior_before": Standardize.from_data(xt, columns=N_SUMMARY),
        "all_rows": Standardize.from_data(xt),
        "defined_rows": Standardize.from_data(xt, names=names),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="stg", choices=("stg", "da"))
    p.add_argument("--train", type=int, default=150000, help="noise-free training simulations")
    p.add_argument("--points", type=int, default=200)
    p.add_argument("--cells", type=int, default=16)
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--seed", type=int, default=101)
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.torch_threads)
    model = get_model(a.model)
    t0 = time.perf_counter()
    theta, x = cells(model, a.train, 1, a.seed)
    theta_te, x_te = cells(model, a.points, a.cells, a.seed + 101)
    t_sim = time.perf_counter() - t0
    b, b_te = classes_of(x[:, :N_SUMMARY]) == 2, classes_of(x_te[:, :N_SUMMARY]) == 2
    out = {"model": model.name, "settings": vars(a), "machine": f"{platform.machine()} {platform.processor()}",
           "simulation_seconds": t_sim, "n_train_bursting": int(b.sum()), "n_test_bursting": int(b_te.sum()), "mae": {}}  # fmt: skip
    for name, scale in scalings(x, b).items():
        with torch.no_grad():
            f = lambda v: scale(torch.as_tensor(v, dtype=torch.float32)).numpy()  # noqa: E731
        pred = fit_mlp(f(x[b]), theta[b], f(x_te[b_te]), a.epochs, a.seed)
        out["mae"][f"mlp_{name}"] = np.abs(pred - theta_te[b_te]).mean(0).round(3).tolist()
        print(name, out["mae"][f"mlp_{name}"], f"{time.perf_counter() - t0:.0f} s", flush=True)
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info

    post = load_pretrained(a.model)
    xp = torch.as_tensor(x_te[b_te], dtype=torch.float32)
    if post.conditions:  # σ = 0 inserted after the summary
        xp = with_conditions(xp, np.zeros((len(xp), 1)))
    s = post.posterior.sample_batched((300,), x=xp, show_progress_bars=False).numpy()
    out["mae"]["shipped_posterior_mean"] = np.abs(s.mean(0) - theta_te[b_te]).mean(0).round(3).tolist()
    out["shipped_posterior_created"] = pretrained_info(a.model)["created"]
    print("shipped posterior", out["mae"]["shipped_posterior_mean"], flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
