"""Spike times in and out of neo: conversion, validation, and detection from membrane potential.

Inside dic_sbi spike times are plain ``float64`` arrays in milliseconds. At the boundary they become
:class:`neo.SpikeTrain` objects with ``quantities`` units, the convention of neo and Elephant. Every function here
accepts times as a :class:`neo.SpikeTrain`, a ``quantities`` array in any time unit, or a plain array taken as ms,
and checks them: finite, strictly increasing, non-negative, inside the observation window.
"""

from __future__ import annotations

from typing import Any

import neo
import numpy as np
import quantities as pq
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidInputError

__all__ = [
    "to_spiketrain",
    "spike_times_ms",
    "spiketrains_from_csr",
    "csr_from_spiketrains",
    "detect_spikes",
    "SPIKE_THRESHOLD_MV",
    "REARM_THRESHOLD_MV",
    "MIN_SPIKE_AMPLITUDE_MV",
]

Array = NDArray[np.float64]

#: A spike is an upward crossing of +10 mV ...
SPIKE_THRESHOLD_MV = 10.0
#: ... and detection re-arms once V has fallen below 0 mV.
REARM_THRESHOLD_MV = 0.0
#: ``threshold="auto"``: a trace whose maximum is less than this above its median holds no spikes ...
MIN_SPIKE_AMPLITUDE_MV = 20.0
#: ... otherwise spikes cross this fraction of the way from the median to the maximum ...
AUTO_THRESHOLD_FRACTION = 0.5
#: ... and detection re-arms below this fraction.
AUTO_REARM_FRACTION = 0.2


# --------------------------------------------------------------------------------------------------------------
# Units at the boundary
# --------------------------------------------------------------------------------------------------------------


def _units_name(q: pq.Quantity) -> str:
    return q.dimensionality.string


def _quantity_to(q: pq.Quantity, unit: pq.Quantity, kind: str, name: str) -> Array:
    """Magnitude of ``q`` in ``unit``, or a clear error when ``q`` is not a ``kind`` quantity."""
    try:
        return np.asarray(q.rescale(unit).magnitude, dtype=np.float64)
    except ValueError:
        raise InvalidInputError(
            f"{name} has units of {_units_name(q)!r}, which is not a {kind}; "
            f"give it in {kind} units (e.g. {unit.dimensionality.string}) or as a plain number in "
            f"{unit.dimensionality.string}."
        ) from None


def _scalar_ms(value: Any, name: str) -> float:
    """A time given as a float in ms or a scalar time quantity, as a finite float in ms."""
    if isinstance(value, pq.Quantity):
        arr = _quantity_to(value, pq.ms, "time", name)
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name} must be a number in ms or a time quantity, got {value!r}.") from None
    if arr.ndim != 0 and arr.size != 1:
        raise InvalidInputError(f"{name} must be a single time, got an array of shape {arr.shape}.")
    out = float(arr.reshape(()))
    if not np.isfinite(out):
        raise InvalidInputError(f"{name} must be finite, got {out}.")
    return out


