"""DIC engine: published test vectors (spec §3), identities, conventions, input checks."""

from __future__ import annotations

import numpy as np
import pytest

from dic_sbi.core.dics import (
    dics,
    linearize,
    sensitivity_matrix,
    steady_state_current,
    threshold_voltage,
    timescale_weight,
)
from dic_sbi.errors import InvalidInputError, UnknownModelError
from dic_sbi.models import get_model

STG_ROW1 = np.array(
    [3951.841874625046, 137.74048912522852, 2.9127829247578534, 7.284855521681209, 109.17735788681486,
     239.38396353795864, 0.29088220179767166, 0.009126662525247945]
)
DA_ROW1 = np.array(
    [42.17872311164837, 8.972168993357155, 0.02539789992130862, 0.0644062068629352, 0.16653562721303106,
     0.13891638491433672, 0.01504927503238648]
)


def random_cells(model, n, rng):
    lo, hi = get_model(model).default_bounds()
    return rng.uniform(lo, hi, size=(n, lo.size))


# -- published test vectors ---------------------------------------------------------------------------------
def test_stg_test_vector_dics():
    got = dics("stg", STG_ROW1, [-50.0, -55.0, -60.0])
    want = np.array(
        [[-7.2, 5.0, 4.0], [3.13376133, 1.6832167, 12.82213868], [6.20344439, 0.38283737, 28.41185959]]
    )
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)


def test_stg_test_vector_threshold():
    assert threshold_voltage("stg", STG_ROW1) == pytest.approx(-49.670887, abs=1e-6)


def test_da_test_vector_with_nmda_zeroed():
    # Fyon 2024 zeroes gNMDA inside the DICs; the project counts NMDA (g_s, g_u unchanged).
    g = DA_ROW1.copy()
    g[get_model("da").index("NMDA")] = 0.0
    np.testing.assert_allclose(dics("da", g, -55.5), [-13.00452, 0.5, 5.0], atol=1e-5, rtol=0)
    with_nmda = dics("da", DA_ROW1, -55.5)
    np.testing.assert_allclose(with_nmda[1:], [0.5, 5.0], atol=1e-5)
    assert with_nmda[0] != pytest.approx(-13.00452, abs=1e-3)


def test_stg_gate_values_at_minus_50():
    gates = get_model("stg").gates()
    want = {"mNa": 0.00964733, "hNa": 0.55289020, "mKd": 0.03935752, "mCaT": 0.03990404, "hCaT": 0.96283610,
            "mCaS": 0.10921687, "hCaS": 0.16618593, "mA": 0.06781868, "hA": 0.19652392, "mH": 0.03444520}
    for name, value in want.items():
        assert float(gates[name].steady_state(-50.0)) == pytest.approx(value, abs=1e-8), name
    assert float(gates["mKCa"].voltage_factor(-50.0)) == pytest.approx(0.15158515, abs=1e-8)


# -- identities ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["stg", "da"])
@pytest.mark.parametrize("calcium_path_tau", ["ultraslow", 20.0])
def test_sum_equals_steady_state_slope(model, calcium_path_tau):
    rng = np.random.default_rng(1)
    g = random_cells(model, 20, rng)
    V = np.linspace(-80.0, -30.0, 11)
    total = dics(model, g, V, calcium_path_tau=calcium_path_tau).sum(axis=-1)
    h = 1e-4
    slope = (steady_state_current(model, g, V + h) - steady_state_current(model, g, V - h)) / (2 * h)
    leak = g[:, get_model(model).index("leak"), None]
    np.testing.assert_allclose(total, slope / leak, rtol=1e-6, atol=1e-5)


def test_da_scale_invariance():
    rng = np.random.default_rng(2)
    g = random_cells("da", 10, rng)
    np.testing.assert_allclose(dics("da", 3.7 * g, [-60.0, -55.5]), dics("da", g, [-60.0, -55.5]), rtol=1e-12, atol=1e-12)


def test_stg_scale_invariance_without_calcium_feedback():
    # Ca_inf grows with gCaT, gCaS, so STG DICs are scale invariant only when the calcium path is switched off.
    g = STG_ROW1.copy()
    g[get_model("stg").index("KCa")] = 0.0
    np.testing.assert_allclose(dics("stg", 2.5 * g, [-55.0, -50.0]), dics("stg", g, [-55.0, -50.0]), rtol=1e-12)
    full = dics("stg", 2.5 * STG_ROW1)
    assert not np.allclose(full, dics("stg", STG_ROW1), atol=1e-3)


