"""Spike trains → fixed-length, finite vectors ``x`` for sbi.

The features come from the spike-train layer (:func:`dic_sbi.spiketrains.features_from_csr`, the compiled
mirror of its Elephant path: rate, ISI mean, CV, LV, CV2, firing class and burst features). Many are undefined
for some trains (NaN: the CV of a silent cell, the burst period of a tonic one). sbi's NPE silently drops rows
with NaN and NLE/NRE refuse them, so a silent cell would either vanish from training - biasing the posterior
away from parameters that silence the cell - or stop it. Here nothing is dropped:

- **Encoding.** Positive quantities spanning decades are log10-transformed (rate in Hz, durations in ms);
  an undefined value is replaced by the fixed :data:`SENTINEL` (-1, below every defined encoded value), and
  indicator columns (one-hot firing class, and "defined" flags for the ISI and burst groups) say which values
  are real. Every row is finite, so the same ``x`` trains NPE, NLE and NRE. (For NLE the indicators and
  sentinels are point masses that a continuous flow can only approximate; sbi's MNLE models them exactly.)
- **Redundancy.** ``spiking_frequency`` (= 1000 / mean ISI for tonic cells) and ``inter_burst_frequency``
  (= 1000 / burst period) add nothing once the class and the ISI mean / period are known, so they are left out.

``x`` of the ``"intervals"`` output appends, after the summary (and any known conditions), the interval
statistics of :mod:`dic_sbi.spiketrains.intervals` (drift, variability, burst sequence), encoded so that a fixed
standardisation sees them (:data:`INTERVAL_NAMES`): the relative drifts, ~1e-4 in noise-free cells, through
``asinh(v / 1e-4)``; the CV and the quantile spread on a log10 scale down to 1e-7 (the CV of a periodic cell is
~1e-4, invisible under a spread floor of 0.1 on the raw value); undefined values 0, with indicator columns.

``x`` of the ``"isi"`` output appends a variable-length sequence, padded to ``max_isis``: the count of ISIs
kept, then log10 of the first ``max_isis`` ISIs (ms) of the window, zero-padded; :class:`~dic_sbi.sbi.ISIEmbedding`
reads it.

**Known conditions.** A posterior may also take experimental conditions that the experimenter knows and the
spike train does not reveal (:data:`CONDITION_NAMES`: the σ of the injected noisy current). Their columns go
right after the summary (:func:`with_conditions`), before any ISI sequence, so that the summary-plus-conditions
block is standardised together and :class:`~dic_sbi.sbi.ISIEmbedding` (``n_summary`` = summary + conditions)
still finds its sequence at the end.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from ..errors import InvalidInputError

__all__ = [
    "SUMMARY_NAMES",
    "SENTINEL",
    "RATE_FLOOR_HZ",
    "encode_summary",
    "encode_isis",
    "feature_names",
    "defined_mask",
    "undefined_rule",
    "summary_statistics",
    "CONDITION_NAMES",
    "with_conditions",
    "INTERVAL_NAMES",
    "encode_intervals",
]

Array = NDArray[np.float64]

#: Value of an undefined feature in ``x`` (every defined encoded value is larger).
SENTINEL = -1.0
#: Rate floor (Hz) before the log: a cell with no spike in the window gets log10(0.1) = -1.
RATE_FLOOR_HZ = 0.1

#: Column names of the fixed-length summary, in order.
SUMMARY_NAMES: tuple[str, ...] = (
    "log10_rate_hz",
    "log10_mean_isi_ms",
    "cv",
    "lv",
    "cv2",
    "log10_spikes_per_burst",
    "log10_1p_burst_duration_ms",
    "log10_burst_period_ms",
    "log10_intra_burst_frequency_hz",
    "duty_cycle",
    "is_silent",
    "is_spiking",
    "is_bursting",
    "has_isi",
    "has_bursts",
    "has_intra_burst",
    "has_burst_period",
)


#: Column names of the encoded interval statistics (``output="intervals"``), in order.
INTERVAL_NAMES: tuple[str, ...] = (
    "asinh_drift_1e-4",
    "asinh_first_isi_1e-4",
    "asinh_last_isi_1e-4",
    "log10_cv_floor",
    "serial_corr_1",
    "serial_corr_2",
    "log10_spread_90_10_floor",
    "asinh_skewness",
    "log10_intra_first_last",
    "log10_intra_max_min",
    "intra_longest_position",
    "log10_interburst_interval_ms",
    "log10_1p_spikes_per_burst_std",
    "log10_burst_period_cv_floor",
    "has_intervals",
    "has_burst_shape",
    "has_burst_period_cv",
)
#: Scale of the relative drifts (noise-free cells drift by ~1e-4 of their mean interval over the window).
DRIFT_SCALE = 1e-4
#: Floor of the CV and spread before the log (below any cell's, above rounding of the spike times).
VARIABILITY_FLOOR = 1e-7


def encode_intervals(stats: Mapping[str, np.ndarray]) -> Array:
    """The ``(N, 17)`` finite encoding of :func:`~dic_sbi.spiketrains.interval_statistics` (:data:`INTERVAL_NAMES`)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = [
            np.arcsinh(stats["drift"] / DRIFT_SCALE),
            np.arcsinh(stats["first_isi"] / DRIFT_SCALE),
            np.arcsinh(stats["last_isi"] / DRIFT_SCALE),
            np.log10(np.maximum(stats["cv"], VARIABILITY_FLOOR)),
            stats["serial_corr_1"],
            stats["serial_corr_2"],
            np.log10(np.maximum(stats["spread_90_10"], VARIABILITY_FLOOR)),
            np.arcsinh(stats["skewness"]),
            stats["intra_first_last"],
            stats["intra_max_min"],
            stats["intra_longest_position"],
            np.log10(stats["interburst_interval"]),
            np.log10(1.0 + stats["spikes_per_burst_std"]),
            np.log10(np.maximum(stats["burst_period_cv"], VARIABILITY_FLOOR)),
        ]
    values = np.column_stack(cols)
    flags = np.column_stack([np.isfinite(stats["cv"]), np.isfinite(stats["intra_first_last"]),
                             np.isfinite(stats["burst_period_cv"])]).astype(np.float64)  # fmt: skip
    values = np.where(np.isfinite(values), values, 0.0)
    return np.concatenate([values, flags], axis=1)