def _check_times(times: Array, name: str, t_start: float | None, t_stop: float | None) -> None:
    """Raise :class:`InvalidInputError` unless ``times`` is a valid 1-D spike-time array in ms."""
    if times.ndim != 1:
        raise InvalidInputError(f"{name} must be one-dimensional (one spike train), got shape {times.shape}.")
    if not np.all(np.isfinite(times)):
        bad = np.flatnonzero(~np.isfinite(times))
        i = int(bad[0])
        what = "NaN (not a number)" if np.isnan(times[i]) else "infinite"
        raise InvalidInputError(
            f"{name} must be finite; spike time {i} is {what} ({times[i]}), {bad.size} such value(s) in all. "
            "Remove them from the spike times."
        )
    if times.size and times.min() < 0:
        i = int(np.flatnonzero(times < 0)[0])
        raise InvalidInputError(
            f"{name} must be non-negative; element {i} is {times[i]} ms. Shift the times so that the "
            "recording starts at 0 or later."
        )
    steps = np.diff(times)
    if np.any(steps == 0):
        i = int(np.flatnonzero(steps == 0)[0])
        raise InvalidInputError(
            f"{name} must be strictly increasing; duplicate spike time {times[i]} ms (elements {i} and {i + 1}), "
            f"{int(np.sum(steps == 0))} duplicate(s) in all. Remove duplicates (two spikes cannot share a time)."
        )
    if np.any(steps <= 0):
        i = int(np.flatnonzero(steps <= 0)[0])
        raise InvalidInputError(
            f"{name} must be strictly increasing; element {i + 1} ({times[i + 1]} ms) does not come after "
            f"element {i} ({times[i]} ms): the times are not sorted. Sort them."
        )
    if t_start is not None and times.size and times[0] < t_start:
        raise InvalidInputError(f"{name} has a spike at {times[0]} ms, before t_start = {t_start} ms.")
    if t_stop is not None and times.size and times[-1] > t_stop:
        raise InvalidInputError(f"{name} has a spike at {times[-1]} ms, after t_stop = {t_stop} ms.")


def _window_ms(t_start: Any, t_stop: Any) -> tuple[float | None, float | None]:
    start = None if t_start is None else _scalar_ms(t_start, "t_start")
    stop = None if t_stop is None else _scalar_ms(t_stop, "t_stop")
    if start is not None and stop is not None and not stop > start:
        raise InvalidInputError(f"t_stop ({stop} ms) must be greater than t_start ({start} ms).")
    return start, stop


def _times_ms(spikes: Any, name: str, *, copy: bool = True) -> Array:
    """Convert without validation: SpikeTrain / quantity (any time unit) / plain array (ms) -> float64 ms.

    ``copy=False`` lets a plain float64 array through as is (the CSR path: millions of spikes, read only).
    """
    if isinstance(spikes, pq.Quantity):  # neo.SpikeTrain is a Quantity too
        return np.array(_quantity_to(spikes, pq.ms, "time", name), dtype=np.float64, copy=True)
    if isinstance(spikes, (str, bytes)) or spikes is None:
        raise InvalidInputError(f"{name} must be spike times (an array, a list or a neo.SpikeTrain), got {spikes!r}.")
    try:
        return np.array(spikes, dtype=np.float64, copy=True if copy else None)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{name} must be spike times (an array, a list or a neo.SpikeTrain); could not read "
            f"{type(spikes).__name__} as numbers."
        ) from None


def spike_times_ms(spikes: Any, /, *, t_start: Any = None, t_stop: Any = None) -> Array:
    """Spike times as a validated ``float64`` array in milliseconds.

    Parameters
    ----------
    spikes
        A :class:`neo.SpikeTrain`, a ``quantities`` array in any time unit (converted), or a plain
        array / list (taken as ms).
    t_start, t_stop
        Optional observation window (ms or time quantities); every spike must lie inside it. For a
        :class:`neo.SpikeTrain` neo already guarantees its own window.

    Returns
    -------
    numpy.ndarray
        A new 1-D array of spike times in ms.

    Raises
    ------
    InvalidInputError
        Times that are not a 1-D time array, not finite, negative, not strictly increasing, or outside
        the window; units that are not time (e.g. mV).
    """
    start, stop = _window_ms(t_start, t_stop)
    times = _times_ms(spikes, "spikes")
    _check_times(times, "spikes", start, stop)
    return times


def to_spiketrain(times_ms: Any, *, t_start: Any = 0.0, t_stop: Any, **annotations: Any) -> neo.SpikeTrain:
    """A :class:`neo.SpikeTrain` in ms.

    Parameters
    ----------
    times_ms
        Spike times: plain numbers in ms, or anything :func:`spike_times_ms` accepts.
    t_start, t_stop
        Observation window, in ms or as time quantities. ``t_stop`` is required: a rate needs a window.
    **annotations
        Passed to :class:`neo.SpikeTrain` (``name``, ``description`` and free annotations such as
        ``cell=3``).

    Raises
    ------
    InvalidInputError
        As :func:`spike_times_ms`, or a window with ``t_stop <= t_start``.
    """
    start, stop = _window_ms(t_start, t_stop)
    times = _times_ms(times_ms, "times_ms")
    _check_times(times, "times_ms", start, stop)
    return neo.SpikeTrain(times, units=pq.ms, t_start=start * pq.ms, t_stop=stop * pq.ms, **annotations)


