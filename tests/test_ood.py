"""Out-of-distribution warnings (issue 15): a recording unlike the training set, or a posterior pinned to the
prior box, is said so on the terminal and in report.json, and the exit status stays 0."""

from __future__ import annotations

import json
import re
import types

import numpy as np
import pytest
import torch

from dic_sbi import infer
from dic_sbi.cli import main
from dic_sbi.errors import InvalidInputError
from dic_sbi.sbi import Standardize
from dic_sbi.sbi.ood import Z_LIMIT, _z_scores, out_of_distribution, training_standardization


def _poisson_990_hz(path):
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(1 / 0.99, 3500))
    path.write_text("\n".join(f"{x:.4f}" for x in t[t < 3000]) + "\n")
    return path


def test_990_hz_poisson_train_is_flagged_on_the_terminal_and_in_the_report_with_exit_0(tmp_path, capsys):
    rec = _poisson_990_hz(tmp_path / "poisson.txt")
    code = main(["infer", str(rec), "--model", "stg", "-n", "20", "--out", str(tmp_path / "out"), "--no-plots",
                 "--quiet", "--seed", "0"])  # fmt: skip
    cap = capsys.readouterr()
    assert code == 0
    warnings = [line for line in cap.err.splitlines() if line.startswith("warning: train 0 (0): ")]
    assert any("outside the range the posterior was trained on: log10_rate_hz = 2.99" in w for w in warnings)
    # the network extrapolates: it pins some DIC to a bound of the box (which one is the network's guess)
    assert any(re.search(r"lie on the edge g_[su] = -?20 of the prior box", w) for w in warnings)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["warnings"] == [w.removeprefix("warning: ") for w in warnings]
    assert report["trains"][0]["out_of_distribution"] == [w.removeprefix("warning: train 0 (0): ") for w in warnings]


def test_a_pacemaker_far_slower_than_any_training_cell_is_flagged_in_python(tmp_path):
    rec = tmp_path / "pacemaker.txt"
    rec.write_text("\n".join(str(t) for t in np.arange(500.0, 6000.0, 1000.0)) + "\n")  # 1 Hz, regular
    with pytest.warns(UserWarning, match=r"train 0 \(0\): the recording's features lie outside .*log10_rate_hz = 0"):
        result = infer(rec, "stg", 10, seed=0, preview=0, traces=0)
    first, *edge = result.trains[0].out_of_distribution
    assert "z = -6" in first
    assert all("of the prior box" in w for w in edge)  # at most a pinned-posterior warning besides


def test_the_shipped_example_recordings_are_not_flagged(recwarn):
    from dic_sbi.data import example_noise_std, example_recording

    for model in ("stg", "da"):
        result = infer(example_recording(model), model, 200, seed=0, preview=0, traces=0,
                       noise_std=example_noise_std(model))  # fmt: skip
        assert result.trains[0].out_of_distribution == []
        assert result.report()["warnings"] == []
    assert not [w for w in recwarn if "posterior" in str(w.message)]


def test_edge_check_and_shapes():
    post = types.SimpleNamespace(prior=types.SimpleNamespace(box=((-20.0, 20.0), (0.0, 20.0))))  # no network
    rng = np.random.default_rng(0)
    inside = np.column_stack([rng.uniform(-5, 5, 100), rng.uniform(2, 8, 100)])
    assert out_of_distribution(post, torch.zeros(17), inside) == []
    pinned = np.column_stack([rng.uniform(-5, 5, 100), 0.13 + 1e-4 * rng.standard_normal(100)])
    (warning,) = out_of_distribution(post, torch.zeros(17), pinned)
    assert warning.startswith("100 % of the posterior's g_u samples lie on the edge g_u = 0 of the prior box [0, 20] "
                              "(g_u = 0.13 ± 9.2e-05)")  # fmt: skip
    half = pinned.copy()
    half[:60, 1] = 5.0  # 40 % on the edge: below EDGE_FRACTION
    assert out_of_distribution(post, torch.zeros(17), half) == []
    with pytest.raises(InvalidInputError, match=r"dics: expected \(n, 2\) samples"):
        out_of_distribution(post, torch.zeros(17), np.zeros((5, 3)))


def test_z_scores_use_the_moments_of_the_training_cells_that_have_the_feature():
    """The stored moments mix silent cells (floor rate -1) with firing ones; the derived moments of the firing
    cells are exactly theirs, and a feature the observation lacks is not scored."""
    rng = np.random.default_rng(1)
    n, silent = 4000, 1000
    x = np.zeros((n, 17))
    x[:, 0] = np.r_[np.full(silent, -1.0), rng.normal(1.5, 0.3, n - silent)]  # log10 rate
    x[:, 1:10] = np.r_[np.full((silent, 9), -1.0), rng.normal(1.0, 0.5, (n - silent, 9))]
    x[:silent, 10] = 1.0  # is_silent
    x[silent:, 13:] = 1.0  # has_isi and the burst flags
    scale = Standardize.from_data(torch.as_tensor(x, dtype=torch.float32))
    firing = x[silent:, 0]
    obs = x[-1].copy()
    obs[0] = 1.5 + 6 * firing.std()
    z = _z_scores(scale, obs)
    assert z[0] == pytest.approx((obs[0] - firing.mean()) / firing.std(ddof=0), rel=0.02)
    assert z[0] > Z_LIMIT > abs((obs[0] - x[:, 0].mean()) / x[:, 0].std())  # the mixture alone would miss it
    silent_obs = x[0].copy()
    assert _z_scores(scale, silent_obs)[:10].tolist() == [0.0] * 10  # holds the constants: not scored


def test_the_shipped_networks_hold_their_training_standardization():
    from dic_sbi.sbi.pretrained import load_pretrained

    for model in ("stg", "da"):
        post = load_pretrained(model)
        scale = training_standardization(post)
        assert isinstance(scale, Standardize) and scale.mean.shape == (post.x_width,)
    assert training_standardization(object()) is None
