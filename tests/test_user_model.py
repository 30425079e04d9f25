"""A model of one's own: a Hodgkin–Huxley-type model written in a file outside the package (α/β kinetics and
plain callables) runs through simulate, dics, degenerate_population, a tiny train and infer, in Python and from
the command line; kinetics and models are checked with clear errors."""

from __future__ import annotations

import math
import pickle
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dic_sbi
from dic_sbi.errors import InvalidInputError, UnknownModelError
from dic_sbi.models import (
    Channel,
    CompensationRule,
    ConductanceModel,
    DICConventions,
    Gate,
    Protocol,
    SeedPopulation,
    get_model,
    load_model_file,
    model_reference,
)
from dic_sbi.models.base import choose_reference_timescales
from dic_sbi.models.kinetics import DERIVATIVE_STEP, RateSteadyState, Sigmoid, voltage_derivative

# The model of the "Bring your own model" tutorial (tutorials/models/squid.py): Hodgkin & Huxley's (1952) squid-axon
# sodium and potassium rates, an M-type potassium current and an H current with plain-callable kinetics, and a
# depolarised leak so that cells fire without injected current; three conductances solved for the seed, one free
# (H). It is copied to a folder outside the repository, as a user's own file would be.
MODEL_SOURCE = Path(__file__).resolve().parents[1] / "tutorials" / "models" / "squid.py"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("my_models") / "squid.py"
    path.write_text(MODEL_SOURCE.read_text())
    return path


@pytest.fixture(scope="module")
def hh(model_file):
    return get_model(f"{model_file}:HH")


@pytest.fixture(scope="module")
def population(hh):
    g = dic_sbi.degenerate_population(hh, 8.0, 1.0, 12, seed=3)
    return g


# -- kinetics ----------------------------------------------------------------------------------------------
def test_numerical_derivative_matches_the_analytic_sigmoid_derivative():
    V = np.linspace(-120.0, 60.0, 1001)
    for C, D in ((-5.29, 25.5), (5.18, 48.9), (-2.0, 50.0), (6.0, 70.0), (-12.6, 28.3)):
        s = Sigmoid(C, D)
        numeric = voltage_derivative(lambda v: s(v), V)  # a plain callable: no derivative method
        exact = s.derivative(V)
        assert np.max(np.abs(numeric - exact)) <= 1e-9 * np.max(np.abs(exact))
    assert voltage_derivative(s, V) is not None and np.array_equal(voltage_derivative(s, V), s.derivative(V))
    # the step is what the stencil's accuracy was measured at; a coarse one-sided difference would fail the bound
    crude = (Sigmoid(-2.0, 50.0)(V + 0.1) - Sigmoid(-2.0, 50.0)(V)) / 0.1
    assert np.max(np.abs(crude - Sigmoid(-2.0, 50.0).derivative(V))) > 1e-3
    assert DERIVATIVE_STEP == 1e-2


