"""Known conditions (the noise level) as posterior inputs: feature layout, DICPosterior.condition, training,
save/load, evaluation, infer and the train command."""

from __future__ import annotations

import logging
import shlex

import numpy as np
import pytest
import torch

from dic_sbi.errors import InvalidInputError
from dic_sbi.sbi.features import SUMMARY_NAMES, feature_names, with_conditions

logging.getLogger("neo").setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHORT = dict(duration=1500.0, transient=500.0)
K = len(SUMMARY_NAMES)


def test_condition_columns_go_between_the_summary_and_the_isi_sequence():
    assert feature_names("summary", conditions=("noise_std",)) == SUMMARY_NAMES + ("noise_std",)
    names = feature_names("isi", 3, conditions=("noise_std",))
    assert names[K] == "noise_std" and names[K + 1] == "n_isis" and len(names) == K + 1 + 1 + 3
    x = torch.arange(2 * (K + 4), dtype=torch.float32).reshape(2, K + 4)
    out = with_conditions(x, [5.0])
    assert out.shape == (2, K + 5)
    torch.testing.assert_close(out[:, :K], x[:, :K])
    torch.testing.assert_close(out[:, K + 1 :], x[:, K:])
    assert torch.all(out[:, K] == 5.0)
    per_row = with_conditions(x, np.array([[0.0], [5.0]]))
    assert per_row[:, K].tolist() == [0.0, 5.0]
    with pytest.raises(InvalidInputError, match="conditions"):
        feature_names("summary", conditions=("temperature",))
    with pytest.raises(InvalidInputError, match="values"):
        with_conditions(x, np.zeros((3, 1)))
    with pytest.raises(InvalidInputError, match="x: expected"):
        with_conditions(torch.zeros(2, 5), [0.0])


@pytest.fixture(scope="module")
def conditioned(tmp_path_factory):
    """A small STG posterior trained on noise-free and noisy simulations with σ as a known input, saved."""
    from dic_sbi.sbi import DICPrior, DICSimulator, train_dic_posterior
    from dic_sbi.sbi.pretrained import save_pretrained

    prior = DICPrior("stg")
    thetas, xs, sigmas = [], [], []
    for sigma, n, seed in ((0.0, 300, 1), (5.0, 200, 2)):
        theta = prior.sample((n,), seed=seed)
        x = DICSimulator("stg", noise_std=sigma, **SHORT)(theta, seed=seed)
        thetas.append(theta)
        xs.append(x)
        sigmas.append(np.full(n, sigma))
    theta = torch.cat(thetas)
    x = with_conditions(torch.cat(xs), np.concatenate(sigmas)[:, None])
    run = train_dic_posterior("stg", 500, theta=theta, x=x, conditions={"noise_std": ((0.0, 0.0), (5.0, 5.0))},
                              training={"max_num_epochs": 5}, seed=0, torch_threads=1, **SHORT)  # fmt: skip
    path = tmp_path_factory.mktemp("pretrained") / "stg_cond"
    save_pretrained(run.posterior, path, estimator={"density_estimator": "nsf", "hidden_features": 50, "num_transforms": 5},
                    info={"name": "stg_cond"})  # fmt: skip
    return path, run, torch.cat(xs)


def test_condition_checks_names_and_trained_values(conditioned):
    _, run, x = conditioned
    post = run.posterior
    assert post.conditions == {"noise_std": ((0.0, 0.0), (5.0, 5.0))}
    xc = post.condition(x[:3], noise_std=5.0)
    assert xc.shape == (3, K + 1) and post.conditions_of(xc) == {"noise_std": 5.0}
    with pytest.raises(InvalidInputError, match=r"noise_std: this posterior was trained at noise_std = 0 or 5, got 2.5"):
        post.condition(x[:1], noise_std=2.5)
    with pytest.raises(InvalidInputError, match="noise_std: required"):
        post.condition(x[:1])
    with pytest.raises(InvalidInputError, match="temperature: not a condition"):
        post.condition(x[:1], noise_std=0.0, temperature=20.0)
    # x without its condition column: a clear error with the fix, not a shape error deep inside the flow
    with pytest.raises(InvalidInputError, match=r"expected 18 columns, got 17; add the known conditions"):
        post.sample((2,), x=x[:1])


