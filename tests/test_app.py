"""The app without a browser: the API it needs (cancel, progress, read_voltage, its plots), the session's calls,
and the page's callbacks driven on Panel objects as a click would; bad input and a cancel become messages."""

from __future__ import annotations

import json
import sys
import threading
import time
import zipfile

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from dic_sbi import simulate  # noqa: E402
from dic_sbi.app.jobs import Job, describe_error  # noqa: E402
from dic_sbi.app.session import (AppSession, Protocol, ReadOptions, RunSettings, fidelity_table,  # noqa: E402
                                 parse_indices)  # fmt: skip
from dic_sbi.data import example_cells, example_recording  # noqa: E402
from dic_sbi.errors import CancelledError, DicSbiError, InvalidInputError, RecordingError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SHORT = dict(duration=400.0, transient=100.0)


# -- the API the app calls --------------------------------------------------------------------------------------


def test_simulate_reports_progress_per_chunk_and_gives_the_same_cells():
    g = np.repeat(example_cells()["stg"][None], 10, axis=0) * np.linspace(0.8, 1.2, 10)[:, None]
    seen = []
    monitored = simulate("stg", g, chunk_size=4, on_progress=lambda done, total: seen.append((done, total)),
                         noise_std=1.0, seed=3, **SHORT)  # fmt: skip
    plain = simulate("stg", g, noise_std=1.0, seed=3, **SHORT)
    assert seen == [(4, 10), (8, 10), (10, 10)]
    np.testing.assert_array_equal(monitored.times, plain.times)


def test_simulate_stops_when_cancelled_between_chunks():
    g = np.repeat(example_cells()["stg"][None], 8, axis=0)
    cancel = threading.Event()

    def progress(done, total):
        if done >= 4:
            cancel.set()  # as the app's Cancel button does from another thread

    with pytest.raises(CancelledError, match="after 4 of 8 cells"):
        simulate("stg", g, chunk_size=2, cancel=cancel, on_progress=progress, **SHORT)


def test_infer_reports_its_stages_and_stops_on_cancel():
    from dic_sbi.inference import infer

    stages = []
    result = infer(example_recording("stg"), "stg", 12, seed=1, validate=True, traces=0,
                   on_progress=lambda *a: stages.append(a))  # fmt: skip
    assert stages[0] == ("sample", 0, 1) and ("sample", 1, 1) in stages and stages[-1] == ("simulate", 12, 12)
    assert result.trains[0].fidelity["simulated_cells"] == 12
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        infer(example_recording("stg"), "stg", 12, seed=1, validate=True, cancel=cancel)


def test_read_voltage_gives_the_trace_spikes_were_detected_in(tmp_path):
    from dic_sbi.io import read_recording, read_voltage
    from dic_sbi.spiketrains import detect_spikes

    rec = read_recording(example_recording("stg"))
    v = read_voltage(example_recording("stg"), segment=rec.origins[0].segment, channel=rec.origins[0].channel)
    assert str(v.units.dimensionality) == "mV"
    np.testing.assert_allclose(detect_spikes(v).magnitude, rec[0].magnitude)
    csv = tmp_path / "spikes.txt"
    csv.write_text("1\n2\n3\n")
    with pytest.raises(RecordingError, match="spike times, no membrane potential"):
        read_voltage(csv)
    with pytest.raises(RecordingError, match="does not exist"):
        read_voltage(example_recording("stg"), channel=5)


def test_app_plots_draw_and_check_their_options():
    import matplotlib.pyplot as plt

    from dic_sbi.inference import infer
    from dic_sbi.plots import plot_cells, plot_conductance_distributions, plot_recording_raster

    result = infer(example_recording("stg"), "stg", 30, seed=0, preview=3, traces=0)
    t = result.trains[0]
    for kind in ("box", "violin"):
        fig = plot_conductance_distributions(result, t, kind=kind)
        assert len(fig.axes[0].get_xticklabels()) == result.model.n_conductances
        plt.close(fig)
    with pytest.raises(InvalidInputError, match="kind"):
        plot_conductance_distributions(result, t, kind="pie")
    sim = simulate("stg", t.conductances[:2], record_voltage=True, sampling_interval=0.5, **SHORT)
    fig = plot_cells(sim, [0, 1])
    assert len(fig.axes) == 4 and len(fig.axes[0].lines) == 1  # a trace and a bar chart per cell
    plt.close(fig)
    fig = plot_recording_raster(result.recording)
    plt.close(fig)


