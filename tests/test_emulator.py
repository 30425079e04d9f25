"""The firing emulator and infer's screen: probabilities, training, selection, storage, infer and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats

import dic_sbi
import dic_sbi.data
from dic_sbi.sbi.emulator import FiringEmulator, _log_interval, emulator_accuracy, screen_population, select_faithful, train_emulator
from dic_sbi.spiketrains import features_from_csr, fires_like

PROTO = dict(duration=2000.0, transient=1000.0)


@pytest.fixture(scope="module")
def stg_cells():
    """1 500 STG cells of the DIC prior's compensation and their noise-free features (a short protocol)."""
    rng = np.random.default_rng(3)
    t = dic_sbi.sbi.DICPrior("stg").sample((1500,), seed=3).numpy()
    g = dic_sbi.degenerate_population("stg", t[:, 0], t[:, 1], 1, seed=rng)[:, 0]
    g = g[np.isfinite(g).all(axis=1)]
    r = dic_sbi.simulate("stg", g, progress=False, **PROTO)
    return g, features_from_csr(r.times, r.offsets, r.t_start, r.t_stop)


def test_log_interval_matches_the_normal_cdf_and_stays_finite_in_the_tails():
    mean = np.array([0.0, 0.5, -3.0, 2.0, 0.1])
    sd = np.array([1.0, 0.2, 1.5, 0.3, 2.0])
    for lo, hi in [(-1.0, 1.0), (0.4, 0.6), (-np.inf, 0.0), (1.0, np.inf), (-np.inf, np.inf)]:
        ref = np.log(stats.norm.cdf((hi - mean) / sd) - stats.norm.cdf((lo - mean) / sd))
        np.testing.assert_allclose(_log_interval(mean, sd, lo, hi), ref, rtol=1e-9, atol=1e-12)
    far = _log_interval(np.array([40.0, 60.0]), np.array([1.0, 1.0]), -1.0, 1.0)  # scipy's difference is log 0
    assert np.isfinite(far).all() and far[0] > far[1]  # still ranked by how far off


def test_log_prob_faithful_is_the_product_of_the_interval_probabilities(monkeypatch):
    """With known Gaussians per member, the score is the mixture of class × interval probabilities (an independent
    computation with scipy), including the single-burst rule."""
    emu = FiringEmulator(8, members=2)
    mean = np.log(np.array([[[5.0, 800.0, 6.0]], [[5.5, 700.0, 9.0]]]))
    sd = np.array([[[0.05, 0.1, 0.2]], [[0.3, 0.1, 0.1]]])
    log_class = np.log(np.array([[[0.1, 0.2, 0.7]], [[0.05, 0.05, 0.9]]]))
    shown = np.log(np.array([[0.8], [0.6]]))
    monkeypatch.setattr(emu, "predict", lambda g, noise_std=None: {"log_class": log_class, "mean": mean, "sd": sd,
                                                   "log_period_shown": shown, "log_period_hidden": np.log1p(-np.exp(shown))})
    obs = {"firing_class": "bursting", "mean_rate": 5.2, "burst_period": 760.0, "spikes_per_burst": 7.0}

    def p(j, lo, hi, m):
        return stats.norm.cdf((np.log(hi) - mean[m, 0, j]) / sd[m, 0, j]) - stats.norm.cdf((np.log(lo) - mean[m, 0, j]) / sd[m, 0, j])

    want = np.mean([0.7 * 0.8 * p(0, 5.2 * 0.9, 5.2 * 1.1, 0) * p(1, 760 * 0.9, 760 * 1.1, 0) * p(2, 6, 8, 0),
                    0.9 * 0.6 * p(0, 5.2 * 0.9, 5.2 * 1.1, 1) * p(1, 760 * 0.9, 760 * 1.1, 1) * p(2, 6, 8, 1)])
    np.testing.assert_allclose(np.exp(emu.log_prob_faithful(np.ones((1, 8)), obs)), want, rtol=1e-9)
    single = dict(obs, burst_period=float("nan"))  # one burst in the window: cells must show no period either
    want1 = np.mean([0.7 * 0.2 * p(0, 4.68, 5.72, 0) * p(2, 6, 8, 0), 0.9 * 0.4 * p(0, 4.68, 5.72, 1) * p(2, 6, 8, 1)])
    np.testing.assert_allclose(np.exp(emu.log_prob_faithful(np.ones((1, 8)), single)), want1, rtol=1e-9)
    wider = np.exp(emu.log_prob_faithful(np.ones((1, 8)), obs, {"spikes_per_burst": 3.0}))
    assert wider > want  # a looser tolerance can only raise it
    spiking = {"firing_class": "spiking", "mean_rate": 5.2, "burst_period": np.nan, "spikes_per_burst": np.nan}
    np.testing.assert_allclose(np.exp(emu.log_prob_faithful(np.ones((1, 8)), spiking)),
                               np.mean([0.2 * p(0, 4.68, 5.72, 0), 0.05 * p(0, 4.68, 5.72, 1)]), rtol=1e-9)
    with pytest.raises(dic_sbi.InvalidInputError, match="firing class"):
        emu.log_prob_faithful(np.ones((1, 8)), dict(obs, firing_class="tonic"))
    with pytest.raises(dic_sbi.InvalidInputError, match="shape"):
        FiringEmulator(8).log_prob_faithful(np.ones((2, 7)), obs)


