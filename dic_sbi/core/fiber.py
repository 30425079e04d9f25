"""The DIC fiber of the conductance box: move two conductances of a cell so that it has given DICs.

The compensation of :mod:`~dic_sbi.core.populations` builds cells from the seed law (a leak, a few free
conductances, a seed solve), so its cells span a lower-dimensional part of the conductance box. Here every
conductance but a compensating pair is kept as given, and only the pair is solved for the target ``(g_s, g_u)``:
with it, any cell of the box is ``(its DICs, its other conductances)``, and a DIC-space posterior can be trained
on the box's own cells (issue 17: :class:`~dic_sbi.sbi.box_dic.BoxDICPosterior`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model
from .dics import CalciumPathTau, _check_voltage, linearize

Array = NDArray[np.float64]

DEFAULT_PAIR_TOL = 1e-10


def pair_indices(model: str | ConductanceModel, pair: tuple[str, str]) -> tuple[int, int]:
    """Positions of the two conductances of ``pair`` in the model's order (two distinct, non-leak channels)."""
    model = get_model(model)
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
        raise InvalidInputError(f"pair: expected two conductance names, got {pair!r}")
    names = [c.name for c in model.channels]
    unknown = [p for p in pair if p not in names]
    if unknown or pair[0] == pair[1] or "leak" in pair:
        raise InvalidInputError(f"pair: expected two distinct conductances among {', '.join(n for n in names if n != 'leak')} "
                                f"of model {model.name!r}, got {tuple(pair)!r}")  # fmt: skip
    return model.index(pair[0]), model.index(pair[1])


def box_pair(model: str | ConductanceModel) -> tuple[str, str]:
    """The compensating pair :func:`solve_pair` uses by default for ``model``: the first pair of its compensation
    rule whose two conductances do not feed the calcium concentration (the solve is then linear and has one
    solution: with a calcium-carrying conductance in the pair, the STG solve can land on another root), else the
    rule's first pair."""
    from .populations import compensation_rule

    model = get_model(model)
    pairs = [tuple(p) for p in compensation_rule(model).pairs]
    lin = linearize(model, _check_voltage(model, None))
    feeds = set(np.flatnonzero(np.atleast_1d(lin.ca_a).reshape(-1, model.n_conductances).any(axis=0))) if lin.has_calcium else set()
    for p in pairs:
        if not {model.index(p[0]), model.index(p[1])} & feeds:
            return p  # type: ignore[return-value]
    return pairs[0]  # type: ignore[return-value]


