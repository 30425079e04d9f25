"""Compiled kernels of :mod:`dic_sbi.core.populations` (numba, float64).

The DIC map is passed as explicit arrays (tuples of arrays would be unpacked, with reference counting, on every
call): ``S0 (3, n), ca_index, ca_power, ca_K (k,), ca_C (k, 3), ca_D (k,), ca_a, ca_b (n,), ca_beta, ca_w (3,)``
and the leak index, as built by ``populations._lin_tuple`` from :class:`~dic_sbi.core.dics.Linearization`.
``base`` (5,) holds the part of the map that does not involve the unknowns of a solve: three raw DIC rows
(``gleak · DIC``), Ca_inf and dCa_inf/dV summed over the known conductances.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["population_kernel", "recover_kernel", "compact"]

# Status codes of a draw.
VALID, NEGATIVE, SEED_FAILED, MOVE_FAILED, RESIDUAL = 0, 1, 2, 3, 4
# How a compensating pair is solved (decided per model by populations._plan).
PAIR_CONSTANT, PAIR_ONE_NONLINEAR, PAIR_GENERAL = 0, 1, 2

_BLOCK = 256  # cells per parallel work item, processed together in vectorised loops
_FAST_ITERATIONS = 8  # undamped Newton steps of the block fast path before a cell goes to the damped solver
_MAX_HALVINGS = 30  # damped Newton: a step cut 2^30-fold without decrease means the draw has no solution nearby
# Integer arguments passed as int64 scalars, not literals: numba compiles a function again for every distinct
# literal argument, which doubled the one-time compilation of the solvers (measured).
_ZERO, _ONE, _TWO, _THREE, _NONE = (np.int64(k) for k in (0, 1, 2, 3, -1))



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
    _partial_sums(g, unk, _TWO, S0, ca_a, ca_b, ca_beta, base)
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
    _raw(g, unk, _ONE, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, raw)
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


@numba.njit(cache=True, nogil=True)
def population_kernel(
    blk0, blk1, gleak, uniforms, cell_target, targets, target_pair,
    free_index, free_low, free_high, fixed_index, fixed_value, reference_leak,
    seed_index, seed_target, seed_constant, seed_inverse, pairs, pair_mode, pair_inverse, pair_rows,
    tol, max_iter,
    S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak,
    out, status,
):
    """Both stages for the blocks of ``_BLOCK`` cells ``[blk0, blk1)`` (run by ``dic_sbi._parallel.run_ranges``)."""
    N, n = out.shape
    for blk in range(blk0, blk1):
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
            _block_sums(G, _ZERO, m, _NONE, _NONE, S0, ca_a, ca_b, ca_beta, r0, r1, r2, Ca, dCa)
            _block_calcium_terms(G, _ZERO, m, ca_index, ca_power, ca_K, ca_C, ca_D, ca_w, Ca, dCa, r0, r1, r2, t_r, t_pow)
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
                    g, seed_index, _ZERO, tgt, _THREE, tol, max_iter,
                    S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak,
                    base, raw, J, Jm, res, step, save,
                ):
                    for j in range(n):
                        G[j, i] = g[j]
                else:
                    code[i] = SEED_FAILED

        # Stage 2: move (g_s, g_u) to the target, run by run of cells sharing a target.
        i0 = _ZERO
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
            if mode == PAIR_CONSTANT:
                if seed_constant:
                    # The seed hit (g_s, g_u) = seed target exactly, so the residual is known without evaluating.
                    for i in range(i0, i1):
                        r1[i] = (ts - seed_target[1]) * gl[i]
                        r2[i] = (tu - seed_target[2]) * gl[i]
                else:
                    _block_sums(G, i0, i1, _NONE, _NONE, S0, ca_a, ca_b, ca_beta, r0, r1, r2, Ca, dCa)
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
                if mode == PAIR_ONE_NONLINEAR:
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
                    if mode == PAIR_ONE_NONLINEAR:
                        ok = _solve_one_nonlinear(
                            g, unk, pair_rows[p, 0], pair_rows[p, 1], tgt[pair_rows[p, 0] - 1], tgt[pair_rows[p, 1] - 1],
                            tol, max_iter, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak,
                            base, raw,
                        )
                    else:
                        ok = _newton(
                            g, unk, _ONE, tgt, _TWO, tol, max_iter,
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
        _block_sums(G, _ZERO, m, _NONE, _NONE, S0, ca_a, ca_b, ca_beta, r0, r1, r2, Ca, dCa)
        _block_calcium_terms(G, _ZERO, m, ca_index, ca_power, ca_K, ca_C, ca_D, ca_w, Ca, dCa, r0, r1, r2, t_r, t_pow)
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


@numba.njit(cache=True, nogil=True)
def recover_kernel(
    c0, c1, cells, cell_pair, pairs, seed_target, tol, max_iter,
    S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_beta, ca_w, leak,
    seed_values, log_det, ok,
):
    """Invert the move stage: the seed values of the pair and ``log |det ∂(g_s, g_u)/∂ḡ_pair|``.

    The seed differs from the final cell only in the pair, and satisfies the three seed equations, so the two
    seed values solve an over-determined (3 × 2) system, consistent exactly when the cell lies on the set the
    sampler produces. Gauss-Newton; ``ok`` is False when the least-squares residual does not vanish.
    """
    for c in range(c0, c1):
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
        _partial_sums(g, unk, _TWO, S0, ca_a, ca_b, ca_beta, base)
        _jacobian(g, unk, _TWO, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, J)
        det = (J[1, 0] * J[2, 1] - J[1, 1] * J[2, 0]) / (gl * gl)
        log_det[c] = np.log(abs(det)) if det != 0.0 else -np.inf
        _raw(g, unk, _TWO, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, raw)
        err = 0.0
        for a in range(3):
            res[a] = seed_target[a] * gl - raw[a]
            err = max(err, abs(res[a]) / gl)
        converged = err <= tol
        for _ in range(max_iter):
            if converged:
                break
            _jacobian(g, unk, _TWO, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, J)
            # Normal equations of the 3 × 2 least-squares step.
            for a in range(2):
                rhs[a] = J[0, a] * res[0] + J[1, a] * res[1] + J[2, a] * res[2]
                for b in range(2):
                    A[a, b] = J[0, a] * J[0, b] + J[1, a] * J[1, b] + J[2, a] * J[2, b]
            if not _small_solve(A, rhs, _TWO, step):
                break
            save[0] = g[unk[0]]
            save[1] = g[unk[1]]
            lam = 1.0
            improved = False
            new_err = err
            for _ in range(_MAX_HALVINGS):
                g[unk[0]] = save[0] + lam * step[0]
                g[unk[1]] = save[1] + lam * step[1]
                _raw(g, unk, _TWO, base, S0, ca_index, ca_power, ca_K, ca_C, ca_D, ca_a, ca_b, ca_w, raw)
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
def compact(cells, status, ids, starts, counts, n, out, filled):
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
