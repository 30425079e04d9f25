"""What one browser session of the app holds and does, without any widget: the page (:mod:`dic_sbi.app.layout`)
only reads its values into these calls and shows what they return, so every step is testable without a browser.

Every computation is a call to the package's API: :func:`~dic_sbi.io.read_recording` and
:func:`~dic_sbi.io.read_voltage` for the preview, :func:`~dic_sbi.inference.infer` for the run,
:func:`~dic_sbi.simulate` to simulate chosen cells again, :meth:`InferenceResult.write` (atomic) for the
download. Errors are the package's :class:`~dic_sbi.errors.DicSbiError` messages.
"""

from __future__ import annotations

import math
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CancelledError, InvalidInputError, RecordingError
from .jobs import Job, wait_for_warm_up

__all__ = ["AppSession", "ReadOptions", "RunSettings", "Protocol", "parse_indices", "fidelity_table",
           "MATCHING"]  # fmt: skip

#: The model the page starts with.
DEFAULT_MODEL = "stg"
#: The matching choices of the page and the ``infer`` arguments they stand for.
MATCHING = {"none": {}, "class": {"match_class": True}, "recording": {"match": True}}
#: Share of the progress bar of each stage of a run (sampling is fast; simulating is nearly all of it).
_RUN_WEIGHTS = {"sample": 0.05, "simulate": 0.95}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def parse_indices(text: str | None, what: str) -> list[int] | None:
    """``"0, 2-4"`` → ``[0, 2, 3, 4]``; empty → ``None`` (all). ``what`` names the field in the error."""
    if text is None or not str(text).strip():
        return None
    out: list[int] = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        lo, sep, hi = part.partition("-")
        if not lo.strip().isdigit() or (sep and not hi.strip().isdigit()):
            raise InvalidInputError(f"{what}: expected indices such as 0, 2-4, got {part!r}")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise InvalidInputError(f"{what}: the range {part!r} runs backwards")
        out.extend(range(a, b + 1))
    return out


def _optional_float(text: Any, what: str) -> float | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise InvalidInputError(f"{what}: expected a finite number, got {text!r}")
    return value


@dataclass
class ReadOptions:
    """The page's reading options, as text where the user types them (checked here, then by ``read_recording``)."""

    threshold: str = "10"
    rearm: str = ""
    sweeps: str = ""
    channels: str = ""
    format: str = "auto"
    units: str = ""
    t_start: str = ""
    t_stop: str = ""
    min_spikes: int = 3

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`~dic_sbi.io.read_recording`."""
        threshold: Any = "auto" if self.threshold.strip().lower() == "auto" else _optional_float(self.threshold, "threshold")
        rearm = _optional_float(self.rearm, "re-arm")
        if rearm is not None and threshold == "auto":
            raise InvalidInputError("re-arm: derived from the trace with threshold auto; give a threshold in mV with it")
        channels = [int(c) if c.isdigit() else c for c in (c.strip() for c in self.channels.split(",")) if c]
        opts = {"threshold": threshold, "rearm": rearm, "sweeps": parse_indices(self.sweeps, "sweeps"),
                "channels": channels or None, "format": None if self.format == "auto" else self.format,
                "units": self.units.strip() or None, "t_start": _optional_float(self.t_start, "t start"),
                "t_stop": _optional_float(self.t_stop, "t stop"), "min_spikes": int(self.min_spikes)}  # fmt: skip
        return {k: v for k, v in opts.items() if v is not None}


@dataclass
class RunSettings:
    """What ``infer`` is asked for: model, cells per train, seed, known noise σ, validation, matching, trains."""

    model: str = DEFAULT_MODEL
    n: int = 1000
    seed: int | None = 0
    noise_std: float = 0.0
    validate: bool = True
    matching: str = "none"
    trains: list[int] | None = None
    n_threads: int | None = None

    def infer_kwargs(self) -> dict[str, Any]:
        if self.matching not in MATCHING:
            raise InvalidInputError(f"matching: expected one of {sorted(MATCHING)}, got {self.matching!r}")
        if self.trains is not None and not self.trains:
            raise InvalidInputError("trains: pick at least one spike train in the table")
        return dict(n=self.n, seed=self.seed, noise_std=self.noise_std, validate=self.validate, trains=self.trains,
                    n_threads=self.n_threads, **MATCHING[self.matching])  # fmt: skip


@dataclass
class Protocol:
    """Simulating chosen cells again: which cells and the protocol (ms, µA/cm²); ``voltage`` or spike times."""

    cells: str = "0-2"
    duration: float = 6000.0
    transient: float = 3000.0
    dt: float = 0.1
    i_app: float = 0.0
    noise_std: float = 0.0
    seed: int = 0
    voltage: bool = True


def fidelity_table(train: Any) -> list[dict[str, Any]]:
    """The fidelity report of one train as table rows: feature, observed, simulated median and 5-95 % range,
    cells within the report's tolerance (from ``infer``'s report; nothing recomputed)."""
    f = train.fidelity
    if not f:
        return []
    rows = []
    for name, e in f["features"].items():
        rows.append({"feature": name, "observed": _fmt(e.get("observed")), "simulated median": _fmt(e.get("median")),
                     "simulated 5-95 %": (f"{_fmt(e['q05'])} – {_fmt(e['q95'])}" if "q05" in e else ""),
                     f"within ±{100 * f['rtol']:.0f} %": (f"{100 * e['fraction_within_rtol']:.1f} %"
                                                         if "fraction_within_rtol" in e else ""),
                     "cells defined": e["n_defined"]})  # fmt: skip
    return rows


def fidelity_summary(train: Any) -> list[str]:
    """The headline numbers of a train's fidelity report, in words."""
    f = train.fidelity
    if not f:
        return []
    lines = [f"{f['simulated_cells']} cells simulated ({'all' if f['all_cells'] else 'a preview'}); "
             f"firing classes: {', '.join(f'{k} {v}' for k, v in f['firing_class_counts'].items())}"]  # fmt: skip
    if "fraction_matching_class" in f:
        lines.append(f"{100 * f['fraction_matching_class']:.1f} % fire in the observed class ({train.observed_class})")
    if "fraction_faithful" in f:
        lines.append(f"{100 * f['fraction_faithful']:.1f} % fire like the recording (class, rate, bursts)")
    cm = f.get("class_matching")
    if cm:
        lines.append(f"kept from {cm['drawn']} drawn cells ({cm['simulations']} simulations); "
                     f"{100 * cm['unfiltered_fraction_matching']:.1f} % before filtering")  # fmt: skip
    return lines


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else ""
    return str(v)


