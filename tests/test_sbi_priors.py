"""Priors of the sbi layer: exact supports, moments, sbi's prior contract, the reachable DIC region."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from sbi.utils import mcmc_transform, process_prior
from torch.distributions import biject_to

from dic_sbi.errors import InvalidInputError
from dic_sbi.models import get_model
from dic_sbi.sbi import ConductancePrior, DICPrior


@pytest.fixture(scope="module", params=["stg", "da"])
def dic_prior(request):
    return DICPrior(request.param)


@pytest.mark.parametrize("model", ["stg", "da"])
@pytest.mark.parametrize("scale", ["linear", "log"])
def test_conductance_prior_contract(model, scale):
    prior = ConductancePrior(model, scale)
    processed, numel, returns_numpy = process_prior(prior)
    assert processed is prior  # accepted as is, no wrapper
    assert numel == get_model(model).n_conductances and not returns_numpy
    theta = prior.sample((20_000,), seed=0)
    assert theta.dtype == torch.float32 and theta.shape == (20_000, numel)
    assert bool(prior.support.check(theta).all())
    lp = prior.log_prob(theta)
    assert lp.shape == (20_000,) and bool(torch.isfinite(lp).all())
    # Moments against the sample (relative standard errors ~ 1 %).
    assert torch.allclose(theta.mean(0), prior.mean, rtol=0.03)
    assert torch.allclose(theta.var(0), prior.variance, rtol=0.06)
    outside = prior.high * 1.01
    assert prior.log_prob(outside[None]).item() == -math.inf
    assert prior.log_prob(-prior.low[None] - 1).item() == -math.inf


def test_conductance_prior_log_density_is_normalised():
    # One conductance at a time: integrate the marginal log-uniform density numerically.
    prior = ConductancePrior("stg", "log")
    lo, hi = float(prior.low[0]), float(prior.high[0])
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), 20_001))
    density = 1.0 / (grid * np.log(hi / lo))
    assert np.trapezoid(density, grid) == pytest.approx(1.0, rel=1e-6)
    # The joint density is the product of the marginals.
    theta = prior.sample((5,), seed=1).double()
    lo_all, hi_all = prior.low.double(), prior.high.double()
    expected = -(torch.log(theta) + torch.log(torch.log(hi_all / lo_all))).sum(-1)
    assert torch.allclose(prior.log_prob(theta), expected)


def test_log_uniform_never_leaves_its_support():
    # Bounds just above and at float32 rounding boundaries: exp() of a float32 uniform would cross them.
    n = get_model("stg").n_conductances
    low = np.full(n, 0.1)
    high = np.nextafter(np.float32(1.0), np.float32(0.0)).astype(np.float64) * np.ones(n)
    prior = ConductancePrior("stg", "log", low=low, high=high)
    theta = prior.sample((200_000,), seed=3)
    assert bool(prior.support.check(theta).all())
    assert bool((theta <= prior.high).all()) and bool((theta >= prior.low).all())


def test_conductance_prior_seeds_and_pickle():
    prior = ConductancePrior("da", "log")
    assert torch.equal(prior.sample((4,), seed=7), prior.sample((4,), seed=7))
    assert not torch.equal(prior.sample((4,), seed=7), prior.sample((4,), seed=8))
    gen = torch.Generator().manual_seed(3)
    assert prior.sample((2,), seed=gen).shape == (2, 7)
    clone = pickle.loads(pickle.dumps(prior))
    assert clone.model is prior.model  # registered models pickle by name
    assert torch.equal(clone.sample((3,), seed=1), prior.sample((3,), seed=1))


def test_conductance_prior_bad_input_names_the_argument():
    with pytest.raises(InvalidInputError, match="scale"):
        ConductancePrior("stg", "sqrt")
    with pytest.raises(InvalidInputError, match="low"):
        ConductancePrior("stg", "log", low=np.zeros(8))
    with pytest.raises(InvalidInputError, match="high"):
        ConductancePrior("stg", high=np.ones(3))
    with pytest.raises(InvalidInputError, match="seed"):
        ConductancePrior("stg").sample((2,), seed=-1)
    with pytest.raises(InvalidInputError, match="high"):  # float32 samples / moments would overflow
        ConductancePrior("stg", low=np.zeros(8), high=np.full(8, 3.5e38))


def test_empty_batches():
    for prior in (ConductancePrior("stg"), ConductancePrior("da", "log"), DICPrior("stg")):
        d = prior.event_shape[0]
        assert prior.log_prob(torch.empty(0, d)).shape == (0,)
        assert prior.sample((0,)).shape == (0, d)
        assert prior.sample((2, 0)).shape == (2, 0, d)


def test_dic_prior_contract(dic_prior):
    processed, numel, returns_numpy = process_prior(dic_prior)
    assert processed is dic_prior and numel == 2 and not returns_numpy
    theta = dic_prior.sample((50_000,), seed=0)
    assert theta.dtype == torch.float32 and theta.shape == (50_000, 2)
    assert bool(dic_prior.support.check(theta).all())
    lp = dic_prior.log_prob(theta)
    assert bool(torch.isfinite(lp).all())
    assert torch.allclose(lp, torch.full_like(lp, -math.log(dic_prior.region.area())))
    assert torch.allclose(theta.mean(0), dic_prior.mean, atol=0.1)
    assert torch.allclose(theta.var(0), dic_prior.variance, rtol=0.03)
    (s_lo, s_hi), (u_lo, u_hi) = dic_prior.box
    assert dic_prior.log_prob(torch.tensor([[s_hi + 0.1, u_hi - 1]])).item() == -math.inf
    assert dic_prior.log_prob(torch.tensor([[0.0, u_hi + 0.1]])).item() == -math.inf
    assert torch.equal(dic_prior.sample((5,), seed=2), dic_prior.sample((5,), seed=2))


def test_dic_prior_region_is_reachable():
    from dic_sbi.core.reachability import reachability

    stg, da = DICPrior("stg"), DICPrior("da")
    assert stg.region.area() == pytest.approx(800.0)  # STG reaches its whole published box
    assert da.region.area() < 500.0  # DA loses the corner g_s >= 0, g_u < ~0.5
    assert da.log_prob(torch.tensor([[10.0, 0.1]])).item() == -math.inf
    assert da.log_prob(torch.tensor([[-5.0, 0.1]])).item() > -math.inf
    theta = da.sample((400,), seed=4).double().numpy()
    rho = reachability("da", theta[:, 0], theta[:, 1], n_draws=200, seed=0)
    assert rho.min() > 0.0
    full = DICPrior("da", reachable_only=False)
    assert full.region.area() == pytest.approx(25.0 * 20.0)


def test_dic_prior_bijection_for_sbi(dic_prior):
    # sbi builds its MAP / MCMC transform from the support: it must round-trip and have the right Jacobian.
    transform = biject_to(dic_prior.support)
    z = torch.randn(64, 2, dtype=torch.float64)
    theta = transform(z)
    assert bool(dic_prior.support.check(theta).all())
    assert torch.allclose(transform.inv(theta), z, atol=1e-6)
    jac = torch.stack([torch.autograd.functional.jacobian(transform, zi) for zi in z[:8]])
    logdet = torch.linalg.slogdet(jac).logabsdet
    assert torch.allclose(transform.log_abs_det_jacobian(z[:8], theta[:8]), logdet, atol=1e-6)
    tf = mcmc_transform(dic_prior)  # sbi's own builder: maps the support to R²
    theta = dic_prior.sample((16,), seed=0)
    assert torch.allclose(tf.inv(tf(theta)), theta, atol=1e-4)
    assert tf.log_abs_det_jacobian(theta, tf(theta)).shape == (16,)


def test_dic_prior_pickles_and_checks_input():
    prior = DICPrior("da")
    clone = pickle.loads(pickle.dumps(prior))
    assert torch.equal(clone.sample((10,), seed=0), prior.sample((10,), seed=0))
    with pytest.raises(InvalidInputError, match="box"):
        DICPrior("stg", box=((1, 0), (0, 1)))
    with pytest.raises(InvalidInputError, match="min_reachability"):
        DICPrior("stg", min_reachability=0.0)
    with pytest.raises(InvalidInputError, match="box"):
        DICPrior("da", box=((10, 15), (0, 0.2)))  # nothing reachable there
    with pytest.raises(InvalidInputError, match="box"):
        DICPrior("stg", box=((-1e20, 1e20), (0, 1)), reachable_only=False)


@pytest.fixture(scope="module")
def weighted_stg():
    from dic_sbi.sbi.priors import dic_image_box, dic_image_weights

    box = dic_image_box("stg", n=20_000)
    return DICPrior("stg", box=box, weights=dic_image_weights("stg", box, bins=16, n=20_000)), box


def test_weighted_dic_prior_is_a_normalised_density_on_the_same_region(weighted_stg):
    """The weighted prior keeps the uniform one's support; its density integrates to 1 (midpoint rule on a grid
    much finer than the weight cells), its samples follow it (per-cell frequencies, mean, variance), and sbi
    accepts it."""
    prior, box = weighted_stg
    uniform = DICPrior("stg", box=box)
    assert prior.region.area() == pytest.approx(uniform.region.area())
    (s_lo, s_hi), (u_lo, u_hi) = box
    n = 1600
    s = s_lo + (np.arange(n) + 0.5) * (s_hi - s_lo) / n
    u = u_lo + (np.arange(n) + 0.5) * (u_hi - u_lo) / n
    grid = torch.as_tensor(np.stack(np.meshgrid(s, u, indexing="ij"), -1).reshape(-1, 2))
    lp = prior.log_prob(grid)
    assert torch.equal(torch.isfinite(lp), uniform.support.check(grid))  # same support, exactly
    integral = float(torch.exp(lp[torch.isfinite(lp)]).sum()) * (s_hi - s_lo) * (u_hi - u_lo) / n**2
    assert integral == pytest.approx(1.0, abs=5e-3)
    theta = prior.sample((200_000,), seed=0)
    assert theta.dtype == torch.float32 and bool(prior.support.check(theta).all())
    assert bool(torch.isfinite(prior.log_prob(theta)).all())
    assert torch.allclose(theta.double().mean(0), prior.mean.double(), atol=0.3)
    assert torch.allclose(theta.double().var(0), prior.variance.double(), rtol=0.03)
    # Frequency of each weight cell against its probability (its density times its area within the region).
    i, j = prior._grid_cell(theta)
    freq = np.bincount((i * 16 + j).numpy(), minlength=256) / theta.shape[0]
    cell_prob = np.zeros(256)
    gi, gj = prior._grid_cell(grid)
    inside = torch.isfinite(lp)
    np.add.at(cell_prob, (gi * 16 + gj)[inside].numpy(), torch.exp(lp[inside]).numpy() * (s_hi - s_lo) * (u_hi - u_lo) / n**2)
    assert np.abs(freq - cell_prob).max() < 0.01
    processed, numel, _ = process_prior(prior)
    assert processed is prior and numel == 2
    assert torch.equal(pickle.loads(pickle.dumps(prior)).sample((8,), seed=3), prior.sample((8,), seed=3))
    assert torch.equal(prior.sample((8,), seed=3), prior.sample((8,), seed=3))
    assert "weighted (16×16 grid)" in repr(prior)


def test_image_weights_put_the_prior_where_the_box_cells_are(weighted_stg):
    """A uniform prior on the DIC box of the conductance box puts ~4 % of its draws in the published box, where
    ~17 % of the box's cells lie; the weighted prior puts about as many there as the box does."""
    from dic_sbi.core import dics

    prior, box = weighted_stg
    uniform = DICPrior("stg", box=box)
    g = ConductancePrior("stg", "linear").sample((20_000,), seed=7).double().numpy()
    d = dics("stg", g)[:, 1:]

    def published(t):
        t = np.asarray(t)
        return float(np.mean((np.abs(t[:, 0]) <= 20) & (t[:, 1] >= 0) & (t[:, 1] <= 20)))

    cells, weighted, flat = published(d), published(prior.sample((50_000,), seed=1)), published(uniform.sample((50_000,), seed=1))
    assert flat < 0.06 and 0.12 < cells < 0.22
    assert abs(weighted - cells) < 0.03


