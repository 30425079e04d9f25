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

import dataclasses
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

_BLOCK = 256  # cells per parallel work item, processed together in vectorised loops
_FAST_ITERATIONS = 8  # undamped Newton steps of the block fast path before a cell goes to the damped solver
_CHUNK = 1 << 17  # draws per kernel call: scratch buffers are allocated once and reused
_PAIR_CONSTANT, _PAIR_ONE_NONLINEAR, _PAIR_GENERAL = 0, 1, 2  # how a pair is solved (see _plan)
_MAX_HALVINGS = 30  # damped Newton: a step cut 2^30-fold without decrease means the draw has no solution nearby


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
# The DIC map is passed as explicit arrays (tuples of arrays would be unpacked, with reference counting, on
# every call): S0 (3, n), ca_index, ca_power, ca_K (k,), ca_C (k, 3), ca_D (k,), ca_a, ca_b (n,), ca_beta, ca_w (3,).
# ``base`` (5,) holds the part of the map that does not involve the unknowns: three raw DIC rows, Ca_inf and
# dCa_inf/dV summed over the known conductances, so that a solve only re-evaluates the unknowns' terms.


@numba.njit(cache=True, inline="always")
def _ipow(x, p):
    y = 1.0
    for _ in range(p):
        y *= x
    return y


@numba.njit(cache=True)
def _partial_sums(g, unknowns, m, S0, ca_a, ca_b, ca_beta, base):
    """``base`` = contributions of every conductance except ``unknowns[:m]``."""
    r0 = 0.0
    r1 = 0.0
    r2 = 0.0
    Ca = ca_beta
    dCa = 0.0
    for j in range(g.shape[0]):
        known = True
        for b in range(m):
            if unknowns[b] == j:
                known = False
        if known:
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
def _raw(g, unknowns, m, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, raw):
    """``raw = gleak · DIC(g)`` (3,) from ``base`` and the unknowns' current values."""
    r0 = base[0]
    r1 = base[1]
    r2 = base[2]
    Ca = base[3]
    dCa = base[4]
    for b in range(m):
        u = unknowns[b]
        gu = g[u]
        r0 += S0[0, u] * gu
        r1 += S0[1, u] * gu
        r2 += S0[2, u] * gu
        Ca += ca_a[u] * gu
        dCa += ca_b[u] * gu
    for k in range(ca_index.shape[0]):
        p = ca_power[k]
        K = ca_K[k]
        inv = 1.0 / (Ca + K)
        rp1 = _ipow(Ca * inv, p - 1)  # r^(p-1), r(Ca) = Ca / (Ca + K)
        gi = g[ca_index[k]]
        a = gi * rp1 * Ca * inv  # g · r^p: voltage path
        c = gi * p * rp1 * K * inv * inv * ca_D[k] * dCa  # g · ∂(r^p)/∂Ca · D · dCa/dV: calcium path
        r0 += a * ca_C[k, 0] + c * ca_w[0]
        r1 += a * ca_C[k, 1] + c * ca_w[1]
        r2 += a * ca_C[k, 2] + c * ca_w[2]
    raw[0] = r0
    raw[1] = r1
    raw[2] = r2


