"""Spike-train layer: conversion, detection from voltage, firing class and burst features."""

from __future__ import annotations

import math
import warnings

import elephant.spike_train_generation as esg
import elephant.statistics as es
import neo
import numpy as np
import pytest
import quantities as pq

from dic_sbi.errors import DicSbiError, InvalidInputError
from dic_sbi.spiketrains import (
    CV_THRESHOLD,
    FEATURE_NAMES,
    FIRING_CLASSES,
    FiringClass,
    SpikeTrainFeatures,
    csr_from_spiketrains,
    detect_spikes,
    features_from_csr,
    firing_class,
    spike_times_ms,
    spike_train_features,
    spiketrains_from_csr,
    split_bursts,
    to_spiketrain,
)

BURST_FIELDS = (
    "spikes_per_burst",
    "burst_duration",
    "burst_period",
    "intra_burst_frequency",
    "inter_burst_frequency",
    "duty_cycle",
)


def burst_train(n_cycles: int, spikes_per_burst: int, intra_isi: float, period: float, start: float = 5.0):
    """``n_cycles`` identical bursts, onset to onset ``period`` ms apart."""
    one = np.arange(spikes_per_burst) * intra_isi
    return np.concatenate([start + k * period + one for k in range(n_cycles)])


# ------------------------------------------------------------------------------------------------------------
# Conversion and validation
# ------------------------------------------------------------------------------------------------------------