def test_conditioned_posterior_round_trips_and_the_condition_matters(conditioned):
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info

    path, run, x = conditioned
    info = pretrained_info(path)
    assert info["features"]["conditions"] == {"noise_std": [[0.0, 0.0], [5.0, 5.0]]}
    assert info["features"]["names"][K] == "noise_std"
    loaded = load_pretrained(path)
    assert loaded.conditions == run.posterior.conditions
    firing = x[x[:, SUMMARY_NAMES.index("is_silent")] == 0][:4]
    theta = run.theta[:6]
    for sigma in (0.0, 5.0):
        xc = loaded.condition(firing[:1], noise_std=sigma)
        torch.testing.assert_close(loaded.log_prob_dics(theta, x=xc), run.posterior.log_prob_dics(theta, x=xc))
    lp0 = loaded.log_prob_dics(theta, x=loaded.condition(firing[:1], noise_std=0.0))
    lp5 = loaded.log_prob_dics(theta, x=loaded.condition(firing[:1], noise_std=5.0))
    assert not torch.allclose(lp0, lp5)  # the network reads the noise level


def test_evaluation_passes_the_heldout_noise_level(conditioned):
    from dic_sbi.sbi.evaluation import evaluate_dic_posterior, heldout_set

    _, run, _ = conditioned
    ho = heldout_set("stg", n_points=6, cells_per_point=2, noise_std=5.0, seed=3, **SHORT)
    report = evaluate_dic_posterior(run.posterior, ho, n_samples=50, calibration_samples=20, ppc_points=2,
                                    ppc_cells=4, seed=0)  # fmt: skip
    assert report["noise_std"] == 5.0 and report["n_observations"] + report["n_invalid"] == 12
    ho_bad = heldout_set("stg", n_points=2, cells_per_point=1, noise_std=2.0, seed=3, **SHORT)
    with pytest.raises(InvalidInputError, match="noise_std"):
        evaluate_dic_posterior(run.posterior, ho_bad, n_samples=10, calibration_samples=10, ppc_points=0)


def test_infer_conditions_on_the_given_noise_level(conditioned, tmp_path, capsys):
    from dic_sbi import simulate
    from dic_sbi.cli import main, write_spikes_csv
    from dic_sbi.data import example_cells
    from dic_sbi.inference import infer

    path, run, _ = conditioned
    res = simulate("stg", example_cells()["stg"], **SHORT)
    cells = tmp_path / "cell.csv"
    write_spikes_csv(cells, [res.times])
    out = infer(cells, "stg", 30, posterior=run.posterior, seed=0, validate=True, noise_std=5.0, traces=0)
    assert out.noise_std == 5.0 and out.report()["noise_std"] == 5.0
    assert out.trains[0].x.shape == (K + 1,) and out.trains[0].x[K] == 5.0
    default = infer(cells, "stg", 5, posterior=run.posterior, seed=0, preview=0, traces=0)
    assert default.noise_std == 0.0 and default.trains[0].x[K] == 0.0
    with pytest.raises(InvalidInputError, match="noise_std: this posterior was trained at"):
        infer(cells, "stg", 5, posterior=run.posterior, noise_std=1.0)
    with pytest.raises(InvalidInputError, match="noise_std: expected a finite"):
        infer(cells, "stg", 5, posterior=run.posterior, noise_std=-1.0)
    # the command line: a σ the posterior does not know fails cleanly and writes nothing
    dest = tmp_path / "pop"
    assert main(["infer", str(cells), "--model", "stg", "-n", "5", "--out", str(dest), "--posterior", str(path),
                 "--noise-std", "3", "--quiet", "--no-plots"]) != 0  # fmt: skip
    assert "--noise-std: this posterior was trained at --noise-std = 0 or 5, got 3.0" in capsys.readouterr().err  # the flag, not the parameter
    assert not dest.exists()
    assert main(["infer", str(cells), "--model", "stg", "-n", "5", "--out", str(dest), "--posterior", str(path),
                 "--noise-std", "5", "--quiet", "--no-plots"]) == 0  # fmt: skip
    assert (dest / "population.csv").is_file()


