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