# --------------------------------------------------------------------------------------------------------------
# Many trains: CSR layout (flat times + offsets), the simulator's output format
# --------------------------------------------------------------------------------------------------------------


def _check_offsets(offsets: Any, n_times: int) -> NDArray[np.int64]:
    off = np.asarray(offsets)
    if off.ndim != 1 or off.size < 1:
        raise InvalidInputError(f"offsets must be a 1-D array of length n_trains + 1, got shape {off.shape}.")
    if not np.issubdtype(off.dtype, np.integer):
        if not (np.issubdtype(off.dtype, np.floating) and np.all(off == np.round(off))):
            raise InvalidInputError(f"offsets must hold integers, got dtype {off.dtype}.")
    off = off.astype(np.int64)
    if off[0] != 0 or off[-1] != n_times:
        raise InvalidInputError(
            f"offsets must start at 0 and end at len(times) = {n_times}; got {off[0]} ... {off[-1]}."
        )
    if np.any(np.diff(off) < 0):
        i = int(np.flatnonzero(np.diff(off) < 0)[0])
        raise InvalidInputError(f"offsets must be non-decreasing; offsets[{i + 1}] < offsets[{i}].")
    return off


def spiketrains_from_csr(
    times: ArrayLike, offsets: ArrayLike, *, t_start: Any, t_stop: Any, **annotations: Any
) -> list[neo.SpikeTrain]:
    """One :class:`neo.SpikeTrain` per cell from CSR spike times.

    Parameters
    ----------
    times
        Flat spike times of all cells, in ms (cell ``i`` owns ``times[offsets[i]:offsets[i + 1]]``).
    offsets
        Integer array of length ``n_cells + 1``.
    t_start, t_stop
        Shared observation window (ms or time quantities).
    **annotations
        Added to every train, together with ``cell=i``.
    """
    flat = _times_ms(times, "times")
    if flat.ndim != 1:
        raise InvalidInputError(f"times must be one-dimensional, got shape {flat.shape}.")
    off = _check_offsets(offsets, flat.size)
    return [
        to_spiketrain(flat[off[i] : off[i + 1]], t_start=t_start, t_stop=t_stop, cell=i, **annotations)
        for i in range(off.size - 1)
    ]


def csr_from_spiketrains(trains: Any) -> tuple[Array, NDArray[np.int64]]:
    """Flat times (ms) and offsets from a sequence of spike trains (anything :func:`spike_times_ms` accepts)."""
    arrays = []
    for i, train in enumerate(trains):
        times = _times_ms(train, f"trains[{i}]")
        _check_times(times, f"trains[{i}]", None, None)
        arrays.append(times)
    counts = np.array([a.size for a in arrays], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    flat = np.concatenate(arrays) if arrays else np.zeros(0)
    return flat.astype(np.float64), offsets


# --------------------------------------------------------------------------------------------------------------
# Detection from membrane potential
# --------------------------------------------------------------------------------------------------------------


def _voltage_mv(value: Any, name: str) -> float:
    if isinstance(value, pq.Quantity):
        arr = _quantity_to(value, pq.mV, "voltage", name)
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name} must be a number in mV or a voltage quantity, got {value!r}.") from None
    if arr.size != 1:
        raise InvalidInputError(f"{name} must be a single voltage, got shape {arr.shape}.")
    out = float(arr.reshape(()))
    if not np.isfinite(out):
        raise InvalidInputError(f"{name} must be finite, got {out}.")
    return out