def test_trained_emulator_screens_cells_better_than_chance(stg_cells):
    """Trained on simulations, the emulator's top-ranked held-back cells fire like an observed cell far more often
    than the held-back cells at large (the property infer relies on), and it predicts classes and rates."""
    g, f = stg_cells
    n = len(g)
    fit, test = np.arange(n - 300), np.arange(n - 300, n)
    emu = train_emulator(g[fit], {k: np.asarray(v)[fit] for k, v in f.items()}, members=2, width=64, epochs=40, seed=0)
    acc = emulator_accuracy(emu, g[test], {k: np.asarray(v)[test] for k, v in f.items()})
    klass = np.asarray(f["firing_class"])[test]
    majority = max(np.mean(klass == c) for c in ("silent", "spiking", "bursting"))
    assert acc["spiking"]["class"] > 0.85 and acc["spiking"]["mean_rate"] > 0.2
    code = emu.predict(g[test])["log_class"].mean(axis=0).argmax(axis=1)
    assert np.mean(np.array(["silent", "spiking", "bursting"])[code] == klass) > majority + 0.1
    ft = {k: np.asarray(v)[test] for k, v in f.items()}
    screened, chance = [], []
    firing = np.flatnonzero(klass != "silent")[:12]
    for i in firing:  # each firing held-back cell in turn is the recording; the others are the candidates
        obs = {k: v[i] for k, v in ft.items()}
        others = np.delete(np.arange(test.size), i)
        ok = fires_like({k: v[others] for k, v in ft.items()}, obs)[1]
        score = emu.log_prob_faithful(g[test][others], obs)
        screened.append(ok[np.argsort(-score)[:10]].mean())
        chance.append(ok.mean())
    assert np.mean(screened) > 2.5 * np.mean(chance) and np.mean(screened) > 0.25


@pytest.fixture(scope="module")
def stg_noisy(stg_cells):
    """The same STG cells simulated again with current noise σ = 4 (noise turns some tonic trains irregular
    enough to count as bursting, CV_ISI > 0.15), and a noise-aware emulator trained on both sets but the last
    300 cells of each."""
    g, f = stg_cells
    r = dic_sbi.simulate("stg", g, progress=False, noise_std=4.0, seed=5, **PROTO)
    fn = features_from_csr(r.times, r.offsets, r.t_start, r.t_stop)
    fit = np.arange(len(g) - 300)
    both = {k: np.concatenate([np.asarray(f[k])[fit], np.asarray(fn[k])[fit]]) for k in f}
    sigma = np.concatenate([np.zeros(fit.size), np.full(fit.size, 4.0)])
    # burst_weight 1: unweighted class probabilities, so that their means are the class shares
    emu = train_emulator(np.concatenate([g[fit], g[fit]]), both, members=1, width=64, epochs=200, seed=0, noise_std=sigma,
                         burst_weight=1.0)  # fmt: skip
    return fn, emu