@numba.njit(cache=True)
def _jacobian(g, unknowns, m, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, J):
    """``J[:, b] = ∂raw/∂g[unknowns[b]]`` (3, m) of the exact map, calcium terms included."""
    Ca = base[3]
    dCa = base[4]
    for b in range(m):
        u = unknowns[b]
        gu = g[u]
        Ca += ca_a[u] * gu
        dCa += ca_b[u] * gu
        J[0, b] = S0[0, u]
        J[1, b] = S0[1, u]
        J[2, b] = S0[2, u]
    for k in range(ca_index.shape[0]):
        i = ca_index[k]
        p = ca_power[k]
        K = ca_K[k]
        inv = 1.0 / (Ca + K)
        x = Ca * inv
        dr = K * inv * inv  # r'(Ca)
        d2r = -2.0 * dr * inv  # r''(Ca)
        rp1 = _ipow(x, p - 1)
        rp2 = _ipow(x, p - 2) if p >= 2 else 0.0
        D = ca_D[k]
        path = p * rp1 * dr * D  # ∂(r^p)/∂Ca · D
        dpath = p * D * ((p - 1) * rp2 * dr * dr + rp1 * d2r)  # ∂path/∂Ca
        dvolt = p * rp1 * dr  # ∂(r^p)/∂Ca
        gi = g[i]
        for r in range(3):
            col = rp1 * x * ca_C[k, r] + path * dCa * ca_w[r]  # the channel's own column
            by_Ca = gi * (dvolt * ca_C[k, r] + dpath * dCa * ca_w[r])  # times ∂Ca/∂g_u = a_u
            by_dCa = gi * path * ca_w[r]  # times ∂(dCa/dV)/∂g_u = b_u
            for b in range(m):
                u = unknowns[b]
                J[r, b] += by_Ca * ca_a[u] + by_dCa * ca_b[u]
                if u == i:
                    J[r, b] += col


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
def _newton(
    g, unknowns, row0, target, m, tol, max_iter,
    S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak,
    base, raw, J, Jm, res, step, save,
):
    """Damped Newton for ``raw[row0:row0+m] = target`` over ``g[unknowns[:m]]``, in place.

    True when ``max |DIC - target| <= tol`` (normalised by gleak) at a full evaluation of the map. A draw whose
    iteration gives non-finite values, cannot decrease the residual by step halving, or runs out of iterations
    has diverged (False).
    """
    scale = 1.0 / g[leak]
    _partial_sums(g, unknowns, m, S0, ca_a, ca_b, ca_beta, base)
    _raw(g, unknowns, m, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, raw)
    err = 0.0
    for a in range(m):
        res[a] = target[a] - raw[row0 + a]
        err = max(err, abs(res[a]) * scale)
    if not np.isfinite(err):
        return False
    for _ in range(max_iter):
        if err <= tol:
            return True
        _jacobian(g, unknowns, m, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, J)
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
            _raw(g, unknowns, m, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, raw)
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


@numba.njit(cache=True, inline="always")
def _scalar_residual(xv, F0, F1, ax, bx, o, e, rho, wk, base, g, ca_index, ca_power, ca_K, ca_C, ca_D, want_slope):
    """``F(x)`` (and ``F'(x)`` if ``want_slope``) of :func:`_solve_one_nonlinear`, closed-form."""
    F = F0 + F1 * xv
    dF = F1
    Ca = base[3] + ax * xv
    dCa = base[4] + bx * xv
    for k in range(ca_index.shape[0]):
        p = ca_power[k]
        K = ca_K[k]
        inv = 1.0 / (Ca + K)
        r = Ca * inv
        dr = K * inv * inv
        rp1 = _ipow(r, p - 1)
        gk = g[ca_index[k]]
        Ck = ca_C[k, o] - rho * ca_C[k, e]
        D = ca_D[k]
        F += gk * (rp1 * r * Ck + p * rp1 * dr * D * dCa * wk)
        if want_slope:
            rp2 = _ipow(r, p - 2) if p >= 2 else 0.0
            d2r = -2.0 * dr * inv
            dF += gk * (
                p * rp1 * dr * ax * Ck + p * D * wk * (((p - 1) * rp2 * dr * dr + rp1 * d2r) * ax * dCa + rp1 * dr * bx)
            )
    return F, dF


