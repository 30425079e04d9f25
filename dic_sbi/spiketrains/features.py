"""Firing class and burst features of a spike train (after Brandoit et al. 2025).

Rules
-----
- **Class.** *silent* with fewer than 3 spikes; otherwise *spiking* if the coefficient of variation of the
  inter-spike intervals (ISIs) is at most 0.15, else *bursting*. The class depends on nothing else: a bursting
  train too short to yield burst features is still bursting (its burst features are NaN).
- **Bursts.** The spikes of a bursting train are split into groups at every ISI greater than
  ``(max ISI + min ISI) / 2``. The first and the last group are dropped, since the observation window may cut
  them; the remaining groups are the *bursts*. A group of one spike is a burst of one spike (it is kept).
- **Features.** Every frequency is the reciprocal of a mean interval:

  ============================  =====  ===================================================================
  ``spiking_frequency``         Hz     1000 / mean ISI (spiking trains only)
  ``spikes_per_burst``                 mean number of spikes per burst (≥ 1 burst)
  ``burst_duration``            ms     mean time from the first to the last spike of a burst (≥ 1 burst)
  ``intra_burst_frequency``     Hz     1000 / mean of all ISIs inside bursts (≥ 1 burst with ≥ 2 spikes)
  ``burst_period``              ms     mean onset-to-onset interval between consecutive bursts (≥ 2 bursts)
  ``inter_burst_frequency``     Hz     1000 / burst_period (≥ 2 bursts)
  ``duty_cycle``                       burst_duration / burst_period (≥ 2 bursts)
  ============================  =====  ===================================================================

  and, for every class, ``mean_rate`` (spikes per second over the observation window), ``mean_isi``
  (≥ 2 spikes), ``cv``, ``lv`` and ``cv2`` of the ISIs (≥ 3 spikes, i.e. ≥ 2 ISIs). Features of another
  class than the train's (burst features of a tonic train, the spiking frequency of a burster) are NaN.

Published code (Brandoit's feature extractor) differs in three details, none of which affects the class: it
takes the mean of the instantaneous frequencies 1000/ISI for the spiking frequency (never lower than the value
here, and higher by about CV², some 2 % at CV = 0.15); it computes the intra-burst frequency of a burst as
n / duration rather than (n − 1) / duration; and it discards one-spike groups before dropping the first and
last group.

Two paths compute the same numbers: :func:`spike_train_features` for one train, through Elephant
(``isi``, ``cv``, ``lv``, ``cv2``, ``mean_firing_rate``), and :func:`features_from_csr` for many trains at once
(a parallel numba kernel over the simulator's CSR output). The tests hold them equal to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

import elephant.statistics as es
import neo
import numba
import numpy as np
import quantities as pq
from numpy.typing import ArrayLike, NDArray

from .._parallel import run_ranges
from ..errors import InvalidInputError
from .convert import _check_offsets, _quantity_to, _scalar_ms, _times_ms, spike_times_ms

__all__ = [
    "FiringClass",
    "FIRING_CLASSES",
    "CV_THRESHOLD",
    "MIN_SPIKES",
    "SpikeTrainFeatures",
    "FEATURE_NAMES",
    "firing_class",
    "split_bursts",
    "spike_train_features",
    "features_from_csr",
]

Array = NDArray[np.float64]


class FiringClass(StrEnum):
    """Firing class of a spike train; compares equal to its string value (``FiringClass.SILENT == "silent"``)."""

    SILENT = "silent"
    SPIKING = "spiking"
    BURSTING = "bursting"


#: The classes in code order: ``FIRING_CLASSES[code]`` is the class of integer code ``code`` (0, 1, 2).
FIRING_CLASSES: tuple[FiringClass, ...] = (FiringClass.SILENT, FiringClass.SPIKING, FiringClass.BURSTING)
#: A train with CV(ISI) at most this is spiking (tonic), above it bursting (Brandoit, both models).
CV_THRESHOLD = 0.15
#: A train with fewer spikes than this is silent.
MIN_SPIKES = 3


@dataclass(frozen=True)
class SpikeTrainFeatures:
    """Firing class and features of one spike train; NaN where a feature is undefined (module docstring).

    Attributes
    ----------
    firing_class : FiringClass
    n_spikes : int
    mean_rate : float
        Hz, spikes / (t_stop - t_start); NaN when the observation window is unknown.
    mean_isi : float
        ms.
    cv, lv, cv2 : float
        Coefficient of variation, local variation (Shinomoto 2003) and CV2 (Holt 1996) of the ISIs.
    spiking_frequency : float
        Hz, spiking trains only.
    n_bursts : int
        Bursts used for the burst features (groups left after dropping the first and last); 0 unless bursting.
    spikes_per_burst, burst_duration, burst_period, intra_burst_frequency, inter_burst_frequency, duty_cycle
        Burst features (durations in ms, frequencies in Hz), bursting trains only.
    """

    firing_class: FiringClass
    n_spikes: int
    mean_rate: float
    mean_isi: float
    cv: float
    lv: float
    cv2: float
    spiking_frequency: float
    n_bursts: int
    spikes_per_burst: float
    burst_duration: float
    burst_period: float
    intra_burst_frequency: float
    inter_burst_frequency: float
    duty_cycle: float

    def as_dict(self) -> dict[str, str | float]:
        """``{name: value}``: the firing class as a string, every other feature as a float."""
        out: dict[str, str | float] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if f.name == "firing_class" else float(value)
        return out


#: Field names of :class:`SpikeTrainFeatures`, in order.
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(SpikeTrainFeatures))
_INT_FIELDS = ("n_spikes", "n_bursts")
_FLOAT_FIELDS = tuple(n for n in FEATURE_NAMES if n not in _INT_FIELDS and n != "firing_class")


def _check_cv_threshold(cv_threshold: float) -> float:
    try:
        value = float(cv_threshold)
    except (TypeError, ValueError):
        raise InvalidInputError(f"cv_threshold must be a number, got {cv_threshold!r}.") from None
    if not (np.isfinite(value) and value > 0):
        raise InvalidInputError(f"cv_threshold must be a positive finite number, got {cv_threshold!r}.")
    return value


def _classify(n_spikes: int, cv: float, cv_threshold: float) -> FiringClass:
    if n_spikes < MIN_SPIKES:
        return FiringClass.SILENT
    return FiringClass.SPIKING if cv <= cv_threshold else FiringClass.BURSTING


def _groups(times: Array) -> list[Array]:
    """Split at ISIs above the midpoint of the ISI range (Elephant has no burst detector)."""
    if times.size < 2:
        return [times] if times.size else []
    intervals = es.isi(times)
    threshold = 0.5 * (intervals.max() + intervals.min())
    return np.split(times, np.flatnonzero(intervals > threshold) + 1)


def _window(spikes: Any, t_start: Any, t_stop: Any) -> tuple[Any, Any]:
    """The observation window: explicit values win, else a SpikeTrain's own, else [0, unknown)."""
    if isinstance(spikes, neo.SpikeTrain):
        return (spikes.t_start if t_start is None else t_start, spikes.t_stop if t_stop is None else t_stop)
    return (0.0 if t_start is None else t_start, t_stop)