def test_noise_aware_emulator_learns_what_noise_does_to_the_firing(stg_cells, stg_noisy):
    """Told σ, the emulator predicts the class shares of noisy simulations of held-back cells, not those of their
    noise-free ones, and keeps predicting the noise-free ones at σ = 0; σ outside what it knows is refused."""
    g, f = stg_cells
    fn, emu = stg_noisy
    test = np.arange(len(g) - 300, len(g))
    assert emu.noise_input and emu.noise_range == (0.0, 4.0) and emu.settings["noise_input"] is True
    share = {s: np.exp(emu.predict(g[test], s)["log_class"]).mean(axis=(0, 1)) for s in (0.0, 4.0)}
    truth = {s: np.array([np.mean(np.asarray(ff["firing_class"])[test] == c) for c in ("silent", "spiking", "bursting")])
             for s, ff in ((0.0, f), (4.0, fn))}  # fmt: skip
    assert truth[4.0][2] > truth[0.0][2] + 0.04  # what the test relies on: noise makes more cells irregular
    for s in (0.0, 4.0):
        np.testing.assert_allclose(share[s], truth[s], atol=0.03)
    acc = emulator_accuracy(emu, g[test], {k: np.asarray(v)[test] for k, v in fn.items()}, noise_std=4.0)
    assert acc["spiking"]["class"] > 0.8
    per_row = emu.predict(g[test[:3]], np.array([0.0, 4.0, 0.0]))["mean"]
    np.testing.assert_allclose(per_row[:, [0, 2]], emu.predict(g[test[[0, 2]]], 0.0)["mean"], rtol=1e-5, atol=1e-5)
    for bad in (4.5, -1.0, np.nan, np.ones(2)):
        with pytest.raises(dic_sbi.InvalidInputError, match="noise_std"):
            emu.predict(g[test[:3]], bad)
    plain = FiringEmulator(8)
    assert not plain.noise_input and plain.noise_range == (0.0, 0.0) and "noise_input" not in plain.settings
    with pytest.raises(dic_sbi.InvalidInputError, match="noise-free"):
        plain.predict(g[:2], 1.0)
    with pytest.raises(dic_sbi.InvalidInputError, match="noise_std"):
        train_emulator(g, f, noise_std=np.zeros(len(g)), epochs=1)  # no noisy row: nothing to learn σ from
    with pytest.raises(dic_sbi.InvalidInputError, match="noise_max"):
        train_emulator(g, f, noise_std=np.full(len(g), 2.0), noise_max=1.0, epochs=1)  # below a σ given


def test_train_emulator_bad_input(stg_cells):
    g, f = stg_cells
    with pytest.raises(dic_sbi.InvalidInputError, match="one row"):
        train_emulator(g[:10], f)
    with pytest.raises(dic_sbi.InvalidInputError, match="usable rows"):
        train_emulator(g[:50], {k: np.asarray(v)[:50] for k, v in f.items()}, epochs=1)


def test_screen_population_keeps_the_n_best_in_draw_order_with_their_dics(monkeypatch):
    emu = FiringEmulator(3, members=1)
    score = np.array([0.1, 5.0, -2.0, 3.0, np.nan, 4.0])
    monkeypatch.setattr(emu, "log_prob_faithful", lambda g, obs, tol=None, noise_std=None: g[:, 0])
    g = np.column_stack([score, np.ones(6), np.ones(6)])
    g[4] = np.nan  # an invalid candidate is never kept
    d = np.arange(12.0).reshape(6, 2)
    calls = []

    def draw(k):
        calls.append(k)
        return g[:k], d[:k]

    kept, dk, info = screen_population(draw, emu, {"firing_class": "spiking", "mean_rate": 1.0}, 2, screen=3)
    assert calls == [6] and info["screen"] == 3 and info["drawn"] == 6
    np.testing.assert_array_equal(kept[:, 0], [5.0, 4.0])  # the two best, in draw order (rows 1, 5)
    np.testing.assert_array_equal(dk, d[[1, 5]])
    keep, logp = select_faithful(g, emu, {"firing_class": "spiking", "mean_rate": 1.0}, 3)
    np.testing.assert_array_equal(keep, [1, 3, 5])
    assert logp[4] == -np.inf and logp[1] == 5.0
    with pytest.raises(dic_sbi.InvalidInputError, match="screen"):
        screen_population(draw, emu, {}, 2, screen=0)