def _log10(v: Array, shift: float = 0.0) -> Array:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.log10(v + shift)


def encode_summary(features: Mapping[str, np.ndarray]) -> Array:
    """The ``(N, 17)`` finite summary of trains from their features (``features_from_csr`` output).

    Columns: :data:`SUMMARY_NAMES`. Undefined values are :data:`SENTINEL`; the last seven columns are 0/1
    indicators (class one-hot; ``has_isi``: ≥ 2 spikes; ``has_bursts``: ≥ 1 full burst; ``has_intra_burst``:
    a full burst of ≥ 2 spikes; ``has_burst_period``: ≥ 2 full bursts).
    """
    try:
        code = np.asarray(features["firing_class_code"], dtype=np.int64)
        n_spikes = np.asarray(features["n_spikes"])
        n_bursts = np.asarray(features["n_bursts"])
    except KeyError as err:
        raise InvalidInputError(f"features: missing {err}; pass the output of features_from_csr") from None
    values = np.column_stack(
        [
            np.log10(np.maximum(np.asarray(features["mean_rate"], dtype=float), RATE_FLOOR_HZ)),
            _log10(features["mean_isi"]),
            features["cv"],
            features["lv"],
            features["cv2"],
            _log10(features["spikes_per_burst"]),
            _log10(features["burst_duration"], 1.0),  # a burst of one spike lasts 0 ms
            _log10(features["burst_period"]),
            _log10(features["intra_burst_frequency"]),
            features["duty_cycle"],
        ]
    ).astype(np.float64)
    values = np.where(np.isfinite(values), values, SENTINEL)
    flags = np.column_stack(
        [
            code == 0,
            code == 1,
            code == 2,
            n_spikes >= 2,
            n_bursts >= 1,
            np.isfinite(np.asarray(features["intra_burst_frequency"], dtype=float)),
            n_bursts >= 2,
        ]
    ).astype(np.float64)
    return np.concatenate([values, flags], axis=1)


