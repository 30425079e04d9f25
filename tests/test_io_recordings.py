"""Reading recordings: round trips through NIX, ABF (written by pyabf), NWB and the text formats; bad input."""

from __future__ import annotations

import datetime
import logging
import os

import neo
import numpy as np
import pytest
import quantities as pq

from dic_sbi.errors import DicSbiError, RecordingError
from dic_sbi.io import Recording, TrainOrigin, read_recording

# ABF1 headers written by pyabf leave fields blank that neo's AxonIO then warns about; not our concern here
logging.getLogger("neo").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def sim():
    """A short simulated STG recording: voltage without substeps, so detection sees what the simulator saw."""
    from dic_sbi import simulate
    from dic_sbi.data import example_cells

    res = simulate("stg", example_cells()["stg"], duration=1500, transient=500, record_voltage=True, fine_substeps=1)
    assert res.spike_counts[0] >= 5
    return res


def _write_nix(path, segments):
    block = neo.Block(name="test")
    block.segments.extend(segments)
    with neo.io.NixIO(str(path), mode="ow") as io:
        io.write_block(block)


# ------------------------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------------------------


def test_nix_recorded_spike_trains_are_used_as_they_are(tmp_path):
    a = neo.SpikeTrain([1.0, 2.5, 4.0, 9.0] * pq.ms, t_start=0 * pq.ms, t_stop=10 * pq.ms, name="a")
    b = neo.SpikeTrain([0.1, 0.2, 0.3] * pq.s, t_start=0 * pq.s, t_stop=1 * pq.s, name="b")  # seconds: converted
    c = neo.SpikeTrain([5.0, 6.0, 7.0] * pq.ms, t_start=0 * pq.ms, t_stop=20 * pq.ms, name="c")
    s0, s1 = neo.Segment(name="s0"), neo.Segment(name="s1")
    s0.spiketrains.extend([a, b])
    s1.spiketrains.append(c)
    _write_nix(tmp_path / "trains.nix", [s0, s1])

    rec = read_recording(tmp_path / "trains.nix")
    assert isinstance(rec, Recording) and rec.format == "NixIO" and len(rec) == 3
    np.testing.assert_allclose(rec[0].magnitude, [1.0, 2.5, 4.0, 9.0])
    np.testing.assert_allclose(rec[1].magnitude, [100.0, 200.0, 300.0])
    assert all(t.units == pq.ms for t in rec)
    assert float(rec[1].t_stop) == pytest.approx(1000.0)
    assert rec.origins == (
        TrainOrigin(0, 0, "a", False), TrainOrigin(0, 1, "b", False), TrainOrigin(1, 0, "c", False)
    )  # fmt: skip
    assert rec[2].annotations["segment"] == 1 and rec[2].annotations["detected"] is False

    only = read_recording(tmp_path / "trains.nix", sweeps=[0], channels="b")
    assert [o.name for o in only.origins] == ["b"]
    assert [o.name for o in read_recording(tmp_path / "trains.nix", segments=1).origins] == ["c"]
    assert read_recording(tmp_path / "trains.nix", format="nix").format == "NixIO"


def test_nix_voltage_detection_equals_the_simulators_spikes(tmp_path, sim):
    vm = sim.analogsignal(0)
    vm_volts = neo.AnalogSignal(sim.voltage[0][:, None] / 1000.0, units=pq.V, sampling_period=vm.sampling_period,
                                t_start=vm.t_start, name="Vm in V")  # fmt: skip
    current = neo.AnalogSignal(np.zeros((vm.shape[0], 1)), units=pq.pA, sampling_period=vm.sampling_period,
                               t_start=vm.t_start, name="I")  # fmt: skip
    vm.name = "Vm"
    s0, s1 = neo.Segment(name="sweep0"), neo.Segment(name="sweep1")
    s0.analogsignals.extend([current, vm])
    s1.analogsignals.append(vm_volts)
    _write_nix(tmp_path / "vm.nix", [s0, s1])

    rec = read_recording(tmp_path / "vm.nix")
    # the current channel is skipped; the trace in volts is converted
    assert [(o.segment, o.channel, o.detected) for o in rec.origins] == [(0, 1, True), (1, 0, True)]
    for train in rec:
        np.testing.assert_allclose(train.rescale(pq.ms).magnitude, sim.times, rtol=0, atol=1e-6)
        assert float(train.t_start) == pytest.approx(sim.t_start)

    # a higher threshold than the spikes' peak finds nothing
    with pytest.raises(RecordingError, match="no spikes.*threshold"):
        read_recording(tmp_path / "vm.nix", threshold=60.0)
    # asking for the current channel by index is refused with its unit
    with pytest.raises(RecordingError, match=r"vm\.nix.*channel 'I'.*'pA'.*not a voltage"):
        read_recording(tmp_path / "vm.nix", segments=0, channels=0)
    with pytest.raises(RecordingError, match="no recorded spike trains"):
        read_recording(tmp_path / "vm.nix", spikes_from="recorded")


