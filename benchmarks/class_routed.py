"""Does a posterior trained on one firing class beat the shipped one on that class? (issue 16, bursting gap)

The firing class is a function of ``x`` (the ``is_spiking`` / ``is_bursting`` columns), so a posterior routed by
class is exact: ``p(θ | x) = p(θ | x, class(x))``, and a network trained only on the rows of one class estimates
the same posterior with all of its capacity spent on that class. This script measures whether that helps:

1. reads the shipped STG posterior's own training simulations (the campaign stores of its ``dic-sbi train``
   command, under ``--work``; nothing is simulated if they are there) with the same features, jitter and σ input;
2. trains the same flow (architecture, batch, epoch cap, seed) on the rows of one class only;
3. evaluates it next to the shipped posterior on the cells of that class of new held-out sets (``--points``
   DIC targets × ``--cells`` cells, seeds not used in training), noise-free and σ = 5: posterior-mean MAE of
   (g_s, g_u) and the fraction of 90 % intervals covering the truth.

    python benchmarks/class_routed.py --klass bursting --work /work/stores --out benchmarks/results/class_routed_stg_bursting.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

PUBLISHED = {"spiking": (4.65, 2.30), "bursting": (0.81, 1.14)}  # STG, Brandoit et al. 2025 (noise-free, non-silent)
CODES = {"spiking": 1, "bursting": 2}


def _training_data(info: dict, work: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(theta, x)`` of the shipped posterior's training campaigns, σ inserted as in training."""
    from dic_sbi.models import get_model
    from dic_sbi.sbi.features import with_conditions
    from dic_sbi.sbi.pretrained import training_jitter
    from dic_sbi.train import dic_campaigns

    m = get_model(info["model"])
    camps = []
    for c, tag in zip(info["training"]["campaigns"], ("clean", "noisy")):
        camps.append((tag, int(c["num"]), tuple(c["noise_std"]) if isinstance(c["noise_std"], list) else c["noise_std"], int(c["seed"])))
    jitter = training_jitter(info)
    proto = {k: info["protocol"][k] for k in ("duration", "transient", "dt")}
    data, _, _ = dic_campaigns(m, camps, work, fields=("theta", "x"), suffix="_jitter" if jitter else "",
                               output=info["features"]["output"], chunk_size=int(info["training"]["campaigns"][0]["chunk_size"]),
                               quiet=False, jitter=jitter, **proto)  # fmt: skip
    x = torch.as_tensor(data["x"], dtype=torch.float32)
    if info["features"].get("conditions"):
        x = with_conditions(x, data["noise_std"][:, None])
    return torch.as_tensor(data["theta"], dtype=torch.float32), x


def _score(post, x: torch.Tensor, theta: torch.Tensor, n: int = 500) -> dict:
    from dic_sbi.sbi.evaluation import _posterior_samples

    s = _posterior_samples(post, x, n)  # (n, N, 2)
    mae = (s.mean(0) - theta).abs().mean(0)
    lo, hi = torch.quantile(s, 0.05, dim=0), torch.quantile(s, 0.95, dim=0)
    cover = ((theta >= lo) & (theta <= hi)).float().mean(0)
    return {"n": int(len(x)), "mae_g_s": float(mae[0]), "mae_g_u": float(mae[1]),
            "coverage_90": [float(cover[0]), float(cover[1])]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="stg")
    ap.add_argument("--klass", choices=sorted(CODES), default="bursting")
    ap.add_argument("--work", default="/work/stores", help="folder of the shipped posterior's campaign stores")
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--cells", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=None, help="default: the shipped posterior's")
    ap.add_argument("--seed", type=int, default=900)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from dic_sbi.sbi import DICSimulator
    from dic_sbi.sbi.evaluation import classes_of, heldout_set
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info
    from dic_sbi.sbi.training import train_dic_posterior

    info = pretrained_info(args.model)
    shipped = load_pretrained(args.model)
    theta, x = _training_data(info, Path(args.work))
    keep = torch.as_tensor(classes_of(x) == CODES[args.klass]) & torch.isfinite(x).all(1)
    print(f"{int(keep.sum())} of {len(x)} training rows are {args.klass}", flush=True)
    est = info["estimator"]
    hidden = args.hidden or int(est["hidden_features"])
    settings = dict(info["training"]["settings"], max_num_epochs=args.epochs)
    t0 = time.perf_counter()
    run = train_dic_posterior(
        args.model, int(keep.sum()), simulator=DICSimulator(args.model, output=info["features"]["output"]),
        theta=theta[keep], x=x[keep], seed=args.seed, training=settings, torch_threads=1,
        conditions=shipped.conditions, density_estimator=est["density_estimator"], hidden_features=hidden,
        num_transforms=int(est["num_transforms"]),
    )  # fmt: skip
    train_seconds = time.perf_counter() - t0
    epochs = int(run.inference.summary["epochs_trained"][-1])
    print(f"trained in {train_seconds:.0f} s, {epochs} epochs", flush=True)

    results = {}
    for name, sigma, seed in (("noise_free", 0.0, args.seed + 1), ("sigma_5", 5.0, args.seed + 2)):
        ho = heldout_set(args.model, n_points=args.points, cells_per_point=args.cells, noise_std=sigma, seed=seed,
                         output=info["features"]["output"])  # fmt: skip
        ok = torch.as_tensor(ho.klass == CODES[args.klass]) & torch.isfinite(ho.x).all(1)
        xo = shipped.condition(ho.x[ok], noise_std=sigma)
        results[name] = {"shipped": _score(shipped, xo, ho.theta[ok]), "class_only": _score(run.posterior, xo, ho.theta[ok])}
        r = results[name]
        print(f"{name}: {args.klass} n={r['shipped']['n']}: shipped {r['shipped']['mae_g_s']:.3f} / {r['shipped']['mae_g_u']:.3f}, "
              f"{args.klass}-only {r['class_only']['mae_g_s']:.3f} / {r['class_only']['mae_g_u']:.3f} "
              f"(published {PUBLISHED[args.klass]})", flush=True)  # fmt: skip
    out = {"settings": vars(args), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "training_rows": int(keep.sum()), "training_seconds": train_seconds, "epochs": epochs,
           "published": PUBLISHED[args.klass], "results": results}  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
