"""Class-matched populations: posterior cells filtered by simulation until n fire like the observation."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dic_sbi
from dic_sbi.cli import main
from dic_sbi.core.simulator import SimulationResult
from dic_sbi.errors import InvalidInputError
from dic_sbi.sbi.matching import class_matched_population
from dic_sbi.sbi.pretrained import load_pretrained

SHORT = dict(duration=2500.0, transient=1000.0)


def test_take_and_concatenate_keep_each_cells_spikes():
    g = dic_sbi.degenerate_population("stg", [4.0, -2.0], [5.0, 3.0], 3, seed=0).reshape(-1, 8)
    res = dic_sbi.simulate("stg", g, **SHORT, noise_std=np.linspace(0, 2, 6), seed=1)
    part = res.take([4, 0, 2])
    for j, i in enumerate([4, 0, 2]):
        np.testing.assert_array_equal(part.spike_times(j), res.spike_times(i))
    np.testing.assert_array_equal(part.noise_std, res.noise_std[[4, 0, 2]])
    joined = SimulationResult.concatenate([res.take([0, 1]), res.take([2, 3, 4, 5])])
    np.testing.assert_array_equal(joined.times, res.times)
    np.testing.assert_array_equal(joined.offsets, res.offsets)
    np.testing.assert_array_equal(joined.conductances, res.conductances)
    assert joined.features()["firing_class"].tolist() == res.features()["firing_class"].tolist()
    with pytest.raises(IndexError):
        res.take([6])
    other = dic_sbi.simulate("stg", g[:1], duration=2000.0, transient=1000.0)
    with pytest.raises(InvalidInputError, match="protocols"):
        SimulationResult.concatenate([res, other])


@pytest.fixture(scope="module")
def observation():
    post = load_pretrained("stg")
    cell = dic_sbi.degenerate_population("stg", 4.0, 5.0, 1, seed=3)[0]
    res = dic_sbi.simulate("stg", cell, **SHORT)
    klass = str(res.features()["firing_class"][0])
    return post, post.observe(res.spiketrain(0), noise_std=0.0), klass


def test_every_kept_cell_fires_in_the_observed_class(observation):
    post, x, klass = observation
    mp = class_matched_population(post, x, klass, 30, seed=0, **SHORT)
    assert mp.complete and len(mp.conductances) == len(mp.dics) == len(mp.simulation) == 30
    assert mp.drawn >= 30 and 30 <= mp.matching <= mp.drawn and 0 <= mp.first_fraction <= 1
    # independent check: re-simulate the kept cells (noise-free, so deterministic)
    again = dic_sbi.simulate("stg", mp.conductances, **SHORT, dt=post.simulator.dt)  # the protocol it used
    assert set(again.features()["firing_class"]) == {klass}
    np.testing.assert_array_equal(again.times, mp.simulation.times)
    np.testing.assert_allclose(dic_sbi.dics("stg", mp.conductances)[:, 1:], mp.dics, rtol=1e-5, atol=1e-4)
    same_seed = class_matched_population(post, x, klass, 30, seed=0, **SHORT)
    np.testing.assert_array_equal(same_seed.conductances, mp.conductances)


def test_a_rare_class_stops_at_max_draws(observation):
    post, x, klass = observation
    other = "silent"
    mp = class_matched_population(post, x, other, 40, max_draws=60, seed=1, **SHORT)
    assert mp.drawn == 60 and not mp.complete and len(mp.conductances) == mp.matching < 40
    with pytest.raises(InvalidInputError, match="max_draws"):
        class_matched_population(post, x, klass, 10, max_draws=5)
    with pytest.raises(InvalidInputError, match="observed_class"):
        class_matched_population(post, x, "tonic", 10)
    with pytest.raises(InvalidInputError, match="noise_repeats"):
        class_matched_population(post, x, klass, 10, noise_std=2.0, noise_repeats=0)


def test_with_noise_each_kept_cell_matched_every_realisation(observation):
    post, x, klass = observation
    mp = class_matched_population(post, x, klass, 20, noise_std=3.0, noise_repeats=3, seed=4, **SHORT)
    assert mp.complete and len(mp.conductances) == 20
    assert set(mp.simulation.features()["firing_class"]) == {klass}  # the first realisation is the one kept
    assert mp.simulation.noise_std == 3.0


def test_infer_match_class_end_to_end(tmp_path, capsys):
    from dic_sbi.data import example_recording

    out = tmp_path / "matched"
    assert main(["infer", example_recording("stg"), "--model", "stg", "-n", "25", "--match-class", "--seed", "2",
                 "--noise-std", "1", "--no-plots", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    fid = report["trains"][0]["fidelity"]
    assert report["validated"] and fid["simulated_cells"] == 25 and fid["fraction_matching_class"] == 1.0
    cm = fid["class_matching"]
    assert cm["kept"] == 25 and cm["complete"] and cm["drawn"] >= 25 and 0 <= cm["unfiltered_fraction_matching"] <= 1
    assert "before filtering" in capsys.readouterr().out
    bad = tmp_path / "bad"
    assert main(["infer", example_recording("stg"), "--model", "stg", "-n", "25", "--match-class", "--max-draws", "10",
                 "--out", str(bad), "--quiet"]) != 0
    assert not bad.exists()


def test_infer_when_no_drawn_cell_matches_fails_clearly_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import dic_sbi.sbi.matching as matching
    from dic_sbi.data import example_recording

    def none_match(post, x, klass, n, **kw):
        return matching.MatchedPopulation(np.zeros((0, 2)), np.zeros((0, 8)), None, 40, 0, 0.0, False)

    monkeypatch.setattr(matching, "class_matched_population", none_match)
    out = tmp_path / "none"
    assert main(["infer", example_recording("stg"), "--model", "stg", "-n", "20", "--match-class", "--max-draws", "40",
                 "--out", str(out), "--quiet"]) != 0
    assert "none of the 40 cells drawn" in capsys.readouterr().err
    assert not out.exists()


def test_infer_match_fires_like_the_recording(tmp_path, capsys):
    """--match: every kept cell fires like the noise-free recording (class, rate, bursts), cost reported."""
    from dic_sbi.data import example_recording
    from dic_sbi.spiketrains import fires_like

    out = tmp_path / "matched"
    assert main(["infer", example_recording("stg"), "--model", "stg", "-n", "20", "--match", "--seed", "3",
                 "--no-plots", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    fid = report["trains"][0]["fidelity"]
    assert fid["fraction_faithful"] == 1.0 and fid["simulated_cells"] == 20
    cm = fid["class_matching"]
    assert cm["criterion"] == {"mean_rate": 0.1, "burst_period": 0.1, "spikes_per_burst": 1.0}
    assert cm["simulations"] >= cm["drawn"] >= 20 and cm["simulations_per_kept_cell"] == cm["simulations"] / 20
    assert "fire like the recording" in capsys.readouterr().out
    res = dic_sbi.infer(example_recording("stg"), "stg", 10, seed=1, match={"mean_rate": 0.02})
    t = res.trains[0]
    assert fires_like(t.simulation.features(), t.observed_features, {"mean_rate": 0.02})[1].all()


@pytest.mark.parametrize("arg, msg", [("rate", "NAME=VALUE"), ("speed=0.1", "NAME=VALUE"), ("rate=x", "number"),
                                      ("rate=-1", ">= 0")])
def test_match_tolerances_bad_input(arg, msg, tmp_path, capsys):
    from dic_sbi.data import example_recording

    assert main(["infer", example_recording("stg"), "--model", "stg", "--match", arg, "--out", str(tmp_path / "o")]) != 0
    assert msg in capsys.readouterr().err and not (tmp_path / "o").exists()
    with pytest.raises(InvalidInputError, match="match"):
        dic_sbi.infer(example_recording("stg"), "stg", 5, match=True, match_class=True)