class TestConversion:
    def test_to_spiketrain_is_ms_with_window_and_annotations(self):
        st = to_spiketrain([1.0, 2.5, 7.0], t_start=0.5, t_stop=10.0, name="cell", cell=3)
        assert isinstance(st, neo.SpikeTrain)
        assert st.units == pq.ms
        np.testing.assert_array_equal(st.magnitude, [1.0, 2.5, 7.0])
        assert float(st.t_start.rescale(pq.ms)) == 0.5
        assert float(st.t_stop.rescale(pq.ms)) == 10.0
        assert st.name == "cell"
        assert st.annotations["cell"] == 3

    def test_to_spiketrain_converts_quantities(self):
        st = to_spiketrain([0.001, 0.002] * pq.s, t_stop=0.01 * pq.s)
        np.testing.assert_allclose(st.magnitude, [1.0, 2.0])
        assert float(st.t_stop.rescale(pq.ms)) == pytest.approx(10.0)

    def test_empty_train(self):
        st = to_spiketrain([], t_stop=100.0)
        assert len(st) == 0
        assert spike_times_ms(st).shape == (0,)

    @pytest.mark.parametrize(
        "spikes, expected",
        [
            (neo.SpikeTrain([0.5, 1.25] * pq.s, t_stop=2 * pq.s), [500.0, 1250.0]),
            (np.array([0.5, 1.25]) * pq.s, [500.0, 1250.0]),
            ([250.0, 500.0] * pq.us, [0.25, 0.5]),
            ([1.0, 2.0], [1.0, 2.0]),
            (np.array([3, 4]), [3.0, 4.0]),
            ((), []),
        ],
    )
    def test_spike_times_ms_accepts_every_form(self, spikes, expected):
        times = spike_times_ms(spikes)
        assert times.dtype == np.float64
        np.testing.assert_allclose(times, expected)

    def test_spike_times_ms_returns_a_copy(self):
        src = np.array([1.0, 2.0])
        out = spike_times_ms(src)
        out[0] = 99.0
        assert src[0] == 1.0

    @pytest.mark.parametrize(
        "spikes, fragment",
        [
            ([1.0, np.nan], "finite"),
            ([1.0, np.inf], "finite"),
            ([3.0, 1.0, 2.0], "strictly increasing"),
            ([1.0, 1.0], "strictly increasing"),
            ([-1.0, 2.0], "non-negative"),
            ([[1.0, 2.0]], "one-dimensional"),
            ([1.0, 2.0] * pq.mV, "not a time"),
            (np.array([1.0]) * pq.dimensionless, "not a time"),
            ("1, 2", "spike times"),
            (["a", "b"], "spike times"),
            (None, "spike times"),
        ],
    )
    def test_bad_spike_times(self, spikes, fragment):
        with pytest.raises(InvalidInputError, match=fragment) as info:
            spike_times_ms(spikes)
        assert "spikes" in str(info.value)

    def test_errors_are_the_package_family(self):
        with pytest.raises(DicSbiError):
            spike_times_ms([2.0, 1.0])
        with pytest.raises(ValueError):
            spike_times_ms([2.0, 1.0])

    def test_window_checks(self):
        with pytest.raises(InvalidInputError, match="after t_stop"):
            spike_times_ms([1.0, 20.0], t_stop=10.0)
        with pytest.raises(InvalidInputError, match="before t_start"):
            spike_times_ms([1.0, 2.0], t_start=1.5)
        with pytest.raises(InvalidInputError, match="times_ms.*after t_stop"):
            to_spiketrain([1.0, 20.0], t_stop=10.0)
        with pytest.raises(InvalidInputError, match="t_stop .* greater than t_start"):
            to_spiketrain([], t_start=5.0, t_stop=5.0)
        with pytest.raises(InvalidInputError, match="t_stop has units"):
            to_spiketrain([1.0], t_stop=10 * pq.mV)
        with pytest.raises(InvalidInputError, match="t_stop must be finite"):
            to_spiketrain([1.0], t_stop=np.nan)
        with pytest.raises(TypeError):
            to_spiketrain([1.0])  # t_stop is required

    def test_csr_round_trip(self):
        trains = [[1.0, 2.0], [], [0.5] * pq.s, np.array([3.0, 4.0, 9.0])]
        times, offsets = csr_from_spiketrains(trains)
        np.testing.assert_array_equal(offsets, [0, 2, 2, 3, 6])
        np.testing.assert_allclose(times, [1.0, 2.0, 500.0, 3.0, 4.0, 9.0])
        back = spiketrains_from_csr(times, offsets, t_start=0.0, t_stop=1000.0)
        assert [len(st) for st in back] == [2, 0, 1, 3]
        assert [st.annotations["cell"] for st in back] == [0, 1, 2, 3]
        np.testing.assert_allclose(back[2].magnitude, [500.0])

    @pytest.mark.parametrize(
        "offsets, fragment",
        [([0, 2], "end at len"), ([1, 3], "start at 0"), ([0, 3, 2, 3], "non-decreasing"), ([[0, 3]], "1-D"),
         ([0.0, 1.5, 3.0], "integers")],
    )
    def test_bad_offsets(self, offsets, fragment):
        with pytest.raises(InvalidInputError, match=fragment):
            spiketrains_from_csr([1.0, 2.0, 3.0], offsets, t_start=0.0, t_stop=10.0)


# ------------------------------------------------------------------------------------------------------------
# Detection from membrane potential
# ------------------------------------------------------------------------------------------------------------


def piecewise_linear(knots_ms, knots_mv, dt=0.1):
    """A trace sampled every ``dt`` whose knots lie on samples, so it is linear between samples."""
    t = np.arange(0.0, knots_ms[-1] + dt / 2, dt)
    return t, np.interp(t, knots_ms, knots_mv)