def encode_isis(times: Array, offsets: NDArray[np.int64], max_isis: int) -> Array:
    """``(N, 1 + max_isis)``: the number of ISIs kept, then log10 of the first ``max_isis`` ISIs (ms), 0-padded."""
    N = offsets.size - 1
    out = np.zeros((N, 1 + max_isis))
    counts = np.clip(np.diff(offsets) - 1, 0, max_isis)
    out[:, 0] = counts
    isi = np.diff(times)
    for i in np.flatnonzero(counts):  # ragged rows; N is a simulation batch, so the loop is short
        a = offsets[i]
        out[i, 1 : 1 + counts[i]] = np.log10(isi[a : a + counts[i]])
    return out


#: Known experimental conditions a posterior can take as inputs, in column order.
CONDITION_NAMES: tuple[str, ...] = ("noise_std",)


def _check_conditions(conditions: Sequence[str]) -> tuple[str, ...]:
    conditions = tuple(conditions)
    unknown = [c for c in conditions if c not in CONDITION_NAMES]
    if unknown or len(set(conditions)) != len(conditions):
        raise InvalidInputError(f"conditions: expected distinct names from {CONDITION_NAMES}, got {conditions}")
    return conditions


def feature_names(output: str = "summary", max_isis: int = 0, conditions: Sequence[str] = ()) -> tuple[str, ...]:
    """Column names of ``x`` for an output kind (``"summary"`` or ``"isi"``), with ``conditions`` after the summary."""
    cond = _check_conditions(conditions)
    if output == "summary":
        return SUMMARY_NAMES + cond
    if output == "isi":
        return SUMMARY_NAMES + cond + ("n_isis",) + tuple(f"log10_isi_{k}" for k in range(max_isis))
    if output == "intervals":
        return SUMMARY_NAMES + cond + INTERVAL_NAMES
    raise InvalidInputError(f"output: expected 'summary', 'intervals' or 'isi', got {output!r}")


#: The indicator column that says where each encoded interval statistic is defined (0 where it is not).
_DEFINED_BY = {
    **{n: "has_intervals" for n in INTERVAL_NAMES[:8]},
    **{n: "has_burst_shape" for n in INTERVAL_NAMES[8:11]},
    "log10_interburst_interval_ms": "has_bursts",
    "log10_1p_spikes_per_burst_std": "has_bursts",
    "log10_burst_period_cv_floor": "has_burst_period_cv",
}


