"""Degenerate populations: many conductance vectors that share target DICs (spec §4).

Generative process (Fyon 2024, refined by Brandoit 2025), for a target ``t = (g_s*, g_u*)`` at the model's
reference threshold V_ref:

1. Free draws ``z``: ``gleak ~ Gamma`` with the mean and variance of ``U(leak_range)``; each free conductance
   ``~ U(lo, hi) · gleak / reference_leak``; fixed conductances ``= value · gleak / reference_leak``.
2. Seed: solve for the three ``seed_solve`` conductances so that ``DIC(V_ref) = seed_target`` (a spiking cell).
3. Move: the model's :class:`~dic_sbi.models.base.CompensationRule` picks a pair ``P`` from the target; solve for
   the pair so that ``(g_s, g_u)(V_ref) = t`` (``g_f`` left free).
4. Keep the cell if every conductance is ≥ 0 and both solves converged; otherwise draw again (rejection), until
   exactly ``n`` cells are found or the budget of draws is spent.

The solves are Newton's method on the exact DIC map of :class:`~dic_sbi.core.dics.Linearization`. The map is
linear in the unknowns unless one of them carries calcium (STG CaS in a pair): the linear case is one exact
closed-form solve; the calcium case replaces the published fixed-number fixed-point passes by damped Newton
iterations run to ``tol``, and flags divergence (non-finite values, no decrease, or too many iterations) as an
invalid draw. The random numbers are drawn with numpy in the calling thread, so results do not depend on the
number of threads; the compiled kernel runs over cells in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidInputError, UnreachableTargetError
from ..models import ConductanceModel, get_model
from .dics import CalciumPathTau, Linearization, linearize

__all__ = [
    "degenerate_population",
    "population_log_density",
    "PopulationInfo",
    "SeedDistribution",
    "seed_distribution",
    "DEFAULT_TOL",
]

Array = NDArray[np.float64]

#: Largest |DIC - target| (normalised units) of an accepted cell; the public guarantee is 1e-6.
DEFAULT_TOL = 1e-9

# Status codes of a draw.
VALID, NEGATIVE, SEED_FAILED, MOVE_FAILED, RESIDUAL = 0, 1, 2, 3, 4

_BLOCK = 1024  # cells per parallel work item: scratch arrays are allocated once per block
_MAX_ROUND = 4_000_000  # cells per kernel call: bounds the memory of one round of draws
_MAX_HALVINGS = 12  # damped Newton: a step cut 2^12-fold without decrease means the draw has no solution nearby


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
        Free conductances and their uniform ranges at ``reference_leak``.
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


def seed_distribution(model: str | ConductanceModel) -> SeedDistribution:
    """Read the seed-population settings of ``model`` into arrays (raises if the model has none)."""
    model = get_model(model)
    sp = model.seed_population
    if sp is None or sp.compensation is None:
        raise InvalidInputError(
            f"model: {model.name!r} defines no seed population / compensation rule; add seed_population="
            "SeedPopulation(..., compensation=CompensationRule(...)) to the model"
        )
    a, b = sp.leak_range
    mean, var = 0.5 * (a + b), (b - a) ** 2 / 12.0
    free = list(sp.free_ranges.items())
    fixed = list(sp.fixed.items())
    return SeedDistribution(
        leak=model.index("leak"),
        gamma_shape=mean**2 / var,
        gamma_scale=var / mean,
        reference_leak=float(sp.reference_leak),
        free_index=np.array([model.index(k) for k, _ in free], dtype=np.intp),
        free_low=np.array([r[0] for _, r in free], dtype=float),
        free_high=np.array([r[1] for _, r in free], dtype=float),
        fixed_index=np.array([model.index(k) for k, _ in fixed], dtype=np.intp),
        fixed_value=np.array([v for _, v in fixed], dtype=float),
        seed_index=np.array([model.index(k) for k in sp.seed_solve], dtype=np.intp),
        seed_target=np.asarray(sp.seed_target, dtype=float),
        pairs=np.array([[model.index(a), model.index(b)] for a, b in sp.compensation.pairs], dtype=np.intp),
        pair_names=tuple(tuple(p) for p in sp.compensation.pairs),
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


# -- compiled kernels ---------------------------------------------------------------------------------------
# ``lin`` is the tuple of :func:`_lin_tuple`: (S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak).


@numba.njit(cache=True, inline="always")
def _ipow(x, p):
    y = 1.0
    for _ in range(p):
        y *= x
    return y


@numba.njit(cache=True)
def _base(g, lin, unknowns, m, base):
    """Contributions of every conductance except ``unknowns[:m]``: ``base = (raw_0, raw_1, raw_2, Ca, dCa)``.

    Newton iterations only move the unknowns, so the rest of the DIC map is summed once per solve.
    """
    S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak = lin
    r0 = 0.0
    r1 = 0.0
    r2 = 0.0
    Ca = ca_beta
    dCa = 0.0
    for j in range(g.shape[0]):
        skip = False
        for b in range(m):
            if unknowns[b] == j:
                skip = True
        if skip:
            continue
        gj = g[j]
        r0 += S0[0, j] * gj
        r1 += S0[1, j] * gj
        r2 += S0[2, j] * gj
        Ca += ca_a[j] * gj
        dCa += ca_b[j] * gj
    base[0] = r0
    base[1] = r1
    base[2] = r2
    base[3] = Ca
    base[4] = dCa


@numba.njit(cache=True)
def _eval(g, lin, unknowns, m, base, want_jac, raw, J):
    """``raw = gleak · DIC(g)`` from ``base`` (see :func:`_base`) and the unknowns' current values; with
    ``want_jac``, also ``J[:, b] = ∂raw/∂g[unknowns[b]]`` for b < m."""
    S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak = lin
    raw[0] = base[0]
    raw[1] = base[1]
    raw[2] = base[2]
    Ca = base[3]
    dCa = base[4]
    for b in range(m):
        u = unknowns[b]
        gu = g[u]
        raw[0] += S0[0, u] * gu
        raw[1] += S0[1, u] * gu
        raw[2] += S0[2, u] * gu
        Ca += ca_a[u] * gu
        dCa += ca_b[u] * gu
        if want_jac:
            J[0, b] = S0[0, u]
            J[1, b] = S0[1, u]
            J[2, b] = S0[2, u]
    for k in range(ca_index.shape[0]):
        i = ca_index[k]
        p = ca_power[k]
        K = ca_K[k]
        inv = 1.0 / (Ca + K)
        x = Ca * inv  # r(Ca) = Ca / (Ca + K)
        dr = K * inv * inv
        rp1 = _ipow(x, p - 1)
        rp = rp1 * x
        gi = g[i]
        path = p * rp1 * dr * ca_D[k]  # ∂(r^p)/∂Ca · D
        for r in range(3):
            raw[r] += gi * (rp * ca_C[k, r] + path * dCa * ca_w[r])
        if want_jac:
            rp2 = _ipow(x, p - 2) if p >= 2 else 0.0
            d2r = -2.0 * dr * inv
            dpath = p * ca_D[k] * ((p - 1) * rp2 * dr * dr + rp1 * d2r)  # ∂path/∂Ca
            for b in range(m):
                u = unknowns[b]
                for r in range(3):
                    col = rp * ca_C[k, r] + path * dCa * ca_w[r]
                    dcol = (p * rp1 * dr * ca_C[k, r] + dpath * dCa * ca_w[r]) * ca_a[u] + path * ca_w[r] * ca_b[u]
                    J[r, b] += gi * dcol + (col if u == i else 0.0)


@numba.njit(cache=True)
def _small_solve(J, rhs, m, x):
    """Solve ``J[:m, :m] x = rhs`` in closed form (m = 2 or 3); False if singular or not finite."""
    if m == 2:
        det = J[0, 0] * J[1, 1] - J[0, 1] * J[1, 0]
        if det == 0.0 or not np.isfinite(det):
            return False
        x[0] = (rhs[0] * J[1, 1] - J[0, 1] * rhs[1]) / det
        x[1] = (J[0, 0] * rhs[1] - J[1, 0] * rhs[0]) / det
        return True
    c00 = J[1, 1] * J[2, 2] - J[1, 2] * J[2, 1]
    c01 = J[1, 2] * J[2, 0] - J[1, 0] * J[2, 2]
    c02 = J[1, 0] * J[2, 1] - J[1, 1] * J[2, 0]
    det = J[0, 0] * c00 + J[0, 1] * c01 + J[0, 2] * c02
    if det == 0.0 or not np.isfinite(det):
        return False
    c10 = J[0, 2] * J[2, 1] - J[0, 1] * J[2, 2]
    c11 = J[0, 0] * J[2, 2] - J[0, 2] * J[2, 0]
    c12 = J[0, 1] * J[2, 0] - J[0, 0] * J[2, 1]
    c20 = J[0, 1] * J[1, 2] - J[0, 2] * J[1, 1]
    c21 = J[0, 2] * J[1, 0] - J[0, 0] * J[1, 2]
    c22 = J[0, 0] * J[1, 1] - J[0, 1] * J[1, 0]
    x[0] = (c00 * rhs[0] + c10 * rhs[1] + c20 * rhs[2]) / det
    x[1] = (c01 * rhs[0] + c11 * rhs[1] + c21 * rhs[2]) / det
    x[2] = (c02 * rhs[0] + c12 * rhs[1] + c22 * rhs[2]) / det
    return True


@numba.njit(cache=True)
def _newton(g, unknowns, row0, target, m, tol, max_iter, lin, base, raw, J, Jm, res, step, save):
    """Damped Newton for ``raw[row0:row0+m] = target`` over ``g[unknowns]``, in place.

    Returns True when ``max |DIC - target| <= tol`` (normalised by gleak). A draw whose iteration produces
    non-finite values, cannot decrease the residual, or runs out of iterations has diverged (False).
    """
    scale = 1.0 / g[lin[10]]
    _base(g, lin, unknowns, m, base)
    _eval(g, lin, unknowns, m, base, True, raw, J)
    err = 0.0
    for a in range(m):
        res[a] = target[a] - raw[row0 + a]
        err = max(err, abs(res[a]) * scale)
    for _ in range(max_iter):
        if err <= tol:
            return True
        for a in range(m):
            for b in range(m):
                Jm[a, b] = J[row0 + a, b]
        if not _small_solve(Jm, res, m, step):
            return False
        for b in range(m):
            save[b] = g[unknowns[b]]
        lam = 1.0
        accepted = False
        new_err = err
        for _ in range(_MAX_HALVINGS):
            for b in range(m):
                g[unknowns[b]] = save[b] + lam * step[b]
            _eval(g, lin, unknowns, m, base, True, raw, J)
            new_err = 0.0
            for a in range(m):
                res[a] = target[a] - raw[row0 + a]
                new_err = max(new_err, abs(res[a]) * scale)
            if np.isfinite(new_err) and new_err < err:
                accepted = True
                break
            lam *= 0.5
        if not accepted:
            return False
        err = new_err
    return err <= tol


@numba.njit(parallel=True, cache=True)
def _population_kernel(
    gleak,
    uniforms,
    cell_target,
    targets,
    target_pair,
    free_index,
    free_low,
    free_high,
    fixed_index,
    fixed_value,
    reference_leak,
    seed_index,
    seed_target,
    seed_constant,
    seed_inverse,
    pairs,
    pair_constant,
    pair_inverse,
    tol,
    max_iter,
    lin,
    out,
    status,
):
    N, n = out.shape
    leak = lin[10]
    n_blocks = (N + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(n_blocks):
        raw = np.empty(3)
        base = np.empty(5)
        J = np.empty((3, 3))
        Jm = np.empty((3, 3))
        res = np.empty(3)
        step = np.empty(3)
        save = np.empty(3)
        tgt = np.empty(3)
        unk = np.empty(2, dtype=np.intp)
        for c in range(blk * _BLOCK, min(N, (blk + 1) * _BLOCK)):
            g = out[c]
            for j in range(n):
                g[j] = 0.0
            gl = gleak[c]
            s = gl / reference_leak
            g[leak] = gl
            for f in range(free_index.shape[0]):
                g[free_index[f]] = (free_low[f] + (free_high[f] - free_low[f]) * uniforms[c, f]) * s
            for f in range(fixed_index.shape[0]):
                g[fixed_index[f]] = fixed_value[f] * s
            # Stage 1: the spiking seed.
            for a in range(3):
                tgt[a] = seed_target[a] * gl
            if seed_constant:
                # Constant Jacobian columns: one exact solve with the precomputed inverse.
                _base(g, lin, unk, 0, base)
                _eval(g, lin, unk, 0, base, False, raw, J)
                for a in range(3):
                    res[a] = tgt[a] - raw[a]
                for a in range(3):
                    g[seed_index[a]] = seed_inverse[a, 0] * res[0] + seed_inverse[a, 1] * res[1] + seed_inverse[a, 2] * res[2]
            elif not _newton(g, seed_index, 0, tgt, 3, tol, max_iter, lin, base, raw, J, Jm, res, step, save):
                status[c] = SEED_FAILED
                continue
            # Stage 2: move (g_s, g_u) to the target with the chosen pair.
            t = cell_target[c]
            p = target_pair[t]
            unk[0] = pairs[p, 0]
            unk[1] = pairs[p, 1]
            tgt[0] = targets[t, 0] * gl
            tgt[1] = targets[t, 1] * gl
            if pair_constant[p]:
                if seed_constant:
                    # The seed hit (g_s, g_u) = seed target exactly, so the residual is known without evaluating.
                    res[0] = tgt[0] - seed_target[1] * gl
                    res[1] = tgt[1] - seed_target[2] * gl
                else:
                    _base(g, lin, unk, 0, base)
                    _eval(g, lin, unk, 0, base, False, raw, J)
                    res[0] = tgt[0] - raw[1]
                    res[1] = tgt[1] - raw[2]
                g[unk[0]] += pair_inverse[p, 0, 0] * res[0] + pair_inverse[p, 0, 1] * res[1]
                g[unk[1]] += pair_inverse[p, 1, 0] * res[0] + pair_inverse[p, 1, 1] * res[1]
            elif not _newton(g, unk, 1, tgt, 2, tol, max_iter, lin, base, raw, J, Jm, res, step, save):
                status[c] = MOVE_FAILED
                continue
            # Independent check of every accepted cell.
            _base(g, lin, unk, 0, base)
            _eval(g, lin, unk, 0, base, False, raw, J)
            if not (abs(raw[1] / gl - targets[t, 0]) <= tol and abs(raw[2] / gl - targets[t, 1]) <= tol):
                status[c] = RESIDUAL
                continue
            negative = False
            for j in range(n):
                if not g[j] >= 0.0:
                    negative = True
            status[c] = NEGATIVE if negative else VALID


@numba.njit(parallel=True, cache=True)
def _recover_kernel(cells, cell_pair, pairs, seed_target, tol, max_iter, lin, seed_values, log_det, ok):
    """Invert the move stage: the seed values of the pair and ``log |det ∂(g_s, g_u)/∂ḡ_pair|``.

    The seed differs from the final cell only in the pair, and satisfies the three seed equations, so the two
    seed values solve an over-determined (3 × 2) system, consistent exactly when the cell lies on the set the
    sampler produces. Gauss-Newton; ``ok`` is False when the least-squares residual does not vanish.
    """
    N, n = cells.shape
    leak = lin[10]
    for c in numba.prange(N):
        g = cells[c].copy()
        raw = np.empty(3)
        base = np.empty(5)
        J = np.empty((3, 3))
        A = np.empty((3, 3))
        rhs = np.empty(3)
        step = np.empty(3)
        save = np.empty(2)
        unk = pairs[cell_pair[c]]
        gl = g[leak]
        # Jacobian of the final cell's (g_s, g_u) with respect to the pair (normalised DICs).
        _base(g, lin, unk, 2, base)
        _eval(g, lin, unk, 2, base, True, raw, J)
        det = (J[1, 0] * J[2, 1] - J[1, 1] * J[2, 0]) / (gl * gl)
        log_det[c] = np.log(abs(det)) if det != 0.0 else -np.inf
        err = 0.0
        res = np.empty(3)
        for a in range(3):
            res[a] = seed_target[a] * gl - raw[a]
            err = max(err, abs(res[a]) / gl)
        converged = err <= tol
        for _ in range(max_iter):
            if converged:
                break
            # Normal equations of the 3 × 2 least-squares step.
            for a in range(2):
                rhs[a] = J[0, a] * res[0] + J[1, a] * res[1] + J[2, a] * res[2]
                for b in range(2):
                    A[a, b] = J[0, a] * J[0, b] + J[1, a] * J[1, b] + J[2, a] * J[2, b]
            if not _small_solve(A, rhs, 2, step):
                break
            save[0] = g[unk[0]]
            save[1] = g[unk[1]]
            lam = 1.0
            improved = False
            new_err = err
            for _ in range(_MAX_HALVINGS):
                g[unk[0]] = save[0] + lam * step[0]
                g[unk[1]] = save[1] + lam * step[1]
                _eval(g, lin, unk, 2, base, True, raw, J)
                new_err = 0.0
                for a in range(3):
                    res[a] = seed_target[a] * gl - raw[a]
                    new_err = max(new_err, abs(res[a]) / gl)
                if np.isfinite(new_err) and new_err < err:
                    improved = True
                    break
                lam *= 0.5
            if not improved:
                break
            err = new_err
            converged = err <= tol
        seed_values[c, 0] = g[unk[0]]
        seed_values[c, 1] = g[unk[1]]
        ok[c] = converged


@numba.njit(parallel=True, cache=True)
def _compact(cells, status, starts, counts, need, out, filled):
    """Copy the first ``need[t]`` valid cells of each target's block of draws into ``out[t, filled[t]:]``."""
    T = starts.shape[0]
    for t in numba.prange(T):
        k = filled[t]
        stop = filled[t] + need[t]
        for c in range(starts[t], starts[t] + counts[t]):
            if k >= stop:
                break
            if status[c] == VALID:
                for j in range(cells.shape[1]):
                    out[t, k, j] = cells[c, j]
                k += 1
        filled[t] = k


