"""Batched, picklable simulators ``θ[B, d] → x[B, k]`` (float32 tensors) for sbi.

Both accept torch tensors or numpy arrays (``simulate_for_sbi`` with ``num_workers > 1`` passes numpy), run the
whole batch through one call of the compiled, parallel :func:`dic_sbi.simulate`, and encode the spike trains
with :mod:`dic_sbi.sbi.features`. Randomness (the compensation draws of :class:`DICSimulator`, current noise)
comes from ``seed``; with ``seed=None`` it is drawn from torch's global generator, which
``simulate_for_sbi(seed=...)`` seeds in every worker, so runs are reproducible there too. Pickling a simulator
stores a registered model by name, so workers reuse their compiled kernels.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from numpy.typing import NDArray

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model
from ._utils import Seed, as_batch, numpy_rng
from .features import encode, feature_names

__all__ = ["ConductanceSimulator", "DICSimulator"]

Output = Literal["summary", "intervals", "isi"]


class _SpikeTrainSimulator:
    """Shared part: the protocol, the encoding of ``x``, pickling."""

    def __init__(
        self,
        model: str | ConductanceModel,
        *,
        duration: float | None = None,
        transient: float | None = None,
        dt: float | None = None,
        noise_std: float = 0.0,
        i_app: float = 0.0,
        output: Output = "summary",
        max_isis: int = 128,
        n_threads: int | None = None,
    ) -> None:
        self.model = get_model(model)
        proto = self.model.protocol
        self.duration = float(proto.duration if duration is None else duration)
        self.transient = float(proto.transient if transient is None else transient)
        self.dt = float(proto.dt if dt is None else dt)
        if not (0 <= self.transient < self.duration):
            raise InvalidInputError(f"transient: expected 0 <= transient < duration, got {self.transient} and {self.duration}")
        if not (isinstance(max_isis, (int, np.integer)) and max_isis >= 1):
            raise InvalidInputError(f"max_isis: expected a positive int, got {max_isis!r}")
        self.names = feature_names(output, int(max_isis))  # validates output
        self.output = output
        self.max_isis = int(max_isis)
        self.noise_std = float(noise_std)
        self.i_app = float(i_app)
        self.n_threads = n_threads

    @property
    def x_dim(self) -> int:
        """Length of ``x``."""
        return len(self.names)

    def simulate_conductances(
        self, g: NDArray[np.float64], *, seed: Seed = None, jitter_std: NDArray[np.float64] | None = None
    ) -> NDArray[np.float64]:
        """``x`` (float64, ``(B, k)``) of cells with conductances ``g``; rows of NaN conductances give NaN.

        ``jitter_std``: per-cell sd (ms) of Gaussian spike-time jitter applied before encoding
        (:func:`~dic_sbi.spiketrains.jitter_spike_times`), e.g. drawn by :func:`~dic_sbi.spiketrains.draw_jitter_sd`
        to reproduce jittered training campaigns; ``None`` for none.
        """
        from ..core.simulator import simulate
        from ..spiketrains import jitter_spike_times

        out = np.full((g.shape[0], self.x_dim), np.nan)
        ok = np.all(np.isfinite(g), axis=1)
        if jitter_std is not None:
            jitter_std = np.broadcast_to(np.asarray(jitter_std, dtype=np.float64), (g.shape[0],))
        if ok.any():
            rng = numpy_rng(seed)
            res = simulate(
                self.model, g[ok], duration=self.duration, transient=self.transient, dt=self.dt, i_app=self.i_app,
                noise_std=self.noise_std, seed=rng if self.noise_std > 0 else None, n_threads=self.n_threads,
                progress=False,
            )  # fmt: skip
            times, offsets = res.times, res.offsets
            if jitter_std is not None:
                times, offsets = jitter_spike_times(times, offsets, jitter_std[ok], res.t_start, res.t_stop, rng)
            out[ok] = encode(times, offsets, res.t_start, res.t_stop, self.output, self.max_isis)
        return out

    def _protocol_repr(self) -> str:
        return f"duration={self.duration:g}, transient={self.transient:g}, dt={self.dt:g}, output={self.output!r}"


class ConductanceSimulator(_SpikeTrainSimulator):
    """``θ = ḡ`` (maximal conductances, model order) → ``x``: the standard simulator of conductance-space SBI.

    Arguments:
        model: Model name or object.
        duration, transient, dt: Protocol (ms); default the model's (STG 6000 / 3000, DA 12000 / 3000).
        noise_std: σ of the low-passed current noise (µA/cm²), 0 for none.
        i_app: Constant injected current (µA/cm²).
        output: ``"summary"`` (17 features), ``"intervals"`` (summary + 17 interval statistics) or ``"isi"``
            (features + padded log-ISI sequence).
        max_isis: Length of the ISI sequence for ``output="isi"``.
        n_threads: Threads of the simulator (default: numba's; joblib workers get one each).
    """

    def __call__(self, theta: torch.Tensor | NDArray, *, seed: Seed = None) -> torch.Tensor:
        """Simulate ``theta`` (``(B, n_conductances)`` or ``(n_conductances,)``); returns ``(B, k)`` float32."""
        g = as_batch(theta, self.model.n_conductances, "theta")
        if np.any(g < 0):
            raise InvalidInputError("theta: maximal conductances must be >= 0 (is the prior a ConductancePrior?)")
        return torch.as_tensor(self.simulate_conductances(g, seed=seed), dtype=torch.float32)

    def __repr__(self) -> str:
        return f"ConductanceSimulator({self.model.name!r}, {self._protocol_repr()})"


class DICSimulator(_SpikeTrainSimulator):
    r"""``θ = (g_s, g_u)`` → one compensated cell per θ → ``x``.

    For each θ, one conductance vector is drawn from the degenerate population of that target
    (:func:`~dic_sbi.core.populations.degenerate_population` with ``n = 1``, the whole batch in one vectorised
    call), then simulated. ``x`` is therefore a draw from ``p(x | θ) = ∫ p(x | ḡ) p(ḡ | θ) dḡ``: the
    variability of the degenerate population is part of the likelihood, which is what lets a DIC posterior
    marginalise over it (Fyon et al. 2024; Brandoit et al. 2025).

    A θ the compensation cannot reach gives a row of NaN (``on_unreachable="nan"``, sbi's "invalid simulation";
    NPE drops such rows) or raises (``"raise"``). Under :class:`~dic_sbi.sbi.DICPrior` it does not happen.

    Arguments:
        model, duration, transient, dt, noise_std, i_app, output, max_isis, n_threads: As in
            :class:`ConductanceSimulator`.
        pair: Force a compensating pair (default: the model's rule).
        on_unreachable: ``"nan"`` or ``"raise"``.
    """

    def __init__(
        self,
        model: str | ConductanceModel,
        *,
        pair: tuple[str, str] | None = None,
        on_unreachable: Literal["nan", "raise"] = "nan",
        **protocol,
    ) -> None:
        super().__init__(model, **protocol)
        if on_unreachable not in ("nan", "raise"):
            raise InvalidInputError(f"on_unreachable: expected 'nan' or 'raise', got {on_unreachable!r}")
        self.pair = pair
        self.on_unreachable = on_unreachable

    def cells(self, theta: torch.Tensor | NDArray, *, seed: Seed = None) -> NDArray[np.float64]:
        """One compensated cell per θ: ``(B, n_conductances)`` float64 (NaN rows for unreachable θ)."""
        from ..core.populations import degenerate_population

        t = as_batch(theta, 2, "theta")
        g = degenerate_population(
            self.model, t[:, 0], t[:, 1], 1, seed=numpy_rng(seed), on_unreachable=self.on_unreachable, pair=self.pair
        )
        return g[:, 0, :]

    def simulate_with_cells(
        self, theta: torch.Tensor | NDArray, *, seed: Seed = None, jitter_std: NDArray[np.float64] | None = None
    ) -> tuple[torch.Tensor, NDArray[np.float64]]:
        """``(x, cells)``: the simulations and the conductance vectors behind them (``jitter_std``: as in
        :meth:`simulate_conductances`)."""
        rng = numpy_rng(seed)
        g = self.cells(theta, seed=rng)
        return torch.as_tensor(self.simulate_conductances(g, seed=rng, jitter_std=jitter_std), dtype=torch.float32), g

    def __call__(self, theta: torch.Tensor | NDArray, *, seed: Seed = None) -> torch.Tensor:
        """Simulate ``theta`` (``(B, 2)`` or ``(2,)`` DICs); returns ``(B, k)`` float32."""
        return self.simulate_with_cells(theta, seed=seed)[0]

    def __repr__(self) -> str:
        return f"DICSimulator({self.model.name!r}, {self._protocol_repr()})"