def firing_class(spikes: Any, *, cv_threshold: float = CV_THRESHOLD) -> FiringClass:
    """Firing class of a spike train: silent (< 3 spikes), spiking (CV(ISI) ≤ ``cv_threshold``) or bursting.

    Parameters
    ----------
    spikes
        Anything :func:`~dic_sbi.spiketrains.spike_times_ms` accepts.
    cv_threshold
        CV(ISI) at or below which a train is spiking (default 0.15).
    """
    threshold = _check_cv_threshold(cv_threshold)
    times = spike_times_ms(spikes)
    if times.size < MIN_SPIKES:
        return FiringClass.SILENT
    return _classify(times.size, float(es.cv(es.isi(times))), threshold)


def split_bursts(spikes: Any, *, drop_edges: bool = True) -> list[Array]:
    """Spike times (ms) of each burst, split at ISIs above ``(max ISI + min ISI) / 2``.

    The split is applied whatever the train's class; it is meaningful for bursting trains. With
    ``drop_edges`` (the default, as the features use them) the first and last groups are left out.
    """
    groups = _groups(spike_times_ms(spikes))
    return groups[1:-1] if drop_edges else groups


def spike_train_features(
    spikes: Any, *, t_start: Any = None, t_stop: Any = None, cv_threshold: float = CV_THRESHOLD
) -> SpikeTrainFeatures:
    """Firing class and features of one spike train, computed with Elephant.

    Parameters
    ----------
    spikes
        A :class:`neo.SpikeTrain`, a time quantity array (any unit), or plain times in ms.
    t_start, t_stop
        Observation window (ms or time quantities); default: a SpikeTrain's own window, else ``t_start = 0``
        and no ``t_stop``, in which case ``mean_rate`` is NaN. Every spike must lie inside.
    cv_threshold
        CV(ISI) at or below which a train is spiking.

    Returns
    -------
    SpikeTrainFeatures
    """
    threshold = _check_cv_threshold(cv_threshold)
    start, stop = _window(spikes, t_start, t_stop)
    times = spike_times_ms(spikes, t_start=start, t_stop=stop)
    n = times.size
    nan = float("nan")

    if stop is not None:
        train = neo.SpikeTrain(
            times, units=pq.ms, t_start=_scalar_ms(start, "t_start") * pq.ms, t_stop=_scalar_ms(stop, "t_stop") * pq.ms
        )
        mean_rate = float(es.mean_firing_rate(train).rescale(pq.Hz).magnitude)
    else:
        mean_rate = nan

    intervals = es.isi(times)
    mean_isi = float(np.mean(intervals)) if n >= 2 else nan
    if n >= MIN_SPIKES:
        # Guarded by count, so Elephant never sees fewer than 2 intervals (it would raise or warn).
        cv = float(es.cv(intervals))
        lv = float(es.lv(intervals, with_nan=True))
        cv2 = float(es.cv2(intervals, with_nan=True))
    else:
        cv = lv = cv2 = nan
    klass = _classify(n, cv, threshold)

    spiking_frequency = 1000.0 / mean_isi if klass is FiringClass.SPIKING else nan
    n_bursts = 0
    spikes_per_burst = burst_duration = burst_period = nan
    intra_burst_frequency = inter_burst_frequency = duty_cycle = nan
    if klass is FiringClass.BURSTING:
        bursts = _groups(times)[1:-1]
        n_bursts = len(bursts)
        if n_bursts >= 1:
            spikes_per_burst = float(np.mean([b.size for b in bursts]))
            burst_duration = float(np.mean([b[-1] - b[0] for b in bursts]))
            intra = np.concatenate([es.isi(b) for b in bursts])
            if intra.size:
                intra_burst_frequency = 1000.0 / float(np.mean(intra))
        if n_bursts >= 2:
            burst_period = float(np.mean(es.isi(np.array([b[0] for b in bursts]))))
            inter_burst_frequency = 1000.0 / burst_period
            duty_cycle = burst_duration / burst_period

    return SpikeTrainFeatures(
        firing_class=klass,
        n_spikes=int(n),
        mean_rate=mean_rate,
        mean_isi=mean_isi,
        cv=cv,
        lv=lv,
        cv2=cv2,
        spiking_frequency=spiking_frequency,
        n_bursts=n_bursts,
        spikes_per_burst=spikes_per_burst,
        burst_duration=burst_duration,
        burst_period=burst_period,
        intra_burst_frequency=intra_burst_frequency,
        inter_burst_frequency=inter_burst_frequency,
        duty_cycle=duty_cycle,
    )


