"""The Pospischil et al. (2008) cortical neuron, the third built-in model (issue 19): registry, the paper's
equations and cells, DIC identities and compensation. Simulator accuracy against the reference integrator is in
``test_simulator_accuracy.py``; the NEURON comparison runs here when its venv exists."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import dic_sbi
from dic_sbi.models import available_models, get_model
from dic_sbi.models.pospischil import VARIANTS, pospischil_model

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("pospischil", "pospischil-rs", "pospischil-fs", "pospischil-ib", "pospischil-lts")


def test_registered_under_its_name_and_one_name_per_paper_cell():
    assert set(NAMES) <= set(available_models())
    for name in NAMES:
        m = get_model(name)
        assert m.name == name and m.conductance_names == ("Na", "Kd", "M", "L", "T", "leak")
        assert "Pospischil" in m.reference
    assert get_model("POSPISCHIL-RS") is get_model("pospischil-rs")
    with pytest.raises(dic_sbi.errors.InvalidInputError, match="unknown variant"):
        pospischil_model("xx")


def test_the_module_loads_as_a_users_model_file(tmp_path):
    """Added as a user adds a model: the package's file, copied elsewhere, is a model file like any other."""
    import shutil

    import dic_sbi.models.pospischil as module

    copy = tmp_path / "my_cortical_cell.py"
    shutil.copy(module.__file__, copy)
    mine = get_model(f"{copy}:POSPISCHIL")
    assert mine is not get_model("pospischil") and mine.source == f"{copy.resolve()}:POSPISCHIL"
    g = np.array([v.conductances for v in VARIANTS.values()])
    np.testing.assert_array_equal(dic_sbi.dics(mine, g), dic_sbi.dics("pospischil", g))
    res = dic_sbi.simulate(mine, g[:1], duration=600.0, transient=100.0, progress=False)
    ref = dic_sbi.simulate("pospischil", g[:1], duration=600.0, transient=100.0, progress=False)
    np.testing.assert_array_equal(res.times, ref.times)


def test_cli_knows_the_model(tmp_path):
    from dic_sbi.cli import main

    code = main(["population", "--model", "pospischil", "--g-s", "1.5", "--g-u", "2", "-n", "20",
                 "--out", str(tmp_path / "cells.csv"), "--quiet"])  # fmt: skip
    assert code == 0
    header, *rows = (tmp_path / "cells.csv").read_text().splitlines()
    assert len(rows) == 20 and all(name in header for name in ("Na", "Kd", "M", "L", "T", "leak"))


def test_kinetics_are_the_papers_equations():
    """Gate kinetics against the paper's formulas written out directly (away from their removable singularities)."""
    V = np.array([-80.3, -61.7, -40.2, -12.9, 20.4])
    vt, vx = -55.0, 2.0
    gates = get_model("pospischil").gates()
    rates = {
        "m": (-0.32 * (V - vt - 13) / (np.exp(-(V - vt - 13) / 4) - 1), 0.28 * (V - vt - 40) / (np.exp((V - vt - 40) / 5) - 1)),
        "h": (0.128 * np.exp(-(V - vt - 17) / 18), 4 / (1 + np.exp(-(V - vt - 40) / 5))),
        "n": (-0.032 * (V - vt - 15) / (np.exp(-(V - vt - 15) / 5) - 1), 0.5 * np.exp(-(V - vt - 10) / 40)),
        "q": (0.055 * (-27 - V) / (np.exp((-27 - V) / 3.8) - 1), 0.94 * np.exp((-75 - V) / 17)),
        "r": (0.000457 * np.exp((-13 - V) / 50), 0.0065 / (np.exp((-15 - V) / 28) + 1)),
    }
    for name, (a, b) in rates.items():
        np.testing.assert_allclose(gates[name].steady_state(V), a / (a + b), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(gates[name].time_constant(V), 1 / (a + b), rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(gates["p"].steady_state(V), 1 / (1 + np.exp(-(V + 35) / 10)), rtol=1e-12)
    np.testing.assert_allclose(gates["p"].time_constant(V), 1000 / (3.3 * np.exp((V + 35) / 20) + np.exp(-(V + 35) / 20)), rtol=1e-12)
    np.testing.assert_allclose(gates["s"].steady_state(V), 1 / (1 + np.exp(-(V + vx + 57) / 6.2)), rtol=1e-12)
    np.testing.assert_allclose(gates["u"].steady_state(V), 1 / (1 + np.exp((V + vx + 81) / 4)), rtol=1e-12)
    tau_u = (30.8 + (211.4 + np.exp((V + vx + 113.2) / 5)) / (1 + np.exp((V + vx + 84) / 3.2))) / 3.0**1.2
    np.testing.assert_allclose(gates["u"].time_constant(V), tau_u, rtol=1e-12)
    reversal = {c.name: c.reversal for c in get_model("pospischil").channels}
    assert (reversal["Na"], reversal["Kd"], reversal["M"], reversal["L"], reversal["T"]) == (50.0, -100.0, -100.0, 120.0, 120.0)


def test_variant_leak_reversal_is_the_papers_current_step():
    """A variant's shifted leak reversal and the paper's (E_leak, step current) are the same equations."""
    v = VARIANTS["rs"]
    area = np.pi * 96e-4**2  # cm²: 96-µm soma, length = diameter
    assert v.step_current == pytest.approx(0.75e-3 / area, rel=1e-12)  # 0.75 nA in µA/cm²
    shifted = get_model("pospischil-rs")
    leak = shifted.index("leak")
    plain = dataclasses.replace(shifted, name="rs-with-step", channels=shifted.channels[:leak] + (dataclasses.replace(shifted.channels[leak], reversal=v.leak_reversal),))  # fmt: skip
    g = np.array(v.conductances)[None]
    a = dic_sbi.simulate(shifted, g, duration=1500.0, transient=500.0, progress=False).spike_times(0)
    b = dic_sbi.simulate(plain, g, duration=1500.0, transient=500.0, i_app=v.step_current, progress=False).spike_times(0)
    assert a.size > 3
    np.testing.assert_allclose(a, b, atol=1e-6)
    silent = dic_sbi.simulate(plain, g, duration=1500.0, transient=500.0, progress=False)  # no step: at rest
    assert silent.spike_times(0).size == 0


def test_papers_cells_fire_as_in_the_paper():
    """FS fires fast and regularly; RS slower; the IB cell with the paper's repetitive-bursting L density bursts."""
    fs = dic_sbi.simulate("pospischil-fs", np.array(VARIANTS["fs"].conductances)[None], progress=False).features()
    rs = dic_sbi.simulate("pospischil-rs", np.array(VARIANTS["rs"].conductances)[None], progress=False).features()
    assert fs["firing_class"][0] == rs["firing_class"][0] == "spiking"
    assert fs["mean_rate"][0] > 5 * rs["mean_rate"][0] > 10.0
    ib = np.array(VARIANTS["ib"].conductances)
    more_l = dic_sbi.simulate("pospischil", np.array([ib, np.where(np.arange(6) == 3, 0.25, ib)]), progress=False).features()
    assert list(more_l["firing_class"]) == ["spiking", "bursting"]


def random_cells(n: int, seed: int) -> np.ndarray:
    lo, hi = get_model("pospischil").default_bounds()
    return np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), (n, lo.size)))


