r"""Which part of a DIC's degenerate population fires like the recording: a learned law of the free draws.

The compensation (:func:`~dic_sbi.core.populations.degenerate_population`) makes a cell from a target
``t = (g_s, g_u)`` and free draws ``z = (gleak, u)``: gleak and the positions ``u ∈ [0, 1]`` of the free
conductances in their ranges; the seed and move solves then fix the rest, so every cell has DICs ``t`` exactly.
The published method draws ``z`` from a fixed seed law ``p(z)``, whatever was recorded. But cells that share
``t`` still differ in how they fire (rate, burst period, spikes per burst), and which ``z`` reproduce *this*
recording depends on ``x``. :class:`FreeConductanceEstimator` learns

.. math:: q(z \mid t, x) \approx p(z \mid t, x) \propto p(x \mid t, z)\, p(z),

a conditional normalising flow over ``w = (\log g_{leak}, \operatorname{logit} u)`` given ``(x, t)``, trained on
DIC-prior simulations, which already hold ``t``, the cell (hence ``z``, recovered by
:func:`~dic_sbi.core.populations.free_draws`) and ``x``. A :class:`~dic_sbi.sbi.DICPosterior` given one samples
``t ~ q(t | x)``, then ``z ~ q(z | t, x)``, then compensates: the conductance posterior is
``q(t | x) · q(z | t, x)`` pushed through the compensation, and its density is that of
:func:`~dic_sbi.core.populations.population_log_density` with ``log p(z)`` replaced by ``log q(z | t, x)`` and
the reachability by the probability that a draw of ``q(z | t, x)`` is valid.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model
from ._utils import Seed, numpy_rng

__all__ = ["FreeConductanceEstimator", "train_free_conductances", "build_free_conductance_net", "location_offsets"]

Array = NDArray[np.float64]

_EPS = 1e-6  # u is clipped to [EPS, 1 - EPS] before the logit: recovered draws may sit exactly on a range edge
#: Rounds of redrawing invalid rows from q before the rest fall back to the seed law (see ``sample_cells``).
MAX_ROUNDS = 50


def build_free_conductance_net(
    w: Tensor,
    condition: Tensor,
    *,
    hidden_features: int = 64,
    num_transforms: int = 5,
    passes: int | None = 2,
    x_names: Sequence[str] | None = None,
) -> Any:
    """An sbi conditional flow (zuko NSF) over ``w`` given ``condition = (x, t)``, both standardised on the data.

    The condition is standardised by a fixed :class:`~dic_sbi.sbi.Standardize` (spread floored at 0.1, so
    constant columns stay constant), ``w`` by sbi's independent z-score. With ``x_names`` (the columns of ``x``),
    each feature is scaled by its moments where it is defined (:func:`~dic_sbi.sbi.features.defined_mask`), as
    the DIC posteriors are. ``passes=2`` makes each spline transform a coupling layer: sampling then costs two
    network passes per transform instead of one per dimension (it is what ``infer`` pays for every cell);
    ``None`` is a fully autoregressive flow.
    """
    from sbi.neural_nets import posterior_nn

    from .embedding import Standardize

    extra = {} if passes is None else {"passes": int(passes)}
    names = None
    if x_names is not None:
        k = condition.shape[1] - 2
        if len(x_names) != k:
            raise InvalidInputError(f"x_names: expected {k} names for the columns of x, got {len(x_names)}")
        names = tuple(x_names) + ("dic_g_s", "dic_g_u")
    with warnings.catch_warnings():
        # sbi 0.27 forwards ``passes`` to zuko's NSF (what it is for) but warns that it does not know it.
        warnings.filterwarnings("ignore", message="Unknown kwargs passed to ConditionalFlowConfig")
        builder = posterior_nn(model="zuko_nsf", z_score_x="none", z_score_theta="independent",
                               embedding_net=Standardize.from_data(condition, names=names),
                               hidden_features=hidden_features, num_transforms=num_transforms, **extra)  # fmt: skip
        return builder(w, condition)


class FreeConductanceEstimator:
    """``q(z | t, x)``: the law of the compensation's free draws given the DICs and the observation.

    Arguments:
        net: sbi conditional density estimator over ``w = (log gleak, logit u)`` given ``(x, t)``
            (:func:`build_free_conductance_net`).
        model: Model name or object.
        x_dim: Columns of ``x`` (the DIC posterior's ``x``, known conditions included).
        pair, calcium_path_tau: As in :func:`~dic_sbi.core.populations.degenerate_population`.
        settings: Architecture (``hidden_features``, ``num_transforms``), kept for saving.
        w_offset: Location recalibration, one value per coordinate of ``w``: draws are the flow's minus it, and
            densities are the flow's at ``w + w_offset`` (a shift: the log-density needs no Jacobian term).
            Estimated on held-out simulations by :func:`location_offsets`; ``None``: no shift.
    """

    def __init__(
        self,
        net: Any,
        model: str | ConductanceModel,
        *,
        x_dim: int,
        pair: tuple[str, str] | None = None,
        calcium_path_tau: Any = "model",
        settings: dict[str, Any] | None = None,
        w_offset: Sequence[float] | None = None,
    ) -> None:
        from ..core.populations import seed_distribution

        self.net = net.eval()
        self.model = get_model(model)
        self.x_dim = int(x_dim)
        self.pair = pair
        self.calcium_path_tau = calcium_path_tau
        self.settings = dict(settings or {})
        sd = seed_distribution(self.model)
        self._n_free = int(sd.free_index.size)
        self._width = sd.free_high - sd.free_low
        self._reference_leak = sd.reference_leak
        self.w_offset: Array | None = None
        if w_offset is not None:
            off = np.asarray(w_offset, dtype=float)
            if off.shape != (self.n_draws_dim,) or not np.all(np.isfinite(off)):
                raise InvalidInputError(f"w_offset: expected {self.n_draws_dim} finite values, got {w_offset!r}")
            self.w_offset = off

    @property
    def n_draws_dim(self) -> int:
        """Dimension of ``z`` (gleak and the free conductances)."""
        return self._n_free + 1

    # -- coordinates --------------------------------------------------------------------------------------------
    @staticmethod
    def to_w(gleak: Array, uniforms: Array) -> Array:
        """``(log gleak, logit u)``, the flow's unbounded coordinates."""
        u = np.clip(uniforms, _EPS, 1.0 - _EPS)
        return np.column_stack([np.log(gleak), np.log(u) - np.log1p(-u)])

    @staticmethod
    def from_w(w: Array) -> tuple[Array, Array]:
        """Inverse of :meth:`to_w`."""
        return np.exp(w[:, 0]), 1.0 / (1.0 + np.exp(-w[:, 1:]))

    def _condition(self, t: Array, x: Tensor) -> Tensor:
        x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, self.x_dim)
        t = torch.as_tensor(np.asarray(t), dtype=torch.float32).reshape(-1, 2)
        if x.shape[0] == 1 and t.shape[0] > 1:
            x = x.expand(t.shape[0], -1)
        if x.shape[0] != t.shape[0]:
            raise InvalidInputError(f"x: expected one row or one per DIC sample ({t.shape[0]}), got {x.shape[0]}")
        return torch.cat([x, t], dim=1)

    # -- sampling -----------------------------------------------------------------------------------------------
    def sample_draws(self, t: Array, x: Tensor, *, seed: Seed = None) -> tuple[Array, Array]:
        """One draw ``z = (gleak, u) ~ q(z | t_i, x_i)`` per row of ``t`` (``x``: one row, or one per row)."""
        return self.from_w(self.sample_w(t, x, 1, seed=seed)[:, 0])

    def sample_cells(self, t: Array, x: Tensor, *, seed: Seed = None, max_rounds: int = MAX_ROUNDS) -> tuple[Array, int]:
        """One valid cell per row of ``t`` (``(N, 2)``), its free draws from ``q(z | t, x)``.

        Draws that give a negative conductance or a diverged solve are redrawn from ``q``, up to ``max_rounds``
        times; rows still invalid then (the learned law puts almost no mass on valid draws there: targets at the
        edge of the reachable region) get a cell of the seed law, so exactly ``N`` cells come back.

        Returns
        -------
        cells, n_fallback
            ``(N, n_conductances)`` float64 and how many rows fell back to the seed law.
        """
        from ..core.populations import compensate, degenerate_population

        rng = numpy_rng(seed)
        t = np.asarray(t, dtype=float).reshape(-1, 2)
        x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, self.x_dim)
        out = np.full((t.shape[0], self.model.n_conductances), np.nan)
        todo = np.arange(t.shape[0])
        for _ in range(max_rounds):
            if todo.size == 0:
                break
            xr = x if x.shape[0] == 1 else x[torch.as_tensor(todo)]
            gl, u = self.sample_draws(t[todo], xr, seed=rng)
            ok = np.isfinite(gl) & (gl > 0)
            cells = np.full((todo.size, self.model.n_conductances), np.nan)
            valid = np.zeros(todo.size, dtype=bool)
            if ok.any():
                cells[ok], valid[ok] = compensate(self.model, t[todo[ok], 0], t[todo[ok], 1], gl[ok], u[ok],
                                                  pair=self.pair, calcium_path_tau=self.calcium_path_tau)  # fmt: skip
            out[todo[valid]] = cells[valid]
            todo = todo[~valid]
        if todo.size:
            out[todo] = degenerate_population(self.model, t[todo, 0], t[todo, 1], 1, seed=rng, pair=self.pair,
                                              calcium_path_tau=self.calcium_path_tau)[:, 0, :]  # fmt: skip
        return out, int(todo.size)

    # -- densities ----------------------------------------------------------------------------------------------
    def log_prob_draws(self, gleak: Array, uniforms: Array, t: Array, x: Tensor) -> Array:
        """``log q(z | t, x)`` with ``z`` in the coordinates of :func:`~dic_sbi.core.populations.population_log_density`
        (gleak and the free conductances at their seed values), so it replaces that function's ``log p(z)``."""
        w = self._flow_w(self.to_w(gleak, uniforms))
        cond = self._condition(t, x)
        with torch.no_grad():
            log_w = self.net.log_prob(torch.as_tensor(w, dtype=torch.float32)[None], condition=cond)[0]
        u = np.clip(uniforms, _EPS, 1.0 - _EPS)
        scale = gleak / self._reference_leak
        # w → (gleak, u) → (gleak, ḡ_free = (low + width·u)·scale): the change of variables of each step.
        log_jac = -np.log(gleak) - np.sum(np.log(u) + np.log1p(-u), axis=1)
        return log_w.to(torch.float64).numpy() + log_jac - np.sum(np.log(self._width)) - self._n_free * np.log(scale)

    def reachability(self, t: Array, x: Tensor, *, n_draws: int = 2000, seed: Seed = None) -> Array:
        """Monte Carlo probability that a draw of ``q(z | t_i, x_i)`` gives a valid cell, per row of ``t``."""
        from ..core.populations import compensate

        rng = numpy_rng(seed)
        t = np.asarray(t, dtype=float).reshape(-1, 2)
        x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, self.x_dim)
        out = np.empty(t.shape[0])
        for i in range(t.shape[0]):
            ti = np.repeat(t[i : i + 1], n_draws, axis=0)
            gl, u = self.sample_draws(ti, x[i if x.shape[0] > 1 else 0][None], seed=rng)
            ok = np.isfinite(gl) & (gl > 0)
            _, valid = compensate(self.model, ti[ok, 0], ti[ok, 1], gl[ok], u[ok], pair=self.pair,
                                  calcium_path_tau=self.calcium_path_tau)  # fmt: skip
            out[i] = valid.sum() / n_draws
        return out

    def log_density(self, cells: Array, x: Tensor, *, normalize: bool = True, n_draws: int = 2000, seed: Seed = 0) -> Array:
        """``log q(z | t, x) + log |det ∂t/∂ḡ_P|`` (``- log ρ_q(t, x)`` with ``normalize``) of ``(N, n)`` cells, x
        one row or one per cell: the part of the conductance density added to ``log q(t | x)``."""
        from ..core.populations import _density_parts

        parts = _density_parts(self.model, cells, pair=self.pair, calcium_path_tau=self.calcium_path_tau,
                               tol=1e-9, max_iter=30, support_rtol=1e-6)  # fmt: skip
        x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, self.x_dim)
        out = np.full(cells.shape[0], -np.inf)
        idx = np.flatnonzero(parts.on_support)
        if idx.size == 0:
            return out
        xi = x if x.shape[0] == 1 else x[torch.as_tensor(idx)]
        gl = cells[idx, self.model.index("leak")]
        logp = self.log_prob_draws(gl, parts.uniforms[idx], parts.targets[idx], xi) + parts.log_det[idx]
        if normalize:
            rho = self.reachability(parts.targets[idx], xi, n_draws=n_draws, seed=seed)
            logp = logp - np.log(np.maximum(rho, 0.5 / n_draws))  # a cell on the support proves ρ > 0
        out[idx] = logp
        return out

    def _flow_w(self, w: Array) -> Array:
        """``w`` in the flow's own coordinates: the law's draws are the flow's minus :attr:`w_offset`."""
        return w if self.w_offset is None else w + self.w_offset

    def base_coordinates(self, w: Array, t: Array, x: Tensor) -> Array:
        """The flow's base-space coordinates ``(N, n_draws_dim)`` of ``w`` ``(N, n_draws_dim)`` at ``(t_i, x_i)``
        (``x``: one row, or one per row): the inverse of sampling, ``N(0, I)`` for a law calibrated at such pairs."""
        if not hasattr(self.net, "inverse_transform"):
            raise InvalidInputError("base_coordinates: this law is a mixture of flows (mixture_free_conductances), "
                                    "which has no single base space; use one of its members")  # fmt: skip
        w = torch.as_tensor(self._flow_w(np.asarray(w, dtype=float)), dtype=torch.float32)
        with torch.no_grad():
            return self.net.inverse_transform(w, self._condition(t, x)).to(torch.float64).numpy()

    def sample_w(self, t: Array, x: Tensor, num_samples: int, *, seed: Seed = None) -> Array:
        """``(N, num_samples, n_draws_dim)`` draws of ``w`` from ``q(z | t_i, x_i)`` (with :attr:`w_offset`)."""
        t = np.asarray(t, dtype=float).reshape(-1, 2)
        x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, self.x_dim)
        if num_samples > 1:
            t, x = np.repeat(t, num_samples, axis=0), (x.repeat_interleave(num_samples, dim=0) if x.shape[0] > 1 else x)
        cond = self._condition(t, x)
        gen = numpy_rng(seed)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(int(gen.integers(0, 2**62)))
            w = self.net.sample((1,), condition=cond)[0].to(torch.float64).numpy()
        if self.w_offset is not None:
            w = w - self.w_offset
        return w.reshape(-1, int(num_samples), w.shape[-1])

    def __repr__(self) -> str:
        return f"FreeConductanceEstimator({self.model.name!r}, z of dimension {self.n_draws_dim}, x of {self.x_dim})"