@pytest.fixture(scope="module")
def stg_with_emulator(tmp_path_factory, stg_cells):
    """The shipped STG posterior given a small emulator, saved and reloaded."""
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info, save_pretrained

    g, f = stg_cells
    emu = train_emulator(g, f, members=1, width=32, epochs=5, seed=1)
    shipped = load_pretrained("stg")
    post = dic_sbi.sbi.DICPosterior(shipped.posterior, "stg", simulator=shipped.simulator, conditions=shipped.conditions,
                                    free_conductances=shipped.free_conductances, emulator=emu)
    path = tmp_path_factory.mktemp("emu") / "stg_emu"
    save_pretrained(post, path, estimator=pretrained_info("stg")["estimator"])
    return emu, path


def test_save_and_load_keep_the_emulator(stg_with_emulator):
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info

    emu, path = stg_with_emulator
    assert path.with_suffix(".emulator.pt").is_file()
    assert pretrained_info(path)["emulator"]["members"] == 1
    back = load_pretrained(path)
    cells = dic_sbi.degenerate_population("stg", [3.0], [6.0], 5, seed=0)[0]
    np.testing.assert_allclose(back.emulator.predict(cells)["mean"], emu.predict(cells)["mean"], rtol=1e-6)
    with pytest.raises(dic_sbi.InvalidInputError, match="emulator"):
        dic_sbi.sbi.DICPosterior(back.posterior, "da", emulator=emu)  # 8 conductances, DA has 7
    with pytest.raises(dic_sbi.InvalidInputError, match="FiringEmulator"):
        dic_sbi.sbi.DICPosterior(back.posterior, "stg", emulator=object())


def test_infer_screens_by_default_with_an_emulator(stg_with_emulator):
    _, path = stg_with_emulator
    rec = dic_sbi.data.example_recording("stg")
    res = dic_sbi.infer(rec, "stg", 40, posterior=str(path), seed=0, preview=0, traces=0, trains=0)
    s = res.report()["trains"][0]["screening"]
    assert s["screen"] == dic_sbi.inference.DEFAULT_SCREEN and s["drawn"] == 40 * s["screen"]
    assert 0.0 <= s["emulated_fidelity_drawn"] <= s["emulated_fidelity_kept"] <= 1.0
    g, d = res.trains[0].conductances, res.trains[0].dics
    assert g.shape == (40, 8)
    np.testing.assert_allclose(dic_sbi.dics("stg", g)[:, 1:], d, atol=1e-5)  # every kept cell keeps its DICs
    again = dic_sbi.infer(rec, "stg", 40, posterior=str(path), seed=0, preview=0, traces=0, trains=0)
    np.testing.assert_array_equal(again.trains[0].conductances, g)  # seeded: reproducible
    plain = dic_sbi.infer(rec, "stg", 40, posterior=str(path), seed=0, preview=0, traces=0, trains=0, screen=1)
    assert "screening" not in plain.report()["trains"][0]
    three = dic_sbi.infer(rec, "stg", 40, posterior=str(path), seed=0, preview=0, traces=0, trains=0, screen=3)
    assert three.report()["trains"][0]["screening"]["drawn"] == 120
    noisy = dic_sbi.infer(rec, "stg", 40, posterior=str(path), seed=0, preview=0, traces=0, trains=0, noise_std=5.0)
    assert "screening" not in noisy.report()["trains"][0]  # a noise-free emulator does not screen noisy recordings by default
    for bad in (0, 1.5, "3", dic_sbi.inference.MAX_SCREEN + 1):
        with pytest.raises(dic_sbi.InvalidInputError, match="screen"):
            dic_sbi.infer(rec, "stg", 40, posterior=str(path), screen=bad)