def test_abf_written_by_pyabf_read_through_neo_axonio(tmp_path, sim):
    writer = pytest.importorskip("pyabf.abfWriter")
    # One sweep per file: pyabf's ABF1 writer leaves the sweep table empty, so neo reads several sweeps as one
    # continuous segment (sweep selection is tested on NIX, where segments are explicit).
    path = tmp_path / "cell.abf"
    writer.writeABF1(sim.voltage[:1], str(path), 1000.0 / sim.sampling_interval, units="mV")
    rec = read_recording(path)
    assert rec.format == "AxonIO" and rec.origins[0].detected
    # the ABF sweep starts at its own time zero; 16-bit samples (0.003 mV steps) move an interpolated crossing
    # by far less than a microsecond
    np.testing.assert_allclose(rec[0].rescale(pq.ms).magnitude, sim.times - sim.t_start, rtol=0, atol=1e-3)

    flat = tmp_path / "flat.abf"
    writer.writeABF1(np.full((1, 2000), -60.0), str(flat), 20000.0, units="mV")
    with pytest.raises(RecordingError, match=r"flat\.abf: no spikes.*threshold \(10\.0 mV"):
        read_recording(flat)


def test_channels_of_a_multichannel_signal_by_name_or_index(tmp_path, sim):
    v = sim.voltage[0]
    sig = neo.AnalogSignal(np.stack([np.full_like(v, -70.0), v], axis=1), units=pq.mV,
                           sampling_period=sim.sampling_interval * pq.ms, t_start=sim.t_start * pq.ms, name="Vm",
                           array_annotations={"channel_names": np.array(["silent", "cell"])})  # fmt: skip
    seg = neo.Segment()
    seg.analogsignals.append(sig)
    _write_nix(tmp_path / "two.nix", [seg])
    for choice in ("cell", 1, [1]):
        rec = read_recording(tmp_path / "two.nix", channels=choice)
        assert rec.origins == (TrainOrigin(0, 1, "cell", True),)
        np.testing.assert_allclose(rec[0].magnitude, sim.times, rtol=0, atol=1e-6)
    # a silent channel next to a firing one is skipped with a note, not an error; alone, it is an error
    rec = read_recording(tmp_path / "two.nix")
    assert rec.origins == (TrainOrigin(0, 1, "cell", True),)
    assert rec.notes == ("skipped segment 0, channel 0 ('silent') has 0 spikes, fewer than min_spikes = 3",)
    with pytest.raises(RecordingError, match=r"two\.nix: no spikes in the selected trains above the detection"):
        read_recording(tmp_path / "two.nix", channels="silent")
    with pytest.raises(RecordingError, match=r"two\.nix: no voltage channel of segment 0 named 'x'"):
        read_recording(tmp_path / "two.nix", channels="x")


@pytest.mark.filterwarnings("ignore::FutureWarning")  # neo calls pynwb.validate positionally
def test_nwb_round_trip(tmp_path, sim):
    pytest.importorskip("pynwb")
    from neo.io import NWBIO

    block = neo.Block(name="nwb", session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
    seg = neo.Segment(name="trial0")
    seg.analogsignals.append(sim.analogsignal(0))
    block.segments.append(seg)
    path = tmp_path / "cell.nwb"
    try:
        NWBIO(str(path), mode="w").write_all_blocks([block])
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"neo's NWBIO cannot write NWB here: {type(err).__name__}: {err}")
    rec = read_recording(path)
    assert rec.format == "NWBIO" and rec.origins[0].detected
    np.testing.assert_allclose(rec[0].rescale(pq.ms).magnitude, sim.times, rtol=0, atol=1e-6)