def test_rates_give_the_hodgkin_huxley_steady_state_and_time_constant():
    def alpha(V):
        return 0.07 * np.exp(-(V + 65.0) / 20.0)

    def beta(V):
        return 1.0 / (1.0 + np.exp(-(V + 35.0) / 10.0))

    g = Gate.from_rates("h", alpha, beta)
    V = np.array([-90.0, -65.0, -40.0, 0.0, 30.0])
    a, b = alpha(V), beta(V)
    np.testing.assert_allclose(g.steady_state(V), a / (a + b), rtol=1e-14)
    np.testing.assert_allclose(g.time_constant(V), 1.0 / (a + b), rtol=1e-14)
    # x_inf' by hand: (a' b - a b') / (a + b)^2 with a' = -a / 20, b' = b (1 - b) / 10
    da, db = -a / 20.0, b * (1.0 - b) / 10.0
    exact = (da * b - a * db) / (a + b) ** 2
    np.testing.assert_allclose(voltage_derivative(g.steady_state, V), exact, rtol=1e-8, atol=1e-14)
    assert isinstance(g.steady_state, RateSteadyState)
    assert float(Gate("c", lambda V: 0.5 + 0.0 * V, 3.0).time_constant(np.array(-60.0))) == 3.0  # a number is a τ


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Gate("x", lambda V: 0.5 + 0 * V, lambda V: 5.0 - V / 10.0), r"gate 'x': time constant must be > 0 ms .* at V = 50 mV"),
        (lambda: Gate("x", lambda V: 0.5 + 0 * V, -1.0), r"gate 'x': time constant must be > 0 ms, got -1"),
        (lambda: Gate("x", lambda V: 1.5 / (1 + np.exp(-V / 5)), 1.0), r"gate 'x': steady state must lie in \[0, 1\]; it is 1\.\d+ at V"),
        (lambda: Gate("x", lambda V: 1 / (1 + np.exp(-V)), lambda V: 1.0 / (V + 40.0) ** 2), r"gate 'x': time constant is not finite at V = -40 mV"),
        (lambda: Gate("x", lambda V: 1 / (1 + math.exp(-V)), 1.0), r"gate 'x': steady state failed on an array of voltages .*vectorised"),
        (lambda: Gate("x", lambda V: 0.5, 1.0), r"gate 'x': steady state must return one value per voltage"),
        (lambda: Gate.from_rates("x", lambda V: -0.1 + 0 * V, lambda V: 1.0 + 0 * V), r"gate 'x': rate alpha must be >= 0"),
        (lambda: Gate.from_rates("x", 0.1, lambda V: 1.0 + 0 * V), r"gate 'x': alpha must be a callable"),
        (lambda: Gate("", lambda V: 0.5 + 0 * V, 1.0), r"Gate: name must be a non-empty string"),
        (lambda: Channel("K", float("nan")), r"channel 'K': reversal potential must be a finite number"),
        (lambda: Channel("K", -80.0, ((Sigmoid(-5.0, 20.0), 4),)), r"channel 'K': .* is not a gate"),
        (lambda: Channel("K", -80.0, ((Gate("n", Sigmoid(-5.0, 20.0), 2.0), 1.5),)), r"gate exponents must be integers >= 1"),
        (lambda: DICConventions(fast="m"), r"DICConventions: reference_threshold \(mV\) is required"),
        (lambda: DICConventions(reference_threshold=-50.0, ultraslow=-3.0), r"DICConventions: ultraslow must be a gate name, a time constant > 0"),
        (lambda: CompensationRule(pairs=(("K", "K"),)), r"a pair must name two different conductances"),
        (lambda: CompensationRule(pairs=(("K", "M"), ("K", "H"))), r"with several pairs, give choose"),
        (lambda: Protocol(duration=100.0, transient=200.0, dt=0.1), r"Protocol: need dt > 0 and 0 <= transient < duration"),
    ],
)
def test_bad_kinetics_and_fields_are_refused_with_one_clear_line(build, message):
    with pytest.raises(InvalidInputError, match=message) as err:
        build()
    assert "\n" not in str(err.value)


def _variant(hh, **changes):
    fields = {f: getattr(hh, f) for f in ("name", "channels", "initial_voltage", "dics", "protocol", "default_ranges",
                                          "dic_box", "seed_population")}  # fmt: skip
    fields.update(changes)
    return ConductanceModel(**fields)