def test_a_noise_aware_emulator_is_kept_and_screens_noisy_recordings_told_their_sigma(tmp_path, stg_noisy, monkeypatch):
    """Saved with a posterior it comes back noise-aware; infer then screens a noisy recording by default, telling
    the emulator the recording's σ, and refuses a screen at a σ beyond what the emulator was trained on."""
    import dic_sbi.sbi.emulator as emulator_module
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info, save_pretrained

    _, emu = stg_noisy
    shipped = load_pretrained("stg")
    post = dic_sbi.sbi.DICPosterior(shipped.posterior, "stg", simulator=shipped.simulator, conditions=shipped.conditions,
                                    free_conductances=shipped.free_conductances, emulator=emu)  # fmt: skip
    path = tmp_path / "stg_noisy_emu"
    save_pretrained(post, path, estimator=pretrained_info("stg")["estimator"], info={"emulator": {"noise_input": False}})
    assert pretrained_info(path)["emulator"]["noise_input"] is True  # the emulator's own setting, not a stale one
    back = load_pretrained(path).emulator
    assert back.noise_range == (0.0, 4.0)
    cells = dic_sbi.degenerate_population("stg", [3.0], [6.0], 5, seed=0)[0]
    np.testing.assert_allclose(back.predict(cells, 2.5)["mean"], emu.predict(cells, 2.5)["mean"], rtol=1e-6)
    told = []
    real = emulator_module.select_faithful
    monkeypatch.setattr(emulator_module, "select_faithful",
                        lambda *a, **k: told.append(k.get("noise_std")) or real(*a, **k))  # fmt: skip
    rec = dic_sbi.data.example_recording("stg")
    kw = dict(posterior=str(path), seed=0, preview=0, traces=0, trains=0)
    noisy = dic_sbi.infer(rec, "stg", 20, noise_std=2.5, **kw)
    s = noisy.report()["trains"][0]["screening"]
    assert s["screen"] == dic_sbi.inference.DEFAULT_SCREEN and s["noise_std"] == 2.5 and told == [2.5]
    clean = dic_sbi.infer(rec, "stg", 20, **kw)
    assert clean.report()["trains"][0]["screening"]["drawn"] == 20 * dic_sbi.inference.DEFAULT_SCREEN and told[-1] == 0.0
    loud = dic_sbi.infer(rec, "stg", 20, noise_std=5.0, **kw)  # beyond the emulator's σ: no screen by default
    assert "screening" not in loud.report()["trains"][0]
    with pytest.raises(dic_sbi.InvalidInputError, match="σ up to 4"):
        dic_sbi.infer(rec, "stg", 20, noise_std=5.0, screen=3, **kw)


def test_screen_needs_an_emulator():
    from dic_sbi.sbi.pretrained import load_pretrained

    shipped = load_pretrained("stg")
    bare = dic_sbi.sbi.DICPosterior(shipped.posterior, "stg", simulator=shipped.simulator, conditions=shipped.conditions)
    rec = dic_sbi.data.example_recording("stg")
    with pytest.raises(dic_sbi.InvalidInputError, match="firing emulator"):
        dic_sbi.infer(rec, "stg", 10, posterior=bare, screen=4)
    res = dic_sbi.infer(rec, "stg", 10, posterior=bare, seed=0, preview=0, traces=0, trains=0)  # default: no screen
    assert "screening" not in res.report()["trains"][0]


def test_population_fidelity_scores_the_screened_population(stg_with_emulator):
    from dic_sbi.sbi.evaluation import heldout_set, population_fidelity
    from dic_sbi.sbi.pretrained import load_pretrained

    _, path = stg_with_emulator
    post = load_pretrained(path)
    ho = heldout_set("stg", n_points=8, cells_per_point=1, seed=4, output=post.simulator.output, **PROTO)
    r = population_fidelity(post, ho, n_observations=2, n_cells=5, seed=1, screen=3)
    assert {"seed_law", "learned", "screened"} <= set(r)
    assert 0.0 <= r["screened"]["non_silent"]["fidelity"] <= 1.0
    bare = dic_sbi.sbi.DICPosterior(post.posterior, "stg", simulator=post.simulator, conditions=post.conditions)
    with pytest.raises(dic_sbi.InvalidInputError, match="emulator"):
        population_fidelity(bare, ho, n_observations=2, n_cells=5, seed=1, screen=3)


