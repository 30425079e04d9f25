"""The information floor (dic_sbi.sbi.identifiability) against cases whose answer is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from dic_sbi.errors import InvalidInputError
from dic_sbi.sbi.features import SUMMARY_NAMES
from dic_sbi.sbi.identifiability import conditional_median_mad, information_floor


def test_conditional_median_mad_recovers_the_bayes_risk():
    # y = f(s) + U(-a, a): the conditional median is f(s), the Bayes risk E|U(-a, a)| = a / 2.
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 1, 20_000)
    for a in (0.5, 2.0):
        y = 10 * np.sin(3 * s) + rng.uniform(-a, a, s.size)
        ins, loo = conditional_median_mad(s, y, 200)
        assert ins <= loo
        assert abs(ins - a / 2) < 0.03 * a and abs(loo - a / 2) < 0.03 * a, (a, ins, loo)
    # A deterministic relation has (almost) no floor; an unrelated one has the marginal MAD.
    ins, _ = conditional_median_mad(s, 10 * s, 50)
    assert ins < 0.02
    y = rng.uniform(-1, 1, s.size)
    ins, loo = conditional_median_mad(s, y, 400)
    assert abs(ins - 0.5) < 0.02 and abs(loo - 0.5) < 0.02


def test_windows_are_the_exact_nearest_neighbours():
    # Clustered values: a centred window of sorted positions would mix clusters; the exact k-NN must not.
    s = np.r_[np.zeros(50), np.ones(50) * 100.0, np.full(50, 200.0)]
    y = np.r_[np.zeros(50), np.ones(50), np.full(50, 2.0)]
    ins, loo = conditional_median_mad(s, y, 40)
    assert ins == 0.0 and loo == 0.0


def _x(n_periodic, n_silent, n_burst, rng):
    x = np.full((n_periodic + n_silent + n_burst, len(SUMMARY_NAMES)), -1.0)
    col = SUMMARY_NAMES.index
    x[:, col("is_spiking")] = x[:, col("is_silent")] = x[:, col("is_bursting")] = 0
    x[:n_periodic, col("is_spiking")] = 1
    x[:n_periodic, col("cv")] = 1e-4
    x[:n_periodic, col("log10_mean_isi_ms")] = rng.uniform(1, 3, n_periodic)
    x[n_periodic : n_periodic + n_silent, col("is_silent")] = 1
    x[n_periodic + n_silent :, col("is_bursting")] = 1
    return x


def test_information_floor_combines_the_classes():
    rng = np.random.default_rng(1)
    n_p, n_s, n_b = 6000, 2000, 2000
    x = _x(n_p, n_s, n_b, rng)
    isi = x[:n_p, SUMMARY_NAMES.index("log10_mean_isi_ms")]
    theta = np.empty((x.shape[0], 2))
    theta[:n_p, 0] = 4 * isi + rng.uniform(-3, 3, n_p)  # periodic: floor 1.5 on g_s
    theta[:n_p, 1] = -isi  # ... and 0 on g_u
    theta[n_p : n_p + n_s] = rng.uniform(-4, 4, (n_s, 2))  # silent: MAD of U(-4, 4) = 2
    theta[n_p + n_s :] = rng.normal(size=(n_b, 2))  # bursting: no floor
    out = information_floor(theta, x, ks=(50, 100, 200))
    assert out["periodic"]["n"] == n_p and out["silent"]["n"] == n_s and out["other"]["n"] == n_b
    assert out["periodic"]["floor_g_s"] == pytest.approx(1.5, abs=0.06)
    assert out["periodic"]["floor_g_u"] < 0.01
    assert out["silent"]["floor_g_s"] == pytest.approx(2.0, abs=0.1)
    assert out["overall_floor_g_s"] == pytest.approx(0.6 * out["periodic"]["floor_g_s"] + 0.2 * out["silent"]["floor_g_s"])
    assert out["firing_floor_g_s"] == pytest.approx(0.6 / 0.8 * out["periodic"]["floor_g_s"])
    # A spiking train with irregular intervals is not periodic: it gets no floor.
    x[:100, SUMMARY_NAMES.index("cv")] = 0.05
    assert information_floor(theta, x, ks=(50,))["periodic"]["n"] == n_p - 100


def test_information_floor_bad_input():
    rng = np.random.default_rng(2)
    x = _x(10, 0, 0, rng)
    with pytest.raises(InvalidInputError, match="theta"):
        information_floor(np.zeros((10, 3)), x)
    with pytest.raises(InvalidInputError, match="x"):
        information_floor(np.zeros((10, 2)), x[:, :5])
    with pytest.raises(InvalidInputError, match="k"):
        conditional_median_mad(np.arange(5.0), np.arange(5.0), 5)
    with pytest.raises(InvalidInputError, match="non-finite"):
        conditional_median_mad(np.r_[np.nan, 1, 2, 3], np.arange(4.0), 2)
