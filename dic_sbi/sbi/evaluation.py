"""Held-out evaluation of a DIC posterior, built like the published test set (Brandoit et al. 2025).

The held-out set: DIC targets uniform over the prior (the published box, reachable part), ``cells_per_point``
cells of the degenerate population of each target (16 in the publication), each simulated with the training
protocol, optionally with noisy current. :func:`evaluate_dic_posterior` reports

* accuracy: MAE of the posterior mean on ``(g_s, g_u)``, overall, per observed firing class and on the
  non-silent trains (``non_silent``: the published footing, next to :data:`PUBLISHED_MAE`), and of the
  posterior median (``mae_median_*``, the point estimate that minimises the absolute error);
* the ambiguity floor: the mean absolute deviation of the posterior's own samples around their mean. For a
  calibrated posterior this *is* the expected MAE, so when the MAE is near it, the error comes from the
  spike-train → DIC map (cells with different DICs firing alike), not from the estimator;
* calibration: SBC (ranks, KS per dimension) and TARP on one cell per target (independent pairs), and again on
  the firing ones only (``sbc_firing``, ``tarp_firing``: the observations ``infer`` accepts);
* predictive fidelity: for observations of ``ppc_points`` targets, ``ppc_cells`` cells drawn from the
  conductance posterior are simulated (same protocol and noise) and compared with the observed firing class;
  next to it, the same fraction for the *true* population of the target (the other cells of the same point),
  i.e. what a perfect DIC estimate could achieve.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ..core.checks import is_int
from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model
from ._utils import Seed, numpy_rng
from .features import SUMMARY_NAMES
from .posterior import DICPosterior
from .priors import DICPrior
from .simulators import DICSimulator
from ..spiketrains import draw_jitter_sd

__all__ = ["HeldOutSet", "heldout_set", "evaluate_dic_posterior", "CLASSES", "classes_of", "PUBLISHED_MAE",
           "published_comparison", "observed_features", "population_fidelity", "conductance_calibration"]

CLASSES = ("silent", "spiking", "bursting")
#: Published MAE (g_s, g_u) of the spike-times network (Brandoit et al. 2025): posterior point estimate on
#: non-silent noise-free held-out trains (< 3 spikes removed), per class by the CV_ISI <= 0.15 rule.
PUBLISHED_MAE: dict[str, dict[str, tuple[float, float]]] = {
    "stg": {"non_silent": (2.85, 1.75), "spiking": (4.65, 2.30), "bursting": (0.81, 1.14)},
    "da": {"non_silent": (2.36, 1.01), "spiking": (2.57, 1.08), "bursting": (1.25, 0.61)},
}
_CLASS_COLS = [SUMMARY_NAMES.index(f"is_{c}") for c in CLASSES]


def classes_of(x: NDArray | torch.Tensor) -> NDArray[np.int64]:
    """Firing class code (0 silent, 1 spiking, 2 bursting; -1 invalid row) of summary features ``x``."""
    x = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=float)
    onehot = x[:, _CLASS_COLS]
    code = np.argmax(onehot, axis=1).astype(np.int64)
    code[~np.isfinite(onehot).all(axis=1)] = -1
    return code


@dataclass(frozen=True)
class HeldOutSet:
    """Held-out observations: ``theta[i]`` (DIC target), ``cells[i]`` (conductances), ``x[i]`` (features).

    ``point[i]`` is the index of the target, ``klass[i]`` the firing class code of the observation.
    """

    model: str
    theta: torch.Tensor
    cells: NDArray[np.float64]
    x: torch.Tensor
    point: NDArray[np.int64]
    klass: NDArray[np.int64]
    noise_std: float
    cells_per_point: int
    protocol: dict[str, float]

    def __len__(self) -> int:
        return int(self.theta.shape[0])

    def first_of_each_point(self) -> NDArray[np.int64]:
        """One observation per target: independent (θ, x) pairs, as SBC and TARP assume."""
        return np.flatnonzero(np.r_[True, np.diff(self.point) != 0])


def heldout_set(
    model: str | ConductanceModel,
    *,
    n_points: int = 200,
    cells_per_point: int = 16,
    noise_std: float = 0.0,
    seed: Seed = 0,
    prior: DICPrior | None = None,
    n_threads: int | None = None,
    jitter_std: float = 0.0,
    **protocol: Any,
) -> HeldOutSet:
    """Draw ``n_points`` DIC targets from ``prior`` (default ``DICPrior(model)``), ``cells_per_point`` cells of
    the degenerate population of each, and simulate them (``protocol``: ``duration``, ``transient``, ``dt``);
    ``jitter_std`` > 0 moves every spike by N(0, jitter_std²) ms before encoding (detection jitter)."""
    from ..core.populations import degenerate_population

    model = get_model(model)
    for name, v in (("n_points", n_points), ("cells_per_point", cells_per_point)):
        if not is_int(v, 1):
            raise InvalidInputError(f"{name}: expected a positive int, got {v!r}")
    rng = numpy_rng(seed)
    prior = DICPrior(model) if prior is None else prior
    targets = prior.sample((int(n_points),), seed=rng).to(torch.float64).numpy()
    g = degenerate_population(model, targets[:, 0], targets[:, 1], int(cells_per_point), seed=rng)
    cells = g.reshape(-1, model.n_conductances)
    sim = DICSimulator(model, noise_std=noise_std, n_threads=n_threads, **protocol)
    if not (np.isfinite(jitter_std) and jitter_std >= 0):
        raise InvalidInputError(f"jitter_std: expected a finite sd >= 0 ms, got {jitter_std!r}")
    jit = np.full(cells.shape[0], float(jitter_std)) if jitter_std > 0 else None
    x = torch.as_tensor(sim.simulate_conductances(cells, seed=rng, jitter_std=jit), dtype=torch.float32)
    theta = torch.as_tensor(np.repeat(targets, cells_per_point, axis=0), dtype=torch.float32)
    proto = {"duration": sim.duration, "transient": sim.transient, "dt": sim.dt}
    return HeldOutSet(model.name, theta, cells, x, np.repeat(np.arange(n_points), cells_per_point), classes_of(x),
                      float(noise_std), int(cells_per_point), proto)  # fmt: skip


def _posterior_samples(posterior: DICPosterior, x: torch.Tensor, n: int, batch: int = 256) -> torch.Tensor:
    """``(n, N, 2)`` DIC samples for every row of ``x`` (sbi's batched sampling, in slices of ``batch`` rows)."""
    inner = posterior.posterior
    parts = []
    for a in range(0, x.shape[0], batch):
        xs = x[a : a + batch]
        parts.append(inner.sample_batched((n,), x=xs, show_progress_bars=False))
    return torch.cat(parts, dim=1)


def _mae_block(err: NDArray, spread: NDArray, klass: NDArray, err_median: NDArray | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    groups = [("all", np.ones(klass.shape, bool)), ("non_silent", klass > 0)] + [(c, klass == i) for i, c in enumerate(CLASSES)]
    for name, mask in groups:
        if mask.any():
            out[name] = {
                "n": int(mask.sum()),
                "mae_g_s": float(err[mask, 0].mean()),
                "mae_g_u": float(err[mask, 1].mean()),
                "posterior_mad_g_s": float(spread[mask, 0].mean()),
                "posterior_mad_g_u": float(spread[mask, 1].mean()),
            }
            if err_median is not None:  # the posterior median is the point estimate that minimises the MAE
                out[name]["mae_median_g_s"] = float(err_median[mask, 0].mean())
                out[name]["mae_median_g_u"] = float(err_median[mask, 1].mean())
    return out


def published_comparison(model: str, accuracy: dict[str, Any]) -> dict[str, Any]:
    """Per class on non-silent trains: this posterior's MAE (mean and median) next to :data:`PUBLISHED_MAE`.

    ``accuracy`` is the ``"accuracy"`` block of :func:`evaluate_dic_posterior`. Returns, per class, ``mae``,
    ``mae_median``, ``published`` (each ``[g_s, g_u]``) and ``ratio`` (posterior mean over published).
    """
    published = PUBLISHED_MAE.get(str(model), {})
    out: dict[str, Any] = {}
    for name in ("non_silent", "spiking", "bursting"):
        a = accuracy.get(name)
        if a is None:
            continue
        mae = [a["mae_g_s"], a["mae_g_u"]]
        row: dict[str, Any] = {"n": a["n"], "mae": mae}
        if "mae_median_g_s" in a:
            row["mae_median"] = [a["mae_median_g_s"], a["mae_median_g_u"]]
        if name in published:
            row["published"] = list(published[name])
            row["ratio"] = [m / p for m, p in zip(mae, published[name])]
        out[name] = row
    return out


def evaluate_dic_posterior(
    posterior: DICPosterior,
    heldout: HeldOutSet,
    *,
    n_samples: int = 500,
    calibration_samples: int = 1000,
    ppc_points: int = 100,
    ppc_cells: int = 100,
    seed: Seed = 0,
    n_threads: int | None = None,
) -> dict[str, Any]:
    """Accuracy, ambiguity floor, calibration and predictive fidelity of ``posterior`` on ``heldout``.

    Returns a JSON-serialisable dict (see the module docstring for the definitions).
    """
    from ..core.simulator import simulate
    from ..spiketrains import features_from_csr
    from .diagnostics import MIN_SBC_PAIRS, simulation_based_calibration, tarp_calibration

    if not isinstance(posterior, DICPosterior):
        raise InvalidInputError(f"posterior: expected a DICPosterior, got {type(posterior).__name__}")
    if posterior.model.name != heldout.model:
        raise InvalidInputError(f"heldout: built for model {heldout.model!r}, the posterior is {posterior.model.name!r}")
    rng = numpy_rng(seed)
    t0 = time.perf_counter()
    # A posterior with known conditions gets the held-out set's (its noise level), as `infer` passes the user's.
    hx = posterior.condition(heldout.x, **posterior.conditions_among(noise_std=heldout.noise_std))
    valid = torch.isfinite(hx).all(dim=1).numpy()
    x, theta, klass = hx[valid], heldout.theta[valid].numpy(), heldout.klass[valid]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(0, 2**62)))
        samples = _posterior_samples(posterior, x, int(n_samples)).numpy()
    mean = samples.mean(axis=0)
    err = np.abs(mean - theta)
    spread = np.abs(samples - mean[None]).mean(axis=0)
    report: dict[str, Any] = {
        "n_observations": int(valid.sum()),
        "n_invalid": int((~valid).sum()),
        "noise_std": heldout.noise_std,
        "cells_per_point": heldout.cells_per_point,
        "n_points": int(heldout.point.max() + 1),
        "posterior_samples": int(n_samples),
        "class_counts": {c: int((klass == i).sum()) for i, c in enumerate(CLASSES)},
        "accuracy": _mae_block(err, spread, klass, np.abs(np.median(samples, axis=0) - theta)),
    }
    lo, hi = np.quantile(samples, [0.05, 0.95], axis=0)
    covered = (theta >= lo) & (theta <= hi)
    report["coverage_90"] = [float(v) for v in covered.mean(axis=0)]
    report["coverage_90_non_silent"] = [float(v) for v in covered[klass > 0].mean(axis=0)] if (klass > 0).any() else None
    sampling_s = time.perf_counter() - t0

    # Calibration on independent pairs (one cell per target).
    first = heldout.first_of_each_point()
    first = first[valid[first]]
    sbc = simulation_based_calibration(posterior, heldout.theta[first], hx[first],
                                       num_posterior_samples=calibration_samples, seed=rng)  # fmt: skip
    tarp = tarp_calibration(posterior, heldout.theta[first], hx[first],
                            num_posterior_samples=calibration_samples, seed=rng)  # fmt: skip
    report["sbc"] = {"n": int(len(first)), "ks_pvals": [float(p) for p in sbc.ks_pvals],
                     "c2st_ranks": [float(c) for c in sbc.c2st_ranks], "uniform": sbc.uniform()}  # fmt: skip
    report["tarp"] = {"n": int(len(first)), "atc": tarp.atc, "ks_pval": tarp.ks_pval, "calibrated": tarp.ks_pval > 0.05}
    # The same on firing observations only: the cells `infer` accepts (>= 3 spikes). Selecting pairs by x keeps
    # the ranks uniform for a calibrated posterior, so this is a valid test on its own. It matters because a
    # silent train carries no information about the noise level: a posterior trained on noise-free and noisy
    # simulations answers a silent observation with their mixture, which cannot be calibrated for both held-out
    # sets at once.
    firing = first[heldout.klass[first] > 0]
    if firing.size >= MIN_SBC_PAIRS:
        sbc_f = simulation_based_calibration(posterior, heldout.theta[firing], hx[firing],
                                             num_posterior_samples=calibration_samples, seed=rng)  # fmt: skip
        tarp_f = tarp_calibration(posterior, heldout.theta[firing], hx[firing],
                                  num_posterior_samples=calibration_samples, seed=rng)  # fmt: skip
        report["sbc_firing"] = {"n": int(firing.size), "ks_pvals": [float(p) for p in sbc_f.ks_pvals],
                                "c2st_ranks": [float(c) for c in sbc_f.c2st_ranks], "uniform": sbc_f.uniform()}  # fmt: skip
        report["tarp_firing"] = {"n": int(firing.size), "atc": tarp_f.atc, "ks_pval": tarp_f.ks_pval,
                                 "calibrated": tarp_f.ks_pval > 0.05}  # fmt: skip

    # Predictive fidelity: posterior populations vs the true population of the same target.
    ppc_idx = first[: int(ppc_points)]
    if ppc_idx.size and ppc_cells > 0:
        xs = hx[ppc_idx]
        g = np.concatenate([posterior.sample((int(ppc_cells),), x=xs[i], seed=rng).numpy() for i in range(len(ppc_idx))])
        noise = heldout.noise_std
        res = simulate(posterior.model, g, noise_std=noise, seed=rng if noise > 0 else None, n_threads=n_threads,
                       progress=False, **heldout.protocol)  # fmt: skip
        feats = features_from_csr(res.times, res.offsets, res.t_start, res.t_stop)
        sim_class = np.asarray(feats["firing_class_code"]).reshape(len(ppc_idx), int(ppc_cells))
        obs_class = heldout.klass[ppc_idx]
        frac = (sim_class == obs_class[:, None]).mean(axis=1)
        # The true population: the other cells of each target, already simulated in the held-out set.
        same_point = heldout.point[:, None] == heldout.point[ppc_idx][None, :]
        true_frac = np.array([
            np.mean(heldout.klass[same_point[:, j] & (np.arange(len(heldout)) != ppc_idx[j])] == obs_class[j])
            if heldout.cells_per_point > 1 else math.nan for j in range(len(ppc_idx))
        ])  # fmt: skip
        report["class_reproduction"] = {
            "observations": int(len(ppc_idx)),
            "cells_per_observation": int(ppc_cells),
            "mean": float(frac.mean()),
            "median": float(np.median(frac)),
            "fraction_of_observations_at_least_95": float((frac >= 0.95).mean()),
            "per_class_mean": {c: float(frac[obs_class == i].mean()) for i, c in enumerate(CLASSES) if (obs_class == i).any()},
            "true_population_mean": float(np.nanmean(true_frac)),
        }  # fmt: skip
    report["seconds"] = {"sampling": sampling_s, "total": time.perf_counter() - t0}
    return report


