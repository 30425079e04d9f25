"""The page (Panel): widgets and views only. Every button calls one method of :class:`AppView`, which reads the
widgets into :mod:`dic_sbi.app.session` calls and shows what they return; every error becomes a message in the
page (:func:`~dic_sbi.app.jobs.describe_error`), never a traceback."""

from __future__ import annotations

import contextlib
import io
from typing import Any, Callable

import panel as pn

from ..data import shipped_posteriors
from .jobs import describe_error
from .session import DEFAULT_MODEL, AppSession, Protocol, ReadOptions, RunSettings, fidelity_summary, fidelity_table

__all__ = ["AppView", "create_app"]

#: How often (ms) the page asks a running job how far it is.
POLL_MS = 250
_FORMATS = ["auto", "spike2pop", "text", "nix", "axon", "nwb", "spike2", "neo"]


def _png(fig: Any, dpi: int = 90) -> bytes | None:
    """A matplotlib figure as PNG bytes (then closed: the page keeps only the picture)."""
    import matplotlib.pyplot as plt

    if fig is None:
        return None
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _figure_pane(fig: Any, name: str) -> pn.viewable.Viewable:
    data = _png(fig)
    if data is None:
        return pn.pane.Markdown("(nothing to show)", css_classes=[name])
    width = int.from_bytes(data[16:20], "big")  # the PNG header's width: shown at its own size, at most 1000 px
    return pn.pane.PNG(data, css_classes=[name], width=min(width, 1000))


