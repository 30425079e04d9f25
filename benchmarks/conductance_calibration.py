"""Conductance-space calibration of a pretrained posterior at more prior-predictive pairs than its stored check.

``dic-sbi train-free-conductances`` stores SBC / TARP over the conductances at 200 pairs. This runs
:func:`dic_sbi.sbi.evaluation.conductance_calibration` at ``--pairs`` pairs and several seeds, for each posterior
given, with its learned free-conductance law and with the seed law instead (the same DIC posterior), on pairs
drawn as the posterior's training simulations were (``--jitter posterior``, the default: its spike-time jitter
mixture, since jitter is no input of the network; ``none`` tests unjittered pairs alone), and reports
where the true conductances fall in the posterior samples, from the same SBC ranks (mean rank, share in the
central 50 % and in the outer 10 %: an over-confident law puts fewer than half in the middle). ``--law-pairs N``
also ranks the learned law *alone*: N new pairs drawn as its training simulations were (a campaign chunk of the
posterior's protocol, noise-free, with the same jitter), the law's draws at each pair's true DICs and x, ranked in its own
coordinates (ln gleak and the free fractions u) and, compensated, in conductance space against the true cells, with
the share of draws the compensation rejects. Each run also ranks the DICs of the same posterior samples against
the pairs' true DICs (KS p as sbi's ``check_sbc``): a miss that the DICs already show is one of ``q(t | x)``, which
every conductance depends on, not of the free-conductance law; ``dic_flattened`` reweights the pairs so that the
DIC ranks are uniform and ranks the conductances again, which separates the two, and ``by_class`` ranks each
firing class's pairs apart. ``--law-temperature SEED`` tries the obvious recalibration of the law's width: a temperature on its flow's base, fitted as the rms of the truths' base
coordinates on the ``--law-pairs`` set, checked on new pairs against the law as it is.

    python benchmarks/conductance_calibration.py --posterior stg --pairs 500 --seeds 7001,7002 --law-pairs 3000 \
        --out benchmarks/results/conductance_calibration_stg_jitter.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from typing import Any

import numpy as np
import torch
from scipy.stats import chi2, kstest

from dic_sbi.sbi import DICPosterior
from dic_sbi.sbi.evaluation import conductance_calibration
from dic_sbi.sbi.pretrained import load_pretrained


def rank_summary(ranks: Any, samples: int) -> dict:
    """Where the true conductances fall among the posterior samples: ``ranks`` are the ``(n, k)`` fractions of
    ``samples`` samples below the truth (as :func:`conductance_calibration` ranks them for SBC,
    ``return_ranks=True``). A calibrated posterior's rank is uniform on ``{0, 1/S, ..., 1}``, so the shares
    strictly inside (0.25, 0.75) and outside [0.05, 0.95] it should give are not exactly 0.5 and 0.1 (with S =
    100: 49/101 = 0.485 and 10/101 = 0.099); they are reported next to the measured ones."""
    r = np.asarray(ranks, dtype=float)
    k = np.arange(int(samples) + 1) / int(samples)
    return {"n": len(r), "mean_rank": r.mean(0).round(3).tolist(),
            "central_50": ((r > 0.25) & (r < 0.75)).mean(0).round(3).tolist(),
            "outer_10": ((r < 0.05) | (r > 0.95)).mean(0).round(3).tolist(),
            "expected_central_50": round(float(((k > 0.25) & (k < 0.75)).mean()), 3),
            "expected_outer_10": round(float(((k < 0.05) | (k > 0.95)).mean()), 3)}


def uniform_ks(ranks: Any) -> list[float]:
    """KS p against the uniform on [0, 1] of each column of ``(n, k)`` ranks (fractions of draws below the truth)."""
    r = np.asarray(ranks, dtype=float)
    return [round(float(kstest(r[:, j], "uniform").pvalue), 5) for j in range(r.shape[1])]


def by_class(ranks: Any, dic_ranks: Any, classes: Any, samples: int) -> dict:
    """The conductance and DIC rank summaries (with KS p) of the pairs of each firing class: where a miss sits
    (``infer`` refuses silent recordings, so a miss on silent pairs alone is one no user meets)."""
    r, d, k = np.asarray(ranks, dtype=float), np.asarray(dic_ranks, dtype=float), np.asarray(classes)
    out = {}
    for code, name in enumerate(("silent", "spiking", "bursting")):
        m = k == code
        if m.sum() >= 20:
            out[name] = {"conductances": {**rank_summary(r[m], samples), "ks_pvals": uniform_ks(r[m])},
                         "dics": {**rank_summary(d[m], samples), "ks_pvals": uniform_ks(d[m])}}  # fmt: skip
    return out


def dic_flattened(ranks: Any, dic_ranks: Any, bins: int = 5) -> dict:
    """The conductance ranks reweighted so that the DIC ranks are uniform: is a conductance-space miss inherited
    from ``q(t | x)``?

    Each pair gets the weight 1 / (pairs in its cell of the ``bins`` × ``bins`` histogram of its two DIC ranks),
    which makes the DIC ranks' joint histogram flat, as a calibrated ``q(t | x)`` would give. A conductance whose
    weighted ranks are uniform is then calibrated given the DICs: its miss came from the DIC posterior (a conductance
    set by the compensation moves with the DICs, so it inherits their tails). Weighted central-50 % and outer-10 %
    shares and the weighted KS distance to the uniform, with an approximate p at the effective sample size
    (Kish's n_eff = (Σw)² / Σw²); the unweighted distance next to it.
    """
    from scipy.stats import kstwo

    r, d = np.asarray(ranks, dtype=float), np.asarray(dic_ranks, dtype=float)
    cell = np.minimum((d * bins).astype(int), bins - 1)
    key = cell[:, 0] * bins + cell[:, 1]
    counts = np.bincount(key, minlength=bins * bins)
    w = 1.0 / counts[key]
    w /= w.sum()
    n_eff = 1.0 / float((w**2).sum())

    def distance(x: np.ndarray, wt: np.ndarray) -> float:
        o = np.argsort(x)
        x, cdf = x[o], np.cumsum(wt[o])
        return float(np.max(np.maximum(np.abs(cdf - x), np.abs(cdf - wt[o] - x))))

    flat = np.full(len(r), 1.0 / len(r))
    d_w = [distance(r[:, j], w) for j in range(r.shape[1])]
    return {"bins": bins, "smallest_cell": int(counts.min()), "n_eff": round(n_eff, 1),
            "central_50": [round(float(w @ ((r[:, j] > 0.25) & (r[:, j] < 0.75))), 3) for j in range(r.shape[1])],
            "outer_10": [round(float(w @ ((r[:, j] < 0.05) | (r[:, j] > 0.95))), 3) for j in range(r.shape[1])],
            "ks_distance": [round(v, 4) for v in d_w],
            "ks_distance_unweighted": [round(distance(r[:, j], flat), 4) for j in range(r.shape[1])],
            "ks_pvals_approx": [round(float(kstwo.sf(v, int(round(n_eff)))), 5) for v in d_w]}  # fmt: skip


def tempered_law_draws(free, t: np.ndarray, x: torch.Tensor, samples: int, temperature, seed: int) -> np.ndarray:
    """``(N, samples, k)`` draws of ``w`` from the learned law at ``(t_i, x_i)`` with its flow's base N(0, I)
    widened to N(0, diag(temperature²)) (a temperature on the base: the density stays exact), minus the law's
    location offset as its own draws are."""
    tt = np.repeat(np.asarray(t, dtype=float), samples, axis=0)
    xx = torch.as_tensor(x, dtype=torch.float32).repeat_interleave(samples, dim=0)
    net = free.net
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(seed))
        flow = net.net(net._embedding_net(free._condition(tt, xx)))  # sbi's zuko wrapper: the conditional flow
        w = flow.transform.inv(flow.base.sample() * torch.as_tensor(temperature, dtype=torch.float32))
    w = w.to(torch.float64).numpy()
    if free.w_offset is not None:
        w = w - free.w_offset
    return w.reshape(len(t), samples, -1)


def cell_ranks(free, draws: np.ndarray, truths: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, float]:
    """The law's draws ``(N, S, k)`` compensated at the true DICs ``t`` and ranked against the true cells (the
    compensation of the true draws ``truths``): the law's calibration in conductance space without the DIC
    posterior's samples. Returns the ranks of the pairs whose draws were all valid and the share of draws the
    compensation rejects."""
    from dic_sbi.core.populations import compensate

    n, samples = draws.shape[:2]
    gl, u = free.from_w(draws.reshape(-1, draws.shape[2]))
    tt = np.repeat(t, samples, axis=0)
    ok = np.isfinite(gl) & (gl > 0)
    valid = np.zeros(ok.size, dtype=bool)
    cells = np.full((ok.size, free.model.n_conductances), np.nan)
    cells[ok], valid[ok] = compensate(free.model, tt[ok, 0], tt[ok, 1], gl[ok], u[ok], pair=free.pair)
    true_gl, true_u = free.from_w(truths)
    true_cells, true_ok = compensate(free.model, t[:, 0], t[:, 1], true_gl, true_u, pair=free.pair)
    below = (cells.reshape(n, samples, -1) < true_cells[:, None, :]).sum(axis=1)
    use = true_ok & (valid.reshape(n, samples).sum(axis=1) == samples)  # ranks on the full S draws
    return below[use] / samples, 1.0 - float(valid.mean())


def law_ranks(post, n: int, samples: int, seed: int, jitter=None, temperatures: dict | None = None) -> dict:
    """Mean rank of the true (ln gleak, u) among ``samples`` draws of ``post``'s learned law at the true DICs and
    x of ``n`` new noise-free pairs (spike-time jitter mixture ``jitter``;
    :func:`dic_sbi.train.law_ranks_at_truth`), and the share of draws the compensation rejects; with a jitter, also
    on the unjittered and the jittered pairs apart. ``temperatures`` (``{label: per-coordinate temperature}``):
    also rank, on the same pairs, draws of the law with its base widened so (:func:`tempered_law_draws`)."""
    from dic_sbi.train import law_ranks_at_truth

    free = post.free_conductances
    r = law_ranks_at_truth(post, pairs=n, samples=samples, seed=seed, chunk_size=n, jitter=jitter)
    d, w, t = r["samples"], r["truths"], r["dics"]
    ranks = (d < w[:, None, :]).mean(axis=1)  # (pairs, coordinates)
    cranks, rejected = cell_ranks(free, d, w, t)

    def summary(sel):
        k = int(sel.sum())
        return {"n": k, "mean_rank_ln_gleak": round(float(ranks[sel, 0].mean()), 4),
                "mean_rank_u": ranks[sel, 1:].mean(axis=0).round(4).tolist(), "standard_error": round(float(0.2887 / np.sqrt(k)), 4)}

    # The truths in the flow's base space (its inverse at w + offset): N(0, I) for a calibrated law, so their
    # spread says whether a temperature on the base would recalibrate its width.
    z = free.base_coordinates(w, t, torch.as_tensor(r["x"]))
    r2 = (z**2).sum(axis=1)
    base = {"rms": np.sqrt((z**2).mean(axis=0)).round(3).tolist(), "mean": z.mean(axis=0).round(3).tolist(),
            "chi2_share_below": {str(q): round(float((r2 < chi2.ppf(q, z.shape[1])).mean()), 3) for q in (0.25, 0.5, 0.75, 0.9)}}
    out = {"jitter": None if jitter is None else list(jitter), **summary(np.ones(len(w), dtype=bool)),
           "rejected": round(rejected, 5), "conductances_at_true_dics": rank_summary(cranks, samples), "base_space": base}
    if jitter is not None:
        out["unjittered"], out["jittered"] = summary(~r["jittered"]), summary(r["jittered"])
    for label, temp in (temperatures or {}).items():
        dt = tempered_law_draws(free, t, torch.as_tensor(r["x"]), samples, temp, seed)
        wr = (dt < w[:, None, :]).mean(axis=1)
        cr, rej = cell_ranks(free, dt, w, t)
        out.setdefault("tempered", {})[label] = {
            "temperature": [round(float(v), 4) for v in np.broadcast_to(temp, (w.shape[1],))], "rejected": round(rej, 5),
            "w": {**rank_summary(wr, samples), "ks_pvals": uniform_ks(wr)},
            "conductances_at_true_dics": {**rank_summary(cr, samples), "ks_pvals": uniform_ks(cr)}}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--posterior", default="stg", help="shipped name or path written by dic-sbi train-free-conductances")
    p.add_argument("--pairs", type=int, default=500)
    p.add_argument("--samples", type=int, default=100, help="posterior samples per pair")
    p.add_argument("--seeds", default="7001,7002", help="comma-separated SBC seeds, or 'none' (the law alone only)")
    p.add_argument("--law-seed", type=int, help="seed of the --law-pairs set (default: the first SBC seed + 400)")
    p.add_argument("--law-pairs", type=int, default=0, help="also rank the learned law alone at the true DICs on this many new pairs")
    p.add_argument("--law-temperature", type=int, metavar="SEED",
                   help="with --law-pairs: a temperature on the law's base, fitted as the rms of the truths' base "
                        "coordinates on the --law-pairs set, checked on as many new pairs (this seed) against the law "
                        "as it is (temperature 1), in its own coordinates and in conductance space")
    p.add_argument("--jitter", default="posterior", help="spike-time jitter of the pairs: 'posterior' (the mixture it was "
                   "trained on, default), 'none', or FRACTION,MAX_SD")
    p.add_argument("--laws", default="learned,seed_law", help="which free-conductance laws to rank: learned, seed_law "
                   "or both (the DIC ranks are the same for both: the same DIC samples)")
    p.add_argument("--firing-only", action="store_true",
                   help="rank only the pairs whose train fires (the recordings infer accepts; silent ones are refused)")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--out")
    a = p.parse_args()
    laws = [v for v in a.laws.split(",") if v]
    if not laws or set(laws) - {"learned", "seed_law"}:
        p.error(f"--laws: expected learned and/or seed_law, got {a.laws!r}")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.torch_threads)
    post = load_pretrained(a.posterior)
    if post.free_conductances is None:
        raise SystemExit(f"{a.posterior}: no learned free-conductance law to check")
    jitter = {"posterior": post.training_jitter, "none": None}.get(a.jitter) if a.jitter in ("posterior", "none") else \
        tuple(float(v) for v in a.jitter.split(","))
    seed_law = DICPosterior(post.posterior, post.model, pair=post.pair, simulator=post.simulator, conditions=post.conditions,
                            training_jitter=post.training_jitter)  # fmt: skip
    out = {"posterior": a.posterior, "pairs": a.pairs, "samples": a.samples, "jitter": None if jitter is None else list(jitter),
           "firing_only": a.firing_only, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "runs": {}}  # fmt: skip
    out["names"] = list(post.model.conductance_names)
    seeds = [] if a.seeds == "none" else [int(v) for v in a.seeds.split(",")]
    if a.law_temperature is not None and not a.law_pairs:
        p.error("--law-temperature: give --law-pairs N too (the set the temperature is fitted on)")
    if not seeds and not (a.law_pairs and a.law_seed is not None):
        p.error("--seeds none: give --law-pairs N and --law-seed S (nothing else to run)")
    for label, q in (("learned", post), ("seed_law", seed_law)):
        if label not in laws:
            continue
        for seed in seeds:
            t0 = time.perf_counter()
            c = conductance_calibration(q, n_pairs=a.pairs, num_posterior_samples=a.samples, seed=seed, return_ranks=True,
                                        jitter=jitter, firing_only=a.firing_only)  # fmt: skip
            ranks = rank_summary(c["sbc_ranks"], a.samples)
            dic_ranks = np.asarray(c["dic_ranks"])
            # The DIC samples' ranks as sbi's check_sbc tests ranks (KS against the uniform on [0, S], the same test
            # as on the fractions against [0, 1]).
            out["runs"][f"{label}_{seed}"] = {"sbc_ks_pvals": [round(v, 5) for v in c["sbc_ks_pvals"]],
                                              "tarp_atc": round(c["tarp_atc"], 4), "tarp_ks_pval": c["tarp_ks_pval"],
                                              "n_pairs": c["n_pairs"], "ranks": ranks,
                                              "dics": {"ks_pvals": uniform_ks(dic_ranks), **rank_summary(dic_ranks, a.samples)},
                                              "dic_flattened": dic_flattened(c["sbc_ranks"], dic_ranks),
                                              "by_class": by_class(c["sbc_ranks"], dic_ranks, c["classes"], a.samples),
                                              "seconds": time.perf_counter() - t0}  # fmt: skip
            r = out["runs"][f"{label}_{seed}"]
            print(f"{label:8s} seed {seed}: SBC KS p min {min(r['sbc_ks_pvals']):.2g} (Bonferroni {0.05 / len(r['sbc_ks_pvals']):.2g}), "
                  f"TARP ATC {r['tarp_atc']:+.3f}; central 50 % {min(ranks['central_50']):.2f}–{max(ranks['central_50']):.2f}, "
                  f"outer 10 % {min(ranks['outer_10']):.2f}–{max(ranks['outer_10']):.2f}; DICs (g_s, g_u): KS p "
                  f"{r['dics']['ks_pvals']}, mean rank {r['dics']['mean_rank']}; DIC ranks flattened: min KS p "
                  f"{min(r['dic_flattened']['ks_pvals_approx']):.2g} (n_eff {r['dic_flattened']['n_eff']:.0f})", flush=True)  # fmt: skip
    if a.law_pairs:
        seed = a.law_seed if a.law_seed is not None else seeds[0] + 400
        out["law_alone"] = law_ranks(post, a.law_pairs, a.samples, seed, jitter)
        print(f"learned law alone at the true DICs ({seed}): {out['law_alone']}", flush=True)
        if a.law_temperature is not None:
            fitted = np.asarray(out["law_alone"]["base_space"]["rms"])
            out["law_temperature"] = {"fit_seed": seed, "check_seed": a.law_temperature,
                                      **law_ranks(post, a.law_pairs, a.samples, a.law_temperature, jitter,
                                                  temperatures={"1": np.ones_like(fitted), "fitted": fitted})}  # fmt: skip
            for label, r in out["law_temperature"]["tempered"].items():
                c = r["conductances_at_true_dics"]
                print(f"temperature {label} {r['temperature']}: conductances at the true DICs, central 50 % "
                      f"{min(c['central_50']):.3f}–{max(c['central_50']):.3f} (expected {c['expected_central_50']}), "
                      f"outer 10 % {min(c['outer_10']):.3f}–{max(c['outer_10']):.3f}, min KS p {min(c['ks_pvals']):.2g}", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
