"""Ensembles of DIC posteriors: the mixture estimator against its members, and ``dic-sbi train --members``."""

from __future__ import annotations

import shlex

import numpy as np
import pytest
import torch

from dic_sbi.errors import InvalidInputError


def _member(sign: float, seed: int):
    """A small NPE whose posterior at x sits near ``sign * x`` (two of them disagree where x is far from 0)."""
    from sbi.inference import NPE
    from sbi.utils import BoxUniform

    gen = torch.Generator().manual_seed(seed)
    prior = BoxUniform(-3 * torch.ones(2), 3 * torch.ones(2))
    theta = 6 * torch.rand((1500, 2), generator=gen) - 3
    x = sign * theta + 0.2 * torch.randn((1500, 2), generator=gen)
    torch.manual_seed(seed)
    npe = NPE(prior=prior, density_estimator="mdn", show_progress_bars=False)
    return npe.append_simulations(theta, x).train(max_num_epochs=40, stop_after_epochs=40).eval(), prior


@pytest.fixture(scope="module")
def disagreeing_members():
    a, prior = _member(1.0, 0)
    b, _ = _member(-1.0, 1)
    return a, b, prior


def test_mixture_density_and_samples_follow_its_members(disagreeing_members):
    """log q = log ((q_a + q_b) / 2) pointwise; half the samples come from each member, and each half lies
    where that member's own samples lie; batched sampling gives each x its own mixture."""
    from sbi.inference.posteriors import DirectPosterior

    from dic_sbi.sbi import MixtureEstimator

    a, b, prior = disagreeing_members
    mix = MixtureEstimator([a, b]).eval()
    post = DirectPosterior(posterior_estimator=mix, prior=prior)
    x = torch.tensor([[1.5, 1.5]])
    theta = torch.tensor([[1.5, 1.5], [-1.5, -1.5], [0.0, 0.3]]).unsqueeze(1)  # (sample, batch, event)
    with torch.no_grad():
        expected = torch.logaddexp(a.log_prob(theta, x), b.log_prob(theta, x)) - np.log(2)
        assert torch.allclose(mix.log_prob(theta, x), expected, atol=1e-5)
    torch.manual_seed(3)
    s = post.sample((4000,), x=x, show_progress_bars=False)
    near_a = (s.sum(1) > 0).float().mean()
    assert abs(float(near_a) - 0.5) < 0.04  # 4000 fair coin flips: sd 0.008
    torch.manual_seed(4)
    with torch.no_grad():
        own_a = a.sample(torch.Size((4000,)), x)[:, 0]
    assert torch.allclose(s[s.sum(1) > 0].mean(0), own_a.mean(0), atol=0.05)
    xs = torch.tensor([[1.5, 1.5], [0.0, 0.0]])
    sb = post.sample_batched((3000,), x=xs, show_progress_bars=False)
    assert sb.shape == (3000, 2, 2)
    assert abs(float((sb[:, 0].sum(1) > 0).float().mean()) - 0.5) < 0.05
    assert float(sb[:, 1].abs().mean()) < 0.5  # both members agree near x = 0
    lp = post.log_prob_batched(sb[:5], x=xs)
    assert lp.shape == (5, 2) and torch.isfinite(lp).all()


def test_mixture_refuses_one_member_and_other_shapes(disagreeing_members):
    from dic_sbi.sbi import MixtureEstimator

    a, _, _ = disagreeing_members
    with pytest.raises(InvalidInputError, match="at least 2"):
        MixtureEstimator([a])

    class Other(torch.nn.Module):
        input_shape, condition_shape = torch.Size([3]), torch.Size([2])

    with pytest.raises(InvalidInputError, match="different input"):
        MixtureEstimator([a, Other()])


