"""The DIC fiber of the conductance box (dic_sbi.core.fiber) and the DIC-space posterior trained on the box's own
cells (dic_sbi.sbi.box_dic).

The pair solve is checked against the cells it came from: a box cell's DICs, with its pair blanked, must give the
cell back (DA and STG), and every solved cell's DICs, computed by :func:`dics` from scratch, must be the targets."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from dic_sbi.core import dics
from dic_sbi.core.fiber import box_pair, solve_pair
from dic_sbi.errors import InvalidInputError
from dic_sbi.models import get_model
from dic_sbi.sbi import ConductancePrior, ConductanceSimulator

torch.set_num_threads(1)


def _box_cells(name: str, n: int, seed: int) -> np.ndarray:
    return ConductancePrior(name, "linear").sample((n,), seed=seed).to(torch.float64).numpy()


@pytest.mark.parametrize("name, pair", [("da", ("ERG", "CaL")), ("stg", ("A", "H")), ("da", ("ERG", "Kd"))])
def test_solve_pair_gives_box_cells_back(name, pair):
    """A cell's own DICs with its pair blanked: the solve recovers the pair (one solution for a pair that does not
    feed calcium), and the DICs of the result are the targets."""
    m = get_model(name)
    g = _box_cells(name, 500, 3)
    t = dics(m, g)[:, 1:]
    start = g.copy()
    start[:, [m.index(pair[0]), m.index(pair[1])]] = [1.0, 2.0]
    cells, solved = solve_pair(m, start, t[:, 0], t[:, 1], pair=pair)
    assert solved.all()
    np.testing.assert_allclose(cells, g, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(dics(m, cells)[:, 1:], t, rtol=0, atol=1e-8)


def test_solve_pair_with_calcium_reaches_the_targets():
    """STG's (CaS, A) feeds the calcium concentration: the solve iterates, and where it says solved the DICs are the
    targets within the tolerance (the cell need not be the one the targets came from: the solve is nonlinear)."""
    m = get_model("stg")
    g = _box_cells("stg", 300, 4)
    t = dics(m, g)[:, 1:]
    cells, solved = solve_pair(m, g, t[:, 0], t[:, 1], pair=("CaS", "A"), tol=1e-9)
    assert solved.mean() > 0.5
    assert np.all(cells[solved] >= 0)
    np.testing.assert_allclose(dics(m, cells[solved])[:, 1:], t[solved], rtol=0, atol=1e-8)
    assert np.isnan(cells[~solved & ~np.isfinite(cells).all(axis=1)]).all()


def test_solve_pair_flags_negative_and_bad_rows():
    m = get_model("da")
    g = _box_cells("da", 4, 5)
    t = dics(m, g)[:, 1:]
    t[1] = (40.0, -30.0)  # far outside anything the box reaches: a negative pair conductance
    g[2, m.index("Na")] = np.nan
    g[3, m.index("leak")] = 0.0
    cells, solved = solve_pair(m, g, t[:, 0], t[:, 1], pair=("ERG", "CaL"))
    assert solved.tolist() == [True, False, False, False]
    assert np.isnan(cells[2]).all() and np.isnan(cells[3]).all()


def test_box_pair_and_bad_pairs():
    assert box_pair("da") == ("ERG", "CaL")
    assert box_pair("stg") == ("A", "H")  # (CaS, A) would feed calcium
    g = _box_cells("da", 2, 0)
    for bad in [("ERG",), ("ERG", "ERG"), ("ERG", "leak"), ("ERG", "Kv"), "ERG,CaL"]:
        with pytest.raises(InvalidInputError, match="pair"):
            solve_pair("da", g, 0.0, 1.0, pair=bad)
    with pytest.raises(InvalidInputError, match="conductances"):
        solve_pair("da", g[:, :3], 0.0, 1.0, pair=("ERG", "CaL"))
    with pytest.raises(InvalidInputError, match="g_s, g_u"):
        solve_pair("da", g, np.zeros(3), 1.0, pair=("ERG", "CaL"))


@pytest.fixture(scope="module")
def trained():
    from dic_sbi.sbi.box_dic import train_box_dic_posterior

    prior = ConductancePrior("da", "linear")
    sim = ConductanceSimulator("da", duration=1500.0, transient=500.0)
    theta = prior.sample((300,), seed=0)
    x = sim(theta, seed=0)
    post, summary = train_box_dic_posterior("da", theta, x, prior=prior, simulator=sim, seed=1,
                                            training=dict(max_num_epochs=3), show_progress_bars=False)  # fmt: skip
    return post, summary, x, prior


def test_box_posterior_samples_cells_of_the_box_with_exact_dics(trained):
    post, summary, x, prior = trained
    assert summary["rows"] == 300 and summary["pair"] == ["ERG", "CaL"] and summary["fiber_epochs"] >= 1
    g, t = post.sample((200,), x=x[:1], seed=3, return_dics=True)
    assert g.shape == (200, 7) and g.dtype == torch.float64 and t.shape == (200, 2)
    ok = torch.isfinite(g).all(dim=1)
    assert int((~ok).sum()) == post.last_unsolved
    assert ok.float().mean() > 0.9
    assert bool(((g[ok] >= prior.low.double()) & (g[ok] <= prior.high.double())).all())
    np.testing.assert_allclose(dics("da", g[ok].numpy())[:, 1:], t[ok].numpy(), rtol=0, atol=1e-6)
    assert torch.equal(post.sample((50,), x=x[:1], seed=4), post.sample((50,), x=x[:1], seed=4))
    assert 0.0 < post.acceptance(x[:1], n=200, seed=0) <= 1.0
    assert post.sample_dics((5,), x=x[:1], seed=0).shape == (5, 2)


def test_box_posterior_batched_default_x_and_bad_x(trained):
    post, _, x, _ = trained
    gb = post.sample_batched((6,), x=x[:4], seed=2)
    assert gb.shape == (6, 4, 7)
    with pytest.raises(InvalidInputError, match="set_default_x"):
        post.sample((3,))
    with pytest.raises(InvalidInputError, match="columns"):
        post.sample((3,), x=x[:1, :5])
    with pytest.raises(InvalidInputError, match="one observation"):
        post.sample((3,), x=x[:2])
    post.set_default_x(x[1:2])
    try:
        assert torch.equal(post.sample((4,), seed=1), post.sample((4,), x=x[1:2], seed=1))
    finally:
        post._default_x = None


def test_box_posterior_pickles_and_mixes(trained):
    from dic_sbi.sbi import MixtureEstimator, mixture_posterior
    from dic_sbi.sbi.box_dic import BoxDICPosterior

    post, _, x, _ = trained
    buf = io.BytesIO()
    torch.save(post, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert torch.equal(back.sample((20,), x=x[:1], seed=5), post.sample((20,), x=x[:1], seed=5))
    mix = mixture_posterior([post, back])
    assert isinstance(mix, BoxDICPosterior) and isinstance(mix.fiber_net, MixtureEstimator)
    assert mix.sample((10,), x=x[:1], seed=0).shape == (10, 7)
    with pytest.raises(InvalidInputError, match="expected all"):
        mixture_posterior([post, mix.dic_posterior])


def test_training_refuses_too_few_rows():
    from dic_sbi.sbi.box_dic import train_box_dic_posterior

    theta = ConductancePrior("da", "linear").sample((10,), seed=0)
    with pytest.raises(InvalidInputError, match="usable rows"):
        train_box_dic_posterior("da", theta, torch.zeros(10, 17), show_progress_bars=False)
    with pytest.raises(InvalidInputError, match="expected"):
        train_box_dic_posterior("da", theta[:, :3], torch.zeros(10, 17), show_progress_bars=False)


def test_linear_fiber_coordinates_and_bad_settings(trained):
    """fiber_coordinates="linear": the flow over the positions themselves, draws outside the box redrawn; every
    sample is still a box cell with its DICs exactly."""
    from dic_sbi.sbi.box_dic import BoxDICPosterior, train_box_dic_posterior

    _, _, x, prior = trained
    theta = prior.sample((300,), seed=0)
    post, summary = train_box_dic_posterior("da", theta, x, prior=prior, seed=2, fiber_coordinates="linear",
                                            fiber_passes=None, training=dict(max_num_epochs=2),
                                            simulator=ConductanceSimulator("da", duration=1500.0, transient=500.0),
                                            show_progress_bars=False)  # fmt: skip
    assert post.coordinates == "linear"
    g, t = post.sample((100,), x=x[:1], seed=1, return_dics=True)
    ok = torch.isfinite(g).all(dim=1)
    assert ok.float().mean() > 0.9
    assert bool(((g[ok] >= prior.low.double()) & (g[ok] <= prior.high.double())).all())
    np.testing.assert_allclose(dics("da", g[ok].numpy())[:, 1:], t[ok].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(post.from_w(post.to_w(theta.double().numpy()[:, post.others])),
                               theta.double().numpy()[:, post.others], rtol=1e-9)  # fmt: skip
    with pytest.raises(InvalidInputError, match="fiber_coordinates"):
        train_box_dic_posterior("da", theta, x, fiber_coordinates="log", show_progress_bars=False)
    with pytest.raises(InvalidInputError, match="coordinates"):
        BoxDICPosterior(post.dic_posterior, post.fiber_net, "da", pair=post.pair, x_dim=post.x_dim, prior=prior,
                        coordinates="log")  # fmt: skip


@pytest.mark.parametrize("name", ["da", "stg"])
def test_pair_log_jacobian_against_dics(name):
    """log |∂(g_s, g_u) / ∂pair| against central differences of :func:`dics` itself (an independent path: the
    full DIC computation, a coarser step), for DA (linear) and STG (calcium through the other conductances)."""
    from dic_sbi.core.fiber import pair_indices, pair_log_jacobian

    m = get_model(name)
    pair = box_pair(m)
    g = _box_cells(name, 20, 6)
    jac = np.empty((20, 2, 2))
    for col, k in enumerate(pair_indices(m, pair)):
        h = 1e-4 * np.maximum(g[:, k], 1.0)
        up, down = g.copy(), g.copy()
        up[:, k] += h
        down[:, k] -= h
        jac[:, :, col] = (dics(m, up)[:, 1:] - dics(m, down)[:, 1:]) / (2 * h[:, None])
    np.testing.assert_allclose(pair_log_jacobian(m, g, pair=pair), np.log(np.abs(np.linalg.det(jac))), atol=1e-6)
    with pytest.raises(InvalidInputError, match="shape"):
        pair_log_jacobian(m, g[:, :3], pair=pair)


@pytest.fixture(scope="module")
def with_density(trained):
    """The trained posterior with a standard NPE on the same simulations as its fiber density."""
    from dic_sbi.sbi import train_conductance_posterior
    from dic_sbi.sbi.box_dic import BoxDICPosterior

    post, _, x, prior = trained
    theta = prior.sample((300,), seed=0)
    run = train_conductance_posterior("da", 300, scale="linear", prior=prior, theta=theta, x=x, seed=3,
                                      training=dict(max_num_epochs=3), show_progress_bars=False)  # fmt: skip
    return BoxDICPosterior(post.dic_posterior, post.fiber_net, "da", pair=post.pair, x_dim=post.x_dim, prior=prior,
                           fiber_density=run.posterior, fiber_proposals=16), run.posterior, x, prior  # fmt: skip


def test_fiber_density_samples_box_cells_with_exact_dics(with_density):
    """With a fiber density, samples are still box cells with their DICs exactly, seeded, batched; they follow the
    density: more NPE log-density on average than the plain fiber flow's samples of the same DICs."""
    dens, npe, x, prior = with_density
    g, t = dens.sample((300,), x=x[:1], seed=3, return_dics=True)
    ok = torch.isfinite(g).all(dim=1)
    assert ok.float().mean() > 0.9
    assert bool(((g[ok] >= prior.low.double()) & (g[ok] <= prior.high.double())).all())
    np.testing.assert_allclose(dics("da", g[ok].numpy())[:, 1:], t[ok].numpy(), rtol=0, atol=1e-6)
    assert torch.equal(dens.sample((40,), x=x[:1], seed=4), dens.sample((40,), x=x[:1], seed=4))
    assert dens.sample_batched((5,), x=x[:3], seed=2).shape == (5, 3, 7)
    # The resampling moves the draws towards the density: compare with the plain flow's draws on the same DICs.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        plain, ok_p = dens.cells_of(t[ok].numpy(), dens.sample_others(t[ok], x[:1]))
    lp = lambda c: npe.log_prob(torch.as_tensor(c, dtype=torch.float32), x=x[:1], norm_posterior=False).mean()  # noqa: E731
    assert float(lp(g[ok])) > float(lp(plain[ok_p]))
    assert "density on the fiber" in repr(dens)
    with pytest.raises(InvalidInputError, match="fiber_density"):
        type(dens)(dens.dic_posterior, dens.fiber_net, "da", pair=dens.pair, x_dim=dens.x_dim, prior=prior,
                   fiber_density=object())  # fmt: skip
    with pytest.raises(InvalidInputError, match="fiber_proposals"):
        type(dens)(dens.dic_posterior, dens.fiber_net, "da", pair=dens.pair, x_dim=dens.x_dim, prior=prior,
                   fiber_density=npe, fiber_proposals=0)  # fmt: skip