def undefined_rule(names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each column of ``x`` (columns ``names``) is undefined: ``x[:, index[j]] == value[j]`` (``index[j] = -1``:
    always defined).

    A summary value is undefined where it is the :data:`SENTINEL` (a silent train's floor rate included), an
    interval statistic where its indicator column is 0. Indicator columns, conditions and any other column are
    always defined (an indicator's mean over all rows is the share of the group it marks).
    """
    names = tuple(names)
    col = {n: j for j, n in enumerate(names)}
    index, value = [-1] * len(names), [0.0] * len(names)
    for j, n in enumerate(names):
        if n.startswith(("is_", "has_")):
            continue
        if n in SUMMARY_NAMES:
            index[j], value[j] = j, SENTINEL
        elif n in _DEFINED_BY and _DEFINED_BY[n] in col:
            index[j], value[j] = col[_DEFINED_BY[n]], 0.0
    return torch.tensor(index, dtype=torch.long), torch.tensor(value, dtype=torch.float32)


def defined_mask(x: Any, names: Sequence[str]) -> torch.Tensor:
    """``(N, k)`` booleans: where each value column of ``x`` (columns ``names``) holds a defined value
    (:func:`undefined_rule`)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    names = tuple(names)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise InvalidInputError(f"x: expected (N, {len(names)}) for columns {names[:3]}..., got {tuple(x.shape)}")
    index, value = undefined_rule(names)
    return ~((x[:, index.clamp_min(0)] == value) & (index >= 0))


def with_conditions(x: Any, values: Sequence[float] | NDArray[np.float64]) -> torch.Tensor:
    """``x`` (``(N, k)`` without conditions) with condition columns inserted after the summary (float32).

    ``values`` is one value per condition (the same for every row) or an ``(N, c)`` array (one per row).
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[1] < len(SUMMARY_NAMES):
        raise InvalidInputError(f"x: expected (N, k >= {len(SUMMARY_NAMES)}) features, got {tuple(x.shape)}")
    v = torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32)
    if v.ndim == 1:
        v = v[None].expand(x.shape[0], -1)
    if v.ndim != 2 or v.shape[0] != x.shape[0]:
        raise InvalidInputError(f"values: expected (c,) or ({x.shape[0]}, c) condition values, got {tuple(v.shape)}")
    n = len(SUMMARY_NAMES)
    return torch.cat([x[:, :n], v, x[:, n:]], dim=1)


def encode(times: Array, offsets: NDArray[np.int64], t_start: Any, t_stop: Any, output: str, max_isis: int) -> Array:
    """``x`` (float64) of CSR spike trains: the summary, with the ISI sequence appended for ``"isi"``."""
    from ..spiketrains import features_from_csr

    summary = encode_summary(features_from_csr(times, offsets, t_start, t_stop))
    if output == "summary":
        return summary
    if output == "intervals":
        from ..spiketrains.intervals import interval_statistics

        return np.concatenate([summary, encode_intervals(interval_statistics(times, offsets))], axis=1)
    return np.concatenate([summary, encode_isis(times, offsets, max_isis)], axis=1)


def summary_statistics(
    spikes: Any,
    *,
    t_start: Any = None,
    t_stop: Any = None,
    output: str = "summary",
    max_isis: int = 128,
) -> torch.Tensor:
    """``x`` of observed or simulated spike trains, exactly as the simulators compute it (float32 tensor).

    Parameters
    ----------
    spikes
        A :class:`~dic_sbi.SimulationResult`; a :class:`neo.SpikeTrain`; a sequence of spike trains (neo
        SpikeTrains, time quantities, or arrays of times in ms); or one array of spike times in ms.
    t_start, t_stop
        Observation window (ms or quantities), scalars or one per train; default: each SpikeTrain's own window
        (required for plain arrays). Use the window length of the training protocol: the rate and the ISI
        sequence depend on it.
    output, max_isis
        As in the simulators: ``"summary"`` (17 columns), ``"intervals"`` (summary and the interval statistics)
        or ``"isi"`` (summary, count, ``max_isis`` log-ISIs). A posterior's own choice:
        :meth:`DICPosterior.observe <dic_sbi.sbi.DICPosterior.observe>`.

    Returns
    -------
    torch.Tensor
        ``(N, k)`` float32, one row per train.
    """
    import neo

    from ..core.simulator import SimulationResult
    from ..spiketrains import csr_from_spiketrains

    feature_names(output, max_isis)
    if isinstance(spikes, SimulationResult):
        times, offsets = spikes.times, spikes.offsets
        t_start = spikes.t_start if t_start is None else t_start
        t_stop = spikes.t_stop if t_stop is None else t_stop
    else:
        if isinstance(spikes, neo.SpikeTrain) or _is_flat_times(spikes):
            spikes = [spikes]
        if not isinstance(spikes, Sequence) or len(spikes) == 0:
            raise InvalidInputError("spikes: expected a SimulationResult, a spike train or a non-empty sequence of them")
        times, offsets = csr_from_spiketrains(spikes)
        if t_start is None:
            t_start = _window_of(spikes, "t_start")
        if t_stop is None:
            t_stop = _window_of(spikes, "t_stop")
    return torch.as_tensor(encode(times, offsets, t_start, t_stop, output, max_isis), dtype=torch.float32)


def _is_flat_times(spikes: Any) -> bool:
    import quantities as pq

    if isinstance(spikes, (np.ndarray, pq.Quantity)):
        return np.ndim(spikes) == 1
    if isinstance(spikes, (list, tuple)):
        return len(spikes) > 0 and all(np.ndim(s) == 0 for s in spikes)
    return False


def _window_of(trains: Sequence[Any], attr: str) -> Array:
    import neo
    import quantities as pq

    if not all(isinstance(t, neo.SpikeTrain) for t in trains):
        raise InvalidInputError(f"{attr}: required for spike times given as plain arrays (ms)")
    return np.array([float(getattr(t, attr).rescale(pq.ms).magnitude) for t in trains])
