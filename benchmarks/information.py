"""Which information in a spike train identifies the DICs: period, drift, interval variability, burst sequence.

One training set and one set of held-out observations; the same NPE (same architecture, budget, seeds) is trained
on nested feature sets, the left-out columns held constant (the standardisation maps them to 0):

* ``period``: rate, mean ISI and the firing class only;
* ``summary``: the 17 summary features (today's shipped posteriors);
* ``+drift``, ``+variability``, ``+burst``: the summary plus one kind of interval statistics
  (:mod:`dic_sbi.spiketrains.intervals`);
* ``all``: the summary plus every interval statistic (``DICSimulator(output="intervals")``);
* ``isi_cnn``, ``isi_causal_cnn``, ``isi_transformer`` (not in the default ``--sets``): the summary plus the
  first 128 log-ISIs themselves (``output="isi"``) through a learned embedding: the package's
  :class:`~dic_sbi.sbi.ISIEmbedding` (masked convolutions, pooled), or sbi's ``CausalCNNEmbedding`` /
  ``TransformerEmbedding`` on the same input (:class:`~dic_sbi.sbi.SequenceEmbedding`); same flow, budget, seeds.

Each is evaluated on the published footing (Brandoit et al. 2025): posterior-mean MAE of (g_s, g_u) on non-silent
trains, per class (CV_ISI <= 0.15 spiking, else bursting), on noise-free held-out cells, on cells with noisy
current σ = 5 µA/cm², and on the noise-free trains with Gaussian spike-time jitter of 0.5 and 2 ms; with the
fraction of 90 % intervals covering the truth. The noise level is a known input (σ ∈ {0} ∪ [0.5, 5] in training).

    python benchmarks/information.py --model stg --train 30000 --noisy 15000 --out benchmarks/results/information_stg.json
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
from dic_sbi.sbi import DICPrior, DICSimulator, ISIEmbedding, SequenceEmbedding, train_dic_posterior
from dic_sbi.sbi.evaluation import PUBLISHED_MAE, classes_of
from dic_sbi.sbi.features import INTERVAL_NAMES, SUMMARY_NAMES, encode, with_conditions
from dic_sbi.spiketrains import jitter_spike_times
from dic_sbi.spiketrains.intervals import INTERVAL_STATISTICS

N_SUMMARY = len(SUMMARY_NAMES)
_KIND_COLS = {kind: [N_SUMMARY + 1 + i for i, k in enumerate(INTERVAL_STATISTICS.values()) if k == kind]
              for kind in ("drift", "variability", "burst")}  # fmt: skip
_FLAGS = {name: N_SUMMARY + 1 + INTERVAL_NAMES.index(name) for name in INTERVAL_NAMES if name.startswith("has_")}
_PERIOD = [SUMMARY_NAMES.index(n) for n in ("log10_rate_hz", "log10_mean_isi_ms", "is_silent", "is_spiking",
                                           "is_bursting", "has_isi")] + [N_SUMMARY]  # fmt: skip


def feature_sets() -> dict[str, list[int]]:
    """Columns kept by each ablation, in the ``intervals`` layout with σ after the summary."""
    summary = list(range(N_SUMMARY + 1))
    burst_flags = [_FLAGS["has_burst_shape"], _FLAGS["has_burst_period_cv"]]
    return {
        "period": _PERIOD,
        "summary": summary,
        "+drift": summary + _KIND_COLS["drift"] + [_FLAGS["has_intervals"]],
        "+variability": summary + _KIND_COLS["variability"] + [_FLAGS["has_intervals"]],
        "+burst": summary + _KIND_COLS["burst"] + burst_flags,
        "all": list(range(N_SUMMARY + 1 + len(INTERVAL_NAMES))),
    }


MAX_ISIS = 128


def _causal_cnn(n_summary: int) -> torch.nn.Module:
    from sbi.neural_nets.embedding_nets import CausalCNNEmbedding

    cnn = CausalCNNEmbedding(input_shape=(MAX_ISIS,), in_channels=2, num_conv_layers=5, pool_kernel_size=16,
                             output_dim=32)  # fmt: skip
    return SequenceEmbedding(cnn, 32, MAX_ISIS, n_summary=n_summary)


class _Values(torch.nn.Module):
    """The masked log-ISIs of a :class:`SequenceEmbedding` row (its first half), as a scalar series."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, : x.shape[1] // 2]


