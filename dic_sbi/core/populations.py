"""Degenerate populations: many conductance vectors that share target DICs (Fyon et al. 2024).

Generative process (Fyon 2024, refined by Brandoit 2025), for a target ``t = (g_s*, g_u*)`` at the model's
reference threshold V_ref:

1. Free draws ``z``: ``gleak ~ Gamma`` with the mean and variance of ``U(leak_range)``; each free conductance
   ``~ U(lo, hi) · gleak / reference_leak`` (with a tail range, a mixture of the two uniforms: ``SeedPopulation``);
   fixed conductances ``= value · gleak / reference_leak``.
2. Seed: solve for the three ``seed_solve`` conductances so that ``DIC(V_ref) = seed_target`` (a spiking cell).
3. Move: the model's :class:`~dic_sbi.models.base.CompensationRule` picks a pair ``P`` from the target; solve for
   the pair so that ``(g_s, g_u)(V_ref) = t`` (``g_f`` left free).
4. Keep the cell if every conductance is ≥ 0 and both solves converged; otherwise draw again (rejection), until
   exactly ``n`` cells are found or the budget of draws is spent.

The solves are exact (to ``tol``, 1e-9 by default) on the DIC map of :class:`~dic_sbi.core.dics.Linearization`,
which is linear in the unknowns unless one of them moves Ca_inf (STG CaS in a pair). Linear solves use inverses
precomputed once, since V_ref is fixed; a calcium pair is solved by Newton's method on a scalar equation in the
calcium unknown (the other unknown, linear, is eliminated), run to ``tol`` instead of the published fixed number
of fixed-point passes, with divergence (non-finite values, no decrease under step halving, too many steps)
flagged as an invalid draw. When several solutions exist, the one Newton reaches from the seed is returned. The
compiled kernels are in :mod:`dic_sbi.core._population_kernels`; random numbers are drawn with numpy in the
calling thread, so results do not depend on the number of threads.

The density of the cells this process returns is :func:`population_log_density`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._parallel import run_ranges
from ..errors import InvalidInputError, UnreachableTargetError
from ..models import CompensationRule, ConductanceModel, get_model
from ._population_kernels import _BLOCK as _KERNEL_BLOCK
from ._population_kernels import (
    PAIR_CONSTANT,
    PAIR_GENERAL,
    PAIR_ONE_NONLINEAR,
    VALID,
    compact,
    population_kernel,
    recover_kernel,
)
from .checks import is_seed
from .dics import CalciumPathTau, Linearization, linearize

__all__ = [
    "degenerate_population",
    "compensate",
    "free_draws",
    "population_log_density",
    "PopulationInfo",
    "SeedDistribution",
    "seed_distribution",
    "compensation_rule",
    "default_compensation",
    "DEFAULT_TOL",
]

Array = NDArray[np.float64]

#: Largest |DIC - target| (normalised units) of an accepted cell; the public guarantee is 1e-6.
DEFAULT_TOL = 1e-9

_CHUNK = 1 << 17  # draws per kernel call: scratch buffers are allocated once and reused


@dataclass(frozen=True)
class SeedDistribution:
    """The free-draw law ``p(z)`` and the solve plan of a model's degenerate populations (arrays, model order).

    Attributes
    ----------
    leak : int
        Position of gleak.
    gamma_shape, gamma_scale : float
        Gamma law of gleak (mean and variance of ``U(leak_range)``).
    reference_leak : float
        Leak at which the free ranges and fixed values are given.
    free_index, free_low, free_high
        Free conductances and their ranges at ``reference_leak`` (with a tail, the tail range: the widest).
    position_knots, position_cdf : (n_free, 4)
        The law of each free conductance's position ``u ∈ [0, 1]`` in its range, piecewise uniform: its CDF is
        linear between ``(position_knots[f, k], position_cdf[f, k])``. Uniform (knots 0, 0, 1, 1) unless the seed
        law has a tail (:class:`~dic_sbi.models.base.SeedPopulation`); ``tailed`` says whether any has one.
    fixed_index, fixed_value
        Fixed conductances and their values at ``reference_leak``.
    seed_index, seed_target
        The three seed-solved conductances and the seed DICs (g_f, g_s, g_u).
    pairs : (P, 2)
        Candidate compensating pairs; ``pair_names`` their names.
    """

    leak: int
    gamma_shape: float
    gamma_scale: float
    reference_leak: float
    free_index: NDArray[np.intp]
    free_low: Array
    free_high: Array
    fixed_index: NDArray[np.intp]
    fixed_value: Array
    seed_index: NDArray[np.intp]
    seed_target: Array
    pairs: NDArray[np.intp]
    pair_names: tuple[tuple[str, str], ...]
    position_knots: Array
    position_cdf: Array
    tailed: bool

    def positions(self, v: Array) -> Array:
        """Positions ``u`` of the free conductances from uniforms ``v`` (``(N, n_free)``), by the inverse CDF;
        ``v`` itself when no conductance has a tail (so untailed seed laws draw exactly as before)."""
        if not self.tailed:
            return v
        return np.column_stack([np.interp(v[:, f], self.position_cdf[f], self.position_knots[f])
                                for f in range(v.shape[1])]) if v.shape[1] else v  # fmt: skip

    def log_position_density(self, u: Array) -> Array:
        """``Σ_f log p(u_f)`` of positions ``u`` (``(N, n_free)``, in [0, 1]): 0 without a tail."""
        out = np.zeros(u.shape[0])
        if not self.tailed:
            return out
        for f in range(u.shape[1]):
            k, c = self.position_knots[f], self.position_cdf[f]
            dens = np.diff(c) / np.where(np.diff(k) > 0, np.diff(k), 1.0)
            # Middle piece (the free range) first: a position on a boundary takes the free range's density.
            piece = np.where((u[:, f] >= k[1]) & (u[:, f] <= k[2]), 1, np.where(u[:, f] < k[1], 0, 2))
            with np.errstate(divide="ignore"):
                out += np.log(dens[piece])
        return out


def _position_law(free_range: tuple[float, float], tail: tuple[float, float] | None, weight: float) -> tuple[Array, Array, Array]:
    """Outer range, knots and CDF of one free conductance's position law (see :class:`SeedDistribution`)."""
    a, b = free_range
    if tail is None:
        return np.array([a, b]), np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0, 1.0])
    lo, hi = tail
    ua, ub = (a - lo) / (hi - lo), (b - lo) / (hi - lo)
    # Mixture (1 - w) U(a, b) + w U(lo, hi): CDF w·u outside the free range, plus (1 - w) across it.
    knots = np.array([0.0, ua, ub, 1.0])
    cdf = np.array([0.0, weight * ua, weight * ub + (1.0 - weight), 1.0])
    return np.array([lo, hi]), knots, cdf