def test_spike2pop_csv_as_written_by_the_cli(tmp_path):
    from dic_sbi.cli import write_spikes_csv

    cells = [np.array([10.0, 20.5, 31.25, 40.0]), np.array([5.0, 15.0, 25.0])]
    write_spikes_csv(tmp_path / "spikes.csv", cells)
    rec = read_recording(tmp_path / "spikes.csv")
    assert rec.format == "spike2pop" and len(rec) == 2
    for train, times in zip(rec, cells):
        np.testing.assert_allclose(train.magnitude, times)
        half = np.mean(np.diff(times)) / 2  # no window in a text file: the spikes' span widened by half a mean ISI
        assert float(train.t_start) == pytest.approx(times[0] - half)
        assert float(train.t_stop) == pytest.approx(times[-1] + half)
    assert [o.name for o in rec.origins] == ["0", "1"]
    assert [o.name for o in read_recording(tmp_path / "spikes.csv", channels="1").origins] == ["1"]

    # Spike2Pop's own header (ID only) and an explicit window
    (tmp_path / "s2p.dat").write_text('ID\n7,"[1.5, 2.5, 3.5]"\n')
    rec = read_recording(tmp_path / "s2p.dat", format="spike2pop", t_stop=100.0)
    np.testing.assert_allclose(rec[0].magnitude, [1.5, 2.5, 3.5])
    assert rec.origins[0].name == "7" and float(rec[0].t_stop) == 100.0


def test_plain_text_spike_times(tmp_path):
    (tmp_path / "lines.txt").write_text("# spike times, ms\n1.0\n2.0\n3.5\n")
    np.testing.assert_allclose(read_recording(tmp_path / "lines.txt")[0].magnitude, [1.0, 2.0, 3.5])
    (tmp_path / "commas.txt").write_text("0.001, 0.002,0.0035 0.004\n")
    rec = read_recording(tmp_path / "commas.txt", units="s")
    assert rec.format == "text"
    np.testing.assert_allclose(rec[0].magnitude, [1.0, 2.0, 3.5, 4.0])
    (tmp_path / "times.csv").write_text("1\n2\n3\n")  # a CSV without the ID header: text when asked
    np.testing.assert_allclose(read_recording(tmp_path / "times.csv", format="text")[0].magnitude, [1, 2, 3])


# ------------------------------------------------------------------------------------------------------------
# Bad input: a RecordingError naming the file and what was wrong
# ------------------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(RecordingError, match=r"nothere\.nix: no such file"):
        read_recording(tmp_path / "nothere.nix")