def test_log_prob_against_brute_force_marginal(with_density, trained):
    """``log_prob`` with a fiber density is ``log q_density(θ) + log q(t) - log Z(t)``, ``Z(t)`` the density's
    mass on the fiber of ``t`` (its DIC marginal): the estimate (defensive importance sampling, 2 048 draws) against
    plain Monte Carlo over the other conductances' box (20 000 uniform draws per fiber). Without a density, the
    fiber flow's density over the conductances carries its coordinates' Jacobian (against finite differences of
    ``to_w``); outside the box log_prob is -inf."""
    from dic_sbi.core.fiber import pair_log_jacobian

    dens, npe, x, prior = with_density
    post = trained[0]
    torch.manual_seed(1)
    g = npe.sample((5,), x=x[:1], show_progress_bars=False).double().numpy()
    t = dics("da", g)[:, 1:]

    def log_density(cells):
        return npe.log_prob_batched(torch.as_tensor(cells, dtype=torch.float32)[None], x=x[:1],
                                    norm_posterior=False)[0].double().numpy()  # fmt: skip

    lq_t = dens.dic_posterior.log_prob(torch.as_tensor(t, dtype=torch.float32), x=x[:1]).double().numpy()
    estimated = log_density(g) + lq_t - dens.log_prob(g, x=x[:1], seed=1, proposals=2048).numpy()
    rng = np.random.default_rng(0)
    lo, hi = dens.low[dens.others], dens.high[dens.others]
    for i in range(5):
        others = lo + (hi - lo) * rng.random((20000, lo.size))
        cells, ok = dens.cells_of(np.repeat(t[i : i + 1], 20000, axis=0), others)
        w = np.zeros(20000)
        w[ok] = np.exp(log_density(cells[ok]) - pair_log_jacobian("da", cells[ok], pair=dens.pair)) * np.prod(hi - lo)
        assert abs(estimated[i] - np.log(w.mean())) < 0.25, (i, estimated[i], np.log(w.mean()))
    # The flow's density over the other conductances: its density over w times |dw/do| (diagonal map).
    o = g[:, post.others]
    h = 1e-6 * (post.high - post.low)[post.others]
    dw = (post.to_w(o + h) - post.to_w(o - h)) / (2 * h)
    cond = torch.cat([x[:1].expand(5, -1), torch.as_tensor(t, dtype=torch.float32)], 1)
    with torch.no_grad():
        lw = post.fiber_net.log_prob(torch.as_tensor(post.to_w(o), dtype=torch.float32)[None], condition=cond)[0]
    np.testing.assert_allclose(post.fiber_log_prob(o, t, x[:1]), lw.double().numpy() + np.log(np.abs(dw)).sum(1),
                               atol=1e-4)  # fmt: skip
    assert np.isfinite(post.log_prob(g, x=x[:1], seed=0).numpy()).all()
    out = g[:2].copy()
    out[:, 0] = float(prior.high[0]) * 2
    assert torch.isinf(dens.log_prob(out, x=x[:1], seed=0)).all() and torch.isinf(post.log_prob(out, x=x[:1])).all()
    with pytest.raises(InvalidInputError, match="one observation"):
        dens.log_prob(g[:2], x=x[:2])