def test_isi_output_with_conditions_trains():
    from dic_sbi.sbi import DICPrior, DICSimulator, train_dic_posterior

    theta = DICPrior("stg").sample((60,), seed=0)
    x = DICSimulator("stg", output="isi", max_isis=8, **SHORT)(theta, seed=0)
    xc = with_conditions(x, np.repeat([[0.0], [5.0]], 30, axis=0))
    run = train_dic_posterior("stg", 60, theta=theta, x=xc, conditions={"noise_std": ((0.0, 0.0), (5.0, 5.0))}, output="isi",
                              max_isis=8, training={"max_num_epochs": 1}, seed=0, torch_threads=1, **SHORT)  # fmt: skip
    assert run.posterior.sample((3,), x=xc[:1], seed=0).shape == (3, 8)
    with pytest.raises(InvalidInputError, match="columns"):
        train_dic_posterior("stg", 60, theta=theta, x=x, conditions={"noise_std": ((0.0, 0.0), (5.0, 5.0))}, output="isi",
                            max_isis=8, **SHORT)  # fmt: skip
    with pytest.raises(InvalidInputError, match="theta and x"):
        train_dic_posterior("stg", 60, conditions={"noise_std": ((0.0, 0.0), (5.0, 5.0))}, **SHORT)


def test_campaign_draws_the_noise_level_per_simulation(tmp_path):
    from dic_sbi import simulate
    from dic_sbi.campaign import CampaignSpec, CampaignStore, run_campaign
    from dic_sbi.campaign.runner import compute_chunk

    spec = CampaignSpec("stg", "dic", num=24, chunk_size=12, seed=5, noise_std=[1.0, 4.0], **SHORT)
    assert spec.noise_std == (1.0, 4.0) and spec.noise_range == (1.0, 4.0)
    run_campaign(spec, tmp_path / "s", progress=False)
    data = CampaignStore.open(tmp_path / "s").read(("conductances", "x", "noise_std"))
    sig = data["noise_std"]
    assert sig.shape == (24,) and np.all((sig >= 1.0) & (sig <= 4.0)) and np.unique(sig).size == 24
    # each row is its cell simulated at its own σ (the chunk's noise stream, recomputed)
    again = compute_chunk(spec, 1)
    np.testing.assert_array_equal(again["noise_std"], sig[12:])
    np.testing.assert_array_equal(again["x"], data["x"][12:])
    # resuming the same range finds the store complete; another range is refused
    assert run_campaign(CampaignSpec("stg", "dic", num=24, chunk_size=12, seed=5, noise_std=(1, 4), **SHORT),
                        tmp_path / "s", progress=False).computed == []  # fmt: skip
    with pytest.raises(InvalidInputError):
        run_campaign(CampaignSpec("stg", "dic", num=24, chunk_size=12, seed=5, noise_std=(1, 3), **SHORT),
                     tmp_path / "s", progress=False)  # fmt: skip
    for bad in ((4.0, 1.0), (-1.0, 2.0), (1.0, float("nan")), (1.0, 2.0, 3.0), ("a", "b")):
        with pytest.raises(InvalidInputError, match="noise_std"):
            CampaignSpec("stg", "dic", num=4, noise_std=bad)
    # a fixed σ still gives a store without the per-row field
    fixed = CampaignSpec("stg", "dic", num=4, chunk_size=4, seed=5, noise_std=2.0, **SHORT)
    assert "noise_std" not in fixed.shapes() and compute_chunk(fixed, 0).get("noise_std") is None


