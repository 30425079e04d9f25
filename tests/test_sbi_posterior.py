"""DICPosterior, training recipes and diagnostics, on small budgets (short protocol, capped epochs)."""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import scipy.stats as st
import torch

from dic_sbi.core.populations import degenerate_population, population_log_density, seed_distribution
from dic_sbi.errors import InvalidInputError
from dic_sbi.models import get_model
from dic_sbi.sbi import (
    DICPosterior,
    DICPrior,
    DICSimulator,
    posterior_predictive_check,
    simulation_based_calibration,
    summary_statistics,
    tarp_calibration,
    train_conductance_posterior,
    train_dic_posterior,
)

# Small networks train fastest on one thread; on a loaded 2-core machine OpenMP barriers make 2 threads ~100x
# slower per step.
torch.set_num_threads(1)

SHORT = dict(duration=2000.0, transient=500.0)
SMALL = dict(density_estimator="maf", hidden_features=32, num_transforms=2, training=dict(max_num_epochs=20))


@pytest.fixture(scope="module")
def run():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train_dic_posterior("stg", 800, seed=0, **SHORT, **SMALL)


@pytest.fixture(scope="module")
def observed(run):
    theta = run.prior.sample((4,), seed=99)
    x, cells = run.simulator.simulate_with_cells(theta, seed=99)
    return theta, x, cells


def test_samples_have_the_right_shape_and_lie_in_the_support(run, observed):
    post, (_, x, _) = run.posterior, observed
    g, t = post.sample((60,), x=x[0], seed=1, return_dics=True)
    n = get_model("stg").n_conductances
    assert g.shape == (60, n) and g.dtype == torch.float64 and t.shape == (60, 2)
    assert bool((g >= 0).all())
    # Each cell carries the DICs of its DIC sample, and those lie in the prior's support.
    assert torch.allclose(post.dics_of(g), t.double(), atol=1e-6)
    assert bool(run.prior.support.check(t).all())
    assert post.sample((3, 4), x=x[0], seed=1).shape == (3, 4, n)
    assert torch.equal(post.sample((5,), x=x[0], seed=7), post.sample((5,), x=x[0], seed=7))
    lp = post.log_prob(g, x=x[0], norm_posterior=False)
    assert lp.shape == (60,) and lp.dtype == torch.float64 and bool(torch.isfinite(lp).all())


def test_observation_unlike_the_training_set_still_samples(run):
    # No STG training cell is silent. A silent observation is far out of distribution; a flow trained on θ
    # itself then puts nearly all its mass outside the prior and sbi's rejection sampler stalls. Ours is
    # trained in the prior's unconstrained space, so every sample is in the support.
    silent = summary_statistics([np.array([])], t_start=SHORT["transient"], t_stop=SHORT["duration"])
    assert bool(torch.isfinite(silent).all()) and silent[0, 10] == 1
    g, t = run.posterior.sample((200,), x=silent, seed=0, return_dics=True)
    assert g.shape == (200, 8) and bool(run.prior.support.check(t).all())


def test_log_prob_is_the_sum_of_its_parts(run, observed):
    post, (_, x, _) = run.posterior, observed
    g = post.sample((20,), x=x[1], seed=2)
    lp = post.log_prob(g, x=x[1], norm_posterior=False)
    t = post.dics_of(g).float()
    log_q = run.posterior.posterior.log_prob(t, x=x[1], norm_posterior=False).double()
    log_pop = torch.as_tensor(population_log_density("stg", g.numpy(), normalize=True, seed=0))
    assert torch.allclose(lp, log_q + log_pop)
    # Off the set the compensation produces: a perturbed free conductance, a negative one.
    off = g[:1].clone()
    off[0, get_model("stg").index("Kd")] *= 1.01
    assert post.log_prob(off, x=x[1], norm_posterior=False).item() == -math.inf
    neg = g[:1].clone()
    neg[0, 0] = -1.0
    assert post.log_prob(neg, x=x[1], norm_posterior=False).item() == -math.inf