def test_inconsistent_models_are_refused_with_one_clear_line(hh):
    import dataclasses

    sp = hh.seed_population
    cases = [
        ({"channels": hh.channels[:-1]}, r"missing leak; add an ohmic Channel\('leak', E_leak\)"),
        ({"channels": hh.channels[:-1] + (Channel("leak", -50.0, ((hh.gates()["p"], 1),)),)}, r"the leak channel must be ohmic"),
        ({"channels": hh.channels + (Channel("K", -80.0),)}, r"conductance names must be unique; repeated: \['K'\]"),
        ({"channels": hh.channels + (Channel("K2", -80.0, ((Gate("n", Sigmoid(-5.0, 20.0), 2.0), 4),)),)},
         r"two different gates are named 'n'"),
        ({"channels": (Channel("Ca", 80.0, carries_calcium=True),) + hh.channels}, r"carries calcium but the model has no calcium"),
        ({"dics": DICConventions(fast="zz", reference_threshold=-55.0)}, r"DICConventions fast='zz' is not a gate"),
        ({"default_ranges": {k: v for k, v in hh.default_ranges.items() if k != "H"}}, r"default_ranges must give one .*missing \['H'\]"),
        ({"dic_box": ((1.0, 0.0), (0.0, 1.0))}, r"dic_box must be"),
        ({"default_ranges": {**hh.default_ranges, "M": (0.0, 6.0)}}, r"default_ranges\['M'\] must satisfy 0 < low < high"),
        ({"name": "my.py"}, r"must not contain ':' or end in '\.py'"),
        ({"seed_population": dataclasses.replace(sp, compensation=CompensationRule(pairs=(("K", "Kdr"),)))},
         r"SeedPopulation compensation names unknown or leak conductances \['Kdr'\]"),
        ({"seed_population": dataclasses.replace(sp, seed_solve=("Na", "K", "leak"))}, r"seed_solve names unknown or leak"),
        ({"seed_population": dataclasses.replace(sp, free_ranges={})}, r"\['H'\] are neither free, fixed nor solved"),
        ({"seed_population": dataclasses.replace(sp, free_ranges={"H": (0.0, 0.5), "K": (1.0, 2.0)})},
         r"'K' is both in free_ranges and in seed_solve"),
    ]
    for change, message in cases:
        with pytest.raises(InvalidInputError, match=message) as err:
            _variant(hh, **change)
        assert "\n" not in str(err.value)
    assert _variant(hh).conductance_names == hh.conductance_names  # the unchanged fields make a valid model


# -- DIC conventions and compensation ----------------------------------------------------------------------
def test_automatic_reference_timescales_reproduce_the_published_conventions():
    for name in ("stg", "da"):
        model = get_model(name)
        chosen = choose_reference_timescales(model.channels, DICConventions(reference_threshold=model.dics.reference_threshold))
        assert (chosen.fast, chosen.slow, chosen.ultraslow) == (model.dics.fast, model.dics.slow, model.dics.ultraslow)
        assert "fastest activation gate" in chosen.reason and model.dics.reason == ""  # given, so no reason


def test_the_user_model_gets_its_reference_timescales_and_compensation_with_reasons(hh):
    from dic_sbi.core.populations import compensation_rule

    assert (hh.dics.fast, hh.dics.slow, hh.dics.ultraslow) == ("m", "n", "q")
    assert "slow = 'n', the fastest activation gate of an outward current" in hh.dics.reason
    # no compensation given: the pair that moves (g_s, g_u) most independently, K for g_s and M for g_u
    assert compensation_rule(hh).pairs == (("K", "M"),)
    # the same pair given explicitly (one pair: no choose function needed) makes the same cells
    import dataclasses

    explicit = _variant(hh, seed_population=dataclasses.replace(hh.seed_population,
                                                                compensation=CompensationRule(pairs=(("K", "M"),))))  # fmt: skip
    np.testing.assert_array_equal(dic_sbi.degenerate_population(explicit, 8.0, 1.0, 5, seed=2),
                                  dic_sbi.degenerate_population(hh, 8.0, 1.0, 5, seed=2))  # fmt: skip


# -- the model from a file, everywhere a model is named ----------------------------------------------------
def test_a_model_file_loads_once_and_travels_as_its_reference(hh, model_file):
    assert hh.source == f"{model_file.resolve()}:HH"
    assert get_model(f"{model_file}:HH") is hh and load_model_file(model_file) is hh  # NAME optional: one model
    assert model_reference(hh) == hh.source and model_reference("stg") == "stg"
    assert pickle.loads(pickle.dumps(hh)) is hh
    # another process (a sbi or dask worker) loads it again from its file
    import subprocess
    import sys

    code = "import pickle, sys; m = pickle.loads(sys.stdin.buffer.read()); print(m.name, m.source)"
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(hh), capture_output=True, check=True).stdout
    assert out.decode().split() == [hh.name, hh.source]
    assert hh.conductance_names == ("Na", "K", "M", "H", "leak")
    with pytest.raises(UnknownModelError, match=r"squid\.py has no 'HX'; its models are HH"):
        get_model(f"{model_file}:HX")
    with pytest.raises(UnknownModelError, match=r"no model file"):
        get_model(f"{model_file.parent / 'nothere.py'}:HH")
    inline = _variant(hh, name="inline")
    with pytest.raises(InvalidInputError, match="cannot be found again by name; put it in a file"):
        model_reference(inline)


