"""How far can any method get? The information floor of spike times about the DICs, next to the shipped posteriors.

For each model:

1. the noise-free DIC-prior campaign the shipped posterior was trained on (same spec and seed as its ``command``;
   reused from ``--work`` when complete, simulated otherwise) gives (θ, x) pairs; :func:`information_floor`
   turns them into the smallest MAE any time-shift-invariant estimator can reach on periodic (tonic, noise-free)
   and silent cells, and the floor over all cells (other cells counted at 0);
2. the held-out set of the shipped posterior's metrics (same seed: 200 targets × 16 cells, noise-free) is
   rebuilt, and the posterior mean's MAE is reported per group (periodic, silent, other) next to the floor.

    python benchmarks/identifiability.py --work /path/to/stores [--model stg da] [--out benchmarks/results/identifiability.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from dic_sbi.campaign import CampaignSpec, CampaignStore, run_campaign
from dic_sbi.sbi.evaluation import _posterior_samples, heldout_set
from dic_sbi.sbi.identifiability import cell_groups, information_floor
from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info

def run(model: str, work: Path, samples: int, seed: int) -> dict:
    info = pretrained_info(model)
    camp = info["training"]["campaigns"][0]
    assert camp["noise_std"] == 0.0
    spec = CampaignSpec(model, "dic", num=camp["num"], chunk_size=camp["chunk_size"], seed=camp["seed"], noise_std=0.0)
    path = work / camp["store"]
    t0 = time.perf_counter()
    run_campaign(spec, path, progress=True)  # a no-op when the store is complete
    data = CampaignStore.open(path).read(("theta", "x"))
    floor = information_floor(data["theta"], data["x"])
    t_floor = time.perf_counter() - t0

    t0 = time.perf_counter()
    ho_seed = info["heldout"]["seeds"][0]
    ho = heldout_set(model, n_points=info["heldout"]["points"], cells_per_point=info["heldout"]["cells_per_point"],
                     noise_std=0.0, seed=ho_seed)  # fmt: skip
    post = load_pretrained(model)
    torch.manual_seed(seed)
    ok = torch.isfinite(ho.x).all(dim=1)
    x = post.condition(ho.x, **post.conditions_among(noise_std=0.0))  # noise-free cells: σ = 0 if it takes σ
    s = _posterior_samples(post, x, samples)  # (samples, N, 2)
    err = (s.mean(dim=0) - ho.theta).abs().numpy()
    err_med = (s.median(dim=0).values - ho.theta).abs().numpy()
    g = cell_groups(ho.x.numpy(), floor["periodic_cv"])
    held: dict = {}
    for name, mask in [("all", ok.numpy())] + list(g.items()):
        m = mask & ok.numpy()
        held[name] = {"n": int(m.sum()), "fraction": float(m.mean()),
                      "mae_g_s": float(err[m, 0].mean()) if m.any() else None,
                      "mae_g_u": float(err[m, 1].mean()) if m.any() else None,
                      "mae_median_g_s": float(err_med[m, 0].mean()) if m.any() else None,
                      "mae_median_g_u": float(err_med[m, 1].mean()) if m.any() else None}  # fmt: skip
    firing = ok.numpy() & ~g["silent"]
    held["firing"] = {"n": int(firing.sum()), "fraction": float(firing.mean()),
                      "mae_g_s": float(err[firing, 0].mean()), "mae_g_u": float(err[firing, 1].mean()),
                      "mae_median_g_s": float(err_med[firing, 0].mean()),
                      "mae_median_g_u": float(err_med[firing, 1].mean())}  # fmt: skip
    return {"store": camp["store"], "store_seed": camp["seed"], "heldout_seed": ho_seed, "floor": floor,
            "heldout_posterior_mean": held, "floor_seconds": t_floor, "heldout_seconds": time.perf_counter() - t0}  # fmt: skip


def table(results: dict) -> str:
    head = ("| model | group | share of cells (campaign) | floor g_s | floor g_u | share (held-out) | "
            "shipped MAE g_s (mean / median) | shipped MAE g_u (mean / median) |")
    lines = [head, "|" + "---|" * 8]
    for model, r in results.items():
        f, h = r["floor"], r["heldout_posterior_mean"]
        for grp in ("periodic", "silent", "other"):
            lines.append(f"| {model} | {grp} | {f[grp]['fraction']:.3f} | {f[grp]['floor_g_s']:.2f} | "
                         f"{f[grp]['floor_g_u']:.2f} | {h[grp]['fraction']:.3f} | {_mm(h[grp], 'g_s')} | "
                         f"{_mm(h[grp], 'g_u')} |")  # fmt: skip
        lines.append(f"| {model} | **firing cells** | {1 - f['silent']['fraction']:.3f} | **{f['firing_floor_g_s']:.2f}** | "
                     f"**{f['firing_floor_g_u']:.2f}** | {h['firing']['fraction']:.3f} | {_mm(h['firing'], 'g_s')} | "
                     f"{_mm(h['firing'], 'g_u')} |")  # fmt: skip
        lines.append(f"| {model} | **all cells** | 1 | **{f['overall_floor_g_s']:.2f}** | **{f['overall_floor_g_u']:.2f}** | "
                     f"1 | {_mm(h['all'], 'g_s')} | {_mm(h['all'], 'g_u')} |")  # fmt: skip
    return "\n".join(lines)


def _mm(h: dict, name: str) -> str:
    a, b = h[f"mae_{name}"], h[f"mae_median_{name}"]
    return "–" if a is None else f"{a:.2f} / {b:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", default=["stg", "da"])
    p.add_argument("--work", required=True, help="folder of the campaign stores (reused when complete)")
    p.add_argument("--samples", type=int, default=200, help="posterior samples per held-out cell")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/identifiability.json")
    args = p.parse_args()
    results = {m: run(m, Path(args.work), args.samples, args.seed) for m in args.model}
    doc = {"machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs".strip(),
           "command": f"python benchmarks/identifiability.py --model {' '.join(args.model)} --work WORK "
                      f"--samples {args.samples} --seed {args.seed}",
           "results": results}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(table(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