@numba.njit(cache=True)
def _solve_one_nonlinear(
    g, unk, e, o, target_e, target_o, tol, max_iter,
    S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak, base, raw,
):
    """Solve rows (e, o) for the pair ``unk = (x, y)`` when only x enters Ca_inf and y has a constant column.

    Row e is linear in y, so y is eliminated exactly and damped Newton runs on the scalar
    ``F(x) = R_o(x, y(x))``, the residual of row o once row e holds, whose value and slope are closed-form.
    Stopping and divergence rules are those of :func:`_newton`.
    """
    x = unk[0]
    y = unk[1]
    _partial_sums(g, unk, 2, S0, ca_a, ca_b, ca_beta, base)
    rho = S0[o, y] / S0[e, y]
    F0 = base[o] - target_o - rho * (base[e] - target_e)
    F1 = S0[o, x] - rho * S0[e, x]
    ax = ca_a[x]
    bx = ca_b[x]
    wk = ca_w[o] - rho * ca_w[e]
    scale = 1.0 / g[leak]
    xv = g[x]
    F, dF = _scalar_residual(xv, F0, F1, ax, bx, o, e, rho, wk, base, g, ca_index, ca_power, ca_K, ca_C, ca_D, True)
    err = abs(F) * scale
    if not np.isfinite(err):
        return False
    converged = err <= tol
    for _ in range(max_iter):
        if converged or dF == 0.0:
            break
        step = -F / dF
        accepted = False
        for _ in range(_MAX_HALVINGS):
            # The slope comes with the trial value: an accepted trial is the next iterate.
            Ft, dFt = _scalar_residual(
                xv + step, F0, F1, ax, bx, o, e, rho, wk, base, g, ca_index, ca_power, ca_K, ca_C, ca_D, True
            )
            if np.isfinite(Ft) and abs(Ft) * scale < err:
                accepted = True
                break
            step *= 0.5
        if not accepted:
            return False
        xv += step
        F, dF = Ft, dFt
        err = abs(F) * scale
        converged = err <= tol
    if not converged:
        return False
    # y from row e: everything but y's own (constant) term, then divide.
    g[x] = xv
    _raw(g, unk, 1, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, raw)
    g[y] = (target_e - raw[e]) / S0[e, y]
    return np.isfinite(g[y])


# Vectorised block code: cells of a block are processed together, structure-of-arrays (``G[j, i]`` is
# conductance j of cell i), in element-wise loops the compiler turns into SIMD instructions. The per-cell solvers
# above are the fallback for the cells the block fast path leaves unconverged, and for structures it does not
# cover.


@numba.njit(cache=True)
def _block_sums(G, i0, i1, skip0, skip1, S0, ca_a, ca_b, ca_beta, r0, r1, r2, Ca, dCa):
    """Raw DIC rows, Ca_inf and dCa_inf/dV of cells ``i0:i1`` summed over conductances other than skip0, skip1."""
    for i in range(i0, i1):
        r0[i] = 0.0
        r1[i] = 0.0
        r2[i] = 0.0
        Ca[i] = ca_beta
        dCa[i] = 0.0
    for j in range(G.shape[0]):
        if j == skip0 or j == skip1:
            continue
        s0 = S0[0, j]
        s1 = S0[1, j]
        s2 = S0[2, j]
        aj = ca_a[j]
        bj = ca_b[j]
        for i in range(i0, i1):
            gj = G[j, i]
            r0[i] += s0 * gj
            r1[i] += s1 * gj
            r2[i] += s2 * gj
            Ca[i] += aj * gj
            dCa[i] += bj * gj


@numba.njit(cache=True)
def _block_calcium_terms(G, i0, i1, ca_index, ca_power, ca_K, ca_C, ca_D, ca_w, Ca, dCa, r0, r1, r2, t_r, t_pow):
    """Add the calcium-gated channels' terms, at the given Ca_inf and dCa_inf/dV, to the raw rows."""
    for k in range(ca_index.shape[0]):
        p = ca_power[k]
        K = ca_K[k]
        gi = ca_index[k]
        D = ca_D[k]
        for i in range(i0, i1):
            t_r[i] = Ca[i] / (Ca[i] + K)
            t_pow[i] = 1.0
        for _ in range(p - 1):
            for i in range(i0, i1):
                t_pow[i] *= t_r[i]  # r^(p-1)
        c0, c1, c2 = ca_C[k, 0], ca_C[k, 1], ca_C[k, 2]
        w0, w1, w2 = ca_w[0], ca_w[1], ca_w[2]
        for i in range(i0, i1):
            inv = 1.0 / (Ca[i] + K)
            volt = G[gi, i] * t_pow[i] * t_r[i]
            calc = G[gi, i] * p * t_pow[i] * K * inv * inv * D * dCa[i]
            r0[i] += volt * c0 + calc * w0
            r1[i] += volt * c1 + calc * w1
            r2[i] += volt * c2 + calc * w2