def test_train_with_a_noise_range_as_input(tmp_path):
    from dic_sbi.cli import build_parser, main
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info
    from dic_sbi.train import evaluate_pretrained

    out = tmp_path / "stg_range"
    argv = ["train", "--model", "stg", "--out", str(out), "--work", str(tmp_path / "work"), "--num-simulations", "200",
            "--noisy-simulations", "100", "--noise-std", "1,5", "--noise-input", "--max-epochs", "2",
            "--heldout-points", "6", "--cells-per-point", "2", "--ppc-points", "2", "--ppc-cells", "3",
            "--duration", "1500", "--transient", "500", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    info = pretrained_info(out)
    assert info["features"]["conditions"] == {"noise_std": [[0.0, 0.0], [1.0, 5.0]]}
    assert info["training"]["campaigns"][1]["noise_std"] == [1.0, 5.0]
    assert info["heldout"]["noise_std"] == [0.0, 5.0] and info["metrics"]["noisy"]["noise_std"] == 5.0
    parser = build_parser()
    stored = parser.parse_args(shlex.split(info["command"])[1:])
    assert stored.noise_std == (1.0, 5.0) and stored.noise_input is True
    assert vars(stored) == {**vars(parser.parse_args(argv)), "quiet": False}
    post = load_pretrained(out)
    x = torch.zeros(1, K)
    assert post.condition(x, noise_std=2.5)[0, K] == 2.5 and post.condition(x, noise_std=0.0)[0, K] == 0.0
    with pytest.raises(InvalidInputError, match="trained at noise_std = 0 or 1 to 5, got 0.5"):
        post.condition(x, noise_std=0.5)
    again = evaluate_pretrained(out, quiet=True)
    assert again["noisy"]["accuracy"] == info["metrics"]["noisy"]["accuracy"]


def test_train_noise_input_option_round_trips_through_the_command(tmp_path):
    from dic_sbi.cli import build_parser
    from dic_sbi.train import _command, train_pretrained

    parser = build_parser()
    for flag in (True, False):
        cmd = _command("o", "w", "stg", 10, 5, 5.0, 0, 5, {"hidden_features": 8, "num_transforms": 1},
                       {"max_num_epochs": 1}, 2, 1, 1, 1, 1, flag, {})  # fmt: skip
        assert parser.parse_args(shlex.split(cmd)[1:]).noise_input is flag
    with pytest.raises(InvalidInputError, match="noise_input: needs a noisy campaign"):
        train_pretrained("stg", tmp_path / "o", work_dir=tmp_path / "w", num_simulations=10, noisy_simulations=0,
                         noise_input=True, quiet=True)  # fmt: skip
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--out", "o", "--work", "w", "--noise-std", "1,2,3"])


def test_observe_reads_a_train_with_the_features_and_conditions_the_posterior_was_trained_on():
    """The shipped STG posterior reads summary + interval statistics and σ; a summary-only one reads 17 columns."""
    import dic_sbi
    from dic_sbi.sbi import DICPosterior, summary_statistics
    from dic_sbi.sbi.pretrained import load_pretrained

    train = dic_sbi.read_recording(dic_sbi.data.example_recording("stg"))[0]
    post = load_pretrained("stg")
    x = post.observe(train, noise_std=1.0)
    assert post.simulator.output == "intervals"
    assert x.shape == (1, len(feature_names("intervals", conditions=("noise_std",))))
    by_hand = with_conditions(summary_statistics(train, output="intervals"), [1.0])
    torch.testing.assert_close(x, by_hand)
    assert x[0, K] == 1.0  # σ after the summary
    post.sample((3,), x=x, seed=0)  # the network accepts it
    with pytest.raises(InvalidInputError, match="noise_std: required"):
        post.observe(train)
    summary_only = DICPosterior(post.posterior, "stg")  # no simulator: the 17 summary features, no conditions
    torch.testing.assert_close(summary_only.observe(train), summary_statistics(train))