def _crossings(v: Array, dt: float, t0: float, threshold: float, rearm: float) -> Array:
    """Interpolated threshold crossings of one trace that count as spikes under the re-arm rule.

    Sample by sample, as the simulator's in-loop detector: detection is armed at the start only if the trace
    starts below ``rearm``; an armed trace that reaches ``threshold`` spikes (and disarms); a disarmed trace
    re-arms when it falls below ``rearm``. Vectorised: a spike can only occur at an upward crossing
    ``v[i - 1] < threshold <= v[i]``, and a crossing is armed iff the trace was below ``rearm`` somewhere
    after the previous crossing (whether that one spiked or not, it left detection disarmed), or anywhere
    before the first crossing.
    """
    above = v >= threshold
    up = np.flatnonzero(~above[:-1] & above[1:]) + 1
    if up.size == 0:
        return np.zeros(0)
    # Index of the last sample below `rearm` at or before each crossing (-1 if none).
    last_below = np.maximum.accumulate(np.where(v < rearm, np.arange(v.size), -1))[up]
    armed = np.empty(up.size, dtype=bool)
    armed[0] = last_below[0] >= 0
    armed[1:] = last_below[1:] > up[:-1]
    spikes = up[armed]
    before = v[spikes - 1]
    after = v[spikes]
    frac = (threshold - before) / (after - before)  # in (0, 1]: linear interpolation of the crossing time
    return t0 + (spikes - 1 + frac) * dt


def _auto_levels(v: Array) -> tuple[float, float]:
    """Threshold and re-arm levels of one trace from its own range (``threshold="auto"``).

    Spikes are brief, so the median is the level the cell spends its time at (rest, or between spikes) and
    the maximum is a spike peak; spikes cross half way between them, and detection re-arms a fifth of the way
    up. This holds wherever the spikes peak (below 0 mV in a cold or damaged cell) and wherever the trace rests
    (near 0 mV with a wrong offset). A trace less than :data:`MIN_SPIKE_AMPLITUDE_MV` above its median has no
    spikes: both levels are then put above its maximum.
    """
    base, peak = float(np.median(v)), float(np.max(v))
    amplitude = peak - base
    if amplitude < MIN_SPIKE_AMPLITUDE_MV:
        return peak + 1.0, peak + 1.0
    return base + AUTO_THRESHOLD_FRACTION * amplitude, base + AUTO_REARM_FRACTION * amplitude


