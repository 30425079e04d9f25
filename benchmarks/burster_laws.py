"""Free-conductance laws that try to beat the shipped one on DA bursters, at the observations' true DICs (issue 17).

With the DIC estimate taken out (every cell built on the observation's true DICs), the shipped DA law's cells fire
like a bursting observation in about a third of cases. Two attempts to do better from the same simulations (the
law's campaign stores, ``--work``), scored on the same bursting observations as ``benchmarks/class_fidelity.py``
(same held-out seed, first ``--per-class`` bursters, ``--cells`` cells each):

* ``bursters_only``: the same conditional flow (architecture and defined input scaling) trained on the bursting
  rows only: the law of z given (t, x) for bursting x does not change when non-bursting rows are left out (the
  selection depends on x alone), and the whole capacity then goes to bursters;
* ``nearest``: a nearest-neighbour law: the free draws of the ``K`` noise-free, unjittered training bursters
  nearest to the observation in (DICs, burst features), compensated at the observation's true DICs.

    python benchmarks/burster_laws.py --work /path/to/free_da --out benchmarks/results/burster_laws_da.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dic_sbi.campaign import CampaignStore
from dic_sbi.core.populations import compensate, free_draws
from dic_sbi.core.simulator import simulate
from dic_sbi.sbi import DICPosterior, train_free_conductances
from dic_sbi.sbi.evaluation import classes_of, heldout_set, observed_features, population_fidelity
from dic_sbi.sbi.features import SUMMARY_NAMES, feature_names, with_conditions
from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info
from dic_sbi.spiketrains import features_from_csr, fires_like

#: Burst features the nearest-neighbour law matches on (with the DICs).
NEAREST_FEATURES = ("log10_rate_hz", "log10_spikes_per_burst", "log10_burst_period_ms",
                    "log10_intra_burst_frequency_hz", "duty_cycle", "log10_1p_burst_duration_ms")  # fmt: skip


def read_stores(work: Path, model: str) -> dict[str, np.ndarray]:
    """Every ``{model}_dic_*_free_jitter`` store under ``work``: DICs, cells, x, σ and jitter sd per row."""
    parts = []
    for path in sorted(work.glob(f"{model}_dic_*_free_jitter")):
        store = CampaignStore.open(path)
        fields = ("theta", "conductances", "x", "jitter_std")
        d = store.read(fields + (("noise_std",) if "noise_std" in store.fields else ()))
        d.setdefault("noise_std", np.zeros(len(d["x"])))
        parts.append(d)
    if not parts:
        raise SystemExit(f"--work: no {model}_dic_*_free_jitter stores under {work}")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def score(model, cells: np.ndarray, observed: dict, n_cells: int, proto: dict) -> np.ndarray:
    """Per observation, the fraction of its ``n_cells`` consecutive cells that fire like it (noise-free)."""
    r = simulate(model, cells, progress=False, **proto)
    f = features_from_csr(r.times, r.offsets, r.t_start, r.t_stop)
    n_obs = len(cells) // n_cells
    return np.array([fires_like({k: np.asarray(v)[i * n_cells : (i + 1) * n_cells] for k, v in f.items()},
                                {k: v[i] for k, v in observed.items()})[1].mean() for i in range(n_obs)])  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="da", choices=("stg", "da"))
    p.add_argument("--work", required=True, help="folder of the shipped law's campaign stores")
    p.add_argument("--per-class", type=int, default=60)
    p.add_argument("--cells", type=int, default=64)
    p.add_argument("--points", type=int, default=3000)
    p.add_argument("--seed", type=int, default=9100, help="held-out seed (as benchmarks/class_fidelity.py)")
    p.add_argument("--k", type=int, default=64, help="neighbours of the nearest-neighbour law")
    p.add_argument("--max-epochs", type=int, default=150)
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benchmark: its class subsets
    from class_fidelity import class_subset

    torch.set_num_threads(a.torch_threads)
    t0 = time.perf_counter()
    post, info = load_pretrained(a.model), pretrained_info(a.model)
    proto = {k: info["protocol"][k] for k in ("duration", "transient", "dt")}
    names = feature_names(info["features"]["output"])
    ho = heldout_set(a.model, n_points=a.points, cells_per_point=1, seed=a.seed, output=info["features"]["output"], **proto)
    sub = class_subset(ho, 2, a.per_class)  # the bursters benchmarks/class_fidelity.py scores
    sub_x, truth = sub.x, sub.theta.double().numpy()
    observed = observed_features(sub_x)
    d = read_stores(Path(a.work), a.model)
    bursting = classes_of(torch.as_tensor(d["x"][:, : len(SUMMARY_NAMES)], dtype=torch.float32)) == 2
    out = {"model": a.model, "settings": vars(a), "machine": f"{platform.machine()} {platform.processor()}",
           "n_observations": len(sub), "training_rows": len(bursting), "bursting_rows": int(bursting.sum()), "laws": {}}  # fmt: skip
    print(f"{len(sub)} bursting observations; {int(bursting.sum())} of {len(bursting)} training rows burst", flush=True)

    # The shipped law (and the seed law) at the true DICs: the reference.
    ref = population_fidelity(post, sub, n_observations=len(sub), n_cells=a.cells, seed=a.seed + 2, at_true_dics=True)
    out["laws"]["shipped"] = ref["learned"]["non_silent"]["fidelity"]
    out["laws"]["seed_law"] = ref["seed_law"]["non_silent"]["fidelity"]
    print(f"shipped law {out['laws']['shipped']:.3f}, seed law {out['laws']['seed_law']:.3f} (true DICs)", flush=True)

    # 1. The same flow, trained on the bursting rows only.
    x = with_conditions(torch.as_tensor(d["x"], dtype=torch.float32), d["noise_std"][:, None])
    t1 = time.perf_counter()
    est, summary = train_free_conductances(a.model, d["theta"][bursting], d["conductances"][bursting],
                                           x[torch.as_tensor(bursting)], pair=post.pair,
                                           **{k: post.free_conductances.settings[k] for k in ("hidden_features", "num_transforms", "passes")},
                                           training={"max_num_epochs": a.max_epochs, "stop_after_epochs": 15}, seed=a.seed + 3,
                                           show_progress_bars=False, x_names=info["features"]["names"])  # fmt: skip
    alone = DICPosterior(post.posterior, post.model, pair=post.pair, simulator=post.simulator, conditions=post.conditions,
                         free_conductances=est)  # fmt: skip
    r = population_fidelity(alone, sub, n_observations=len(sub), n_cells=a.cells, seed=a.seed + 2, at_true_dics=True)
    out["laws"]["bursters_only"] = r["learned"]["non_silent"]["fidelity"]
    out["bursters_only_training"] = {**summary, "seconds": time.perf_counter() - t1}
    print(f"bursters-only flow {out['laws']['bursters_only']:.3f} ({summary['epochs']} epochs)", flush=True)

    # 2. Nearest neighbours among the noise-free, unjittered training bursters.
    cols = [names.index(n) for n in NEAREST_FEATURES]
    near = bursting & (d["noise_std"] == 0) & (d["jitter_std"] == 0)
    gl, u, on = free_draws(post.model, d["conductances"][near], pair=post.pair)
    z = np.c_[d["theta"][near], d["x"][near][:, cols]][on]
    gl, u = gl[on], u[on]
    zo = np.c_[truth, sub_x.numpy()[:, cols]]
    spread = z.std(axis=0)
    cells = np.empty((len(sub) * a.cells, post.model.n_conductances))
    for i in range(len(sub)):
        nn = np.argsort((((z - zo[i]) / spread) ** 2).sum(axis=1))[: a.k]
        nn = np.resize(nn, a.cells)  # K < cells: the neighbours again
        c, ok = compensate(post.model, np.full(a.cells, truth[i, 0]), np.full(a.cells, truth[i, 1]), gl[nn], u[nn], pair=post.pair)
        cells[i * a.cells : (i + 1) * a.cells] = np.where(ok[:, None], c, c[ok][0] if ok.any() else 1e-3)  # invalid: a valid one
    out["laws"]["nearest"] = float(score(post.model, cells, observed, a.cells, proto).mean())
    out["nearest_training_bursters"] = int(len(z))
    print(f"nearest-neighbour law (K = {a.k}, {len(z)} bursters) {out['laws']['nearest']:.3f}", flush=True)
    out["seconds"] = time.perf_counter() - t0
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
