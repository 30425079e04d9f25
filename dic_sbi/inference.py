"""The main job (application layer): a recording in, the degenerate population of models that reproduce it out.

    result = infer("cell.nix", model="stg", n=1000, validate=True, seed=0)
    result.trains[0].conductances            # (1000, n_conductances) mS/cm², one cell per posterior sample
    result.write("cell_population/")         # CSV, NIX, DIC samples, fidelity report, plots

For every spike train of the recording: its summary features (exactly as the simulators compute them) →
``n`` DIC samples from the pretrained DIC posterior (:func:`~dic_sbi.sbi.pretrained.load_pretrained`) → one
cell of the degenerate population of each sample (so the population carries the posterior's uncertainty,
not only the spread at one DIC point). Validation simulates the population with the training protocol and
reports how many cells fire like the recording; without ``validate`` a small preview (``preview`` cells) is
simulated for the plots and the report.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .core.checks import MAX_SEED, is_int, is_seed
from .errors import CancelledError, DicSbiError, InvalidInputError, RecordingError

if TYPE_CHECKING:
    from threading import Event

    from .models import ConductanceModel

__all__ = ["infer", "InferenceResult", "TrainInference", "fidelity_report", "MAX_CELLS", "MAX_SEED", "DEFAULT_SCREEN",
           "MAX_SCREEN"]

#: Most cells ``infer`` makes in one call (``n`` times the number of trains): 10^7 cells of an 8-conductance
#: model are ~1 GB of arrays in memory and ~2 GB of CSV and NIX output; beyond that, split the recording.
MAX_CELLS = 10_000_000
#: Cells drawn per cell kept by ``infer``'s screen when the posterior has a firing emulator (benchmarks/README.md,
#: *The emulator screen*), and the most a caller may ask for. The candidates of one train, ``screen × n``, may not
#: exceed :data:`MAX_CELLS`; the default screen shrinks to fit.
DEFAULT_SCREEN = 20
MAX_SCREEN = 100
#: Bytes of output per cell and conductance, as written (CSV text and NIX float64), for the size estimate.
_OUTPUT_BYTES_PER_VALUE = 24

_READ_OPTIONS = {"format", "threshold", "rearm", "segments", "sweeps", "channels", "units", "spikes_from", "t_start",
                 "t_stop", "min_spikes"}  # fmt: skip
_FEATURES = ("spiking_frequency", "burst_period", "spikes_per_burst", "intra_burst_frequency", "duty_cycle",
             "mean_rate", "cv")  # fmt: skip


@dataclass
class TrainInference:
    """The population inferred for one spike train of the recording.

    Attributes
    ----------
    index, name
        Position of the train in the recording and its name (channel, CSV ID, ...).
    observed_features, observed_class
        Firing features of the recording (:func:`~dic_sbi.spiketrains.spike_train_features`) and its firing class.
    x
        What the posterior was conditioned on: the ``(17,)`` summary, and its known conditions if it takes any.
    dics
        ``(n, 2)`` DIC samples ``(g_s, g_u)`` from the posterior; row ``i`` produced cell ``i``.
    conductances
        ``(n, n_conductances)`` the population (mS/cm², model order).
    seconds
        Wall time of the inference (features, DIC sampling, compensation), simulations excluded.
    simulated
        Indices of the cells that were simulated (all with ``validate``, else a preview), and their
        ``SimulationResult`` (with voltage for the first few) and fidelity report.
    """

    index: int
    name: str
    observed_features: dict[str, Any]
    observed_class: str
    x: Any
    dics: np.ndarray
    conductances: np.ndarray
    seconds: float
    window_ms: float
    out_of_distribution: list[str] = field(default_factory=list)
    simulated: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    simulation: Any = None
    traces: Any = None
    fidelity: dict[str, Any] | None = None
    #: With ``refine``: the refinement's cost and training record (:meth:`~dic_sbi.sbi.refine.Refinement.summary`).
    refinement: dict[str, Any] | None = None
    #: With a screen: cells drawn per cell kept and the emulated fidelity (:func:`~dic_sbi.sbi.emulator.screen_population`).
    screening: dict[str, Any] | None = None


@dataclass
class InferenceResult:
    """Output of :func:`infer`: one :class:`TrainInference` per spike train, plus settings and provenance."""

    model: Any
    recording: Any
    posterior_info: dict[str, Any]
    n: int
    seed: int | None
    validate: bool
    trains: list[TrainInference]
    notes: list[str] = field(default_factory=list)
    noise_std: float = 0.0
    #: Known ``(g_s, g_u)`` of the recorded cell, when the recording is a simulation (``dic-sbi demo`` sets it):
    #: reported next to the posterior and marked on its plot.
    true_dics: Any = None

    def report(self) -> dict[str, Any]:
        """The fidelity report (JSON-serialisable): settings, and per train the observed vs simulated firing."""
        info = self.posterior_info
        return {
            "recording": str(self.recording.path),
            "format": self.recording.format,
            "model": self.model.name,
            "posterior": {"name": info.get("name"), "created": info.get("created"), "command": info.get("command"),
                          "free_conductances": ("learned q(z | DICs, x)" if info.get("free_conductances")
                                                else "seed law")},  # fmt: skip
            "cells_per_train": self.n,
            "seed": self.seed,
            "noise_std": self.noise_std,
            "validated": self.validate,
            **({"true_dics": {"g_s": float(self.true_dics[0]), "g_u": float(self.true_dics[1])}}
               if self.true_dics is not None else {}),  # fmt: skip
            "notes": self.notes,
            "warnings": [f"train {t.index} ({t.name}): {w}" for t in self.trains for w in t.out_of_distribution],
            "trains": [
                {
                    "index": t.index,
                    "name": t.name,
                    "observation_window_ms": t.window_ms,
                    "observed_class": t.observed_class,
                    "observed_features": {k: _jsonable(v) for k, v in t.observed_features.items()},
                    "dic_posterior": _dic_summary(t.dics),
                    "out_of_distribution": list(t.out_of_distribution),
                    "inference_seconds": round(t.seconds, 4),
                    **({"refinement": t.refinement} if t.refinement is not None else {}),
                    **({"screening": t.screening} if t.screening is not None else {}),
                    "simulated_cells": int(t.simulated.size),
                    "fidelity": t.fidelity,
                }
                for t in self.trains
            ],
        }

    def write(self, out: str | os.PathLike, *, plots: bool = True, overwrite: bool = False) -> Path:
        """Write every output into the new folder ``out``, atomically (nothing partial on error).

        ``out`` must be new, empty, or (with ``overwrite=True``) a previous dic_sbi output holding nothing else;
        it may not be or hold the recording, the current or the home folder (:func:`dic_sbi.io.safe_output`).

        ``population.csv`` (one row per cell: train, cell, conductances, DICs, simulated firing),
        ``population.nix`` (NIX: conductances and DICs as data arrays, settings as metadata),
        ``dic_samples.csv`` (CSV headers carry units, e.g. ``Na [mS/cm^2]``), ``report.json`` (fidelity),
        ``simulated_spikes.nix`` (observed and simulated spike trains in a compact NIX layout, two data arrays
        per train; read back with :func:`dic_sbi.io.read_spike_groups`) and, with ``plots``, ``raster_*.png``,
        ``traces_*.png`` (observed and simulated voltage), ``dic_posterior_*.png`` (with the true DICs when
        :attr:`true_dics` is known), ``pairplot_*.png``.
        """
        from .io.outputs import safe_output

        out = Path(out)
        protect = [self.recording.path] if self.recording.path is not None else []
        with safe_output(out, overwrite=overwrite, protect=protect, option="out", overwrite_option="overwrite=True",
                         command=f"infer {self.model.name}") as staging:  # fmt: skip
            self._write_population_csv(staging / "population.csv")
            self._write_dics_csv(staging / "dic_samples.csv")
            self._write_population_nix(staging / "population.nix")
            self._write_spikes_nix(staging / "simulated_spikes.nix")
            (staging / "report.json").write_text(json.dumps(self.report(), indent=1) + "\n")
            if plots:
                self._plots(staging)
        return out

    # -- writers ---------------------------------------------------------------------------------------------
    def _write_population_csv(self, path: Path) -> None:
        import csv

        from .io.tables import CONDUCTANCE_UNIT, header

        names = self.model.conductance_names
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["train", "cell", *(header(n, CONDUCTANCE_UNIT) for n in names), header("g_s"), header("g_u"),
                        "firing_class", *(header(k) for k in _FEATURES[:4])])  # fmt: skip
            for t in self.trains:
                sim = {int(c): j for j, c in enumerate(t.simulated)}
                feats = t.simulation.features() if t.simulation is not None else None
                for i in range(t.conductances.shape[0]):
                    j = sim.get(i)
                    extra = ([str(feats["firing_class"][j])] + [_num(feats[k][j]) for k in _FEATURES[:4]]
                             if j is not None else [""] * 5)  # fmt: skip
                    w.writerow([t.name, i, *(f"{v:.10g}" for v in t.conductances[i]),
                                f"{t.dics[i, 0]:.6g}", f"{t.dics[i, 1]:.6g}", *extra])  # fmt: skip

    def _write_dics_csv(self, path: Path) -> None:
        import csv

        from .io.tables import header

        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["train", "sample", header("g_s"), header("g_u")])
            for t in self.trains:
                for i, (s, u) in enumerate(t.dics):
                    w.writerow([t.name, i, f"{s:.6g}", f"{u:.6g}"])

    def _write_population_nix(self, path: Path) -> None:
        import nixio

        f = nixio.File.open(str(path), nixio.FileMode.Overwrite)
        try:
            sec = f.create_section("dic_sbi inference", "dic_sbi.settings")
            for key, value in (("recording", str(self.recording.path)), ("model", self.model.name),
                               ("cells_per_train", self.n), ("seed", -1 if self.seed is None else self.seed),
                               ("posterior", str(self.posterior_info.get("name"))),
                               ("reference_threshold_mV", float(self.model.dics.reference_threshold))):  # fmt: skip
                sec[key] = value
            for t in self.trains:
                block = f.create_block(f"train {t.index}: {t.name}", "dic_sbi.population")
                block.metadata = sec
                da = block.create_data_array("conductances", "dic_sbi.conductances", data=t.conductances)
                da.unit = "mS/cm^2"
                da.append_set_dimension()
                da.append_set_dimension(labels=list(self.model.conductance_names))
                dd = block.create_data_array("dics", "dic_sbi.dics", data=t.dics)
                dd.append_set_dimension()
                dd.append_set_dimension(labels=["g_s", "g_u"])
                obs = np.asarray(self.recording[t.index].rescale("ms").magnitude, dtype=float)
                ds = block.create_data_array("observed_spike_times", "dic_sbi.spike_times", data=obs)
                ds.unit = "ms"
                ds.append_set_dimension()
        finally:
            f.close()

    def _write_spikes_nix(self, path: Path) -> None:
        from .io import SpikeGroup, write_spike_groups

        groups = []
        for t in self.trains:
            sim = t.simulation
            k = 0 if sim is None else len(sim)
            window = (sim.t_start, sim.t_stop) if sim is not None else (0.0, t.window_ms)
            groups.append(SpikeGroup(
                name=f"train {t.index}: {t.name}", cells=t.simulated[:k], times=sim.times if k else np.empty(0),
                offsets=sim.offsets if k else np.zeros(1, dtype=np.int64), t_start=window[0], t_stop=window[1],
                observed=self.recording[t.index], conductances=t.conductances[t.simulated[:k]],
                conductance_names=self.model.conductance_names,
            ))  # fmt: skip
        write_spike_groups(path, groups, metadata={"model": self.model.name, "recording": str(self.recording.path)})

    def _plots(self, folder: Path) -> None:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
            matplotlib.use("Agg")  # writing files only; no display needed
        import matplotlib.pyplot as plt

        from .plots import plot_conductance_pairplot, plot_dic_posterior, plot_population_raster, plot_traces

        for t in self.trains:
            tag = f"{t.index}"
            for name, draw in (("raster", lambda: plot_population_raster(self, t)),
                               ("traces", lambda: plot_traces(self, t)),
                               ("dic_posterior", lambda: plot_dic_posterior(self, t)),
                               ("pairplot", lambda: plot_conductance_pairplot(self, t))):  # fmt: skip
                fig = draw()
                if fig is not None:
                    fig.savefig(folder / f"{name}_{tag}.png", dpi=110)
                    plt.close(fig)


def _has_shipped_posterior(model: Any) -> bool:
    """Whether ``model`` is a registered model with a posterior shipped in the package."""
    from .models import get_model
    from .sbi.pretrained import available_pretrained

    try:
        return get_model(model.name) is model and model.name in available_pretrained()
    except DicSbiError:
        return False


def _size_estimate(model: Any, cells: int) -> str:
    """Memory and output size of ``cells`` cells, in words."""
    values = cells * (model.n_conductances + 2)  # conductances and DICs
    gb = values * 8 / 1e9, values * _OUTPUT_BYTES_PER_VALUE / 1e9
    return f"about {gb[0]:.2g} GB of memory and {gb[1]:.2g} GB of output"


def _num(v: Any) -> str:
    v = float(v)
    return f"{v:.6g}" if np.isfinite(v) else ""


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return float(v) if np.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    return v if isinstance(v, (int, str, bool)) or v is None else str(v)


def _dic_summary(d: np.ndarray) -> dict[str, Any]:
    q = np.quantile(d, [0.05, 0.5, 0.95], axis=0)
    return {
        name: {"mean": float(d[:, k].mean()), "std": float(d[:, k].std()), "q05": float(q[0, k]),
               "median": float(q[1, k]), "q95": float(q[2, k])}
        for k, name in enumerate(("g_s", "g_u"))
    }  # fmt: skip


def fidelity_report(features: dict[str, np.ndarray], observed: dict[str, Any], rtol: float = 0.2) -> dict[str, Any]:
    """Observed vs simulated firing: class counts, fraction in the observed class, and for each feature the
    observed value, the simulated median and 5-95 % range and the fraction of cells within ``rtol`` of it."""
    klass = observed.get("firing_class")
    out: dict[str, Any] = {"rtol": rtol}
    classes, counts = np.unique(features["firing_class"], return_counts=True)
    out["firing_class_counts"] = {str(c): int(k) for c, k in zip(classes, counts)}
    if klass is not None:
        out["fraction_matching_class"] = float(np.mean(features["firing_class"] == klass))
        if all(k in observed for k in ("mean_rate", "burst_period", "spikes_per_burst")):
            from .spiketrains import FIDELITY_TOLERANCES, fires_like

            # The package's one definition of a cell that fires like the recording (class, rate, bursts).
            out["fraction_faithful"] = float(np.mean(fires_like(features, observed)[1]))
            out["faithful_tolerances"] = dict(FIDELITY_TOLERANCES)
    feats = {}
    for key in _FEATURES:
        v = np.asarray(features[key], dtype=float)
        fin = v[np.isfinite(v)]
        entry: dict[str, Any] = {"observed": _jsonable(observed.get(key)), "n_defined": int(fin.size)}
        if fin.size:
            entry.update(median=float(np.median(fin)), q05=float(np.quantile(fin, 0.05)), q95=float(np.quantile(fin, 0.95)))
        obs = observed.get(key)
        if obs is not None and np.isfinite(obs) and obs != 0:
            with np.errstate(invalid="ignore"):
                entry["fraction_within_rtol"] = float(np.mean(np.abs(v - obs) <= rtol * abs(obs)))
        feats[key] = entry
    out["features"] = feats
    return out


_FROZEN = False


def _freeze_long_lived_objects() -> None:
    """Move the objects alive now (modules of torch, sbi, neo, the loaded network) out of the garbage
    collector's reach, once per process.

    Neo's NIX reader closes its file through ``nixio.File.close``, which calls ``gc.collect()``; with torch and
    sbi loaded that full collection scans ~500 000 objects and takes ~0.2 s, more than the whole inference.
    Those objects live as long as the process anyway, so freezing them (``gc.freeze``, after one collection so
    no garbage is frozen) changes no result and makes each later collection cheap.
    """
    global _FROZEN
    if not _FROZEN:
        import gc

        gc.collect()
        gc.freeze()
        _FROZEN = True


def infer(
    recording: Any,
    model: str | ConductanceModel,
    n: int = 1000,
    *,
    posterior: Any = None,
    seed: int | None = None,
    validate: bool = False,
    preview: int = 20,
    traces: int = 3,
    trains: int | Sequence[int] | None = None,
    read_options: dict[str, Any] | None = None,
    noise_std: float | None = None,
    match_class: bool = False,
    match: bool | dict[str, float] = False,
    max_draws: int | None = None,
    noise_repeats: int | None = None,
    refine: int = 0,
    screen: int | None = None,
    n_threads: int | None = None,
    progress: bool = False,
    cancel: Event | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> InferenceResult:
    """Infer the degenerate population of every spike train of a recording.

    Parameters
    ----------
    recording
        A path (any format of :func:`~dic_sbi.io.read_recording`) or a :class:`~dic_sbi.io.Recording`.
    model
        ``"stg"``, ``"da"``, a model file ``"path/to/file.py:NAME"`` or a model object (a model without a
        shipped posterior needs ``posterior``).
    n
        Cells per train (one per posterior DIC sample); ``n`` times the number of trains may not exceed
        :data:`MAX_CELLS`.
    posterior
        A :class:`~dic_sbi.sbi.DICPosterior` (or a path / name for
        :func:`~dic_sbi.sbi.pretrained.load_pretrained`); default: the model's shipped posterior.
    seed
        Seed of the sampling and of the compensation, an int in [0, :data:`MAX_SEED`] (None: fresh randomness).
    validate
        Simulate all ``n`` cells with the training protocol and report fidelity (else a ``preview``).
    preview, traces
        Cells simulated without ``validate``; cells whose voltage is recorded for the trace plots.
    trains
        Index or indices of the recording's trains to use (default all).
    read_options
        Keyword arguments of :func:`~dic_sbi.io.read_recording` (``threshold``, ``segments``, ``channels``...).
    noise_std
        σ (µA/cm²) of the noisy current of the model the recording is compared with (as in :func:`~dic_sbi.simulate`), a known
        condition: a posterior that takes it (``posterior.conditions``) is conditioned on it, and the
        validation simulations use it. Default: 0 (the deterministic model).
    match_class
        Keep only cells that fire in the observed class: draw and simulate more posterior cells until ``n`` do
        (:func:`~dic_sbi.sbi.matching.class_matched_population`; implies ``validate``). The report gives how many
        were drawn and the unfiltered fraction.
    match
        Keep only cells that fire like the recording (:func:`~dic_sbi.spiketrains.fires_like`: class, mean rate
        ± 10 %, bursters' period ± 10 % and spikes per burst ± 1): ``True``, or a dict of tolerances
        (``mean_rate``, ``burst_period``, ``spikes_per_burst``) to change. Draws and simulates as
        ``match_class`` does; the report gives the simulations per kept cell.
    max_draws
        With ``match_class`` or ``match``, the most cells drawn per train (default ``20 n``).
    noise_repeats
        With ``match_class`` and noise, noise realisations in which a cell must fire in the observed class
        (default 3).
    refine
        Simulations for a posterior specific to each train: one truncated-proposal round seeded by the
        amortised posterior (:func:`~dic_sbi.sbi.refine.refine_posterior`), before sampling (and matching).
        0 (default): the amortised posterior. The report gives each train's ``refinement`` (its cost); the
        inference time then includes it.
    screen
        Draw ``screen × n`` posterior cells per train and keep the ``n`` that the posterior's firing emulator
        finds likeliest to fire like the recording (:func:`~dic_sbi.sbi.emulator.screen_population`; no
        simulation). ``None`` (default): :data:`DEFAULT_SCREEN` when the posterior has an emulator that
        answers for ``noise_std`` (a noise-free one for 0 only; a noise-aware one, ``train-emulator
        --noisy-simulations``, up to the top of the σ range it was trained on, and it is then told σ), else 1;
        1: no screen (the amortised posterior's own draws). The report gives each train's ``screening``.
    cancel
        A ``threading.Event``, checked between steps and between chunks of simulated cells: once set, ``infer``
        stops and raises :class:`~dic_sbi.errors.CancelledError` (for callers that run it in a thread, the app).
    on_progress
        Called as ``on_progress(stage, done, total)``: ``("sample", i, trains)`` per train sampled, and
        ``("simulate", cells, cells_in_all)`` as the population of each train is simulated. With ``cancel`` or
        ``on_progress``, cells are simulated in small chunks (:func:`~dic_sbi.core.simulator.responsive_chunk_size`;
        same results).

    Returns
    -------
    InferenceResult
        Its ``notes`` say what was skipped (trains with too few spikes) or is doubtful; each train's
        ``out_of_distribution`` lists warnings when its features are unlike the posterior's training set or the
        posterior piles on an edge of the prior box (:func:`~dic_sbi.sbi.ood.out_of_distribution`), also warned
        with :class:`UserWarning` and written to ``report.json``.
    """
    import torch

    from .core.simulator import simulate
    from .io import Recording, read_recording
    from .models import get_model
    from .sbi import DICPosterior
    from .sbi.emulator import screen_population
    from .sbi.matching import check_matching_options, class_matched_population
    from .sbi.ood import out_of_distribution
    from .sbi.pretrained import load_pretrained, pretrained_info
    from .sbi.refine import refine_posterior
    from .spiketrains import spike_train_features

    m = get_model(model)  # UnknownModelError before any file is read
    if not is_int(n, 1):
        raise InvalidInputError(f"n: expected a positive number of cells, got {n!r}")
    if n > MAX_CELLS:
        raise InvalidInputError(f"n: {n} cells per train is more than the limit of {MAX_CELLS:.0e} cells per call "
                                f"({_size_estimate(m, n)}); give a smaller n")  # fmt: skip
    for name, v in (("preview", preview), ("traces", traces)):
        if not (isinstance(v, (int, np.integer)) and v >= 0):
            raise InvalidInputError(f"{name}: expected an int >= 0, got {v!r}")
    if seed is not None and not is_seed(seed):
        raise InvalidInputError(f"seed: expected an int in [0, 2**63 - 1] or None, got {seed!r}")
    if match is not False and match is not None:
        if match_class:
            raise InvalidInputError("match, match_class: give one (match already requires the observed class)")
        if not (match is True or isinstance(match, dict)):
            raise InvalidInputError(f"match: expected True or a dict of tolerances, got {match!r}")
    tolerances = match if isinstance(match, dict) else None
    match = match is True or isinstance(match, dict)  # {} is a request with the default tolerances
    if match_class or match:  # before any file is read
        check_matching_options(n, max_draws, noise_repeats)
    if screen is not None and not (is_int(screen, 1) and screen <= MAX_SCREEN):
        raise InvalidInputError(f"screen: expected an int in [1, {MAX_SCREEN}] (cells drawn per cell kept), got {screen!r}")
    if not (is_int(refine, 0) and (refine == 0 or refine >= 20)):
        raise InvalidInputError(f"refine: expected 0 (no refinement) or an int >= 20 (simulations per train), got {refine!r}")
    if read_options is not None and not isinstance(read_options, dict):
        raise InvalidInputError(f"read_options: expected a dict of read_recording options, got {type(read_options).__name__}")
    unknown = sorted(set(read_options or {}) - _READ_OPTIONS)
    if unknown:
        raise InvalidInputError(f"read_options: unknown option(s) {unknown}; read_recording takes {sorted(_READ_OPTIONS)}")
    rec = recording if isinstance(recording, Recording) else read_recording(recording, **(read_options or {}))
    chosen = list(range(len(rec))) if trains is None else ([trains] if np.ndim(trains) == 0 else list(trains))
    bad = [i for i in chosen if not (isinstance(i, (int, np.integer)) and 0 <= i < len(rec))]
    if bad or not chosen:
        raise InvalidInputError(f"trains: expected indices in [0, {len(rec)}) of {rec.path}'s trains, got {trains!r}")
    if n * len(chosen) > MAX_CELLS:
        raise InvalidInputError(f"n: {n} cells for each of {len(chosen)} trains is more than the limit of {MAX_CELLS:.0e} "
                                f"cells per call ({_size_estimate(m, n * len(chosen))}); give a smaller n or select "
                                "trains")  # fmt: skip

    if posterior is None and not _has_shipped_posterior(m):
        raise InvalidInputError(
            f"posterior: model {m.name!r} has no shipped posterior; train one (dic-sbi train --model ... --out PATH, "
            "or dic_sbi.train.train_pretrained) and pass posterior=PATH (--posterior PATH)"
        )
    if posterior is None or isinstance(posterior, (str, os.PathLike)):
        source = m.name if posterior is None else posterior
        try:
            post = load_pretrained(source)
            info = pretrained_info(source)
        except InvalidInputError as err:
            raise InvalidInputError(f"posterior: {str(err).removeprefix('pretrained: ')}") from None
    elif isinstance(posterior, DICPosterior):
        post, info = posterior, {"name": repr(posterior), "free_conductances": posterior.free_conductances is not None}
    else:
        raise InvalidInputError(f"posterior: expected a DICPosterior, a pretrained name or a path, got {type(posterior).__name__}")
    _freeze_long_lived_objects()
    if post.model.name != m.name:
        raise InvalidInputError(f"posterior: trained for model {post.model.name!r}, not {m.name!r}")
    sigma = 0.0 if noise_std is None else noise_std
    if not (isinstance(sigma, (int, float, np.integer, np.floating)) and np.isfinite(sigma) and sigma >= 0):
        raise InvalidInputError(f"noise_std: expected a finite σ >= 0 (µA/cm²), got {noise_std!r}")
    sigma = float(sigma)
    known = post.conditions_among(noise_std=sigma)
    post.check_conditions(**known)  # a σ the posterior was not trained at: fail before any work
    emu = post.emulator
    # σ the emulator answers for: 0 for a noise-free one (whose screen under noise was measured to buy little or
    # to hurt, benchmarks/README.md, so it is no default there), up to its σ range's top for a noise-aware one
    emu_sigma = emu is not None and sigma <= emu.noise_range[1]
    if screen is None:
        screen = max(1, min(DEFAULT_SCREEN, MAX_CELLS // int(n))) if emu_sigma else 1
    elif screen * n > MAX_CELLS:
        raise InvalidInputError(f"screen: {screen} × {n} cells drawn per train is more than {MAX_CELLS:.0e}; give a smaller "
                                "screen or n")  # fmt: skip
    elif screen > 1 and post.emulator is None:
        raise InvalidInputError(f"screen: {screen} needs a posterior with a firing emulator (dic-sbi train-emulator); "
                                "this one has none, give screen=1")  # fmt: skip
    elif screen > 1 and emu.noise_input and not emu_sigma:
        raise InvalidInputError(f"screen: the posterior's firing emulator knows σ up to {emu.noise_range[1]:g}, not "
                                f"{sigma:g}; give screen=1")  # fmt: skip
    sim = post.simulator
    window = (sim.transient, sim.duration) if sim is not None else (m.protocol.transient, m.protocol.duration)
    train_window = window[1] - window[0]

    def check_cancel(where: str) -> None:
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"infer: cancelled {where}")

    def report(stage: str, done: int, total: int) -> None:
        if on_progress is not None:
            on_progress(stage, done, total)

    monitored = {}
    if cancel is not None or on_progress is not None:
        from .core.simulator import responsive_chunk_size

        monitored = dict(chunk_size=responsive_chunk_size(n_threads), cancel=cancel)

    rng = np.random.default_rng(seed)
    notes: list[str] = list(getattr(rec, "notes", ()))
    results: list[TrainInference] = []
    posteriors: dict[int, Any] = {}  # per train: the amortised posterior, or its refinement
    for done, i in enumerate(chosen):
        check_cancel("before sampling")
        report("sample", done, len(chosen))
        st = rec[int(i)]
        t0 = time.perf_counter()
        x = post.observe(st, **known)
        obs = spike_train_features(st).as_dict()
        refinement, post_i = None, post
        if refine:
            if progress:
                print(f"refining the posterior on {refine} simulations near train {i}", file=sys.stderr, flush=True)
            ref = refine_posterior(post, x, num_simulations=int(refine), seed=rng, n_threads=n_threads)
            post_i, refinement = ref.posterior, ref.summary()
        # DIC samples, then one compensated cell each: free draws from q(z | t, x) when the posterior has that
        # estimator (the part of each DIC's population that fires like x), else from the seed law.
        def draw(k: int, post_i: Any = post_i, x: Any = x) -> tuple[np.ndarray, np.ndarray]:
            g_t, d_t = post_i.sample((k,), x=x, seed=rng, return_dics=True)
            return g_t.numpy(), d_t.to(torch.float64).numpy()

        screening = None
        if screen > 1:
            g, d, screening = screen_population(draw, post_i.emulator, obs, int(n), screen=int(screen),
                                                noise_std=sigma if post_i.emulator.noise_input else None)  # fmt: skip
        else:
            g, d = draw(int(n))
        seconds = time.perf_counter() - t0
        if post_i.last_fallback:
            notes.append(f"train {i} ({st.name}): {post_i.last_fallback} of {int(n) * int(screen)} cells drawn took their "
                         "free conductances from the seed law (the learned law gave no valid cell for their DICs)")  # fmt: skip
        span = float((st.t_stop - st.t_start).rescale("ms").magnitude)
        if span < 0.5 * train_window:
            notes.append(f"train {i} ({st.name}): {span:.0f} ms observed, the posterior was trained on "
                         f"{train_window:.0f}-ms windows; burst features of short recordings are less reliable")  # fmt: skip
        name = str(st.name or i)
        ood = out_of_distribution(post, x[0], d)  # against the amortised posterior's training set
        for w in ood:
            warnings.warn(f"train {i} ({name}): {w}", UserWarning, stacklevel=2)
        results.append(TrainInference(int(i), name, obs, obs["firing_class"], x[0].numpy(), d, g, seconds, span,
                                      ood, refinement=refinement, screening=screening))  # fmt: skip
        posteriors[int(i)] = post_i

    report("sample", len(chosen), len(chosen))
    # Simulations (not part of the inference time): all cells with validate, else a preview.
    validate = validate or match_class or match
    sizes = [t.conductances.shape[0] if validate else min(int(preview), t.conductances.shape[0]) for t in results]
    for done, t, k in zip(np.cumsum([0, *sizes[:-1]]), results, sizes):
        if k == 0:
            continue
        check_cancel("before simulating")
        t.simulated = np.arange(k)
        proto = dict(duration=window[1], transient=window[0], dt=sim.dt if sim is not None else None)
        noise = dict(noise_std=sigma, seed=rng) if sigma > 0 else {}
        step = None if on_progress is None else (lambda c, _, done=int(done): report("simulate", done + c, sum(sizes)))
        t.simulation = simulate(m, t.conductances[:k], progress=progress, n_threads=n_threads, on_progress=step,
                                **monitored, **noise, **proto)  # fmt: skip
        matched = None
        if match_class or match:
            matched = class_matched_population(
                posteriors[t.index], torch.as_tensor(t.x)[None], t.observed_class, int(n), first=(t.dics, t.conductances, t.simulation),
                observed=t.observed_features if match else None, tolerances=tolerances,
                max_draws=max_draws, noise_std=sigma, noise_repeats=noise_repeats, seed=rng, n_threads=n_threads,
                progress=progress, cancel=cancel, **proto,
            )  # fmt: skip
            k = len(matched.conductances)
            if k == 0:  # nothing to write or plot: say why rather than return an empty population
                raise InvalidInputError(f"max_draws: none of the {matched.drawn} cells drawn for train {t.index} "
                                        f"({t.name}) fires like the recording ({t.observed_class}); raise max_draws "
                                        "or drop match_class / match")  # fmt: skip
            t.dics, t.conductances, t.simulation = matched.dics, matched.conductances, matched.simulation
            t.simulated = np.arange(k)
            if not matched.complete:
                notes.append(f"train {t.index} ({t.name}): only {k} of {matched.drawn} cells drawn fire like the "
                             f"recording ({t.observed_class}); the population has {k} cells, not {n} (raise max_draws)")  # fmt: skip
        if traces:
            check_cancel("before the voltage traces")
            t.traces = simulate(m, t.conductances[: min(int(traces), k)], record_voltage=True, sampling_interval=0.5,
                                progress=False, **noise, **proto)  # fmt: skip
        t.fidelity = fidelity_report(t.simulation.features(), t.observed_features)
        t.fidelity["simulated_cells"] = int(k)
        t.fidelity["all_cells"] = bool(validate)
        if matched is not None:
            t.fidelity["class_matching"] = matched.summary()
    return InferenceResult(m, rec, info, int(n), seed, bool(validate), results, notes, sigma)
