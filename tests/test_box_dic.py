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
