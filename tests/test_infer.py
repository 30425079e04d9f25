"""The main job: pretrained posteriors (save/load/ship), ``dic-sbi train``, ``dic-sbi infer`` end to end on NIX,
ABF, NWB and the text formats, bad input leaving nothing behind, and the demo on the shipped recordings."""

from __future__ import annotations

import csv
import datetime
import json
import logging
import os

import neo
import numpy as np
import pytest
import quantities as pq
import torch

from dic_sbi.cli import main
from dic_sbi.errors import InvalidInputError

logging.getLogger("neo").setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SHORT = dict(duration=1500.0, transient=500.0)  # protocol of the small posterior trained here


@pytest.fixture(scope="module")
def small_posterior(tmp_path_factory):
    """A small DIC posterior on a short protocol, saved as a pretrained posterior (path without suffix)."""
    from dic_sbi.sbi import train_dic_posterior
    from dic_sbi.sbi.pretrained import save_pretrained

    run = train_dic_posterior("stg", 400, training={"max_num_epochs": 5}, seed=0, torch_threads=1, **SHORT)
    path = tmp_path_factory.mktemp("pretrained") / "stg_small"
    save_pretrained(run.posterior, path, estimator={"density_estimator": "nsf", "hidden_features": 50, "num_transforms": 5},
                    info={"name": "stg_small"})  # fmt: skip
    return path, run


@pytest.fixture(scope="module")
def sim():
    from dic_sbi import simulate
    from dic_sbi.data import example_cells

    res = simulate("stg", example_cells()["stg"], record_voltage=True, fine_substeps=1, **SHORT)
    assert res.spike_counts[0] >= 5
    return res


# -- pretrained posteriors ----------------------------------------------------------------------------------------


def test_save_load_round_trip_gives_the_same_network(small_posterior, tmp_path):
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info

    path, run = small_posterior
    loaded = load_pretrained(path)
    x = run.x[:1]
    theta = run.theta[:5]
    torch.testing.assert_close(loaded.log_prob_dics(theta, x=x), run.posterior.log_prob_dics(theta, x=x))
    assert loaded.simulator.duration == SHORT["duration"] and loaded.simulator.transient == SHORT["transient"]
    info = pretrained_info(f"{path}.json")
    assert info["model"] == "stg" and info["features"]["names"][0] == "log10_rate_hz" and info["name"] == "stg_small"
    g = loaded.sample((7,), x=x, seed=0)
    assert g.shape == (7, 8) and torch.all(g >= 0)

    # corrupt weights, missing files: clear errors
    bad = tmp_path / "bad"
    (tmp_path / "bad.json").write_text((path.parent / "stg_small.json").read_text())
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(InvalidInputError, match="cannot load the weights"):
        load_pretrained(bad)
    with pytest.raises(InvalidInputError, match="no posterior at"):
        load_pretrained(tmp_path / "nothing")


@pytest.mark.parametrize("model", ["stg", "da"])
def test_shipped_posterior_loads_and_beats_the_prior_on_fresh_cells(model):
    """The shipped weights are real: on fresh held-out firing cells (not the stored metrics) the posterior-mean
    error is well below that of the prior mean, and the stored metadata says how they were made."""
    from dic_sbi.sbi.evaluation import heldout_set
    from dic_sbi.sbi.pretrained import available_pretrained, load_pretrained, pretrained_info

    assert model in available_pretrained()
    info = pretrained_info(model)
    for key in ("command", "training", "metrics", "estimator", "protocol"):
        assert key in info
    assert set(info["metrics"]) == {"noise_free", "noisy"}
    post = load_pretrained(model)
    ho = heldout_set(model, n_points=60, cells_per_point=1, seed=123, output=post.simulator.output)
    # Silent cells carry no information about the DICs (their posterior is the prior's silent region): judge the
    # network where spikes exist.
    ok = torch.isfinite(ho.x).all(1) & torch.as_tensor(ho.klass != 0)
    x = post.condition(ho.x[ok], **post.conditions_among(noise_std=0.0))  # noise-free cells: σ = 0 if it takes σ
    samples = post.posterior.sample_batched((200,), x=x, show_progress_bars=False)
    mae = (samples.mean(0) - ho.theta[ok]).abs().mean(0)
    prior_mae = (post.prior.mean - ho.theta[ok]).abs().mean(0)
    assert torch.all(mae < 0.7 * prior_mae), (mae, prior_mae)