def compensation_rule(model: str | ConductanceModel) -> CompensationRule:
    """The model's :class:`~dic_sbi.models.base.CompensationRule`, or :func:`default_compensation` if it gives none."""
    model = get_model(model)
    sp = model.seed_population
    if sp is not None and sp.compensation is not None:
        return sp.compensation
    return _default_compensation_cached(model)


@lru_cache(maxsize=32)
def _default_compensation_cached(model: ConductanceModel) -> CompensationRule:
    return default_compensation(model)


def default_compensation(model: str | ConductanceModel) -> CompensationRule:
    """One compensating pair for a model that names none: the two conductances that move (g_s, g_u) most
    independently at the reference threshold.

    Each candidate (every conductance but the leak and calcium-gated ones) contributes its (g_s, g_u) column of
    the sensitivity matrix at ``V_ref`` times a typical value (the middle of its ``default_ranges``); the pair
    whose two scaled columns span the largest area (``|det|``) is chosen: it reaches the most targets with the
    smallest changes. Calcium effects (``Ca_inf``) are left out of the choice, not of the solve.
    """
    model = get_model(model)
    lin = linearize(model, None, calcium_path_tau="model")
    names = model.conductance_names
    candidates = [i for i, n in enumerate(names) if n != "leak" and i not in set(lin.ca_index.tolist())]
    typical = np.array([np.mean(model.default_ranges[n]) for n in names])
    cols = lin.S0[1:, :] * typical  # (2, n): scaled (g_s, g_u) columns
    best, best_area = None, 0.0
    for a in range(len(candidates)):
        for b in range(a + 1, len(candidates)):
            i, j = candidates[a], candidates[b]
            area = abs(cols[0, i] * cols[1, j] - cols[1, i] * cols[0, j])
            if area > best_area:
                best, best_area = (names[i], names[j]), area
    if best is None:
        raise InvalidInputError(
            f"model: {model.name!r} has no pair of conductances that moves both g_s and g_u at the reference "
            "threshold; give SeedPopulation(compensation=CompensationRule(pairs=((a, b),)))"
        )
    return CompensationRule(pairs=(best,))


def seed_distribution(model: str | ConductanceModel) -> SeedDistribution:
    """Read the seed-population settings of ``model`` into arrays (raises if the model has none)."""
    model = get_model(model)
    sp = model.seed_population
    if sp is None:
        raise InvalidInputError(
            f"model: {model.name!r} defines no seed population; add seed_population=SeedPopulation(...) to the model"
        )
    rule = compensation_rule(model)
    a, b = sp.leak_range
    mean, var = 0.5 * (a + b), (b - a) ** 2 / 12.0
    free = list(sp.free_ranges.items())
    fixed = list(sp.fixed.items())
    laws = [_position_law(r, sp.tail_ranges.get(k), sp.tail_weight) for k, r in free]
    return SeedDistribution(
        leak=model.index("leak"),
        gamma_shape=mean**2 / var,
        gamma_scale=var / mean,
        reference_leak=float(sp.reference_leak),
        free_index=np.array([model.index(k) for k, _ in free], dtype=np.intp),
        free_low=np.array([law[0][0] for law in laws], dtype=float),
        free_high=np.array([law[0][1] for law in laws], dtype=float),
        fixed_index=np.array([model.index(k) for k, _ in fixed], dtype=np.intp),
        fixed_value=np.array([v for _, v in fixed], dtype=float),
        seed_index=np.array([model.index(k) for k in sp.seed_solve], dtype=np.intp),
        seed_target=np.asarray(sp.seed_target, dtype=float),
        pairs=np.array([[model.index(a), model.index(b)] for a, b in rule.pairs], dtype=np.intp),
        pair_names=tuple(tuple(p) for p in rule.pairs),
        position_knots=np.array([law[1] for law in laws], dtype=float).reshape(len(free), 4),
        position_cdf=np.array([law[2] for law in laws], dtype=float).reshape(len(free), 4),
        tailed=bool(sp.tail_ranges),
    )


