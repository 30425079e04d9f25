"""Which factor of the box-trained DIC-space posterior (``dic_box``) loses fidelity against standard NPE?

``dic_box`` samples ``t = (g_s, g_u) ~ q(t | x)``, then the conductances off the compensating pair ``o ~ q(o | t, x)``,
then solves the pair. Standard NPE (``conductance_linear``) samples whole cells. Both are trained on simulations
of the same linear box, so the two can be crossed: DICs from one, the other conductances from the other (or the
observation's true DICs), the pair solved, draws whose pair leaves the box dropped. Every variant is simulated on
the harness's observations (same tolerances) and compared with NPE observation by observation.

    python benchmarks/box_dic_factors.py CHECKPOINT --budget 10000 [--sets conductance_box,dic_population]

CHECKPOINT: a ``dic-sbi compare --checkpoint`` folder holding both methods at the budget.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dic_sbi.comparison import _bootstrap, _Checkpoint, _evaluate, draw_observations
from dic_sbi.core import dics
from dic_sbi.models import get_model


def load_runs(folder: Path, budget: int):
    """The settings of a ``dic-sbi compare --checkpoint`` folder, its ``dic_box`` and linear-box NPE posteriors at
    ``budget``, the model and the protocol."""
    settings = json.loads((folder / "settings.json").read_text())
    reader = _Checkpoint.reader(folder)
    box = reader.load_posterior(f"budget{budget}_dic_box")["posterior"]
    npe = reader.load_posterior(f"budget{budget}_conductance_linear")["posterior"]
    return settings, box, npe, get_model(settings["model"]), dict(settings["protocol"])


def npe_cells(npe, x, n: int, seed: int) -> np.ndarray:
    """``n`` cells of NPE for one observation, torch seeded with ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return npe.sample((n,), x=x, show_progress_bars=False).to(torch.float64).numpy()


def paired(f: np.ndarray, base: np.ndarray, seed: int) -> tuple[float, float, float]:
    """Mean per-observation difference ``f - base`` and its paired-bootstrap 95 % interval (2 000 resamples)."""
    return _bootstrap(f - base, 2000, np.random.default_rng(seed))


def _fiber_others(box, t, x, seed):
    """Conductances off the pair from ``q(o | t, x)``, one per row of ``t``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return box.sample_others(t, x)


def _assemble(box, t, others, S):
    """Cells from DICs and other conductances, the pair solved; the first ``S`` inside the box (NaN rows if fewer)."""
    g, ok = box.cells_of(t, others)
    out = np.full((S, g.shape[1]), np.nan)
    kept = g[ok][:S]
    out[: kept.shape[0]] = kept
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--budget", type=int, default=10000)
    ap.add_argument("--sets", default="conductance_box,dic_population")
    ap.add_argument("--oversample", type=int, default=4, help="draws per kept sample (the pair may leave the box)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    folder = Path(args.checkpoint)
    settings, box, npe, model, proto = load_runs(folder, args.budget)
    S, K = int(settings["num_posterior_samples"]), int(args.oversample)
    obs_sets = draw_observations(model, settings["n_observations"], seed=settings["seed"], **proto)
    rng = np.random.default_rng(args.seed)

    def variants(obs, i):
        x = obs["x"][i : i + 1]
        s = int(rng.integers(0, 2**31))
        g_npe = npe_cells(npe, x, S * K, s)
        t_box = box.sample_dics((S * K,), x=x, seed=s + 1).to(torch.float64).numpy()
        t_npe = dics(model, g_npe)[:, 1:]
        t_true = np.repeat(np.asarray(obs["dics"][i], dtype=float)[None], S * K, axis=0)
        o_npe = g_npe[:, box.others]
        return {
            "npe": g_npe[:S],
            "dic_box": box.sample((S,), x=x, seed=s + 2).numpy(),
            "t_box + o_npe": _assemble(box, t_box, o_npe, S),
            "t_npe + o_box": _assemble(box, t_npe, _fiber_others(box, t_npe, x, s + 3), S),
            "t_true + o_box": _assemble(box, t_true, _fiber_others(box, t_true, x, s + 4), S),
            "t_true + o_npe": _assemble(box, t_true, o_npe, S),
        }

    names = ["npe", "dic_box", "t_box + o_npe", "t_npe + o_box", "t_true + o_box", "t_true + o_npe"]
    out = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, torch threads {torch.get_num_threads()}",
           "checkpoint": str(folder), "budget": args.budget, "sets": {}}  # fmt: skip
    for set_name in args.sets.split(","):
        obs = obs_sets[set_name]
        n = len(obs["classes"])
        t0 = time.perf_counter()
        cells = [variants(obs, i) for i in range(n)]
        fid = {}
        for v in names:
            m = _evaluate(model, lambda i, v=v: cells[i][v], obs, S, np.random.default_rng(args.seed + 7), proto)
            fid[v] = m["fidelity"]
        rows = {}
        for v in names:
            d, lo, hi = paired(fid[v], fid["npe"], 11)
            rows[v] = {"fidelity": float(np.mean(fid[v])), "minus_npe": d, "lo": lo, "hi": hi,
                       "valid_rows": float(np.mean([np.isfinite(c[v]).all(axis=1).mean() for c in cells]))}  # fmt: skip
        out["sets"][set_name] = rows
        print(f"\n{model.name}, budget {args.budget}, {set_name} ({n} observations, {S} samples, "
              f"{time.perf_counter() - t0:.0f} s):")  # fmt: skip
        print("| variant | fidelity | − NPE [95 %] | rows kept |\n|---|---|---|---|")
        for v, r in rows.items():
            print(f"| {v} | {r['fidelity']:.3f} | {r['minus_npe']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] | {r['valid_rows']:.2f} |")
    print(f"\nmachine: {out['machine']}; {model.n_conductances} conductances, pair {box.pair}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
