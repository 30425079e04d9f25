"""A DIC-space conductance posterior trained on the conductance box's own cells (issue 17).

:class:`~dic_sbi.sbi.DICPosterior` turns DICs into cells through the seed law (a leak, a few free conductances,
a seed solve, the compensating pair): its cells lie on a lower-dimensional part of the conductance box, so a
recording made by a cell off that part (DA: a different NMDA, fast DIC or CaN) can only be approached. Here the
factorisation is over the whole box:

    q(ḡ | x) = q(g_s, g_u | x) · q(g_other | g_s, g_u, x),  the pair solved (:func:`~dic_sbi.core.fiber.solve_pair`),

``g_other`` being every conductance but a compensating pair, each in logit (default) or linear coordinates of its
position in its box range. Both
factors are trained on the simulations of standard NPE over the linear box (the same prior, the same cells);
every sample has its DICs exactly and lies in the box (draws whose solved pair leaves the box are redrawn: the
posterior is truncated to the prior's support, as sbi's are).

With a ``fiber_density`` (a conductance-space posterior on the same box, e.g. standard NPE trained on the same
simulations), the second factor is that density restricted to the fiber of the drawn DICs,

    q(g_other | g_s, g_u, x) ∝ q_density(ḡ | x) · |∂(g_s, g_u) / ∂(pair)|⁻¹,

sampled by importance resampling with the fiber flow as proposal (``fiber_proposals`` per sample). The whole
posterior is then ``q_density(ḡ | x) · q(g_s, g_u | x) / q_density(g_s, g_u | x)``: the density's own DIC marginal
replaced by the DIC posterior's (:meth:`BoxDICPosterior.log_prob`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model
from ._utils import Seed, numpy_rng
from .free_conductances import fit_conditional_flow
from .priors import ConductancePrior, DICPrior

Array = NDArray[np.float64]

MAX_ROUNDS = 200
#: Fiber-flow proposals per sample when the fiber law is a conductance density restricted to the fiber.
FIBER_PROPOSALS = 32
#: Weight of the uniform component in :meth:`BoxDICPosterior.log_prob`'s proposal (defensive importance sampling).
LOG_PROB_DEFENSIVE = 0.5
#: Proposals evaluated at once (memory: a few hundred bytes each).
PROPOSAL_CHUNK = 1 << 16
_EPS = 1e-7
#: Coordinates of the fiber flow over the other conductances.
COORDINATES = ("logit", "linear")


def _to_w(others: Array, low: Array, high: Array, coordinates: str) -> Array:
    u = (np.asarray(others, dtype=float) - low) / (high - low)
    if coordinates == "linear":
        return u
    u = np.clip(u, _EPS, 1.0 - _EPS)
    return np.log(u) - np.log1p(-u)


class BoxDICPosterior:
    """``q(ḡ | x)`` on the linear conductance box through the DICs: ``q(g_s, g_u | x) · q(g_other | g_s, g_u, x)``.

    Arguments:
        dic_posterior: sbi posterior over ``(g_s, g_u)`` (trained on the box cells' DICs).
        fiber_net: sbi conditional flow over ``w`` given ``(x, g_s, g_u)``: the other conductances' positions
            ``(g_other - low) / (high - low)`` in ``coordinates`` (:meth:`to_w`).
        model: Model name or object.
        pair: The two conductances solved for the DICs (:func:`~dic_sbi.core.fiber.box_pair`).
        x_dim: Columns of ``x``.
        prior: The :class:`ConductancePrior` (linear box) the training cells were drawn from.
        max_rounds: Redraws of samples whose solved pair leaves the box, before they are returned as NaN.
        coordinates: The fiber flow's coordinates of each other conductance: ``"logit"`` (of its position in its box
            range: every draw inside the range) or ``"linear"`` (the position itself; draws outside are redrawn).
        fiber_density: An sbi posterior over whole cells of the same box and ``x`` (``log_prob_batched``), e.g.
            standard NPE on the same simulations: the fiber law becomes that density on the fiber, the fiber flow
            its importance proposal (module docstring). ``None``: the fiber flow is the law.
        fiber_proposals: Proposals per sample with a ``fiber_density``.
    """

    def __init__(self, dic_posterior: Any, fiber_net: Any, model: str | ConductanceModel, *, pair: tuple[str, str],
                 x_dim: int, prior: ConductancePrior, max_rounds: int = MAX_ROUNDS,
                 coordinates: str = "logit", fiber_density: Any = None,
                 fiber_proposals: int = FIBER_PROPOSALS) -> None:  # fmt: skip
        from ..core.fiber import pair_indices

        self.dic_posterior = dic_posterior
        self.fiber_net = fiber_net.eval()
        self.model = get_model(model)
        self.pair = tuple(pair)
        self._pair_idx = pair_indices(self.model, self.pair)
        self.others = np.array([i for i in range(self.model.n_conductances) if i not in self._pair_idx], dtype=np.intp)
        self.x_dim = int(x_dim)
        if prior.scale != "linear":
            raise InvalidInputError(f"prior: expected the linear conductance box, got a {prior.scale!r} one")
        self.prior = prior
        self.low = prior.low.to(torch.float64).numpy()
        self.high = prior.high.to(torch.float64).numpy()
        self.max_rounds = int(max_rounds)
        if coordinates not in COORDINATES:
            raise InvalidInputError(f"coordinates: expected one of {', '.join(COORDINATES)}, got {coordinates!r}")
        self.coordinates = coordinates
        if fiber_density is not None and not hasattr(fiber_density, "log_prob_batched"):
            raise InvalidInputError(f"fiber_density: expected an sbi posterior with log_prob_batched, got "
                                    f"{type(fiber_density).__name__}")  # fmt: skip
        if not (isinstance(fiber_proposals, (int, np.integer)) and fiber_proposals >= 1):
            raise InvalidInputError(f"fiber_proposals: expected an int >= 1, got {fiber_proposals!r}")
        self.fiber_density = fiber_density
        self.fiber_proposals = int(fiber_proposals)
        self._default_x: Tensor | None = None
        self.last_unsolved = 0

    # -- sbi's interface ----------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.model.channels)

    @property
    def default_x(self) -> Tensor | None:
        return self._default_x

    def set_default_x(self, x: Tensor) -> "BoxDICPosterior":
        self._default_x = self._rows(x)[:1]
        return self

    def _rows(self, x: Tensor | None) -> Tensor:
        if x is None:
            if self._default_x is None:
                raise InvalidInputError("x: give an observation or set one with set_default_x")
            return self._default_x
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.shape[-1] != self.x_dim:
            raise InvalidInputError(f"x: expected {self.x_dim} columns, got {x.shape[-1]}")
        return x.reshape(-1, self.x_dim)

    def sample(self, sample_shape: torch.Size | tuple = torch.Size(), x: Tensor | None = None, *, seed: Seed = None,
               show_progress_bars: bool = False, return_dics: bool = False) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
        """``sample_shape + (n_conductances,)`` float64 cells for one observation (NaN rows: never solved in the
        box within ``max_rounds`` redraws; :attr:`last_unsolved` counts them)."""
        x = self._rows(x)
        if x.shape[0] != 1:
            raise InvalidInputError(f"x: expected one observation, got {x.shape[0]}; use sample_batched")
        shape = torch.Size(sample_shape)
        g, t = self._draw(x.expand(shape.numel(), -1), numpy_rng(seed))
        g, t = g.reshape(shape + (g.shape[-1],)), t.reshape(shape + (2,))
        return (g, t) if return_dics else g

    def sample_batched(self, sample_shape: torch.Size | tuple, x: Tensor, *, seed: Seed = None,
                       show_progress_bars: bool = False, return_dics: bool = False,
                       **kwargs: Any) -> Tensor | tuple[Tensor, Tensor]:  # fmt: skip
        """``sample_shape + (B, n_conductances)`` cells for each row of ``x`` ``(B, k)`` (as ``sbi.diagnostics``'
        ``run_sbc`` / ``run_tarp`` call it; sbi's sampling options are accepted and unused)."""
        x = self._rows(x)
        shape = torch.Size(sample_shape)
        n, B = shape.numel(), x.shape[0]
        g, t = self._draw(x.repeat(n, 1), numpy_rng(seed))  # sample-major: row i·B + b is sample i of x_b
        g, t = g.reshape(shape + (B, g.shape[-1])), t.reshape(shape + (B, 2))
        return (g, t) if return_dics else g

    def sample_dics(self, sample_shape: torch.Size | tuple = torch.Size(), x: Tensor | None = None, *,
                    seed: Seed = None, show_progress_bars: bool = False) -> Tensor:  # fmt: skip
        """DICs ``sample_shape + (2,)`` from ``q(g_s, g_u | x)`` alone (float32)."""
        x = self._rows(x)
        shape = torch.Size(sample_shape)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(numpy_rng(seed).integers(0, 2**62)))
            t = self.dic_posterior.sample((shape.numel(),), x=x[:1], show_progress_bars=False)
        return t.reshape(shape + (2,)).to(torch.float32)

    # -- the two factors and the solve --------------------------------------------------------------------------
    def to_w(self, others: Array) -> Array:
        """The fiber flow's coordinates of the other conductances ``(N, n_others)`` (inside their box ranges)."""
        return _to_w(others, self.low[self.others], self.high[self.others], self.coordinates)

    def from_w(self, w: Array) -> Array:
        """Inverse of :meth:`to_w` (linear coordinates may land outside the box: those draws are redrawn)."""
        lo, hi = self.low[self.others], self.high[self.others]
        u = 1.0 / (1.0 + np.exp(-w)) if self.coordinates == "logit" else w
        return lo + (hi - lo) * u

    def _condition(self, t: Array | Tensor, x: Tensor) -> Tensor:
        """The fiber flow's condition ``(x_i, t_i)`` for each row of DICs ``t`` (``x``: one row, or one per row)."""
        t = torch.as_tensor(t).to(torch.float32).reshape(-1, 2)
        x = self._rows(x)
        return torch.cat([x.expand(t.shape[0], -1) if x.shape[0] == 1 else x, t], dim=1)

    def sample_others(self, t: Array | Tensor, x: Tensor) -> Array:
        """The other conductances ``(N, n_others)``, one draw of ``q(g_other | t_i, x_i)`` per row of ``t``
        (``x``: one row, or one per row), from torch's global generator (callers seed or fork it)."""
        with torch.no_grad():
            return self.from_w(self.fiber_net.sample((1,), condition=self._condition(t, x))[0].to(torch.float64).numpy())

    def cells_of(self, t: Array, others: Array) -> tuple[Array, NDArray[np.bool_]]:
        """Cells from DICs ``t`` ``(N, 2)`` and the other conductances ``(N, n_others)``, the pair solved, and
        ``(N,)`` True where the cell was solved and lies in the box."""
        from ..core.fiber import solve_pair

        t = np.asarray(t, dtype=float)
        g = np.zeros((t.shape[0], self.model.n_conductances))
        g[:, self.others] = others
        g, solved = solve_pair(self.model, g, t[:, 0], t[:, 1], pair=self.pair)
        return g, solved & np.all((g >= self.low) & (g <= self.high), axis=1)

    def fiber_log_prob(self, others: Array, t: Array, x: Tensor) -> Array:
        """``log q(g_other | t_i, x_i)`` of the fiber flow, a density over the other conductances themselves (the
        coordinates' Jacobian included), one per row (``x``: one row, or one per row)."""
        others = np.asarray(others, dtype=float)
        lo, hi = self.low[self.others], self.high[self.others]
        u = (others - lo) / (hi - lo)
        with torch.no_grad():
            w = torch.as_tensor(self.to_w(others), dtype=torch.float32)[None]
            lq = self.fiber_net.log_prob(w, condition=self._condition(t, x))[0].to(torch.float64).numpy()
        if self.coordinates == "logit":
            u = np.clip(u, _EPS, 1.0 - _EPS)
            return lq - np.sum(np.log(u) + np.log1p(-u) + np.log(hi - lo), axis=1)
        return lq - np.sum(np.log(hi - lo))

    def _density_log_prob(self, g: Array, x: Tensor) -> Array:
        """``log q_density(g_i | x_i)`` of the fiber density, unnormalised (its leakage out of the box is a constant
        per ``x`` that every ratio here cancels); ``x``: one row, or one per row of ``g``."""
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.fiber_density.log_prob_batched(torch.as_tensor(g, dtype=torch.float32)[None], x=x,
                                                       norm_posterior=False)[0].to(torch.float64).numpy()  # fmt: skip

    def _log_weights(self, g: Array, others: Array, t: Array, x: Tensor, defensive: float = 0.0) -> Array:
        """Importance log-weights of proposals ``g`` (in the box) for the fiber density:
        ``log q_density(g | x) - log |∂t / ∂pair| - log q_proposal(g_other | t, x)`` (:meth:`_proposals`)."""
        from ..core.fiber import pair_log_jacobian

        ld = self._density_log_prob(g, x)
        lq = self.fiber_log_prob(others, t, x)
        if defensive > 0:
            log_uniform = -np.sum(np.log(self.high[self.others] - self.low[self.others]))
            lq = np.logaddexp(np.log1p(-defensive) + lq, np.log(defensive) + log_uniform)
        return ld - pair_log_jacobian(self.model, g, pair=self.pair) - lq

    def _proposals(self, t: Array, x: Tensor, M: int, defensive: float = 0.0) -> tuple[Array, Array]:
        """``M`` proposals per row of ``t`` ``(m, 2)`` (row-major: row r's are ``r·M … r·M + M - 1``): the cells
        and their importance log-weights (``-inf`` outside the box). The proposal
        is the fiber flow, or with ``defensive`` > 0 its mixture with the uniform law over the other conductances'
        box ranges (weight ``defensive``: bounded weights wherever the flow misses the density's mass)."""
        x = self._rows(x)
        tt = np.repeat(np.asarray(t, dtype=float), M, axis=0)
        xx = x.expand(tt.shape[0], -1) if x.shape[0] == 1 else x.repeat_interleave(M, dim=0)
        others = self.sample_others(tt, xx)
        if defensive > 0:
            lo, hi = self.low[self.others], self.high[self.others]
            uniform = torch.rand(tt.shape[0], dtype=torch.float64).numpy() < defensive
            others[uniform] = lo + (hi - lo) * torch.rand(int(uniform.sum()), lo.size, dtype=torch.float64).numpy()
        g, ok = self.cells_of(tt, others)
        lw = np.full(tt.shape[0], -np.inf)
        if ok.any():
            lw[ok] = self._log_weights(g[ok], others[ok], tt[ok], xx[torch.as_tensor(ok)], defensive)
        return g, lw

    def _proposal_chunks(self, t: Array, x: Tensor, M: int, defensive: float = 0.0):
        """:meth:`_proposals` over chunks of rows of ``t`` (at most :data:`PROPOSAL_CHUNK` proposals each: sbi's
        ``run_sbc`` asks for 10⁵–10⁶ cells at once): yields each chunk's rows (a slice), cells ``(n, M, k)`` and
        log-weights ``(n, M)``."""
        x = self._rows(x)
        step = max(1, PROPOSAL_CHUNK // M)
        for lo in range(0, t.shape[0], step):
            rows = slice(lo, min(t.shape[0], lo + step))
            g, lw = self._proposals(t[rows], x if x.shape[0] == 1 else x[rows], M, defensive)
            n = g.shape[0] // M
            yield rows, g.reshape(n, M, -1), lw.reshape(n, M)

    def _fiber_cells(self, t: Array, x: Tensor) -> tuple[Array, NDArray[np.bool_]]:
        """One cell per row of DICs ``t`` ``(m, 2)`` and ``x`` (one row, or one per row): the fiber law's draw, the
        pair solved, and whether it lies in the box (torch's global generator: callers seed or fork it)."""
        if self.fiber_density is None:
            return self.cells_of(t, self.sample_others(t, x))
        M, m = self.fiber_proposals, t.shape[0]
        cells = np.full((m, self.model.n_conductances), np.nan)
        inside = np.zeros(m, dtype=bool)
        for rows, g, lw in self._proposal_chunks(t, x, M):
            n = lw.shape[0]
            # Importance resampling, one of M per row, by the Gumbel-max trick on torch's generator (seeded by callers).
            gumbel = -torch.log(-torch.log(torch.rand(n, M, dtype=torch.float64).clamp_min(1e-300))).numpy()
            cells[rows] = g[np.arange(n), np.argmax(lw + gumbel, axis=1)]
            inside[rows] = np.isfinite(lw).any(axis=1)
        return cells, inside

    def log_prob(self, theta: Tensor, x: Tensor | None = None, *, proposals: int = 256, seed: Seed = None) -> Tensor:
        """Estimated ``log q(ḡ | x)`` of cells ``theta`` ``(N, n_conductances)`` for one observation (``-inf``
        outside the box; float64).

        With a ``fiber_density``: ``log q_density(ḡ | x) + log q(t | x) - log q_density(t | x)``, ``t`` the cell's
        DICs, the density's DIC marginal estimated by importance sampling with ``proposals`` draws on ``t``'s fiber
        (half from the fiber flow, half uniform over the other conductances' ranges). Without:
        ``log q(t | x) + log q_flow(g_other | t, x) + log |∂t / ∂pair|`` less the log of the box's acceptance
        (:meth:`acceptance`, at least 1 000 draws). Either way an estimate (seeded by ``seed``) whose error falls as
        ``proposals`` grows; the sampler's finite ``fiber_proposals`` approach it as they grow.
        """
        from ..core import dics as cell_dics
        from ..core.fiber import pair_log_jacobian

        x = self._rows(x)
        if x.shape[0] != 1:
            raise InvalidInputError(f"x: expected one observation, got {x.shape[0]}")
        if not (isinstance(proposals, (int, np.integer)) and proposals >= 1):
            raise InvalidInputError(f"proposals: expected an int >= 1, got {proposals!r}")
        g = np.asarray(torch.as_tensor(theta, dtype=torch.float64), dtype=float).reshape(-1, self.model.n_conductances)
        out = np.full(g.shape[0], -np.inf)
        inside = np.isfinite(g).all(axis=1) & np.all((g >= self.low) & (g <= self.high), axis=1)
        if not inside.any():
            return torch.as_tensor(out)
        gi = g[inside]
        t = cell_dics(self.model, gi)[:, 1:]
        rng = numpy_rng(seed)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lq_t = self.dic_posterior.log_prob(torch.as_tensor(t, dtype=torch.float32), x=x).to(torch.float64).numpy()
        if self.fiber_density is None:
            lp = lq_t + self.fiber_log_prob(gi[:, self.others], t, x) + pair_log_jacobian(self.model, gi, pair=self.pair)
            n = max(int(proposals), 1000)
            out[inside] = lp - np.log(max(self.acceptance(x, n=n, seed=rng), 1.0 / n))
            return torch.as_tensor(out)
        P = int(proposals)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**62)))
            lw = np.concatenate([w for _, _, w in self._proposal_chunks(t, x, P, defensive=LOG_PROB_DEFENSIVE)])
        # The density's mass on each fiber: the mean importance weight (-inf where no proposal fell in the box).
        log_marginal = torch.logsumexp(torch.as_tensor(lw), dim=1).numpy() - np.log(P)
        out[inside] = self._density_log_prob(gi, x) + lq_t - log_marginal
        return torch.as_tensor(out)

    def _draw(self, x: Tensor, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """One cell per row of ``x``: DICs, then the other conductances, then the pair; redrawn until in the box."""
        m = x.shape[0]
        cells = np.full((m, self.model.n_conductances), np.nan)
        dics = np.full((m, 2), np.nan)
        todo = np.arange(m)
        for _ in range(self.max_rounds):
            if todo.size == 0:
                break
            xr = x[torch.as_tensor(todo)]
            with torch.random.fork_rng(devices=[]), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(int(rng.integers(0, 2**62)))
                if bool((xr == xr[:1]).all()):  # one observation: one call, no batching over x
                    t = self.dic_posterior.sample((todo.size,), x=xr[:1], show_progress_bars=False)
                else:
                    t = self.dic_posterior.sample_batched((1,), x=xr, show_progress_bars=False)[0]
                g, inside = self._fiber_cells(t.to(torch.float64).numpy(), xr)
                tn = t.to(torch.float64).numpy()
            cells[todo[inside]], dics[todo[inside]] = g[inside], tn[inside]
            todo = todo[~inside]
        self.last_unsolved = int(todo.size)
        return torch.as_tensor(cells), torch.as_tensor(dics)

    def acceptance(self, x: Tensor, *, n: int = 1000, seed: Seed = None) -> float:
        """Fraction of one round's draws for ``x`` whose solved pair lies in the box (the truncation's mass)."""
        x = self._rows(x)[:1]
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(int(numpy_rng(seed).integers(0, 2**62)))
            t = self.dic_posterior.sample((n,), x=x, show_progress_bars=False)
            return float(np.mean(self._fiber_cells(t.to(torch.float64).numpy(), x)[1]))

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Posteriors pickled before these existed.
        self.__dict__.update({"coordinates": "logit", "fiber_density": None, "fiber_proposals": FIBER_PROPOSALS, **state})

    def __repr__(self) -> str:
        fiber = (f"q({len(self.others)} other conductances | g_s, g_u, x)" if self.fiber_density is None else
                 f"the density on the fiber ({self.fiber_proposals} proposals)")  # fmt: skip
        return f"BoxDICPosterior({self.model.name!r}, pair {self.pair}, q(g_s, g_u | x) · {fiber} on the linear box)"


def box_dic_prior(model: str | ConductanceModel, dics: Array, *, margin: float = 0.05) -> DICPrior:
    """The DIC prior the box's cells induce: a box holding ``dics`` ``(N, 2)`` with ``margin`` of its width on
    each side, its density a histogram of them (:func:`~dic_sbi.sbi.priors.dic_image_weights`'s rule)."""
    from .priors import check_dic_box, histogram_weights

    lo, hi = np.min(dics, axis=0), np.max(dics, axis=0)
    pad = margin * (hi - lo)
    box = check_dic_box(((lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])))
    return DICPrior(model, box=box, reachable_only=False, weights=histogram_weights(dics, box))