def detect_spikes(
    signal: Any,
    *,
    threshold: Any = SPIKE_THRESHOLD_MV,
    rearm: Any = None,
    sampling_period: Any = None,
    t_start: Any = None,
) -> neo.SpikeTrain | list[neo.SpikeTrain]:
    """Spike times from membrane potential, by the simulator's spike rule.

    A spike is an upward crossing of ``threshold`` (+10 mV); after a spike, detection re-arms only once V has
    fallen below ``rearm`` (0 mV), so a noisy or notched downstroke that re-crosses +10 mV is not a second
    spike. Detection starts armed only if the trace starts below ``rearm``: a trace that starts inside a spike,
    or between the two levels, needs to fall below ``rearm`` first. This is the rule of the simulator's
    in-loop detector, so detecting spikes in a recorded simulated trace gives the simulator's spikes. Crossing
    times are interpolated linearly between the two samples that bracket the threshold.

    Elephant's :func:`~elephant.spike_train_generation.threshold_detection` does the first step but has no
    re-arm level, reports the first sample above threshold rather than the crossing time, and counts a trace
    that starts above threshold as a spike; so the rule is implemented here directly (vectorised numpy), and
    the tests check it against Elephant where the two rules coincide.

    Parameters
    ----------
    signal
        A :class:`neo.AnalogSignal` (any voltage unit, one or several channels), or an array of shape
        ``(n_samples,)`` or ``(n_samples, n_channels)`` in mV (or a voltage quantity).
    threshold, rearm
        Detection and re-arm levels, in mV or as voltage quantities; ``rearm <= threshold`` (default +10 mV and
        0 mV; a threshold below 0 mV without ``rearm`` re-arms 10 mV below it). ``threshold="auto"`` derives both from each channel (median and maximum of the trace, see
        ``_auto_levels``), for spikes that peak below 0 mV or traces that rest near 0 mV; ``rearm`` must then be
        left out.
    sampling_period, t_start
        Sampling step and time of the first sample (default 0), in ms or as time quantities; only for
        arrays (an AnalogSignal carries its own).

    Returns
    -------
    neo.SpikeTrain or list of neo.SpikeTrain
        As Elephant's ``threshold_detection``: one train for a single channel (a 1-D array or a one-channel
        AnalogSignal), otherwise a list with one train per channel. Trains are in ms, span the signal's
        time window, and are annotated with ``channel``, ``threshold_mV`` and ``rearm_mV``.
    """
    auto = isinstance(threshold, str)
    if auto:
        if threshold != "auto":
            raise InvalidInputError(f"threshold must be a voltage (mV) or 'auto', got {threshold!r}.")
        if rearm is not None:
            raise InvalidInputError("rearm is derived from the trace with threshold='auto'; leave rearm out.")
    else:
        thr = _voltage_mv(threshold, "threshold")
        low = REARM_THRESHOLD_MV if rearm is None else _voltage_mv(rearm, "rearm")
        if rearm is None and low > thr:  # a threshold below the default re-arm level: keep the spec's 10-mV gap
            low = thr - (SPIKE_THRESHOLD_MV - REARM_THRESHOLD_MV)
        if low > thr:
            raise InvalidInputError(f"rearm ({low} mV) must not be above threshold ({thr} mV).")

    if isinstance(signal, neo.AnalogSignal):
        if sampling_period is not None or t_start is not None:
            raise InvalidInputError(
                "sampling_period and t_start are only for plain arrays; an AnalogSignal carries its own."
            )
        v = _quantity_to(signal, pq.mV, "voltage", "signal")
        dt = _scalar_ms(signal.sampling_period, "signal.sampling_period")
        t0 = _scalar_ms(signal.t_start, "signal.t_start")
        single = v.shape[1] == 1
    else:
        if sampling_period is None:
            raise InvalidInputError(
                "sampling_period is required when signal is a plain array (give it in ms or as a time quantity), "
                "or pass a neo.AnalogSignal."
            )
        if isinstance(signal, pq.Quantity):
            v = _quantity_to(signal, pq.mV, "voltage", "signal")
        else:
            try:
                v = np.asarray(signal, dtype=np.float64)
            except (TypeError, ValueError):
                raise InvalidInputError("signal must be a neo.AnalogSignal or a numeric array of voltages.") from None
        dt = _scalar_ms(sampling_period, "sampling_period")
        t0 = 0.0 if t_start is None else _scalar_ms(t_start, "t_start")
        single = v.ndim == 1
        if v.ndim == 1:
            v = v[:, None]
    if v.ndim != 2:
        raise InvalidInputError(f"signal must have shape (n_samples,) or (n_samples, n_channels), got {v.shape}.")
    if not dt > 0:
        raise InvalidInputError(f"sampling_period must be positive, got {dt} ms.")
    if v.shape[0] < 2:
        raise InvalidInputError(f"signal needs at least 2 samples, got {v.shape[0]}.")
    if not np.all(np.isfinite(v)):
        raise InvalidInputError("signal contains NaN or infinite voltages; clean or crop the trace first.")

    t_stop = t0 + v.shape[0] * dt  # neo's convention: the window ends one step after the last sample
    trains = []
    for c in range(v.shape[1]):
        if auto:
            thr, low = _auto_levels(v[:, c])
        trains.append(to_spiketrain(_crossings(v[:, c], dt, t0, thr, low), t_start=t0, t_stop=t_stop, channel=c,
                                    threshold_mV=thr, rearm_mV=low))  # fmt: skip
    return trains[0] if single else trains