# --------------------------------------------------------------------------------------------------------------
# Fast path: many trains in CSR layout
# --------------------------------------------------------------------------------------------------------------

# Column of each float feature in the kernel's output matrix.
_F = {name: j for j, name in enumerate(_FLOAT_FIELDS)}
_RATE, _MEAN_ISI, _CV, _LV, _CV2 = _F["mean_rate"], _F["mean_isi"], _F["cv"], _F["lv"], _F["cv2"]
_SPIKING_F, _SPB, _DUR = _F["spiking_frequency"], _F["spikes_per_burst"], _F["burst_duration"]
_PERIOD, _INTRA_F, _INTER_F, _DUTY = (
    _F["burst_period"],
    _F["intra_burst_frequency"],
    _F["inter_burst_frequency"],
    _F["duty_cycle"],
)

# Error codes of the validation kernel.
_OK, _NOT_FINITE, _NEGATIVE, _NOT_INCREASING, _BEFORE_START, _AFTER_STOP = range(6)


@numba.njit(cache=True, nogil=True)
def _check_csr(c0, c1, times, offsets, t_start, t_stop, code, where):  # pragma: no cover - compiled
    for c in range(c0, c1):
        code[c] = _OK
        where[c] = -1
        for i in range(offsets[c], offsets[c + 1]):
            x = times[i]
            if not np.isfinite(x):
                code[c] = _NOT_FINITE
            elif x < 0.0:
                code[c] = _NEGATIVE
            elif i > offsets[c] and not x > times[i - 1]:
                code[c] = _NOT_INCREASING
            elif x < t_start[c]:
                code[c] = _BEFORE_START
            elif x > t_stop[c]:
                code[c] = _AFTER_STOP
            if code[c] != _OK:
                where[c] = i
                break