def _transformer(n_summary: int) -> torch.nn.Module:
    from sbi.neural_nets.embedding_nets import TransformerEmbedding

    # Causal attention, read at the last token: it sees the whole sequence and the zero padding after it.
    net = TransformerEmbedding(feature_space_dim=16, final_emb_dimension=16, num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=4, intermediate_size=32, attention_dropout=0.0)  # fmt: skip
    return SequenceEmbedding(torch.nn.Sequential(_Values(), net), 16, MAX_ISIS, n_summary=n_summary)


#: Learned embeddings of the log-ISI sequence (``output="isi"``), by set name: ``n_summary`` -> embedding net.
SEQUENCE_SETS = {
    "isi_cnn": lambda n_summary: ISIEmbedding(MAX_ISIS, n_summary=n_summary),
    "isi_causal_cnn": _causal_cnn,
    "isi_transformer": _transformer,
}


def keep_only(x: torch.Tensor, cols: list[int]) -> torch.Tensor:
    """``x`` with every column outside ``cols`` set to 0 (constant: standardised to 0, so it carries nothing)."""
    out = torch.zeros_like(x)
    out[:, cols] = x[:, cols]
    return out


def training_set(model, n_clean: int, n_noisy: int, seed: int, sigma_range=(0.5, 5.0), jitter: float = 0.0,
                 jitter_max: float = 3.0, isi: bool = False):
    """θ ~ DICPrior, one compensated cell each, simulated noise-free or with σ ~ U(range); x with σ inserted.

    ``jitter``: the fraction of cells whose spike times are moved by N(0, sd²), sd ~ U(0, ``jitter_max``) ms,
    before their features are computed (spike-detection imprecision; not an input of the network).
    Returns θ, x (``intervals`` layout), x in the ``isi`` layout (with ``isi``, else None; same trains) and the
    ``intervals`` simulator."""
    rng = np.random.default_rng(seed)
    prior = DICPrior(model)
    n = n_clean + n_noisy
    theta = prior.sample((n,), seed=rng).double().numpy()
    g = degenerate_population(model, theta[:, 0], theta[:, 1], 1, seed=rng).reshape(n, -1)
    sigma = np.r_[np.zeros(n_clean), rng.uniform(*sigma_range, n_noisy)]
    sim = DICSimulator(model, output="intervals")
    x = np.empty((n, sim.x_dim))
    x_isi = np.empty((n, N_SUMMARY + 1 + MAX_ISIS)) if isi else None
    for a in range(0, n, 5000):  # noise per cell: simulate(noise_std=array)
        b = min(n, a + 5000)
        res = simulate(model, g[a:b], noise_std=sigma[a:b], seed=rng, progress=False)
        times, offsets = res.times, res.offsets
        if jitter > 0:
            sd = np.where(rng.random(b - a) < jitter, rng.uniform(0.0, jitter_max, b - a), 0.0)
            times, offsets = jitter_spike_times(times, offsets, sd, res.t_start, res.t_stop, rng)
        x[a:b] = encode(times, offsets, res.t_start, res.t_stop, "intervals", 0)
        if isi:
            x_isi[a:b] = encode(times, offsets, res.t_start, res.t_stop, "isi", MAX_ISIS)
    return (torch.as_tensor(theta, dtype=torch.float32), with_conditions(x, sigma[:, None]),
            None if x_isi is None else with_conditions(x_isi, sigma[:, None]), sim)  # fmt: skip