def test_simulate_matches_the_reference_integrator(hh, population):
    from dic_sbi.core.reference import simulate_reference

    res = dic_sbi.simulate(hh, population[:4], n_threads=1, progress=False)
    counts = np.diff(res.offsets)
    k = int(np.argmax(counts))
    assert counts[k] >= 20  # a regularly firing cell
    fast = res.times[res.offsets[k] : res.offsets[k + 1]]
    ref = simulate_reference(hh, population[k]).spike_times
    assert abs(len(ref) - len(fast)) <= 1
    isi_fast, isi_ref = np.mean(np.diff(fast)), np.mean(np.diff(ref))
    assert abs(isi_fast - isi_ref) <= 0.01 * isi_ref


def test_dics_obey_the_steady_state_identity(hh, population):
    V = np.linspace(-75.0, -40.0, 15)
    d = dic_sbi.dics(hh, population, V)  # (cells, V, 3)
    h = 1e-4
    slope = (dic_sbi.steady_state_current(hh, population, V + h) - dic_sbi.steady_state_current(hh, population, V - h)) / (2 * h)
    gleak = population[:, hh.index("leak")]
    np.testing.assert_allclose(d.sum(axis=-1), slope / gleak[:, None], rtol=1e-6, atol=1e-6)
    # the numerical x_inf derivatives agree with the rates' analytic derivative: one gate checked by hand
    m = hh.gates()["h"]
    a, b = 0.07 * np.exp(-(V + 65.0) / 20.0), 1.0 / (1.0 + np.exp(-(V + 35.0) / 10.0))
    exact = (-a / 20.0 * b - a * b * (1.0 - b) / 10.0) / (a + b) ** 2
    np.testing.assert_allclose(voltage_derivative(m.steady_state, V), exact, rtol=1e-8)


def test_degenerate_population_reaches_its_targets(hh, population):
    assert population.shape == (12, 5) and np.all(population >= 0)
    d = dic_sbi.dics(hh, population)
    assert np.max(np.abs(d[:, 1] - 8.0)) <= 1e-6 and np.max(np.abs(d[:, 2] - 1.0)) <= 1e-6
    assert np.unique(np.round(population[:, hh.index("H")] / population[:, hh.index("leak")], 9)).size == 12  # degenerate


def test_cli_simulate_and_population_take_a_model_file(model_file, tmp_path, capsys):
    from dic_sbi.cli import main, read_conductances_csv

    pop = tmp_path / "pop.csv"
    assert main(["population", "--model", f"{model_file}:HH", "--g-s", "8", "--g-u", "1", "-n", "4", "--out", str(pop), "--quiet"]) == 0
    g = read_conductances_csv(pop, get_model(f"{model_file}:HH").conductance_names)
    np.testing.assert_allclose(g, dic_sbi.degenerate_population(f"{model_file}:HH", 8.0, 1.0, 4, seed=0), rtol=1e-6)
    spikes = tmp_path / "spikes.csv"
    assert main(["simulate", str(pop), "--model", f"{model_file}:HH", "--out", str(spikes), "--quiet"]) == 0
    assert spikes.read_text().count("\n") >= 4
    # without --quiet, the automatic choice of reference timescales is said once
    assert main(["population", "--model", str(model_file), "--g-s", "8", "--g-u", "1", "-n", "2", "--out", str(tmp_path / "p2.csv")]) == 0
    assert "dic-sbi: DIC reference timescales chosen at V_ref = -55 mV" in capsys.readouterr().err


