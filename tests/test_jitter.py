"""Spike-time jitter (issue 16's robustness training): the function against direct definitions, and campaigns
with jitter: rows without jitter equal the unjittered campaign's, stored sd, resumption, command line."""

from __future__ import annotations

import numpy as np
import pytest

from dic_sbi.campaign import CampaignSpec, CampaignStore, compute_chunk, run_campaign
from dic_sbi.cli import main
from dic_sbi.errors import InvalidInputError
from dic_sbi.spiketrains import jitter_spike_times

PROTOCOL = dict(duration=400.0, transient=100.0)


def _trains():
    a = np.arange(110.0, 400.0, 20.0)  # well separated: jitter never reorders them
    b = np.arange(105.0, 395.0, 30.0)
    return np.r_[a, b], np.array([0, a.size, a.size + b.size]), a, b


def test_zero_sd_leaves_trains_unchanged():
    t, off, *_ = _trains()
    t2, off2 = jitter_spike_times(t, off, 0.0, 100.0, 400.0, np.random.default_rng(0))
    np.testing.assert_array_equal(t2, t)
    np.testing.assert_array_equal(off2, off)


def test_each_train_is_moved_by_its_own_sd():
    t, off, a, b = _trains()
    rng = np.random.default_rng(1)
    shifts_a, shifts_b = [], []
    for _ in range(300):
        t2, off2 = jitter_spike_times(t, off, [2.0, 0.0], 100.0, 400.0, rng)
        np.testing.assert_array_equal(t2[off2[1] :], b)  # sd 0: untouched
        if off2[1] == a.size:  # no spike left the window
            shifts_a.append(t2[: off2[1]] - a)
    d = np.concatenate(shifts_a)
    assert abs(d.mean()) < 0.1 and abs(d.std() - 2.0) < 0.1


def test_trains_stay_sorted_and_inside_their_windows():
    rng = np.random.default_rng(2)
    t = np.sort(rng.uniform(100.0, 400.0, 500))
    off = np.array([0, 200, 200, 500])  # an empty train in the middle
    t2, off2 = jitter_spike_times(t, off, 5.0, [100.0, 100.0, 150.0], [400.0, 400.0, 390.0], rng)
    assert off2[0] == 0 and off2[-1] == t2.size
    for i, (lo, hi) in enumerate([(100.0, 400.0), (100.0, 400.0), (150.0, 390.0)]):
        x = t2[off2[i] : off2[i + 1]]
        assert np.all(np.diff(x) > 0) and np.all(x >= lo) and np.all(x <= hi)
    assert off2[2] - off2[1] == 0
    assert 0 < 500 - t2.size < 40  # a few spikes near the edges leave the window


def test_bad_arguments_raise_clear_errors():
    t, off, *_ = _trains()
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidInputError, match="offsets"):
        jitter_spike_times(t, off[:-1], 1.0, 0.0, 500.0, rng)
    with pytest.raises(InvalidInputError, match="sd"):
        jitter_spike_times(t, off, -1.0, 0.0, 500.0, rng)


def test_a_jittered_campaign_differs_only_where_it_jittered(tmp_path):
    plain = CampaignSpec("stg", "dic", num=40, chunk_size=40, seed=5, **PROTOCOL)
    spec = CampaignSpec("stg", "dic", num=40, chunk_size=40, seed=5, jitter=[0.5, 3.0], **PROTOCOL)
    assert spec.jitter == (0.5, 3.0) and spec.config()["jitter"] == [0.5, 3.0] and plain.config()["jitter"] is None
    a, b = compute_chunk(plain, 0), compute_chunk(spec, 0)
    np.testing.assert_array_equal(a["theta"], b["theta"])  # same targets and cells: the jitter has its own stream
    np.testing.assert_array_equal(a["conductances"], b["conductances"])
    sd = b["jitter_std"]
    assert 5 < (sd > 0).sum() < 35 and sd.max() <= 3.0
    still = sd == 0
    np.testing.assert_array_equal(a["x"][still], b["x"][still])
    moved = (sd > 0) & (a["spike_counts"] > 3)
    assert not np.array_equal(a["x"][moved], b["x"][moved])
    again = compute_chunk(spec, 0)
    np.testing.assert_array_equal(again["x"], b["x"])  # deterministic
    run_campaign(spec, tmp_path / "s", progress=False)
    stored = CampaignStore.open(tmp_path / "s").read(("x", "jitter_std"))
    np.testing.assert_array_equal(stored["jitter_std"], sd)
    with pytest.raises(InvalidInputError, match="jitter: stored"):
        run_campaign(plain, tmp_path / "s", progress=False)