def observed_features(x: NDArray | torch.Tensor) -> dict[str, NDArray]:
    """The features :func:`~dic_sbi.spiketrains.fires_like` compares, read back from summary features ``x``.

    ``firing_class`` (str), ``mean_rate`` (Hz), ``burst_period`` (ms) and ``spikes_per_burst`` are encoded in
    ``x`` (log10 columns and indicators), so a held-out set needs no spike times to be scored for fidelity;
    undefined values (no full burst, fewer than two bursts) come back as NaN.
    """
    x = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=float)
    col = {name: x[:, SUMMARY_NAMES.index(name)] for name in SUMMARY_NAMES}
    code = classes_of(x)
    return {
        "firing_class": np.array([CLASSES[c] if c >= 0 else "invalid" for c in code]),
        "mean_rate": np.where(code > 0, 10.0 ** col["log10_rate_hz"], 0.0),
        "burst_period": np.where(col["has_burst_period"] > 0.5, 10.0 ** col["log10_burst_period_ms"], np.nan),
        "spikes_per_burst": np.where(col["has_bursts"] > 0.5, 10.0 ** col["log10_spikes_per_burst"], np.nan),
    }


def population_fidelity(
    posterior: DICPosterior,
    heldout: HeldOutSet,
    *,
    n_observations: int = 100,
    n_cells: int = 100,
    seed: Seed = 0,
    n_threads: int | None = None,
    at_true_dics: bool = False,
    screen: int = 1,
) -> dict[str, Any]:
    """How often the cells a posterior returns fire like the observation, per firing class.

    For up to ``n_observations`` non-silent observations (one per target), ``n_cells`` DIC samples from
    ``q(t | x)`` are pushed to cells twice on the same DIC samples: free draws from the seed law (``seed_law``)
    and, if the posterior has one, from its :class:`~dic_sbi.sbi.FreeConductanceEstimator` (``learned``). Every
    cell is simulated with the held-out protocol and noise level and scored with
    :func:`~dic_sbi.spiketrains.fires_like` (class; rate ± 10 %; bursters: period ± 10 %, spikes per burst ± 1).
    ``at_true_dics``: every cell gets the observation's *true* DICs instead of posterior samples; the DIC estimate
    is then taken out, and what is left is the free-conductance law's own share (the seed law's: what the
    compensation alone gives).
    ``screen``: also score ``screened``, what ``infer`` returns with a screen: ``screen × n_cells`` cells of the
    learned law per observation (their own DIC samples), of which the ``n_cells`` that the posterior's
    :class:`~dic_sbi.sbi.FiringEmulator` finds likeliest to fire like it are kept
    (:func:`~dic_sbi.sbi.emulator.screen_population`; a noise-aware emulator is told the held-out σ, as
    ``infer`` tells it).

    Returns
    -------
    dict
        Per method: ``fidelity`` and ``same_class`` (mean over observations) overall and per class, ``passes``
        (the share of cells within each tolerance on its own: ``mean_rate``, and for bursters ``burst_period``
        and ``spikes_per_burst``; :func:`~dic_sbi.spiketrains.fidelity_checks`),
        ``coverage_log_std`` (mean over observations of the mean std of log ḡ of the faithful cells), and for
        ``learned`` the cells that fell back to the seed law. Also ``n_observations``, ``n_cells`` and ``dics``
        (``"posterior"`` or ``"true"``).
    """
    from ..core.populations import degenerate_population
    from ..core.simulator import simulate
    from ..spiketrains import features_from_csr, fidelity_checks

    rng = numpy_rng(seed)
    first = heldout.first_of_each_point()
    obs_idx = first[heldout.klass[first] > 0][: int(n_observations)]
    if obs_idx.size == 0:
        raise InvalidInputError("heldout: no non-silent observation to score")
    raw = heldout.x[torch.as_tensor(obs_idx)]
    observed = observed_features(raw)
    x = posterior.condition(raw, **posterior.conditions_among(noise_std=heldout.noise_std))
    if at_true_dics:
        truth = heldout.theta[torch.as_tensor(obs_idx)].to(torch.float64).numpy()
        t = np.broadcast_to(truth, (int(n_cells),) + truth.shape)  # (n_cells, B, 2)
    else:
        with torch.random.fork_rng(devices=[]):  # sbi samples with torch's global generator: seed it from ours
            torch.manual_seed(int(rng.integers(0, 2**62)))
            t = _posterior_samples(posterior, x, int(n_cells)).to(torch.float64).numpy()  # (n_cells, B, 2)
    B, m = obs_idx.size, posterior.model
    methods: dict[str, np.ndarray] = {}
    flat_t = t.transpose(1, 0, 2).reshape(-1, 2)  # observation-major
    methods["seed_law"] = degenerate_population(m, flat_t[:, 0], flat_t[:, 1], 1, seed=rng, pair=posterior.pair)[:, 0]
    fallback = 0
    if posterior.free_conductances is not None:
        xr = x.repeat_interleave(int(n_cells), dim=0)
        methods["learned"], fallback = posterior.free_conductances.sample_cells(flat_t, xr, seed=rng)
    if int(screen) > 1:
        methods["screened"] = _screened_cells(posterior, x, t if at_true_dics else None, observed, int(n_cells),
                                              int(screen), rng, heldout.noise_std)  # fmt: skip
    out: dict[str, Any] = {"n_observations": int(B), "n_cells": int(n_cells), "noise_std": heldout.noise_std,
                           "dics": "true" if at_true_dics else "posterior"}  # fmt: skip
    klass = observed["firing_class"]
    for name, g in methods.items():
        noise = dict(noise_std=heldout.noise_std, seed=rng) if heldout.noise_std > 0 else {}
        res = simulate(m, g, progress=False, n_threads=n_threads, **noise, **heldout.protocol)
        f = features_from_csr(res.times, res.offsets, res.t_start, res.t_stop)
        fid, same, cover = np.empty(B), np.empty(B), np.full(B, np.nan)
        passes = {c: np.full(B, np.nan) for c in ("mean_rate", "burst_period", "spikes_per_burst")}
        for i in range(B):
            sl = slice(i * int(n_cells), (i + 1) * int(n_cells))
            s_i, ok_i, checks = fidelity_checks({k: np.asarray(v)[sl] for k, v in f.items()}, {k: v[i] for k, v in observed.items()})
            fid[i], same[i] = ok_i.mean(), s_i.mean()
            for c, passed in checks.items():  # each tolerance on its own, among all cells (class not required)
                passes[c][i] = passed.mean()
            if ok_i.sum() >= 2:
                cover[i] = np.log(g[sl][ok_i]).std(axis=0, ddof=1).mean()
        block: dict[str, Any] = {}
        for cname, mask in [("non_silent", np.ones(B, bool)), ("spiking", klass == "spiking"), ("bursting", klass == "bursting")]:
            if mask.any():
                block[cname] = {"n": int(mask.sum()), "fidelity": float(fid[mask].mean()),
                                "same_class": float(same[mask].mean()),
                                "coverage_log_std": float(np.nanmean(cover[mask])) if np.isfinite(cover[mask]).any() else None,
                                "passes": {c: float(np.nanmean(v[mask])) for c, v in passes.items() if np.isfinite(v[mask]).any()}}  # fmt: skip
        if name == "learned":
            block["fallback_cells"] = int(fallback)
        out[name] = block
    return out