# -- the session -------------------------------------------------------------------------------------------------


@pytest.fixture
def session(tmp_path):
    s = AppSession(workdir=tmp_path / "session")
    s.workdir.mkdir()
    yield s
    s.close()
    assert not s.workdir.exists()


def test_indices_and_options_are_checked_with_messages():
    assert parse_indices("0, 2-4", "sweeps") == [0, 2, 3, 4] and parse_indices(" ", "sweeps") is None
    with pytest.raises(InvalidInputError, match="sweeps: expected indices"):
        parse_indices("a", "sweeps")
    with pytest.raises(InvalidInputError, match="runs backwards"):
        parse_indices("4-2", "sweeps")
    assert ReadOptions(threshold="auto", sweeps="1", channels="0,Vm").as_kwargs() == {
        "threshold": "auto", "sweeps": [1], "channels": [0, "Vm"], "min_spikes": 3}  # fmt: skip
    with pytest.raises(InvalidInputError, match="re-arm"):
        ReadOptions(threshold="auto", rearm="0").as_kwargs()
    with pytest.raises(InvalidInputError, match="threshold: expected a number"):
        ReadOptions(threshold="ten").as_kwargs()
    with pytest.raises(InvalidInputError, match="pick at least one"):
        RunSettings(trains=[]).infer_kwargs()


def test_session_reads_a_recording_into_a_table_and_a_preview(session):
    session.use_example("stg")
    rec = session.read(ReadOptions())
    (row,) = session.trains_table()
    assert row["spikes"] == len(rec[0]) == 48 and row["firing class"] == "spiking" and row["source"] == "detected in Vm"
    signal, spikes, levels = session.preview(0)
    assert signal.shape[0] > 1000 and len(spikes) == 48 and levels == {"threshold": 10.0, "rearm": 0.0}
    # a threshold above every spike: no recording, but the trace is still there to show why
    with pytest.raises(RecordingError, match="no spikes"):
        session.read(ReadOptions(threshold="80"))
    assert session.recording is None
    signal, spikes, levels = session.preview()
    assert signal.shape[0] > 1000 and len(spikes) == 0 and levels["threshold"] == 80.0