def solve_pair(
    model: str | ConductanceModel,
    conductances: ArrayLike,
    g_s: ArrayLike,
    g_u: ArrayLike,
    *,
    pair: tuple[str, str],
    calcium_path_tau: CalciumPathTau = "model",
    tol: float = DEFAULT_PAIR_TOL,
    max_iter: int = 50,
) -> tuple[Array, NDArray[np.bool_]]:
    """Cells with the DICs ``(g_s, g_u)``: the two conductances of ``pair`` solved, every other one kept.

    At the model's reference threshold the DICs are ``S(g) · g / gleak``, linear in ``g`` for a model without
    intracellular calcium (one 2 × 2 solve) and through ``Ca_inf(g)`` otherwise: then the pair is re-solved
    with the sensitivity of the last iterate until the DICs are within ``tol`` of their targets.

    Parameters
    ----------
    model
        Model name or object.
    conductances
        ``(N, n_conductances)`` cells; the values of the pair's columns are ignored (they start the iteration).
    g_s, g_u
        Targets ``(N,)`` (or scalars, broadcast).
    pair
        The two conductances solved for, e.g. ``("ERG", "CaL")``.
    calcium_path_tau
        Weighting of the calcium path (as in :func:`~dic_sbi.core.dics.dics`).
    tol, max_iter
        Convergence of the normalised DICs (absolute) and iteration cap.

    Returns
    -------
    cells, solved
        ``(N, n_conductances)`` cells (NaN where not solved) and ``(N,)`` True where the solve converged to a
        finite cell whose every conductance is ≥ 0.
    """
    model = get_model(model)
    g = np.array(conductances, dtype=float)
    if g.ndim != 2 or g.shape[1] != model.n_conductances:
        raise InvalidInputError(f"conductances: expected shape (N, {model.n_conductances}), got {g.shape}")
    n = g.shape[0]
    try:
        target = np.stack(np.broadcast_arrays(np.asarray(g_s, dtype=float), np.asarray(g_u, dtype=float)), axis=-1)
        target = np.broadcast_to(target, (n, 2)).copy()
    except ValueError:
        raise InvalidInputError(f"g_s, g_u: expected scalars or ({n},) targets, got shapes {np.shape(g_s)} and "
                                f"{np.shape(g_u)}") from None  # fmt: skip
    if not (np.isfinite(tol) and tol > 0) or not (isinstance(max_iter, (int, np.integer)) and max_iter >= 1):
        raise InvalidInputError(f"tol, max_iter: expected a positive tolerance and an int >= 1, got {tol!r}, {max_iter!r}")
    a, b = pair_indices(model, pair)
    leak = model.index("leak")
    others = np.array([i for i in range(model.n_conductances) if i not in (a, b)], dtype=np.intp)
    lin = linearize(model, _check_voltage(model, None), calcium_path_tau=calcium_path_tau)
    ok = np.isfinite(g[:, others]).all(axis=1) & np.isfinite(target).all(axis=1) & (g[:, leak] > 0)
    g[~ok] = np.nan
    g[ok, a] = np.where(np.isfinite(g[ok, a]), g[ok, a], 0.0)
    g[ok, b] = np.where(np.isfinite(g[ok, b]), g[ok, b], 0.0)
    todo = np.flatnonzero(ok)
    done = np.zeros(n, dtype=bool)
    for _ in range(int(max_iter)):
        if todo.size == 0:
            break
        gt = g[todo]
        S = lin.columns(gt)[:, 1:, :]  # (m, 2, n): the slow and ultraslow rows
        A = S[:, :, [a, b]]
        rhs = target[todo] * gt[:, leak, None] - np.einsum("mrk,mk->mr", S[:, :, others], gt[:, others])
        det = A[:, 0, 0] * A[:, 1, 1] - A[:, 0, 1] * A[:, 1, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            ga = (rhs[:, 0] * A[:, 1, 1] - A[:, 0, 1] * rhs[:, 1]) / det
            gb = (A[:, 0, 0] * rhs[:, 1] - A[:, 1, 0] * rhs[:, 0]) / det
        g[todo, a], g[todo, b] = ga, gb
        finite = np.isfinite(ga) & np.isfinite(gb)
        resid = np.full(todo.size, np.inf)
        if finite.any():
            gf = g[todo[finite]]
            with np.errstate(invalid="ignore", divide="ignore"):
                resid[finite] = np.abs(lin.raw(gf)[:, 1:] / gf[:, leak, None] - target[todo[finite]]).max(axis=1)
        converged = resid <= tol
        done[todo[converged]] = True
        g[todo[~finite]] = np.nan
        todo = todo[~converged & finite]
    solved = done & np.all(g >= 0, axis=1)
    g[~done] = np.nan
    return g, solved


def pair_log_jacobian(
    model: str | ConductanceModel,
    conductances: ArrayLike,
    *,
    pair: tuple[str, str],
    calcium_path_tau: CalciumPathTau = "model",
    rel_step: float = 1e-6,
) -> Array:
    """``log |det ∂(g_s, g_u) / ∂(g_a, g_b)|`` of each cell ``(N, n_conductances)``: how the DICs change with the
    compensating pair ``(a, b)``, every other conductance held (central differences of the DICs at the model's
    reference threshold, exact for a model without calcium up to rounding).

    A density over the other conductances given the DICs, ``q(g_other | g_s, g_u)``, and a density over whole cells
    ``q(ḡ)`` differ by this factor (:class:`~dic_sbi.sbi.box_dic.BoxDICPosterior`'s reweighted fiber law). Rows
    that are not finite, or where the DICs do not depend on the pair, give NaN / ``-inf``.
    """
    model = get_model(model)
    g = np.array(conductances, dtype=float)
    if g.ndim != 2 or g.shape[1] != model.n_conductances:
        raise InvalidInputError(f"conductances: expected shape (N, {model.n_conductances}), got {g.shape}")
    a, b = pair_indices(model, pair)
    leak = model.index("leak")
    lin = linearize(model, _check_voltage(model, None), calcium_path_tau=calcium_path_tau)
    jac = np.empty((g.shape[0], 2, 2))
    for col, k in enumerate((a, b)):
        h = rel_step * np.maximum(np.abs(g[:, k]), 1.0)
        up, down = g.copy(), g.copy()
        up[:, k] += h
        down[:, k] -= h
        with np.errstate(invalid="ignore", divide="ignore"):
            jac[:, :, col] = (lin.raw(up)[:, 1:] - lin.raw(down)[:, 1:]) / (2 * h[:, None] * g[:, leak, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.abs(jac[:, 0, 0] * jac[:, 1, 1] - jac[:, 0, 1] * jac[:, 1, 0]))