@dataclass(frozen=True)
class PopulationInfo:
    """What :func:`degenerate_population` did for each target (arrays of the targets' shape).

    Attributes
    ----------
    reachability : ndarray
        Fraction of draws that gave a valid cell (non-negative conductances, converged solves).
    n_draws : ndarray
        Draws made for the target.
    pair : ndarray
        Index of the compensating pair used (see ``pair_names``).
    pair_names : tuple
        Names of the candidate pairs of the model.
    """

    reachability: Array
    n_draws: NDArray[np.int64]
    pair: NDArray[np.intp]
    pair_names: tuple[tuple[str, str], ...]


# -- python driver ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    model: ConductanceModel
    seed: SeedDistribution
    lin_tuple: tuple
    seed_constant: bool
    seed_inverse: Array
    pair_mode: NDArray[np.intp]
    pair_inverse: Array
    pair_rows: NDArray[np.intp]


def _plan(model: ConductanceModel, calcium_path_tau: CalciumPathTau) -> _Plan:
    seed = seed_distribution(model)
    lin = linearize(model, None, calcium_path_tau=calcium_path_tau)
    # A conductance's Jacobian column is constant unless it moves Ca_inf (a), dCa_inf/dV (b), or is calcium-gated.
    constant = (lin.ca_a == 0) & (lin.ca_b == 0)
    constant[lin.ca_index] = False
    seed_constant = bool(constant[seed.seed_index].all())
    seed_inverse = np.zeros((3, 3))
    if seed_constant:
        seed_inverse = _inverse(lin.S0[:, seed.seed_index], model, "seed_solve")
    # Each pair is solved the cheapest exact way its structure allows: a precomputed inverse when both columns
    # are constant; a scalar Newton when one unknown moves Ca_inf and the other has a constant column (which is
    # then eliminated, see _solve_one_nonlinear); a 2-D Newton otherwise. ``pairs`` is reordered so that the
    # calcium unknown comes first.
    pairs = seed.pairs.copy()
    pair_mode = np.full(len(pairs), PAIR_GENERAL, dtype=np.intp)
    pair_inverse = np.zeros((len(pairs), 2, 2))
    pair_rows = np.zeros((len(pairs), 2), dtype=np.intp)
    calcium_gated = np.zeros(model.n_conductances, dtype=bool)
    calcium_gated[lin.ca_index] = True
    for p, cols in enumerate(seed.pairs):
        if constant[cols].all():
            pair_mode[p] = PAIR_CONSTANT
            pair_inverse[p] = _inverse(lin.S0[1:, cols], model, f"compensating pair {seed.pair_names[p]}")
        elif constant[cols].sum() == 1 and not calcium_gated[cols].any():
            x, y = (cols[1], cols[0]) if constant[cols[0]] else (cols[0], cols[1])
            pairs[p] = (x, y)
            e = 1 if abs(lin.S0[1, y]) >= abs(lin.S0[2, y]) else 2  # eliminate y with its better-conditioned row
            pair_rows[p] = (e, 3 - e)
            pair_mode[p] = PAIR_ONE_NONLINEAR
    return _Plan(
        model=model,
        seed=dataclasses.replace(seed, pairs=pairs),
        lin_tuple=_lin_tuple(lin, seed.leak),
        seed_constant=seed_constant,
        seed_inverse=seed_inverse,
        pair_mode=pair_mode,
        pair_inverse=pair_inverse,
        pair_rows=pair_rows,
    )


def _inverse(A: Array, model: ConductanceModel, what: str) -> Array:
    if abs(np.linalg.det(A)) < 1e-300 or np.linalg.cond(A) > 1e14:
        raise InvalidInputError(f"model: the {what} of model {model.name!r} gives a singular DIC system at V_ref")
    return np.linalg.inv(A)


def _lin_tuple(lin: Linearization, leak: int) -> tuple:
    k = lin.ca_index.size
    return (
        np.ascontiguousarray(lin.S0),
        lin.ca_index.astype(np.intp),
        lin.ca_power.astype(np.intp),
        lin.ca_K.astype(float),
        np.ascontiguousarray(lin.ca_C.reshape(k, 3)),
        np.ascontiguousarray(lin.ca_D.reshape(k)),
        np.ascontiguousarray(lin.ca_a),
        np.ascontiguousarray(lin.ca_b),
        float(lin.ca_beta),
        np.ascontiguousarray(lin.ca_w.reshape(3)),
        int(leak),
    )


def _draw_free(seed: SeedDistribution, rng: np.random.Generator, size: int) -> tuple[Array, Array]:
    """``size`` free draws of the seed law: gleak and the free conductances' positions in their ranges."""
    gleak = rng.gamma(seed.gamma_shape, seed.gamma_scale, size=size)
    return gleak, seed.positions(rng.random((size, seed.free_index.size)))


