"""Diagnostics: calibration through ``sbi.diagnostics`` (SBC, TARP), and a posterior-predictive check.

SBC and TARP are run on the DIC posterior (θ = (g_s, g_u)), whose prior is known; the conductances are a
deterministic-given-noise push-forward of it and need no separate calibration. Rows of ``x`` with NaN or inf
(failed simulations) are dropped first, and counted, so the ranks are never computed on invalid data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model
from ._utils import Seed, numpy_rng, simulation_settings
from .posterior import DICPosterior

__all__ = [
    "SBCResult",
    "TARPResult",
    "PredictiveCheck",
    "simulation_based_calibration",
    "tarp_calibration",
    "posterior_predictive_check",
    "DEFAULT_PPC_FEATURES",
]


def _inner(posterior: Any) -> Any:
    return posterior.posterior if isinstance(posterior, DICPosterior) else posterior


def _finite_pairs(thetas: Tensor, xs: Tensor) -> tuple[Tensor, Tensor, int]:
    thetas = torch.as_tensor(thetas, dtype=torch.float32)
    xs = torch.as_tensor(xs, dtype=torch.float32)
    if thetas.ndim != 2 or xs.ndim < 2 or thetas.shape[0] != xs.shape[0]:
        raise InvalidInputError(f"thetas, xs: expected (n, d) and (n, k) with the same n, got {tuple(thetas.shape)} and {tuple(xs.shape)}")
    keep = torch.isfinite(xs.reshape(xs.shape[0], -1)).all(dim=1) & torch.isfinite(thetas).all(dim=1)
    if not keep.any():
        raise InvalidInputError("xs: every simulation has NaN or inf; nothing to calibrate on")
    return thetas[keep], xs[keep], int((~keep).sum())


@dataclass(frozen=True)
class SBCResult:
    """Simulation-based calibration (Talts et al. 2018) of a posterior over its parameters.

    Attributes
    ----------
    ranks : Tensor
        ``(n, d)`` rank of each true parameter among ``num_posterior_samples`` posterior samples.
    dap_samples : Tensor
        ``(n, d)`` data-averaged posterior samples.
    ks_pvals : Tensor
        ``(d,)`` Kolmogorov-Smirnov p-values of the ranks against the uniform law.
    c2st_ranks, c2st_dap : Tensor
        Classifier two-sample accuracies (0.5 = indistinguishable): ranks vs uniform, DAP vs prior.
    n_dropped : int
        Simulations left out because ``x`` had NaN or inf.
    """

    ranks: Tensor
    dap_samples: Tensor
    ks_pvals: Tensor
    c2st_ranks: Tensor
    c2st_dap: Tensor
    n_dropped: int
    num_posterior_samples: int

    def uniform(self, alpha: float = 0.05) -> bool:
        """Whether no marginal's ranks are rejected as uniform at level ``alpha`` (Bonferroni over dims)."""
        return bool(torch.all(self.ks_pvals > alpha / self.ks_pvals.numel()))


#: Fewest valid (θ, x) pairs SBC runs on: ``check_sbc``'s C2ST cross-validates the n ranks against n reference
#: draws in 5 folds (2n ≥ 5) and standardises them (a spread needs n ≥ 2); measured: 1 and 2 pairs fail, 3 run.
MIN_SBC_PAIRS = 3


