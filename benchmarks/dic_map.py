"""DIC map of firing classes: which (g_s, g_u) targets give silent, spiking and bursting cells.

For each point of a grid over a model's DIC box, a degenerate population of ``--cells`` cells is generated
(:func:`dic_sbi.degenerate_population`, exact DICs at the reference threshold), simulated with the model's default
protocol and classified (:func:`dic_sbi.spiketrains.features_from_csr`: silent < 3 spikes, spiking CV(ISI) <= 0.15,
else bursting). Unreachable targets (no valid cells) are marked. The map says whether the model's DICs organise its
firing as they do for STG and DA (bursting at g_s < 0 and g_u > 0, spiking at g_s > 0).

    python benchmarks/dic_map.py --model pospischil --grid 9 7 --cells 8 --out benchmarks/results/dic_map_pospischil
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import dic_sbi
from dic_sbi.spiketrains import features_from_csr

CLASSES = ("silent", "spiking", "bursting")


def class_map(model: str, n_s: int, n_u: int, cells: int, seed: int) -> dict:
    """Class fractions on an ``n_s × n_u`` grid over the model's DIC box."""
    m = dic_sbi.get_model(model)
    (s_lo, s_hi), (u_lo, u_hi) = m.dic_box
    g_s, g_u = np.meshgrid(np.linspace(s_lo, s_hi, n_s), np.linspace(u_lo, u_hi, n_u), indexing="ij")
    pop, info = dic_sbi.degenerate_population(m, g_s.ravel(), g_u.ravel(), cells, seed=seed, on_unreachable="nan",
                                              return_info=True)  # fmt: skip
    flat = pop.reshape(-1, m.n_conductances)
    ok = np.all(np.isfinite(flat), axis=1)
    counts = np.zeros((g_s.size, len(CLASSES)), dtype=np.int64)
    if ok.any():
        res = dic_sbi.simulate(m, flat[ok], progress=False, seed=seed)
        feats = features_from_csr(res.times, res.offsets, res.t_start, res.t_stop)
        target = np.repeat(np.arange(g_s.size), cells)[ok]
        np.add.at(counts, (target, feats["firing_class_code"].astype(np.intp)), 1)
    return {
        "model": m.name,
        "reference_threshold": m.dics.reference_threshold,
        "g_s": g_s.ravel().tolist(),
        "g_u": g_u.ravel().tolist(),
        "cells_per_target": cells,
        "counts": {c: counts[:, k].tolist() for k, c in enumerate(CLASSES)},
        "reachability": np.asarray(info.reachability).ravel().tolist(),
        "protocol": {"duration": m.protocol.duration, "transient": m.protocol.transient, "dt": m.protocol.dt},
    }


def text_map(result: dict) -> str:
    """A character map: rows g_u (top = high), columns g_s; each cell the majority class (. silent, s spiking,
    B bursting, x unreachable) and, where classes mix, lower case ``b`` for a bursting minority >= 25 %."""
    g_s, g_u = np.array(result["g_s"]), np.array(result["g_u"])
    counts = np.stack([np.array(result["counts"][c]) for c in CLASSES], axis=-1)
    xs, us = np.unique(g_s), np.unique(g_u)
    lines = ["g_u \\ g_s " + " ".join(f"{x:6.1f}" for x in xs)]
    for u in us[::-1]:
        row = []
        for x in xs:
            k = np.flatnonzero((g_s == x) & (g_u == u))[0]
            c = counts[k]
            if c.sum() == 0:
                sym = "x"
            else:
                sym = ".sB"[int(np.argmax(c))]
                if sym != "B" and c[2] >= 0.25 * c.sum():
                    sym += "b"
            row.append(f"{sym:>6}")
        lines.append(f"{u:9.1f} " + " ".join(row))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="pospischil")
    ap.add_argument("--grid", type=int, nargs=2, default=(9, 7), metavar=("N_GS", "N_GU"))
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="folder for map.json and map.png")
    args = ap.parse_args()
    t0 = time.perf_counter()
    result = class_map(args.model, args.grid[0], args.grid[1], args.cells, args.seed)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(text_map(result))
    total = {c: int(np.sum(result["counts"][c])) for c in CLASSES}
    print("cells per class:", total, f"({result['wall_s']} s)")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "map.json").write_text(json.dumps(result, indent=1))
        (args.out / "map.txt").write_text(text_map(result) + "\n")
        _plot(result, args.out / "map.png")


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g_s, g_u = np.array(result["g_s"]), np.array(result["g_u"])
    counts = np.stack([np.array(result["counts"][c]) for c in CLASSES], axis=-1).astype(float)
    n = counts.sum(axis=1)
    frac = np.divide(counts, n[:, None], out=np.full_like(counts, np.nan), where=n[:, None] > 0)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    for k, (ax, c) in enumerate(zip(axes, CLASSES)):
        sc = ax.scatter(g_s, g_u, c=frac[:, k], vmin=0, vmax=1, cmap="viridis", s=120, marker="s")
        ax.scatter(g_s[n == 0], g_u[n == 0], marker="x", color="red", s=40)
        ax.set(title=f"{result['model']}: fraction {c}", xlabel="g_s")
    axes[0].set_ylabel("g_u")
    fig.colorbar(sc, ax=axes, shrink=0.8)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