def _screened_cells(posterior: DICPosterior, x: torch.Tensor, true_t: NDArray | None, observed: dict[str, NDArray],
                    n_cells: int, screen: int, rng: np.random.Generator, noise_std: float = 0.0) -> NDArray:
    """``n_cells`` screened cells per row of ``x`` (observation-major), as ``infer`` makes them (a noise-aware
    emulator told the observations' σ)."""
    from .emulator import screen_population

    if posterior.emulator is None or posterior.free_conductances is None:
        raise InvalidInputError("screen: needs a posterior with a learned free-conductance law and a firing emulator")
    if true_t is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**62)))
            t = _posterior_samples(posterior, x, n_cells * screen).to(torch.float64).numpy()
    else:
        t = np.broadcast_to(true_t[0], (n_cells * screen,) + true_t.shape[1:])
    out = []
    for i in range(x.shape[0]):
        def draw(k: int, i: int = i) -> tuple[NDArray, NDArray]:
            g, _ = posterior.free_conductances.sample_cells(np.ascontiguousarray(t[:k, i, :]), x[i : i + 1], seed=rng)
            return g, t[:k, i, :]

        g, _, _ = screen_population(draw, posterior.emulator, {k: v[i] for k, v in observed.items()}, n_cells, screen=screen,
                                    noise_std=noise_std if posterior.emulator.noise_input else None)  # fmt: skip
        out.append(g)
    return np.concatenate(out)