def test_log_prob_integrates_to_the_seed_density_on_a_slice():
    """Toy case with a known DIC law (uniform on a box where every target is reachable): fix a cell's free draws
    z and integrate exp(log_prob) over its two compensated conductances. The map from those two to (g_s, g_u)
    is a bijection onto the box, so the integral is the density p(z) of the free draws, computed here
    independently from the Gamma law of gleak and the uniform ranges of the free conductances."""
    model = get_model("da")
    toy = DICPosterior(DICPrior("da", box=((2.0, 4.0), (5.0, 7.0))), "da")  # g_s >= 0: pair (ERG, Kd)
    i, j = model.index("ERG"), model.index("Kd")
    sd = seed_distribution("da")
    for cell in toy.sample((2,), seed=5).numpy():
        # Bounding box of the slice's support from a coarse scan, then a fine midpoint-rule grid over it.
        spans = []
        for n, box in ((120, None), (220, "fine")):
            if box is None:
                ai, bi, aj, bj = 0.0, 4 * cell[i], 0.0, 4 * cell[j]
            else:
                (ai, bi), (aj, bj) = spans[-1]
            hi_, hj = (bi - ai) / n, (bj - aj) / n
            A, B = np.meshgrid(ai + hi_ * (np.arange(n) + 0.5), aj + hj * (np.arange(n) + 0.5), indexing="ij")
            cells = np.repeat(cell[None], n * n, axis=0)
            cells[:, i], cells[:, j] = A.ravel(), B.ravel()
            lp = toy.log_prob(cells, normalize=False).numpy()
            inside = np.isfinite(lp)
            spans.append(((A.ravel()[inside].min() - hi_, A.ravel()[inside].max() + hi_),
                          (B.ravel()[inside].min() - hj, B.ravel()[inside].max() + hj)))  # fmt: skip
        integral = np.exp(lp[inside]).sum() * hi_ * hj
        gl = cell[model.index("leak")]
        scale = gl / sd.reference_leak
        log_pz = st.gamma(sd.gamma_shape, scale=sd.gamma_scale).logpdf(gl) - np.sum(
            np.log((sd.free_high - sd.free_low) * scale)
        )
        assert integral == pytest.approx(math.exp(log_pz), rel=0.03)


def test_default_x_map_and_pairplot(run, observed):
    from sbi.analysis import pairplot

    post, (_, x, _) = run.posterior, observed
    assert post.set_default_x(x[2]) is post
    assert torch.equal(post.default_x, x[2:3])
    g = post.sample((100,), seed=3)  # uses the default x
    assert g.shape == (100, 8)
    opts = dict(num_iter=20, num_init_samples=100, num_to_optimize=10)
    m = post.map_dics(**opts)
    assert m.shape == (1, 2) and m.dtype == torch.float32 and bool(run.prior.support.check(m).all())
    cell = post.map(**opts)  # a conductance vector, as sbi's map over the posterior's own space
    assert cell.shape == (1, 8) and cell.dtype == torch.float64
    assert torch.allclose(post.dics_of(cell), m.to(torch.float64), atol=1e-5)  # a cell of the MAP's population
    # the most probable of the population's cells: none of 200 others has a higher density at these DICs
    others = degenerate_population("stg", float(m[0, 0]), float(m[0, 1]), 200, seed=9)
    assert population_log_density("stg", cell.numpy(), normalize=False)[0] >= population_log_density(
        "stg", others, normalize=False).max() - 1e-9
    fig, _ = pairplot(g, points=cell, labels=list(post.names))
    fig2, _ = pairplot(post.sample_dics((100,), seed=3), points=m, labels=["g_s", "g_u"])
    import matplotlib.pyplot as plt

    plt.close(fig)
    plt.close(fig2)


def test_unconditional_wrapper_refuses_x():
    post = DICPosterior(DICPrior("stg"), "stg")
    assert post.sample((3,), seed=0).shape == (3, 8)
    with pytest.raises(InvalidInputError, match="x"):
        post.sample((3,), x=torch.zeros(17))
    with pytest.raises(InvalidInputError, match="posterior"):
        DICPosterior(object(), "stg")