def heldout_sets(model, points: int, cells: int, seed: int) -> dict[str, dict]:
    """Noise-free, σ = 5, and the noise-free trains jittered by 0.5 and 2 ms (same targets and cells)."""
    rng = np.random.default_rng(seed)
    prior = DICPrior(model)
    targets = prior.sample((points,), seed=rng).double().numpy()
    g = degenerate_population(model, targets[:, 0], targets[:, 1], cells, seed=rng).reshape(points * cells, -1)
    theta = np.repeat(targets, cells, axis=0)
    out = {}
    clean = simulate(model, g, progress=False)
    noisy = simulate(model, g, noise_std=5.0, seed=rng, progress=False)
    def entry(times, offsets, t_start, t_stop, sigma):
        x = encode(times, offsets, t_start, t_stop, "intervals", 0)
        x_isi = encode(times, offsets, t_start, t_stop, "isi", MAX_ISIS)
        return {"theta": theta, "x": with_conditions(x, [sigma]), "x_isi": with_conditions(x_isi, [sigma]), "sigma": sigma}

    for name, res, sigma in (("noise_free", clean, 0.0), ("sigma_5", noisy, 5.0)):
        out[name] = entry(res.times, res.offsets, res.t_start, res.t_stop, sigma)
    for jitter in (0.5, 2.0):
        times, offsets = jitter_spike_times(clean.times, clean.offsets, jitter, clean.t_start, clean.t_stop, rng)
        out[f"jitter_{jitter:g}ms"] = entry(times, offsets, clean.t_start, clean.t_stop, 0.0)
    return out


def evaluate(posterior, ho: dict, n_samples: int = 300) -> dict:
    """Posterior-mean and median MAE per class on non-silent trains, and 90 % interval coverage."""
    x, theta = ho["x"], ho["theta"]
    klass = classes_of(x[:, :N_SUMMARY])
    keep = klass > 0
    x, theta, klass = x[keep], theta[keep], klass[keep]
    inner = posterior.posterior
    parts = []
    for a in range(0, x.shape[0], 512):
        parts.append(inner.sample_batched((n_samples,), x=x[a : a + 512], show_progress_bars=False))
    s = torch.cat(parts, dim=1).numpy()
    mean, med = s.mean(0), np.median(s, 0)
    lo, hi = np.quantile(s, [0.05, 0.95], axis=0)
    cover = (theta >= lo) & (theta <= hi)
    out = {}
    for name, mask in (("non_silent", np.ones(len(klass), bool)), ("spiking", klass == 1), ("bursting", klass == 2)):
        if mask.any():
            e, em = np.abs(mean[mask] - theta[mask]), np.abs(med[mask] - theta[mask])
            out[name] = {"n": int(mask.sum()), "mae_mean": e.mean(0).round(3).tolist(),
                         "mae_median": em.mean(0).round(3).tolist(),
                         "coverage_90": cover[mask].mean(0).round(3).tolist()}  # fmt: skip
    return out


def pretrained_x(post, x: torch.Tensor) -> torch.Tensor:
    """The columns of the ``intervals`` layout (summary, σ, interval statistics) that ``post`` reads."""
    cols = list(range(N_SUMMARY))
    if post.conditions:
        cols.append(N_SUMMARY)
    if post.simulator.output == "intervals":
        cols += list(range(N_SUMMARY + 1, x.shape[1]))
    return x[:, cols]


def table_rows(results: dict, label: str = "") -> list[str]:
    """Markdown rows (non-silent, spiking, bursting, σ = 5, jitter 0.5 and 2 ms, coverage) of one result file."""
    def mae(r, h, c):
        v = r[h][c]["mae_mean"]
        return f"{v[0]:.2f} / {v[1]:.2f}"

    rows = [("shipped posterior (summary)", results["shipped"])] if "shipped" in results else []
    rows += [(f"pretrained {name}", r) for name, r in results.get("pretrained", {}).items()]
    rows += [(f"{name}{label}", r) for name, r in results.get("sets", {}).items()]
    return ["| " + " | ".join([name, mae(r, "noise_free", "non_silent"), mae(r, "noise_free", "spiking"),
                                mae(r, "noise_free", "bursting"), mae(r, "sigma_5", "non_silent"),
                                mae(r, "jitter_0.5ms", "non_silent"), mae(r, "jitter_2ms", "non_silent"),
                                "%.0f / %.0f %%" % tuple(100 * c for c in r["noise_free"]["non_silent"]["coverage_90"])])
            + " |" for name, r in rows]  # fmt: skip