class AppView:
    """The widgets of one session and the callbacks that connect them to an :class:`AppSession`."""

    def __init__(self, session: AppSession | None = None) -> None:
        self.session = session or AppSession()
        self._poller: Any = None
        self._pending: Any = None  # the train whose figures are still to be drawn
        self._quiet = False
        self.figures: dict[str, Any] = {}
        w = pn.widgets
        # 1. recording
        self.upload = w.FileInput(label="Upload a recording", multiple=False)
        self.path = w.TextInput(label="…or the path of a recording on this machine", placeholder="/data/cell.abf")
        self.read_path = w.Button(label="Read path", color="primary")
        self.example = w.Select(label="…or an example recording", options=["stg", "da"], value="stg", width=120)
        self.use_example = w.Button(label="Use example", color="primary")
        self.threshold = w.TextInput(label="Threshold (mV, or auto)", value="10", width=140)
        self.rearm = w.TextInput(label="Re-arm (mV)", value="", placeholder="default", width=110)
        self.sweeps = w.TextInput(label="Sweeps", value="", placeholder="all, or 0, 2-4", width=120)
        self.channels = w.TextInput(label="Channels", value="", placeholder="all", width=110)
        self.format = w.Select(label="Format", options=_FORMATS, value="auto", width=110)
        self.units = w.TextInput(label="Units", value="", placeholder="ms / mV", width=90)
        self.t_start = w.TextInput(label="t start (ms)", value="", width=100)
        self.t_stop = w.TextInput(label="t stop (ms)", value="", width=100)
        self.min_spikes = w.IntInput(label="Min spikes", value=3, start=0, width=90)
        self.apply = w.Button(label="Apply", color="default")
        self.spike_count = pn.pane.Markdown("No recording yet.", css_classes=["dic-spike-count"])
        self.trains = pn.pane.DataFrame(None, index=False, css_classes=["dic-trains"], sizing_mode="stretch_width")
        self.preview_train = w.Select(label="Preview train", options=[], width=260)
        self.preview = pn.Column(css_classes=["dic-preview"], sizing_mode="stretch_width")
        # 2. run
        # the models with a shipped posterior (a model without one, e.g. pospischil, cannot infer from the page)
        self.model = w.Select(label="Model", options=list(shipped_posteriors()), value=DEFAULT_MODEL, width=120)
        self.n = w.IntInput(label="Population size (cells per train)", value=1000, start=1, end=1_000_000, width=200)
        self.seed = w.IntInput(label="Seed", value=0, start=0, width=110)
        self.noise = w.FloatInput(label="Known noise σ (µA/cm²)", value=0.0, start=0.0, width=170)
        self.validate = w.Checkbox(label="Validate: simulate every cell", value=True)
        self.matching = w.RadioButtonGroup(label="Matching", options={"all cells": "none", "same class": "class",
                                                                    "fire like the recording": "recording"},
                                           value="none")  # fmt: skip
        self.run_trains = w.MultiChoice(label="Trains to infer", options={}, value=[], width=300)
        self.cpus = w.IntInput(label="CPUs", value=None, start=1, width=90, placeholder="all")
        self.run_button = w.Button(label="Run", color="success", width=100)
        self.cancel_button = w.Button(label="Cancel", color="danger", width=100, disabled=True)
        self.progress = pn.indicators.Progress(label="progress", value=0, max=100, width=400, visible=False)
        self.status = pn.pane.Markdown("", css_classes=["dic-status"])
        # 3. results
        self.result_train = w.Select(label="Train", options={}, width=260)
        self.warning = pn.pane.Alert("", alert_type="warning", visible=False, css_classes=["dic-ood"])
        self.kind = w.RadioButtonGroup(label="Distribution", options=["box", "violin"], value="box")
        self.results = pn.Column(sizing_mode="stretch_width", css_classes=["dic-results"])
        self.distributions = pn.Column(sizing_mode="stretch_width")
        # 4. simulate again
        p = Protocol()
        self.sim_cells = w.TextInput(label="Cells", value=p.cells, width=110)
        self.sim_duration = w.FloatInput(label="Duration (ms)", value=p.duration, start=1.0, width=120)
        self.sim_transient = w.FloatInput(label="Transient (ms)", value=p.transient, start=0.0, width=120)
        self.sim_dt = w.FloatInput(label="Step dt (ms)", value=p.dt, start=0.001, width=100)
        self.sim_iapp = w.FloatInput(label="Injected current (µA/cm²)", value=p.i_app, width=170)
        self.sim_noise = w.FloatInput(label="Noise σ (µA/cm²)", value=p.noise_std, start=0.0, width=130)
        self.sim_seed = w.IntInput(label="Seed", value=p.seed, start=0, width=90)
        self.sim_voltage = w.RadioButtonGroup(label="Show", options=["voltage traces", "spike times"], value="voltage traces")
        self.sim_button = w.Button(label="Simulate", color="primary")
        self.sim_view = pn.Column(sizing_mode="stretch_width", css_classes=["dic-resimulation"])
        # 5. download
        self.download = w.FileDownload(label="Download population (zip)", filename="dic_sbi_population.zip",
                                       embed=False, disabled=True, color="success", css_classes=["dic-download"])  # fmt: skip
        self.download_status = pn.pane.Markdown("", css_classes=["dic-download-status"])
        self.message = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["dic-message"])

        self.upload.param.watch(self._guard(self.on_upload), "value")
        self.read_path.on_click(self._guard(lambda _: self.on_path()))
        self.path.param.watch(self._guard(lambda _: self.on_path()), "enter_pressed")
        self.use_example.on_click(self._guard(lambda _: self.on_example()))
        self.apply.on_click(self._guard(lambda _: self.on_read()))
        for widget in (self.threshold, self.rearm, self.sweeps, self.channels, self.format, self.units, self.t_start,
                       self.t_stop, self.min_spikes):  # fmt: skip
            widget.param.watch(self._guard(lambda _: self.on_read()), "value")
        self.preview_train.param.watch(self._guard(lambda _: self.show_preview()), "value")
        self.run_button.on_click(self._guard(lambda _: self.on_run()))
        self.cancel_button.on_click(self._guard(lambda _: self.on_cancel()))
        self.result_train.param.watch(self._guard(lambda _: None if self._quiet else self.show_results()), "value")
        self.kind.param.watch(self._guard(lambda _: self.show_distributions()), "value")
        self.sim_button.on_click(self._guard(lambda _: self.on_resimulate()))
        self.layout = self._layout()

    # -- helpers ---------------------------------------------------------------------------------------------
    def _guard(self, callback: Callable[..., Any], hold: bool = True) -> Callable[..., Any]:
        """``callback`` with every error shown as the page's message."""

        def guarded(*args: Any) -> None:
            # hold: the page gets all of a callback's changes at once (a spike count never shows before its table)
            with pn.io.hold() if hold else contextlib.nullcontext():
                try:
                    callback(*args)
                except Exception as err:  # noqa: BLE001 -- the page shows it; nothing reaches the console as a traceback
                    self.show_message(describe_error(err))

        return guarded

    def show_message(self, text: str, kind: str = "danger") -> None:
        self.message.object = text
        self.message.alert_type = kind
        self.message.visible = bool(text)

    def _read_options(self) -> ReadOptions:
        return ReadOptions(threshold=self.threshold.value, rearm=self.rearm.value, sweeps=self.sweeps.value,
                           channels=self.channels.value, format=self.format.value, units=self.units.value,
                           t_start=self.t_start.value, t_stop=self.t_stop.value,
                           min_spikes=int(self.min_spikes.value or 0))  # fmt: skip

    # -- 1. recording ----------------------------------------------------------------------------------------
    def on_upload(self, event: Any) -> None:
        if self.upload.value:
            self.session.use_upload(self.upload.filename, self.upload.value)
            self.on_read()

    def on_path(self) -> None:
        self.session.use_path(self.path.value)
        self.on_read()

    def on_example(self) -> None:
        self.session.use_example(self.example.value)
        self.model.value = self.example.value
        from ..data import example_noise_std

        self.noise.value = example_noise_std(self.example.value)  # the example's σ is known: it is a simulation
        self.on_read()

    def on_read(self) -> None:
        """Read the recording with the options on the page; show its trains, spike count and preview."""
        if self.session.source is None:
            return
        self.show_message("")
        try:
            rec = self.session.read(self._read_options())
        except Exception as err:
            self.spike_count.object = f"**{self.session.source.name}**: no usable spike train."
            self.trains.object = None
            self.preview_train.options, self.run_trains.options = [], {}
            self.show_message(describe_error(err))
            self._preview_unread()
            return
        rows = self.session.trains_table()
        total = sum(r["spikes"] for r in rows)
        self.spike_count.object = (f"**{self.session.source.name}** ({rec.format}): **{total} spikes** in "
                                   f"{len(rows)} train{'s' if len(rows) != 1 else ''}")  # fmt: skip
        if rec.notes:
            self.spike_count.object += "\n\n" + "\n".join(f"- note: {n}" for n in rec.notes)
        import pandas as pd

        self.trains.object = pd.DataFrame(rows)
        labels = {f"{r['train']}: {r['name']} ({r['spikes']} spikes)": r["train"] for r in rows}
        self.preview_train.options = labels
        self.preview_train.value = rows[0]["train"]
        self.run_trains.options = labels
        self.run_trains.value = [r["train"] for r in rows]
        self.show_preview()

    def show_preview(self) -> None:
        from ..plots import plot_voltage_with_spikes, plot_recording_raster

        rec = self.session.recording
        if rec is None or self.preview_train.value is None:
            return
        signal, spikes, levels = self.session.preview(int(self.preview_train.value))
        if signal is None:
            fig = plot_recording_raster(rec)
        else:
            fig = plot_voltage_with_spikes(signal, spikes, title=f"train {self.preview_train.value}: {spikes.name}",
                                           **levels)  # fmt: skip
        self.preview[:] = [_figure_pane(fig, "dic-preview-figure")]

    def _preview_unread(self) -> None:
        """The trace as it is when reading failed (e.g. no spike above threshold), so the user can see why."""
        from ..plots import plot_voltage_with_spikes

        try:
            signal, spikes, levels = self.session.preview()
        except Exception:  # noqa: BLE001 -- no trace to show (spike-time file, corrupt file): the message says why
            self.preview[:] = []
            return
        self.preview[:] = [_figure_pane(plot_voltage_with_spikes(signal, spikes, title="no spikes detected", **levels),
                                        "dic-preview-figure")]  # fmt: skip

    # -- 2. run ----------------------------------------------------------------------------------------------
    def settings(self) -> RunSettings:
        return RunSettings(model=self.model.value, n=int(self.n.value or 0), seed=self.seed.value,
                           noise_std=float(self.noise.value or 0.0), validate=bool(self.validate.value),
                           matching=self.matching.value, trains=[int(t) for t in self.run_trains.value],
                           n_threads=self.cpus.value or None)  # fmt: skip

    def on_run(self) -> None:
        self.show_message("")
        self.session.start_run(self.settings())
        self.results[:], self.sim_view[:] = [], []
        self.download.disabled, self.download.file = True, None
        self.download_status.object = ""
        self.warning.visible = False
        self.run_button.disabled, self.cancel_button.disabled = True, False
        self.progress.value, self.progress.visible = 0, True
        self.status.object = "starting…"
        self._start_polling()

    def on_cancel(self) -> None:
        self.session.cancel()
        self.status.object = "cancelling…"

    def _start_polling(self) -> None:
        if self._poller is None or not self._poller.running:
            self._poller = pn.state.add_periodic_callback(self._guard(self.poll, hold=False), period=POLL_MS)

    def poll(self) -> None:
        """Show the progress of the run and of the archive; show the results when the run is done."""
        idle = not self.busy  # read first: whatever ends during this poll is shown by the next one
        run = self.session.run
        if run is not None and self.run_button.disabled:
            st = run.status()
            self.progress.value = int(100 * st.fraction)
            self.status.object = st.message
            if st.state != "running":
                self.run_button.disabled, self.cancel_button.disabled = False, True
                self.progress.visible = st.state == "done"
                if st.state == "done":
                    self.session.collect()
                    self.status.object = f"Population ready ({st.message})."
                    self.show_result(progressive=True)
                else:
                    self.status.object = st.message
                    self.show_message(st.message, "warning" if st.state == "cancelled" else "danger")
        elif self._pending is not None:  # the poll after the raster: the other figures, then the archive
            self.draw_pending()
            self.session.start_archive()
            self.download_status.object = "Preparing the archive…"
        job = self.session.archive_job
        if job is not None and not job.running and self.download.disabled:
            if self.session.collect_archive() is not None:
                self.download.file = str(self.session.archive)
                self.download.disabled = False
                again = ", cells simulated again" if self.session.resimulations else ""
                self.download_status.object = f"Archive ready: population CSV and NIX, DIC samples, report, figures{again}."
            elif job.error is not None:
                self.download_status.object = f"No archive: {describe_error(job.error)}"
        if idle and self._poller is not None:
            self._poller.stop()

    @property
    def busy(self) -> bool:
        """A run not yet shown (running, or ended since the last poll), figures still to draw or an archive in the
        making: the page keeps polling."""
        job = self.session.archive_job
        shown = not self.run_button.disabled  # the poll that sees a run's end enables Run again
        return not shown or self._pending is not None or (job is not None and job.running)

    # -- 3. results ------------------------------------------------------------------------------------------
    def show_result(self, progressive: bool = False) -> None:
        result = self.session.result
        self._quiet = True  # setting the train below must not draw every figure now
        try:
            self.result_train.options = {f"{t.index}: {t.name} ({t.observed_class})": k for k, t in enumerate(result.trains)}
            self.result_train.value = 0
        finally:
            self._quiet = False
        warnings = self.session.warnings()
        self.warning.object = "**Out of distribution**: " + " ".join(warnings) if warnings else ""
        self.warning.visible = bool(warnings)
        proto = result.model.protocol  # simulating again starts from the protocol the population was checked with
        self.sim_duration.value, self.sim_transient.value, self.sim_dt.value = proto.duration, proto.transient, proto.dt
        self.show_results(progressive)

    def show_results(self, progressive: bool = False) -> None:
        """The results of the chosen train in tabs: the raster at once; with ``progressive`` the other figures
        at the next poll, so the population is on screen without waiting for the pairplot."""
        from ..plots import plot_population_raster

        result = self.session.result
        if result is None or self.result_train.value is None:
            return
        t = result.trains[int(self.result_train.value)]
        import pandas as pd

        notes = [f"- {line}" for line in fidelity_summary(t)] + [f"- note: {n}" for n in result.notes]
        self.figures = {name: pn.Column(pn.pane.Markdown("drawing…"), sizing_mode="stretch_width")
                        for name in ("traces", "posterior", "pairplot")}  # fmt: skip
        tabs = pn.Tabs(
            ("Raster", _figure_pane(plot_population_raster(result, t), "dic-raster")),
            ("Traces", self.figures["traces"]),
            ("DIC posterior", self.figures["posterior"]),
            ("Conductances", pn.Column(self.kind, self.distributions, self.figures["pairplot"])),
            ("Fidelity", pn.Column(pn.pane.Markdown("\n".join(notes)),
                                   pn.pane.DataFrame(pd.DataFrame(fidelity_table(t)), index=False, css_classes=["dic-fidelity"]))),
            ("Simulate again", pn.Column(pn.Row(self.sim_cells, self.sim_duration, self.sim_transient, self.sim_dt),
                                         pn.Row(self.sim_iapp, self.sim_noise, self.sim_seed),
                                         pn.Row(self.sim_voltage, self.sim_button), self.sim_view)),
            dynamic=False, sizing_mode="stretch_width",
        )  # fmt: skip
        self.results[:] = [tabs]
        self._pending = t
        if not progressive:
            self.draw_pending()

    def draw_pending(self) -> None:
        """Draw the figures :meth:`show_results` left for later."""
        from ..plots import plot_conductance_pairplot, plot_dic_posterior, plot_traces

        t, self._pending = self._pending, None
        if t is None:
            return
        result = self.session.result
        self.show_distributions()
        for name, draw, css in (("traces", plot_traces, "dic-traces"), ("posterior", plot_dic_posterior, "dic-posterior"),
                                ("pairplot", plot_conductance_pairplot, "dic-pairplot")):  # fmt: skip
            self.figures[name][:] = [_figure_pane(draw(result, t), css)]

    def show_distributions(self) -> None:
        from ..plots import plot_conductance_distributions

        result = self.session.result
        if result is None or self.result_train.value is None:
            return
        t = result.trains[int(self.result_train.value)]
        fig = plot_conductance_distributions(result, t, kind=self.kind.value)
        self.distributions[:] = [_figure_pane(fig, "dic-distributions")]

    # -- 4. simulate again -----------------------------------------------------------------------------------
    def on_resimulate(self) -> None:
        from ..plots import plot_cells

        self.show_message("")
        protocol = Protocol(cells=self.sim_cells.value, duration=self.sim_duration.value, transient=self.sim_transient.value,
                            dt=self.sim_dt.value, i_app=self.sim_iapp.value or 0.0, noise_std=self.sim_noise.value or 0.0,
                            seed=self.sim_seed.value or 0, voltage=self.sim_voltage.value == "voltage traces")  # fmt: skip
        cells, sim = self.session.resimulate(int(self.result_train.value or 0), protocol)
        self.sim_view[:] = [_figure_pane(plot_cells(sim, cells), "dic-resimulation-figure")]
        # the download is made again with these cells in it (archives run one at a time, the newest last)
        previous = self.session.archive_job
        if previous is not None and previous.running:
            previous.cancel()
        self.session.start_archive()
        self.download.disabled = True
        self.download_status.object = "Preparing the archive (with the cells simulated again)…"
        self._start_polling()

    # -- the page --------------------------------------------------------------------------------------------
    def _layout(self) -> pn.viewable.Viewable:
        md = pn.pane.Markdown
        return pn.Column(
            md("# dic-sbi: a recording in, the degenerate population out\n"
               "Conductance-based model populations that fire like your cell, inferred through Dynamic Input "
               "Conductances (everything runs on this machine)."),
            self.message,
            md("## 1. Recording"),
            pn.Row(self.upload, pn.Column(self.path, self.read_path), pn.Column(self.example, self.use_example)),
            pn.FlexBox(self.threshold, self.rearm, self.sweeps, self.channels, self.format, self.units, self.t_start,
                       self.t_stop, self.min_spikes, self.apply),  # wraps on a narrow window
            self.spike_count, self.trains, self.preview_train, self.preview,
            md("## 2. Population"),
            pn.Row(self.model, self.n, self.seed, self.noise, self.cpus),
            pn.Row(self.validate, self.matching, self.run_trains),
            pn.Row(self.run_button, self.cancel_button, self.progress, self.status),
            md("## 3. Results"),
            self.warning,
            pn.Row(self.result_train, self.download, self.download_status),
            self.results,
            sizing_mode="stretch_width", max_width=1200,
        )  # fmt: skip


def create_app(session: AppSession | None = None) -> pn.viewable.Viewable:
    """The app's page for one session (``pn.serve(create_app)``, or display it in a Jupyter notebook)."""
    view = AppView(session)
    if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
        pn.state.on_session_destroyed(lambda _: view.session.close())  # a closed tab stops its run, frees its files
    return view.layout
