"""Spike trains: neo / Elephant / quantities at the boundary, plain float64 milliseconds inside.

>>> from dic_sbi.spiketrains import to_spiketrain, spike_train_features
>>> train = to_spiketrain([10.0, 20.0, 30.0, 40.0], t_stop=50.0)
>>> features = spike_train_features(train)
>>> str(features.firing_class), features.spiking_frequency, features.mean_rate
('spiking', 100.0, 80.0)
"""

from __future__ import annotations

from .convert import (
    MIN_SPIKE_AMPLITUDE_MV,
    REARM_THRESHOLD_MV,
    SPIKE_THRESHOLD_MV,
    csr_from_spiketrains,
    detect_spikes,
    spike_times_ms,
    spiketrains_from_csr,
    to_spiketrain,
)
from .fidelity import FIDELITY_TOLERANCES, fidelity_checks, fires_like
from .jitter import check_jitter, draw_jitter_sd, jitter_spike_times
from .features import (
    CV_THRESHOLD,
    FEATURE_NAMES,
    FIRING_CLASSES,
    MIN_SPIKES,
    FiringClass,
    SpikeTrainFeatures,
    features_from_csr,
    firing_class,
    spike_train_features,
    split_bursts,
)

__all__ = [
    "to_spiketrain",
    "spike_times_ms",
    "spiketrains_from_csr",
    "csr_from_spiketrains",
    "detect_spikes",
    "SPIKE_THRESHOLD_MV",
    "REARM_THRESHOLD_MV",
    "MIN_SPIKE_AMPLITUDE_MV",
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
    "FIDELITY_TOLERANCES",
    "fires_like",
    "fidelity_checks",
    "jitter_spike_times",
    "check_jitter",
    "draw_jitter_sd",
]