@numba.njit(cache=True, nogil=True)
def _csr_kernel(c0, c1, times, offsets, t_start, t_stop, cv_threshold, fout, iout):  # pragma: no cover - compiled
    # Mirrors spike_train_features; sums run in the same order where that is cheap, so the two paths agree to
    # rounding. iout columns: n_spikes, class code, n_bursts. Trains [c0, c1), run by _parallel.run_ranges.
    for c in range(c0, c1):
        a = offsets[c]
        b = offsets[c + 1]
        n = b - a
        for j in range(fout.shape[1]):
            fout[c, j] = np.nan
        iout[c, 0] = n
        iout[c, 1] = 0
        iout[c, 2] = 0
        fout[c, _RATE] = (n / (t_stop[c] - t_start[c])) * 1000.0
        if n < 2:
            continue
        total = 0.0
        for i in range(a, b - 1):
            total += times[i + 1] - times[i]
        m = total / (n - 1)
        fout[c, _MEAN_ISI] = m
        if n < MIN_SPIKES:
            continue

        # CV (population std / mean), LV and CV2 of the ISIs, as Elephant defines them.
        ss = 0.0
        lv = 0.0
        cv2 = 0.0
        dmin = np.inf
        dmax = -np.inf
        for i in range(a, b - 1):
            d = times[i + 1] - times[i]
            ss += (d - m) * (d - m)
            dmin = min(dmin, d)
            dmax = max(dmax, d)
            if i < b - 2:
                d_next = times[i + 2] - times[i + 1]
                r = (d_next - d) / (d + d_next)
                lv += r * r
                cv2 += abs(r)
        cv = np.sqrt(ss / (n - 1)) / m
        fout[c, _CV] = cv
        fout[c, _LV] = 3.0 * lv / (n - 2)
        fout[c, _CV2] = 2.0 * cv2 / (n - 2)
        if cv <= cv_threshold:
            iout[c, 1] = 1
            fout[c, _SPIKING_F] = 1000.0 / m
            continue

        # Bursting: groups split at ISIs above the midpoint; keep groups 1 .. n_groups - 2.
        iout[c, 1] = 2
        split = 0.5 * (dmax + dmin)
        n_groups = 1
        for i in range(a, b - 1):
            if times[i + 1] - times[i] > split:
                n_groups += 1
        g = 0
        first = a  # first spike of the current group
        k = 0
        spikes = 0
        duration = 0.0
        intra_sum = 0.0
        intra_n = 0
        period_sum = 0.0
        onset_prev = 0.0
        for i in range(a, b - 1):
            if times[i + 1] - times[i] > split:
                # The group [first, i] closes here.
                if 1 <= g <= n_groups - 2:
                    k += 1
                    spikes += i - first + 1
                    duration += times[i] - times[first]
                    for j in range(first, i):
                        intra_sum += times[j + 1] - times[j]
                    intra_n += i - first
                    if k >= 2:
                        period_sum += times[first] - onset_prev
                    onset_prev = times[first]
                g += 1
                first = i + 1
        iout[c, 2] = k
        if k >= 1:
            fout[c, _SPB] = spikes / k
            fout[c, _DUR] = duration / k
            if intra_n > 0:
                fout[c, _INTRA_F] = 1000.0 / (intra_sum / intra_n)
        if k >= 2:
            period = period_sum / (k - 1)
            fout[c, _PERIOD] = period
            fout[c, _INTER_F] = 1000.0 / period
            fout[c, _DUTY] = (duration / k) / period


