"""How much can spike times say about the DICs? A floor under the error of *any* estimator.

A noise-free tonic spiker settles on a limit cycle: after the transient its spike train is periodic, so the only
thing a time-shift-invariant method can read from it is the period (the phase depends on where the recording
starts, which carries no information about the cell). Every DIC target whose population fires with the same
period is then indistinguishable, whatever the method. For those cells the smallest achievable mean absolute error
on ``g_s`` (or ``g_u``) is the Bayes risk ``E_T[ E|g - median(g | T)| ]`` given the period ``T``, under the prior
the cells come from; a silent cell says only that it is silent, so its floor is the mean absolute deviation of
``g`` around its median over the silent cells.

:func:`information_floor` estimates both from simulated ``(theta, x)`` pairs (a campaign store, or any DIC-prior
simulation): cells are sorted by period, the conditional median is taken over the ``k`` nearest periods, and the
mean absolute deviation around it is reported for several ``k`` (in-sample, and leave-one-out: the first is
biased low by including the cell, the second high, as the held-out error of a k-NN estimator; where the two agree
and do not move with ``k`` the floor is estimated well). Cells of other classes get no floor (0), so the overall
floor ``Σ_class p_class · floor_class`` is a lower bound on the overall MAE of any estimator on the same cells.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import InvalidInputError
from .features import SUMMARY_NAMES

__all__ = ["information_floor", "conditional_median_mad", "cell_groups"]

_CV = SUMMARY_NAMES.index("cv")
_ISI = SUMMARY_NAMES.index("log10_mean_isi_ms")
_SPIKING = SUMMARY_NAMES.index("is_spiking")
_SILENT = SUMMARY_NAMES.index("is_silent")


def conditional_median_mad(s: NDArray, y: NDArray, k: int) -> tuple[float, float]:
    """Mean absolute deviation of ``y`` around its median over the ``k`` nearest values of the scalar ``s``.

    Returns ``(in_sample, leave_one_out)``: the median of the window of ``k + 1`` cells around each cell (itself
    included), and the median of its ``k`` neighbours without it (a k-NN estimator's held-out error).
    """
    s = np.asarray(s, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if s.shape != y.shape:
        raise InvalidInputError(f"s and y: expected the same length, got {s.size} and {y.size}")
    if not (isinstance(k, (int, np.integer)) and 2 <= k < s.size):
        raise InvalidInputError(f"k: expected an int with 2 <= k < {s.size} (the number of cells), got {k!r}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(y))):
        raise InvalidInputError("s and y: non-finite values")
    order = np.argsort(s, kind="stable")
    s, y = s[order], y[order]
    n, w = s.size, k + 1
    # In 1-D the k nearest neighbours of a point form a contiguous run of the sorted values: slide a run of
    # w = k + 1 cells (the point and k others) from the centred start towards whichever end is nearer.
    start = np.clip(np.arange(n) - k // 2, 0, n - w)
    for _ in range(k):
        left_ok = start > 0
        right_ok = start + w < n
        # move left when the cell just before the run is nearer than the run's last cell, and symmetrically
        i = np.arange(n)
        go_left = left_ok & (s[i] - s[np.maximum(start - 1, 0)] < s[np.minimum(start + w - 1, n - 1)] - s[i])
        go_right = right_ok & (s[np.minimum(start + w, n - 1)] - s[i] < s[i] - s[start])
        if not (go_left.any() or go_right.any()):
            break
        start = start - go_left + go_right
    windows = np.lib.stride_tricks.sliding_window_view(y, w)[start]  # (n, w), cell i inside its window
    srt = np.sort(windows, axis=1)
    med_in = srt[:, w // 2] if w % 2 else 0.5 * (srt[:, w // 2 - 1] + srt[:, w // 2])
    # Leave-one-out: drop y_i from its sorted window; the middle of the remaining k values shifts by one where
    # it lies above y_i's rank.
    rank = np.sum(srt < y[:, None], axis=1)
    lo_j, hi_j = (k - 1) // 2, k // 2
    lo = np.take_along_axis(srt, (lo_j + (lo_j >= rank))[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(srt, (hi_j + (hi_j >= rank))[:, None], axis=1)[:, 0]
    med_loo = 0.5 * (lo + hi)
    return float(np.mean(np.abs(y - med_in))), float(np.mean(np.abs(y - med_loo)))


def cell_groups(x: NDArray, periodic_cv: float = 0.005) -> dict[str, NDArray[np.bool_]]:
    """Masks of the ``periodic`` (spiking, CV of the intervals below ``periodic_cv``), ``silent`` and ``other``
    rows of summary features ``x``."""
    x = np.asarray(x, dtype=float)
    periodic = (x[:, _SPIKING] == 1) & (x[:, _CV] >= 0) & (x[:, _CV] < periodic_cv)
    silent = x[:, _SILENT] == 1
    return {"periodic": periodic, "silent": silent, "other": ~(periodic | silent)}


def information_floor(
    theta: NDArray,
    x: NDArray,
    *,
    ks: Sequence[int] = (25, 50, 100, 200, 400),
    periodic_cv: float = 0.005,
    max_cells: int | None = 200_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Floor under the MAE of any time-shift-invariant estimator of ``(g_s, g_u)`` from noise-free spike times.

    Parameters
    ----------
    theta
        ``(N, 2)`` DIC targets ``(g_s, g_u)`` of noise-free simulated cells drawn from the prior of interest.
    x
        ``(N, 17)`` summary features of the same cells (:data:`~dic_sbi.sbi.features.SUMMARY_NAMES`).
    ks
        Neighbourhood sizes of the conditional median (the spread of the results over ``ks`` shows how well the
        floor is estimated).
    periodic_cv
        A spiking train counts as periodic when the coefficient of variation of its intervals is below this
        (a noise-free limit cycle gives ~1e-4; the firing-class rule calls a train spiking up to 0.15).
    max_cells
        Periodic cells used at most (a random subset beyond it; the sort windows cost ``N k`` memory).
    seed
        Seed of that subset.

    Returns
    -------
    dict
        ``n``; per group (``periodic``, ``silent``, ``other``) its ``n``, ``fraction`` and, for the first two,
        ``floor_g_s`` / ``floor_g_u`` (periodic: the smaller of the in-sample values over ``ks``, the
        conservative choice; silent: the mean absolute deviation around the median) with the full table over
        ``ks``; and ``overall_floor_g_s`` / ``overall_floor_g_u`` = Σ fraction × floor.
    """
    theta = np.asarray(theta, dtype=float)
    x = np.asarray(x, dtype=float)
    if theta.ndim != 2 or theta.shape[1] != 2:
        raise InvalidInputError(f"theta: expected shape (N, 2) of (g_s, g_u), got {theta.shape}")
    if x.ndim != 2 or x.shape != (theta.shape[0], len(SUMMARY_NAMES)):
        raise InvalidInputError(f"x: expected shape ({theta.shape[0]}, {len(SUMMARY_NAMES)}), got {x.shape}")
    ok = np.all(np.isfinite(theta), axis=1) & np.all(np.isfinite(x), axis=1)
    theta, x = theta[ok], x[ok]
    n = theta.shape[0]
    if n == 0:
        raise InvalidInputError("theta, x: no finite rows")
    groups = cell_groups(x, periodic_cv)
    periodic, silent = groups["periodic"], groups["silent"]
    out: dict[str, Any] = {"n": int(n), "periodic_cv": float(periodic_cv)}

    idx = np.flatnonzero(periodic)
    if max_cells is not None and idx.size > max_cells:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_cells, replace=False))
    grp: dict[str, Any] = {"n": int(periodic.sum()), "fraction": float(periodic.mean()), "used": int(idx.size)}
    table = []
    for k in ks:
        if k >= idx.size:
            continue
        row: dict[str, Any] = {"k": int(k)}
        for j, name in enumerate(("g_s", "g_u")):
            row[f"in_sample_{name}"], row[f"loo_{name}"] = conditional_median_mad(x[idx, _ISI], theta[idx, j], int(k))
        table.append(row)
    grp["by_k"] = table
    for name in ("g_s", "g_u"):
        grp[f"floor_{name}"] = min((r[f"in_sample_{name}"] for r in table), default=0.0)
    out["periodic"] = grp

    sil: dict[str, Any] = {"n": int(silent.sum()), "fraction": float(silent.mean())}
    for j, name in enumerate(("g_s", "g_u")):
        v = theta[silent, j]
        sil[f"floor_{name}"] = float(np.mean(np.abs(v - np.median(v)))) if v.size else 0.0
    out["silent"] = sil
    other = groups["other"]
    out["other"] = {"n": int(other.sum()), "fraction": float(other.mean()), "floor_g_s": 0.0, "floor_g_u": 0.0}
    for name in ("g_s", "g_u"):
        out[f"overall_floor_{name}"] = float(sum(out[g]["fraction"] * out[g][f"floor_{name}"] for g in ("periodic", "silent")))
        firing = 1.0 - sil["fraction"]
        out[f"firing_floor_{name}"] = float(grp["fraction"] * grp[f"floor_{name}"] / firing) if firing > 0 else 0.0
    return out
