"""Simulators and features of the sbi layer: sbi's simulator contract, parallel runs, encoding of x."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from sbi.inference import NLE, NRE, simulate_for_sbi
from sbi.utils import process_prior
from sbi.utils.user_input_checks import check_sbi_inputs, process_simulator

import dic_sbi
from dic_sbi.core.dics import dics
from dic_sbi.errors import InvalidInputError, UnreachableTargetError
from dic_sbi.sbi import (
    SUMMARY_NAMES,
    ConductancePrior,
    ConductanceSimulator,
    DICPrior,
    DICSimulator,
    ISIEmbedding,
    summary_statistics,
)
from dic_sbi.sbi.features import SENTINEL

# Small networks train fastest on one thread; on a loaded 2-core machine OpenMP barriers make 2 threads ~100x
# slower per step.
torch.set_num_threads(1)

SHORT = {"stg": dict(duration=2000.0, transient=500.0), "da": dict(duration=4000.0, transient=1000.0)}


@pytest.fixture(scope="module")
def stg_prior():
    return DICPrior("stg")


@pytest.mark.parametrize("model", ["stg", "da"])
@pytest.mark.parametrize("space", ["dic", "conductance"])
def test_simulators_pass_sbi_checks(model, space):
    if space == "dic":
        prior, simulator = DICPrior(model), DICSimulator(model, **SHORT[model])
    else:
        prior, simulator = ConductancePrior(model, "log"), ConductanceSimulator(model, **SHORT[model])
    prior, _, returns_numpy = process_prior(prior)
    wrapped = process_simulator(simulator, prior, returns_numpy)
    check_sbi_inputs(wrapped, prior)
    theta = prior.sample((16,), seed=0)
    x = simulator(theta, seed=1)
    assert x.dtype == torch.float32 and x.shape == (16, len(SUMMARY_NAMES))
    assert bool(torch.isfinite(x).all())  # silent and undefined features are encoded, never NaN
    assert torch.equal(x, simulator(theta.numpy(), seed=1))  # numpy in, same result
    assert torch.equal(simulator(theta[0], seed=1), simulator(theta[:1], seed=1))  # one θ without batch dim


def test_simulate_for_sbi_with_two_workers(stg_prior):
    simulator = DICSimulator("stg", **SHORT["stg"])
    prior, _, returns_numpy = process_prior(stg_prior)
    wrapped = process_simulator(simulator, prior, returns_numpy)
    kwargs = dict(num_workers=2, simulation_batch_size=50, seed=11, show_progress_bar=False)
    theta, x = simulate_for_sbi(wrapped, prior, 400, **kwargs)
    assert theta.shape == (400, 2) and x.shape == (400, len(SUMMARY_NAMES)) and x.dtype == torch.float32
    assert bool(torch.isfinite(x).all())
    theta2, x2 = simulate_for_sbi(wrapped, prior, 400, **kwargs)
    assert torch.equal(theta, theta2) and torch.equal(x, x2)  # reproducible across worker processes


def test_simulators_are_seeded_and_picklable(stg_prior):
    simulator = DICSimulator("stg", **SHORT["stg"])
    theta = stg_prior.sample((32,), seed=0)
    a, b = simulator(theta, seed=5), simulator(theta, seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, simulator(theta, seed=6))  # another compensated cell per θ
    clone = pickle.loads(pickle.dumps(simulator))
    assert clone.model is simulator.model
    assert torch.equal(clone(theta, seed=5), a)
    torch.manual_seed(0)  # seed=None follows torch's global generator, which sbi seeds in its workers
    c = simulator(theta)
    torch.manual_seed(0)
    assert torch.equal(c, simulator(theta))


def test_dic_simulator_cells_hit_their_targets(stg_prior):
    simulator = DICSimulator("stg", **SHORT["stg"])
    theta = stg_prior.sample((20,), seed=3)
    x, cells = simulator.simulate_with_cells(theta, seed=2)
    got = dics("stg", cells)[:, 1:]
    np.testing.assert_allclose(got, theta.double().numpy(), atol=1e-6)
    # The cells behind x are the cells simulate() sees: same x through ConductanceSimulator.
    same = ConductanceSimulator("stg", **SHORT["stg"])(cells)
    assert torch.equal(x, same)


def test_unreachable_theta_gives_nan_or_raises():
    theta = torch.tensor([[10.0, 0.05], [-5.0, 5.0]])  # DA cannot reach the first target
    x = DICSimulator("da", **SHORT["da"])(theta, seed=0)
    assert bool(torch.isnan(x[0]).all()) and bool(torch.isfinite(x[1]).all())
    with pytest.raises(UnreachableTargetError):
        DICSimulator("da", on_unreachable="raise", **SHORT["da"])(theta, seed=0)


def test_bad_theta_is_reported():
    with pytest.raises(InvalidInputError, match="theta"):
        DICSimulator("stg")(torch.zeros(4, 3))
    with pytest.raises(InvalidInputError, match="theta"):
        DICSimulator("stg")(torch.tensor([[np.nan, 1.0]]))
    with pytest.raises(InvalidInputError, match="theta"):
        ConductanceSimulator("stg")(-torch.ones(1, 8))
    with pytest.raises(InvalidInputError, match="output"):
        DICSimulator("stg", output="voltage")


def test_encoding_of_silent_and_undefined_features():
    # Silent (0, 1, 2 spikes), tonic and bursting trains built by hand, over a 1000 ms window.
    trains = [
        [],
        [100.0],
        [100.0, 300.0],
        list(np.arange(50.0, 1000.0, 100.0)),
        [b + 5.0 * k for b in (100.0, 400.0, 700.0) for k in range(4)],
    ]
    x = summary_statistics([np.asarray(t) for t in trains], t_start=0.0, t_stop=1000.0)
    col = {name: j for j, name in enumerate(SUMMARY_NAMES)}
    assert x.shape == (5, len(SUMMARY_NAMES)) and bool(torch.isfinite(x).all())
    assert x[:3, col["is_silent"]].tolist() == [1, 1, 1]
    assert x[3, col["is_spiking"]] == 1 and x[4, col["is_bursting"]] == 1
    assert x[0, col["log10_rate_hz"]] == pytest.approx(-1.0)  # rate floored at 0.1 Hz
    assert x[:2, col["has_isi"]].tolist() == [0, 0] and x[2, col["has_isi"]] == 1
    assert x[2, col["log10_mean_isi_ms"]] == pytest.approx(np.log10(200.0))
    assert x[0, col["cv"]] == SENTINEL and x[3, col["log10_burst_period_ms"]] == SENTINEL
    assert x[4, col["has_bursts"]] == 1 and x[4, col["log10_spikes_per_burst"]] == pytest.approx(np.log10(4.0))
    assert x[4, col["has_burst_period"]] == 0  # one full burst only: no period
    for j in range(10):  # every defined encoded value lies above the sentinel
        defined = x[:, j][x[:, j] != SENTINEL]
        assert bool((defined > SENTINEL).all())


def test_summary_statistics_of_a_recording_match_the_simulator(stg_prior):
    simulator = DICSimulator("stg", **SHORT["stg"])
    theta = stg_prior.sample((6,), seed=1)
    x, cells = simulator.simulate_with_cells(theta, seed=0)
    result = dic_sbi.simulate("stg", cells, **SHORT["stg"])
    assert torch.equal(summary_statistics(result), x)
    trains = result.spiketrains()  # neo.SpikeTrain with their own window
    assert torch.allclose(summary_statistics(trains), x, atol=1e-5)
    single = summary_statistics(trains[2])
    assert single.shape == (1, len(SUMMARY_NAMES)) and torch.allclose(single[0], x[2], atol=1e-5)
    with pytest.raises(InvalidInputError, match="t_start"):
        summary_statistics([np.array([1.0, 2.0])])


def test_isi_output_and_embedding(stg_prior):
    simulator = DICSimulator("stg", output="isi", max_isis=64, **SHORT["stg"])
    theta = stg_prior.sample((8,), seed=0)
    x = simulator(theta, seed=0)
    k = len(SUMMARY_NAMES)
    assert x.shape == (8, k + 1 + 64) and simulator.x_dim == x.shape[1]
    n = x[:, k].long()
    assert bool((n >= 1).all()) and bool((n <= 64).all())
    for i in range(8):  # zero padding after the n real log-ISIs
        assert bool((x[i, k + 1 + n[i] :] == 0).all())
    net = ISIEmbedding(64, output_dim=16)
    out = net(x)
    assert out.shape == (8, 16) and bool(torch.isfinite(out).all())
    # Padding never leaks: changing padded entries leaves the embedding unchanged.
    y = x.clone()
    y[0, k + 1 + n[0] :] = 7.0
    assert torch.allclose(net(y)[0], out[0], atol=1e-6)
    silent = torch.zeros(1, k + 1 + 64)
    assert bool(torch.isfinite(net(silent)).all())


def test_sequence_embedding_puts_an_sbi_net_on_the_isi_layout(stg_prior):
    from sbi.neural_nets.embedding_nets import CausalCNNEmbedding

    from dic_sbi import SequenceEmbedding, train_dic_posterior

    simulator = DICSimulator("stg", output="isi", max_isis=64, **SHORT["stg"])
    theta = stg_prior.sample((200,), seed=0)
    x = simulator(theta, seed=0)
    k = len(SUMMARY_NAMES)
    torch.manual_seed(0)
    cnn = CausalCNNEmbedding(input_shape=(64,), in_channels=2, num_conv_layers=3, pool_kernel_size=8, output_dim=12)
    net = SequenceEmbedding(cnn, 12, 64, output_dim=16)
    out = net(x[:8])
    assert out.shape == (8, 16) and bool(torch.isfinite(out).all())
    # The sequence net sees masked values: what lies in the padding cannot change the embedding.
    n0 = int(x[0, k])
    y = x[:8].clone()
    y[0, k + 1 + n0 :] = 7.0
    assert torch.equal(net(y), out)
    # ... while the real ISIs do.
    y[0, k + 1] += 0.5
    assert not torch.allclose(net(y)[0], out[0])
    with pytest.raises(InvalidInputError, match="ISI embedding expects"):
        net(x[:, :-1])
    with pytest.raises(InvalidInputError, match="sequence_dim"):
        SequenceEmbedding(cnn, 0, 64)
    # It trains as the embedding of a DIC posterior and samples inside the prior.
    run = train_dic_posterior("stg", 200, simulator=simulator, theta=theta, x=x, seed=0, embedding_net=net,
                              hidden_features=16, num_transforms=2, training={"max_num_epochs": 2},
                              torch_threads=1)  # fmt: skip
    s = run.posterior.posterior.sample((50,), x=x[0], show_progress_bars=False)  # (g_s, g_u), before compensation
    assert s.shape == (50, 2) and bool(stg_prior.support.check(s).all())


def test_x_trains_nle_and_nre(stg_prior):
    # The encoding has no NaN, so likelihood and ratio estimators accept it (they refuse NaN rows).
    simulator = DICSimulator("stg", **SHORT["stg"])
    theta = stg_prior.sample((300,), seed=0)
    x = simulator(theta, seed=0)
    for method in (NLE, NRE):
        torch.manual_seed(0)
        inference = method(prior=stg_prior, show_progress_bars=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inference.append_simulations(theta, x).train(max_num_epochs=2)
            posterior = inference.build_posterior()
            lp = posterior.log_prob(theta[:5], x=x[0])
        assert bool(torch.isfinite(lp).all())
