"""Truncated-proposal refinement of an amortised DIC posterior for one recording (dic_sbi.sbi.refine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dic_sbi
from dic_sbi.errors import InvalidInputError
from dic_sbi.sbi import DICPosterior
from dic_sbi.sbi.pretrained import load_pretrained
from dic_sbi.sbi.refine import _truncated_prior_sample, refine_posterior


@pytest.fixture(scope="module")
def stg():
    post = load_pretrained("stg")
    rec = dic_sbi.io.read_recording(dic_sbi.data.example_recording("stg"))
    x = post.observe(rec[0], noise_std=0.0)
    return post, x


def _weights(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def test_truncated_targets_lie_in_the_posterior_region(stg):
    post, x = stg
    inner = post.posterior
    torch.manual_seed(0)
    t, drawn, thr = _truncated_prior_sample(inner, post.prior, x, 200, 1e-2, 5000)
    assert t.shape == (200, 2) and drawn >= 200
    # every accepted prior draw clears the threshold, and the threshold leaves ~1 % of q's own mass out
    assert (inner.log_prob(t, x=x, norm_posterior=False) > thr).all()
    q = inner.sample((5000,), x=x, show_progress_bars=False)
    below = (inner.log_prob(q, x=x, norm_posterior=False) <= thr).float().mean().item()
    assert 0.002 < below < 0.03
    # a region far smaller than the box: most prior draws were rejected
    assert 200 / drawn < 0.5
    assert post.prior.support.check(t).all()


def test_refine_returns_a_posterior_of_the_same_kind_and_leaves_the_amortised_one_alone(stg):
    post, x = stg
    before = _weights(post.posterior.posterior_estimator)
    free_before = _weights(post.free_conductances.net)
    ref = refine_posterior(post, x, num_simulations=60, max_epochs=3, seed=0)
    assert ref.simulations == 60 and len(ref.rounds) == 1
    r = ref.rounds[0]
    assert r["simulations"] == 60 and 0 < r["valid"] <= 60 and r["prior_draws"] >= 60
    assert 0 < r["region_prior_share"] <= 1 and r["dic_epochs"] >= 1 and r["free_epochs"] >= 1
    new = ref.posterior
    assert isinstance(new, DICPosterior) and new.free_conductances is not None
    assert new.model.name == "stg" and new.simulator is post.simulator
    # the fine-tuned networks are copies: the amortised posterior is unchanged, the refined one moved
    for a, b in zip(before, _weights(post.posterior.posterior_estimator)):
        assert torch.equal(a, b)
    for a, b in zip(free_before, _weights(post.free_conductances.net)):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(before, _weights(new.posterior.posterior_estimator)))
    # every cell keeps its DICs, exactly n come back
    g, d = new.sample((40,), x=x, seed=1, return_dics=True)
    assert g.shape == (40, 8)
    np.testing.assert_allclose(dic_sbi.dics("stg", g.numpy())[:, 1:], d.numpy(), atol=1e-5)
    assert ref.summary()["simulations"] == 60


def test_refine_is_reproducible_with_a_seed(stg):
    post, x = stg
    a = refine_posterior(post, x, num_simulations=40, max_epochs=2, seed=3)
    b = refine_posterior(post, x, num_simulations=40, max_epochs=2, seed=3)
    ga = a.posterior.sample((20,), x=x, seed=5)
    gb = b.posterior.sample((20,), x=x, seed=5)
    torch.testing.assert_close(ga, gb)


def test_refine_bad_input(stg):
    post, x = stg
    with pytest.raises(InvalidInputError, match="num_simulations"):
        refine_posterior(post, x, num_simulations=5)
    with pytest.raises(InvalidInputError, match="quantile"):
        refine_posterior(post, x, quantile=0.7)
    with pytest.raises(InvalidInputError, match="one observation"):
        refine_posterior(post, x.repeat(2, 1))
    with pytest.raises(InvalidInputError, match="non-finite"):
        refine_posterior(post, torch.full_like(x, float("nan")))
    with pytest.raises(InvalidInputError, match="conditional DICPosterior"):
        refine_posterior("stg", x)
    with pytest.raises(InvalidInputError, match="refine"):
        dic_sbi.infer(dic_sbi.data.example_recording("stg"), "stg", 10, refine=5)


def test_infer_with_refine_reports_its_cost(tmp_path):
    res = dic_sbi.infer(dic_sbi.data.example_recording("stg"), "stg", 30, seed=0, refine=40, preview=0, traces=0)
    t = res.trains[0]
    assert t.conductances.shape == (30, 8)
    np.testing.assert_allclose(dic_sbi.dics("stg", t.conductances)[:, 1:], t.dics, atol=1e-5)
    rep = res.report()["trains"][0]["refinement"]
    assert rep["simulations"] == 40 and rep["rounds"][0]["simulations"] == 40
    out = tmp_path / "o"
    from dic_sbi.cli import main

    assert main(["infer", str(dic_sbi.data.example_recording("stg")), "--model", "stg", "-n", "20", "--refine", "30",
                 "--seed", "1", "--no-plots", "--quiet", "--out", str(out)]) == 0  # fmt: skip
    import json

    assert json.loads((out / "report.json").read_text())["trains"][0]["refinement"]["simulations"] == 30