def conductance_calibration(
    posterior: DICPosterior,
    *,
    n_pairs: int = 300,
    num_posterior_samples: int = 200,
    noise_std: float = 0.0,
    seed: Seed = 0,
    n_threads: int | None = None,
    return_ranks: bool = False,
    jitter: tuple[float, float] | None | str = "posterior",
    firing_only: bool = False,
) -> dict[str, Any]:
    """SBC and TARP of a DIC posterior **in conductance space** (with its free-conductance law, if it has one).

    Prior-predictive pairs are drawn from the generative process the posterior inverts: ``t ~`` its
    :class:`~dic_sbi.sbi.DICPrior`, one cell of the seed law's degenerate population (the seed law the
    free-conductance law was trained under, if the posterior has one), simulated with the training
    protocol (noise ``noise_std``) and spike-time jitter ``jitter``: by default the posterior's
    :attr:`~dic_sbi.sbi.DICPosterior.training_jitter` (jitter is no input of the network, so a posterior trained
    on a jitter mixture inverts that mixture, and pairs drawn without it test another process: ranks on
    unjittered pairs alone need not be uniform), ``None`` for none, or ``(fraction, max_sd)``.
    ``posterior.sample_batched`` gives the cells: ``q(t | x)`` then
    ``q(z | t, x)`` (or the seed law) and the compensation. ``sbi.diagnostics.run_sbc`` / ``check_sbc`` rank every
    conductance (log scale: ranks do not change); ``run_tarp`` / ``check_tarp`` on log-conductances.
    ``firing_only``: rank only the pairs whose train fires (spiking or bursting): the recordings ``infer``
    accepts. Selecting pairs by ``x`` keeps a calibrated posterior's ranks uniform, so it is a test too, of the
    posterior where it is used; ``n_pairs`` are drawn either way and ``n_pairs`` in the result says how many
    were ranked.

    Returns
    -------
    dict
        ``sbc_ks_pvals`` per conductance, ``sbc_c2st_ranks`` per conductance, ``tarp_atc``, ``tarp_ks_pval``,
        ``n_pairs`` used; with ``return_ranks``, also ``sbc_ranks``: ``(n_pairs, k)`` fractions of each pair's
        posterior samples below its true conductance (uniform on [0, 1] for a calibrated posterior), and
        ``dic_ranks``: ``(n_pairs, 2)``, the same for the samples' DICs against the pairs' true DICs, and
        ``classes``: each ranked pair's firing class code (0 silent, 1 spiking, 2 bursting).
    """
    from sbi.diagnostics import check_sbc, check_tarp, run_sbc, run_tarp

    rng = numpy_rng(seed)
    # The cells' law is the free-conductance law's model's seed law (a widened one, if the law was trained on it).
    free = posterior.free_conductances
    sim = DICSimulator(posterior.model if free is None else free.model, noise_std=noise_std, n_threads=n_threads,
                       output=posterior.simulator.output,
                       duration=posterior.simulator.duration, transient=posterior.simulator.transient,
                       dt=posterior.simulator.dt)  # fmt: skip
    prior = posterior.prior if isinstance(posterior.prior, DICPrior) else DICPrior(posterior.model)
    if isinstance(jitter, str):
        if jitter != "posterior":
            raise InvalidInputError(f"jitter: expected (fraction, max_sd), None or 'posterior', got {jitter!r}")
        jitter = getattr(posterior, "training_jitter", None)
    t = prior.sample((int(n_pairs),), seed=rng)
    jitter_sd = draw_jitter_sd(jitter, t.shape[0], rng) if jitter is not None else None
    x, g = sim.simulate_with_cells(t, seed=rng, jitter_std=jitter_sd)
    x = posterior.condition(x, **posterior.conditions_among(noise_std=float(noise_std)))
    keep = torch.isfinite(x).all(dim=1) & torch.as_tensor(np.isfinite(g).all(axis=1))
    klass = classes_of(x[:, : len(SUMMARY_NAMES)])
    if firing_only:
        keep &= torch.as_tensor(klass > 0)
        if not bool(keep.any()):
            raise InvalidInputError(f"firing_only: none of the {int(n_pairs)} pairs fires; draw more pairs")
    log_g = torch.as_tensor(np.log(g[keep.numpy()]), dtype=torch.float32)
    x = x[keep]

    class _LogCells:
        """The posterior over log ḡ, as sbi's diagnostics call it (ranks and TARP distances in log space); keeps
        the DIC samples of its last call (the cells' exact DICs)."""

        dics: torch.Tensor | None = None

        def sample_batched(self, shape, x, **kwargs):
            kwargs.pop("show_progress_bars", None)
            cells, self.dics = posterior.sample_batched(shape, x=x, seed=rng, return_dics=True)
            return torch.log(cells).to(torch.float32)

    log_cells = _LogCells()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(0, 2**62)))
        ranks, dap = run_sbc(log_g, x, log_cells, num_posterior_samples=int(num_posterior_samples),
                             use_batched_sampling=True, show_progress_bar=False)  # fmt: skip
        # The same samples' DICs against the pairs' true DICs: whether a miss in conductance space is already
        # one of q(t | x) (every conductance depends on t) or comes with the free-conductance law.
        dic_ranks = (log_cells.dics.to(torch.float64) < t[keep].to(torch.float64)[None]).double().mean(dim=0)
        reference = torch.as_tensor(np.log(sim.cells(prior.sample((log_g.shape[0],), seed=rng), seed=rng)), dtype=torch.float32)
        stats = check_sbc(ranks, reference, dap, num_posterior_samples=int(num_posterior_samples))
        ecp, alpha = run_tarp(log_g, x, _LogCells(), num_posterior_samples=int(num_posterior_samples),
                              use_batched_sampling=True, show_progress_bar=False, num_bins=max(2, log_g.shape[0] // 10))  # fmt: skip
        atc, ks = check_tarp(ecp, alpha)
    out = {"n_pairs": int(log_g.shape[0]), "num_posterior_samples": int(num_posterior_samples), "noise_std": float(noise_std),
           "jitter": None if jitter is None else list(jitter), "firing_only": bool(firing_only),
           "sbc_ks_pvals": [float(v) for v in stats["ks_pvals"]], "sbc_c2st_ranks": [float(v) for v in stats["c2st_ranks"]],
           "tarp_atc": float(atc), "tarp_ks_pval": float(ks), "names": list(posterior.model.conductance_names)}  # fmt: skip
    if return_ranks:
        out["sbc_ranks"] = (ranks.to(torch.float64) / int(num_posterior_samples)).tolist()
        out["dic_ranks"] = dic_ranks.tolist()
        out["classes"] = klass[keep.numpy()].tolist()
    return out
