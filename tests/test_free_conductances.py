"""q(z | t, x), the learned law of the compensation's free draws: densities, sampling, training, DICPosterior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

import dic_sbi
import dic_sbi.data
import dic_sbi.io
from dic_sbi.core import populations as P
from dic_sbi.sbi.free_conductances import FreeConductanceEstimator, train_free_conductances


class _StandardNormalNet:
    """A conditional 'flow' whose law of w is N(mu, 1) whatever the condition: a known density to test against."""

    def __init__(self, dim: int, mu: float = 0.0) -> None:
        self.dim, self.mu = dim, mu

    def eval(self):
        return self

    def sample(self, shape, condition):
        return self.mu + torch.randn(tuple(shape) + (condition.shape[0], self.dim))

    def log_prob(self, w, condition):
        return torch.distributions.Normal(self.mu, 1.0).log_prob(w).sum(-1)


def _estimator(model="stg", mu=0.0):
    sd = P.seed_distribution(model)
    return FreeConductanceEstimator(_StandardNormalNet(sd.free_index.size + 1, mu), model, x_dim=3), sd


def test_log_prob_draws_is_the_density_of_gleak_and_free_conductances():
    """w ~ N(mu, 1): gleak is log-normal, u_i logit-normal, ḡ_free = (low + width u)·gleak/ref (scipy densities)."""
    est, sd = _estimator(mu=-4.0)
    rng = np.random.default_rng(0)
    w = -4.0 + rng.standard_normal((50, est.n_draws_dim))
    gl, u = est.from_w(w)
    got = est.log_prob_draws(gl, u, np.zeros((50, 2)), torch.zeros(1, 3))
    scale = gl / sd.reference_leak
    logit = np.log(u) - np.log1p(-u)
    want = stats.lognorm.logpdf(gl, s=1.0, scale=np.exp(-4.0))
    # u = sigmoid(v), v ~ N(mu, 1): p(u) = φ(logit u - mu) / (u (1 - u)); then ḡ_i = (low_i + width_i u_i) scale.
    want += (stats.norm.logpdf(logit, loc=-4.0) - np.log(u * (1 - u))).sum(axis=1)
    want -= np.log((sd.free_high - sd.free_low)[None] * scale[:, None]).sum(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_log_density_is_population_density_with_p_replaced_by_q():
    """On the same cells, log_density - population_log_density = log q(z) - log p(z) (no normalisation)."""
    est, sd = _estimator(mu=0.0)
    g = dic_sbi.degenerate_population("stg", [3.0, -8.0], [6.0, 4.0], 20, seed=2).reshape(-1, 8)
    gl, u, on = P.free_draws("stg", g)
    assert on.all()
    parts = P._density_parts(est.model, g, pair=None, calcium_path_tau="model", tol=1e-9, max_iter=30, support_rtol=1e-6)
    got = est.log_density(g, torch.zeros(1, 3), normalize=False)
    want = P.population_log_density("stg", g) - parts.log_p_free + est.log_prob_draws(gl, u, parts.targets, torch.zeros(1, 3))
    np.testing.assert_allclose(got, want, rtol=1e-6)  # the flow evaluates w in float32
    off = g.copy()
    off[:, 0] *= 1.05  # Na is never compensated: off the compensation's set
    assert np.all(est.log_density(off, torch.zeros(1, 3), normalize=False) == -np.inf)


def test_sample_cells_exact_count_and_dics_with_fallback():
    """Every row gets a valid cell with its DICs; a law with no valid mass falls back to the seed law."""
    est, _ = _estimator(mu=0.0)
    t = np.array([[2.0, 6.0]] * 30 + [[-10.0, 8.0]] * 30)
    cells, fallback = est.sample_cells(t, torch.zeros(1, 3), seed=1)
    assert cells.shape == (60, 8) and np.all(np.isfinite(cells)) and np.all(cells >= 0)
    np.testing.assert_allclose(dic_sbi.dics("stg", cells)[:, 1:], t, atol=1e-6)
    assert fallback < 60
    # gleak ~ e^30: every draw is absurd; the rows fall back to the seed law, and say so.
    bad = FreeConductanceEstimator(_StandardNormalNet(5, 30.0), "stg", x_dim=3)
    cells, fallback = bad.sample_cells(t[:4], torch.zeros(1, 3), seed=1, max_rounds=2)
    assert fallback == 4 and np.all(np.isfinite(cells))
    np.testing.assert_allclose(dic_sbi.dics("stg", cells)[:, 1:], t[:4], atol=1e-6)


def test_reachability_counts_valid_draws():
    est, _ = _estimator(mu=0.0)
    rho = est.reachability(np.array([[2.0, 6.0]]), torch.zeros(1, 3), n_draws=400, seed=0)
    gl, u = est.sample_draws(np.repeat([[2.0, 6.0]], 400, axis=0), torch.zeros(1, 3), seed=0)
    _, valid = P.compensate("stg", 2.0, 6.0, gl, u)
    assert rho[0] == pytest.approx(valid.mean())


def test_training_learns_which_draws_fire_like_x():
    """x = a feature that is a function of z (here gleak itself): q(z | t, x) must concentrate gleak on it."""
    rng = np.random.default_rng(0)
    N = 3000
    t = np.column_stack([rng.uniform(1, 10, N), rng.uniform(2, 12, N)])
    g = dic_sbi.degenerate_population("stg", t[:, 0], t[:, 1], 1, seed=rng)[:, 0]
    x = torch.as_tensor(np.column_stack([np.log(g[:, -1]), rng.standard_normal(N)]), dtype=torch.float32)
    est, summary = train_free_conductances("stg", t, g, x, training=dict(max_num_epochs=30), seed=0,
                                           show_progress_bars=False, hidden_features=32, num_transforms=2)
    assert summary["rows"] == N and summary["epochs"] >= 1
    target_log_gl = np.log(0.01)
    cells, fb = est.sample_cells(np.repeat([[5.0, 6.0]], 400, axis=0), torch.tensor([[target_log_gl, 0.0]]), seed=1)
    spread_prior = np.std(np.log(g[:, -1]))
    err = np.abs(np.log(cells[:, -1]) - target_log_gl)
    assert np.median(err) < 0.25 * spread_prior, (np.median(err), spread_prior)
    np.testing.assert_allclose(dic_sbi.dics("stg", cells)[:, 1:], [[5.0, 6.0]] * 400, atol=1e-6)


def test_train_bad_input():
    with pytest.raises(dic_sbi.InvalidInputError, match="expected"):
        train_free_conductances("stg", np.zeros((5, 3)), np.zeros((5, 8)), np.zeros((5, 2)))


def _posterior_with(est):
    from dic_sbi.sbi.pretrained import load_pretrained

    post = load_pretrained("stg")
    return dic_sbi.sbi.DICPosterior(post.posterior, "stg", simulator=post.simulator, conditions=post.conditions,
                                    free_conductances=est), post


def _x_width(model: str = "stg") -> int:
    """Columns of the shipped posterior's x (features and known conditions)."""
    return dic_sbi.sbi.pretrained.load_pretrained(model).x_width


