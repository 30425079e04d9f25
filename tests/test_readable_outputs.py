"""Outputs people read: the compact spike file, plots, CSV units, --version, option help, progress bars in logs."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import neo
import numpy as np
import pytest
import quantities as pq

import dic_sbi
from dic_sbi.cli import build_parser, main
from dic_sbi.errors import RecordingError
from dic_sbi.io import SpikeGroup, read_spike_groups, write_nix_block, write_spike_groups
from dic_sbi.io.tables import column_name, header


@pytest.fixture(scope="module")
def example_result():
    """The shipped STG posterior on the shipped example recording (a noisy simulation with known DICs)."""
    result = dic_sbi.infer(dic_sbi.data.example_recording("stg"), "stg", n=60, seed=0, preview=6, traces=2,
                           noise_std=dic_sbi.data.example_noise_std("stg"))  # fmt: skip
    _, g_s, g_u = dic_sbi.dics("stg", dic_sbi.data.example_cells()["stg"])
    result.true_dics = np.array([g_s, g_u])
    return result


# -- simulated_spikes.nix ---------------------------------------------------------------------------------------


def test_compact_spike_file_round_trips_and_is_small(tmp_path):
    rng = np.random.default_rng(0)
    k = 1000
    counts = rng.integers(0, 60, k)
    counts[::7] = 0  # silent cells are kept, with no spikes
    trains = [np.sort(rng.uniform(3000.0, 6000.0, c)) for c in counts]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    cells = rng.permutation(5000)[:k]  # any population rows, in any order
    g = rng.uniform(0.0, 100.0, (k, 8))
    names = dic_sbi.get_model("stg").conductance_names
    observed = neo.SpikeTrain([1.0, 5.0, 9.5] * pq.s, t_start=0.0 * pq.s, t_stop=10.0 * pq.s, name="Vm")
    write_spike_groups(tmp_path / "s.nix", [
        SpikeGroup("train 0: Vm", cells, np.concatenate(trains), offsets, 3000.0, 6000.0, observed=observed,
                   conductances=g, conductance_names=names),
        SpikeGroup("train 1: empty", np.zeros(0, dtype=int), np.zeros(0), np.zeros(1, dtype=int), 0.0, 10.0),
    ], metadata={"model": "stg"})  # fmt: skip
    # Neo's own layout took 42 MB for 1 000 cells of ~30 spikes; this one is ~10 bytes per spike.
    assert os.path.getsize(tmp_path / "s.nix") < 0.5e6 + 10 * offsets[-1]

    block = read_spike_groups(tmp_path / "s.nix")
    assert block.annotations["model"] == "stg" and [s.name for s in block.segments] == ["train 0: Vm", "train 1: empty"]
    sts = block.segments[0].spiketrains
    assert sts[0].name == "observed" and sts[0].annotations["observed"] and sts[0].annotations["source"] == "Vm"
    np.testing.assert_array_equal(sts[0].rescale("ms").magnitude, [1000.0, 5000.0, 9500.0])
    assert float(sts[0].t_stop.rescale("ms")) == 10000.0
    assert len(sts) == 1 + k
    for j in (0, 7, 500, k - 1):
        st = sts[1 + j]
        assert st.name == f"cell {cells[j]}" and st.annotations["cell"] == cells[j] and not st.annotations["observed"]
        np.testing.assert_array_equal(st.rescale("ms").magnitude, trains[j])
        assert (float(st.t_start), float(st.t_stop)) == (3000.0, 6000.0) and str(st.units.dimensionality) == "ms"
        assert [st.annotations[f"g_{n}"] for n in names] == list(g[j])
    assert len(sts[1 + 7]) == 0
    assert len(block.segments[1].spiketrains) == 0


def test_reading_something_else_as_a_spike_file_is_a_clear_error(tmp_path):
    with pytest.raises(RecordingError, match="no such file"):
        read_spike_groups(tmp_path / "missing.nix")
    (tmp_path / "text.nix").write_text("not hdf5")
    with pytest.raises(RecordingError, match="not a NIX file"):
        read_spike_groups(tmp_path / "text.nix")
    block = neo.Block()
    block.segments.append(neo.Segment())
    block.segments[0].spiketrains.append(neo.SpikeTrain([1.0, 2.0] * pq.ms, t_stop=3.0 * pq.ms))
    write_nix_block(tmp_path / "neo.nix", block)
    with pytest.raises(RecordingError, match="not a dic_sbi compact spike file"):
        read_spike_groups(tmp_path / "neo.nix")


def test_inference_spike_file_holds_the_simulated_trains(example_result, tmp_path):
    out = example_result.write(tmp_path / "out", plots=False)
    seg = read_spike_groups(out / "simulated_spikes.nix").segments[0]
    t = example_result.trains[0]
    assert len(seg.spiketrains) == 1 + len(t.simulated)
    for j in range(len(t.simulated)):
        np.testing.assert_array_equal(seg.spiketrains[1 + j].magnitude, t.simulation.spike_times(j))
    np.testing.assert_array_equal(seg.spiketrains[0].magnitude, example_result.recording[0].rescale("ms").magnitude)


# -- plots ------------------------------------------------------------------------------------------------------


def test_dic_posterior_plot_marks_the_true_dics_when_known(example_result):
    import matplotlib.pyplot as plt

    from dic_sbi.plots import plot_dic_posterior

    t = example_result.trains[0]
    fig = plot_dic_posterior(example_result, t)
    labels = [h.get_label() for ax in fig.axes for h in ax.collections]
    star = [c for ax in fig.axes for c in ax.collections if c.get_label().startswith("true DICs")]
    assert len(star) == 1, labels
    np.testing.assert_allclose(star[0].get_offsets()[0], example_result.true_dics)
    plt.close(fig)
    example_result.true_dics, kept = None, example_result.true_dics
    try:
        fig = plot_dic_posterior(example_result, t)
        assert not any(c.get_label().startswith("true DICs") for ax in fig.axes for c in ax.collections)
        plt.close(fig)
    finally:
        example_result.true_dics = kept
    assert example_result.report()["true_dics"] == {"g_s": kept[0], "g_u": kept[1]}


def test_traces_plot_shows_the_observed_voltage_above_the_simulated_ones(example_result):
    import matplotlib.pyplot as plt

    from dic_sbi.plots import observed_voltage, plot_traces

    t = example_result.trains[0]
    v = observed_voltage(example_result, t)
    rec = neo.io.NixIO(dic_sbi.data.example_recording("stg"), mode="ro")
    try:
        raw = rec.read_block().segments[0].analogsignals[0]
    finally:
        rec.close()
    np.testing.assert_allclose(v.magnitude[:, 0], raw.rescale("mV").magnitude[:, 0])
    fig = plot_traces(example_result, t, span_ms=500.0)
    axes = fig.axes
    assert len(axes) == 1 + len(t.traces)
    assert axes[0].get_title(loc="left").startswith("observed")
    assert all(ax.get_title(loc="left").startswith("simulated") for ax in axes[1:])
    x, y = axes[0].lines[0].get_data()
    assert x.max() <= 500.0 and np.allclose(y, v.magnitude[: len(y), 0])
    plt.close(fig)


def test_traces_plot_of_a_spike_time_recording_shows_its_spikes(example_result, tmp_path):
    import matplotlib.pyplot as plt

    from dic_sbi.plots import observed_voltage, plot_traces

    path = tmp_path / "spikes.txt"
    path.write_text("\n".join(f"{v:.3f}" for v in example_result.recording[0].rescale("ms").magnitude))
    result = dic_sbi.infer(str(path), "stg", n=20, seed=0, preview=3, traces=1)
    assert observed_voltage(result, result.trains[0]) is None
    fig = plot_traces(result, result.trains[0])
    assert fig.axes[0].get_title(loc="left").endswith("spike times") and not fig.axes[0].lines
    plt.close(fig)


def test_pairplot_title_and_axis_labels_agree_on_units(example_result):
    import matplotlib.pyplot as plt

    from dic_sbi.plots import plot_conductance_pairplot

    fig = plot_conductance_pairplot(example_result, example_result.trains[0])
    title = fig._suptitle.get_text()
    assert "log10" in title and "mS/cm²" in title
    labels = {ax.get_xlabel() for ax in fig.axes} - {""}
    names = dic_sbi.get_model("stg").conductance_names
    assert labels == {f"log10 g_{n}" for n in names}
    plt.close(fig)


# -- CSV headers ------------------------------------------------------------------------------------------------


def test_csv_headers_carry_units_and_readers_take_either_form(tmp_path, capsys):
    assert header("g_s") == "g_s [per gleak]" and header("burst_period") == "burst_period [ms]"
    assert header("Na", "mS/cm^2") == "Na [mS/cm^2]" and header("firing_class") == "firing_class"
    assert column_name("Na [mS/cm^2]") == "Na" and column_name(" cell ") == "cell"
    pop = tmp_path / "pop.csv"
    assert main(["population", "--model", "stg", "--g-s", "-5", "--g-u", "8", "-n", "5", "--out", str(pop), "--validate",
                 "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    first = pop.read_text().splitlines()[0].split(",")
    names = dic_sbi.get_model("stg").conductance_names
    assert first[: 1 + len(names)] == ["cell", *(f"{n} [mS/cm^2]" for n in names)]
    assert "burst_period [ms]" in first and "spiking_frequency [Hz]" in first
    # simulate reads it, and a file with plain headers (as written before units) alike
    plain = tmp_path / "plain.csv"
    plain.write_text("\n".join([",".join(["cell", *names])] + [",".join(line.split(",")[: 1 + len(names)])
                                                              for line in pop.read_text().splitlines()[1:]]))  # fmt: skip
    for src, dst in ((pop, "a.csv"), (plain, "b.csv")):
        assert main(["simulate", "--model", "stg", str(src), "--out", str(tmp_path / dst), "--duration", "800",
                     "--transient", "200", "--quiet"]) == 0  # fmt: skip
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


# -- command line -----------------------------------------------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"dic-sbi {dic_sbi.__version__}"


def _options():
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for opt in sub._actions:
                    if opt.option_strings and not isinstance(opt, argparse._HelpAction):
                        yield name, sub, opt


def test_every_option_help_states_its_default_and_unit():
    units = ("ms", "mV", "µA/cm²", "per gleak", "mS/cm²")
    seen = 0
    for name, sub, opt in _options():
        text = sub._get_formatter()._expand_help(opt)  # the help as --help prints it
        where = f"dic-sbi {name} {opt.option_strings[-1]}: {text!r}"
        assert "default" in text.lower() or "required" in text.lower(), where
        if opt.type is float or opt.dest in ("duration", "transient", "dt", "threshold", "noise_std", "t_start", "t_stop"):
            assert any(u in text for u in units), where
        seen += 1
    assert seen > 60
    # as printed
    text = build_parser()._subparsers._group_actions[0].choices["simulate"].format_help()
    assert "--dt DT" in text and "0.1 ms" in text and "(default: 0 µA/cm²)" in " ".join(text.split())


def test_a_progress_bar_ends_its_line_in_a_log(tmp_path):
    code = ("import numpy as np, dic_sbi; g = dic_sbi.data.example_cells()['stg']; "
            "dic_sbi.simulate('stg', np.tile(g, (40, 1)), duration=300.0, transient=100.0, progress=True); "
            "print('next message', flush=True)")  # fmt: skip
    with open(tmp_path / "log.txt", "w") as log:  # stdout and stderr to one file, as `cmd > log 2>&1`
        subprocess.run([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, check=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    lines = (tmp_path / "log.txt").read_text().split("\n")
    assert lines[-2:] == ["next message", ""]
    assert "simulate stg" in lines[-3] and "40/40" in lines[-3]  # the finished bar, on its own line