class TestDetection:
    def test_interpolated_crossing_times(self):
        # Up from -60 mV at 10 ms to +30 mV at 10.9 ms: +10 mV is crossed at 10 + 0.9 * 70/90 ms exactly.
        t, v = piecewise_linear([0, 10, 10.9, 12, 30, 31, 40], [-60, -60, 30, -60, -60, 40, -60])
        st = detect_spikes(v, sampling_period=0.1)
        assert isinstance(st, neo.SpikeTrain)
        assert st.units == pq.ms
        np.testing.assert_allclose(st.magnitude, [10 + 0.9 * 70 / 90, 30 + 1.0 * 70 / 100], atol=1e-9)
        assert float(st.t_stop) == pytest.approx(len(t) * 0.1)

    def test_rearm_rule(self):
        # Spike 1 at ~10 ms falls only to +5 mV, re-crosses +10 mV (not a spike: never below 0 mV), then falls
        # to -60 mV; spike 2 at ~30 ms. A bump to +8 mV is never a spike. A dip to -1 mV re-arms detection.
        t, v = piecewise_linear(
            [0, 10, 11, 12, 13, 14, 30, 31, 32, 33, 34, 40, 45, 50],
            [-60, -60, 30, 5, 20, -60, -60, 30, -1, 20, -60, 8, -60, -60],
        )
        times = detect_spikes(v, sampling_period=0.1).magnitude
        np.testing.assert_allclose(times, [10 + 70 / 90, 30 + 70 / 90, 32 + 11 / 21], atol=1e-9)

    def test_without_rearm_level_every_upcrossing_counts(self):
        t, v = piecewise_linear([0, 10, 11, 12, 13, 14, 20], [-60, -60, 30, 5, 20, -60, -60])
        assert len(detect_spikes(v, sampling_period=0.1)) == 1
        assert len(detect_spikes(v, sampling_period=0.1, rearm=10.0)) == 2

    def test_trace_starting_inside_a_spike(self):
        # Starts at +25 mV (a spike in progress, not counted), dips to +5 (still not re-armed), re-crosses,
        # then falls below 0 and fires a real spike.
        t, v = piecewise_linear([0, 1, 2, 3, 10, 11, 12], [25, 5, 15, -60, -60, 30, -60])
        np.testing.assert_allclose(detect_spikes(v, sampling_period=0.1).magnitude, [10 + 70 / 90], atol=1e-9)

    def test_trace_starting_between_levels_is_not_armed(self):
        # As the simulator's in-loop detector: armed at the start only below the re-arm level.
        t, v = piecewise_linear([0, 1, 2, 3, 4], [5, 25, -60, 25, -60])
        np.testing.assert_allclose(detect_spikes(v, sampling_period=0.1).magnitude, [2 + 70 / 85], atol=1e-9)
        t, v = piecewise_linear([0, 1, 2], [-5, 25, -60])
        np.testing.assert_allclose(detect_spikes(v, sampling_period=0.1).magnitude, [0.5], atol=1e-9)

    def test_reaching_the_threshold_exactly_is_a_spike(self):
        v = np.array([-60.0, 0.0, 10.0, 0.0, -60.0])
        np.testing.assert_allclose(detect_spikes(v, sampling_period=1.0).magnitude, [2.0])

    def test_sinusoid(self):
        # V = -30 + 50 sin(2π t / 100 ms) crosses +10 mV upward at t = 100 asin(0.8) / 2π (+ k·100 ms).
        dt = 0.05
        t = np.arange(0.0, 1000.0, dt)
        v = -30 + 50 * np.sin(2 * np.pi * t / 100.0)
        sig = neo.AnalogSignal(v[:, None], units=pq.mV, sampling_period=dt * pq.ms)
        st = detect_spikes(sig)
        expected = 100 * np.arcsin(0.8) / (2 * np.pi) + 100.0 * np.arange(10)
        np.testing.assert_allclose(st.magnitude, expected, atol=1e-3)  # linear interpolation error ~ dt²

    def test_analogsignal_channels_units_and_t_start(self):
        t, v1 = piecewise_linear([0, 10, 10.9, 12, 20], [-60, -60, 30, -60, -60])
        v2 = np.full_like(v1, -65.0)
        sig = neo.AnalogSignal(np.stack([v1, v2], axis=1) / 1000.0, units=pq.V, sampling_period=0.1 * pq.ms,
                               t_start=2.0 * pq.s)
        trains = detect_spikes(sig, threshold=0.01 * pq.V, rearm=0 * pq.mV)
        assert isinstance(trains, list) and len(trains) == 2
        np.testing.assert_allclose(trains[0].magnitude, [2000 + 10 + 0.9 * 70 / 90], atol=1e-6)
        assert len(trains[1]) == 0
        assert float(trains[1].t_start) == pytest.approx(2000.0)
        assert [tr.annotations["channel"] for tr in trains] == [0, 1]
        assert trains[0].annotations["threshold_mV"] == pytest.approx(10.0)
        assert trains[0].annotations["rearm_mV"] == 0.0

    def test_array_with_quantities_and_offset(self):
        t, v = piecewise_linear([0, 10, 10.9, 12, 20], [-60, -60, 30, -60, -60])
        st = detect_spikes(v * pq.mV, sampling_period=100 * pq.us, t_start=1 * pq.s)
        np.testing.assert_allclose(st.magnitude, [1000 + 10 + 0.9 * 70 / 90], atol=1e-6)

    def test_matches_elephant_threshold_detection_where_the_rules_coincide(self):
        # With rearm == threshold the rule is Elephant's; Elephant reports the first sample above threshold,
        # so its time lies within one sample after the interpolated crossing.
        rng = np.random.default_rng(1)
        dt = 0.1
        v = -40 + 60 * np.sin(np.arange(20000) * dt / 7.0) + rng.normal(0, 3, 20000)
        v[0] = -60.0
        sig = neo.AnalogSignal(v[:, None], units=pq.mV, sampling_period=dt * pq.ms)
        ours = detect_spikes(sig, rearm=10.0).magnitude
        theirs = esg.threshold_detection(sig, threshold=10 * pq.mV).rescale(pq.ms).magnitude
        assert ours.size == theirs.size > 50
        assert np.all(ours <= theirs + 1e-9) and np.all(ours > theirs - dt)
        # With the default re-arm at 0 mV, noise-driven re-crossings near the peak are rejected.
        assert 0 < len(detect_spikes(sig)) < ours.size

    @pytest.mark.parametrize(
        "kwargs, fragment",
        [
            (dict(), "sampling_period is required"),
            (dict(sampling_period=0.0), "positive"),
            (dict(sampling_period=0.1, rearm=20.0), "rearm"),
            (dict(sampling_period=0.1, threshold=10 * pq.ms), "threshold has units"),
            (dict(sampling_period=1 * pq.mV), "sampling_period has units"),
        ],
    )
    def test_bad_detection_arguments(self, kwargs, fragment):
        with pytest.raises(InvalidInputError, match=fragment):
            detect_spikes(np.zeros(10), **kwargs)

    def test_bad_signals(self):
        with pytest.raises(InvalidInputError, match="NaN"):
            detect_spikes(np.array([0.0, np.nan, 1.0]), sampling_period=0.1)
        with pytest.raises(InvalidInputError, match="shape"):
            detect_spikes(np.zeros((2, 2, 2)), sampling_period=0.1)
        with pytest.raises(InvalidInputError, match="not a voltage"):
            detect_spikes(np.zeros(10) * pq.s, sampling_period=0.1)
        sig = neo.AnalogSignal(np.zeros((10, 1)), units=pq.mV, sampling_period=0.1 * pq.ms)
        with pytest.raises(InvalidInputError, match="only for plain arrays"):
            detect_spikes(sig, sampling_period=0.1)
        with pytest.raises(InvalidInputError, match="not a voltage"):
            detect_spikes(neo.AnalogSignal(np.zeros((10, 1)), units=pq.nA, sampling_period=0.1 * pq.ms))