def test_dic_posterior_uses_the_estimator_for_every_sampling_method():
    """sample, sample_batched and map draw their free conductances from q (here: gleak pinned near e^-4.6)."""
    sd = P.seed_distribution("stg")
    x = dic_sbi.sbi.pretrained.load_pretrained("stg").observe(dic_sbi.io.read_recording(dic_sbi.data.example_recording("stg"))[0], noise_std=0.0)
    est = FreeConductanceEstimator(_StandardNormalNet(sd.free_index.size + 1, 0.0), "stg", x_dim=x.shape[-1])
    est.net.mu = torch.tensor([np.log(0.0105)] + [0.0] * sd.free_index.size)
    est.net.log_prob = lambda w, condition: torch.distributions.Normal(est.net.mu, 1.0).log_prob(w).sum(-1)
    est.net.sample = lambda shape, condition: est.net.mu + 0.01 * torch.randn(tuple(shape) + (condition.shape[0], 5))
    post, plain = _posterior_with(est)
    g, t = post.sample((200,), x=x, seed=0, return_dics=True)
    assert g.dtype == torch.float64 and g.shape == (200, 8)
    np.testing.assert_allclose(dic_sbi.dics("stg", g.numpy())[:, 1:], t.double().numpy(), atol=1e-5)
    assert np.allclose(g[:, -1].numpy(), 0.0105, rtol=0.03)  # gleak from q, not the seed law's Gamma
    assert not np.allclose(plain.sample((200,), x=x, seed=0)[:, -1].numpy(), 0.0105, rtol=0.03)
    gb = post.sample_batched((50,), x=torch.cat([x, x]), seed=1)
    assert gb.shape == (50, 2, 8) and np.allclose(gb[..., -1].numpy(), 0.0105, rtol=0.03)
    lp = post.log_prob(g[:20], x=x, normalize=False)
    assert lp.shape == (20,) and torch.isfinite(lp).all()
    lpb = post.log_prob_batched(gb[:5], x=torch.cat([x, x]), normalize=False)
    assert lpb.shape == (5, 2) and torch.isfinite(lpb).all()
    post.set_default_x(x)
    assert np.isclose(post.map(num_cells=50, num_iter=5, num_init_samples=50)[0, -1].item(), 0.0105, rtol=0.03)