def test_train_members_ships_a_reloadable_mixture(tmp_path):
    """``dic-sbi train --members 2``: two networks with their own seeds, stored in one weights file, recorded in
    the JSON and in the stored command; the reloaded posterior gives the trained one's metrics."""
    from dic_sbi.cli import build_parser, main
    from dic_sbi.sbi import MixtureEstimator
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info, save_pretrained
    from dic_sbi.train import evaluate_pretrained

    out = tmp_path / "stg_ens"
    argv = ["train", "--model", "stg", "--out", str(out), "--work", str(tmp_path / "work"), "--num-simulations", "300",
            "--noisy-simulations", "0", "--members", "2", "--seed", "7", "--max-epochs", "2", "--heldout-points", "6",
            "--cells-per-point", "2", "--ppc-points", "2", "--ppc-cells", "5", "--duration", "1500", "--transient",
            "500", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    info = pretrained_info(out)
    assert info["estimator"]["members"] == 2
    assert info["training"]["members"]["seeds"] == [9, 1009] and len(info["training"]["members"]["epochs"]) == 2
    parser = build_parser()
    assert vars(parser.parse_args(shlex.split(info["command"])[1:])) == {**vars(parser.parse_args(argv)), "quiet": False}
    post = load_pretrained(out)
    net = post.posterior.posterior_estimator
    assert isinstance(net, MixtureEstimator) and len(net.members) == 2
    from dic_sbi.sbi.embedding import Standardize
    from dic_sbi.sbi.ood import training_standardization

    scale = training_standardization(post)  # the OOD check reads the members' (shared) standardisation
    assert isinstance(scale, Standardize) and scale is net.members[0]._embedding_net
    first, second = (dict(m.named_parameters()) for m in net.members)
    assert any(not torch.equal(first[k], second[k]) for k in first)  # two trainings, not one network twice
    again = evaluate_pretrained(out, quiet=True)
    assert again["noise_free"]["accuracy"] == info["metrics"]["noise_free"]["accuracy"]
    # Per-recording refinement fine-tunes a copy of the whole mixture (its own likelihood as the loss).
    from dic_sbi.sbi.refine import refine_posterior

    x = post.simulator(post.prior.sample((1,), seed=3))
    ref = refine_posterior(post, x, num_simulations=40, max_epochs=2, seed=0).posterior
    refined = ref.posterior.posterior_estimator
    assert isinstance(refined, MixtureEstimator) and refined is not net
    assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), refined.parameters()))
    cells, dics = ref.sample((30,), x=x, seed=1, return_dics=True)
    assert cells.shape == (30, 8) and torch.isfinite(dics).all()
    # The JSON must rebuild the network its weights belong to.
    with pytest.raises(InvalidInputError, match="members=1"):
        save_pretrained(post, tmp_path / "bad", estimator={k: v for k, v in info["estimator"].items() if k != "members"})


def _law(seed: int, x_width: int):
    """A small learned free-conductance law of STG trained (2 epochs) on 300 DIC-prior cells with random x."""
    import dic_sbi
    from dic_sbi.sbi.free_conductances import train_free_conductances

    rng = np.random.default_rng(0)
    t = np.column_stack([rng.uniform(1, 10, 300), rng.uniform(2, 12, 300)])
    g = dic_sbi.degenerate_population("stg", t[:, 0], t[:, 1], 1, seed=rng)[:, 0]
    x = torch.as_tensor(rng.standard_normal((300, x_width)), dtype=torch.float32)
    est, _ = train_free_conductances("stg", t, g, x, training=dict(max_num_epochs=2), seed=seed,
                                     show_progress_bars=False, hidden_features=16, num_transforms=1)  # fmt: skip
    return est