def train_free_conductances(
    model: str | ConductanceModel,
    dics: Any,
    conductances: Any,
    x: Any,
    *,
    pair: tuple[str, str] | None = None,
    hidden_features: int = 64,
    num_transforms: int = 5,
    passes: int | None = 2,
    training: dict | None = None,
    seed: Seed = None,
    show_progress_bars: bool = True,
    device: str = "cpu",
    init: FreeConductanceEstimator | None = None,
    x_names: Sequence[str] | None = None,
) -> tuple[FreeConductanceEstimator, dict[str, Any]]:
    """Train ``q(z | t, x)`` on DIC-prior simulations: their DICs ``(N, 2)``, cells ``(N, n)`` and ``x`` ``(N, k)``.

    The free draws of each cell are recovered with :func:`~dic_sbi.core.populations.free_draws`; rows with a
    non-finite ``x`` (failed simulations) or a cell off the compensation's set are dropped. Training is sbi's
    ``NPE`` loop (``training``: keyword arguments of ``NPE.train``; default batch 512, learning rate 5e-4, at
    most 200 epochs, early stopping after 20), on ``device``; the estimator is returned on the CPU. ``passes``:
    see :func:`build_free_conductance_net` (2, coupling: fast sampling). ``init``: start from a copy of this
    estimator's network (its architecture and input scaling; the other network settings are then ignored),
    e.g. to refine an amortised law on simulations near one recording. ``x_names``: the columns of ``x``, to
    scale each feature by its moments where it is defined (see :func:`build_free_conductance_net`).

    Returns
    -------
    estimator, summary
        The :class:`FreeConductanceEstimator` and what training did (rows used, epochs, validation loss).
    """
    from ..core.populations import free_draws

    model = get_model(model)
    t = np.asarray(torch.as_tensor(dics).detach().cpu().numpy(), dtype=float)
    g = np.asarray(torch.as_tensor(conductances).detach().cpu().numpy(), dtype=float)
    xa = torch.as_tensor(x, dtype=torch.float32).detach().cpu()
    if t.ndim != 2 or t.shape[1] != 2 or g.shape != (t.shape[0], model.n_conductances) or xa.shape[0] != t.shape[0]:
        raise InvalidInputError(f"dics, conductances, x: expected (N, 2), (N, {model.n_conductances}) and (N, k) with "
                                f"one N, got {t.shape}, {g.shape} and {tuple(xa.shape)}")  # fmt: skip
    keep = np.isfinite(t).all(axis=1) & np.isfinite(g).all(axis=1) & torch.isfinite(xa).all(dim=1).numpy()
    gl, u, on = free_draws(model, np.where(keep[:, None], g, 1.0), pair=pair)
    keep &= on
    if keep.sum() < 10:
        raise InvalidInputError(f"conductances: only {int(keep.sum())} usable training rows (finite x, cells of the "
                                "compensation); need simulations of DIC-prior cells")  # fmt: skip
    w = torch.as_tensor(FreeConductanceEstimator.to_w(gl[keep], u[keep]), dtype=torch.float32)
    cond = torch.cat([xa[torch.as_tensor(keep)], torch.as_tensor(t[keep], dtype=torch.float32)], dim=1)
    settings = dict(hidden_features=int(hidden_features), num_transforms=int(num_transforms),
                    passes=None if passes is None else int(passes))
    if init is not None:
        if init.model.name != model.name or init.pair != pair or init.x_dim != xa.shape[1]:
            raise InvalidInputError("init: an estimator of another model, compensating pair or feature layout")
        settings = dict(init.settings)
    net, fit = fit_conditional_flow(w, cond, settings, training=training, seed=seed, device=device,
                                    show_progress_bars=show_progress_bars, x_names=x_names,
                                    init=None if init is None else init.net)  # fmt: skip
    summary = {"rows": int(keep.sum()), "dropped": int((~keep).sum()), **fit, **settings}
    est = FreeConductanceEstimator(net, model, x_dim=xa.shape[1], pair=pair, settings=settings)
    return est, summary