def test_save_and_load_pretrained_keep_the_estimator(tmp_path):
    rng = np.random.default_rng(0)
    t = np.column_stack([rng.uniform(1, 10, 300), rng.uniform(2, 12, 300)])
    g = dic_sbi.degenerate_population("stg", t[:, 0], t[:, 1], 1, seed=rng)[:, 0]
    x = torch.as_tensor(rng.standard_normal((300, _x_width())), dtype=torch.float32)
    shipped = dic_sbi.sbi.pretrained.load_pretrained("stg")
    names = dic_sbi.sbi.features.feature_names(shipped.simulator.output, conditions=tuple(shipped.conditions))
    with pytest.raises(dic_sbi.InvalidInputError, match="x_names"):
        train_free_conductances("stg", t, g, x, training=dict(max_num_epochs=1), x_names=names[:-1])
    est, _ = train_free_conductances("stg", t, g, x, training=dict(max_num_epochs=2), seed=0, show_progress_bars=False,
                                     hidden_features=16, num_transforms=1, x_names=names)
    scale = est.net._embedding_net
    assert float(scale.defined_moments) == 1.0  # features scaled where defined (the DIC posteriors' rule)
    post, _ = _posterior_with(est)
    with pytest.raises(dic_sbi.InvalidInputError, match="trained on x of 17 columns"):
        _posterior_with(FreeConductanceEstimator(_StandardNormalNet(6, 0.0), "stg", x_dim=17))
    from dic_sbi.sbi.pretrained import load_pretrained, save_pretrained

    save_pretrained(post, tmp_path / "p", estimator={"density_estimator": "nsf", "hidden_features": 64, "num_transforms": 5})
    assert (tmp_path / "p.free.pt").is_file()
    back = load_pretrained(tmp_path / "p")
    assert back.free_conductances is not None
    assert float(back.free_conductances.net._embedding_net.defined_moments) == 1.0
    cond_t, cond_x = np.array([[3.0, 5.0]]), x[:1]
    gl, u = est.sample_draws(cond_t, cond_x, seed=4)
    np.testing.assert_allclose(back.free_conductances.log_prob_draws(gl, u, cond_t, cond_x),
                               est.log_prob_draws(gl, u, cond_t, cond_x), rtol=1e-6)
    (tmp_path / "p.free.pt").unlink()
    with pytest.raises(dic_sbi.InvalidInputError, match="missing"):
        load_pretrained(tmp_path / "p")


def test_observed_features_read_back_from_x():
    """The fidelity features decoded from summary x equal those computed from the spike times."""
    from dic_sbi.sbi.evaluation import observed_features
    from dic_sbi.spiketrains import features_from_csr

    targets = np.array([[5.0, 8.0], [-8.0, 6.0], [-3.0, 4.0], [12.0, 2.0]])
    g = dic_sbi.degenerate_population("stg", targets[:, 0], targets[:, 1], 3, seed=0).reshape(-1, 8)
    res = dic_sbi.simulate("stg", g, progress=False)
    f = features_from_csr(res.times, res.offsets, res.t_start, res.t_stop)
    back = observed_features(dic_sbi.sbi.summary_statistics(res))
    assert list(back["firing_class"]) == [str(c) for c in f["firing_class"]]
    assert set(back["firing_class"]) >= {"spiking", "bursting"}
    for k in ("mean_rate", "burst_period", "spikes_per_burst"):
        want = np.asarray(f[k], dtype=float)
        fin = np.isfinite(want) & (np.asarray(f["firing_class"]) != "silent")
        np.testing.assert_allclose(back[k][fin], want[fin], rtol=1e-5)