def test_mixed_learned_laws_and_posteriors(tmp_path):
    """mixture_free_conductances: the law's density is the members' average (through the compensation's change of
    variables, which they share), its cells keep their DICs, and it saves and reloads; mixture_posterior mixes
    DICPosteriors with their laws, and refuses what cannot be mixed."""
    import copy

    import dic_sbi
    from dic_sbi.sbi import DICPosterior, MixtureEstimator, mixture_free_conductances, mixture_posterior
    from dic_sbi.sbi.free_conductances import FreeConductanceEstimator
    from dic_sbi.sbi.pretrained import load_pretrained, save_pretrained

    shipped = load_pretrained("stg")
    a, b = _law(0, shipped.x_width), _law(1, shipped.x_width)
    mix = mixture_free_conductances([a, b])
    assert isinstance(mix.net, MixtureEstimator) and mix.settings["members"] == 2
    t, x = np.array([[3.0, 5.0]]), torch.zeros((1, shipped.x_width))
    gl, u = a.sample_draws(np.repeat(t, 40, axis=0), x, seed=4)
    t40 = np.repeat(t, 40, axis=0)
    want = np.logaddexp(a.log_prob_draws(gl, u, t40, x), b.log_prob_draws(gl, u, t40, x)) - np.log(2)
    np.testing.assert_allclose(mix.log_prob_draws(gl, u, t40, x), want, rtol=1e-5)
    with pytest.raises(InvalidInputError, match="mixture of flows"):
        mix.base_coordinates(a.to_w(gl, u), t40, x)
    shifted = copy.copy(b)
    shifted.w_offset = np.zeros(b.n_draws_dim)
    with pytest.raises(InvalidInputError, match="w_offset"):
        mixture_free_conductances([a, shifted])
    with pytest.raises(InvalidInputError, match="differ"):
        mixture_free_conductances([a, _law(2, shipped.x_width + 1)])
    with pytest.raises(InvalidInputError, match="at least 2"):
        mixture_free_conductances([a])
    # Laws unpickled apart (replicates of a comparison) hold equal copies of one model: they mix.
    assert mixture_free_conductances([a, copy.deepcopy(b)]).model is a.model
    with pytest.raises(InvalidInputError, match="differ"):
        mixture_free_conductances([a, FreeConductanceEstimator(b.net, "stg-wide2", x_dim=b.x_dim, settings=b.settings)])

    posts = [DICPosterior(shipped.posterior, "stg", simulator=shipped.simulator, conditions=shipped.conditions,
                          free_conductances=f) for f in (a, b)]  # fmt: skip
    post = mixture_posterior(posts)
    assert isinstance(post.posterior.posterior_estimator, MixtureEstimator)
    assert isinstance(post.free_conductances.net, MixtureEstimator)
    obs = shipped.condition(shipped.simulator(shipped.prior.sample((1,), seed=3)), noise_std=0.0)
    cells, dics = post.sample((50,), x=obs, seed=1, return_dics=True)
    np.testing.assert_allclose(dic_sbi.dics("stg", cells.numpy())[:, 1:], dics.double().numpy(), atol=1e-5)
    save_pretrained(post, tmp_path / "mix", estimator={**pretrained_estimator(), "members": 2})
    back = load_pretrained(tmp_path / "mix")
    assert isinstance(back.free_conductances.net, MixtureEstimator) and len(back.free_conductances.net.members) == 2
    np.testing.assert_allclose(back.free_conductances.log_prob_draws(gl, u, t40, x), mix.log_prob_draws(gl, u, t40, x),
                               rtol=1e-6)  # fmt: skip
    with pytest.raises(InvalidInputError, match="all sbi DirectPosterior, all DICPosterior or all BoxDICPosterior"):
        mixture_posterior([posts[0], shipped.posterior])
    with pytest.raises(InvalidInputError, match="some have a learned"):
        mixture_posterior([posts[0], DICPosterior(shipped.posterior, "stg", simulator=shipped.simulator,
                                                  conditions=shipped.conditions)])  # fmt: skip


def pretrained_estimator() -> dict:
    """The shipped STG posterior's estimator settings (its JSON), to save a posterior built on its network."""
    from dic_sbi.sbi.pretrained import pretrained_info

    return dict(pretrained_info("stg")["estimator"])