def test_cli_train_emulator_writes_a_posterior_that_infer_screens_with(tmp_path):
    out = tmp_path / "da_emu"
    cmd = [sys.executable, "-m", "dic_sbi.cli", "train-emulator", "--posterior", "da", "--out", str(out), "--work",
           str(tmp_path / "work"), "--num-simulations", "300", "--focus-simulations", "100", "--members", "1",
           "--width", "16", "--epochs", "2", "--chunk-size", "150", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for suffix in (".pt", ".free.pt", ".emulator.pt", ".json"):
        assert out.with_suffix(suffix).is_file()
    meta = json.loads(out.with_suffix(".json").read_text())
    rec = meta["emulator"]
    assert rec["command"].startswith("dic-sbi train-emulator --posterior da")
    shipped = dic_sbi.sbi.pretrained.pretrained_info("da")
    boxes = [c["box"] for c in shipped["free_conductances"]["campaigns"] if "box" in c]
    assert [c["box"] for c in rec["campaigns"][1:]] == boxes and all(c["num"] == 100 for c in rec["campaigns"][1:])
    assert rec["training"]["rows"] + rec["accuracy"]["held_back_rows"] == 300 + 100 * len(boxes)
    assert meta["free_conductances"] == shipped["free_conductances"] and meta["metrics"] == shipped["metrics"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "--overwrite" in again.stderr  # nothing replaced without it
    res = dic_sbi.infer(dic_sbi.data.example_recording("da"), "da", 20, posterior=str(out), seed=0, preview=0, traces=0,
                        trains=0)  # fmt: skip
    assert res.report()["trains"][0]["screening"]["drawn"] == 20 * dic_sbi.inference.DEFAULT_SCREEN


def test_cli_train_emulator_with_noisy_simulations_writes_a_noise_aware_emulator(tmp_path, capsys):
    """--noisy-simulations adds a campaign with σ drawn per cell; the emulator takes σ, its accuracy is reported
    for noise-free and noisy held-back cells apart, and the stored command reproduces the settings."""
    from dic_sbi.cli import main
    from dic_sbi.sbi.pretrained import load_pretrained

    out = tmp_path / "stg_noisy"
    argv = ["train-emulator", "--posterior", "stg", "--out", str(out), "--work", str(tmp_path / "work"),
            "--num-simulations", "300", "--focus-simulations", "0", "--noisy-simulations", "300", "--noise-std", "1,3",
            "--width", "16", "--epochs", "2", "--chunk-size", "150", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    rec = json.loads(out.with_suffix(".json").read_text())["emulator"]
    assert rec["noise_input"] is True and rec["training"]["noise_std"] == [1.0, 3.0]
    assert [c["noise_std"] for c in rec["campaigns"]] == [0.0, [1.0, 3.0]]
    acc = rec["accuracy"]
    assert acc["held_back_rows"] + acc["noisy"]["held_back_rows"] + rec["training"]["rows"] == 600
    assert acc["noisy"]["held_back_rows"] > 0 and acc["noisy"]["noise_std"] == [1.0, 3.0]
    assert "--noisy-simulations 300 --noisy-focus-simulations 0 --noise-std 1,3" in rec["command"]
    lo, hi = load_pretrained(out).emulator.noise_range
    assert (lo, hi) == (0.0, 3.0)  # the range drawn from, not just the largest σ fitted
    capsys.readouterr()
    assert main(argv[:-1] + ["--noise-std", "2,1", "--out", str(tmp_path / "bad"), "--quiet"]) != 0
    assert "--noise-std: expected a range" in capsys.readouterr().err  # before any simulation