def test_fires_like_definition():
    from dic_sbi.spiketrains import fires_like

    feats = {"firing_class": np.array(["bursting", "bursting", "bursting", "spiking"]),
             "mean_rate": np.array([10.0, 10.5, 10.0, 10.0]), "burst_period": np.array([500.0, 500.0, 560.0, np.nan]),
             "spikes_per_burst": np.array([5.0, 6.0, 5.0, np.nan])}
    obs = {"firing_class": "bursting", "mean_rate": 10.0, "burst_period": 500.0, "spikes_per_burst": 5.0}
    same, ok = fires_like(feats, obs)
    assert same.tolist() == [True, True, True, False] and ok.tolist() == [True, True, False, False]
    _, ok = fires_like(feats, obs, {"burst_period": 0.2})
    assert ok.tolist() == [True, True, True, False]
    # One burst in the observed window: no period. Cells match it on the period only if they have none either.
    single = {"firing_class": "bursting", "mean_rate": 10.0, "burst_period": np.nan, "spikes_per_burst": 40.0}
    cells = {"firing_class": np.array(["bursting"] * 3), "mean_rate": np.array([10.0, 10.0, 10.0]),
             "burst_period": np.array([np.nan, 900.0, np.nan]), "spikes_per_burst": np.array([40.0, 40.0, 45.0])}
    assert fires_like(cells, single)[1].tolist() == [True, False, False]
    from dic_sbi.spiketrains import fidelity_checks

    same, ok, checks = fidelity_checks(feats, obs)
    assert ok.tolist() == fires_like(feats, obs)[1].tolist()
    assert set(checks) == {"mean_rate", "burst_period", "spikes_per_burst"}
    assert checks["burst_period"].tolist() == [True, True, False, False]  # NaN period of the spiking cell
    assert checks["spikes_per_burst"].tolist() == [True, True, True, False]
    assert (same & checks["mean_rate"] & checks["burst_period"] & checks["spikes_per_burst"]).tolist() == fires_like(feats, obs)[1].tolist()
    assert set(fidelity_checks(feats, {"firing_class": "spiking", "mean_rate": 10.0})[2]) == {"mean_rate"}