@pytest.mark.parametrize("name", NAMES)
def test_dic_sum_equals_steady_state_slope(name):
    """g_f + g_s + g_u = (1/gleak) dI_ss/dV, by central differences of the steady-state current."""
    g = np.vstack([random_cells(20, 3), [v.conductances for v in VARIANTS.values()]])
    V = np.linspace(-80.0, -35.0, 10)
    total = dic_sbi.dics(name, g, V).sum(axis=-1)
    h = 1e-4
    slope = (dic_sbi.steady_state_current(name, g, V + h) - dic_sbi.steady_state_current(name, g, V - h)) / (2 * h)
    np.testing.assert_allclose(total, slope / g[:, -1, None], rtol=1e-6, atol=1e-5)


def test_dics_are_linear_and_scale_invariant():
    g = random_cells(10, 4)
    V = [-60.0, -50.0]
    np.testing.assert_allclose(dic_sbi.dics("pospischil", 2.5 * g, V), dic_sbi.dics("pospischil", g, V), rtol=1e-12, atol=1e-12)


def test_compensation_is_exact_over_the_dic_box():
    model = get_model("pospischil")
    (s_lo, s_hi), (u_lo, u_hi) = model.dic_box
    rng = np.random.default_rng(7)
    g_s, g_u = rng.uniform(s_lo, s_hi, 200), rng.uniform(u_lo, u_hi, 200)
    cells, info = dic_sbi.degenerate_population(model, g_s, g_u, 8, seed=1, on_unreachable="nan", return_info=True)
    reached = ~np.isnan(cells).any(axis=(1, 2))
    assert reached.mean() > 0.9
    assert set(np.asarray(info.pair)[reached].tolist()) == {0, 1}  # both compensating pairs are used
    assert np.all(cells[reached] >= 0)
    residual = np.abs(dic_sbi.dics(model, cells[reached])[..., 1:] - np.stack([g_s, g_u], -1)[reached][:, None, :])
    assert residual.max() <= 1e-6


def test_same_dics_different_firing():
    """Why no posterior is shipped: at threshold the L current (high-threshold) barely moves the DICs, yet it
    turns the IB cell from spiking into bursting (benchmarks/dic_map.py maps the consequence)."""
    ib = np.array(VARIANTS["ib"].conductances)
    cells = np.array([np.where(np.arange(6) == 3, gl, ib) for gl in (0.17, 0.3)])
    d = dic_sbi.dics("pospischil", cells)
    assert np.abs(d[0] - d[1]).max() < 0.1
    classes = dic_sbi.simulate("pospischil", cells, progress=False).features()["firing_class"]
    assert list(classes) == ["spiking", "bursting"]


NEURON_VENV = ROOT / "benchmarks" / ".neuron-venv" / "bin" / "python"


@pytest.mark.skipif(not NEURON_VENV.exists(), reason="no NEURON venv (bash benchmarks/neuron_setup.sh)")
def test_spike_times_agree_with_neuron():
    """The paper's FS cell and a bursting cell, dic_sbi against NEURON 9.0.2 with CVODE (its own venv)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from neuron_compare import run_neuron

    from test_simulator_accuracy import compare

    cells = [c for c in json.loads((ROOT / "tests" / "reference_data" / "pospischil_reference.json").read_text())["cells"]
             if c["source"] in ("the paper's FS cell", "IB cell with L = 0.3 (bursting)")]  # fmt: skip
    assert len(cells) == 2
    theirs = run_neuron(cells, atol=1e-6)["cells"]
    for c, n in zip(cells, theirs):
        model = get_model(c["model"])
        t0, t1 = model.protocol.transient, model.protocol.duration
        ours = dic_sbi.simulate(model, np.array(c["conductances"])[None], progress=False).spike_times(0)
        t = np.array(n["spike_times"])
        errors = compare(ours, t[t >= t0], t0, t1)
        assert errors and all(abs(e) <= 0.01 for e in errors.values()), (c["source"], errors)