@numba.njit(cache=True)
def _block_scalar_newton(
    G, gl, i0, i1, x, y, e, o, t_e, t_o, tol, n_iter,
    S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w,
    b0, b1, b2, Ca0, dCa0, xv, F, dF, t_r, t_pow, t_pow2, done,
):
    """Undamped scalar Newton of :func:`_solve_one_nonlinear` for cells ``i0:i1`` at once, from their seed values.

    ``done[i]`` is True where ``|F| / gleak <= tol`` after at most ``n_iter`` steps; ``xv`` then holds x and
    ``G[y]`` is set from row e. The other cells are left to the per-cell damped solver.
    """
    _block_sums(G, i0, i1, x, y, S0, ca_a, ca_b, ca_beta, b0, b1, b2, Ca0, dCa0)
    rho = S0[o, y] / S0[e, y]
    F1 = S0[o, x] - rho * S0[e, x]
    ax = ca_a[x]
    bx = ca_b[x]
    wk = ca_w[o] - rho * ca_w[e]
    for i in range(i0, i1):
        xv[i] = G[x, i]
    for it in range(n_iter + 1):
        for i in range(i0, i1):
            Be = b1[i] if e == 1 else b2[i]
            Bo = b1[i] if o == 1 else b2[i]
            F[i] = (Bo - t_o * gl[i]) - rho * (Be - t_e * gl[i]) + F1 * xv[i]
            dF[i] = F1
        for k in range(ca_index.shape[0]):
            p = ca_power[k]
            K = ca_K[k]
            gk = ca_index[k]
            D = ca_D[k]
            Ck = ca_C[k, o] - rho * ca_C[k, e]
            for i in range(i0, i1):
                t_r[i] = (Ca0[i] + ax * xv[i]) / (Ca0[i] + ax * xv[i] + K)
                t_pow[i] = 1.0
                t_pow2[i] = 1.0
            for _ in range(p - 1):
                for i in range(i0, i1):
                    t_pow[i] *= t_r[i]  # r^(p-1)
            for _ in range(p - 2):
                for i in range(i0, i1):
                    t_pow2[i] *= t_r[i]  # r^(p-2)
            for i in range(i0, i1):
                c = Ca0[i] + ax * xv[i]
                dc = dCa0[i] + bx * xv[i]
                inv = 1.0 / (c + K)
                dr = K * inv * inv
                d2r = -2.0 * dr * inv
                rp1 = t_pow[i]
                rp2 = t_pow2[i] if p >= 2 else 0.0
                g = G[gk, i]
                F[i] += g * (rp1 * t_r[i] * Ck + p * rp1 * dr * D * dc * wk)
                dF[i] += g * (p * rp1 * dr * ax * Ck + p * D * wk * (((p - 1) * rp2 * dr * dr + rp1 * d2r) * ax * dc + rp1 * dr * bx))
        n_open = 0
        for i in range(i0, i1):
            ok = abs(F[i]) <= tol * gl[i]
            done[i] = ok
            n_open += 0 if ok else 1
        if n_open == 0 or it == n_iter:
            break
        for i in range(i0, i1):
            if not done[i]:
                xv[i] -= F[i] / dF[i]
    # y from row e, everything but y's own constant term: base + x's column and the calcium terms at x.
    for i in range(i0, i1):
        Ca0[i] += ax * xv[i]
        dCa0[i] += bx * xv[i]
        b0[i] += S0[0, x] * xv[i]
        b1[i] += S0[1, x] * xv[i]
        b2[i] += S0[2, x] * xv[i]
    _block_calcium_terms(G, i0, i1, ca_index, ca_power, ca_K, ca_C, ca_D, ca_w, Ca0, dCa0, b0, b1, b2, t_r, t_pow)
    for i in range(i0, i1):
        if done[i]:
            Be = b1[i] if e == 1 else b2[i]
            G[x, i] = xv[i]
            G[y, i] = (t_e * gl[i] - Be) / S0[e, y]