def class_rows(results: dict) -> list[str]:
    """Markdown rows per posterior and held-out set: MAE g_s / g_u on non-silent, spiking and bursting trains, and
    the 90 % interval coverage (non-silent), i.e. the per-class robustness figures."""
    def cell(r, c):
        return f"{r[c]['mae_mean'][0]:.2f} / {r[c]['mae_mean'][1]:.2f}" if c in r else "–"

    named = [("shipped", results["shipped"])] if "shipped" in results else []
    named += [(f"pretrained {n}", r) for n, r in results.get("pretrained", {}).items()] + list(results.get("sets", {}).items())
    out = []
    for name, r in named:
        for h in ("noise_free", "sigma_5", "jitter_0.5ms", "jitter_2ms"):
            cover = "%.0f / %.0f %%" % tuple(100 * c for c in r[h]["non_silent"]["coverage_90"])
            out.append(f"| {name} | {h} | {cell(r[h], 'non_silent')} | {cell(r[h], 'spiking')} | {cell(r[h], 'bursting')} | {cover} |")
    return out


def gain_rows(results: dict, base: str = "summary") -> list[str]:
    """Markdown rows of the ablation: for each held-out set and class, every feature set's MAE g_s / g_u as a
    multiple of ``base``'s (below 1: the added information helps), i.e. which information each gain comes from."""
    sets = results.get("sets", {})
    if base not in sets:
        raise SystemExit(f"--gains: the result file has no {base!r} set to compare with (sets: {list(sets)})")
    names = [n for n in ("period", "summary", "+drift", "+variability", "+burst", "all") if n in sets]
    names += [n for n in sets if n not in names]
    out = []
    for h in ("noise_free", "sigma_5", "jitter_0.5ms", "jitter_2ms"):
        for c in ("spiking", "bursting"):
            ref = sets[base][h].get(c)
            if ref is None:
                continue
            cells = []
            for n in names:
                r = sets[n][h].get(c)
                cells.append("–" if r is None else " / ".join(f"{v / b:.2f}" for v, b in zip(r["mae_mean"], ref["mae_mean"])))
            out.append(f"| {h} | {c} | {ref['mae_mean'][0]:.2f} / {ref['mae_mean'][1]:.2f} | " + " | ".join(cells) + " |")
    return ["| held-out set | class | " + base + " MAE g_s / g_u | " + " | ".join(names) + " |",
            "|---|---|---|" + "---|" * len(names)] + out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", nargs="+", metavar="RESULT.json", help="print the Markdown rows of result files and exit")
    p.add_argument("--classes", action="store_true", help="with --table: per-class rows for every held-out set")
    p.add_argument("--gains", action="store_true",
                   help="with --table: each feature set's per-class MAE as a multiple of the summary set's")
    p.add_argument("--model", choices=("stg", "da"))
    p.add_argument("--train", type=int, default=30000, help="noise-free training simulations")
    p.add_argument("--noisy", type=int, default=15000, help="training simulations with σ ~ U(0.5, 5)")
    p.add_argument("--points", type=int, default=200, help="held-out DIC targets")
    p.add_argument("--cells", type=int, default=16, help="held-out cells per target")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--sets", default=",".join(feature_sets()),
                   help=f"comma-separated ablations to train; also {', '.join(SEQUENCE_SETS)} (learned embeddings)")
    p.add_argument("--jitter", type=float, default=0.0, help="fraction of training cells with spike-time jitter")
    p.add_argument("--jitter-max", type=float, default=3.0, help="largest jitter sd (ms), drawn uniformly")
    p.add_argument("--defined-scaling", action="store_true",
                   help="scale each feature over the trains where it is defined (dic-sbi train --defined-scaling)")
    p.add_argument("--shipped", action="store_true", help="also evaluate the shipped pretrained posterior")
    p.add_argument("--posterior", action="append", default=[], metavar="LABEL=PATH",
                   help="also evaluate the posterior saved at PATH (dic-sbi train --out), under LABEL; repeatable")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, default=1)
    p.add_argument("--out")
    a = p.parse_args()
    if a.table:
        for path in a.table:
            res = json.loads(Path(path).read_text())
            if a.gains:
                print("\n".join(gain_rows(res)))
                continue
            if a.classes:
                print("\n".join(class_rows(res)))
                continue
            jitter = res.get("settings", {}).get("jitter", 0.0)
            print("\n".join(table_rows(res, f", trained with jitter ({jitter:g} of cells)" if jitter else "")))
        return
    if a.model is None or a.out is None:
        p.error("--model and --out are required (or --table)")
    model = get_model(a.model)
    if any("=" not in v for v in a.posterior):
        p.error("--posterior: expected LABEL=PATH")
    sets = [s for s in a.sets.split(",") if s]
    unknown = [s for s in sets if s not in feature_sets() and s not in SEQUENCE_SETS]
    if unknown:
        p.error(f"--sets: unknown {unknown}; expected names from {list(feature_sets()) + list(SEQUENCE_SETS)}")
    t0 = time.perf_counter()
    if sets:
        theta, x, x_isi, sim = training_set(model, a.train, a.noisy, a.seed, jitter=a.jitter, jitter_max=a.jitter_max,
                                            isi=any(s in SEQUENCE_SETS for s in sets))  # fmt: skip
    t_sim = time.perf_counter() - t0
    held = heldout_sets(model, a.points, a.cells, a.seed + 1000)
    print(f"simulated the training cells in {t_sim:.0f} s; held-out sets ready", flush=True)
    conditions = {"noise_std": ((0.0, 0.0), (0.5, 5.0))}
    results = {"model": model.name, "settings": vars(a), "published": PUBLISHED_MAE[model.name],
               "machine": f"{platform.machine()} {platform.processor()}", "simulation_seconds": t_sim, "sets": {}}  # fmt: skip
    posteriors = ([("shipped", a.model)] if a.shipped else []) + [tuple(v.split("=", 1)) for v in a.posterior]
    for label, where in posteriors:  # pretrained posteriors on the same observations, each reading its own columns
        from dic_sbi.sbi.pretrained import load_pretrained

        post = load_pretrained(where)
        if post.model.name != model.name:
            p.error(f"--posterior {label}: a posterior of {post.model.name!r}, not {model.name!r}")
        row = {hname: evaluate(post, {**ho, "x": pretrained_x(post, ho["x"])}) for hname, ho in held.items()}
        if label == "shipped":
            results["shipped"] = row
        else:
            results.setdefault("pretrained", {})[label] = {"path": str(where), **row}
        print(f"{label}: noise-free {row['noise_free']} | σ=5 {row['sigma_5']['non_silent']['mae_mean']} | jitter "
              f"{row['jitter_0.5ms']['non_silent']['mae_mean']} {row['jitter_2ms']['non_silent']['mae_mean']}", flush=True)
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=1) + "\n")
    for name in sets:
        if name in SEQUENCE_SETS:  # the log-ISI sequence itself, through a learned embedding
            torch.manual_seed(a.seed + 2)
            view = lambda ho: ho["x_isi"]  # noqa: E731
            extra = {"simulator": DICSimulator(model, output="isi", max_isis=MAX_ISIS), "x": x_isi,
                     "embedding_net": SEQUENCE_SETS[name](N_SUMMARY + 1)}  # fmt: skip
        else:
            cols = feature_sets()[name]
            view = lambda ho, cols=cols: keep_only(ho["x"], cols)  # noqa: E731
            extra = {"simulator": sim, "x": keep_only(x, cols)}
        t1 = time.perf_counter()
        run = train_dic_posterior(model, len(theta), theta=theta, seed=a.seed + 2, hidden_features=a.hidden,
                                  num_transforms=5, conditions=conditions,
                                  training={"max_num_epochs": a.epochs, "training_batch_size": a.batch},
                                  torch_threads=a.torch_threads, defined_scaling=a.defined_scaling, **extra)  # fmt: skip
        secs = time.perf_counter() - t1
        row = {"training_seconds": secs, "epochs": int(run.inference.summary["epochs_trained"][-1])}
        for hname, ho in held.items():
            row[hname] = evaluate(run.posterior, {**ho, "x": view(ho)})
        results["sets"][name] = row
        nf = row["noise_free"]
        print(f"{name:>13}: {secs:5.0f} s, {row['epochs']} epochs | noise-free non-silent "
              f"{nf['non_silent']['mae_mean']} spiking {nf['spiking']['mae_mean']} bursting {nf['bursting']['mae_mean']}"
              f" cover {nf['non_silent']['coverage_90']} | σ=5 {row['sigma_5']['non_silent']['mae_mean']}"
              f" | jitter 0.5 {row['jitter_0.5ms']['non_silent']['mae_mean']} 2 {row['jitter_2ms']['non_silent']['mae_mean']}",
              flush=True)  # fmt: skip
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