@pytest.mark.parametrize("model", ["stg", "da"])
def test_dics_are_sensitivity_times_conductances(model):
    rng = np.random.default_rng(3)
    g = random_cells(model, 7, rng)
    V = np.array([-60.0, -52.0])
    S = sensitivity_matrix(model, V, conductances=g)
    assert S.shape == (7, 2, 3, g.shape[-1])
    leak = g[:, None, get_model(model).index("leak"), None]
    np.testing.assert_allclose(np.einsum("cvrn,cn->cvr", S, g) / leak, dics(model, g, V), rtol=1e-12)


def test_da_sensitivity_matrix_is_linear_map():
    S = sensitivity_matrix("da", -55.5)
    assert S.shape == (3, 7)
    g = DA_ROW1
    np.testing.assert_allclose(S @ g / g[-1], dics("da", g), rtol=1e-12)
    with pytest.raises(InvalidInputError, match="conductances"):
        sensitivity_matrix("stg", -51.0)


def test_calcium_path_convention():
    ultraslow = dics("stg", STG_ROW1, -51.0)
    tau20 = dics("stg", STG_ROW1, -51.0, calcium_path_tau=20.0)
    # Same total, different split; the fast part is unchanged because 20 ms is slower than τ_mKd at -51 mV.
    assert ultraslow.sum() == pytest.approx(tau20.sum(), rel=1e-12)
    assert not np.allclose(ultraslow[1:], tau20[1:], atol=1e-3)
    np.testing.assert_allclose(dics("stg", STG_ROW1, -51.0, calcium_path_tau="model"), ultraslow)


def test_timescale_weight():
    w = timescale_weight([0.5, 1.0, np.sqrt(10.0), 10.0, 20.0], 1.0, 10.0)
    np.testing.assert_allclose(w, [1.0, 1.0, 0.5, 0.0, 0.0])


def test_broadcasting_shapes():
    g = np.tile(STG_ROW1, (4, 5, 1))
    assert dics("stg", g).shape == (4, 5, 3)
    assert dics("stg", g, -50.0).shape == (4, 5, 3)
    assert dics("stg", g, np.array([-60.0, -50.0, -40.0])).shape == (4, 5, 3, 3)
    assert threshold_voltage("stg", g).shape == (4, 5)
    np.testing.assert_allclose(dics("stg", g)[2, 3], dics("stg", STG_ROW1))


# -- threshold ----------------------------------------------------------------------------------------------
def test_threshold_is_zero_of_total_and_first_crossing():
    rng = np.random.default_rng(4)
    g = random_cells("stg", 50, rng)
    vth = threshold_voltage("stg", g)
    ok = np.isfinite(vth)
    assert ok.sum() > 10
    for gi, v in zip(g[ok], vth[ok]):
        assert dics("stg", gi, v - 1e-5).sum() > 0 >= dics("stg", gi, v + 1e-5).sum()
        below = dics("stg", gi, np.arange(-90.0, v - 1e-4, 0.01)).sum(axis=-1)
        assert not np.any((below[:-1] > 0) & (below[1:] <= 0))


def test_threshold_missing_behaviour():
    g = STG_ROW1.copy()
    g[0] = 0.0  # no sodium: no regenerative region
    assert np.isnan(threshold_voltage("stg", g))
    with pytest.raises(InvalidInputError, match="no threshold"):
        threshold_voltage("stg", g, on_missing="raise")


# -- input checks -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones(7), "shape"),
        (np.full(8, np.nan), "finite"),
        (-np.ones(8), "non-negative"),
        (np.r_[np.ones(7), 0.0], "gleak"),
        ("abc", "conductances"),
    ],
)
def test_bad_conductances(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        dics("stg", bad)


def test_bad_voltage_and_options():
    with pytest.raises(InvalidInputError, match="V"):
        dics("stg", STG_ROW1, np.nan)
    with pytest.raises(InvalidInputError, match="V"):
        dics("stg", STG_ROW1, np.zeros((2, 2)))
    with pytest.raises(InvalidInputError, match="calcium_path_tau"):
        dics("stg", STG_ROW1, calcium_path_tau=-1.0)
    with pytest.raises(InvalidInputError, match="calcium_path_tau"):
        dics("stg", STG_ROW1, calcium_path_tau="sometimes")
    with pytest.raises(InvalidInputError, match="v_range"):
        threshold_voltage("stg", STG_ROW1, v_range=(0.0, -10.0))
    with pytest.raises(UnknownModelError, match="model"):
        dics("hodgkin", STG_ROW1)


def test_linearization_matches_dics():
    lin = linearize("stg", -51.0)
    raw = lin.raw(STG_ROW1)
    np.testing.assert_allclose(raw / STG_ROW1[-1], dics("stg", STG_ROW1), rtol=1e-14)