def _window_array(value: Any, n: int, name: str) -> Array:
    if isinstance(value, pq.Quantity):
        arr = _quantity_to(value, pq.ms, "time", name)
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError(f"{name} must be a number or an array of n_trains numbers in ms.") from None
    if arr.ndim > 1 or (arr.ndim == 1 and arr.size != n):
        raise InvalidInputError(f"{name} must be a scalar or have shape ({n},) (one per train), got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name} must be finite.")
    # a writable copy: a read-only view (broadcast scalar) is another array type to numba, compiled again
    return np.array(np.broadcast_to(arr, (n,)), dtype=np.float64)


_CSR_MESSAGES = {
    _NOT_FINITE: "is not finite",
    _NEGATIVE: "is negative",
    _NOT_INCREASING: "does not come after the previous spike of the same train (times must be strictly increasing)",
    _BEFORE_START: "is before the train's t_start",
    _AFTER_STOP: "is after the train's t_stop",
}


def features_from_csr(
    times: ArrayLike, offsets: ArrayLike, t_start: Any, t_stop: Any, *, cv_threshold: float = CV_THRESHOLD
) -> dict[str, np.ndarray]:
    """Firing class and features of many spike trains at once (parallel, compiled).

    The numbers are those of :func:`spike_train_features` (to rounding), for ``N`` trains given in the CSR
    layout the simulator returns: train ``i`` is ``times[offsets[i]:offsets[i + 1]]``.

    Parameters
    ----------
    times
        Flat ``float64`` spike times in ms (or a time quantity array).
    offsets
        Integers of length ``N + 1``, from 0 to ``len(times)``, non-decreasing.
    t_start, t_stop
        Observation window in ms (or time quantities): scalars shared by all trains, or arrays of shape ``(N,)``.
    cv_threshold
        CV(ISI) at or below which a train is spiking.

    Returns
    -------
    dict of str to numpy.ndarray
        One array of length ``N`` per :data:`FEATURE_NAMES` entry: ``firing_class`` holds the class strings
        (``"silent"``, ``"spiking"``, ``"bursting"``), ``n_spikes`` and ``n_bursts`` are ``int64``, the rest
        ``float64``; plus ``firing_class_code`` (``int8``, index into :data:`FIRING_CLASSES`) for numeric use.
    """
    threshold = _check_cv_threshold(cv_threshold)
    flat = _times_ms(times, "times", copy=False)
    if flat.ndim != 1:
        raise InvalidInputError(f"times must be one-dimensional (all trains concatenated), got shape {flat.shape}.")
    flat = np.ascontiguousarray(flat, dtype=np.float64)
    off = np.ascontiguousarray(_check_offsets(offsets, flat.size))
    n = off.size - 1
    start = _window_array(t_start, n, "t_start")
    stop = _window_array(t_stop, n, "t_stop")
    if np.any(stop <= start):
        i = int(np.flatnonzero(stop <= start)[0])
        raise InvalidInputError(f"t_stop must be greater than t_start; train {i} has [{start[i]}, {stop[i]}] ms.")

    code = np.empty(n, dtype=np.int8)
    where = np.empty(n, dtype=np.int64)
    run_ranges(_check_csr, n, flat, off, start, stop, code, where)
    if np.any(code != _OK):
        c = int(np.flatnonzero(code != _OK)[0])
        i = int(where[c])
        raise InvalidInputError(
            f"times[{i}] = {flat[i]} ms (spike {i - off[c]} of train {c}) {_CSR_MESSAGES[int(code[c])]}."
        )

    fout = np.empty((n, len(_FLOAT_FIELDS)), dtype=np.float64)
    iout = np.empty((n, 3), dtype=np.int64)
    run_ranges(_csr_kernel, n, flat, off, start, stop, threshold, fout, iout)

    codes = iout[:, 1].astype(np.int8)
    out: dict[str, np.ndarray] = {}
    for name in FEATURE_NAMES:
        if name == "firing_class":
            out[name] = np.array([str(k) for k in FIRING_CLASSES])[codes]
            out["firing_class_code"] = codes
        elif name == "n_spikes":
            out[name] = iout[:, 0].copy()
        elif name == "n_bursts":
            out[name] = iout[:, 2].copy()
        else:
            out[name] = fout[:, _F[name]].copy()
    return out