def test_train_and_infer_with_the_model_file(model_file, tmp_path):
    """``dic-sbi train --model file.py:NAME`` writes a posterior that ``infer`` (CLI and Python) uses on a
    recording's spike times."""
    from dic_sbi.cli import main
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info

    ref = f"{model_file}:HH"
    out = tmp_path / "hh_posterior"
    argv = ["train", "--model", ref, "--out", str(out), "--work", str(tmp_path / "work"), "--num-simulations", "300",
            "--noisy-simulations", "0", "--max-epochs", "2", "--hidden-features", "16", "--num-transforms", "1",
            "--heldout-points", "4", "--cells-per-point", "2", "--ppc-points", "2", "--ppc-cells", "2", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    info = pretrained_info(out)
    assert info["model"] == f"{model_file.resolve()}:HH"
    post = load_pretrained(out)
    assert post.model is get_model(ref)
    # a "recording": spike times of one cell of the model, as the simulate command writes them (CSV, ms)
    hh = get_model(ref)
    cell = dic_sbi.degenerate_population(hh, 8.0, 1.0, 1, seed=11)
    res = dic_sbi.simulate(hh, cell, progress=False)
    recording = tmp_path / "cell.csv"
    times = ", ".join(f"{t:.4f}" for t in res.times)
    recording.write_text(textwrap.dedent(f'ID,spike_times\n0,"[{times}]"\n'))
    result = dic_sbi.infer(recording, ref, 20, posterior=out, seed=0)
    (train,) = result.trains
    assert train.conductances.shape == (20, 5) and np.all(train.conductances >= 0)
    d = dic_sbi.dics(hh, train.conductances)
    np.testing.assert_allclose(d[:, 1:], train.dics, atol=1e-6)  # every cell has exactly its sampled DICs
    assert main(["infer", str(recording), "--model", ref, "--posterior", str(out), "-n", "5", "--out",
                 str(tmp_path / "inferred"), "--no-plots", "--quiet"]) == 0  # fmt: skip
    assert (tmp_path / "inferred" / "population.csv").is_file()
    with pytest.raises(InvalidInputError, match="has no shipped posterior; train one"):
        dic_sbi.infer(recording, ref, 5)


def _as_plain_callables(model):
    """``model`` rewritten with every steady state and time constant a plain function (no ``derivative``)."""
    from dic_sbi.models import CalciumGate, InstantaneousGate

    def plain(f):
        return lambda V: f(V)

    new = {}
    for g in model.gate_list():
        if isinstance(g, Gate):
            new[id(g)] = Gate(g.name, plain(g.steady_state), plain(g.time_constant))
        elif isinstance(g, CalciumGate):
            new[id(g)] = CalciumGate(g.name, plain(g.voltage_factor), plain(g.time_constant), K=g.K)
        elif isinstance(g, InstantaneousGate):
            new[id(g)] = InstantaneousGate(g.name, plain(g.steady_state))
        else:  # the ERG scheme stays
            new[id(g)] = g
    channels = tuple(Channel(c.name, c.reversal, tuple((new[id(g)], p) for g, p in c.gates), c.carries_calcium)
                     for c in model.channels)  # fmt: skip
    import dataclasses

    return dataclasses.replace(model, name=f"{model.name}_plain", channels=channels)


@pytest.mark.parametrize("name", ["stg", "da"])
def test_the_built_in_models_written_with_plain_callables_give_the_same_dics_and_spikes(name):
    """Calcium gates, instantaneous gates and numerical derivatives: the same model, any way it is written."""
    model = get_model(name)
    plain = _as_plain_callables(model)
    assert not hasattr(plain.gate_list()[0].steady_state, "derivative")
    g = dic_sbi.data.example_cells()[name]
    V = np.linspace(-70.0, -40.0, 13)
    np.testing.assert_allclose(dic_sbi.dics(plain, g, V), dic_sbi.dics(model, g, V), rtol=1e-7, atol=1e-7)
    pop = dic_sbi.degenerate_population(model, 4.0, 5.0, 3, seed=1)
    np.testing.assert_allclose(dic_sbi.dics(plain, pop)[:, 1:], np.tile([4.0, 5.0], (3, 1)), atol=1e-6)
    a = dic_sbi.simulate(model, g, duration=2000.0, transient=500.0, n_threads=1, progress=False)
    b = dic_sbi.simulate(plain, g, duration=2000.0, transient=500.0, n_threads=1, progress=False)
    assert a.times.size >= 3 and np.array_equal(a.times, b.times)  # the same tables, so the same spikes