# -- python driver ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    model: ConductanceModel
    seed: SeedDistribution
    lin_tuple: tuple
    seed_constant: bool
    seed_inverse: Array
    pair_constant: NDArray[np.bool_]
    pair_inverse: Array


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
    pair_constant = constant[seed.pairs].all(axis=1)
    pair_inverse = np.zeros((len(seed.pairs), 2, 2))
    for p, cols in enumerate(seed.pairs):
        if pair_constant[p]:
            pair_inverse[p] = _inverse(lin.S0[1:, cols], model, f"compensating pair {seed.pair_names[p]}")
    return _Plan(
        model=model,
        seed=seed,
        lin_tuple=_lin_tuple(lin, seed.leak),
        seed_constant=seed_constant,
        seed_inverse=seed_inverse,
        pair_constant=pair_constant,
        pair_inverse=pair_inverse,
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
    gleak = rng.gamma(seed.gamma_shape, seed.gamma_scale, size=size)
    uniforms = rng.random((size, seed.free_index.size))
    return gleak, uniforms


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
    _population_kernel(
        gleak,
        np.ascontiguousarray(uniforms),
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
        plan.pair_constant,
        plan.pair_inverse,
        float(tol),
        int(max_iter),
        plan.lin_tuple,
        out,
        status,
    )
    return out, status


def _as_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise InvalidInputError(f"seed: expected None, an int or a numpy.random.Generator, got {type(seed).__name__}")


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
        idx = np.asarray(model.seed_population.compensation.choose(g_s, g_u), dtype=np.intp)
        return np.broadcast_to(idx, g_s.shape).copy()
    if isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
        key = tuple(pair)
        if key not in seed.pair_names:
            raise InvalidInputError(f"pair: {key} is not a compensating pair of model {model.name!r}; choose from {seed.pair_names}")
        return np.full(g_s.shape, seed.pair_names.index(key), dtype=np.intp)
    raise InvalidInputError(f"pair: expected None (the model's rule) or a pair of conductance names, got {pair!r}")


def sample_draws(
    model: ConductanceModel,
    targets: Array,
    target_pair: NDArray[np.intp],
    draws_per_target: NDArray[np.int64],
    rng: np.random.Generator,
    *,
    calcium_path_tau: CalciumPathTau = "model",
    tol: float = DEFAULT_TOL,
    max_iter: int = 30,
    plan: _Plan | None = None,
) -> tuple[Array, NDArray[np.int8]]:
    """Run ``draws_per_target[t]`` independent draws for each target (cells laid out target by target).

    Internal building block of :func:`degenerate_population` and the reachability map.
    """
    plan = plan or _plan(model, calcium_path_tau)
    N = int(draws_per_target.sum())
    gleak, uniforms = _draw_free(plan.seed, rng, N)
    cell_target = np.repeat(np.arange(targets.shape[0], dtype=np.intp), draws_per_target)
    return _run_kernel(plan, gleak, uniforms, cell_target, targets, target_pair, tol=tol, max_iter=max_iter)


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
        Model name or object (it must define a seed population and compensation rule).
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

    out = np.full((T, n, model.n_conductances), np.nan)
    filled = np.zeros(T, dtype=np.int64)
    drawn = np.zeros(T, dtype=np.int64)
    valid = np.zeros(T, dtype=np.int64)
    while True:
        need = n - filled
        active = (need > 0) & (drawn < max_draws)
        if not active.any():
            break
        # Expected draws to fill the gap at the rate seen so far (optimistic at first), plus a margin.
        rate = (valid + 1.0) / (drawn + 1.0)
        want = np.ceil(need / rate + 4.0 * np.sqrt(need / rate) + 16.0).astype(np.int64)
        want = np.where(active, np.minimum(want, max_draws - drawn), 0)
        # Bound one round's memory; the remaining targets go in the next round (the order of draws is fixed).
        cum = np.cumsum(want)
        if cum[-1] > _MAX_ROUND:
            keep = cum - want < _MAX_ROUND
            want = np.where(keep, np.minimum(want, np.maximum(_MAX_ROUND - (cum - want), 1)), 0)
        cells, status = sample_draws(model, targets, target_pair, want, rng, tol=tol, max_iter=max_iter, plan=plan)
        starts = np.concatenate([[0], np.cumsum(want)[:-1]]).astype(np.int64)
        ok_cum = np.concatenate([[0], np.cumsum(status == VALID)])
        valid += ok_cum[starts + want] - ok_cum[starts]
        drawn += want
        _compact(cells, status, starts, want, need * (want > 0), out, filled)

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
    cell_pair = _choose_pairs(model, sd, targets[:, 0], targets[:, 1], pair)

    seed_values = np.empty((N, 2))
    log_det = np.empty(N)
    recovered = np.empty(N, dtype=np.bool_)
    safe = np.where(finite[:, None], g, 1.0)
    _recover_kernel(safe, cell_pair, sd.pairs, sd.seed_target, 1e-7, max_iter, plan.lin_tuple, seed_values, log_det, recovered)
    seeds = safe.copy()
    rows = np.arange(N)
    seeds[rows, sd.pairs[cell_pair, 0]] = seed_values[:, 0]
    seeds[rows, sd.pairs[cell_pair, 1]] = seed_values[:, 1]

    # Free draws z = (gleak, free conductances at their seed values); fixed conductances must match exactly.
    scale = np.where(finite, gl, 1.0) / sd.reference_leak
    free = seeds[:, sd.free_index] / scale[:, None]
    width = sd.free_high - sd.free_low
    slack = 1e-9 * np.maximum(np.abs(sd.free_high), 1.0)
    in_range = ((free >= sd.free_low - slack) & (free <= sd.free_high + slack)).all(axis=1)
    fixed_ok = np.isclose(
        seeds[:, sd.fixed_index], sd.fixed_value * scale[:, None], rtol=support_rtol, atol=0.0
    ).all(axis=1)
    uniforms = np.clip((free - sd.free_low) / width, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        log_gamma = (
            (sd.gamma_shape - 1.0) * np.log(np.where(finite, gl, 1.0))
            - np.where(finite, gl, 1.0) / sd.gamma_scale
            - _log_gamma_function(sd.gamma_shape)
            - sd.gamma_shape * np.log(sd.gamma_scale)
        )
    log_p_free = log_gamma - np.sum(np.log(width)) - sd.free_index.size * np.log(scale)

    # Exact support check: re-running the sampler on the recovered draws must give back the same cell (this
    # also rejects the other root of the calcium equation, which the sampler does not produce).
    candidates = finite & recovered & in_range & fixed_ok
    on_support = np.zeros(N, dtype=np.bool_)
    idx = np.flatnonzero(candidates)
    if idx.size:
        rerun, status = _run_kernel(
            plan,
            np.ascontiguousarray(gl[idx]),
            uniforms[idx],
            np.arange(idx.size, dtype=np.intp),
            targets[idx],
            cell_pair[idx],
            tol=tol,
            max_iter=max_iter,
        )
        same = np.all(np.abs(rerun - g[idx]) <= support_rtol * np.maximum(np.abs(g[idx]), gl[idx, None]), axis=1)
        on_support[idx] = (status == VALID) & same
    return _DensityParts(
        targets=targets,
        pair=cell_pair,
        seed_cells=seeds,
        log_p_free=log_p_free,
        log_det=log_det,
        on_support=on_support,
    )


def _log_gamma_function(x: float) -> float:
    from math import lgamma

    return lgamma(x)


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
        from .reachability import reachability

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