def train_box_dic_posterior(
    model: str | ConductanceModel,
    conductances: Any,
    x: Any,
    *,
    pair: tuple[str, str] | None = None,
    prior: ConductancePrior | None = None,
    hidden_features: int = 50,
    num_transforms: int = 5,
    fiber_hidden_features: int = 64,
    fiber_num_transforms: int = 5,
    fiber_passes: int | None = 2,
    fiber_coordinates: str = "logit",
    fiber_density: str | Any | None = None,
    fiber_proposals: int = FIBER_PROPOSALS,
    density_estimator: str = "nsf",
    training: dict | None = None,
    seed: Seed = None,
    torch_threads: int | None = None,
    show_progress_bars: bool = True,
    defined_scaling: bool = False,
    simulator: Any = None,
) -> tuple[BoxDICPosterior, dict[str, Any]]:
    """Train a :class:`BoxDICPosterior` on simulations of the linear conductance box: cells ``(N, n)``, ``x`` ``(N, k)``.

    The DIC posterior is sbi's NPE on the cells' DICs (prior :func:`box_dic_prior`), the fiber law a conditional
    flow over the other conductances (:func:`~dic_sbi.sbi.free_conductances.fit_conditional_flow`); rows with a
    non-finite ``x`` or a cell outside the box are dropped. ``training``: keyword arguments of ``NPE.train`` for
    both; ``hidden_features``, ``num_transforms``, ``density_estimator``, ``defined_scaling`` and ``torch_threads``
    as in :func:`~dic_sbi.sbi.train_conductance_posterior` (the DIC factor is trained as that is);
    ``simulator``: the :class:`~dic_sbi.sbi.ConductanceSimulator` that made ``x`` (its feature layout; default
    the model's default one). ``fiber_*``: the fiber flow's width, depth, coupling passes (``None``: fully
    autoregressive) and coordinates (:class:`BoxDICPosterior`); ``fiber_density``: ``"npe"`` trains standard NPE on
    the same rows (the same settings as the DIC factor) and makes the fiber law that density on the fiber, with
    ``fiber_proposals`` fiber-flow proposals per sample; a trained conductance posterior is used as given.

    Returns
    -------
    posterior, summary
        The posterior and what training did (rows, epochs of each factor, the pair).
    """
    from ..core import dics as cell_dics
    from ..core.fiber import box_pair, pair_indices
    from .training import _train_npe

    from .simulators import ConductanceSimulator

    model = get_model(model)
    prior = ConductancePrior(model, "linear") if prior is None else prior
    simulator = ConductanceSimulator(model) if simulator is None else simulator
    x_names = getattr(simulator, "names", None)
    pair = box_pair(model) if pair is None else tuple(pair)
    if fiber_coordinates not in COORDINATES:
        raise InvalidInputError(f"fiber_coordinates: expected one of {', '.join(COORDINATES)}, got {fiber_coordinates!r}")
    if isinstance(fiber_density, str) and fiber_density != "npe":
        raise InvalidInputError(f"fiber_density: expected 'npe', a trained conductance posterior or None, got {fiber_density!r}")
    g = np.asarray(torch.as_tensor(conductances).detach().cpu().numpy(), dtype=float)
    xa = torch.as_tensor(x, dtype=torch.float32).detach().cpu()
    if g.ndim != 2 or g.shape[1] != model.n_conductances or xa.ndim != 2 or xa.shape[0] != g.shape[0]:
        raise InvalidInputError(f"conductances, x: expected (N, {model.n_conductances}) and (N, k), got {g.shape} and "
                                f"{tuple(xa.shape)}")  # fmt: skip
    low, high = prior.low.to(torch.float64).numpy(), prior.high.to(torch.float64).numpy()
    keep = torch.isfinite(xa).all(dim=1).numpy() & np.isfinite(g).all(axis=1) & np.all((g >= low) & (g <= high), axis=1)
    if keep.sum() < 20:
        raise InvalidInputError(f"x: only {int(keep.sum())} usable rows (finite x, cells in the box); need more simulations")
    g, xa = g[keep], xa[torch.as_tensor(keep)]
    t = cell_dics(model, g)[:, 1:]
    dic_prior = box_dic_prior(model, t)
    gen = numpy_rng(seed)
    dic_post, _, _, inference = _train_npe(
        dic_prior, simulator, int(keep.sum()), density_estimator=density_estimator, embedding_net=None,
        hidden_features=hidden_features, num_transforms=num_transforms, training=training, num_workers=1,
        simulation_batch_size=None, seed=int(gen.integers(0, 2**62)), show_progress_bars=show_progress_bars,
        theta=torch.as_tensor(t, dtype=torch.float32), x=xa, torch_threads=torch_threads, defined_scaling=defined_scaling,
    )  # fmt: skip
    threads = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(int(torch_threads))
    try:
        pi = pair_indices(model, pair)
        others = [i for i in range(model.n_conductances) if i not in pi]
        w = torch.as_tensor(_to_w(g[:, others], low[others], high[others], fiber_coordinates), dtype=torch.float32)
        settings = dict(hidden_features=int(fiber_hidden_features), num_transforms=int(fiber_num_transforms),
                        passes=None if fiber_passes is None else int(fiber_passes))
        fiber, fit = fit_conditional_flow(w, torch.cat([xa, torch.as_tensor(t, dtype=torch.float32)], 1), settings,
                                          training={**dict(training_batch_size=512), **(training or {})},
                                          seed=int(gen.integers(0, 2**62)), show_progress_bars=show_progress_bars,
                                          x_names=x_names if defined_scaling else None)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    density_epochs = None
    if isinstance(fiber_density, str):  # standard NPE on the same rows, trained as the DIC factor is
        fiber_density, _, _, dens_inf = _train_npe(
            prior, simulator, int(keep.sum()), density_estimator=density_estimator, embedding_net=None,
            hidden_features=hidden_features, num_transforms=num_transforms, training=training, num_workers=1,
            simulation_batch_size=None, seed=int(gen.integers(0, 2**62)), show_progress_bars=show_progress_bars,
            theta=torch.as_tensor(g, dtype=torch.float32), x=xa, torch_threads=torch_threads,
            defined_scaling=defined_scaling,
        )  # fmt: skip
        density_epochs = int(dens_inf.summary["epochs_trained"][-1])
    post = BoxDICPosterior(dic_post, fiber, model, pair=pair, x_dim=xa.shape[1], prior=prior,
                           coordinates=fiber_coordinates, fiber_density=fiber_density, fiber_proposals=fiber_proposals)
    summary = {"rows": int(keep.sum()), "dropped": int((~keep).sum()), "pair": list(pair),
               "dic_epochs": int(inference.summary["epochs_trained"][-1]), "fiber_epochs": fit["epochs"],
               "fiber_best_validation_loss": fit["best_validation_loss"], "density_epochs": density_epochs}  # fmt: skip
    return post, summary


__all__ = ["BoxDICPosterior", "train_box_dic_posterior", "box_dic_prior"]