def fit_conditional_flow(
    w: Tensor,
    condition: Tensor,
    settings: dict[str, Any],
    *,
    training: dict | None = None,
    seed: Seed = None,
    device: str = "cpu",
    show_progress_bars: bool = True,
    x_names: Sequence[str] | None = None,
    init: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """Fit a :func:`build_free_conductance_net` flow ``q(w | condition)`` with sbi's ``NPE`` loop.

    ``settings``: the net's ``hidden_features``, ``num_transforms`` and ``passes``; ``training``: keyword arguments
    of ``NPE.train`` (default batch 512, learning rate 5e-4, at most 200 epochs, early stopping after 20);
    ``init``: start from a copy of this network instead. Returns the network (on the CPU, in eval mode) and
    ``epochs`` and ``best_validation_loss``.
    """
    from sbi.inference import NPE

    gen = numpy_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(gen.integers(0, 2**62)))

        def builder(theta: Tensor, xx: Tensor) -> Any:
            if init is not None:  # a copy: the network given stays as it is
                return copy.deepcopy(init).train()
            return build_free_conductance_net(theta, xx, **settings, x_names=x_names)

        inference = NPE(prior=None, density_estimator=builder, device=device, show_progress_bars=show_progress_bars)
        inference.append_simulations(w, condition)
        opts = dict(training_batch_size=512, learning_rate=5e-4, max_num_epochs=200, stop_after_epochs=20)
        opts.update(training or {})
        net = inference.train(**opts)
    return net.to("cpu").eval(), {"epochs": int(inference.summary["epochs_trained"][-1]),
                                  "best_validation_loss": float(inference.summary["best_validation_loss"][-1])}  # fmt: skip


def location_offsets(samples: Array, truths: Array) -> Array:
    """Per-coordinate shift ``d`` that centres the ranks: the mean over pairs of the fraction of
    ``samples - d`` below ``truths`` is 1/2 (``samples``: ``(N, S, k)`` draws of ``w`` at each pair's true
    ``(t, x)``, ``truths``: ``(N, k)``). A calibrated law gives ``d ≈ 0``; subtracting ``d`` from its draws
    (:attr:`FreeConductanceEstimator.w_offset`) removes a global bias of its location, which is what SBC ranks
    of the conductances see first (every conductance scales with gleak)."""
    s = np.asarray(samples, dtype=float)
    w = np.asarray(truths, dtype=float)
    if s.ndim != 3 or w.shape != (s.shape[0], s.shape[2]) or s.shape[0] < 1:
        raise InvalidInputError(f"samples, truths: expected (N, S, k) and (N, k), got {s.shape} and {w.shape}")
    # The mean over pairs of the share of S samples below the truth is the pooled share of (sample - truth) < d
    # (every pair has S samples), so the median of the pooled differences centres it.
    return np.median((s - w[:, None, :]).reshape(-1, s.shape[2]), axis=0)