@numba.njit(parallel=True, cache=True)
def _population_kernel(
    gleak, uniforms, cell_target, targets, target_pair,
    free_index, free_low, free_high, fixed_index, fixed_value, reference_leak,
    seed_index, seed_target, seed_constant, seed_inverse, pairs, pair_mode, pair_inverse, pair_rows,
    tol, max_iter,
    S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak,
    out, status,
):
    N, n = out.shape
    n_blocks = (N + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(n_blocks):
        c0 = blk * _BLOCK
        m = min(N, c0 + _BLOCK) - c0
        G = np.zeros((n, _BLOCK))
        gl = np.empty(_BLOCK)
        r0 = np.empty(_BLOCK)
        r1 = np.empty(_BLOCK)
        r2 = np.empty(_BLOCK)
        Ca = np.empty(_BLOCK)
        dCa = np.empty(_BLOCK)
        xv = np.empty(_BLOCK)
        F = np.empty(_BLOCK)
        dF = np.empty(_BLOCK)
        t_r = np.empty(_BLOCK)
        t_pow = np.empty(_BLOCK)
        t_pow2 = np.empty(_BLOCK)
        done = np.zeros(_BLOCK, dtype=np.bool_)
        code = np.zeros(_BLOCK, dtype=np.int8)
        checked = np.zeros(_BLOCK, dtype=np.bool_)  # the cell's solver already verified its residual
        # Per-cell scratch for the fallback solvers.
        g = np.empty(n)
        raw = np.empty(3)
        base = np.empty(5)
        J = np.empty((3, 3))
        Jm = np.empty((3, 3))
        res = np.empty(3)
        step = np.empty(3)
        save = np.empty(3)
        tgt = np.empty(3)
        unk = np.empty(2, dtype=np.intp)

        # Free draws.
        for i in range(m):
            gl[i] = gleak[c0 + i]
            G[leak, i] = gl[i]
        for f in range(free_index.shape[0]):
            j = free_index[f]
            lo = free_low[f]
            width = free_high[f] - free_low[f]
            for i in range(m):
                G[j, i] = (lo + width * uniforms[c0 + i, f]) * gl[i] / reference_leak
        for f in range(fixed_index.shape[0]):
            j = fixed_index[f]
            for i in range(m):
                G[j, i] = fixed_value[f] * gl[i] / reference_leak

        # Stage 1: the spiking seed.
        if seed_constant:
            # Constant Jacobian columns: one exact solve with the precomputed inverse (seed unknowns are 0 here).
            _block_sums(G, 0, m, -1, -1, S0, ca_a, ca_b, ca_beta, r0, r1, r2, Ca, dCa)
            _block_calcium_terms(G, 0, m, ca_index, ca_power, ca_K, ca_C, ca_D, ca_w, Ca, dCa, r0, r1, r2, t_r, t_pow)
            for a in range(3):
                ja = seed_index[a]
                v0, v1, v2 = seed_inverse[a, 0], seed_inverse[a, 1], seed_inverse[a, 2]
                for i in range(m):
                    G[ja, i] = (
                        v0 * (seed_target[0] * gl[i] - r0[i])
                        + v1 * (seed_target[1] * gl[i] - r1[i])
                        + v2 * (seed_target[2] * gl[i] - r2[i])
                    )
        else:
            for i in range(m):
                for j in range(n):
                    g[j] = G[j, i]
                for a in range(3):
                    tgt[a] = seed_target[a] * gl[i]
                if _newton(
                    g, seed_index, 0, tgt, 3, tol, max_iter,
                    S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak,
                    base, raw, J, Jm, res, step, save,
                ):
                    for j in range(n):
                        G[j, i] = g[j]
                else:
                    code[i] = SEED_FAILED

        # Stage 2: move (g_s, g_u) to the target, run by run of cells sharing a target.
        i0 = 0
        while i0 < m:
            t = cell_target[c0 + i0]
            i1 = i0 + 1
            while i1 < m and cell_target[c0 + i1] == t:
                i1 += 1
            p = target_pair[t]
            u0 = pairs[p, 0]
            u1 = pairs[p, 1]
            ts = targets[t, 0]
            tu = targets[t, 1]
            mode = pair_mode[p]
            if mode == _PAIR_CONSTANT:
                if seed_constant:
                    # The seed hit (g_s, g_u) = seed target exactly, so the residual is known without evaluating.
                    for i in range(i0, i1):
                        r1[i] = (ts - seed_target[1]) * gl[i]
                        r2[i] = (tu - seed_target[2]) * gl[i]
                else:
                    _block_sums(G, i0, i1, -1, -1, S0, ca_a, ca_b, ca_beta, r0, r1, r2, Ca, dCa)
                    _block_calcium_terms(G, i0, i1, ca_index, ca_power, ca_K, ca_C, ca_D, ca_w, Ca, dCa, r0, r1, r2, t_r, t_pow)
                    for i in range(i0, i1):
                        r1[i] = ts * gl[i] - r1[i]
                        r2[i] = tu * gl[i] - r2[i]
                q00, q01 = pair_inverse[p, 0, 0], pair_inverse[p, 0, 1]
                q10, q11 = pair_inverse[p, 1, 0], pair_inverse[p, 1, 1]
                for i in range(i0, i1):
                    G[u0, i] += q00 * r1[i] + q01 * r2[i]
                    G[u1, i] += q10 * r1[i] + q11 * r2[i]
            else:
                if mode == _PAIR_ONE_NONLINEAR:
                    e = pair_rows[p, 0]
                    o = pair_rows[p, 1]
                    t_e = ts if e == 1 else tu
                    t_o = ts if o == 1 else tu
                    _block_scalar_newton(
                        G, gl, i0, i1, u0, u1, e, o, t_e, t_o, tol, _FAST_ITERATIONS,
                        S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w,
                        r0, r1, r2, Ca, dCa, xv, F, dF, t_r, t_pow, t_pow2, done,
                    )
                else:
                    for i in range(i0, i1):
                        done[i] = False
                # Per-cell damped solvers for the rest, from the seed.
                unk[0] = u0
                unk[1] = u1
                tgt[0] = 0.0
                for i in range(i0, i1):
                    if done[i] or code[i] != VALID:
                        continue
                    for j in range(n):
                        g[j] = G[j, i]
                    tgt[0] = ts * gl[i]
                    tgt[1] = tu * gl[i]
                    if mode == _PAIR_ONE_NONLINEAR:
                        ok = _solve_one_nonlinear(
                            g, unk, pair_rows[p, 0], pair_rows[p, 1], tgt[pair_rows[p, 0] - 1], tgt[pair_rows[p, 1] - 1],
                            tol, max_iter, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak,
                            base, raw,
                        )
                    else:
                        ok = _newton(
                            g, unk, 1, tgt, 2, tol, max_iter,
                            S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak,
                            base, raw, J, Jm, res, step, save,
                        )
                        checked[i] = True  # Newton verified its last full evaluation
                    if ok:
                        for j in range(n):
                            G[j, i] = g[j]
                    else:
                        code[i] = MOVE_FAILED
            i0 = i1

        # Independent full evaluation of every cell against its target, then signs.
        _block_sums(G, 0, m, -1, -1, S0, ca_a, ca_b, ca_beta, r0, r1, r2, Ca, dCa)
        _block_calcium_terms(G, 0, m, ca_index, ca_power, ca_K, ca_C, ca_D, ca_w, Ca, dCa, r0, r1, r2, t_r, t_pow)
        for i in range(m):
            if code[i] != VALID:
                continue
            t = cell_target[c0 + i]
            if not checked[i] and not (
                abs(r1[i] / gl[i] - targets[t, 0]) <= tol and abs(r2[i] / gl[i] - targets[t, 1]) <= tol
            ):
                code[i] = RESIDUAL
                continue
            for j in range(n):
                if not G[j, i] >= 0.0:
                    code[i] = NEGATIVE
        for i in range(m):
            status[c0 + i] = code[i]
            for j in range(n):
                out[c0 + i, j] = G[j, i]


@numba.njit(parallel=True, cache=True)
def _recover_kernel(
    cells, cell_pair, pairs, seed_target, tol, max_iter,
    S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak,
    seed_values, log_det, ok,
):
    """Invert the move stage: the seed values of the pair and ``log |det ∂(g_s, g_u)/∂ḡ_pair|``.

    The seed differs from the final cell only in the pair, and satisfies the three seed equations, so the two
    seed values solve an over-determined (3 × 2) system, consistent exactly when the cell lies on the set the
    sampler produces. Gauss-Newton; ``ok`` is False when the least-squares residual does not vanish.
    """
    N, n = cells.shape
    for c in numba.prange(N):
        g = cells[c].copy()
        raw = np.empty(3)
        base = np.empty(5)
        J = np.empty((3, 3))
        A = np.empty((3, 3))
        rhs = np.empty(3)
        step = np.empty(3)
        save = np.empty(2)
        res = np.empty(3)
        unk = pairs[cell_pair[c]]
        gl = g[leak]
        # Jacobian of the final cell's (g_s, g_u) with respect to the pair (normalised DICs).
        _partial_sums(g, unk, 2, S0, ca_a, ca_b, ca_beta, base)
        _jacobian(g, unk, 2, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, J)
        det = (J[1, 0] * J[2, 1] - J[1, 1] * J[2, 0]) / (gl * gl)
        log_det[c] = np.log(abs(det)) if det != 0.0 else -np.inf
        _raw(g, unk, 2, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, raw)
        err = 0.0
        for a in range(3):
            res[a] = seed_target[a] * gl - raw[a]
            err = max(err, abs(res[a]) / gl)
        converged = err <= tol
        for _ in range(max_iter):
            if converged:
                break
            _jacobian(g, unk, 2, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, J)
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
                _raw(g, unk, 2, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, raw)
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


@numba.njit(cache=True)
def _compact(cells, status, ids, starts, counts, n, out, filled):
    """Append the valid cells of each target's segment ``[starts[i], starts[i] + counts[i])`` of ``cells`` to
    ``out[ids[i]]``, in draw order, until the target holds ``n`` cells."""
    # Serial: it only copies memory, and a parallel region per chunk costs more than it saves.
    for i in range(ids.shape[0]):
        t = ids[i]
        k = filled[t]
        for c in range(starts[i], starts[i] + counts[i]):
            if k >= n:
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
    pair_mode = np.full(len(pairs), _PAIR_GENERAL, dtype=np.intp)
    pair_inverse = np.zeros((len(pairs), 2, 2))
    pair_rows = np.zeros((len(pairs), 2), dtype=np.intp)
    calcium_gated = np.zeros(model.n_conductances, dtype=bool)
    calcium_gated[lin.ca_index] = True
    for p, cols in enumerate(seed.pairs):
        if constant[cols].all():
            pair_mode[p] = _PAIR_CONSTANT
            pair_inverse[p] = _inverse(lin.S0[1:, cols], model, f"compensating pair {seed.pair_names[p]}")
        elif constant[cols].sum() == 1 and not calcium_gated[cols].any():
            x, y = (cols[1], cols[0]) if constant[cols[0]] else (cols[0], cols[1])
            pairs[p] = (x, y)
            e = 1 if abs(lin.S0[1, y]) >= abs(lin.S0[2, y]) else 2  # eliminate y with its better-conditioned row
            pair_rows[p] = (e, 3 - e)
            pair_mode[p] = _PAIR_ONE_NONLINEAR
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
            cells, status = self.cells[:m], self.status[:m]
            _population_kernel(
                gleak, uniforms, np.repeat(ids, counts).astype(np.intp), self.targets, self.target_pair,
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

    out = np.empty((T, n, model.n_conductances))
    filled = np.zeros(T, dtype=np.int64)
    drawn = np.zeros(T, dtype=np.int64)
    valid = np.zeros(T, dtype=np.int64)
    runner = _ChunkRunner(plan, targets, target_pair, tol=tol, max_iter=max_iter)

    def on_chunk(ids, starts, counts, cells, status):
        valid[ids] += _segment_sums(status == VALID, starts, counts)
        _compact(cells, status, ids, starts, counts, n, out, filled)

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
            - _log_gamma_function(sd.gamma_shape)
            - sd.gamma_shape * np.log(sd.gamma_scale)
        )
    log_p_free = log_gamma - np.sum(np.log(width)) - sd.free_index.size * np.log(scale)

    def attempt(cell_pair: NDArray[np.intp]) -> tuple[Array, Array, NDArray[np.bool_]]:
        seed_values = np.empty((N, 2))
        log_det = np.empty(N)
        recovered = np.empty(N, dtype=np.bool_)
        _recover_kernel(
            safe, cell_pair, sd.pairs, sd.seed_target, 1e-7, max_iter, *plan.lin_tuple, seed_values, log_det, recovered
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
        return seeds, log_det, on_support

    cell_pair = _choose_pairs(model, sd, targets[:, 0], targets[:, 1], pair)
    seeds, log_det, on_support = attempt(cell_pair)
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
            s2, d2, ok2 = attempt(trial_pair)
            take = retry & ok2
            cell_pair = np.where(take, alt, cell_pair)
            seeds[take], log_det[take], on_support[take] = s2[take], d2[take], True
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
