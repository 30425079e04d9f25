"""Hostile input (issue 15): every bad argument, recording or place gives one line naming the problem, a non-zero
status (or a DicSbiError from Python), no traceback, no partial output, and leaves every file as it was.

Each CLI case runs ``dic-sbi`` in-process in a folder holding a user's files; before and after, every file's
bytes are compared, and the ``--out`` folder (and any staging folder) must not exist.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os

import neo
import numpy as np
import pytest
import quantities as pq

from dic_sbi.cli import main
from dic_sbi.errors import DicSbiError, InvalidInputError, RecordingError

logging.getLogger("neo").setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DT = 0.1  # ms


def spiking_trace(duration=3000.0, period=100.0, rest=-60.0, peak=30.0, first=50.0) -> np.ndarray:
    """A synthetic membrane potential (mV): rest, and a 1-ms spike of height ``peak`` every ``period`` ms."""
    t = np.arange(0.0, duration, DT)
    v = np.full_like(t, rest)
    for s in np.arange(first, duration - 5.0, period):
        v += (peak - rest) * np.exp(-0.5 * ((t - s) / 0.3) ** 2)
    return v


def write_nix(path, segments) -> None:
    block = neo.Block(name="test")
    block.segments.extend(segments)
    with neo.io.NixIO(str(path), mode="ow") as io:
        io.write_block(block)


def voltage_segment(*traces, name="Vm", units=pq.mV) -> neo.Segment:
    seg = neo.Segment()
    seg.analogsignals.append(neo.AnalogSignal(np.stack(traces, axis=1), units=units, sampling_period=DT * pq.ms,
                                              name=name))  # fmt: skip
    return seg


def _snapshot(folder) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder) + "/"] = "dir"
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A user's folder: good and bad recordings and some files of their own."""
    d = tmp_path_factory.mktemp("user")
    (d / "notes.txt").write_text("my lab notes\n")
    (d / "cell.txt").write_text("\n".join(f"{t:g}" for t in np.arange(10.0, 3000.0, 100.0)) + "\n")
    (d / "nan.txt").write_text("1\n2\nnan\n4\n")
    (d / "inf.txt").write_text("1 2 3 inf\n")
    (d / "duplicate.txt").write_text("1\n2\n2\n3\n")
    (d / "unsorted.txt").write_text("1\n3\n2\n")
    (d / "negative.txt").write_text("-1\n2\n3\n")
    (d / "words.txt").write_text("one two three\n")
    (d / "comments.txt").write_text("# only a comment\n")
    (d / "two.txt").write_text("1.0 2.0\n")
    (d / "empty.txt").write_bytes(b"")
    (d / "binary.txt").write_bytes(b"\xff\xfe\x00\x01" * 64)
    (d / "noid.csv").write_text("time\n1\n2\n")
    (d / "threecols.csv").write_text('ID,a,b\n0,"[1, 2, 3]",x\n')
    (d / "header.csv").write_text("ID,spike_times_ms\n")
    (d / "nobrackets.csv").write_text('ID,spike_times_ms\n0,"1, 2, 3"\n')
    (d / "nan.csv").write_text('ID,spike_times_ms\n0,"[1, nan, 3]"\n')
    (d / "silent.csv").write_text('ID,spike_times_ms\n0,"[]"\n1,"[]"\n')
    (d / "duplicate.csv").write_text('ID,spike_times_ms\n0,"[1, 5, 5, 9]"\n')
    rng = np.random.default_rng(0)
    (d / "garbage.nix").write_bytes(rng.bytes(4096))
    (d / "garbage.abf").write_bytes(rng.bytes(4096))
    (d / "wave.ibw").write_bytes(rng.bytes(512))
    (d / "data.xyz").write_bytes(rng.bytes(64))
    (d / "emptydir").mkdir()
    (d / "somedir").mkdir()
    (d / "somedir" / "a.txt").write_text("1 2 3\n")
    seg = neo.Segment()
    seg.analogsignals.append(neo.AnalogSignal(np.zeros((1000, 1)), units=pq.nA, sampling_period=DT * pq.ms))
    write_nix(d / "current.nix", [seg])
    write_nix(d / "flat.nix", [voltage_segment(np.full(20000, -65.0))])
    nan_trace = spiking_trace()
    nan_trace[500] = np.nan
    write_nix(d / "nanvoltage.nix", [voltage_segment(nan_trace)])
    write_nix(d / "silentsweeps.nix", [voltage_segment(np.full(20000, -65.0)),
                                       voltage_segment(spiking_trace(duration=2000.0, period=1000.0))])  # fmt: skip
    write_nix(d / "good.nix", [voltage_segment(spiking_trace())])
    (d / "pop.csv").write_text("cell,Na,Kd,CaT,CaS,KCa,A,H,leak\n0,1000,100,1,3,10,20,0.01,0.01\n")
    (d / "previous").mkdir()
    (d / "nomodel.py").write_text("X = 1\n")
    (d / "badtau.py").write_text(
        "from dic_sbi.models import Gate\n"
        "x = Gate('x', lambda V: 0.5 + 0 * V, lambda V: 5.0 - V / 10.0)  # τ <= 0 from 50 mV up\n"
    )
    (d / "previous" / "mine.csv").write_text("a,b\n")
    return d