def test_train_command_writes_weights_settings_and_metrics(tmp_path):
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info

    out = tmp_path / "stg_tiny"
    argv = ["train", "--model", "stg", "--out", str(out), "--work", str(tmp_path / "work"), "--num-simulations", "300",
            "--noisy-simulations", "100", "--max-epochs", "2", "--heldout-points", "12", "--cells-per-point", "2",
            "--ppc-points", "2", "--ppc-cells", "5", "--duration", "1500", "--transient", "500", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    info = pretrained_info(out)
    assert info["training"]["num_simulations"] == 400
    assert [c["noise_std"] for c in info["training"]["campaigns"]] == [0.0, 5.0]
    m = info["metrics"]["noisy"]
    assert m["n_observations"] + m["n_invalid"] == 24 and m["noise_std"] == 5.0
    for key in ("accuracy", "sbc", "tarp", "class_reproduction", "coverage_90"):
        assert key in m
    assert 0.0 <= m["class_reproduction"]["mean"] <= 1.0
    assert load_pretrained(out).simulator.duration == 1500.0
    # the stored command reproduces every setting: parsed back, it gives the arguments this run was given
    import shlex

    from dic_sbi.cli import build_parser

    parser = build_parser()
    stored = parser.parse_args(shlex.split(info["command"])[1:])
    given = parser.parse_args(argv)
    assert vars(stored) == {**vars(given), "quiet": False}
    # `dic-sbi evaluate` rebuilds the same held-out sets from the stored seeds: the same numbers come back
    from dic_sbi.train import evaluate_pretrained

    again = evaluate_pretrained(out, quiet=True)
    for name in ("noise_free", "noisy"):
        assert again[name]["accuracy"] == info["metrics"][name]["accuracy"]
        assert again[name]["sbc"] == info["metrics"][name]["sbc"]
        assert "sbc_firing" in again[name] and "tarp_firing" in again[name]
    assert main(["evaluate", str(out), "--write", "--quiet"]) == 0
    assert "sbc_firing" in pretrained_info(out)["metrics"]["noisy"] and "evaluated" in pretrained_info(out)
    # rerunning resumes the complete stores instead of simulating again (replacing the weights needs --overwrite)
    assert main(argv) == 2
    assert main([*argv, "--overwrite"]) == 0
    assert [c["chunks_computed_this_run"] for c in pretrained_info(out)["training"]["campaigns"]] == [0, 0]


# -- infer end to end -------------------------------------------------------------------------------------------


def _write_nix_vm(path, sim):
    block = neo.Block(name="cell")
    seg = neo.Segment()
    seg.analogsignals.append(sim.analogsignal(0))
    block.segments.append(seg)
    with neo.io.NixIO(str(path), mode="ow") as io:
        io.write_block(block)


def _check_outputs(out, n, *, validated, plots):
    import nixio

    from dic_sbi import dics, get_model

    names = get_model("stg").conductance_names
    with open(out / "population.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n
    # every quantity's header carries its unit
    assert list(rows[0])[:2 + len(names) + 2] == ["train", "cell", *(f"{k} [mS/cm^2]" for k in names),
                                                  "g_s [per gleak]", "g_u [per gleak]"]  # fmt: skip
    assert {"spiking_frequency [Hz]", "burst_period [ms]", "intra_burst_frequency [Hz]"} <= set(rows[0])
    g = np.array([[float(r[f"{k} [mS/cm^2]"]) for k in names] for r in rows])
    assert np.all(g >= 0)
    t = np.array([[float(r["g_s [per gleak]"]), float(r["g_u [per gleak]"])] for r in rows])
    np.testing.assert_allclose(dics("stg", g)[:, 1:], t, rtol=1e-5, atol=1e-4)  # each cell sits on its DIC sample
    if validated:
        assert all(r["firing_class"] in ("silent", "spiking", "bursting") for r in rows)
    with open(out / "dic_samples.csv") as fh:
        assert len(list(csv.DictReader(fh))) == n
    f = nixio.File.open(str(out / "population.nix"), nixio.FileMode.ReadOnly)
    try:
        np.testing.assert_allclose(f.blocks[0].data_arrays["conductances"][:], g, rtol=1e-9)
        assert f.blocks[0].data_arrays["conductances"].unit == "mS/cm^2"
    finally:
        f.close()
    from dic_sbi.io import read_spike_groups

    seg = read_spike_groups(out / "simulated_spikes.nix").segments[0]
    simulated = n if validated else min(n, 20)
    assert len(seg.spiketrains) == 1 + simulated
    assert seg.spiketrains[0].annotations["observed"] and not seg.spiketrains[1].annotations["observed"]
    np.testing.assert_allclose([seg.spiketrains[1].annotations[f"g_{k}"] for k in names], g[0], rtol=1e-9)  # CSV: 10 digits
    report = json.loads((out / "report.json").read_text())
    fid = report["trains"][0]["fidelity"]
    assert fid["simulated_cells"] == simulated and 0 <= fid["fraction_matching_class"] <= 1
    assert report["trains"][0]["observed_class"] in ("spiking", "bursting")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == (["dic_posterior_0.png", "pairplot_0.png", "raster_0.png", "traces_0.png"] if plots else [])
    return rows, report


def test_infer_nix_voltage_trace_end_to_end(tmp_path, sim, small_posterior):
    path, _ = small_posterior
    _write_nix_vm(tmp_path / "cell.nix", sim)
    out = tmp_path / "out"
    assert main(["infer", str(tmp_path / "cell.nix"), "--model", "stg", "-n", "40", "--out", str(out),
                 "--posterior", str(path), "--validate", "--seed", "3", "--quiet"]) == 0  # fmt: skip
    rows, report = _check_outputs(out, 40, validated=True, plots=True)
    assert report["format"] == "NixIO" and report["seed"] == 3
    # same seed, same population
    out2 = tmp_path / "out2"
    assert main(["infer", "--model", "stg", str(tmp_path / "cell.nix"), "-n", "40", "--out", str(out2), "--posterior", str(path),
                 "--seed", "3", "--quiet", "--no-plots"]) == 0  # fmt: skip
    assert (out / "dic_samples.csv").read_text() == (out2 / "dic_samples.csv").read_text()


def test_infer_abf_written_by_pyabf(tmp_path, sim, small_posterior):
    writer = pytest.importorskip("pyabf.abfWriter")
    path, _ = small_posterior
    writer.writeABF1(sim.voltage[:1], str(tmp_path / "cell.abf"), 1000.0 / sim.sampling_interval, units="mV")
    out = tmp_path / "out"
    assert main(["infer", "--model", "stg", str(tmp_path / "cell.abf"), "-n", "30", "--out", str(out), "--posterior", str(path),
                 "--quiet", "--no-plots"]) == 0  # fmt: skip
    _, report = _check_outputs(out, 30, validated=False, plots=False)
    assert report["format"] == "AxonIO"


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_infer_nwb(tmp_path, sim, small_posterior):
    pytest.importorskip("pynwb")
    from neo.io import NWBIO

    path, _ = small_posterior
    block = neo.Block(name="nwb", session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
    seg = neo.Segment(name="trial0")
    seg.analogsignals.append(sim.analogsignal(0))
    block.segments.append(seg)
    try:
        NWBIO(str(tmp_path / "cell.nwb"), mode="w").write_all_blocks([block])
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"neo's NWBIO cannot write NWB here: {type(err).__name__}: {err}")
    out = tmp_path / "out"
    assert main(["infer", "--model", "stg", str(tmp_path / "cell.nwb"), "-n", "30", "--out", str(out), "--posterior", str(path),
                 "--quiet", "--no-plots"]) == 0  # fmt: skip
    _, report = _check_outputs(out, 30, validated=False, plots=False)
    assert report["format"] == "NWBIO"


def test_infer_spike2pop_csv_and_text(tmp_path, sim, small_posterior):
    from dic_sbi.cli import write_spikes_csv

    path, _ = small_posterior
    write_spikes_csv(tmp_path / "cells.csv", [sim.times, sim.times[::2]])
    out = tmp_path / "csv_out"
    assert main(["infer", "--model", "stg", str(tmp_path / "cells.csv"), "-n", "25", "--out", str(out), "--posterior", str(path),
                 "--quiet", "--no-plots", "--train", "0"]) == 0  # fmt: skip
    _check_outputs(out, 25, validated=False, plots=False)
    # both trains: one population each, told apart by the train column
    out_all = tmp_path / "csv_all"
    assert main(["infer", "--model", "stg", str(tmp_path / "cells.csv"), "-n", "10", "--out", str(out_all), "--posterior", str(path),
                 "--quiet", "--no-plots"]) == 0  # fmt: skip
    with open(out_all / "population.csv") as fh:
        assert sorted({r["train"] for r in csv.DictReader(fh)}) == ["0", "1"]

    (tmp_path / "cell.txt").write_text("# spike times (s)\n" + "\n".join(f"{t / 1000:.6f}" for t in sim.times))
    out = tmp_path / "txt_out"
    assert main(["infer", "--model", "stg", str(tmp_path / "cell.txt"), "--units", "s", "-n", "20", "--out", str(out),
                 "--posterior", str(path), "--quiet", "--no-plots"]) == 0  # fmt: skip
    _check_outputs(out, 20, validated=False, plots=False)


# -- bad input: clear message, non-zero exit, nothing left behind ----------------------------------------------


def _bad_inputs(tmp_path):
    (tmp_path / "garbage.nix").write_bytes(os.urandom(4096))
    (tmp_path / "two.csv").write_text('ID,spike_times_ms\n0,"[10.0, 20.0]"\n')
    (tmp_path / "unsorted.txt").write_text("10\n30\n20\n40\n")
    (tmp_path / "negative.txt").write_text("-5\n10\n20\n30\n")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    (tmp_path / "ok.txt").write_text("10\n20\n30\n40\n50\n")
    flat = neo.AnalogSignal(np.full((4000, 1), -60.0), units=pq.mV, sampling_period=0.25 * pq.ms)
    block = neo.Block()
    block.segments.append(neo.Segment())
    block.segments[0].analogsignals.append(flat)
    with neo.io.NixIO(str(tmp_path / "flat.nix"), mode="ow") as io:
        io.write_block(block)
    return [
        (["missing.nix"], "no such file"),
        (["garbage.nix"], "garbage.nix"),
        (["flat.nix"], "no spikes"),
        (["two.csv"], "2 spikes"),
        (["unsorted.txt"], "sorted"),
        (["negative.txt"], "negative|before t_start|t_start"),
        (["empty.txt"], "no spikes"),
        (["ok.txt", "--units", "kg"], "unit"),
        (["ok.txt", "--model", "hh"], r"unknown model .hh.; choose from da, pospischil, .*, stg, or give path/to/file\.py:NAME"),
        (["ok.txt"], "required: --model"),
        (["ok.txt", "-n", "0"], "argument -n: expected a number of cells"),
        (["ok.txt", "--train", "5"], "--train: expected indices"),
    ]


def test_bad_input_gives_a_clear_message_and_leaves_no_output(tmp_path, small_posterior, capsys):
    path, _ = small_posterior
    inputs = tmp_path / "in"
    inputs.mkdir()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("previous results")
    for args, message in _bad_inputs(inputs):
        for out in (tmp_path / "out", existing):
            argv = ["infer", str(inputs / args[0]), *args[1:], "--out", str(out), "--posterior", str(path), "--quiet"]
            if "--model" not in args and "--model" not in message:  # one case leaves the model out on purpose
                argv[2:2] = ["--model", "stg"]
            if out == existing:  # refused for the folder before the input is even read
                message = f"{message}|holds files dic-sbi did not write"
            code = main(argv)
            err = capsys.readouterr().err
            assert code != 0, args
            assert err.startswith("dic-sbi infer: error:"), err
            import re

            assert re.search(message, err, flags=re.IGNORECASE), (args, err)
            assert not (tmp_path / "out").exists()
            assert sorted(p.name for p in existing.iterdir()) == ["keep.txt"]
            assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging left behind"


def test_unreadable_output_location_fails_before_anything_is_written(tmp_path, small_posterior, sim, capsys):
    path, _ = small_posterior
    _write_nix_vm(tmp_path / "cell.nix", sim)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code = main(["infer", "--model", "stg", str(tmp_path / "cell.nix"), "-n", "5", "--out", str(blocker / "sub"), "--posterior",
                 str(path), "--quiet", "--no-plots"])  # fmt: skip
    assert code != 0
    assert blocker.read_text() == "a file, not a folder"


# -- demo on the shipped example recordings ----------------------------------------------------------------------


def test_example_recordings_are_what_the_generator_makes(tmp_path):
    from dic_sbi.data import example_recording
    from dic_sbi.data._make_examples import write_example_recording
    from dic_sbi.io import read_recording

    for model in ("stg", "da"):
        fresh = write_example_recording(model, tmp_path / f"{model}.nix")
        a, b = read_recording(example_recording(model))[0], read_recording(fresh)[0]
        assert len(a) >= 10
        np.testing.assert_allclose(a.magnitude, b.magnitude, rtol=0, atol=1e-6)


def test_demo_writes_every_output(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--model", "stg", "-n", "40", "--out", str(out), "--quiet"]) == 0
    _, report = _check_outputs(out / "stg", 40, validated=True, plots=True)
    summary = json.loads((out / "report.json").read_text())
    assert set(summary["stg"]["true_dics_of_the_example_cell"]) == {"g_s", "g_u"}
    assert report["true_dics"] == summary["stg"]["true_dics_of_the_example_cell"]  # in the train folder's report too
    from dic_sbi.data import example_noise_std

    assert report["noise_std"] == example_noise_std("stg") == 1.0  # told the example's known noise level


def test_population_and_simulate_commands(tmp_path, capsys):
    from dic_sbi.io import read_recording

    assert main(["population", "--model", "stg", "--g-s", "-5", "--g-u", "8", "-n", "12", "--out", str(tmp_path / "pop.csv"),
                 "--validate", "--quiet"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert sum(report["simulation"]["firing_class_counts"].values()) == 12
    with open(tmp_path / "pop.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 12
    assert main(["simulate", "--model", "stg", str(tmp_path / "pop.csv"), "--out", str(tmp_path / "spikes.csv"), "--nix",
                 str(tmp_path / "spikes.nix"), "--duration", "1500", "--transient", "500", "--quiet"]) == 0  # fmt: skip
    assert len(read_recording(tmp_path / "spikes.csv", min_spikes=0)) == 12


def test_loaded_posteriors_do_not_share_a_default_x(small_posterior):
    from dic_sbi.sbi.pretrained import load_pretrained

    path, run = small_posterior
    a, b = load_pretrained(path), load_pretrained(path)
    assert a.posterior.posterior_estimator is b.posterior.posterior_estimator  # the network is cached
    a.set_default_x(run.x[:1])
    assert b.default_x is None


def test_train_defined_scaling_is_stored_and_reloaded(tmp_path):
    """``--defined-scaling`` reaches the posterior's first layer, is recorded in the JSON and in the stored
    command, and the reloaded posterior gives the trained one's numbers."""
    import shlex

    from dic_sbi.cli import build_parser
    from dic_sbi.sbi.embedding import Standardize
    from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info
    from dic_sbi.train import evaluate_pretrained

    out = tmp_path / "stg_defined"
    argv = ["train", "--model", "stg", "--out", str(out), "--work", str(tmp_path / "work"), "--num-simulations", "300",
            "--noisy-simulations", "100", "--noise-input", "--features", "intervals", "--defined-scaling",
            "--max-epochs", "2", "--heldout-points", "8", "--cells-per-point", "2", "--ppc-points", "2",
            "--ppc-cells", "5", "--duration", "1500", "--transient", "500", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    info = pretrained_info(out)
    assert info["estimator"]["defined_scaling"] is True
    parser = build_parser()
    assert vars(parser.parse_args(shlex.split(info["command"])[1:])) == {**vars(parser.parse_args(argv)), "quiet": False}
    net = load_pretrained(out).posterior.posterior_estimator
    scales = [m for m in net.modules() if isinstance(m, Standardize)]
    assert len(scales) == 1 and float(scales[0].defined_moments) == 1.0 and bool((scales[0].ref_index >= 0).any())
    again = evaluate_pretrained(out, quiet=True)
    assert again["noise_free"]["accuracy"] == info["metrics"]["noise_free"]["accuracy"]