def test_conductance_baseline_trains_on_the_same_budget(observed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = train_conductance_posterior("stg", 800, seed=0, **SHORT, **SMALL)
    assert base.x.shape == (800, 17)
    theta = base.posterior.sample((50,), x=observed[1][0], show_progress_bars=False)
    assert theta.shape == (50, 8) and bool(base.prior.support.check(theta).all())


def test_isi_embedding_trains_with_npe():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = train_dic_posterior(
            "stg", 300, seed=1, output="isi", max_isis=32, density_estimator="maf", hidden_features=16,
            num_transforms=1, training=dict(max_num_epochs=2), **SHORT,
        )  # fmt: skip
    assert run.x.shape == (300, 17 + 1 + 32)
    t = run.posterior.sample_dics((20,), x=run.x[0], seed=0)
    assert t.shape == (20, 2) and bool(torch.isfinite(t).all())


def test_recipes_check_their_arguments():
    with pytest.raises(InvalidInputError, match="num_simulations"):
        train_dic_posterior("stg", 1)
    with pytest.raises(InvalidInputError, match="protocol"):
        train_dic_posterior("stg", 10, simulator=DICSimulator("stg"), duration=1000.0)
    with pytest.raises(InvalidInputError, match="density_estimator"):
        train_dic_posterior("stg", 10, density_estimator="gp", theta=torch.zeros(10, 2), x=torch.zeros(10, 17))


def test_predictive_check(run, observed):
    _, x, cells = observed
    result = run.simulator  # the training protocol
    from dic_sbi.core.simulator import simulate

    obs = simulate("stg", cells[:1], duration=result.duration, transient=result.transient).spiketrain(0)
    check = posterior_predictive_check(run.posterior, obs, n=40, x=x[0], seed=0)
    assert 0.0 <= check.fraction_within_tolerance <= check.fraction_same_class <= 1.0
    assert sum(check.class_counts.values()) == 40 and check.conductances.shape == (40, 8)
    # The observed cell itself reproduces its own pattern exactly (the simulator is deterministic).
    self_check = posterior_predictive_check("stg", obs, conductances=cells[:1], **SHORT)
    assert self_check.fraction_same_class == 1.0 and self_check.fraction_within_tolerance == 1.0
    with pytest.raises(InvalidInputError, match="conductances"):
        posterior_predictive_check("stg", obs)


def test_calibration_diagnostics_drop_invalid_rows(run):
    theta = run.prior.sample((60,), seed=4)
    x = run.simulator(theta, seed=4)
    x[0] = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sbi warns that 60 SBC samples are few
        sbc = simulation_based_calibration(run.posterior, theta, x, num_posterior_samples=50, seed=0)
        tarp = tarp_calibration(run.posterior, theta, x, num_posterior_samples=50, seed=0)
    assert sbc.n_dropped == 1 and sbc.ranks.shape == (59, 2) and sbc.ks_pvals.shape == (2,)
    assert tarp.n_dropped == 1 and tarp.ecp.shape == tarp.alpha.shape and math.isfinite(tarp.atc)
    # too few valid pairs for check_sbc's 5-fold C2ST: a clear error, not sbi's crash deep inside
    x[1:58] = float("nan")
    with pytest.raises(InvalidInputError, match="at least 3 valid pairs, got 2"):
        simulation_based_calibration(run.posterior, theta, x, num_posterior_samples=50, seed=0)


def test_batched_methods_agree_with_the_unbatched_ones(run, observed):
    post, (_, x, _) = run.posterior, observed
    g, t = post.sample_batched((40,), x=x[:3], seed=4, return_dics=True)
    assert g.shape == (40, 3, 8) and g.dtype == torch.float64 and t.shape == (40, 3, 2) and t.dtype == torch.float32
    assert bool(torch.isfinite(g).all()) and bool((g >= 0).all())
    assert torch.allclose(post.dics_of(g), t.to(torch.float64), atol=1e-5)  # each cell carries its DIC sample
    lp = post.log_prob_batched(g, x[:3], normalize=False, norm_posterior=False)
    assert lp.shape == (40, 3) and lp.dtype == torch.float64 and bool(torch.isfinite(lp).all())
    for b in range(3):
        alone = post.log_prob(g[:, b], x=x[b], normalize=False, norm_posterior=False)
        assert torch.allclose(lp[:, b], alone, atol=1e-4)
    one = post.log_prob_batched(g[0], x[:3], normalize=False, norm_posterior=False)  # (B, n): one cell per x
    assert one.shape == (1, 3) and torch.allclose(one[0], lp[0], atol=1e-4)
    off = g.clone()
    off[0, 1, post.model.index("Na")] *= 1.5  # off the compensation's set
    assert post.log_prob_batched(off, x[:3], normalize=False, norm_posterior=False)[0, 1].item() == -math.inf
    with pytest.raises(InvalidInputError, match="conductances"):
        post.log_prob_batched(g[:, :2], x[:3])
    with pytest.raises(InvalidInputError, match="x"):
        post.sample_batched((5,), x=x[0])  # one observation, not a batch
    with pytest.raises(InvalidInputError, match="nope"):
        post.sample_batched((5,), x=x[:3], nope=1)
    # sbi's sampling options reach the DIC posterior (a batch size it accepts)
    small = post.sample_batched((40,), x=x[:3], seed=4, max_sampling_batch_size=7)
    assert small.shape == g.shape and bool(torch.isfinite(small).all())
    with pytest.raises(InvalidInputError, match="unconditional"):
        DICPosterior(DICPrior("stg"), "stg").sample_batched((5,), x=x[:3])


def test_float_dtypes_follow_one_rule(run, observed):
    """Conductance space is float64, DIC space float32 (sbi's), whatever the input dtype."""
    post, (_, x, _) = run.posterior, observed
    g = post.sample((20,), x=x[0], seed=2)
    t = post.sample_dics((20,), x=x[0], seed=2)
    assert g.dtype == torch.float64 and t.dtype == torch.float32
    assert post.log_prob(g, x=x[0], normalize=False).dtype == torch.float64
    assert post.log_prob_dics(t.to(torch.float64), x=x[0]).dtype == torch.float32
    assert post.sample_dics_batched((5,), x=x[:2], seed=1).dtype == torch.float32
    assert bool(torch.isfinite(post.log_prob(g, x=x[0], normalize=False, norm_posterior=False)).all())
    # float32 rounding leaves the compensation's set (density 0 there): refused, not a silent -inf
    with pytest.raises(InvalidInputError, match="float64"):
        post.log_prob(g.to(torch.float32), x=x[0])
    with pytest.raises(InvalidInputError, match="float64"):
        post.log_prob_batched(g[:, None].to(torch.float32), x[:1])
    assert DICPosterior(DICPrior("stg"), "stg").sample_dics((3,), seed=0).dtype == torch.float32


def test_sbi_run_sbc_and_run_tarp_take_the_posterior_directly(run):
    """sbi 0.27's diagnostics call posterior.sample_batched and keep whatever it returns (no NaN filtering)."""
    from sbi.diagnostics import check_sbc, run_sbc, run_tarp

    theta = run.prior.sample((30,), seed=7)
    x, cells = run.simulator.simulate_with_cells(theta, seed=7)
    cells = torch.as_tensor(cells, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "should be on the order of 100s": a small, fast run
        ranks, dap = run_sbc(cells, x, run.posterior, num_posterior_samples=50, show_progress_bar=False)
        ecp, alpha = run_tarp(cells, x, run.posterior, num_posterior_samples=50, show_progress_bar=False, num_bins=5)
    assert ranks.shape == (30, 8) and dap.shape == (30, 8) and dap.dtype == torch.float64
    assert bool(torch.isfinite(dap).all()) and bool(((ranks >= 0) & (ranks <= 50)).all())
    assert ranks[:, run.posterior.model.index("leak")].float().std() > 5  # gleak is a free draw: ranks spread
    stats = check_sbc(ranks, run.prior.sample((30,)).repeat(1, 4).to(torch.float64), dap, num_posterior_samples=50)
    assert stats["ks_pvals"].shape == (8,) and bool(torch.isfinite(stats["ks_pvals"]).all())
    # ECP is a float32 cumulative sum in sbi: its last value may be 1 + a rounding error (seen: 1.0000001)
    assert ecp.shape == alpha.shape and bool(torch.isfinite(ecp).all()) and 0 <= float(ecp.min()) <= float(ecp.max()) <= 1 + 1e-6


def test_training_shows_progress_by_default(capsys):
    """As sbi's NPE: the recipes show tqdm bars unless told not to."""
    theta = DICPrior("stg").sample((60,), seed=0)
    x = DICSimulator("stg", **SHORT)(theta, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_dic_posterior("stg", 60, theta=theta, x=x, seed=0, **SHORT, **dict(SMALL, training=dict(max_num_epochs=2)))
        shown = capsys.readouterr()
        train_dic_posterior("stg", 60, theta=theta, x=x, seed=0, show_progress_bars=False, **SHORT,
                            **dict(SMALL, training=dict(max_num_epochs=2)))  # fmt: skip
        quiet = capsys.readouterr()
    assert "epochs trained" in (shown.out + shown.err).lower()
    assert shown.out.endswith("\n")  # the counter's line is ended, so a log's next message starts its own line
    assert "epochs" not in (quiet.out + quiet.err).lower()