# ------------------------------------------------------------------------------------------------------------
# Firing class and features (Elephant path)
# ------------------------------------------------------------------------------------------------------------


def assert_nan(f: SpikeTrainFeatures, names) -> None:
    for name in names:
        assert math.isnan(getattr(f, name)), name


class TestFeatures:
    def test_tonic_train(self):
        times = 3.0 + 25.0 * np.arange(40)  # 40 Hz, 40 spikes in a 1000 ms window
        f = spike_train_features(times, t_stop=1000.0)
        assert f.firing_class is FiringClass.SPIKING and f.firing_class == "spiking"
        assert f.n_spikes == 40
        assert f.mean_rate == pytest.approx(40.0)
        assert f.mean_isi == pytest.approx(25.0)
        assert f.spiking_frequency == pytest.approx(40.0)
        assert f.cv == pytest.approx(0.0, abs=1e-12)
        assert f.lv == pytest.approx(0.0, abs=1e-12)
        assert f.cv2 == pytest.approx(0.0, abs=1e-12)
        assert f.n_bursts == 0
        assert_nan(f, BURST_FIELDS)  # a tonic cell has no bursts

    def test_jittered_tonic_train_stays_spiking(self):
        rng = np.random.default_rng(0)
        times = np.cumsum(rng.uniform(18.0, 22.0, 100))
        f = spike_train_features(times)
        assert f.firing_class == "spiking"
        assert f.cv < CV_THRESHOLD
        assert f.spiking_frequency == pytest.approx(1000.0 / np.mean(np.diff(times)))
        assert math.isnan(f.mean_rate)  # no t_stop given: no observation window, no rate

    def test_regular_bursts(self):
        # 10 cycles of 5 spikes 4 ms apart, one burst every 250 ms: 8 bursts kept after dropping first and last.
        times = burst_train(10, 5, 4.0, 250.0)
        f = spike_train_features(times, t_start=0.0, t_stop=2500.0)
        assert f.firing_class == "bursting"
        assert f.n_bursts == 8
        assert f.spikes_per_burst == pytest.approx(5.0)
        assert f.burst_duration == pytest.approx(16.0)
        assert f.burst_period == pytest.approx(250.0)
        assert f.intra_burst_frequency == pytest.approx(250.0)
        assert f.inter_burst_frequency == pytest.approx(4.0)
        assert f.duty_cycle == pytest.approx(16.0 / 250.0)
        assert f.mean_rate == pytest.approx(50 / 2.5)
        assert math.isnan(f.spiking_frequency)  # not a tonic cell

    def test_bursts_of_varying_size(self):
        sizes = [2, 3, 4, 5, 6, 7]
        times = np.concatenate([100.0 * k + 5.0 * np.arange(s) for k, s in enumerate(sizes)])
        f = spike_train_features(times)
        assert f.firing_class == "bursting"
        kept = sizes[1:-1]
        assert f.n_bursts == 4
        assert f.spikes_per_burst == pytest.approx(np.mean(kept))
        assert f.burst_duration == pytest.approx(np.mean([5.0 * (s - 1) for s in kept]))
        assert f.intra_burst_frequency == pytest.approx(200.0)
        assert f.burst_period == pytest.approx(100.0)
        groups = split_bursts(times)
        assert [g.size for g in groups] == kept
        assert [g.size for g in split_bursts(times, drop_edges=False)] == sizes

    @pytest.mark.parametrize("n", [0, 1, 2])
    def test_silent(self, n):
        times = [100.0, 300.0][:n]
        f = spike_train_features(times, t_stop=1000.0)
        assert f.firing_class == "silent"
        assert f.n_spikes == n
        assert f.mean_rate == pytest.approx(n)
        assert_nan(f, ("cv", "lv", "cv2", "spiking_frequency") + BURST_FIELDS)
        if n == 2:
            assert f.mean_isi == pytest.approx(200.0)
        else:
            assert math.isnan(f.mean_isi)

    def test_exactly_three_spikes(self):
        assert spike_train_features([10.0, 20.0, 30.0]).firing_class == "spiking"
        f = spike_train_features([10.0, 11.0, 30.0])
        # Bursting by CV, but the two groups are the first and the last, so no burst is left to measure.
        assert f.firing_class == "bursting"
        assert f.n_bursts == 0
        assert_nan(f, BURST_FIELDS + ("spiking_frequency",))
        assert f.cv == pytest.approx(es.cv([1.0, 19.0]))

    def test_one_kept_burst_has_no_period(self):
        times = burst_train(3, 3, 2.0, 50.0)
        f = spike_train_features(times)
        assert f.firing_class == "bursting" and f.n_bursts == 1
        assert f.spikes_per_burst == 3.0 and f.burst_duration == pytest.approx(4.0)
        assert f.intra_burst_frequency == pytest.approx(500.0)
        assert_nan(f, ("burst_period", "inter_burst_frequency", "duty_cycle"))

    def test_one_spike_bursts(self):
        # ISIs 1, 9, 10, 10, 1: split above 5.5 ms -> [0, 1], [10], [20], [30, 31]; the kept bursts are single
        # spikes: one spike per burst, zero duration, no intra-burst interval, period 10 ms.
        f = spike_train_features([0.0, 1.0, 10.0, 20.0, 30.0, 31.0])
        assert f.firing_class == "bursting" and f.n_bursts == 2
        assert f.spikes_per_burst == 1.0 and f.burst_duration == 0.0
        assert math.isnan(f.intra_burst_frequency)
        assert f.burst_period == pytest.approx(10.0) and f.duty_cycle == 0.0

    def test_cv_threshold_option_and_boundary(self):
        # ISIs 10 and 13: CV = 1.5 / 11.5 = 0.1304...; spiking at 0.15, bursting at 0.1.
        times = [0.0, 10.0, 23.0]
        assert firing_class(times) == "spiking"
        assert firing_class(times, cv_threshold=0.1) == "bursting"
        assert spike_train_features(times, cv_threshold=0.1).firing_class == "bursting"
        with pytest.raises(InvalidInputError, match="cv_threshold"):
            firing_class(times, cv_threshold=0.0)
        with pytest.raises(InvalidInputError, match="cv_threshold"):
            spike_train_features(times, cv_threshold=float("nan"))

    def test_statistics_are_elephants(self):
        intervals = np.array([0.3, 4.5, 6.7, 9.3])  # Elephant's own docstring example
        times = np.concatenate([[1.0], 1.0 + np.cumsum(intervals)])
        f = spike_train_features(times)
        assert f.lv == pytest.approx(0.8306154336734695)
        assert f.cv2 == pytest.approx(0.8226190476190478)
        assert f.cv == pytest.approx(np.std(intervals) / np.mean(intervals))

    def test_units_are_converted(self):
        times_ms = burst_train(6, 4, 3.0, 120.0)
        in_s = neo.SpikeTrain(times_ms / 1000.0, units=pq.s, t_start=0 * pq.s, t_stop=1 * pq.s)
        f_s = spike_train_features(in_s)
        f_ms = spike_train_features(times_ms, t_stop=1000.0)
        for name in FEATURE_NAMES:
            a, b = getattr(f_s, name), getattr(f_ms, name)
            if isinstance(a, float):
                assert a == pytest.approx(b, nan_ok=True), name
            else:
                assert a == b, name
        assert f_s.burst_period == pytest.approx(120.0)  # ms, not s

    def test_window_from_spiketrain_and_overrides(self):
        st = to_spiketrain([10.0, 20.0, 30.0], t_start=0.0, t_stop=300.0)
        assert spike_train_features(st).mean_rate == pytest.approx(10.0)
        assert spike_train_features(st, t_stop=600.0).mean_rate == pytest.approx(5.0)
        assert spike_train_features([10.0, 20.0, 30.0], t_start=5.0, t_stop=105.0).mean_rate == pytest.approx(30.0)
        with pytest.raises(InvalidInputError, match="after t_stop"):
            spike_train_features(st, t_stop=25.0)

    def test_bad_input_names_the_argument(self):
        with pytest.raises(InvalidInputError, match="spikes must be strictly increasing"):
            spike_train_features([5.0, 1.0])
        with pytest.raises(InvalidInputError, match="not a time"):
            firing_class([1.0, 2.0, 3.0] * pq.mV)

    def test_dataclass_is_frozen_and_complete(self):
        f = spike_train_features([1.0, 2.0, 3.0])
        with pytest.raises(AttributeError):
            f.n_spikes = 4  # type: ignore[misc]
        assert FEATURE_NAMES[0] == "firing_class" and len(FEATURE_NAMES) == 15
        assert FIRING_CLASSES == ("silent", "spiking", "bursting")

    def test_no_warnings_on_short_trains(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for n in range(5):
                spike_train_features(10.0 * np.arange(n) + 1.0, t_stop=100.0)


# ------------------------------------------------------------------------------------------------------------
# Fast CSR path == Elephant path
# ------------------------------------------------------------------------------------------------------------


def random_trains(rng: np.random.Generator, n: int, t_stop: float) -> list[np.ndarray]:
    trains = []
    for i in range(n):
        kind = i % 6
        if kind == 0:  # tonic with jitter
            isi = rng.uniform(5, 80)
            times = np.cumsum(rng.normal(isi, rng.uniform(0, 0.2) * isi, size=int(t_stop / isi)))
        elif kind == 1:  # regular-ish bursts
            spb, intra, period = rng.integers(1, 12), rng.uniform(1, 10), rng.uniform(80, 600)
            onsets = np.arange(rng.uniform(0, period), t_stop, period)
            times = (onsets[:, None] + intra * np.arange(spb) + rng.normal(0, 0.05 * intra, (onsets.size, spb)))
            times = times.ravel()
        elif kind == 2:  # Poisson
            times = np.cumsum(rng.exponential(rng.uniform(5, 300), size=rng.integers(0, 120)))
        elif kind == 3:  # very few spikes
            times = rng.uniform(0, t_stop, size=rng.integers(0, 5))
        elif kind == 4:  # exactly equal ISIs
            times = rng.uniform(1, 20) * np.arange(1, rng.integers(2, 60))
        else:  # bursts of irregular size, with one-spike groups
            times = np.concatenate([k * 97.0 + 3.0 * np.arange(rng.integers(1, 5)) for k in range(rng.integers(1, 30))])
        times = np.unique(np.round(times[(times >= 0) & (times <= t_stop)], 6))
        trains.append(times)
    return trains


def assert_same_features(got: dict, trains, t_start, t_stop):
    for i, times in enumerate(trains):
        ref = spike_train_features(times, t_start=t_start[i], t_stop=t_stop[i])
        for name in FEATURE_NAMES:
            a, b = got[name][i], getattr(ref, name)
            if isinstance(b, float):
                assert np.isnan(a) == np.isnan(b), (i, name, a, b)
                if not np.isnan(b):
                    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=f"train {i}, {name}")
            else:
                assert a == b, (i, name, a, b)
        assert FIRING_CLASSES[got["firing_class_code"][i]] == ref.firing_class


