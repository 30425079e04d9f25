"""Spike-time jitter: the imprecision of spike detection in a real recording, applied to simulated trains.

Used to train posteriors that stay accurate on jittered spike times (issue 16: a posterior that reads the tiny
interval drift of a noise-free simulation loses it under 0.5 ms of jitter unless it was trained with jitter).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from typing import Any

from ..errors import InvalidInputError
from .convert import _check_offsets

__all__ = ["jitter_spike_times", "check_jitter", "draw_jitter_sd"]


def check_jitter(jitter: Any) -> tuple[float, float]:
    """``(fraction, max_sd)`` of a spike-time jitter mixture, checked: 0 < fraction <= 1, 0 < max_sd (ms)."""
    try:
        fraction, max_sd = (float(v) for v in jitter)
    except (TypeError, ValueError):
        raise InvalidInputError(f"jitter: expected (fraction, max_sd_ms), got {jitter!r}") from None
    if not (0.0 < fraction <= 1.0 and np.isfinite(max_sd) and max_sd > 0.0):
        raise InvalidInputError(f"jitter: expected 0 < fraction <= 1 and a finite max sd > 0 ms, got {jitter!r}")
    return (fraction, max_sd)


def draw_jitter_sd(jitter: Any, n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Per-train jitter sd (ms) of the mixture ``jitter = (fraction, max_sd)``: with probability ``fraction``
    ~ U(0, max_sd), else 0 (the campaigns' training jitter); ``None`` gives zeros."""
    if jitter is None:
        return np.zeros(int(n))
    fraction, max_sd = check_jitter(jitter)
    # Two draws of n, in this order: the campaigns' stores depend on it.
    return np.where(rng.random(n) < fraction, rng.uniform(0.0, max_sd, n), 0.0)


def jitter_spike_times(times: ArrayLike, offsets: ArrayLike, sd: ArrayLike, t_start: ArrayLike, t_stop: ArrayLike,
                       rng: np.random.Generator) -> tuple[NDArray[np.float64], NDArray[np.int64]]:  # fmt: skip
    """Move every spike by an independent N(0, sd²) (ms), re-sort each train, drop spikes that leave its window.

    Parameters
    ----------
    times, offsets
        Spike trains in CSR form (ms; train ``i`` is ``times[offsets[i]:offsets[i + 1]]``).
    sd
        Jitter standard deviation (ms): one value, or one per train (0 leaves a train unchanged).
    t_start, t_stop
        Each train's window (ms): one value or one per train; jittered spikes outside ``[t_start, t_stop]`` are
        dropped, as a recording of that window would not hold them.
    rng
        Random generator (one normal draw per spike, in train order).

    Returns
    -------
    times, offsets
        The jittered trains (strictly increasing within each train: coinciding times are merged).
    """
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1:
        raise InvalidInputError(f"times: expected a 1-D array of spike times (ms), got shape {t.shape}")
    off = _check_offsets(offsets, t.size)
    n = off.size - 1
    sd_train = np.broadcast_to(np.asarray(sd, dtype=np.float64), (n,))
    if not np.all(np.isfinite(sd_train) & (sd_train >= 0)):
        raise InvalidInputError(f"sd: expected finite values >= 0 ms, got {sd!r}")
    counts = np.diff(off)
    train = np.repeat(np.arange(n), counts)
    moved = t + rng.standard_normal(t.size) * sd_train[train]
    order = np.lexsort((moved, train))  # by train, then by time
    moved, train = moved[order], train[order]
    lo = np.broadcast_to(np.asarray(t_start, dtype=np.float64), (n,))[train]
    hi = np.broadcast_to(np.asarray(t_stop, dtype=np.float64), (n,))[train]
    keep = (moved >= lo) & (moved <= hi)
    keep[1:] &= ~((train[1:] == train[:-1]) & (moved[1:] == moved[:-1]))  # strictly increasing
    moved, train = moved[keep], train[keep]
    new_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(train, minlength=n), out=new_off[1:])
    return moved, new_off