def test_constant_weights_are_the_uniform_prior():
    """Equal weights give the uniform prior's density and moments (DA: a region with a cut corner)."""
    uniform, flat = DICPrior("da"), DICPrior("da", weights=np.full((3, 5), 2.0))
    theta = uniform.sample((1000,), seed=0)
    torch.testing.assert_close(flat.log_prob(theta), uniform.log_prob(theta))
    torch.testing.assert_close(flat.mean, uniform.mean)
    torch.testing.assert_close(flat.variance, uniform.variance)
    assert flat.log_prob(torch.tensor([[10.0, 0.1]])).item() == -math.inf  # the unreachable corner stays out


def test_weighted_dic_prior_checks_its_weights():
    from dic_sbi.sbi.priors import dic_image_weights

    with pytest.raises(InvalidInputError, match="weights"):
        DICPrior("stg", weights=np.ones(4))
    with pytest.raises(InvalidInputError, match="weights"):
        DICPrior("stg", weights=np.array([[1.0, 0.0], [1.0, 1.0]]))  # a zero would empty part of the support
    with pytest.raises(InvalidInputError, match="weights"):
        DICPrior("stg", weights=np.array([[1.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(InvalidInputError, match="floor"):
        dic_image_weights("stg", ((-20, 20), (0, 20)), floor=0.0)
    with pytest.raises(InvalidInputError, match="bins"):
        dic_image_weights("stg", ((-20, 20), (0, 20)), bins=0)
    w = dic_image_weights("stg", ((-20, 20), (0, 20)), bins=4, n=2000)
    assert w.shape == (4, 4) and w.sum() == pytest.approx(1.0) and w.min() >= 0.05 / 16


def test_weighted_prior_travels_with_a_saved_posterior(tmp_path, weighted_stg):
    """save_pretrained stores the weights and load_pretrained rebuilds the same prior, so the loaded posterior
    has the weighted support and density, not the uniform one."""
    from dic_sbi.sbi import train_dic_posterior
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info, save_pretrained

    prior, _ = weighted_stg
    run = train_dic_posterior("stg", 200, prior=prior, training={"max_num_epochs": 3}, seed=0, torch_threads=1,
                              duration=1500.0, transient=500.0)  # fmt: skip
    path = tmp_path / "weighted"
    save_pretrained(run.posterior, path, estimator={"density_estimator": "nsf", "hidden_features": 50, "num_transforms": 5})
    assert np.array_equal(np.asarray(pretrained_info(path)["prior"]["weights"]), prior.weights)
    loaded = load_pretrained(path)
    assert np.array_equal(loaded.prior.weights, prior.weights)
    theta = prior.sample((100,), seed=5)
    assert torch.equal(loaded.prior.log_prob(theta), prior.log_prob(theta))
    x = run.x[:1]
    torch.testing.assert_close(loaded.log_prob_dics(theta[:5], x=x), run.posterior.log_prob_dics(theta[:5], x=x))