class TestCSR:
    def test_matches_per_train_path_on_random_trains(self):
        rng = np.random.default_rng(42)
        trains = random_trains(rng, 600, 3000.0)
        times, offsets = csr_from_spiketrains(trains)
        n = len(trains)
        t_start, t_stop = np.zeros(n), np.full(n, 3000.0)
        got = features_from_csr(times, offsets, 0.0, 3000.0)
        assert set(got) == set(FEATURE_NAMES) | {"firing_class_code"}
        assert all(v.shape == (n,) for v in got.values())
        assert got["n_spikes"].dtype == np.int64 and got["firing_class_code"].dtype == np.int8
        classes = set(got["firing_class"])
        assert classes == {"silent", "spiking", "bursting"}  # the sample covers every class
        assert_same_features(got, trains, t_start, t_stop)

    def test_per_train_windows_and_quantities(self):
        trains = [burst_train(6, 3, 2.0, 100.0, start=1000.0), 1000.0 + 10.0 * np.arange(1, 20), np.array([])]
        times, offsets = csr_from_spiketrains(trains)
        t_start, t_stop = np.array([1000.0, 1000.0, 0.0]), np.array([1700.0, 1300.0, 50.0])
        got = features_from_csr(times / 1000.0 * pq.s, offsets, t_start * pq.ms, t_stop / 1000.0 * pq.s)
        assert list(got["firing_class"]) == ["bursting", "spiking", "silent"]
        assert_same_features(got, trains, t_start, t_stop)

    def test_no_trains(self):
        got = features_from_csr(np.zeros(0), np.array([0]), 0.0, 10.0)
        assert all(v.shape == (0,) for v in got.values())

    def test_many_trains(self):
        # A large batch (50 000 trains) runs through the compiled path and agrees on a sample.
        rng = np.random.default_rng(7)
        base = random_trains(rng, 60, 3000.0)
        trains = [base[i % 60] for i in range(50_000)]
        times, offsets = csr_from_spiketrains(trains)
        got = features_from_csr(times, offsets, 0.0, 3000.0)
        sample = np.arange(0, 50_000, 997)
        assert_same_features({k: v[sample] for k, v in got.items()}, [trains[i] for i in sample],
                             np.zeros(sample.size), np.full(sample.size, 3000.0))

    @pytest.mark.parametrize(
        "times, offsets, fragment",
        [
            ([1.0, np.nan, 3.0], [0, 1, 3], r"times\[1\] = nan ms \(spike 0 of train 1\) is not finite"),
            ([1.0, -2.0], [0, 1, 2], "train 1.*is negative"),
            ([1.0, 2.0, 2.0], [0, 3], "train 0.*strictly increasing"),
            ([1.0, 20.0], [0, 2], "after the train's t_stop"),
        ],
    )
    def test_bad_times(self, times, offsets, fragment):
        with pytest.raises(InvalidInputError, match=fragment):
            features_from_csr(np.array(times), np.array(offsets), 0.0, 10.0)

    def test_trains_may_restart_in_time(self):
        # Decreasing times across a train boundary are fine; only order within a train matters.
        got = features_from_csr(np.array([5.0, 6.0, 1.0, 2.0]), np.array([0, 2, 4]), 0.0, 10.0)
        np.testing.assert_array_equal(got["n_spikes"], [2, 2])

    def test_bad_windows(self):
        times, offsets = np.array([1.0, 2.0]), np.array([0, 1, 2])
        with pytest.raises(InvalidInputError, match="before the train's t_start"):
            features_from_csr(times, offsets, np.array([0.0, 3.0]), 10.0)
        with pytest.raises(InvalidInputError, match="t_stop must be greater than t_start; train 1"):
            features_from_csr(times, offsets, 0.0, np.array([10.0, 0.0]))
        with pytest.raises(InvalidInputError, match=r"shape \(2,\)"):
            features_from_csr(times, offsets, 0.0, np.array([10.0, 10.0, 10.0]))
        with pytest.raises(InvalidInputError, match="t_start must be finite"):
            features_from_csr(times, offsets, np.nan, 10.0)
        with pytest.raises(InvalidInputError, match="end at len"):
            features_from_csr(times, np.array([0, 1]), 0.0, 10.0)
        with pytest.raises(InvalidInputError, match="one-dimensional"):
            features_from_csr(times[None, :], offsets, 0.0, 10.0)


# ------------------------------------------------------------------------------------------------------------
# Agreement with the simulator's in-loop detector (same rule, same interpolation)
# ------------------------------------------------------------------------------------------------------------


def test_detect_spikes_reproduces_the_simulators_spikes():
    simulate = pytest.importorskip("dic_sbi").simulate
    stg_vector_1 = [3951.841874625046, 137.74048912522852, 2.9127829247578534, 7.284855521681209,
                    109.17735788681486, 239.38396353795864, 0.29088220179767166, 0.009126662525247945]
    # without substeps the recorded trace holds every step the in-loop detector saw
    res = simulate("stg", stg_vector_1, record_voltage=True, noise_std=3.0, seed=0, fine_substeps=1)
    detected = detect_spikes(res.voltage[0], sampling_period=res.sampling_interval, t_start=res.t_start)
    assert len(res.times) > 10
    np.testing.assert_allclose(detected.magnitude, res.times, atol=1e-9)
    got = features_from_csr(res.times, res.offsets, res.t_start, res.t_stop)
    assert got["firing_class"][0] == spike_train_features(detected).firing_class
