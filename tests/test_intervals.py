"""Interval statistics (drift, variability, burst sequence) against direct numpy computations on built trains,
their encoding, the ``"intervals"`` output of the simulators, and the published-footing evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dic_sbi.sbi.features import INTERVAL_NAMES, SUMMARY_NAMES, encode, encode_intervals, feature_names
from dic_sbi.spiketrains.intervals import INTERVAL_STATISTICS, interval_statistics


def _csr(trains):
    offsets = np.r_[0, np.cumsum([len(t) for t in trains])].astype(np.int64)
    return np.concatenate(trains), offsets


def _reference(t: np.ndarray) -> dict[str, float]:
    """The definitions of the module docstring, written out directly."""
    isi = np.diff(t)
    k, m = isi.size, isi.mean()
    third = max(1, k // 3)
    d = isi - m
    out = {
        "drift": (isi[-third:].mean() - isi[:third].mean()) / m,
        "first_isi": (isi[0] - m) / m,
        "last_isi": (isi[-1] - m) / m,
        "cv": isi.std() / m,
        "serial_corr_1": np.mean(d[:-1] * d[1:]) / np.mean(d * d),
        "serial_corr_2": np.mean(d[:-2] * d[2:]) / np.mean(d * d),
        "skewness": np.mean(d**3) / isi.std() ** 3,
    }
    s = np.sort(isi)
    out["spread_90_10"] = s[int(np.ceil(0.9 * (k - 1)))] / s[int(0.1 * (k - 1))] - 1
    return out


def test_tonic_train_with_drift_and_noise_matches_the_definitions():
    rng = np.random.default_rng(1)
    isi = 50.0 * (1 + 1e-3 * np.linspace(0, 1, 60)) + rng.normal(0, 0.2, 60)
    t = 100.0 + np.r_[0, np.cumsum(isi)]
    st = interval_statistics(*_csr([t]))
    for name, value in _reference(t).items():
        np.testing.assert_allclose(st[name][0], value, rtol=1e-10, atol=1e-14, err_msg=name)
    for name, kind in INTERVAL_STATISTICS.items():
        if kind == "burst":
            assert np.isnan(st[name][0]), name  # not bursting
    # shift invariance: the same train later in time gives the same statistics
    moved = interval_statistics(*_csr([t + 1234.5]))
    for name in INTERVAL_STATISTICS:
        np.testing.assert_allclose(moved[name], st[name], rtol=1e-9, equal_nan=True)


def test_burst_sequence_statistics_of_a_built_burster():
    # bursts of 4 spikes with accelerating intra-burst intervals 10, 8, 6 ms; the silent interval alternates so
    # the burst period varies; spikes per burst varies in the last bursts.
    t, start = [], 0.0
    sizes = [4, 4, 4, 4, 5, 4, 3, 4]
    for b, n in enumerate(sizes):
        intra = [10.0, 8.0, 6.0, 5.0][: n - 1]
        spikes = start + np.r_[0, np.cumsum(intra)]
        t.extend(spikes)
        start = spikes[-1] + (200.0 if b % 2 == 0 else 220.0)
    t = np.asarray(t)
    st = interval_statistics(*_csr([t]))
    full = sizes[1:-1]  # the first and last bursts are dropped
    fl = [np.log10(10.0 / [10.0, 8.0, 6.0, 5.0][n - 2]) for n in full]
    np.testing.assert_allclose(st["intra_first_last"][0], np.mean(fl))
    mm = [np.log10(10.0 / min([10.0, 8.0, 6.0, 5.0][: n - 1])) for n in full]
    np.testing.assert_allclose(st["intra_max_min"][0], np.mean(mm))
    np.testing.assert_allclose(st["intra_longest_position"][0], 0.0)  # the first intra interval is the longest
    np.testing.assert_allclose(st["interburst_interval"][0], np.mean([220.0, 200.0, 220.0, 200.0, 220.0, 200.0]))
    np.testing.assert_allclose(st["spikes_per_burst_std"][0], np.std(full))
    onsets = []
    pos = 0
    for n in sizes:
        onsets.append(t[pos])
        pos += n
    periods = np.diff(onsets[1:-1])
    np.testing.assert_allclose(st["burst_period_cv"][0], periods.std() / periods.mean())


def test_short_and_empty_trains_are_undefined_and_encode_finite():
    t, off = _csr([np.array([]), np.array([1.0, 5.0, 9.0]), np.array([1.0, 2.0, 3.0, 4.0, 5.5])])
    st = interval_statistics(t, off)
    assert all(np.isnan(v[:2]).all() for v in st.values())
    assert np.isfinite(st["cv"][2])
    x = encode_intervals(st)
    assert x.shape == (3, len(INTERVAL_NAMES)) and np.isfinite(x).all()
    assert x[:, INTERVAL_NAMES.index("has_intervals")].tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="offsets"):
        interval_statistics(t, off[:-1])


def test_periodic_cell_variability_is_visible_after_encoding():
    """A CV of 1e-4 (a periodic cell) must not vanish under a fixed standardisation with a 0.1 spread floor."""
    rng = np.random.default_rng(0)
    trains = [np.r_[0, np.cumsum(40.0 * (1 + cv * rng.standard_normal(50)))] for cv in (1e-5, 1e-4, 1e-3)]
    x = encode_intervals(interval_statistics(*_csr(trains)))
    col = x[:, INTERVAL_NAMES.index("log10_cv_floor")]
    assert np.all(np.diff(col) > 0.5)  # each decade apart by ~1 on the encoded scale


def test_intervals_output_of_the_simulator_and_names():
    from dic_sbi.data import example_cells
    from dic_sbi.sbi import DICSimulator

    sim = DICSimulator("stg", output="intervals", duration=2000.0, transient=500.0)
    assert sim.names == SUMMARY_NAMES + INTERVAL_NAMES == feature_names("intervals")
    assert feature_names("intervals", conditions=("noise_std",)) == SUMMARY_NAMES + ("noise_std",) + INTERVAL_NAMES
    x = sim.simulate_conductances(np.asarray(example_cells()["stg"])[None])
    assert x.shape == (1, len(SUMMARY_NAMES) + len(INTERVAL_NAMES)) and np.isfinite(x).all()
    summary = DICSimulator("stg", duration=2000.0, transient=500.0).simulate_conductances(np.asarray(example_cells()["stg"])[None])
    np.testing.assert_array_equal(x[:, : len(SUMMARY_NAMES)], summary)


def test_published_footing_blocks():
    from dic_sbi.sbi.evaluation import PUBLISHED_MAE, _mae_block, published_comparison

    err = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    klass = np.array([0, 1, 2, 2])
    acc = _mae_block(err, np.zeros_like(err), klass, err / 2)
    assert acc["non_silent"]["n"] == 3 and acc["non_silent"]["mae_g_s"] == pytest.approx(5.0)
    assert acc["all"]["mae_g_u"] == pytest.approx(5.0)
    cmp = published_comparison("stg", acc)
    assert cmp["bursting"]["published"] == list(PUBLISHED_MAE["stg"]["bursting"])
    assert cmp["spiking"]["ratio"] == pytest.approx([3.0 / 4.65, 4.0 / 2.30])
    assert cmp["non_silent"]["mae_median"] == pytest.approx([2.5, 3.0])


def test_training_on_another_device_builds_the_posterior_on_the_cpu():
    """The GPU path (no prior on the training device, posterior built with it on the CPU), run on "cpu:0"."""
    from dic_sbi.sbi import DICSimulator, train_dic_posterior

    sim = DICSimulator("stg", output="intervals", duration=1500.0, transient=500.0)
    run = train_dic_posterior("stg", 300, simulator=sim, training={"max_num_epochs": 2}, seed=0, torch_threads=1,
                              device="cpu:0")  # fmt: skip
    g = run.posterior.sample((4,), x=run.x[:1], seed=0)
    assert g.shape == (4, 8) and torch.isfinite(run.posterior.log_prob_dics(run.theta[:3], x=run.x[:1])).all()
    assert encode(np.array([1.0, 2.0, 3.0]), np.array([0, 3]), 0.0, 10.0, "intervals", 0).shape[1] == sim.x_dim


def _mixed_x(n: int = 400, seed: int = 0) -> torch.Tensor:
    """``intervals``-layout rows of simulated-like trains: a third silent, a third tonic, a third bursting."""
    rng = np.random.default_rng(seed)
    trains = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            trains.append(np.array([]))
        elif kind == 1:
            trains.append(np.cumsum(np.full(60, rng.uniform(20, 80)) * (1 + 1e-3 * rng.standard_normal(60))))
        else:
            intra, gap, k = rng.uniform(5, 15), rng.uniform(200, 600), int(rng.integers(3, 8))
            burst = np.r_[0.0, np.cumsum(intra * (1 + 0.3 * np.arange(k - 1) * rng.uniform(0.5, 1.5)))]
            period = burst[-1] + gap
            trains.append(np.concatenate([burst + j * period for j in range(6)]))
    t, off = _csr(trains)
    return torch.as_tensor(encode(t, off, 0.0, 6000.0, "intervals", 0), dtype=torch.float32)


def test_defined_mask_follows_sentinels_and_indicators():
    from dic_sbi.sbi.features import SENTINEL, defined_mask

    x = _mixed_x(30)
    names = feature_names("intervals")
    mask = defined_mask(x, names)
    col = {n: j for j, n in enumerate(names)}
    silent = x[:, col["is_silent"]] > 0.5
    bursting = x[:, col["is_bursting"]] > 0.5
    assert not mask[silent, col["log10_mean_isi_ms"]].any() and not mask[silent, col["log10_rate_hz"]].any()
    assert mask[~silent, col["log10_mean_isi_ms"]].all()
    assert (mask[:, col["log10_burst_period_ms"]] == (x[:, col["log10_burst_period_ms"]] != SENTINEL)).all()
    assert (mask[:, col["log10_intra_first_last"]] == bursting).all()  # every built burster has burst shape
    assert (mask[:, col["log10_cv_floor"]] == ~silent).all()
    assert mask[:, col["is_bursting"]].all() and mask[:, col["has_burst_shape"]].all()  # indicators: all rows
    with pytest.raises(Exception, match="expected"):
        defined_mask(x[:, :-1], names)


def test_standardisation_uses_the_moments_where_each_feature_is_defined():
    """Burst-shape statistics spread by ~0.05 among bursters must come out at unit spread, not squashed by the
    sentinels or zero fill of the other classes (the pre-2026-12-05 flaw: interval columns were not scaled)."""
    from dic_sbi.sbi import Standardize
    from dic_sbi.sbi.features import defined_mask
    from dic_sbi.sbi.training import build_density_estimator

    x = _mixed_x()
    names = feature_names("intervals")
    mask = defined_mask(x, names)
    scale = Standardize.from_data(x, names=names)
    assert float(scale.defined_moments) == 1.0
    z = scale(x).detach()
    assert (z[~mask] == 0).all()  # undefined entries (sentinels, zero fill) map to the defined mean
    for n in ("log10_intra_max_min", "log10_burst_period_ms", "log10_mean_isi_ms", "asinh_skewness"):
        j = names.index(n)
        v = x[mask[:, j], j].numpy().astype(np.float64)
        assert float(scale.mean[j]) == pytest.approx(v.mean(), abs=1e-5)
        assert float(scale.std[j]) == pytest.approx(max(v.std(ddof=1), 0.1), rel=1e-4)
        if v.std() > 0.1:
            assert z[mask[:, j], j].std().item() == pytest.approx(1.0, rel=1e-3)
    j = names.index("is_bursting")  # indicators: moments over all rows, so the mean is the class share
    assert float(scale.mean[j]) == pytest.approx(1 / 3, abs=0.01)
    # The builder uses it for the intervals layout (and counts known conditions).
    build = build_density_estimator("nsf", x, "intervals", hidden_features=8, num_transforms=1, defined_scaling=True)
    net = build(torch.rand(len(x), 2), x)
    first = net._embedding_net
    first = first[0] if isinstance(first, torch.nn.Sequential) else first
    torch.testing.assert_close(first.mean, scale.mean)
    with pytest.raises(Exception, match="columns"):
        build_density_estimator("nsf", x[:, :-1], "intervals", defined_scaling=True)
    default = build_density_estimator("nsf", x, "intervals", hidden_features=8, num_transforms=1)(torch.rand(len(x), 2), x)
    assert float(default._embedding_net.defined_moments) == 0.0  # the default is unchanged (opt-in, see README)
    # Fewer than two defined rows: left as it is (here: a single bursting row).
    few = torch.cat([x[~(x[:, names.index("is_bursting")] > 0.5)], x[x[:, names.index("is_bursting")] > 0.5][:1]])
    j = names.index("log10_intra_max_min")
    lone = Standardize.from_data(few, names=names)
    assert float(lone.mean[j]) == 0.0 and float(lone.std[j]) == 1.0
    # Weights saved before the flag load as mixture moments, every value mapped as it is.
    old = {"mean": scale.mean.detach().clone(), "std": scale.std.detach().clone()}
    fresh = Standardize(torch.zeros(x.shape[1]), torch.ones(x.shape[1]))
    fresh.load_state_dict(old)
    assert float(fresh.defined_moments) == 0.0 and torch.equal(fresh.mean, scale.mean)
    torch.testing.assert_close(fresh(x), (x - scale.mean) / scale.std)
