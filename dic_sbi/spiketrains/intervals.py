"""Interval statistics of spike trains: what the sequence of inter-spike intervals says beyond the firing class.

The summary features (rate, ISI mean, CV, burst features) describe a train as if it were stationary. The
sequence of intervals says more, and it identifies the DICs better (issue 16 measured it), in three kinds:

- **drift** (``drift``, ``first_isi``, ``last_isi``): how the intervals change over the window, relative to
  their mean: the mean of the last third minus the mean of the first third, and the first and last interval
  against the mean. Noise-free cells drift by ~1e-4 of the mean in the published window (slow gates and calcium
  still relaxing from the common initial state); noise hides it, so a posterior should not lean on it alone.
- **variability** (``cv``, ``serial_corr_1``, ``serial_corr_2``, ``spread_90_10``, ``skewness``): how much and
  how the intervals vary: CV down to 1e-7 (periodic cells), the lag-1 and lag-2 serial correlations, the
  90/10 quantile ratio and the skewness of the interval distribution. Under noise these depend on the
  conductances (how the cell filters the noise), and a real recording has them.
- **burst sequence** (bursting trains, full bursts only): first-to-last intra-burst interval ratio, max/min
  intra-burst interval ratio, where in the burst the longest intra-burst interval falls, the silent interval
  between bursts, the spread of spikes per burst and the CV of the burst period.

Every statistic is shift-invariant (it does not depend on where the window starts in absolute time).
:func:`interval_statistics` returns NaN where a statistic is undefined (too few intervals, not bursting).
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._parallel import run_ranges
from ..errors import InvalidInputError

__all__ = ["INTERVAL_STATISTICS", "interval_statistics"]

#: Names of the statistics, in column order, with the kind of information each carries.
INTERVAL_STATISTICS: dict[str, str] = {
    "drift": "drift",
    "first_isi": "drift",
    "last_isi": "drift",
    "cv": "variability",
    "serial_corr_1": "variability",
    "serial_corr_2": "variability",
    "spread_90_10": "variability",
    "skewness": "variability",
    "intra_first_last": "burst",
    "intra_max_min": "burst",
    "intra_longest_position": "burst",
    "interburst_interval": "burst",
    "spikes_per_burst_std": "burst",
    "burst_period_cv": "burst",
}
_NAMES = tuple(INTERVAL_STATISTICS)
_IDX = {n: i for i, n in enumerate(_NAMES)}
#: Fewest intervals for the drift and variability statistics.
MIN_INTERVALS = 4


@numba.njit(cache=True)
def _serial_corr(isi, m, lag):  # pragma: no cover - compiled
    n = isi.size
    num = 0.0
    den = 0.0
    for i in range(n):
        den += (isi[i] - m) * (isi[i] - m)
    for i in range(n - lag):
        num += (isi[i] - m) * (isi[i + lag] - m)
    if den <= 0.0:
        return 0.0
    return (num / (n - lag)) / (den / n)


@numba.njit(cache=True, nogil=True)
def _kernel(c0, c1, times, offsets, cv_threshold, out):  # pragma: no cover - compiled
    for c in range(c0, c1):  # trains [c0, c1), run by _parallel.run_ranges
        for j in range(out.shape[1]):
            out[c, j] = np.nan
        a = offsets[c]
        b = offsets[c + 1]
        k = b - a - 1  # intervals
        if k < MIN_INTERVALS:
            continue
        isi = np.empty(k)
        for i in range(k):
            isi[i] = times[a + i + 1] - times[a + i]
        m = isi.mean()
        third = max(1, k // 3)
        out[c, 0] = (isi[k - third :].mean() - isi[:third].mean()) / m
        out[c, 1] = (isi[0] - m) / m
        out[c, 2] = (isi[k - 1] - m) / m
        var = 0.0
        m3 = 0.0
        for i in range(k):
            d = isi[i] - m
            var += d * d
            m3 += d * d * d
        var /= k
        m3 /= k
        sd = np.sqrt(var)
        cv = sd / m
        out[c, 3] = cv
        out[c, 4] = _serial_corr(isi, m, 1)
        out[c, 5] = _serial_corr(isi, m, 2)
        s = np.sort(isi)
        q10 = s[int(0.1 * (k - 1))]
        q90 = s[int(np.ceil(0.9 * (k - 1)))]
        out[c, 6] = q90 / q10 - 1.0
        out[c, 7] = m3 / (sd * sd * sd) if sd > 0 else 0.0
        if cv <= cv_threshold:
            continue
        # Bursting: the same groups as the summary features (split at ISIs above the midpoint of the ISI
        # range, first and last group dropped as possibly cut by the window).
        split = 0.5 * (s[0] + s[k - 1])
        n_groups = 1
        for i in range(k):
            if isi[i] > split:
                n_groups += 1
        n_full = n_groups - 2
        if n_full < 1:
            continue
        starts = np.empty(n_groups, dtype=np.int64)
        ends = np.empty(n_groups, dtype=np.int64)
        g = 0
        starts[0] = 0
        for i in range(k):
            if isi[i] > split:
                ends[g] = i
                g += 1
                starts[g] = i + 1
        ends[g] = k
        # spike indices of group g: starts[g] .. ends[g] (inclusive); intra intervals isi[starts[g] : ends[g]]
        fl_sum = 0.0
        mm_sum = 0.0
        pos_sum = 0.0
        n_shape = 0
        spb = np.empty(n_full)
        for g in range(1, n_groups - 1):
            spb[g - 1] = ends[g] - starts[g] + 1
            n_intra = ends[g] - starts[g]
            if n_intra >= 2:
                lo = np.inf
                hi = -np.inf
                arg = 0
                for i in range(starts[g], ends[g]):
                    if isi[i] < lo:
                        lo = isi[i]
                    if isi[i] > hi:
                        hi = isi[i]
                        arg = i - starts[g]
                fl_sum += np.log10(isi[starts[g]] / isi[ends[g] - 1])
                mm_sum += np.log10(hi / lo)
                pos_sum += arg / (n_intra - 1)
                n_shape += 1
        if n_shape > 0:
            out[c, 8] = fl_sum / n_shape
            out[c, 9] = mm_sum / n_shape
            out[c, 10] = pos_sum / n_shape
        silent = 0.0
        for g in range(1, n_groups - 1):
            silent += isi[ends[g]]  # the interval after the burst's last spike
        out[c, 11] = silent / n_full
        out[c, 12] = spb.std()
        if n_full >= 3:
            periods = np.empty(n_full - 1)
            for g in range(1, n_groups - 2):
                periods[g - 1] = times[a + starts[g + 1]] - times[a + starts[g]]
            pm = periods.mean()
            out[c, 13] = periods.std() / pm


def interval_statistics(times: ArrayLike, offsets: ArrayLike, *, cv_threshold: float = 0.15) -> dict[str, NDArray]:
    """Drift, variability and burst-sequence statistics of ``N`` spike trains in CSR layout.

    Parameters
    ----------
    times
        Flat spike times in ms, each train sorted (train ``i`` is ``times[offsets[i]:offsets[i + 1]]``).
    offsets
        ``N + 1`` non-decreasing integers from 0 to ``len(times)``.
    cv_threshold
        CV(ISI) above which a train is bursting (the firing-class rule of the summary features).

    Returns
    -------
    dict
        One ``(N,)`` float64 array per name of :data:`INTERVAL_STATISTICS` (dimensionless; ``interburst_interval``
        in ms), NaN where undefined (fewer than 4 intervals; burst statistics of non-bursting trains).
    """
    t = np.ascontiguousarray(np.asarray(times, dtype=np.float64))
    off = np.ascontiguousarray(np.asarray(offsets, dtype=np.int64))
    if t.ndim != 1 or off.ndim != 1 or off.size < 1 or off[0] != 0 or off[-1] != t.size or np.any(np.diff(off) < 0):
        raise InvalidInputError("offsets: expected N + 1 non-decreasing integers from 0 to len(times)")
    out = np.empty((off.size - 1, len(_NAMES)))
    run_ranges(_kernel, off.size - 1, t, off, float(cv_threshold), out)
    return {name: out[:, i] for i, name in enumerate(_NAMES)}