@pytest.fixture
def user(files, monkeypatch):
    monkeypatch.chdir(files)
    before = _snapshot(files)
    yield files
    assert _snapshot(files) == before, "a refused command changed the user's files"


# (id, argv after "dic-sbi", regex the one-line message must match). The recording is cell.txt unless the case
# names another; every infer case writes to the fresh folder "out".
INFER = ["infer", "--model", "stg", "--out", "out", "--no-plots", "--quiet"]
CLI_CASES = [
    # hostile numbers, named by their flag
    ("n-zero", [*INFER, "cell.txt", "-n", "0"], r"argument -n: expected a number of cells from 1 to 10,000,000.*got 0"),
    ("n-negative", [*INFER, "cell.txt", "-n", "-5"], r"argument -n: .*got -5"),
    ("n-float", [*INFER, "cell.txt", "-n", "1e9"], r"argument -n: expected a number of cells.*'1e9'"),
    ("n-absurd", [*INFER, "cell.txt", "-n", "100000000"], r"argument -n: .*documented limit.*GB.*got 100000000"),
    ("n-word", [*INFER, "cell.txt", "-n", "many"], r"argument -n: .*'many'"),
    ("seed-negative", [*INFER, "cell.txt", "--seed", "-1"], r"argument --seed: expected a seed, an integer from 0 to 2\*\*63 - 1"),
    ("seed-huge", [*INFER, "cell.txt", "--seed", str(2**64)], r"argument --seed: .*got 18446744073709551616"),
    ("seed-2**63", [*INFER, "cell.txt", "--seed", str(2**63)], r"argument --seed: .*2\*\*63 - 1"),
    ("seed-float", [*INFER, "cell.txt", "--seed", "1.5"], r"argument --seed: .*'1.5'"),
    ("threshold-nan", [*INFER, "cell.txt", "--threshold", "nan"], r"argument --threshold: expected a finite voltage"),
    ("threshold-inf", [*INFER, "cell.txt", "--threshold=-inf"], r"argument --threshold: expected a finite voltage"),
    ("threshold-word", [*INFER, "cell.txt", "--threshold", "high"], r"argument --threshold: expected voltage \(mV\) or auto"),
    ("rearm-above-threshold", [*INFER, "cell.txt", "--threshold", "0", "--rearm", "5"], r"--rearm \(5 mV\) must not be above --threshold \(0 mV\)"),
    ("rearm-above-default", [*INFER, "good.nix", "--rearm", "20"], r"--rearm \(20 mV\) must not be above --threshold \(10 mV, the default\)"),
    ("rearm-with-auto", [*INFER, "cell.txt", "--threshold", "auto", "--rearm", "0"], r"--rearm: derived from the trace with --threshold auto"),
    ("rearm-nan", [*INFER, "cell.txt", "--rearm", "nan"], r"argument --rearm: expected a finite voltage"),
    ("min-spikes-negative", [*INFER, "cell.txt", "--min-spikes", "-1"], r"argument --min-spikes: expected an integer >= 0"),
    ("noise-negative", [*INFER, "cell.txt", "--noise-std", "-1"], r"argument --noise-std: expected σ \(µA/cm²\) >= 0"),
    ("noise-nan", [*INFER, "cell.txt", "--noise-std", "nan"], r"argument --noise-std: expected a finite σ"),
    ("t-start-negative", [*INFER, "cell.txt", "--t-start", "-5"], r"argument --t-start: expected time \(ms\) >= 0"),
    ("t-stop-zero", [*INFER, "cell.txt", "--t-stop", "0"], r"argument --t-stop: expected a positive time"),
    ("window-reversed", [*INFER, "cell.txt", "--t-start", "100", "--t-stop", "50"], r"--t-stop \(50 ms\) must be greater than --t-start \(100 ms\)"),
    ("window-before-spikes", [*INFER, "cell.txt", "--t-stop", "5"], r"cell\.txt: cell '0': .*after --t-stop = 5"),
    ("train-word", [*INFER, "cell.txt", "--train", "first"], r"--train: expected comma-separated train indices"),
    ("train-missing", [*INFER, "cell.txt", "--train", "5"], r"--train: expected indices in \[0, 1\)"),
    ("max-draws-zero", [*INFER, "cell.txt", "--match-class", "--max-draws", "0"], r"argument --max-draws: expected an integer >= 1"),
    ("noise-repeats-zero", [*INFER, "cell.txt", "--noise-repeats", "0"], r"argument --noise-repeats: expected an integer >= 1"),
    ("model-unknown", ["infer", "cell.txt", "--model", "squid", "--out", "out"], r"argument --model: unknown model 'squid'; choose from da, pospischil, pospischil-fs, pospischil-ib, pospischil-lts, pospischil-rs, stg, or give path/to/file\.py:NAME"),
    ("model-file-missing", ["population", "--model", "nothere.py:HH", "--g-s", "1", "--g-u", "5", "--out", "p.csv"], r"argument --model: no model file 'nothere\.py'"),
    ("model-file-no-such-name", ["population", "--model", "nomodel.py:HH", "--g-s", "1", "--g-u", "5", "--out", "p.csv"], r"argument --model: nomodel\.py has no 'HH'; its models are none"),
    ("model-file-not-a-model", ["simulate", "pop.csv", "--model", "nomodel.py:X", "--out", "spikes.csv"], r"argument --model: nomodel\.py:X is not a ConductanceModel but a int"),
    ("model-file-bad-tau", ["simulate", "pop.csv", "--model", "badtau.py", "--out", "spikes.csv"], r"argument --model: model file badtau\.py: gate 'x': time constant must be > 0 ms on \[-150, 100\] mV; it is 0 at V = 50 mV"),
    ("model-missing", ["infer", "cell.txt", "--out", "out"], r"the following arguments are required: --model"),
    ("format-unknown", [*INFER, "cell.txt", "--format", "bogus"], r"cell\.txt: --format bogus is not a format dic_sbi or Neo knows"),
    ("units-unknown", [*INFER, "cell.txt", "--units", "parsec-per-fortnight"], r"cell\.txt: --units parsec-per-fortnight is not a unit quantities knows"),
    ("units-not-time", [*INFER, "cell.txt", "--units", "mV"], r"cell\.txt: --units mV is not a time unit"),
    ("segment-missing", [*INFER, "cell.txt", "--segments", "5"], r"segment 5 does not exist"),
    ("channel-missing", [*INFER, "cell.txt", "--channels", "x"], r"no cell named 'x'"),
    ("posterior-missing", [*INFER, "cell.txt", "--posterior", "nowhere/post"], r"--posterior: no posterior at 'nowhere/post' \(need post\.json and post\.pt\)"),
    ("noise-untrained", ["infer", "good.nix", "--model", "da", "--out", "out", "--no-plots", "--noise-std", "50"], r"--noise-std: this posterior was trained at --noise-std = 0 or 0\.5 to 5, got 50"),
    # hostile recordings, named as such
    ("recording-missing", [*INFER, "nothere.nix"], r"nothere\.nix: no such file or folder"),
    ("recording-empty-folder", [*INFER, "emptydir"], r"emptydir: is a folder, not a recording file"),
    ("recording-folder", [*INFER, "somedir"], r"somedir: is a folder"),
    ("recording-dev-null", [*INFER, "/dev/null"], r"/dev/null: not a regular file \(a device, pipe or socket\)"),
    ("recording-empty-file", [*INFER, "empty.txt"], r"empty\.txt: the file is empty \(0 bytes\)"),
    ("spikes-nan", [*INFER, "nan.txt"], r"nan\.txt: .*spike time 2 is NaN"),
    ("spikes-inf", [*INFER, "inf.txt"], r"inf\.txt: .*spike time 3 is infinite"),
    ("spikes-duplicate", [*INFER, "duplicate.txt"], r"duplicate\.txt: .*duplicate spike time 2\.0 ms"),
    ("spikes-unsorted", [*INFER, "unsorted.txt"], r"unsorted\.txt: .*not sorted"),
    ("spikes-negative", [*INFER, "negative.txt"], r"negative\.txt: .*non-negative"),
    ("spikes-words", [*INFER, "words.txt"], r"words\.txt: spike times: not a list of numbers"),
    ("spikes-binary", [*INFER, "binary.txt"], r"binary\.txt: cannot read as a text file of spike times"),
    ("spikes-none", [*INFER, "comments.txt"], r"comments\.txt: no spikes"),
    ("spikes-too-few", [*INFER, "two.txt"], r"two\.txt: .*has 2 spikes; at least 3 .*--min-spikes"),
    ("spikes-too-few-for-min", [*INFER, "cell.txt", "--min-spikes", "100"], r"cell\.txt: .*has 30 spikes; at least 100"),
    ("csv-no-id", [*INFER, "noid.csv"], r"noid\.csv: not a Spike2Pop CSV.*'ID'"),
    ("csv-three-columns", [*INFER, "threecols.csv"], r"threecols\.csv: line 2: expected 2 columns"),
    ("csv-header-only", [*INFER, "header.csv"], r"header\.csv: the Spike2Pop CSV has a header but no cells"),
    ("csv-no-brackets", [*INFER, "nobrackets.csv"], r"nobrackets\.csv: line 2: spike times must be written as"),
    ("csv-nan", [*INFER, "nan.csv"], r"nan\.csv: cell '0': .*NaN"),
    ("csv-silent", [*INFER, "silent.csv"], r"silent\.csv: no spikes"),
    ("csv-duplicate", [*INFER, "duplicate.csv"], r"duplicate\.csv: cell '0': .*duplicate spike time 5\.0 ms"),
    ("nix-garbage", [*INFER, "garbage.nix"], r"garbage\.nix: cannot read the file: it is corrupt"),
    ("abf-garbage", [*INFER, "garbage.abf"], r"garbage\.abf: cannot read the file: it is corrupt"),
    ("igor-missing-package", [*INFER, "wave.ibw"], r"wave\.ibw: reading this format needs the missing package igor2: pip install igor2"),
    ("unknown-extension", [*INFER, "data.xyz"], r"data\.xyz: unknown format \(extension '\.xyz'\)"),
    ("nix-only-current", [*INFER, "current.nix"], r"current\.nix: no spike trains and no voltage signal.*nA"),
    ("nix-flat-voltage", [*INFER, "flat.nix"], r"flat\.nix: no spikes in the selected trains above the detection threshold"),
    ("nix-nan-voltage", [*INFER, "nanvoltage.nix"], r"nanvoltage\.nix: segment 0, channel 'Vm': signal contains NaN"),
    ("nix-sweeps-too-few", [*INFER, "silentsweeps.nix"], r"silentsweeps\.nix: segment 1, channel 0 \('Vm sweep 1'\) has 2 spikes \(no other selected train has more\)"),
    ("nix-window-outside", [*INFER, "good.nix", "--t-start", "5000"], r"good\.nix: segment 0, channel 'Vm': the window"),
    # hostile places
    ("out-is-a-file", ["infer", "cell.txt", "--model", "stg", "--out", "notes.txt", "--no-plots"], r"--out: notes\.txt exists and is not a folder"),
    ("out-below-a-file", ["infer", "cell.txt", "--model", "stg", "--out", "notes.txt/out", "--no-plots"], r"--out: cannot create notes\.txt/out: .* is not a folder"),
    ("out-here", ["infer", "cell.txt", "--model", "stg", "--out", ".", "--no-plots"], r"--out: \. is the current folder"),
    ("out-foreign-folder", ["infer", "cell.txt", "--model", "stg", "--out", "previous", "--overwrite", "--no-plots"], r"--out: previous is a folder that holds files dic-sbi did not write"),
    ("out-is-the-recording", ["infer", "cell.txt", "--model", "stg", "--out", "cell.txt", "--overwrite", "--no-plots"], r"--out: cell\.txt would replace cell\.txt"),
    # other commands
    ("population-n-zero", ["population", "--model", "stg", "--g-s", "1", "--g-u", "5", "-n", "0", "--out", "p.csv"], r"argument -n: "),
    ("population-seed", ["population", "--model", "stg", "--g-s", "1", "--g-u", "5", "--seed", "-3", "--out", "p.csv"], r"argument --seed: "),
    ("population-gs-nan", ["population", "--model", "stg", "--g-s", "nan", "--g-u", "5", "-n", "3", "--out", "p.csv"], r"argument --g-s: expected a finite DIC \(per gleak\), got nan"),
    ("simulate-missing-csv", ["simulate", "nothere.csv", "--model", "stg", "--out", "spikes.csv"], r"nothere\.csv: no such file"),
    ("simulate-bad-csv", ["simulate", "noid.csv", "--model", "stg", "--out", "spikes.csv"], r"noid\.csv: missing conductance column"),
    ("simulate-duration-nan", ["simulate", "pop.csv", "--model", "stg", "--out", "spikes.csv", "--duration", "nan"], r"argument --duration: expected a finite duration"),
    ("simulate-dt-zero", ["simulate", "pop.csv", "--model", "stg", "--out", "spikes.csv", "--dt", "0"], r"argument --dt: expected a positive time step"),
    ("simulate-transient-too-long", ["simulate", "pop.csv", "--model", "stg", "--out", "spikes.csv", "--transient", "1e9"], r"--transient: must be shorter than duration"),
    ("campaign-num-zero", ["simulate", "--model", "stg", "--prior", "dic", "--num", "0", "--store", "out"], r"argument --num: expected an integer >= 1"),
    ("campaign-chunk-zero", ["simulate", "--model", "stg", "--prior", "dic", "--num", "10", "--chunk-size", "0", "--store", "out"], r"argument --chunk-size: expected an integer >= 1"),
    ("campaign-threads-zero", ["simulate", "--model", "stg", "--prior", "dic", "--num", "10", "--threads", "0", "--store", "out"], r"argument --threads: expected an integer >= 1"),
    ("train-no-simulations", ["train", "--model", "stg", "--out", "out", "--work", "out", "--num-simulations", "0"], r"argument --num-simulations: expected an integer >= 1"),
    ("train-no-hidden-features", ["train", "--model", "stg", "--out", "out", "--work", "out", "--hidden-features", "0"], r"argument --hidden-features: expected an integer >= 1"),
    ("compare-budget-zero", ["compare", "--model", "stg", "--budgets", "0", "--out", "out"], r"--budgets: expected an int >= 2, got 0"),
    ("compare-no-observations", ["compare", "--model", "stg", "--observations", "0", "--out", "out"], r"argument --observations: expected an integer >= 1"),
    ("population-gu-inf", ["population", "--model", "stg", "--g-s", "1", "--g-u", "inf", "-n", "3", "--out", "p.csv"], r"argument --g-u: expected a finite DIC"),
    ("population-unreachable", ["population", "--model", "stg", "--g-s", "1e300", "--g-u", "5", "-n", "3", "--out", "p.csv"], r"--g-s, --g-u: 1 target\(s\) of model 'stg' cannot be reached"),
    ("demo-n-zero", ["demo", "--out", "out", "-n", "0"], r"argument -n: "),
    ("demo-seed", ["demo", "--out", "out", "--seed", "-1"], r"argument --seed: "),
]