def simulation_based_calibration(
    posterior: Any,
    thetas: Tensor,
    xs: Tensor,
    *,
    num_posterior_samples: int = 1000,
    seed: Seed = None,
    show_progress_bar: bool = False,
) -> SBCResult:
    """SBC with ``sbi.diagnostics.run_sbc`` / ``check_sbc`` on prior-predictive pairs ``(thetas, xs)``.

    ``posterior`` is a :class:`~dic_sbi.sbi.DICPosterior` (its DIC posterior is checked) or any sbi posterior;
    ``thetas`` must come from its prior. NaN/inf rows are dropped first.

    References: Talts, Betancourt, Simpson, Vehtari, Gelman (2018). arXiv:1804.06788.
    """
    from sbi.diagnostics import check_sbc, run_sbc

    inner = _inner(posterior)
    thetas, xs, dropped = _finite_pairs(thetas, xs)
    if thetas.shape[0] < MIN_SBC_PAIRS:
        raise InvalidInputError(f"thetas, xs: SBC needs at least {MIN_SBC_PAIRS} valid pairs, got {thetas.shape[0]}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(numpy_rng(seed).integers(0, 2**62)))
        ranks, dap = run_sbc(thetas, xs, inner, num_posterior_samples=num_posterior_samples, show_progress_bar=show_progress_bar)
        prior_samples = inner.prior.sample((thetas.shape[0],))
        stats = check_sbc(ranks, prior_samples, dap, num_posterior_samples=num_posterior_samples)
    return SBCResult(ranks, dap, stats["ks_pvals"], stats["c2st_ranks"], stats["c2st_dap"], dropped, num_posterior_samples)


@dataclass(frozen=True)
class TARPResult:
    """Tests of Accuracy with Random Points (Lemos et al. 2023).

    Attributes
    ----------
    ecp, alpha : Tensor
        Expected coverage probability at each credibility level ``alpha`` (calibrated: ``ecp ≈ alpha``).
    atc : float
        Area to curve: > 0 under-confident, < 0 over-confident, ≈ 0 calibrated.
    ks_pval : float
        KS p-value of ``ecp`` against ``alpha``.
    n_dropped : int
        Simulations left out because ``x`` had NaN or inf.
    """

    ecp: Tensor
    alpha: Tensor
    atc: float
    ks_pval: float
    n_dropped: int


def tarp_calibration(
    posterior: Any,
    thetas: Tensor,
    xs: Tensor,
    *,
    num_posterior_samples: int = 1000,
    seed: Seed = None,
    show_progress_bar: bool = False,
) -> TARPResult:
    """TARP with ``sbi.diagnostics.run_tarp`` / ``check_tarp`` (NaN/inf rows dropped first).

    References: Lemos, Coogan, Hezaveh, Perreault-Levasseur (2023). ICML, PMLR 202:19256-19273.
    """
    from sbi.diagnostics import check_tarp, run_tarp

    inner = _inner(posterior)
    thetas, xs, dropped = _finite_pairs(thetas, xs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(numpy_rng(seed).integers(0, 2**62)))
        # sbi's default of n // 10 bins is 0 below 10 pairs, where torch.histogram raises.
        ecp, alpha = run_tarp(thetas, xs, inner, num_posterior_samples=num_posterior_samples,
                              show_progress_bar=show_progress_bar, num_bins=max(2, thetas.shape[0] // 10))  # fmt: skip
    atc, ks_pval = check_tarp(ecp, alpha)
    return TARPResult(ecp, alpha, float(atc), float(ks_pval), dropped)


#: Features compared by default, per observed firing class.
DEFAULT_PPC_FEATURES: dict[str, tuple[str, ...]] = {
    "silent": (),
    "spiking": ("spiking_frequency",),
    "bursting": ("inter_burst_frequency", "spikes_per_burst", "intra_burst_frequency"),
}


@dataclass(frozen=True)
class PredictiveCheck:
    """Result of :func:`posterior_predictive_check`.

    Attributes
    ----------
    observed_class : str
        Firing class of the observation.
    fraction_same_class : float
        Fraction of the simulated cells with the observed firing class.
    fraction_within_tolerance : float
        Fraction with the observed class *and* every compared feature within ``rtol`` of the observed value.
    feature_fractions : dict
        Per compared feature, the fraction of cells within tolerance.
    class_counts : dict
        Simulated cells per firing class.
    observed_features : dict
        The observation's features.
    features : dict
        Features of every simulated cell (arrays, as ``features_from_csr`` returns them).
    conductances : ndarray
        ``(n, n_conductances)`` the simulated cells.
    rtol : float
    """

    observed_class: str
    fraction_same_class: float
    fraction_within_tolerance: float
    feature_fractions: dict[str, float]
    class_counts: dict[str, int]
    observed_features: dict[str, float]
    features: dict[str, NDArray] = field(repr=False)
    conductances: NDArray[np.float64] = field(repr=False)
    rtol: float = 0.2


def _observed_features(observed: Any) -> dict[str, float]:
    import neo

    from ..core.simulator import SimulationResult
    from ..spiketrains import SpikeTrainFeatures, spike_train_features

    if isinstance(observed, SpikeTrainFeatures):
        feats = observed
    elif isinstance(observed, SimulationResult):
        if len(observed) != 1:
            raise InvalidInputError(f"observed: expected one cell, got a SimulationResult of {len(observed)}")
        feats = spike_train_features(observed.spiketrain(0))
    elif isinstance(observed, neo.SpikeTrain):
        feats = spike_train_features(observed)
    elif isinstance(observed, dict):
        return {k: (str(v) if k == "firing_class" else float(v)) for k, v in observed.items()}
    else:
        raise InvalidInputError(
            "observed: expected a neo.SpikeTrain, a one-cell SimulationResult, SpikeTrainFeatures or a dict of features"
        )
    return feats.as_dict()


def posterior_predictive_check(
    posterior: DICPosterior | str | ConductanceModel,
    observed: Any,
    *,
    n: int = 100,
    x: Tensor | None = None,
    conductances: ArrayLike | Tensor | None = None,
    rtol: float = 0.2,
    features: Sequence[str] | None = None,
    duration: float | None = None,
    transient: float | None = None,
    dt: float | None = None,
    noise_std: float | None = None,
    seed: Seed = None,
    n_threads: int | None = None,
) -> PredictiveCheck:
    """Simulate population members and report how many reproduce the observed firing pattern.

    Parameters
    ----------
    posterior
        A :class:`~dic_sbi.sbi.DICPosterior` to draw ``n`` cells from (conditioned on ``x``, default: its
        default x), or a model when ``conductances`` are given.
    observed
        The observation: a ``neo.SpikeTrain``, a one-cell ``SimulationResult``, ``SpikeTrainFeatures`` or a dict
        of features (``firing_class`` and the compared features).
    conductances
        ``(n, n_conductances)`` cells to check instead of sampling.
    rtol
        Relative tolerance of a feature match: ``|simulated - observed| <= rtol · |observed|``.
    features
        Features to compare (default :data:`DEFAULT_PPC_FEATURES` of the observed class).
    duration, transient, dt, noise_std
        Protocol; default the posterior's training simulator's, else the model's (``noise_std``: the value ``x``
        carries when the posterior takes the noise level as a known condition).
    seed
        Seed of the sampling and of the noise.
    """
    from ..core.simulator import simulate
    from ..spiketrains import features_from_csr

    rng = numpy_rng(seed)
    simulator = None
    if isinstance(posterior, DICPosterior):
        model = posterior.model
        simulator = posterior.simulator
    else:
        model = get_model(posterior)
    if conductances is None:
        if not isinstance(posterior, DICPosterior):
            raise InvalidInputError("conductances: required when posterior is a model rather than a DICPosterior")
        if not (isinstance(n, (int, np.integer)) and n >= 1):
            raise InvalidInputError(f"n: expected a positive int, got {n!r}")
        g = posterior.sample((int(n),), x=x, seed=rng).numpy()
    else:
        g = conductances.detach().cpu().numpy() if isinstance(conductances, Tensor) else np.asarray(conductances, dtype=float)
        if g.ndim != 2 or g.shape[1] != model.n_conductances:
            raise InvalidInputError(f"conductances: expected (n, {model.n_conductances}), got {g.shape}")
    if not (np.isfinite(rtol) and rtol >= 0):
        raise InvalidInputError(f"rtol: expected a non-negative tolerance, got {rtol!r}")

    if noise_std is None and isinstance(posterior, DICPosterior) and "noise_std" in posterior.conditions and x is not None:
        noise_std = posterior.conditions_of(x)["noise_std"]  # the noise level the posterior was conditioned on
    proto = simulation_settings(simulator, duration=duration, transient=transient, dt=dt, noise_std=noise_std)
    noise = proto.pop("noise_std") or 0.0
    res = simulate(model, g, **proto, noise_std=noise, seed=rng if noise > 0 else None, n_threads=n_threads,
                   progress=False)  # fmt: skip
    sim = features_from_csr(res.times, res.offsets, res.t_start, res.t_stop)
    obs = _observed_features(observed)
    klass = obs.get("firing_class")
    if klass not in DEFAULT_PPC_FEATURES:
        raise InvalidInputError(f"observed: firing_class must be one of {tuple(DEFAULT_PPC_FEATURES)}, got {klass!r}")
    names = DEFAULT_PPC_FEATURES[klass] if features is None else tuple(features)
    unknown = [f for f in names if f not in sim or f not in obs]
    if unknown:
        raise InvalidInputError(f"features: unknown or missing in the observation: {unknown}")
    same = sim["firing_class"] == klass
    within = same.copy()
    fractions: dict[str, float] = {}
    for f in names:
        with np.errstate(invalid="ignore"):
            close = np.abs(sim[f] - obs[f]) <= rtol * abs(obs[f])  # NaN compares False: undefined never matches
        fractions[f] = float(np.mean(close))
        within &= close
    counts = {c: int(np.sum(sim["firing_class"] == c)) for c in DEFAULT_PPC_FEATURES}
    return PredictiveCheck(
        observed_class=klass,
        fraction_same_class=float(np.mean(same)),
        fraction_within_tolerance=float(np.mean(within)),
        feature_fractions=fractions,
        class_counts=counts,
        observed_features=obs,
        features=sim,
        conductances=g,
        rtol=float(rtol),
    )