def test_session_reads_uploads_and_refuses_corrupt_ones(session):
    data = open(example_recording("stg"), "rb").read()
    path = session.use_upload("../../cell one.nix", data)
    assert path.parent == session.workdir / "uploads" and path.name == "cell_one.nix"
    assert len(session.read()[0]) == 48
    session.use_upload("broken.nix", data[: len(data) // 3])
    with pytest.raises(RecordingError, match="corrupt"):
        session.read()
    with pytest.raises(RecordingError, match="empty"):
        session.use_upload("empty.csv", b"")
    session.use_upload("cells.csv", b'ID,spike_times_ms\n0,"[10, 110, 210, 310, 410]"\n1,"[5, 55, 105, 155]"\n')
    session.read()
    assert [r["spikes"] for r in session.trains_table()] == [5, 4]
    signal, spikes, _ = session.preview(1)
    assert signal is None and len(spikes) == 4


def test_session_runs_resimulates_and_writes_a_complete_archive(session):
    session.use_example("stg")
    session.read()
    job = session.start_run(RunSettings(n=20, seed=0, noise_std=1.0))
    with pytest.raises(InvalidInputError, match="in progress"):
        session.start_run(RunSettings(n=20))
    assert job.join(120) and job.status().state == "done", job.status()
    result = session.collect()
    assert result.trains[0].conductances.shape == (20, result.model.n_conductances)
    rows = fidelity_table(result.trains[0])
    assert [r["feature"] for r in rows][:2] == ["spiking_frequency", "burst_period"] and rows[0]["observed"]
    cells, sim = session.resimulate(0, Protocol(cells="1-2", duration=500, transient=100, i_app=1.0, noise_std=0.5))
    assert cells == [1, 2] and sim.voltage.shape[0] == 2 and np.all(sim.i_app == 1.0)
    with pytest.raises(InvalidInputError, match="not in the population"):
        session.resimulate(0, Protocol(cells="25"))
    archive = session.start_archive()
    assert archive.join(120) and session.collect_archive() is not None, archive.status()
    with zipfile.ZipFile(session.archive) as zf:
        names = set(zf.namelist())
    assert {"dic_sbi_population/population.csv", "dic_sbi_population/population.nix",
            "dic_sbi_population/report.json", "dic_sbi_population/raster_0.png"} <= names  # fmt: skip
    # the cells simulated again are in it: their spike trains and traces as Neo objects, and what made them
    assert {"dic_sbi_population/resimulated_1/simulation.nix", "dic_sbi_population/resimulated_1/simulation.json"} <= names
    with zipfile.ZipFile(session.archive) as zf:
        zf.extractall(session.folder / "unzipped")
        doc = json.loads(zf.read("dic_sbi_population/resimulated_1/simulation.json"))
    assert doc["cells"] == [1, 2] and doc["protocol"]["i_app"] == 1.0
    g = result.trains[0].conductances[[1, 2]]
    assert doc["conductances_mS_per_cm2"][result.model.conductance_names[0]] == g[:, 0].tolist()
    import neo

    io = neo.NixIO(str(session.folder / "unzipped/dic_sbi_population/resimulated_1/simulation.nix"), mode="ro")
    try:
        seg = io.read_block().segments[0]
        assert len(seg.spiketrains) == 2 and len(seg.analogsignals) == 2
        np.testing.assert_allclose(seg.spiketrains[0].rescale("ms").magnitude, sim.spike_times(0))
    finally:
        io.close()


def test_a_failed_archive_leaves_no_file_behind(session, monkeypatch):
    session.use_example("stg")
    session.read()
    session.start_run(RunSettings(n=5, validate=False)).join(120)
    result = session.collect()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(result, "write", fail)
    job = session.start_archive()
    job.join(60)
    assert job.status().state == "failed" and "No space left" in job.status().message
    assert session.collect_archive() is None
    assert not list((session.workdir).rglob("*.zip")) and not list(session.workdir.glob("archive_*"))


def test_cancel_stops_the_run_and_leaves_no_thread_or_process(session):
    import multiprocessing

    session.use_example("stg")
    session.read()
    job = session.start_run(RunSettings(n=3000, seed=0))  # long enough to be cancelled in the simulations
    t0 = time.perf_counter()
    while job.status().stage != "simulate" and time.perf_counter() - t0 < 60:
        time.sleep(0.05)
    session.cancel()
    assert job.join(20), "the run did not stop within 20 s of the cancel"
    st = job.status()
    assert st.state == "cancelled" and st.message.startswith("Cancelled")
    assert session.collect() is None
    assert not [t for t in threading.enumerate() if t.name == "dic-sbi-app-job"]
    assert multiprocessing.active_children() == []


def test_errors_become_one_line_messages():
    assert describe_error(RecordingError("x.nix: corrupt")) == "x.nix: corrupt"
    assert describe_error(CancelledError("stop")).startswith("Cancelled")
    assert "bug in dic-sbi" in describe_error(KeyError("k")) and "Traceback" not in describe_error(KeyError("k"))
    job = Job(lambda cancel, progress: 1 / 0)
    job.join(10)
    assert job.status().state == "failed" and "ZeroDivisionError" in job.status().message


# -- the page's callbacks ----------------------------------------------------------------------------------------


@pytest.fixture
def view(tmp_path, monkeypatch):
    from dic_sbi.app.layout import AppView

    s = AppSession(workdir=tmp_path / "view")
    s.workdir.mkdir()
    v = AppView(s)
    monkeypatch.setattr(v, "_start_polling", lambda: None)  # no server: the test polls, as the page's timer would
    yield v
    s.close()


def _poll_until_idle(view, timeout=120):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        view.poll()
        if not view.busy:
            view.poll()  # as the page's timer does: the poll after the last change shows it
            return
        time.sleep(0.05)
    raise TimeoutError("the run did not end")


def test_page_reads_the_example_and_updates_the_spike_count(view):
    view.use_example.clicks += 1
    assert "48 spikes" in view.spike_count.object and not view.message.visible
    assert list(view.trains.object["spikes"]) == [48] and view.run_trains.value == [0]
    assert view.model.value == "stg" and view.noise.value == 1.0 and len(view.preview) == 1
    view.threshold.value = "80"  # no spike crosses it: a message, and the trace to see why
    assert view.message.visible and "no spikes" in view.message.object and view.trains.object is None
    assert len(view.preview) == 1
    view.threshold.value = "10"
    assert "48 spikes" in view.spike_count.object and not view.message.visible


def test_page_shows_a_corrupt_upload_as_a_message(view):
    view.upload.param.update(filename="cell.nix", value=b"\x89HDF\r\n garbage")
    assert view.message.visible and "corrupt" in view.message.object and "Traceback" not in view.message.object
    view.path.value = "/no/such/file.abf"
    view.read_path.clicks += 1
    assert "no such file" in view.message.object


def test_page_runs_shows_results_and_offers_the_archive(view):
    view.use_example.clicks += 1
    view.n.value = 20
    view.run_button.clicks += 1
    assert view.run_button.disabled and not view.cancel_button.disabled
    _poll_until_idle(view)
    assert "Population ready" in view.status.object and not view.message.visible
    tabs = view.results[0]
    assert tabs._names[:3] == ["Raster", "Traces", "DIC posterior"] and "Fidelity" in tabs._names
    assert not view.download.disabled and view.download.file.endswith("dic_sbi_population.zip")
    assert all(type(c[0]).__name__ == "PNG" for c in view.figures.values()) and len(view.distributions) == 1
    view.kind.value = "violin"
    assert len(view.distributions) == 1
    view.sim_cells.value, view.sim_duration.value, view.sim_transient.value = "0", 600.0, 100.0
    view.sim_button.clicks += 1
    assert len(view.sim_view) == 1 and not view.message.visible
    assert view.download.disabled and "simulated again" in view.download_status.object  # the archive is remade
    _poll_until_idle(view)
    assert not view.download.disabled and "cells simulated again" in view.download_status.object
    with zipfile.ZipFile(view.download.file) as zf:
        assert "dic_sbi_population/resimulated_1/simulation.nix" in zf.namelist()
    view.sim_cells.value = "99"
    view.sim_button.clicks += 1
    assert view.message.visible and "not in the population" in view.message.object


def test_page_cancel_shows_a_message_and_no_download(view):
    view.use_example.clicks += 1
    view.n.value = 3000
    view.run_button.clicks += 1
    t0 = time.perf_counter()
    while view.session.run.status().stage != "simulate" and time.perf_counter() - t0 < 60:
        time.sleep(0.05)
    view.cancel_button.clicks += 1
    _poll_until_idle(view)
    assert view.message.visible and view.message.alert_type == "warning" and "Cancelled" in view.message.object
    assert view.download.disabled and view.download.file is None and view.session.archive is None


def test_the_command_line_serves_the_app_or_names_the_extra_to_install(monkeypatch, capsys):
    import sys

    from dic_sbi.cli import build_parser, main

    args = build_parser().parse_args(["app", "--port", "5077", "--no-browser"])
    assert (args.port, args.no_browser, args.address) == (5077, True, "127.0.0.1")
    monkeypatch.setitem(sys.modules, "panel", None)  # as if Panel were not installed
    assert main(["app", "--no-browser"]) == 2
    assert 'pip install "dic-sbi[app]"' in capsys.readouterr().err
    with pytest.raises(DicSbiError, match="dic-sbi\\[app\\]"):
        from dic_sbi.app import create_app

        create_app()


def test_page_shows_the_out_of_distribution_warning_infer_gives(view):
    pacemaker = "\n".join(str(t) for t in np.arange(500.0, 6000.0, 1000.0)) + "\n"  # 1 Hz: slower than any training cell
    view.upload.param.update(filename="pacemaker.txt", value=pacemaker.encode())
    assert "6 spikes" in view.spike_count.object and not view.message.visible
    view.n.value, view.validate.value = 10, False
    view.run_button.clicks += 1
    _poll_until_idle(view)
    assert view.warning.visible and "Out of distribution" in view.warning.object
    assert "log10_rate_hz" in view.warning.object
    assert view.preview[0].css_classes == ["dic-preview-figure"]  # spike-time file: the raster of its trains


# -- the warm-up: kernels compiled in other processes while the user picks a recording ---------------------------


def test_warm_up_module_compiles_the_kernels_a_run_uses_and_is_not_started_again(monkeypatch):
    from dic_sbi.app import jobs
    from dic_sbi.core import warmup

    assert warmup.main(["--model", "stg"]) == 0  # the STG simulator kernel and the feature kernels
    assert warmup.main([]) == 0  # the compensation kernel
    assert warmup.is_compiled("stg") and warmup.is_compiled(warmup.COMPENSATION)
    assert not warmup.is_compiled("no-such-model")
    started = []
    monkeypatch.setattr(jobs.WarmUp, "command", staticmethod(lambda models: started.append(models) or ["true"]))
    monkeypatch.setattr(jobs.WarmUp, "_work", lambda self: None)
    jobs.WarmUp(["stg"], first="stg").stop()
    assert started == []  # compiled already: no process


def test_warm_up_processes_are_waited_for_and_never_left_behind(monkeypatch):
    from dic_sbi.app import jobs

    started = []

    def command(models):
        started.append(models)
        # the first model's process is slow, the rest quick: wait() must follow the right process
        return [sys.executable, "-c", f"import time; time.sleep({60 if models == ('stg',) else 0.2})"]

    monkeypatch.setattr(jobs.WarmUp, "command", staticmethod(command))
    monkeypatch.setattr(jobs.WarmUp, "_work", lambda self: None)  # no posterior loading here
    monkeypatch.setattr("dic_sbi.core.warmup.is_compiled", lambda part: False)  # as on a fresh install
    warm = jobs.WarmUp(["da", "stg"], first="stg")
    assert started == [(), ("stg",)]  # shared kernels and the page's default model first
    t0 = time.perf_counter()
    warm.wait(None)  # only the shared process: quick
    assert time.perf_counter() - t0 < 20
    warm.wait("stg", timeout=0.5)  # the slow one: gives up after the timeout (the run then compiles itself)
    procs = list(warm._procs.values())
    assert any(p.poll() is None for p in procs)
    warm.stop()
    assert all(p.poll() is not None for p in procs)  # nothing left running
    warm._spawn("model", "da")  # after stop: nothing more is started
    assert started == [(), ("stg",)]


def test_a_missing_interpreter_only_skips_the_warm_up(monkeypatch):
    from dic_sbi.app import jobs

    monkeypatch.setattr(jobs.WarmUp, "command", staticmethod(lambda models: ["/nonexistent/python"]))
    monkeypatch.setattr(jobs.WarmUp, "_work", lambda self: None)
    monkeypatch.setattr("dic_sbi.core.warmup.is_compiled", lambda part: False)
    warm = jobs.WarmUp(["stg"], first="stg")
    warm.wait("stg")  # returns at once: nothing to wait for
    warm.stop()