@pytest.mark.parametrize("argv, message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_with_one_line_and_leaves_everything_as_it_was(user, capsys, argv, message):
    rc = main(argv)
    cap = capsys.readouterr()
    assert rc != 0
    assert "Traceback" not in cap.err + cap.out
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    assert lines[0].startswith(f"dic-sbi {argv[0]}: error: ")
    import re

    assert re.search(message, lines[0]), lines[0]
    for name in ("out", "p.csv", "spikes.csv"):
        assert not (user / name).exists()
    assert not [p for p in os.listdir(user) if "staging" in p]


def test_the_suite_is_large_and_distinct():
    assert len(CLI_CASES) + len(API_CASES) >= 60
    assert len({c[0] for c in CLI_CASES}) == len(CLI_CASES)
    assert len({tuple(c[1]) for c in CLI_CASES}) == len(CLI_CASES)


def _infer(path, **kw):
    from dic_sbi import infer

    return infer(path, kw.pop("model", "stg"), kw.pop("n", 3), **kw)


def _read(path, **kw):
    from dic_sbi.io import read_recording

    return read_recording(path, **kw)


def _detect(**kw):
    from dic_sbi.spiketrains import detect_spikes

    return detect_spikes(spiking_trace(duration=500.0), sampling_period=DT, **kw)


def _times(times):
    from dic_sbi.spiketrains import spike_times_ms

    return spike_times_ms(times)


# (id, call(folder), exception class, regex). Python names appear as Python parameters, not CLI flags.
API_CASES = [
    ("api-n-zero", lambda d: _infer(d / "cell.txt", n=0), InvalidInputError, r"^n: expected a positive number of cells"),
    ("api-n-bool", lambda d: _infer(d / "cell.txt", n=True), InvalidInputError, r"^n: expected a positive number"),
    ("api-n-float", lambda d: _infer(d / "cell.txt", n=2.5), InvalidInputError, r"^n: expected a positive number"),
    ("api-n-absurd", lambda d: _infer(d / "cell.txt", n=10**8), InvalidInputError, r"^n: 100000000 cells per train is more than the limit of 1e\+07 .*GB of memory"),
    ("api-seed-negative", lambda d: _infer(d / "cell.txt", seed=-1), InvalidInputError, r"^seed: expected an int in \[0, 2\*\*63 - 1\]"),
    ("api-seed-huge", lambda d: _infer(d / "cell.txt", seed=2**64), InvalidInputError, r"^seed: expected an int in"),
    ("api-seed-string", lambda d: _infer(d / "cell.txt", seed="0"), InvalidInputError, r"^seed: "),
    ("api-noise-nan", lambda d: _infer(d / "cell.txt", noise_std=math.nan), InvalidInputError, r"^noise_std: expected a finite"),
    ("api-model-unknown", lambda d: _infer(d / "cell.txt", model="squid"), DicSbiError, r"squid"),
    ("api-posterior-type", lambda d: _infer(d / "cell.txt", posterior=42), InvalidInputError, r"^posterior: expected a DICPosterior"),
    ("api-trains-missing", lambda d: _infer(d / "cell.txt", trains=[3]), InvalidInputError, r"^trains: expected indices in \[0, 1\)"),
    ("api-read-options-unknown", lambda d: _infer(d / "cell.txt", read_options={"treshold": 0}), InvalidInputError, r"^read_options: unknown option\(s\) \['treshold'\]"),
    ("api-read-options-type", lambda d: _infer(d / "cell.txt", read_options=["threshold"]), InvalidInputError, r"^read_options: expected a dict"),
    ("api-threshold-word", lambda d: _infer(d / "good.nix", read_options={"threshold": "high"}), RecordingError, r"threshold must be a voltage \(mV\) or 'auto'"),
    ("api-rearm-above", lambda d: _read(d / "good.nix", threshold=0.0, rearm=5.0), RecordingError, r"rearm \(5\.0 mV\) must not be above threshold"),
    ("api-min-spikes-negative", lambda d: _read(d / "cell.txt", min_spikes=-1), RecordingError, r"min_spikes must be an int >= 0"),
    ("api-min-spikes-bool", lambda d: _read(d / "cell.txt", min_spikes=True), RecordingError, r"min_spikes must be an int >= 0"),
    ("api-path-none", lambda d: _read(None), RecordingError, r"^recording: expected a path"),
    ("api-path-folder", lambda d: _read(d / "emptydir"), RecordingError, r"is a folder, not a recording file"),
    ("api-path-device", lambda d: _read("/dev/null"), RecordingError, r"not a regular file"),
    ("api-window-nan", lambda d: _read(d / "good.nix", t_stop=math.nan), RecordingError, r"t_stop must be finite"),
    ("api-window-reversed", lambda d: _read(d / "good.nix", t_start=100.0, t_stop=50.0), RecordingError, r"t_stop \(50\.0 ms\) must be greater than t_start"),
    ("api-spikes-from", lambda d: _read(d / "good.nix", spikes_from="both"), RecordingError, r"spikes_from must be one of"),
    ("api-detect-auto-rearm", lambda d: _detect(threshold="auto", rearm=0.0), InvalidInputError, r"rearm is derived from the trace"),
    ("api-detect-threshold-word", lambda d: _detect(threshold="auto-ish"), InvalidInputError, r"threshold must be a voltage"),
    ("api-times-nan", lambda d: _times([1.0, math.nan]), InvalidInputError, r"spike time 1 is NaN"),
    ("api-times-inf", lambda d: _times([1.0, math.inf]), InvalidInputError, r"spike time 1 is infinite"),
    ("api-times-duplicate", lambda d: _times([1.0, 2.0, 2.0]), InvalidInputError, r"duplicate spike time 2\.0 ms \(elements 1 and 2\)"),
    ("api-times-unsorted", lambda d: _times([3.0, 1.0]), InvalidInputError, r"not sorted"),
    ("api-population-seed-huge", lambda d: _population(seed=2**70), InvalidInputError, r"^seed: expected None, an int from 0 to 2\*\*63 - 1"),
    ("api-population-absurd-n", lambda d: _population(n=10**13), InvalidInputError, r"^n: 10000000000000 cells for each of 1 target\(s\) need 6.4e\+05 GB .* more than this machine's"),
    ("api-simulate-seed-huge", lambda d: _simulate(seed=2**64), InvalidInputError, r"^seed: expected None, an int from 0 to 2\*\*63 - 1"),
    ("api-prior-seed-huge", lambda d: _prior_sample(seed=2**64), InvalidInputError, r"^seed: expected None, an int from 0 to 2\*\*63 - 1"),
]


def _population(n=3, seed=0):
    from dic_sbi import degenerate_population

    return degenerate_population("stg", 1.0, 5.0, n, seed=seed)


def _simulate(seed):
    from dic_sbi import simulate
    from dic_sbi.data import example_cells

    return simulate("stg", example_cells()["stg"], noise_std=1.0, seed=seed, duration=50.0, transient=0.0)


def _prior_sample(seed):
    from dic_sbi.sbi import DICPrior

    return DICPrior("stg").sample((2,), seed=seed)


@pytest.mark.parametrize("call, error, message", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_python_api_raises_a_dic_sbi_error_naming_the_problem(user, call, error, message):
    with pytest.raises(error, match=message) as info:
        call(user)
    assert isinstance(info.value, DicSbiError)


def test_cli_and_api_name_the_same_problem_in_their_own_words(user, capsys):
    """The API speaks of ``n`` and ``min_spikes=``; the CLI of ``-n`` and ``--min-spikes``."""
    from dic_sbi.cli import _cli_words

    assert _cli_words("n: 5 cells") == "-n: 5 cells"
    assert _cli_words("give threshold='auto' or lower min_spikes") == "give --threshold auto or lower --min-spikes"
    assert _cli_words("unknown format (extension 'none')") == "unknown format (extension 'none')"  # a word, not a flag
    assert _cli_words("90 % of the g_u samples lie on the edge g_u = 20") == "90 % of the g_u samples lie on the edge g_u = 20"
    assert _cli_words("g_s: must be finite") == "--g-s: must be finite"
    assert main([*INFER, "two.txt"]) == 2
    err = capsys.readouterr().err
    assert "--min-spikes" in err and "min_spikes" not in err


def test_an_unforeseen_error_is_one_line_too(user, capsys, monkeypatch):
    """A bug (any exception that is not a DicSbiError) still gives one line and a non-zero status."""
    import dic_sbi.cli

    def broken(args):
        raise ValueError("something deep inside")

    monkeypatch.setattr(dic_sbi.cli, "cmd_evaluate", broken)
    monkeypatch.delenv("DIC_SBI_DEBUG", raising=False)
    assert main(["evaluate", "stg"]) == 70
    err = capsys.readouterr().err
    assert err == ("dic-sbi evaluate: error: unexpected ValueError: something deep inside (a bug in dic-sbi: please "
                   "report it with the command; DIC_SBI_DEBUG=1 shows the traceback)\n")
    monkeypatch.setenv("DIC_SBI_DEBUG", "1")
    with pytest.raises(ValueError, match="something deep inside"):
        main(["evaluate", "stg"])


def test_the_largest_seed_is_accepted_and_stored_in_nix(user, tmp_path):
    """2**63 - 1 is the limit because NIX metadata and torch hold an int64: it must work end to end."""
    import nixio

    from dic_sbi import infer
    from dic_sbi.inference import MAX_SEED

    result = infer(user / "cell.txt", "stg", 2, seed=MAX_SEED, preview=0, traces=0)
    result.write(tmp_path / "out", plots=False)
    f = nixio.File.open(str(tmp_path / "out" / "population.nix"), nixio.FileMode.ReadOnly)
    try:
        assert f.sections["dic_sbi inference"]["seed"] == MAX_SEED
    finally:
        f.close()