def test_training_with_a_density_and_mixing(trained):
    """train_box_dic_posterior(fiber_density="npe") trains NPE on the same rows; mixtures mix the densities too."""
    from dic_sbi.sbi import mixture_posterior
    from dic_sbi.sbi.box_dic import train_box_dic_posterior

    _, _, x, prior = trained
    theta = prior.sample((300,), seed=0)
    post, summary = train_box_dic_posterior("da", theta, x, prior=prior, seed=4, fiber_density="npe",
                                            fiber_proposals=8, training=dict(max_num_epochs=2),
                                            simulator=ConductanceSimulator("da", duration=1500.0, transient=500.0),
                                            show_progress_bars=False)  # fmt: skip
    assert post.fiber_density is not None and post.fiber_proposals == 8 and summary["density_epochs"] >= 1
    mix = mixture_posterior([post, post])
    assert mix.fiber_density is not None and mix.sample((5,), x=x[:1], seed=0).shape == (5, 7)
    with pytest.raises(InvalidInputError, match="have a fiber density and some do not"):
        mixture_posterior([post, trained[0]])
    with pytest.raises(InvalidInputError, match="fiber_density"):
        train_box_dic_posterior("da", theta, x, fiber_density="flow", show_progress_bars=False)


def test_fiber_density_in_chunks(with_density, monkeypatch):
    """Proposals are evaluated in chunks of rows (sbi's run_sbc asks for 10⁵–10⁶ cells at once): with a tiny chunk,
    samples and log_prob are still box cells with exact DICs and finite densities."""
    import dic_sbi.sbi.box_dic as box_dic

    dens, _, x, prior = with_density
    monkeypatch.setattr(box_dic, "PROPOSAL_CHUNK", 40)  # 16 proposals: 2 rows per chunk
    g, t = dens.sample((25,), x=x[:1], seed=3, return_dics=True)
    ok = torch.isfinite(g).all(dim=1)
    assert ok.float().mean() > 0.9
    assert bool(((g[ok] >= prior.low.double()) & (g[ok] <= prior.high.double())).all())
    np.testing.assert_allclose(dics("da", g[ok].numpy())[:, 1:], t[ok].numpy(), rtol=0, atol=1e-6)
    assert dens.sample_batched((3,), x=x[:5], seed=1).shape == (3, 5, 7)
    assert np.isfinite(dens.log_prob(g[ok][:5], x=x[:1], seed=0, proposals=16).numpy()).all()