def test_corrupt_files(tmp_path, sim):
    writer = pytest.importorskip("pyabf.abfWriter")
    good = tmp_path / "good.abf"
    writer.writeABF1(sim.voltage[:1], str(good), 1000.0 / sim.sampling_interval, units="mV")
    (tmp_path / "truncated.abf").write_bytes(good.read_bytes()[:1000])
    rng = np.random.default_rng(0)
    (tmp_path / "garbage.abf").write_bytes(rng.bytes(4096))
    (tmp_path / "garbage.nix").write_bytes(rng.bytes(4096))
    seg = neo.Segment()
    seg.spiketrains.append(neo.SpikeTrain([1.0, 2.0, 3.0] * pq.ms, t_stop=10 * pq.ms))
    _write_nix(tmp_path / "whole.nix", [seg])
    data = (tmp_path / "whole.nix").read_bytes()
    (tmp_path / "truncated.nix").write_bytes(data[: len(data) // 2])
    for name in ["truncated.abf", "garbage.abf", "garbage.nix", "truncated.nix"]:
        with pytest.raises(RecordingError, match=rf"{name}: cannot read the file: it is corrupt"):
            read_recording(tmp_path / name)


def test_no_spikes_and_too_few_spikes(tmp_path):
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(RecordingError, match=r"empty\.txt: no spikes"):
        read_recording(tmp_path / "empty.txt")
    (tmp_path / "silent.csv").write_text('ID,spike_times_ms\n0,"[]"\n1,"[]"\n')
    with pytest.raises(RecordingError, match=r"silent\.csv: no spikes"):
        read_recording(tmp_path / "silent.csv")
    (tmp_path / "two.txt").write_text("1.0 2.0\n")
    with pytest.raises(RecordingError, match=r"two\.txt: segment 0, train 0 .* has 2 spikes; at least 3"):
        read_recording(tmp_path / "two.txt")
    assert len(read_recording(tmp_path / "two.txt", min_spikes=2)[0]) == 2

    # a file with only a current signal has no voltage to detect spikes in
    seg = neo.Segment()
    seg.analogsignals.append(neo.AnalogSignal(np.zeros((100, 1)), units=pq.nA, sampling_rate=10 * pq.kHz))
    _write_nix(tmp_path / "current.nix", [seg])
    with pytest.raises(RecordingError, match=r"current\.nix: no spike trains and no voltage signal.*nA"):
        read_recording(tmp_path / "current.nix")


def test_unsorted_and_negative_times(tmp_path):
    (tmp_path / "unsorted.txt").write_text("1.0\n3.0\n2.0\n")
    with pytest.raises(RecordingError, match=r"unsorted\.txt: cell '0'.*strictly increasing"):
        read_recording(tmp_path / "unsorted.txt")
    (tmp_path / "negative.csv").write_text('ID\n0,"[-1.0, 2.0, 3.0]"\n')
    with pytest.raises(RecordingError, match=r"negative\.csv: cell '0'.*non-negative"):
        read_recording(tmp_path / "negative.csv")
    # neo itself accepts unsorted and negative spike trains; dic_sbi does not
    seg = neo.Segment()
    seg.spiketrains.append(neo.SpikeTrain([3.0, 1.0, 2.0] * pq.ms, t_stop=10 * pq.ms, name="u"))
    _write_nix(tmp_path / "unsorted.nix", [seg])
    with pytest.raises(RecordingError, match=r"unsorted\.nix: segment 0, spike train 0 \('u'\).*increasing"):
        read_recording(tmp_path / "unsorted.nix")
    seg = neo.Segment()
    seg.spiketrains.append(neo.SpikeTrain([-3.0, 1.0, 2.0] * pq.ms, t_start=-5 * pq.ms, t_stop=10 * pq.ms))
    _write_nix(tmp_path / "negative.nix", [seg])
    with pytest.raises(RecordingError, match=r"negative\.nix.*non-negative"):
        read_recording(tmp_path / "negative.nix")


def test_wrong_units_and_unknown_format(tmp_path):
    (tmp_path / "t.txt").write_text("1 2 3\n")
    with pytest.raises(RecordingError, match=r"t\.txt: units='mV' is not a time unit"):
        read_recording(tmp_path / "t.txt", units="mV")
    with pytest.raises(RecordingError, match=r"t\.txt: units='parsec-per-fortnight' is not a unit"):
        read_recording(tmp_path / "t.txt", units="parsec-per-fortnight")
    (tmp_path / "bad.csv").write_text("time\n1\n2\n")
    with pytest.raises(RecordingError, match=r"bad\.csv: not a Spike2Pop CSV.*'ID'"):
        read_recording(tmp_path / "bad.csv")
    (tmp_path / "words.txt").write_text("one two three\n")
    with pytest.raises(RecordingError, match=r"words\.txt: spike times: not a list of numbers"):
        read_recording(tmp_path / "words.txt")
    (tmp_path / "data.xyz").write_bytes(os.urandom(16))
    with pytest.raises(RecordingError, match=r"data\.xyz: unknown format"):
        read_recording(tmp_path / "data.xyz")
    with pytest.raises(RecordingError, match=r"t\.txt: format='bogus' is not a format"):
        read_recording(tmp_path / "t.txt", format="bogus")
    with pytest.raises(RecordingError, match="segment 5 does not exist"):
        read_recording(tmp_path / "t.txt", format="text", segments=5)
    # the family: callers can catch every dic_sbi error, or ValueError
    assert issubclass(RecordingError, DicSbiError) and issubclass(RecordingError, ValueError)


# ------------------------------------------------------------------------------------------------------------
# Real recordings (issue 15): step protocols, detection on unusual traces, stimulus windows
# ------------------------------------------------------------------------------------------------------------

_DT = 0.1  # ms


def _trace(duration=3000.0, period=100.0, rest=-60.0, peak=30.0, first=50.0):
    """Synthetic membrane potential: ``rest`` with a 1-ms spike of height ``peak`` at first, first + period, ..."""
    t = np.arange(0.0, duration, _DT)
    v = np.full_like(t, rest)
    for s in np.arange(first, duration - 5.0, period):
        v += (peak - rest) * np.exp(-0.5 * ((t - s) / 0.3) ** 2)
    return v


def _vm(*traces, name="Vm"):
    seg = neo.Segment()
    seg.analogsignals.append(neo.AnalogSignal(np.stack(traces, axis=1), units=pq.mV, sampling_period=_DT * pq.ms,
                                              name=name))  # fmt: skip
    return seg


def test_step_protocol_sweeps_below_threshold_are_skipped_with_a_note_and_sweeps_named(tmp_path):
    sweeps = [_vm(np.full(30000, -65.0)),                       # no response
              _vm(_trace(rest=-65.0, peak=-50.0)),              # subthreshold bumps, 15 mV
              _vm(_trace(period=200.0)), _vm(_trace(period=50.0))]  # fmt: skip
    _write_nix(tmp_path / "steps.nix", sweeps)
    rec = read_recording(tmp_path / "steps.nix")
    assert [o.name for o in rec.origins] == ["Vm sweep 2", "Vm sweep 3"]
    assert [t.name for t in rec] == ["Vm sweep 2", "Vm sweep 3"]
    assert [len(t) for t in rec] == [15, 59]
    assert rec.notes == (
        "skipped segment 0, channel 0 ('Vm sweep 0') has 0 spikes, fewer than min_spikes = 3",
        "skipped segment 1, channel 0 ('Vm sweep 1') has 0 spikes, fewer than min_spikes = 3",
    )
    every = read_recording(tmp_path / "steps.nix", min_spikes=0)
    assert [o.name for o in every.origins] == [f"Vm sweep {s}" for s in range(4)] and every.notes == ()
    assert [o.name for o in read_recording(tmp_path / "steps.nix", sweeps=[3]).origins] == ["Vm"]  # one: no suffix


def test_auto_threshold_finds_spikes_that_peak_below_zero(tmp_path):
    v = _trace(rest=-75.0, peak=-15.0)  # a cold or damaged cell: spikes never reach 0 mV
    _write_nix(tmp_path / "low.nix", [_vm(v)])
    with pytest.raises(RecordingError, match=r"no spikes in the selected trains above the detection threshold "
                                             r"\(10\.0 mV; set threshold=, or threshold='auto'\)"):  # fmt: skip
        read_recording(tmp_path / "low.nix")
    # ... and says that the trace holds spikes that derived levels would find
    with pytest.raises(RecordingError, match=r"Note: segment 0, channel 'Vm': only 0 spike\(s\) cross 10 mV, but the "
                                             r"trace has 30 spike-like peaks"):  # fmt: skip
        read_recording(tmp_path / "low.nix")
    rec = read_recording(tmp_path / "low.nix", threshold="auto")
    np.testing.assert_allclose(rec[0].magnitude, np.arange(50.0, 2996.0, 100.0), atol=0.5)  # the spike peaks
    assert rec[0].annotations["threshold_mV"] == pytest.approx(-45.0, abs=0.1)  # half way from rest to peak
    assert rec[0].annotations["rearm_mV"] == pytest.approx(-63.0, abs=0.1)
    # a negative threshold re-arms 10 mV below it, so a threshold given by hand works too
    assert len(read_recording(tmp_path / "low.nix", threshold=-30.0)[0]) == 30
    with pytest.raises(RecordingError, match=r"rearm \(-20\.0 mV\) must not be above threshold \(-30\.0 mV\)"):
        read_recording(tmp_path / "low.nix", threshold=-30.0, rearm=-20.0)


def test_suspiciously_few_spikes_at_fixed_levels_gets_a_note(tmp_path):
    good = _trace()
    offset = _trace(rest=2.0, peak=60.0)  # rests near 0 mV (an offset): never re-arms below 0 mV
    _write_nix(tmp_path / "offset.nix", [_vm(good, offset)])
    rec = read_recording(tmp_path / "offset.nix")
    assert [o.channel for o in rec.origins] == [0] and len(rec[0]) == 30
    assert rec.notes[0].startswith("segment 0, channel 'Vm[1]': only 0 spike(s) cross 10 mV, but the trace has 30 "
                                   "spike-like peaks")  # fmt: skip
    assert "threshold='auto'" in rec.notes[0] and "skipped segment 0, channel 1" in rec.notes[1]
    auto = read_recording(tmp_path / "offset.nix", threshold="auto")
    assert [len(t) for t in auto] == [30, 30] and auto.notes == ()
    # noise alone (no spike-like peak) is no spike, even with derived levels
    rng = np.random.default_rng(0)
    _write_nix(tmp_path / "noise.nix", [_vm(-60.0 + rng.normal(0.0, 2.0, 30000))])
    with pytest.raises(RecordingError, match="no spikes"):
        read_recording(tmp_path / "noise.nix", threshold="auto")


def test_rates_over_the_stimulus_epoch_or_a_given_window(tmp_path):
    seg = _vm(_trace(period=100.0))
    seg.epochs.append(neo.Epoch(times=[1000.0] * pq.ms, durations=[1000.0] * pq.ms, labels=np.array(["stimulus"]),
                                name="protocol"))  # fmt: skip
    _write_nix(tmp_path / "stim.nix", [seg])
    rec = read_recording(tmp_path / "stim.nix")
    assert float(rec[0].t_start) == pytest.approx(1000.0) and float(rec[0].t_stop) == pytest.approx(2000.0)
    assert len(rec[0]) == 10  # 1050, 1150, ..., 1950
    assert rec.notes == ("segment 0: rates measured over the stimulus epoch 'protocol' (1000-2000 ms); give "
                         "t_start/t_stop (--t-start/--t-stop) for another window",)  # fmt: skip
    given = read_recording(tmp_path / "stim.nix", t_start=0.0, t_stop=500.0)
    assert len(given[0]) == 5 and given.notes == () and float(given[0].t_stop) == pytest.approx(500.0)
    # recorded spike trains are cut the same way
    seg = neo.Segment()
    seg.spiketrains.append(neo.SpikeTrain(np.arange(5.0, 1000.0, 10.0) * pq.ms, t_stop=1000 * pq.ms, name="unit"))
    _write_nix(tmp_path / "trains.nix", [seg])
    cut = read_recording(tmp_path / "trains.nix", t_start=100.0, t_stop=200.0)
    assert len(cut[0]) == 10 and float(cut[0].t_start) == pytest.approx(100.0)


def test_cli_reads_a_step_protocol_with_its_options(tmp_path, capsys):
    """--threshold / --rearm / --min-spikes reach the reader; skipped sweeps are notes on the terminal and in
    report.json; the trains keep their sweep names."""
    import json

    from dic_sbi.cli import main

    _write_nix(tmp_path / "steps.nix", [_vm(_trace(rest=-75.0, peak=-15.0, period=200.0)),
                                        _vm(_trace(rest=-75.0, peak=-15.0, period=100.0))])  # fmt: skip
    out = tmp_path / "out"
    code = main(["infer", str(tmp_path / "steps.nix"), "--model", "stg", "-n", "3", "--out", str(out), "--no-plots",
                 "--quiet", "--threshold", "-30", "--rearm", "-60", "--min-spikes", "20"])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0
    assert "note: skipped segment 0, channel 0 ('Vm sweep 0') has 15 spikes, fewer than --min-spikes = 20" in stdout
    report = json.loads((out / "report.json").read_text())
    assert [t["name"] for t in report["trains"]] == ["Vm sweep 1"]
    assert report["trains"][0]["observed_features"]["n_spikes"] == 30
    assert report["notes"] == ["skipped segment 0, channel 0 ('Vm sweep 0') has 15 spikes, fewer than min_spikes = 20"]
    # the same sweeps with levels derived from each trace: both kept
    code = main(["infer", str(tmp_path / "steps.nix"), "--model", "stg", "-n", "3", "--out", str(tmp_path / "auto"),
                 "--no-plots", "--quiet", "--threshold", "auto"])  # fmt: skip
    assert code == 0 and "note:" not in capsys.readouterr().out
    report = json.loads((tmp_path / "auto" / "report.json").read_text())
    assert [t["observed_features"]["n_spikes"] for t in report["trains"]] == [15, 30]
