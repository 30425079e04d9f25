r"""A posterior over conductances through DICs: an sbi posterior ``q(g_s, g_u | x)`` and the compensation.

Generative process of :class:`DICPosterior` for an observation ``x``:

1. ``t = (g_s, g_u) ~ q(t | x)``, the DIC posterior (any sbi posterior over θ = DICs, or a torch distribution);
2. ``ḡ ~ p(ḡ | t)``, one cell of the degenerate population of ``t``
   (:func:`~dic_sbi.core.populations.degenerate_population`: random seed cell, compensating pair solved for
   ``t``, rejection of cells with a negative conductance); with a
   :class:`~dic_sbi.sbi.FreeConductanceEstimator`, the seed cell's free draws ``z`` come from the learned
   ``q(z | t, x)`` instead of the seed law ``p(z)``, and ``p(z)``, ``ρ`` below become ``q(z | t, x)``, ``ρ_q``.

Its density, on the (dim z + 2)-dimensional set the compensation produces and in the coordinates of
:func:`~dic_sbi.core.populations.population_log_density` (free draws ``z``, compensated pair ``ḡ_P``), is

.. math:: \log p(ḡ | x) = \log q(t(ḡ) | x) + \log p(z) + \log |\det ∂t / ∂ḡ_P| - \log ρ(t(ḡ)),

with ``ρ`` the reachability of ``t``. Conductances off that set (not producible by the compensation) have
density 0. The conductance posterior is degenerate by construction: the DICs carry what the spike train
identifies, the population spreads over what it does not (Fyon et al. 2024; Brandoit et al. 2025).

Dtypes follow one rule: everything over **conductances** is float64 (:meth:`~DICPosterior.sample`,
:meth:`~DICPosterior.sample_batched`, :meth:`~DICPosterior.log_prob`, :meth:`~DICPosterior.log_prob_batched`,
:meth:`~DICPosterior.map`, :meth:`~DICPosterior.dics_of`), everything over **DICs** is float32 as in sbi
(:meth:`~DICPosterior.sample_dics`, :meth:`~DICPosterior.sample_dics_batched`, :meth:`~DICPosterior.log_prob_dics`,
:meth:`~DICPosterior.map_dics`). Conductances are float64 because the compensation holds the DICs to 1e-9:
float32 rounding of ḡ (relative 6e-8 on conductances up to ~10⁴ mS/cm²) moves a cell off the set where its
density is defined, so the density methods refuse float32 conductances with an error rather than return -inf.

The class has sbi's posterior interface (``sample``, ``sample_batched``, ``log_prob``, ``log_prob_batched``,
``map``, ``set_default_x``), so ``sbi.diagnostics.run_sbc`` and ``run_tarp`` take it directly, in conductance
space.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor
from torch.distributions import Distribution

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model, same_kinetics
from ..core.checks import check_conductances
from ._utils import Seed, numpy_rng

__all__ = ["DICPosterior"]

_MAX_DRAWS = 1_000_000  # compensation draws per chunk of log_prob's normaliser
_SBI_SAMPLING_OPTIONS = ("max_sampling_batch_size", "reject_outside_prior", "max_sampling_time", "return_partial_on_timeout")


class DICPosterior:
    """Posterior over maximal conductances: a DIC posterior followed by the degenerate-population compensation.

    Arguments:
        posterior: An sbi posterior over ``θ = (g_s, g_u)`` (e.g. from ``NPE(prior=DICPrior(model))``), or a
            torch distribution over the same θ (unconditional: then ``x`` must not be given).
        model: Model name or object.
        pair: Force the compensating pair (default: the model's rule); must match the training simulator.
        calcium_path_tau: DIC convention of the STG calcium path (see :func:`dic_sbi.core.dics.dics`).
        simulator: The :class:`~dic_sbi.sbi.DICSimulator` used for training, kept for its protocol (used by
            :func:`~dic_sbi.sbi.posterior_predictive_check`) and feature layout.
        conditions: Known conditions the posterior takes as inputs besides the spike-train features, with the
            values it was trained on as intervals, e.g. ``{"noise_std": ((0, 0), (5, 5))}`` (σ = 0 or 5) or
            ``{"noise_std": ((0, 0), (0.5, 5))}`` (σ = 0, or anything from 0.5 to 5); ``x`` then carries them
            (:meth:`condition`).
        free_conductances: A :class:`~dic_sbi.sbi.FreeConductanceEstimator`, ``q(z | t, x)``: the free draws
            of the compensation are drawn from it instead of the seed law, so the cells of each DIC sample are
            those that fire like ``x`` (:mod:`dic_sbi.sbi.free_conductances`). Default: the seed law.
        training_jitter: ``(fraction, max_sd)`` of the spike-time jitter mixture of the simulations it was
            trained on (:class:`~dic_sbi.campaign.CampaignSpec`), ``None`` for none. Jitter is not an input of the
            network, so the posterior inverts that mixture; calibration checks draw their prior-predictive pairs
            the same way (:func:`~dic_sbi.sbi.evaluation.conductance_calibration`).
        emulator: A :class:`~dic_sbi.sbi.FiringEmulator` of the model's noise-free firing under the training
            protocol: ``infer`` screens candidate cells with it (:func:`~dic_sbi.sbi.emulator.screen_population`).
            It does not change :meth:`sample` or :meth:`log_prob`.

    References:
        Fyon, Franci, Sacré, Drion (2024). PNAS Nexus 3:pgae415.
        Brandoit, Ernst, Drion, Fyon (2025). arXiv 2509.12783.
    """

    def __init__(
        self,
        posterior: Any,
        model: str | ConductanceModel,
        *,
        pair: tuple[str, str] | None = None,
        calcium_path_tau: float | str | None = "model",
        simulator: Any = None,
        conditions: Mapping[str, Sequence[tuple[float, float]]] | None = None,
        free_conductances: Any = None,
        training_jitter: tuple[float, float] | None = None,
        emulator: Any = None,
    ) -> None:
        from ..spiketrains import check_jitter
        from .emulator import FiringEmulator
        from .features import _check_conditions
        from .free_conductances import FreeConductanceEstimator

        if not (hasattr(posterior, "sample") and hasattr(posterior, "log_prob")):
            raise InvalidInputError(f"posterior: expected an sbi posterior or a torch Distribution, got {type(posterior).__name__}")
        self.posterior = posterior
        self.model = get_model(model)
        self.pair = pair
        self.calcium_path_tau = calcium_path_tau
        self.simulator = simulator
        conditions = dict(conditions or {})
        _check_conditions(tuple(conditions))
        self.conditions: dict[str, tuple[tuple[float, float], ...]] = {}
        for name, intervals in conditions.items():
            try:
                ivs = tuple((float(lo), float(hi)) for lo, hi in intervals)
            except (TypeError, ValueError):
                raise InvalidInputError(f"conditions: {name} needs intervals ((low, high), ...), got {intervals!r}") from None
            if not ivs or any(not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi) for lo, hi in ivs):
                raise InvalidInputError(f"conditions: {name} needs finite intervals with low <= high, got {intervals!r}")
            self.conditions[name] = ivs
        if conditions and not self._conditional():
            raise InvalidInputError("conditions: an unconditional distribution takes no x, so no conditions either")
        if free_conductances is not None:
            if not isinstance(free_conductances, FreeConductanceEstimator):
                raise InvalidInputError(f"free_conductances: expected a FreeConductanceEstimator, got {type(free_conductances).__name__}")
            if not self._conditional():
                raise InvalidInputError("free_conductances: q(z | t, x) needs x; this DICPosterior is unconditional")
            # The law may have been trained on a widened seed law of the same model (same kinetics and DICs).
            if not same_kinetics(free_conductances.model, self.model) or free_conductances.pair != pair:
                raise InvalidInputError("free_conductances: trained for another model or compensating pair")
            if self.x_width is not None and free_conductances.x_dim != self.x_width:
                raise InvalidInputError(f"free_conductances: trained on x of {free_conductances.x_dim} columns, this "
                                        f"posterior reads {self.x_width} (features and conditions)")  # fmt: skip
        self.free_conductances = free_conductances
        if emulator is not None:
            if not isinstance(emulator, FiringEmulator):
                raise InvalidInputError(f"emulator: expected a FiringEmulator, got {type(emulator).__name__}")
            if emulator.settings["n_conductances"] != len(self.model.conductance_names):
                raise InvalidInputError(f"emulator: trained on {emulator.settings['n_conductances']} conductances, "
                                        f"{self.model.name} has {len(self.model.conductance_names)}")  # fmt: skip
        self.emulator = emulator
        self.training_jitter = None if training_jitter is None else check_jitter(training_jitter)
        #: Cells of the last sample that fell back to the seed law (see FreeConductanceEstimator.sample_cells).
        self.last_fallback = 0

    # -- known conditions ------------------------------------------------------------------------------------
    def condition(self, x: Tensor, **values: float) -> Tensor:
        """``x`` with this posterior's known conditions inserted, e.g. ``posterior.condition(x, noise_std=5.0)``.

        Every condition of :attr:`conditions` must be given, within the intervals the posterior was trained on
        (a flow trained at σ = 0 and 5 only says nothing about σ = 2.5). For a posterior without conditions,
        ``x`` is returned unchanged and no value may be given.
        """
        from .features import with_conditions

        row = self.check_conditions(**values)
        return with_conditions(x, row) if row else torch.as_tensor(x, dtype=torch.float32)

    def observe(self, spikes: Any, *, t_start: Any = None, t_stop: Any = None, **conditions: float) -> Tensor:
        """``x`` of observed spike trains as this posterior reads it (float32, one row per train).

        The features it was trained on (its simulator's ``output``: the summary, or the summary and the interval
        statistics), with its known conditions inserted, e.g. ``posterior.observe(spiketrain, noise_std=0.0)``.
        ``spikes``, ``t_start``, ``t_stop`` as in :func:`~dic_sbi.sbi.summary_statistics`; ``conditions`` as in
        :meth:`condition`. Without a simulator the 17 summary features are used.
        """
        from .features import summary_statistics

        sim = self.simulator
        kind = {} if sim is None else dict(output=sim.output, max_isis=sim.max_isis)
        return self.condition(summary_statistics(spikes, t_start=t_start, t_stop=t_stop, **kind), **conditions)

    def conditions_among(self, **available: float) -> dict[str, float]:
        """Those of the ``available`` condition values that this posterior takes, ready for :meth:`condition`:
        ``posterior.condition(x, **posterior.conditions_among(noise_std=sigma))`` works with or without σ input."""
        return {k: v for k, v in available.items() if k in self.conditions}

    def check_conditions(self, **values: float) -> list[float]:
        """Validate known-condition values (see :meth:`condition`); returns them in column order."""
        from .features import CONDITION_NAMES

        unknown = sorted(set(values) - set(self.conditions))
        if unknown:
            takes = sorted(self.conditions) or "none"
            raise InvalidInputError(f"{unknown[0]}: not a condition of this posterior (it takes: {takes})")
        missing = [k for k in self.conditions if k not in values]
        if missing:
            raise InvalidInputError(f"{missing[0]}: required; this posterior was trained at {missing[0]} = {self._domain(missing[0])}")
        row = []
        for name in (c for c in CONDITION_NAMES if c in self.conditions):
            v = values[name]
            ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and np.isfinite(v)
            if not (ok and any(lo - 1e-9 <= float(v) <= hi + 1e-9 for lo, hi in self.conditions[name])):
                raise InvalidInputError(f"{name}: this posterior was trained at {name} = {self._domain(name)}, got {v!r}")
            row.append(float(v))
        return row

    def _domain(self, name: str) -> str:
        return " or ".join(f"{lo:g}" if lo == hi else f"{lo:g} to {hi:g}" for lo, hi in self.conditions[name])

    def conditions_of(self, x: Tensor) -> dict[str, float]:
        """The condition values carried by the first row of a conditioned ``x`` (empty without conditions)."""
        from .features import CONDITION_NAMES, SUMMARY_NAMES

        x = torch.as_tensor(x)
        x = x.reshape(-1, x.shape[-1])
        names = [c for c in CONDITION_NAMES if c in self.conditions]
        n = len(SUMMARY_NAMES)
        return {name: float(x[0, n + i]) for i, name in enumerate(names)}

    # -- sbi-like conveniences ------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        """Conductance names, e.g. ``pairplot(samples, labels=list(posterior.names))``."""
        return self.model.conductance_names

    @property
    def prior(self) -> Distribution | None:
        """The prior over DICs of the wrapped posterior."""
        return getattr(self.posterior, "prior", None)

    @property
    def default_x(self) -> Tensor | None:
        return getattr(self.posterior, "default_x", None)

    def set_default_x(self, x: Tensor) -> "DICPosterior":
        """Set the observation used when ``x`` is not passed; chainable, as in sbi."""
        if isinstance(self.posterior, Distribution):
            raise InvalidInputError("x: this DICPosterior wraps an unconditional distribution; it takes no x")
        self.posterior.set_default_x(x)
        return self

    def _conditional(self) -> bool:
        return not isinstance(self.posterior, Distribution)

    @property
    def x_width(self) -> int | None:
        """Columns of the x this posterior reads: the simulator's features plus its known conditions.

        ``None`` when the simulator does not state its feature width.
        """
        x_dim = getattr(self.simulator, "x_dim", None)
        return None if x_dim is None else int(x_dim) + len(self.conditions)

    def _check_x(self, x: Tensor | None) -> None:
        if x is not None and not self._conditional():
            raise InvalidInputError("x: this DICPosterior wraps an unconditional distribution; it takes no x")
        expected = self.x_width
        if x is not None and expected is not None:
            k = int(torch.as_tensor(x).shape[-1])
            if k != expected:
                hint = (f"; add the known conditions with posterior.condition(x, {', '.join(f'{c}=...' for c in self.conditions)})"
                        if self.conditions and k == expected - len(self.conditions) else "")  # fmt: skip
                raise InvalidInputError(f"x: expected {expected} columns, got {k}{hint}")

    # -- sampling --------------------------------------------------------------------------------------------
    def sample_dics(
        self, sample_shape: torch.Size | tuple = torch.Size(), x: Tensor | None = None, *, seed: Seed = None,
        show_progress_bars: bool = False,
    ) -> Tensor:  # fmt: skip
        """Draw DICs ``sample_shape + (2,)`` (float32) from ``q(g_s, g_u | x)``."""
        self._check_x(x)
        torch_seed = int(numpy_rng(seed).integers(0, 2**62))
        shape = torch.Size(sample_shape)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed)
            if self._conditional():
                t = self.posterior.sample((shape.numel(),), x=x, show_progress_bars=show_progress_bars)
            else:
                t = self.posterior.sample((shape.numel(),))
        return t.reshape(shape + (2,)).to(torch.float32)

    def sample(
        self, sample_shape: torch.Size | tuple = torch.Size(), x: Tensor | None = None, *, seed: Seed = None,
        show_progress_bars: bool = False, return_dics: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
        """Draw conductance vectors ``sample_shape + (n_conductances,)`` (float64, model order).

        Each sample is one cell of the degenerate population of one DIC sample. With ``return_dics``, also
        return those DICs.
        """
        rng = numpy_rng(seed)
        t = self.sample_dics(sample_shape, x, seed=rng, show_progress_bars=show_progress_bars)
        g = self._cells_of(t, rng, x if x is not None else self.default_x)
        return (g, t) if return_dics else g

    def sample_dics_batched(
        self, sample_shape: torch.Size | tuple, x: Tensor, *, seed: Seed = None, show_progress_bars: bool = False,
        **kwargs: Any,
    ) -> Tensor:  # fmt: skip
        """Draw DICs ``sample_shape + (B, 2)`` (float32) from ``q(g_s, g_u | x_b)`` for each row of ``x`` ``(B, k)``.

        sbi's sampling options (``max_sampling_batch_size``, ``reject_outside_prior``, ``max_sampling_time``,
        ``return_partial_on_timeout``) go to the DIC posterior's ``sample_batched``.
        """
        unknown = sorted(set(kwargs) - set(_SBI_SAMPLING_OPTIONS))
        if unknown:
            raise InvalidInputError(f"{unknown[0]}: not an option of sample_batched (sbi's are {', '.join(_SBI_SAMPLING_OPTIONS)})")
        x = self._batch_of_x(x)
        torch_seed = int(numpy_rng(seed).integers(0, 2**62))
        shape = torch.Size(sample_shape)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(torch_seed)
            t = self.posterior.sample_batched((shape.numel(),), x=x, show_progress_bars=show_progress_bars, **kwargs)
        return t.reshape(shape + (x.shape[0], 2)).to(torch.float32)

    def sample_batched(
        self, sample_shape: torch.Size | tuple, x: Tensor, *, seed: Seed = None, show_progress_bars: bool = False,
        return_dics: bool = False, **kwargs: Any,
    ) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
        """Draw conductance vectors ``sample_shape + (B, n_conductances)`` (float64) for each row of ``x`` ``(B, k)``.

        sbi's batched sampling, as ``sbi.diagnostics.run_sbc`` and ``run_tarp`` call it: sample ``i`` for
        observation ``b`` is one cell of the degenerate population of a DIC sample from ``q(t | x_b)``. Every
        sample is a finite, valid cell (the compensation never returns NaN). sbi's sampling options go to the
        DIC posterior (:meth:`sample_dics_batched`).
        """
        rng = numpy_rng(seed)
        t = self.sample_dics_batched(sample_shape, x, seed=rng, show_progress_bars=show_progress_bars, **kwargs)
        xb = self._batch_of_x(x)
        g = self._cells_of(t, rng, xb.expand(t.shape[:-1] + (xb.shape[-1],)).reshape(-1, xb.shape[-1]))
        return (g, t) if return_dics else g

    def _cells_of(self, t: Tensor, rng: np.random.Generator, x: Tensor | None = None) -> Tensor:
        """One cell of the degenerate population of each DIC sample in ``t`` (``(..., 2)`` → ``(..., n_cond)``,
        float64); with a free-conductance estimator, its free draws given ``x`` (one row, or one per sample)."""
        from ..core.populations import degenerate_population

        flat = t.reshape(-1, 2).to(torch.float64).numpy()
        if self.free_conductances is not None and x is not None:
            g, self.last_fallback = self.free_conductances.sample_cells(flat, x, seed=rng)
        else:
            g = degenerate_population(
                self.model, flat[:, 0], flat[:, 1], 1, seed=rng, pair=self.pair, calcium_path_tau=self.calcium_path_tau
            )[:, 0, :]
        return torch.as_tensor(g, dtype=torch.float64).reshape(tuple(t.shape[:-1]) + (self.model.n_conductances,))

    def _batch_of_x(self, x: Tensor) -> Tensor:
        """``x`` as a float32 ``(B, k)`` batch for the batched methods (conditional posteriors only)."""
        if not self._conditional():
            raise InvalidInputError("x: this DICPosterior wraps an unconditional distribution; it has no batched methods")
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.ndim != 2:
            raise InvalidInputError(f"x: expected a batch of observations (B, k), got shape {tuple(x.shape)}")
        self._check_x(x)
        return x

    # -- densities -------------------------------------------------------------------------------------------
    def dics_of(self, conductances: ArrayLike | Tensor) -> Tensor:
        """``(g_s, g_u)`` at the model's reference threshold of ``(..., n_conductances)`` cells (float64)."""
        from ..core.dics import dics

        g = _as_conductances(self.model, conductances)
        return torch.as_tensor(dics(self.model, g, calcium_path_tau=self.calcium_path_tau)[..., 1:])

    def log_prob_dics(self, dics: Tensor, x: Tensor | None = None, **kwargs: Any) -> Tensor:
        """``log q(t | x)`` (keyword arguments go to the wrapped posterior's ``log_prob``)."""
        self._check_x(x)
        dics = torch.as_tensor(dics, dtype=torch.float32)
        if self._conditional():
            return self.posterior.log_prob(dics, x=x, **kwargs).to(torch.float32)
        return self.posterior.log_prob(dics).to(torch.float32)

    def log_prob(
        self,
        conductances: ArrayLike | Tensor,
        x: Tensor | None = None,
        *,
        normalize: bool = True,
        n_draws: int = 2000,
        seed: int | np.random.Generator | None = 0,
        **kwargs: Any,
    ) -> Tensor:
        """Log-density of conductance vectors under the generative process (module docstring), float64.

        Parameters
        ----------
        conductances
            ``(..., n_conductances)`` cells.
        x
            Observation (default: the default x).
        normalize
            Include ``-log ρ(t)``, estimated with ``n_draws`` draws per cell with ``seed`` (fixed by default,
            so the result is deterministic); ``ρ ≈ 1`` on most of the prior, where it changes nothing.
        **kwargs
            Passed to the DIC posterior's ``log_prob`` (e.g. ``norm_posterior=False`` for sbi's
            ``DirectPosterior`` to skip the leakage correction).

        Returns
        -------
        Tensor
            ``(...)`` float64; ``-inf`` for cells the process cannot produce.
        """
        g = _as_conductances(self.model, conductances)
        x_rows = x if x is not None else self.default_x
        return self._log_prob(g, lambda t: self.log_prob_dics(t, x, **kwargs), normalize=normalize, n_draws=n_draws,
                              seed=seed, x_rows=x_rows)  # fmt: skip

    def log_prob_batched(
        self,
        conductances: ArrayLike | Tensor,
        x: Tensor,
        *,
        normalize: bool = True,
        n_draws: int = 2000,
        seed: int | np.random.Generator | None = 0,
        **kwargs: Any,
    ) -> Tensor:
        """:meth:`log_prob` of cells ``(S, B, n_conductances)`` under the posteriors of the ``B`` rows of ``x``.

        sbi's batched density: cell ``[s, b]`` is evaluated under ``p(ḡ | x_b)``. Returns ``(S, B)`` float64
        (a ``(B, n_conductances)`` input is one cell per observation and gives ``(1, B)``, as in sbi). Keyword
        arguments go to the DIC posterior's ``log_prob_batched``.
        """
        x = self._batch_of_x(x)
        g = _as_conductances(self.model, conductances)
        if g.ndim not in (2, 3) or g.shape[-2] != x.shape[0]:
            raise InvalidInputError(f"conductances: expected (S, B, {self.model.n_conductances}) or "
                                    f"(B, {self.model.n_conductances}) with B = {x.shape[0]} rows of x, got shape {g.shape}")  # fmt: skip
        g = g if g.ndim == 3 else g[None]

        def log_q(t: Tensor, ok: np.ndarray) -> Tensor:
            # sbi's batched density needs the full (S, B) grid: evaluate every cell's DICs, keep the valid ones.
            full = torch.zeros(ok.shape + (2,), dtype=torch.float32)
            full.reshape(-1, 2)[torch.as_tensor(ok.ravel())] = t
            out = self.posterior.log_prob_batched(full, x=x, **kwargs)
            return out.reshape(-1)[torch.as_tensor(ok.ravel())]

        x_rows = x.expand(g.shape[:-1] + (x.shape[-1],)).reshape(-1, x.shape[-1])
        return self._log_prob(g, log_q, normalize=normalize, n_draws=n_draws, seed=seed, grid=True, x_rows=x_rows)

    def _log_prob(self, g: np.ndarray, log_q: Any, *, normalize: bool, n_draws: int, seed: Any, grid: bool = False,
                  x_rows: Tensor | None = None) -> Tensor:  # fmt: skip
        """``log q(t | x)`` (``log_q``) plus the compensation's part: ``log p(z) + log |det|`` (``- log ρ``), or with a
        free-conductance estimator ``log q(z | t, x) + log |det|`` (``- log ρ_q``); ``x_rows``: x of each flat cell
        or one row."""
        from ..core.populations import population_log_density

        shape = g.shape[:-1]
        flat = g.reshape(-1, self.model.n_conductances)
        out = np.full(flat.shape[0], -np.inf)
        ok = np.all(flat >= 0, axis=1) & (flat[:, self.model.index("leak")] > 0)
        if ok.any():
            cells = flat[ok]
            t = self.dics_of(cells).to(torch.float32)
            q = log_q(t, ok.reshape(shape)) if grid else log_q(t)
            q = q.detach().to(torch.float64).numpy()
            # Chunks bound the memory of the Monte Carlo normaliser (n_draws cells simulated per cell).
            rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
            step = max(1, _MAX_DRAWS // n_draws) if normalize else cells.shape[0]
            if self.free_conductances is not None and x_rows is not None:
                xr = torch.as_tensor(x_rows, dtype=torch.float32).reshape(-1, x_rows.shape[-1])
                xr = xr if xr.shape[0] == 1 else xr[torch.as_tensor(ok)]

                def part(a: int, b: int) -> np.ndarray:
                    return self.free_conductances.log_density(cells[a:b], xr if xr.shape[0] == 1 else xr[a:b],
                                                              normalize=normalize, n_draws=n_draws, seed=rng)  # fmt: skip
            else:

                def part(a: int, b: int) -> np.ndarray:
                    return population_log_density(self.model, cells[a:b], normalize=normalize, n_draws=n_draws, seed=rng,
                                                  pair=self.pair, calcium_path_tau=self.calcium_path_tau)  # fmt: skip

            log_pop = np.concatenate([part(a, a + step) for a in range(0, cells.shape[0], step)])
            out[ok] = np.where(np.isfinite(q) & np.isfinite(log_pop), q + log_pop, -np.inf)
        return torch.as_tensor(out.reshape(shape), dtype=torch.float64)

    def map_dics(self, x: Tensor | None = None, **kwargs: Any) -> Tensor:
        """The MAP of the DIC posterior ``q(t | x)`` (default: the default x), ``(1, 2)`` float32; keyword
        arguments go to sbi's ``map`` (``num_iter``, ``num_to_optimize``, ``num_init_samples``, ...)."""
        if not self._conditional():
            raise InvalidInputError("map: needs an sbi posterior; this DICPosterior wraps a plain distribution")
        self._check_x(x)
        kwargs.setdefault("show_progress_bars", False)
        return self.posterior.map(x=x, **kwargs).to(torch.float32)

    def map(self, x: Tensor | None = None, *, num_cells: int = 1000, seed: Seed = 0, **kwargs: Any) -> Tensor:
        """A most probable cell, ``(1, n_conductances)`` float64, as sbi's ``map`` over the posterior's space.

        The DIC MAP ``t*`` (:meth:`map_dics`; keyword arguments go to sbi's ``map``), then, of ``num_cells``
        cells of the degenerate population of ``t*``, the one of highest population density
        ``log p(z) + log |det ∂t/∂ḡ_P|`` (the part of :meth:`log_prob` that varies at fixed DICs; with a
        free-conductance estimator, cells and density from ``q(z | t*, x)``). The
        conductance posterior is a degenerate population by design, so this cell is one of many that fire
        alike; ``degenerate_population(model, *map_dics[0], n)`` gives the others.
        """
        from ..core.checks import is_int
        from ..core.populations import degenerate_population, population_log_density

        if not is_int(num_cells, 1):
            raise InvalidInputError(f"num_cells: expected a positive int, got {num_cells!r}")
        t = self.map_dics(x, **kwargs)[0].to(torch.float64).numpy()
        xr = x if x is not None else self.default_x
        if self.free_conductances is not None and xr is not None:
            tt = np.repeat(t[None], int(num_cells), axis=0)
            cells, _ = self.free_conductances.sample_cells(tt, xr, seed=seed)
            logp = self.free_conductances.log_density(cells, xr, normalize=False)
        else:
            cells = degenerate_population(self.model, t[0], t[1], int(num_cells), seed=seed, pair=self.pair,
                                          calcium_path_tau=self.calcium_path_tau)  # fmt: skip
            logp = population_log_density(self.model, cells, normalize=False, pair=self.pair,
                                          calcium_path_tau=self.calcium_path_tau)  # fmt: skip
        return torch.as_tensor(cells[int(np.argmax(logp))][None], dtype=torch.float64)

    def __repr__(self) -> str:
        cond = f", conditions: {self.conditions}" if self.conditions else ""
        return f"DICPosterior({self.model.name!r}, over DICs: {type(self.posterior).__name__}{cond})"


def _as_conductances(model: ConductanceModel, value: ArrayLike | Tensor) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    if getattr(value, "dtype", None) in (np.float32, np.float16):
        # Rounding ḡ to float32 moves its DICs by ~1e-6, off the set the compensation produces (held to 1e-9),
        # where the density is 0: say so rather than return -inf for every cell.
        raise InvalidInputError(f"conductances: got {value.dtype} values; the density lives on the compensation's "
                                "set, which float32 rounding leaves: pass float64 (as sample and sample_batched return)")  # fmt: skip
    return check_conductances(model, value, nonnegative=False)  # negative ḡ: log_prob -inf, not an error