@dataclass
class AppSession:
    """The state of one session: the recording, its reading options, the run, its result and the download.

    ``workdir`` holds uploads and the archive (default: a temporary folder made when first needed);
    :meth:`close` removes it.
    """

    workdir: Path | None = None
    source: Path | None = None
    options: ReadOptions = field(default_factory=ReadOptions)
    recording: Any = None
    result: Any = None
    run: Job | None = None
    archive: Path | None = None
    archive_job: Job | None = None
    #: Cells simulated again (:meth:`resimulate`) since the run: ``(train, cells, protocol, simulation)``; they go
    #: into the download too.
    resimulations: list[tuple[int, list[int], Protocol, Any]] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        """:attr:`workdir`, made now if it does not exist yet."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="dic_sbi_app_"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir

    # -- the recording ---------------------------------------------------------------------------------------
    def use_path(self, text: str) -> Path:
        """A recording named by its path on this machine (``~`` expanded)."""
        if not str(text).strip():
            raise RecordingError("path: type the path of a recording file, or upload one")
        self.source = Path(str(text).strip()).expanduser()
        return self.source

    def use_upload(self, filename: str, data: bytes) -> Path:
        """A recording uploaded in the page: saved under its own name (its extension says its format)."""
        if not data:
            raise RecordingError(f"{filename}: the uploaded file is empty (0 bytes)")
        name = _SAFE_NAME.sub("_", Path(filename or "recording").name).lstrip(".") or "recording"
        folder = self.folder / "uploads"
        if folder.exists():
            shutil.rmtree(folder)  # one upload at a time; an earlier one is no longer the recording
        folder.mkdir(parents=True)
        self.source = folder / name
        self.source.write_bytes(data)
        return self.source

    def use_example(self, model: str) -> Path:
        """The example recording shipped for ``model`` (``stg`` or ``da``)."""
        from ..data import example_recording

        self.source = Path(example_recording(model))
        return self.source

    def read(self, options: ReadOptions | None = None) -> Any:
        """Read :attr:`source` with ``options`` (:func:`~dic_sbi.io.read_recording`); a new recording drops the
        previous result."""
        from ..io import read_recording

        if self.source is None:
            raise RecordingError("no recording yet: upload a file, type a path or pick an example")
        self.options = options or self.options
        self.recording = None
        self.recording = read_recording(self.source, **self.options.as_kwargs())
        self.result, self.archive = None, None
        return self.recording

    def trains_table(self) -> list[dict[str, Any]]:
        """One row per spike train of the recording: where it came from, its spikes, rate and firing class."""
        from ..spiketrains import spike_train_features

        rows = []
        for i, (st, o) in enumerate(zip(self.recording, self.recording.origins)):
            span = float((st.t_stop - st.t_start).rescale("ms").magnitude)
            rows.append({"train": i, "name": o.name, "sweep": o.segment, "channel": o.channel, "spikes": len(st),
                         "window (ms)": round(span, 1), "rate (Hz)": round(1000 * len(st) / span, 2) if span else 0.0,
                         "firing class": str(spike_train_features(st).firing_class),
                         "source": "detected in Vm" if o.detected else "recorded spike times"})  # fmt: skip
        return rows

    def preview(self, index: int = 0) -> tuple[Any, Any, dict[str, float | None]]:
        """``(voltage, spike times, levels)`` of train ``index`` for the preview plot: the trace the spikes were
        detected in (None for spike-time files), its spikes, and the detection levels. Without a readable
        recording (e.g. no spike above threshold) the trace of the first selected sweep and channel, no spikes,
        so the user sees why."""
        from ..io import read_voltage

        kwargs = self.options.as_kwargs()
        fmt, units = kwargs.get("format"), kwargs.get("units")
        if self.recording is not None:
            st, o = self.recording[index], self.recording.origins[index]
            levels = {"threshold": st.annotations.get("threshold_mV"), "rearm": st.annotations.get("rearm_mV")}
            if not o.detected:
                return None, st, levels
            signal = read_voltage(self.source, segment=o.segment, channel=o.channel, format=self.recording.format,
                                  units=units)  # fmt: skip
            return signal, st, levels
        sweeps, channels = kwargs.get("sweeps") or [0], kwargs.get("channels") or [0]
        signal = read_voltage(self.source, segment=sweeps[0], channel=channels[0], format=fmt, units=units)
        threshold = kwargs.get("threshold")
        return signal, np.empty(0), {"threshold": None if threshold == "auto" else threshold, "rearm": kwargs.get("rearm")}

    # -- the run ---------------------------------------------------------------------------------------------
    def start_run(self, settings: RunSettings) -> Job:
        """Start ``infer`` on the recording in a background thread (cancel with :meth:`cancel`)."""
        from ..inference import infer

        if self.recording is None:
            raise RecordingError("no recording read yet: load one first")
        if self.running:
            raise InvalidInputError("a run is in progress: wait for it or cancel it")
        kwargs = settings.infer_kwargs()
        recording, model = self.recording, settings.model
        self.result, self.archive, self.archive_job = None, None, None
        self.resimulations = []

        def work(cancel: Any, on_progress: Any) -> Any:
            import warnings

            on_progress("preparing the simulator", 0, 1)  # the first run on a machine: kernels still compiling
            wait_for_warm_up(model if isinstance(model, str) else None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # out-of-distribution: shown from the result
                return infer(recording, model, cancel=cancel, on_progress=on_progress, **kwargs)

        self.run = Job(work, weights=_RUN_WEIGHTS)
        return self.run

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.running

    def cancel(self) -> None:
        """Stop the run (and an archive being built) at their next check."""
        for job in (self.run, self.archive_job):
            if job is not None:
                job.cancel()

    def collect(self) -> Any:
        """The run's result once it is done (also kept in :attr:`result`), else None."""
        if self.run is not None and not self.run.running and self.run.error is None:
            self.result = self.run.result
        return self.result

    def warnings(self) -> list[str]:
        """The out-of-distribution warnings of the result, one line each (as `infer` reports them)."""
        if self.result is None:
            return []
        report = self.result.report()
        return list(report["warnings"])

    # -- simulate chosen cells again -------------------------------------------------------------------------
    def resimulate(self, train: int, protocol: Protocol) -> tuple[list[int], Any]:
        """Simulate cells of train ``train``'s population again with ``protocol`` (:func:`~dic_sbi.simulate`)."""
        from ..core.simulator import simulate

        if self.result is None:
            raise InvalidInputError("no population yet: run the inference first")
        t = self.result.trains[train]
        cells = parse_indices(protocol.cells, "cells") or [0]
        bad = [c for c in cells if c >= len(t.conductances)]
        if bad:
            raise InvalidInputError(f"cells: {bad} not in the population (cells 0 to {len(t.conductances) - 1})")
        if len(cells) > 20:
            raise InvalidInputError(f"cells: {len(cells)} cells; show at most 20 at a time")
        sim = simulate(self.result.model, t.conductances[cells], duration=protocol.duration,
                       transient=protocol.transient, dt=protocol.dt, i_app=protocol.i_app,
                       noise_std=protocol.noise_std, seed=protocol.seed, record_voltage=protocol.voltage,
                       sampling_interval=(_sampling(protocol.dt) if protocol.voltage else None), progress=False)  # fmt: skip
        self.resimulations.append((train, cells, protocol, sim))
        self.archive = None  # the download is made again with these cells in it
        return cells, sim

    # -- the download ----------------------------------------------------------------------------------------
    def start_archive(self) -> Job:
        """Write the result (:meth:`InferenceResult.write`: CSV, NIX, report, figures) and zip it, in a thread;
        :attr:`archive` is set only once the zip is complete."""
        from ..io.atomic import atomic_file

        if self.result is None:
            raise InvalidInputError("no population yet: run the inference first")
        result, workdir, resimulations = self.result, self.folder, list(self.resimulations)

        def work(cancel: Any, on_progress: Any) -> Path:
            target = workdir / "download" / "dic_sbi_population.zip"
            staging = Path(tempfile.mkdtemp(prefix="archive_", dir=workdir))
            try:
                out = result.write(staging / "dic_sbi_population", plots=True)
                for k, (train, cells, protocol, sim) in enumerate(resimulations):
                    _write_resimulation(out / f"resimulated_{k + 1}", result, train, cells, protocol, sim)
                files = sorted(p for p in out.rglob("*") if p.is_file())
                with atomic_file(target) as part, zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
                    for k, f in enumerate(files):
                        if cancel.is_set():
                            raise CancelledError("archive: cancelled")
                        zf.write(f, Path("dic_sbi_population") / f.relative_to(out))
                        on_progress("zip", k + 1, len(files))
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return target

        self.archive = None
        self.archive_job = Job(work)
        return self.archive_job

    def collect_archive(self) -> Path | None:
        """The zip once complete (also kept in :attr:`archive`), else None."""
        job = self.archive_job
        if job is not None and not job.running and job.error is None and job.result is not None:
            self.archive = job.result
        return self.archive

    def close(self) -> None:
        """Cancel what runs and remove the session's folder (a closed browser tab)."""
        self.cancel()
        for job in (self.run, self.archive_job):
            if job is not None:
                job.join(timeout=30)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _write_resimulation(folder: Path, result: Any, train: int, cells: list[int], protocol: Protocol, sim: Any) -> None:
    """One "simulate again" of the session: ``simulation.nix`` (spike trains, and voltage traces when recorded, as
    Neo objects: ``read_recording`` reads it back) and ``simulation.json`` (train, cells, their conductances, the
    protocol)."""
    import json
    from dataclasses import asdict

    import neo

    from ..io import write_nix_block

    folder.mkdir()
    seg = neo.Segment(name=f"train {train}, cells {cells}")
    seg.spiketrains.extend(sim.spiketrains())
    if sim.voltage is not None:
        seg.analogsignals.extend([sim.analogsignal(i) for i in range(len(sim))])  # a list: neo drops a generator
    block = neo.Block(name=f"dic_sbi {result.model.name}: cells simulated again")
    block.segments.append(seg)
    write_nix_block(folder / "simulation.nix", block)
    g = result.trains[train].conductances[cells]
    doc = {"model": result.model.name, "train": train, "cells": cells, "protocol": asdict(protocol),
           "conductances_mS_per_cm2": {name: g[:, j].tolist() for j, name in enumerate(result.model.conductance_names)}}
    (folder / "simulation.json").write_text(json.dumps(doc, indent=1) + "\n")


def _sampling(dt: float) -> float:
    """A voltage sampling step: 0.5 ms when ``dt`` divides it (a light trace), else ``dt``."""
    k = round(0.5 / dt)
    return k * dt if k >= 1 and abs(k * dt - 0.5) < 1e-9 else dt