def test_cli_train_free_conductances_then_infer(tmp_path):
    """The recipe end to end at a tiny budget: files, record, and infer using the learned law."""
    import json
    import subprocess
    import sys

    out = tmp_path / "stg_free"
    cmd = [sys.executable, "-m", "dic_sbi.cli", "train-free-conductances", "--posterior", "stg", "--out", str(out),
           "--work", str(tmp_path / "work"), "--num-simulations", "400", "--max-epochs", "2", "--hidden-features", "16",
           "--num-transforms", "1", "--fidelity-observations", "3", "--fidelity-cells", "4", "--chunk-size", "200",
           "--focus-box=-10,-5,0,5", "--focus-simulations", "100", "--jitter", "0.5,2", "--seed-law-widening", "2", "--defined-scaling", "--recalibration-pairs", "30", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for suffix in (".pt", ".free.pt", ".json"):
        assert out.with_suffix(suffix).is_file()
    meta = json.loads(out.with_suffix(".json").read_text())
    rec = meta["free_conductances"]
    assert rec["command"].startswith("dic-sbi train-free-conductances --posterior stg")
    assert "--focus-box=-10,-5,0,5 --focus-simulations 100" in rec["command"]
    focus = rec["campaigns"][-1]
    assert focus["box"] == [[-10.0, -5.0], [0.0, 5.0]] and focus["num"] == 100 and focus["seed"] == 105
    # Jittered campaigns (x read as a jitter-trained posterior reads it), in their own stores, in the command.
    assert all(c["jitter"] == [0.5, 2.0] and c["store"].endswith("_free_jitter") for c in rec["campaigns"])
    assert "--jitter 0.5,2" in rec["command"]
    # Trained on a seed law twice as wide (in log-width): stores and record name that model; the DIC posterior is
    # still the shipped one over "stg".
    assert all(c["store"].startswith("stg-wide2_dic_") for c in rec["campaigns"]) and rec["model"] == "stg-wide2"
    assert meta["model"] == "stg" and "--seed-law-widening 2" in rec["command"]
    loaded = dic_sbi.sbi.pretrained.load_pretrained(str(out))
    assert loaded.model.name == "stg" and loaded.free_conductances.model is dic_sbi.get_model("stg-wide2")
    # --defined-scaling: the law's condition scaling holds defined-row moments and the undefined rule, reloaded
    from dic_sbi.sbi.embedding import Standardize

    assert rec["command"].endswith("--defined-scaling")
    scale = next(m for m in loaded.free_conductances.net.modules() if isinstance(m, Standardize))
    assert float(scale.defined_moments) == 1.0 and bool((scale.ref_index >= 0).any())
    # The law's location recalibrated on new simulations (seed + 50), kept with the weights and reloaded.
    assert rec["recalibration"]["pairs"] == 30 and rec["recalibration"]["seed"] == 150 and "--recalibration-pairs 30" in rec["command"]
    np.testing.assert_allclose(loaded.free_conductances.w_offset, rec["recalibration"]["w_offset"])
    assert rec["training"]["rows"] > 400 and set(rec["fidelity"]["noise_free"]) >= {"seed_law", "learned"}
    assert 0.0 <= rec["fidelity"]["noise_free"]["learned"]["non_silent"]["fidelity"] <= 1.0
    cal = rec["calibration"]["noise_free"]
    assert cal["n_pairs"] >= 15 and len(cal["sbc_ks_pvals"]) == 8 and np.isfinite(cal["tarp_atc"])
    assert meta["metrics"] == dic_sbi.sbi.pretrained.pretrained_info("stg")["metrics"]  # the DIC posterior's record kept
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "--overwrite" in again.stderr  # nothing replaced without it
    res = dic_sbi.infer(dic_sbi.data.example_recording("stg"), "stg", 50, posterior=str(out), seed=0, preview=0, traces=0)
    assert res.report()["posterior"]["free_conductances"] == "learned q(z | DICs, x)"
    d, g = res.trains[0].dics, res.trains[0].conductances
    assert g.shape == (50, 8)
    np.testing.assert_allclose(dic_sbi.dics("stg", g)[:, 1:], d, atol=1e-5)


def test_population_fidelity_is_reproducible_and_scores_the_seed_law():
    from dic_sbi.sbi.evaluation import heldout_set, population_fidelity
    from dic_sbi.sbi.pretrained import load_pretrained

    shipped = load_pretrained("stg")
    post = dic_sbi.sbi.DICPosterior(shipped.posterior, "stg", simulator=shipped.simulator,
                                    conditions=shipped.conditions)  # the seed law only
    ho = heldout_set("stg", n_points=8, cells_per_point=1, seed=4, duration=2000.0, transient=1000.0,
                     output=shipped.simulator.output)
    a = population_fidelity(post, ho, n_observations=3, n_cells=6, seed=1)
    b = population_fidelity(post, ho, n_observations=3, n_cells=6, seed=1)
    assert a == b and "learned" not in a  # no learned law: only the seed law is scored
    block = a["seed_law"]["non_silent"]
    assert block["n"] == a["n_observations"] <= 3 and 0.0 <= block["fidelity"] <= block["same_class"] <= 1.0
    # each tolerance on its own: a faithful cell passes every one, so fidelity is below each share
    assert "mean_rate" in block["passes"] and all(block["fidelity"] <= v <= 1.0 for v in block["passes"].values())


def test_population_fidelity_at_true_dics_pushes_the_true_dics(monkeypatch):
    """``at_true_dics``: the cells are built on each observation's true DICs, never on posterior samples."""
    import dic_sbi.core.populations as populations
    import dic_sbi.sbi.evaluation as evaluation

    shipped = dic_sbi.sbi.pretrained.load_pretrained("stg")
    post = dic_sbi.sbi.DICPosterior(shipped.posterior, "stg", simulator=shipped.simulator, conditions=shipped.conditions)
    ho = evaluation.heldout_set("stg", n_points=8, cells_per_point=1, seed=4, duration=2000.0, transient=1000.0,
                                output=shipped.simulator.output)  # fmt: skip
    seen = []
    real = populations.degenerate_population

    def spy(model, g_s, g_u, n, **kw):
        seen.append(np.c_[g_s, g_u])
        return real(model, g_s, g_u, n, **kw)

    def no_samples(*args, **kwargs):
        raise AssertionError("posterior samples drawn")

    monkeypatch.setattr(populations, "degenerate_population", spy)
    monkeypatch.setattr(evaluation, "_posterior_samples", no_samples)
    out = evaluation.population_fidelity(post, ho, n_observations=3, n_cells=5, seed=1, at_true_dics=True)
    first = ho.first_of_each_point()
    obs = first[ho.klass[first] > 0][:3]
    assert out["dics"] == "true" and out["n_observations"] == obs.size
    np.testing.assert_allclose(seen[0], np.repeat(ho.theta[torch.as_tensor(obs)].double().numpy(), 5, axis=0))
    with pytest.raises(AssertionError, match="posterior samples"):  # the default does sample the posterior
        evaluation.population_fidelity(post, ho, n_observations=3, n_cells=5, seed=1)


def test_training_jitter_reads_the_training_campaigns():
    from dic_sbi.errors import InvalidInputError
    from dic_sbi.sbi.pretrained import training_jitter

    assert training_jitter({"training": {"campaigns": [{"num": 5}, {"num": 3}]}}) is None
    both = {"training": {"campaigns": [{"jitter": [0.5, 3.0]}, {"jitter": [0.5, 3.0]}]}}
    assert training_jitter(both) == (0.5, 3.0)
    for model in ("stg", "da"):  # both shipped posteriors were trained with jitter
        assert training_jitter(dic_sbi.sbi.pretrained.pretrained_info(model)) == (0.5, 3.0)
        assert dic_sbi.sbi.pretrained.load_pretrained(model).training_jitter == (0.5, 3.0)  # the posterior knows it
    with pytest.raises(InvalidInputError, match="jitter"):
        training_jitter({"training": {"campaigns": [{"jitter": [0.5, 3.0]}, {"jitter": [0.2, 1.0]}]}})


def test_conductance_calibration_returns_the_ranks_it_tested():
    """``return_ranks``: the SBC ranks behind the KS p-values, as fractions of samples below each true conductance."""
    from scipy.stats import kstest

    from dic_sbi.sbi.evaluation import conductance_calibration

    post = dic_sbi.sbi.pretrained.load_pretrained("stg")
    c = conductance_calibration(post, n_pairs=24, num_posterior_samples=20, seed=3, return_ranks=True)
    assert c["jitter"] == [0.5, 3.0]  # pairs drawn with the jitter mixture the posterior was trained on
    r = np.asarray(c["sbc_ranks"])
    assert r.shape == (c["n_pairs"], 8) and r.min() >= 0.0 and r.max() <= 1.0
    assert np.allclose(r * 20, np.round(r * 20))  # counts of 20 samples
    # the KS p-values are sbi's test of exactly these ranks against uniform
    for j in range(8):
        assert kstest(r[:, j], "uniform").pvalue == pytest.approx(c["sbc_ks_pvals"][j], abs=0.02)
    d = np.asarray(c["dic_ranks"])  # the same samples' DICs against the pairs' true DICs
    assert d.shape == (c["n_pairs"], 2) and d.min() >= 0.0 and d.max() <= 1.0
    assert np.allclose(d * 20, np.round(d * 20))
    assert "sbc_ranks" not in conductance_calibration(post, n_pairs=24, num_posterior_samples=20, seed=3)


def _record_pair_simulations(monkeypatch) -> list[dict]:
    """Record each ``DICSimulator.simulate_with_cells`` call (its ``jitter_std`` and the ``x`` it returns)."""
    from dic_sbi.sbi.simulators import DICSimulator

    seen: list[dict] = []
    real = DICSimulator.simulate_with_cells

    def spy(self, theta, *, seed=None, jitter_std=None):
        out = real(self, theta, seed=seed, jitter_std=jitter_std)
        seen.append({"jitter_std": None if jitter_std is None else np.asarray(jitter_std), "x": out[0]})
        return out

    monkeypatch.setattr(DICSimulator, "simulate_with_cells", spy)
    return seen


def test_conductance_calibration_draws_pairs_with_the_training_jitter(monkeypatch):
    """By default the pairs' spike times get the posterior's training jitter mixture; ``jitter=None`` gives none."""
    from dic_sbi.sbi.evaluation import conductance_calibration

    seen = _record_pair_simulations(monkeypatch)
    post = dic_sbi.sbi.pretrained.load_pretrained("stg")
    conductance_calibration(post, n_pairs=40, num_posterior_samples=10, seed=1)
    sd = seen[-1]["jitter_std"]
    assert sd.shape == (40,) and 0 < (sd > 0).sum() < 40 and sd.max() <= 3.0  # about half, sd ~ U(0, 3)
    assert conductance_calibration(post, n_pairs=20, num_posterior_samples=10, seed=1, jitter=None)["jitter"] is None
    assert seen[-1]["jitter_std"] is None
    with pytest.raises(dic_sbi.InvalidInputError, match="jitter"):
        conductance_calibration(post, n_pairs=20, num_posterior_samples=10, seed=1, jitter="training")


def test_conductance_calibration_firing_only_ranks_the_firing_pairs(monkeypatch):
    """``firing_only``: exactly the pairs whose (jittered) train spikes or bursts are ranked, as ``infer`` accepts."""
    from dic_sbi.sbi.evaluation import classes_of, conductance_calibration
    from dic_sbi.sbi.features import SUMMARY_NAMES

    seen = _record_pair_simulations(monkeypatch)
    post = dic_sbi.sbi.pretrained.load_pretrained("da")
    c = conductance_calibration(post, n_pairs=30, num_posterior_samples=10, seed=2, firing_only=True, return_ranks=True)
    klass = classes_of(seen[-1]["x"][:, : len(SUMMARY_NAMES)])
    assert 0 < (klass > 0).sum() < 30  # DA's prior draws silent cells too: the filter has something to do
    assert c["firing_only"] and c["n_pairs"] == (klass > 0).sum() == len(c["sbc_ranks"])
    assert c["classes"] == klass[klass > 0].tolist()  # each ranked pair's class, in order
    everything = conductance_calibration(post, n_pairs=30, num_posterior_samples=10, seed=2)
    assert not everything["firing_only"] and everything["n_pairs"] == 30


def test_w_offset_shifts_draws_and_density_consistently():
    """An offset d on a law N(mu, 1) is the law N(mu - d, 1): same draws (seeded) and the same density."""
    sd = P.seed_distribution("stg")
    d = np.array([0.3, -0.2, 0.1, 0.0, 0.5])
    shifted = FreeConductanceEstimator(_StandardNormalNet(5, -4.0), "stg", x_dim=3, w_offset=d)
    plain, _ = _estimator(mu=-4.0 - 0.0)
    moved = FreeConductanceEstimator(_StandardNormalNet(5, 0.0), "stg", x_dim=3)
    moved.net.mu = torch.as_tensor(-4.0 - d, dtype=torch.float32)
    rng = np.random.default_rng(0)
    w = -4.0 + rng.standard_normal((50, 5))
    gl, u = plain.from_w(w)
    t, x = np.zeros((50, 2)), torch.zeros(1, 3)
    np.testing.assert_allclose(shifted.log_prob_draws(gl, u, t, x), moved.log_prob_draws(gl, u, t, x), rtol=1e-5)
    a = shifted.sample_w(np.zeros((4, 2)), x, 2000, seed=1)
    assert a.shape == (4, 2000, 5)
    np.testing.assert_allclose(a.reshape(-1, 5).mean(0), -4.0 - d, atol=0.05)
    with pytest.raises(dic_sbi.InvalidInputError, match="w_offset"):
        FreeConductanceEstimator(_StandardNormalNet(5, 0.0), "stg", x_dim=3, w_offset=[0.1, 0.2])
    assert sd.free_index.size + 1 == 5


def test_location_offsets_centre_the_ranks():
    from dic_sbi.sbi.free_conductances import location_offsets

    rng = np.random.default_rng(3)
    truths = rng.standard_normal((400, 2))
    samples = truths[:, None, :] + np.array([0.4, -0.1]) + rng.standard_normal((400, 50, 2))  # biased by (0.4, -0.1)
    d = location_offsets(samples, truths)
    np.testing.assert_allclose(d, [0.4, -0.1], atol=0.03)
    ranks = (samples - d < truths[:, None, :]).mean(axis=(0, 1))
    np.testing.assert_allclose(ranks, 0.5, atol=1e-3)
    with pytest.raises(dic_sbi.InvalidInputError, match="samples"):
        location_offsets(samples[:, :, 0], truths)


def test_recalibrate_centres_the_law_on_its_fit_simulations_and_the_cli_writes_it(tmp_path):
    """The shift is fitted on new simulations: the shifted law's ranks there are centred (the same draws, shifted),
    the record says what was done, and the command line writes a posterior that reloads with it."""
    import json
    import subprocess
    import sys

    from dic_sbi.train import law_ranks_at_truth, recalibrate_free_conductances

    post = dic_sbi.sbi.pretrained.load_pretrained("stg")
    shipped = post.free_conductances.w_offset.copy()  # the shipped law is recalibrated already
    fit0 = law_ranks_at_truth(post, pairs=30, samples=20, seed=9, chunk_size=30)
    # the x it returns is the one the law was sampled at: one chunk, seeded (seed, 0), reproduces the draws
    again = post.free_conductances.sample_w(fit0["dics"], torch.as_tensor(fit0["x"]), 20, seed=np.random.default_rng([9, 0]))
    np.testing.assert_array_equal(again, fit0["samples"])
    new, rec = recalibrate_free_conductances(post, pairs=30, samples=20, seed=9, chunk_size=30, quiet=True)
    assert new.training_jitter == post.training_jitter
    np.testing.assert_array_equal(post.free_conductances.w_offset, shipped)  # a copy: the posterior given is unchanged
    np.testing.assert_allclose(new.free_conductances.w_offset, rec["w_offset"])
    from dic_sbi.sbi.free_conductances import location_offsets

    np.testing.assert_allclose(rec["w_offset"], shipped + location_offsets(fit0["samples"], fit0["truths"]))  # composed
    fit = law_ranks_at_truth(new, pairs=30, samples=20, seed=9, chunk_size=30)
    np.testing.assert_allclose(fit["mean_rank"], 0.5, atol=0.02)  # ties aside, exactly centred
    assert rec["check"]["seed"] == 10 and rec["jitter"] == [0.5, 3.0]
    rerun = law_ranks_at_truth(new, pairs=30, samples=20, seed=10, chunk_size=30)  # the check, simulated again
    np.testing.assert_allclose(rerun["mean_rank"], rec["check"]["mean_rank_after"], atol=1e-4)
    out = tmp_path / "stg_recal"
    cmd = [sys.executable, "-m", "dic_sbi.cli", "recalibrate-free-conductances", "--posterior", "stg", "--out", str(out),
           "--pairs", "20", "--samples", "10", "--seed", "4", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["free_conductances"]["recalibration"]["command"].startswith("dic-sbi recalibrate-free-conductances")
    back = dic_sbi.sbi.pretrained.load_pretrained(str(out))
    np.testing.assert_allclose(back.free_conductances.w_offset, meta["free_conductances"]["w_offset"])
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "--overwrite" in again.stderr
    bad = subprocess.run(cmd[:-1] + ["--overwrite", "--pairs", "3"], capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "pairs" in bad.stderr


def test_base_coordinates_invert_the_laws_sampling():
    """The flow's base coordinates of the law's own draws are N(0, I), and the location shift is undone first."""
    import copy

    post = dic_sbi.sbi.pretrained.load_pretrained("stg")
    free = post.free_conductances
    t = np.array([[-5.0, 8.0]])
    x = post.condition(post.simulator(torch.as_tensor(t, dtype=torch.float32), seed=1), **post.conditions_among(noise_std=0.0))
    assert torch.isfinite(x).all()
    w = free.sample_w(t, x, 4000, seed=3)[0]
    z = free.base_coordinates(w, np.repeat(t, len(w), axis=0), x)
    assert z.shape == w.shape
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=0.08)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=0.08)
    bare = copy.copy(free)
    bare.w_offset = None
    np.testing.assert_allclose(bare.base_coordinates(w + free.w_offset, np.repeat(t, len(w), axis=0), x), z, atol=1e-5)