def test_jitter_is_checked_in_python_and_on_the_command_line(tmp_path, capsys):
    for bad in ((0.0, 1.0), (1.5, 1.0), (0.5, 0.0), (0.5,), "x"):
        with pytest.raises(InvalidInputError, match="jitter"):
            CampaignSpec("stg", "dic", num=10, jitter=bad)
    assert main(["simulate", "--model", "stg", "--prior", "dic", "--num", "5", "--jitter", "2,1",
                 "--store", str(tmp_path / "v")]) == 2  # fmt: skip
    assert "FRACTION,MAX_MS" in capsys.readouterr().err and not (tmp_path / "v").exists()
    assert main(["train", "--model", "stg", "--jitter", "0.5", "--out", str(tmp_path / "p"),
                 "--work", str(tmp_path / "w")]) == 2  # fmt: skip
    assert not (tmp_path / "w").exists()


def test_train_with_jitter_records_it_and_its_command_reproduces_it(tmp_path):
    import shlex

    from dic_sbi.cli import build_parser
    from dic_sbi.sbi.pretrained import pretrained_info

    out = tmp_path / "stg_jitter"
    argv = ["train", "--model", "stg", "--out", str(out), "--work", str(tmp_path / "work"), "--num-simulations", "200",
            "--noisy-simulations", "0", "--jitter", "0.5,3", "--max-epochs", "2", "--heldout-points", "6",
            "--cells-per-point", "2", "--ppc-points", "2", "--ppc-cells", "3", "--duration", "1500",
            "--transient", "500", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    info = pretrained_info(out)
    camp = info["training"]["campaigns"][0]
    assert camp["jitter"] == [0.5, 3.0] and camp["store"] == "stg_dic_clean_jitter"
    store = CampaignStore.open(tmp_path / "work" / camp["store"])
    sd = store.read(("jitter_std",))["jitter_std"]
    assert 0.3 < (sd > 0).mean() < 0.7
    stored = build_parser().parse_args(shlex.split(info["command"])[1:])
    assert stored.jitter == (0.5, 3.0)


def test_draw_jitter_sd_is_the_campaigns_mixture():
    from scipy import stats

    from dic_sbi.spiketrains import draw_jitter_sd

    sd = draw_jitter_sd((0.3, 2.0), 20000, np.random.default_rng(0))
    assert abs((sd > 0).mean() - 0.3) < 0.015
    assert stats.kstest(sd[sd > 0], "uniform", args=(0.0, 2.0)).pvalue > 1e-3
    assert not draw_jitter_sd(None, 5, np.random.default_rng(0)).any()
    with pytest.raises(InvalidInputError, match="jitter"):
        draw_jitter_sd((1.5, 2.0), 5, np.random.default_rng(0))


def test_simulator_jitter_moves_only_the_jittered_trains():
    from dic_sbi.sbi.simulators import DICSimulator

    sim = DICSimulator("stg", output="intervals")  # the full protocol: both cells fire
    theta = np.array([[3.0, 6.0], [3.0, 6.0]])
    x0, g0 = sim.simulate_with_cells(theta, seed=5)
    x1, g1 = sim.simulate_with_cells(theta, seed=5, jitter_std=[0.0, 2.0])
    np.testing.assert_array_equal(g0, g1)
    np.testing.assert_array_equal(x0[0].numpy(), x1[0].numpy())  # sd 0: unchanged
    assert not np.array_equal(x0[1].numpy(), x1[1].numpy())


def test_heldout_set_with_jitter_keeps_targets_and_cells():
    from dic_sbi.sbi.evaluation import heldout_set

    a = heldout_set("stg", n_points=2, cells_per_point=2, seed=0)
    b = heldout_set("stg", n_points=2, cells_per_point=2, seed=0, jitter_std=2.0)
    np.testing.assert_array_equal(a.cells, b.cells)
    firing = a.klass > 0
    assert firing.any() and not np.array_equal(a.x[firing].numpy(), b.x[firing].numpy())
    with pytest.raises(InvalidInputError, match="jitter_std"):
        heldout_set("stg", n_points=1, cells_per_point=1, jitter_std=-1.0)