def _run_kernel(
    plan: _Plan,
    gleak: Array,
    uniforms: Array,
    cell_target: NDArray[np.intp],
    targets: Array,
    target_pair: NDArray[np.intp],
    *,
    tol: float,
    max_iter: int,
) -> tuple[Array, NDArray[np.int8]]:
    """Run both stages on given free draws; returns cells ``(N, n)`` and their status codes."""
    s = plan.seed
    N = gleak.shape[0]
    out = np.empty((N, plan.model.n_conductances))
    status = np.empty(N, dtype=np.int8)
    run_ranges(
        population_kernel,
        -(-N // _KERNEL_BLOCK),
        np.ascontiguousarray(gleak, dtype=float),
        np.ascontiguousarray(uniforms, dtype=float),
        cell_target,
        np.ascontiguousarray(targets, dtype=float),
        target_pair,
        s.free_index,
        s.free_low,
        s.free_high,
        s.fixed_index,
        s.fixed_value,
        s.reference_leak,
        s.seed_index,
        s.seed_target,
        plan.seed_constant,
        plan.seed_inverse,
        s.pairs,
        plan.pair_mode,
        plan.pair_inverse,
        plan.pair_rows,
        float(tol),
        int(max_iter),
        *plan.lin_tuple,
        out,
        status,
    )
    return out, status


def _check_memory(nbytes: int, what: str) -> None:
    """Refuse, before allocating, an output larger than the machine's physical memory (the documented limit)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: numpy's own MemoryError is the limit
        return
    if nbytes > total:
        raise InvalidInputError(f"{what} need {nbytes / 1e9:.3g} GB for the conductances alone, more than this "
                                f"machine's {total / 1e9:.3g} GB of memory; ask for fewer cells")  # fmt: skip


def _as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or is_seed(seed):
        return np.random.default_rng(seed)
    raise InvalidInputError(f"seed: expected None, an int from 0 to 2**63 - 1 or a numpy.random.Generator, got {seed!r}")


def _check_targets(g_s: ArrayLike, g_u: ArrayLike) -> tuple[Array, Array]:
    out = []
    for name, v in (("g_s", g_s), ("g_u", g_u)):
        try:
            a = np.asarray(v, dtype=float)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name}: expected a number or an array of numbers, got {type(v).__name__}") from None
        if not np.all(np.isfinite(a)):
            raise InvalidInputError(f"{name}: targets must be finite numbers; found NaN or inf")
        out.append(a)
    try:
        g_s_b, g_u_b = np.broadcast_arrays(*out)
    except ValueError:
        raise InvalidInputError(
            f"g_s, g_u: shapes {out[0].shape} and {out[1].shape} do not broadcast; pass arrays of the same shape"
        ) from None
    return g_s_b, g_u_b


def _check_positive_int(name: str, value, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _choose_pairs(model: ConductanceModel, seed: SeedDistribution, g_s: Array, g_u: Array, pair) -> NDArray[np.intp]:
    if pair is None:
        idx = np.asarray(compensation_rule(model).choose(g_s, g_u), dtype=np.intp)
        return np.broadcast_to(idx, g_s.shape).copy()
    if isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
        key = tuple(pair)
        if key not in seed.pair_names:
            raise InvalidInputError(f"pair: {key} is not a compensating pair of model {model.name!r}; choose from {seed.pair_names}")
        return np.full(g_s.shape, seed.pair_names.index(key), dtype=np.intp)
    raise InvalidInputError(f"pair: expected None (the model's rule) or a pair of conductance names, got {pair!r}")


class _ChunkRunner:
    """Runs the kernel over a round of draws in fixed-size chunks with reused buffers.

    Fresh memory is expensive to touch (page faults), and a chunk that fits in cache is cheap to compact, so
    draws, cells and status codes live in buffers of ``_CHUNK`` cells allocated once per call.
    """

    def __init__(self, plan: _Plan, targets: Array, target_pair: NDArray[np.intp], *, tol: float, max_iter: int):
        self.plan, self.targets, self.target_pair = plan, np.ascontiguousarray(targets, dtype=float), target_pair
        self.tol, self.max_iter = tol, max_iter
        n_free = plan.seed.free_index.size
        self.gleak = np.empty(_CHUNK)
        self.uniforms = np.empty((_CHUNK, n_free))
        self.cells = np.empty((_CHUNK, plan.model.n_conductances))
        self.status = np.empty(_CHUNK, dtype=np.int8)

    def run(self, want: NDArray[np.int64], rng: np.random.Generator, on_chunk) -> None:
        """Draw ``want[t]`` cells for each target t (in target order) and call
        ``on_chunk(ids, starts, counts, cells, status)`` for each chunk, segments given per target id."""
        sd, plan = self.plan.seed, self.plan
        ends = np.cumsum(want)
        begins = ends - want
        total = int(ends[-1]) if ends.size else 0
        for c0 in range(0, total, _CHUNK):
            c1 = min(total, c0 + _CHUNK)
            m = c1 - c0
            ids = np.arange(np.searchsorted(ends, c0, side="right"), np.searchsorted(begins, c1, side="left"))
            ids = ids[want[ids] > 0]
            starts = np.maximum(begins[ids], c0) - c0
            counts = np.minimum(ends[ids], c1) - c0 - starts
            gleak, uniforms = self.gleak[:m], self.uniforms[:m]
            rng.standard_gamma(sd.gamma_shape, out=gleak)
            gleak *= sd.gamma_scale
            rng.random(out=uniforms)
            if sd.tailed:
                uniforms[:] = sd.positions(uniforms)
            cells, status = self.cells[:m], self.status[:m]
            run_ranges(
                population_kernel, -(-m // _KERNEL_BLOCK), gleak, uniforms, np.repeat(ids, counts).astype(np.intp), self.targets, self.target_pair,
                sd.free_index, sd.free_low, sd.free_high, sd.fixed_index, sd.fixed_value, sd.reference_leak,
                sd.seed_index, sd.seed_target, plan.seed_constant, plan.seed_inverse,
                sd.pairs, plan.pair_mode, plan.pair_inverse, plan.pair_rows,
                float(self.tol), int(self.max_iter), *plan.lin_tuple, cells, status,
            )
            on_chunk(ids, starts, counts, cells, status)


def _segment_sums(values: NDArray, starts: NDArray[np.int64], counts: NDArray[np.int64]) -> NDArray[np.int64]:
    cum = np.concatenate([[0], np.cumsum(values)])
    return cum[starts + counts] - cum[starts]


def degenerate_population(
    model: str | ConductanceModel,
    g_s: ArrayLike,
    g_u: ArrayLike,
    n: int,
    *,
    seed: int | np.random.Generator | None = None,
    max_draws: int | None = None,
    on_unreachable: Literal["raise", "nan"] = "raise",
    pair: tuple[str, str] | None = None,
    calcium_path_tau: CalciumPathTau = "model",
    tol: float = DEFAULT_TOL,
    max_iter: int = 30,
    return_info: bool = False,
) -> Array | tuple[Array, PopulationInfo]:
    """Exactly ``n`` conductance vectors whose DICs at the reference V_th equal each target ``(g_s, g_u)``.

    Parameters
    ----------
    model
        Model name, file reference or object (it must define a seed population; without a compensation rule it
        uses :func:`default_compensation`).
    g_s, g_u
        Target slow and ultraslow DICs (normalised by gleak) at ``model.dics.reference_threshold``: scalars or
        arrays of one shape ``S`` (broadcast against each other).
    n
        Cells per target.
    seed
        ``None``, an int or a ``numpy.random.Generator``; the same seed gives the same population, whatever the
        number of threads.
    max_draws
        Budget of draws per target (default ``100 n + 10 000``). Draws with a negative conductance or a solve
        that did not converge are rejected and replaced; a target with fewer than ``n`` valid draws within the
        budget (reachability below about ``n / max_draws``) is unreachable.
    on_unreachable
        ``"raise"``: raise :class:`~dic_sbi.errors.UnreachableTargetError` naming the targets and their
        reachability; ``"nan"``: fill those targets' cells with NaN (see ``info.reachability``).
    pair
        Force a compensating pair, e.g. ``("A", "H")``; default: the model's rule.
    calcium_path_tau
        DIC convention for the STG calcium path (see :func:`~dic_sbi.core.dics.dics`).
    tol
        Largest accepted |DIC - target| (default 1e-9).
    max_iter
        Newton iterations per solve before a draw counts as diverged.
    return_info
        Also return a :class:`PopulationInfo` (reachability, draws, pair used).

    Returns
    -------
    ndarray
        ``S + (n, n_conductances)`` float64 in the model's order: ``(n, n_cond)`` for scalar targets,
        ``(T, n, n_cond)`` for targets of shape ``(T,)``.
    """
    model = get_model(model)
    g_s_arr, g_u_arr = _check_targets(g_s, g_u)
    n = _check_positive_int("n", n)
    if max_draws is None:
        max_draws = 100 * n + 10_000
    max_draws = _check_positive_int("max_draws", max_draws)
    if max_draws < n:
        raise InvalidInputError(f"max_draws: the budget ({max_draws}) must be at least n ({n})")
    if on_unreachable not in ("raise", "nan"):
        raise InvalidInputError(f"on_unreachable: expected 'raise' or 'nan', got {on_unreachable!r}")
    if not (np.isfinite(tol) and tol > 0):
        raise InvalidInputError(f"tol: expected a positive tolerance, got {tol}")
    max_iter = _check_positive_int("max_iter", max_iter)
    rng = _as_rng(seed)
    plan = _plan(model, calcium_path_tau)
    shape = g_s_arr.shape
    targets = np.stack([g_s_arr.ravel(), g_u_arr.ravel()], axis=-1)
    target_pair = _choose_pairs(model, plan.seed, g_s_arr, g_u_arr, pair).ravel()
    T = targets.shape[0]
    _check_memory(T * n * model.n_conductances * 8, f"n: {n} cells for each of {T} target(s)")

    out = np.empty((T, n, model.n_conductances))
    filled = np.zeros(T, dtype=np.int64)
    drawn = np.zeros(T, dtype=np.int64)
    valid = np.zeros(T, dtype=np.int64)
    runner = _ChunkRunner(plan, targets, target_pair, tol=tol, max_iter=max_iter)

    def on_chunk(ids, starts, counts, cells, status):
        valid[ids] += _segment_sums(status == VALID, starts, counts)
        compact(cells, status, ids, starts, counts, n, out, filled)

    while True:
        need = n - filled
        active = (need > 0) & (drawn < max_draws)
        if not active.any():
            break
        # Expected draws to fill the gap at the rate seen so far (optimistic at first), plus a margin.
        rate = (valid + 1.0) / (drawn + 1.0)
        want = np.ceil(need / rate + 4.0 * np.sqrt(need / rate) + 16.0).astype(np.int64)
        want = np.where(active, np.minimum(want, max_draws - drawn), 0)
        runner.run(want, rng, on_chunk)
        drawn += want

    reach = valid / np.maximum(drawn, 1)
    failed = filled < n
    if failed.any():
        out[failed] = np.nan
        if on_unreachable == "raise":
            bad = np.flatnonzero(failed)
            listed = ", ".join(
                f"(g_s={targets[t, 0]:g}, g_u={targets[t, 1]:g}): reachability {reach[t]:.3g}" for t in bad[:5]
            )
            more = f" and {bad.size - 5} more" if bad.size > 5 else ""
            err = UnreachableTargetError(
                f"g_s, g_u: {bad.size} target(s) of model {model.name!r} cannot be reached with non-negative "
                f"conductances: fewer than n={n} valid cells in max_draws={max_draws} draws for {listed}{more}. "
                "See dic_sbi.reachability_map for the reachable region, raise max_draws, or pass "
                "on_unreachable='nan'."
            )
            err.targets = targets[bad].reshape(-1, 2)
            err.reachability = reach[bad]
            raise err
    out = out.reshape(shape + (n, model.n_conductances))
    if not return_info:
        return out
    info = PopulationInfo(
        reachability=reach.reshape(shape),
        n_draws=drawn.reshape(shape),
        pair=target_pair.reshape(shape),
        pair_names=plan.seed.pair_names,
    )
    return out, info


# -- generative density -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _DensityParts:
    """Pieces of :func:`population_log_density` for each cell (flattened), for tests and diagnostics."""

    targets: Array  # (N, 2) the cells' own (g_s, g_u)
    pair: NDArray[np.intp]  # (N,)
    seed_cells: Array  # (N, n) the recovered seeds (pair entries at their seed values)
    uniforms: Array  # (N, n_free) the recovered uniform draws of the free conductances
    log_p_free: Array  # (N,) log p(z)
    log_det: Array  # (N,) log |det ∂(g_s, g_u)/∂ḡ_pair|
    on_support: NDArray[np.bool_]  # (N,)


def _density_parts(
    model: ConductanceModel,
    g: Array,
    *,
    pair,
    calcium_path_tau: CalciumPathTau,
    tol: float,
    max_iter: int,
    support_rtol: float,
) -> _DensityParts:
    plan = _plan(model, calcium_path_tau)
    sd = plan.seed
    N, n = g.shape
    leak = sd.leak
    gl = g[:, leak]
    lin = linearize(model, None, calcium_path_tau=calcium_path_tau)
    with np.errstate(divide="ignore", invalid="ignore"):
        targets = lin.raw(g)[:, 1:] / gl[:, None]
    finite = np.isfinite(targets).all(axis=1) & (gl > 0) & (g >= 0).all(axis=1)
    targets = np.where(finite[:, None], targets, 0.0)
    safe = np.where(finite[:, None], g, 1.0)
    scale = np.where(finite, gl, 1.0) / sd.reference_leak
    width = sd.free_high - sd.free_low
    with np.errstate(divide="ignore"):
        log_gamma = (
            (sd.gamma_shape - 1.0) * np.log(np.where(finite, gl, 1.0))
            - np.where(finite, gl, 1.0) / sd.gamma_scale
            - math.lgamma(sd.gamma_shape)
            - sd.gamma_shape * np.log(sd.gamma_scale)
        )
    log_p_free = log_gamma - np.sum(np.log(width)) - sd.free_index.size * np.log(scale)

    def attempt(cell_pair: NDArray[np.intp]) -> tuple[Array, Array, NDArray[np.bool_], Array]:
        seed_values = np.empty((N, 2))
        log_det = np.empty(N)
        recovered = np.empty(N, dtype=np.bool_)
        run_ranges(
            recover_kernel, N, safe, cell_pair, sd.pairs, sd.seed_target, 1e-7, max_iter, *plan.lin_tuple, seed_values, log_det, recovered
        )
        seeds = safe.copy()
        rows = np.arange(N)
        seeds[rows, sd.pairs[cell_pair, 0]] = seed_values[:, 0]
        seeds[rows, sd.pairs[cell_pair, 1]] = seed_values[:, 1]
        # Free draws z = (gleak, free conductances at their seed values); fixed conductances must match.
        free = seeds[:, sd.free_index] / scale[:, None]
        slack = 1e-9 * np.maximum(np.abs(sd.free_high), 1.0)
        in_range = ((free >= sd.free_low - slack) & (free <= sd.free_high + slack)).all(axis=1)
        fixed_ok = np.isclose(seeds[:, sd.fixed_index], sd.fixed_value * scale[:, None], rtol=support_rtol, atol=0.0)
        uniforms = np.clip((free - sd.free_low) / width, 0.0, 1.0)
        # Exact support check: re-running the sampler on the recovered draws must give back the same cell (this
        # also rejects the other root of the calcium equation, which the sampler does not produce).
        on_support = np.zeros(N, dtype=np.bool_)
        idx = np.flatnonzero(finite & recovered & in_range & fixed_ok.all(axis=1))
        if idx.size:
            rerun, status = _run_kernel(
                plan, gl[idx], uniforms[idx], np.arange(idx.size, dtype=np.intp), targets[idx], cell_pair[idx],
                tol=tol, max_iter=max_iter,
            )
            same = np.all(np.abs(rerun - g[idx]) <= support_rtol * np.maximum(np.abs(g[idx]), gl[idx, None]), axis=1)
            on_support[idx] = (status == VALID) & same
        return seeds, log_det, on_support, uniforms

    cell_pair = _choose_pairs(model, sd, targets[:, 0], targets[:, 1], pair)
    seeds, log_det, on_support, uniforms = attempt(cell_pair)
    if pair is None:
        # A cell made for a target on a line where the rule switches pair has DICs a rounding error away from
        # it: also try every pair the rule picks within a tiny neighbourhood of the cell's DICs.
        delta = 1e-7 * np.maximum(1.0, np.abs(targets))
        tried = [cell_pair]
        for ds, du in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
            alt = _choose_pairs(model, sd, targets[:, 0] + ds * delta[:, 0], targets[:, 1] + du * delta[:, 1], None)
            retry = ~on_support & finite & np.all([alt != t for t in tried], axis=0)
            if not retry.any():
                continue
            tried.append(alt)
            trial_pair = np.where(retry, alt, cell_pair)
            s2, d2, ok2, u2 = attempt(trial_pair)
            take = retry & ok2
            cell_pair = np.where(take, alt, cell_pair)
            seeds[take], log_det[take], on_support[take], uniforms[take] = s2[take], d2[take], True, u2[take]
    return _DensityParts(
        targets=targets,
        pair=cell_pair,
        seed_cells=seeds,
        uniforms=uniforms,
        log_p_free=log_p_free + sd.log_position_density(uniforms),
        log_det=log_det,
        on_support=on_support,
    )


def compensate(
    model: str | ConductanceModel,
    g_s: ArrayLike,
    g_u: ArrayLike,
    gleak: ArrayLike,
    uniforms: ArrayLike,
    *,
    pair: tuple[str, str] | None = None,
    calcium_path_tau: CalciumPathTau = "model",
    tol: float = DEFAULT_TOL,
    max_iter: int = 30,
) -> tuple[Array, NDArray[np.bool_]]:
    """The cell the compensation makes from given free draws, one per row (no rejection, no redraw).

    :func:`degenerate_population` draws the free draws ``z = (gleak, uniforms)`` from the seed law and keeps
    the valid cells; this runs the same two stages on draws chosen by the caller (e.g. a learned
    ``q(z | t, x)``, :class:`~dic_sbi.sbi.FreeConductanceEstimator`), so the cells keep their DICs exactly.

    Parameters
    ----------
    model
        Model name or object.
    g_s, g_u
        Targets ``(N,)`` (or scalars, broadcast).
    gleak
        ``(N,)`` leak conductances (> 0).
    uniforms
        ``(N, n_free)`` positions in [0, 1] of the free conductances in their ranges (scaled by gleak), in the
        order of :func:`seed_distribution`'s ``free_index``.
    pair, calcium_path_tau, tol, max_iter
        As in :func:`degenerate_population`.

    Returns
    -------
    cells, valid
        ``(N, n_conductances)`` cells (NaN where invalid) and ``(N,)`` True where every conductance is ≥ 0 and
        the solves converged.
    """
    model = get_model(model)
    plan = _plan(model, calcium_path_tau)
    sd = plan.seed
    gl = np.atleast_1d(np.asarray(gleak, dtype=float))
    U = np.atleast_2d(np.asarray(uniforms, dtype=float))
    if gl.ndim != 1 or U.shape != (gl.shape[0], sd.free_index.size):
        raise InvalidInputError(f"uniforms: expected shape (N, {sd.free_index.size}) with gleak of shape (N,), got "
                                f"{np.shape(uniforms)} and {np.shape(gleak)}")  # fmt: skip
    if not (np.all(np.isfinite(gl)) and np.all(gl > 0) and np.all((U >= 0) & (U <= 1))):
        raise InvalidInputError("gleak, uniforms: expected gleak > 0 and uniforms in [0, 1]")
    g_s_arr, g_u_arr = _check_targets(g_s, g_u)
    try:
        targets = np.stack([np.broadcast_to(g_s_arr, gl.shape), np.broadcast_to(g_u_arr, gl.shape)], axis=-1)
    except ValueError:
        raise InvalidInputError(f"g_s, g_u: expected scalars or shape {gl.shape} like gleak, got {g_s_arr.shape}") from None
    target_pair = _choose_pairs(model, sd, targets[:, 0], targets[:, 1], pair)
    cells, status = _run_kernel(plan, gl, U, np.arange(gl.shape[0], dtype=np.intp), targets, target_pair,
                                tol=tol, max_iter=_check_positive_int("max_iter", max_iter))  # fmt: skip
    valid = status == VALID
    cells[~valid] = np.nan
    return cells, valid


def free_draws(
    model: str | ConductanceModel,
    conductances: ArrayLike,
    *,
    pair: tuple[str, str] | None = None,
    calcium_path_tau: CalciumPathTau = "model",
    tol: float = DEFAULT_TOL,
    max_iter: int = 30,
) -> tuple[Array, Array, NDArray[np.bool_]]:
    """Recover the free draws ``(gleak, uniforms)`` that :func:`compensate` turns into each cell.

    The inverse of :func:`compensate` at the cell's own DICs: ``compensate(model, *dics(cells)[..., 1:].T,
    *free_draws(model, cells)[:2])`` gives the cells back. Cells the compensation cannot make (off its set, or
    with a negative conductance) are flagged in the third output (their draws are meaningless).

    Returns
    -------
    gleak, uniforms, on_support
        ``(N,)``, ``(N, n_free)`` and ``(N,)`` for ``(N, n_conductances)`` cells.
    """
    model = get_model(model)
    g = np.asarray(conductances, dtype=float)
    if g.ndim != 2 or g.shape[1] != model.n_conductances:
        raise InvalidInputError(f"conductances: expected shape (N, {model.n_conductances}), got {g.shape}")
    parts = _density_parts(model, g, pair=pair, calcium_path_tau=calcium_path_tau, tol=tol, max_iter=max_iter,
                           support_rtol=1e-6)  # fmt: skip
    return g[:, model.index("leak")].copy(), parts.uniforms, parts.on_support


def _fractions(model, plan, g_s, g_u, pair_idx, n_draws, rng, tol, max_iter):
    targets = np.stack([g_s.ravel(), g_u.ravel()], axis=-1)
    T = targets.shape[0]
    valid = np.zeros(T, dtype=np.int64)

    def on_chunk(ids, starts, counts, cells, status):
        valid[ids] += _segment_sums(status == VALID, starts, counts)

    _ChunkRunner(plan, targets, pair_idx.ravel(), tol=tol, max_iter=max_iter).run(
        np.full(T, n_draws, dtype=np.int64), rng, on_chunk
    )
    return (valid / n_draws).reshape(g_s.shape)


def reachability(
    model: str | ConductanceModel,
    g_s: ArrayLike,
    g_u: ArrayLike,
    *,
    n_draws: int = 2000,
    seed: int | np.random.Generator | None = None,
    pair: tuple[str, str] | None = None,
    calcium_path_tau: CalciumPathTau = "model",
    tol: float = DEFAULT_TOL,
    max_iter: int = 30,
) -> Array:
    """Monte Carlo reachability (fraction of valid draws) of each target, with the model's rule or ``pair``.

    Returns an array of the broadcast shape of ``g_s`` and ``g_u``.
    """
    model = get_model(model)
    g_s_arr, g_u_arr = _check_targets(g_s, g_u)
    n_draws = _check_positive_int("n_draws", n_draws)
    plan = _plan(model, calcium_path_tau)
    pair_idx = _choose_pairs(model, plan.seed, g_s_arr, g_u_arr, pair)
    return _fractions(model, plan, g_s_arr, g_u_arr, pair_idx, n_draws, _as_rng(seed), tol, max_iter)


def population_log_density(
    model: str | ConductanceModel,
    conductances: ArrayLike,
    *,
    normalize: bool = False,
    n_draws: int = 2000,
    seed: int | np.random.Generator | None = None,
    pair: tuple[str, str] | None = None,
    calcium_path_tau: CalciumPathTau = "model",
    tol: float = DEFAULT_TOL,
    max_iter: int = 30,
    support_rtol: float = 1e-6,
) -> Array:
    """Log-density of a conductance vector under the compensation process of :func:`degenerate_population`.

    Write a cell as coordinates ``x = (z, ḡ_P)``: the free draws ``z`` (gleak and the free conductances at
    their *seed* values) and the two compensated conductances ``ḡ_P`` of the pair the rule picks for the cell's
    own DICs ``t = (g_s, g_u)(ḡ)`` at V_ref. For fixed ``z`` the map ``t ↦ ḡ_P`` is one-to-one, so if targets
    are drawn from any density ``q(t)`` (e.g. a DIC posterior) and one cell is made per target, the cells have
    the density, with respect to Lebesgue measure on ``x``,

        p(x) = q(t(ḡ)) · p(z) · |det ∂(g_s, g_u)/∂ḡ_P| / ρ(t),

    where ``ρ(t)`` is the reachability (the probability that a draw is valid, the normaliser of the rejection
    step). This function returns ``log p(z) + log |det ∂(g_s, g_u)/∂ḡ_P|`` and, with ``normalize=True``, also
    ``- log ρ(t)``; add ``log q(t)`` to get the density of cells drawn through a DIC distribution.

    The set the process samples is lower-dimensional than conductance space (dimension ``dim z + 2``): ``z`` is
    recovered from ``ḡ`` by inverting the seed equations, and a cell off that set (including the other root of
    the STG calcium equation, which the sampler never returns) gets ``-inf``, as do cells with a negative
    conductance.

    Parameters
    ----------
    model, conductances
        Model and ``(..., n_conductances)`` cells.
    normalize
        Include ``-log ρ(t)``, estimated by Monte Carlo with ``n_draws`` draws at each cell's target (so the
        result is random, with relative standard error ``sqrt((1 - ρ) / (ρ n_draws))``); ``ρ ≈ 1`` over most of
        the published boxes, where the correction vanishes.
    n_draws, seed
        Monte Carlo budget and seed for ``normalize``.
    pair
        Force the compensating pair instead of the model's rule (must match how the cells were made).
    calcium_path_tau, tol, max_iter
        As in :func:`degenerate_population`.
    support_rtol
        Relative tolerance of the on-support check.

    Returns
    -------
    ndarray
        ``(...)`` log-densities.
    """
    model = get_model(model)
    try:
        g = np.asarray(conductances, dtype=float)
    except (TypeError, ValueError):
        raise InvalidInputError(f"conductances: expected an array of maximal conductances, got {type(conductances).__name__}") from None
    n = model.n_conductances
    if g.ndim == 0 or g.shape[-1] != n:
        raise InvalidInputError(
            f"conductances: expected shape (..., {n}) in the order {model.conductance_names}, got shape {g.shape}"
        )
    if not np.all(np.isfinite(g)):
        raise InvalidInputError("conductances: conductances must be finite; found NaN or inf")
    shape = g.shape[:-1]
    flat = g.reshape(-1, n)
    parts = _density_parts(
        model, flat, pair=pair, calcium_path_tau=calcium_path_tau, tol=tol, max_iter=max_iter, support_rtol=support_rtol
    )
    logp = np.where(parts.on_support, parts.log_p_free + parts.log_det, -np.inf)
    if normalize:
        n_draws = _check_positive_int("n_draws", n_draws)
        rho = np.ones(flat.shape[0])
        idx = np.flatnonzero(parts.on_support)
        if idx.size:
            rho[idx] = reachability(
                model, parts.targets[idx, 0], parts.targets[idx, 1], n_draws=n_draws, seed=seed,
                pair=pair, calcium_path_tau=calcium_path_tau,
            )
        # A cell on the support proves ρ > 0: floor the Monte Carlo estimate at half a draw.
        logp = logp - np.log(np.maximum(rho, 0.5 / n_draws))
    return logp.reshape(shape)
