"""Reading recordings into :class:`neo.SpikeTrain` objects, with the provenance of every train.

Three kinds of file:

- any format Neo reads (NIX, ABF, NWB, Spike2, ...; chosen from the file extension as :func:`neo.io.get_io`
  does): recorded spike trains are used as they are; when a segment holds none, spikes are detected in its
  voltage signals with :func:`dic_sbi.spiketrains.detect_spikes`;
- the Spike2Pop CSV: a header whose first column is ``ID``, then one row per cell with its spike times (ms) as a
  quoted list ``"[t1, t2, ...]"`` (what ``dic-sbi simulate`` writes);
- plain text: the spike times of one cell, one per line or separated by whitespace or commas, ms by default;
  lines starting with ``#`` are comments.

Every problem raises :class:`~dic_sbi.errors.RecordingError` with the file name and what to do. A train with
too few spikes (a sweep below threshold in a step protocol) is skipped with a note in :attr:`Recording.notes`,
not an error, as long as one train remains.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import neo
import numpy as np
import quantities as pq

from ..errors import InvalidInputError, RecordingError
from ..spiketrains import SPIKE_THRESHOLD_MV, detect_spikes, spike_times_ms, to_spiketrain

__all__ = ["read_recording", "read_voltage", "Recording", "TrainOrigin", "FORMATS"]

#: Format names besides Neo's IO classes (``"NixIO"``, ``"AxonIO"``, ... or ``"nix"``, ``"axon"``, ``"abf"``).
FORMATS = ("spike2pop", "text", "neo")
#: Extensions read by dic_sbi's own readers when no format is given (Neo's AsciiSignalIO also claims them).
_TEXT_EXTENSIONS = {".csv": "spike2pop", ".txt": "text", ".tsv": "text"}
_SPIKES_FROM = ("auto", "recorded", "voltage")
#: Python packages that Neo IOs import lazily, by module name -> the name ``pip install`` needs.
_PIP_NAMES = {"igor2": "igor2", "pynwb": "pynwb", "hdmf": "pynwb", "h5py": "h5py", "pyedflib": "pyedflib",
              "sonpy": "sonpy", "nixio": "nixio", "scipy": "scipy", "tifffile": "tifffile", "PIL": "pillow",
              "klusta": "klusta", "probeinterface": "probeinterface", "zugbruecke": "zugbruecke"}  # fmt: skip
#: Words that mark a Neo epoch as the stimulus (step, pulse) of a sweep.
_STIMULUS_WORDS = ("stim", "step", "pulse", "current injection")


@dataclass(frozen=True)
class TrainOrigin:
    """Where one spike train came from.

    Attributes
    ----------
    segment
        Index of the segment (sweep) across all blocks of the file; 0 for text formats.
    channel
        Index of the recorded train within its segment, of the voltage channel (counted across the segment's
        analog signals), or of the cell row in a CSV.
    name
        Name of the train, signal channel or CSV ``ID``.
    detected
        True when the spikes were detected from membrane potential, False when read as recorded.
    """

    segment: int
    channel: int
    name: str
    detected: bool


@dataclass(frozen=True)
class Recording:
    """Spike trains read from a file, in ms, with their provenance.

    Iterating, ``len`` and indexing go over :attr:`spiketrains`. :attr:`notes` says what was skipped or
    looks doubtful (trains with too few spikes, suspiciously few detected spikes, stimulus windows used).
    """

    path: Path
    format: str
    spiketrains: tuple[neo.SpikeTrain, ...]
    origins: tuple[TrainOrigin, ...]
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.spiketrains)

    def __iter__(self) -> Iterator[neo.SpikeTrain]:
        return iter(self.spiketrains)

    def __getitem__(self, i: int) -> neo.SpikeTrain:
        return self.spiketrains[i]


def read_recording(
    path: str | Path,
    *,
    format: str | None = None,
    threshold: Any = SPIKE_THRESHOLD_MV,
    rearm: Any = None,
    segments: int | Sequence[int] | None = None,
    sweeps: int | Sequence[int] | None = None,
    channels: int | str | Sequence[int | str] | None = None,
    units: str | pq.Quantity | None = None,
    spikes_from: str = "auto",
    t_start: Any = None,
    t_stop: Any = None,
    min_spikes: int = 3,
) -> Recording:
    """Read the spike trains of a recording.

    Parameters
    ----------
    path
        The file (or, for folder-based Neo formats, the folder).
    format
        ``"spike2pop"``, ``"text"``, ``"neo"`` (Neo guesses from the extension) or a Neo IO name (``"NixIO"``,
        ``"nix"``, ``"AxonIO"``, ``"abf"``, ...). Default: ``.csv`` is Spike2Pop, ``.txt`` / ``.tsv``
        plain text, anything else Neo.
    threshold, rearm
        Spike detection levels for voltage signals (mV or voltage quantities), see
        :func:`~dic_sbi.spiketrains.detect_spikes`: +10 mV and 0 mV by default (the simulator's rule);
        ``threshold="auto"`` derives both from each trace (for spikes that peak below 0 mV or traces that rest
        near 0 mV). A trace in which the fixed levels find fewer than ``min_spikes`` spikes but the trace-derived
        ones find more gets a note saying so.
    segments, sweeps
        Segment indices to keep (a sweep is a segment; give one of the two), counted across the file's blocks.
        Default: all.
    channels
        Within each segment: indices (or names) of the recorded spike trains, or of the voltage channels counted
        across the segment's analog signals. Default: all (non-voltage signals such as a command current are
        then skipped).
    units
        Text formats: the time unit of the spike times (default ms; e.g. ``"s"``). Neo formats: the voltage
        unit of signals stored without one (dimensionless).
    spikes_from
        ``"auto"``: a segment's recorded spike trains if it has any, else detection from its voltage signals;
        ``"recorded"`` or ``"voltage"`` to use only one source.
    t_start, t_stop
        The observation window (ms or time quantities). Neo formats: each train is cut to it (times relative to
        the file's clock); by default the whole sweep, or, when the sweep has an epoch named or labelled as the
        stimulus (``stim``, ``step``, ``pulse``), that epoch, with a note. Text formats: a text file carries no
        window, so by default each train's window is the span of its spikes widened by half a mean ISI at each end (the
        rate is then that of a train firing its mean ISI throughout; spike times need not start at 0). Give
        the window when the recording's true length (e.g. silent stretches) matters. With only one of them,
        the other defaults to 0 / the last spike.
    min_spikes
        Minimum spikes per train (3: what a firing pattern, and DIC inference, needs); trains with fewer (e.g.
        sweeps below threshold) are skipped with a note; 0 keeps every train.

    Returns
    -------
    Recording
        Trains in ms annotated with ``segment``, ``channel`` and ``detected``, and the same provenance in
        :attr:`Recording.origins`.

    Raises
    ------
    RecordingError
        Missing, unreadable, empty or corrupt file; a folder or device instead of a file; a reader whose optional
        package is missing (named, with the ``pip install`` line); unknown format; no spikes or no voltage signal;
        no train with ``min_spikes`` spikes; NaN, infinite, unsorted, duplicate or negative times; wrong units; a
        selection outside the file.
    """
    try:
        path = Path(path)
    except TypeError:
        raise RecordingError(f"recording: expected a path, got {type(path).__name__} {path!r}.") from None
    _check_place(path)
    if spikes_from not in _SPIKES_FROM:
        raise RecordingError(f"{path}: spikes_from must be one of {_SPIKES_FROM}, got {spikes_from!r}.")
    if segments is not None and sweeps is not None:
        raise RecordingError(f"{path}: give segments or sweeps (the same thing), not both.")
    if not isinstance(min_spikes, (int, np.integer)) or isinstance(min_spikes, bool) or min_spikes < 0:
        raise RecordingError(f"{path}: min_spikes must be an int >= 0, got {min_spikes!r}.")
    selected = segments if segments is not None else sweeps
    kind, ios = _resolve_format(path, format)

    notes: list[str] = []
    if kind in ("spike2pop", "text"):
        _select(path, selected, ["0"], "segment")  # a text file is one segment
        time_unit = _unit(path, units, pq.ms, "time", "ms")
        rows = _read_spike2pop(path) if kind == "spike2pop" else [("0", _read_text(path))]
        trains, origins = _text_trains(path, rows, time_unit, channels, t_start, t_stop)
    else:
        try:
            window = _window(t_start, t_stop)
        except InvalidInputError as err:
            raise RecordingError(f"{path}: {err}") from None
        voltage_unit = None if units is None else _unit(path, units, pq.mV, "voltage", "mV")
        blocks, kind = _read_neo(path, ios)
        trains, origins = _neo_trains(
            path, blocks, selected, channels, spikes_from, threshold, rearm, voltage_unit, window, min_spikes, notes
        )

    trains, origins = _check_counts(path, trains, origins, min_spikes, notes)
    return Recording(path=path, format=kind, spiketrains=tuple(trains), origins=tuple(origins), notes=tuple(notes))


def read_voltage(
    path: str | Path, *, segment: int = 0, channel: int = 0, format: str | None = None,
    units: str | pq.Quantity | None = None,
) -> neo.AnalogSignal:
    """The membrane potential of one channel of a Neo recording, in mV: what :func:`read_recording` detects
    spikes in (to show a trace with its spikes, or to choose a threshold).

    Parameters
    ----------
    path, format, units
        As :func:`read_recording` (``units``: the voltage unit of a signal stored without one).
    segment, channel
        The segment (sweep) across the file's blocks, and the channel counted across its analog signals, as in
        :attr:`TrainOrigin.segment` and :attr:`TrainOrigin.channel` of a detected train.

    Raises
    ------
    RecordingError
        A file that is not a Neo recording (spike-time text has no voltage), unreadable or corrupt; no such
        segment or channel; a channel that is not a voltage.
    """
    path = Path(path)
    _check_place(path)
    kind, ios = _resolve_format(path, format)
    if kind != "neo":
        raise RecordingError(f"{path}: a {kind} file holds spike times, no membrane potential.")
    voltage_unit = None if units is None else _unit(path, units, pq.mV, "voltage", "mV")
    blocks, _ = _read_neo(path, ios)
    segs = [seg for block in blocks for seg in block.segments]
    s = _select(path, segment, [str(seg.name) for seg in segs], "segment")[0]
    chans = _voltage_channels(segs[s])
    c = _select(path, channel, [n for _, _, n in chans], f"voltage channel of segment {s}")[0]
    sig, col, name = chans[c]
    sig = _as_voltage(path, sig, voltage_unit, name, s, explicit=True)
    return sig[:, col].rescale(pq.mV)


def _check_place(path: Path) -> None:
    """A recording must be an existing, non-empty regular file (or a folder that a folder-based Neo IO reads)."""
    if not path.exists():
        raise RecordingError(f"{path}: no such file or folder.")
    if path.is_dir():
        return  # checked against the folder-based Neo IOs in _resolve_format
    if not path.is_file():
        raise RecordingError(f"{path}: not a regular file (a device, pipe or socket); give a recording file.")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise RecordingError(f"{path}: cannot read the file ({err.strerror}).") from None
    if size == 0:
        raise RecordingError(f"{path}: the file is empty (0 bytes): no spikes.")


def _window(t_start: Any, t_stop: Any) -> tuple[float | None, float | None]:
    from ..spiketrains.convert import _window_ms

    return _window_ms(t_start, t_stop)


# --------------------------------------------------------------------------------------------------------------
# Format and units
# --------------------------------------------------------------------------------------------------------------


def _neo_io_names() -> dict[str, type]:
    """Neo IO classes by lower-case name, name without ``io`` and extension (the first IO wins)."""
    names: dict[str, type] = {}
    for io in neo.io.iolist:
        name = io.__name__.lower()
        names.setdefault(name, io)
        names.setdefault(name.removesuffix("io"), io)
    for io in neo.io.iolist:
        for ext in getattr(io, "extensions", []):
            names.setdefault(ext.lower(), io)
    return names


def _resolve_format(path: Path, format: str | None) -> tuple[str, list[type]]:
    """(kind, candidate Neo IO classes); kind is ``spike2pop``, ``text`` or ``neo``."""
    if path.is_dir():
        try:
            kind, ios = _resolve_any_format(path, format)
        except RecordingError:
            kind, ios = "neo", []
        folder_ios = [io for io in ios if getattr(io, "mode", "file") == "dir"]
        if kind != "neo" or not folder_ios:
            readers = sorted(io.__name__ for io in neo.io.iolist if getattr(io, "mode", "file") == "dir")
            raise RecordingError(
                f"{path}: is a folder, not a recording file; give the file inside it (only folder-based Neo formats "
                f"are read from a folder: {', '.join(readers)}, with format=)."
            )
        return kind, folder_ios
    return _resolve_any_format(path, format)


def _resolve_any_format(path: Path, format: str | None) -> tuple[str, list[type]]:
    if format is None:
        suffix = path.suffix.lower()
        if path.is_file() and suffix in _TEXT_EXTENSIONS:
            return _TEXT_EXTENSIONS[suffix], []
        try:
            ios = list(neo.io.list_candidate_ios(path))
        except ValueError:
            ios = []
        if not ios:
            raise RecordingError(
                f"{path}: unknown format (extension {suffix or 'none'!r}); neither Neo nor dic_sbi reads it. "
                f"Give format= one of {FORMATS} or a Neo IO name, or convert the file."
            )
        return "neo", ios
    if not isinstance(format, str):
        raise RecordingError(f"{path}: format must be a string, got {format!r}.")
    key = format.lower().lstrip(".")
    if key in ("spike2pop", "csv"):
        return "spike2pop", []
    if key in ("text", "txt"):
        return "text", []
    if key == "neo":
        try:
            ios = list(neo.io.list_candidate_ios(path))
        except ValueError:
            ios = []
        if not ios:
            raise RecordingError(f"{path}: Neo has no IO for this file (extension {path.suffix or 'none'!r}).")
        return "neo", ios
    io = _neo_io_names().get(key)
    if io is None:
        raise RecordingError(
            f"{path}: format={format!r} is not a format dic_sbi or Neo knows; give one of {FORMATS} or a Neo IO name "
            "(e.g. 'NixIO', 'AxonIO', 'NWBIO')."
        )
    return "neo", [io]


def _unit(path: Path, units: Any, expected: pq.Quantity, kind: str, default: str) -> pq.Quantity:
    """``units`` (a string or quantity) as a quantity of dimension ``kind``; ``expected`` when None."""
    if units is None:
        return expected
    try:
        unit = units if isinstance(units, pq.Quantity) else pq.Quantity(1.0, units)
    except (LookupError, ValueError, TypeError):
        raise RecordingError(f"{path}: units={units!r} is not a unit quantities knows (e.g. {default!r}).") from None
    try:
        unit.rescale(expected)
    except ValueError:
        raise RecordingError(
            f"{path}: units={units!r} is not a {kind} unit; give a {kind} unit such as {default!r}."
        ) from None
    return unit


# --------------------------------------------------------------------------------------------------------------
# Text formats
# --------------------------------------------------------------------------------------------------------------

_NUMBER_SPLIT = re.compile(r"[\s,;]+")


def _numbers(path: Path, text: str, where: str) -> np.ndarray:
    tokens = [t for t in _NUMBER_SPLIT.split(text.strip()) if t]
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError as err:
        raise RecordingError(
            f"{path}: {where}: not a list of numbers ({err}); for a Neo file with this extension give format='neo'."
        ) from None


def _read_text(path: Path) -> np.ndarray:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise RecordingError(f"{path}: cannot read as a text file of spike times ({err}).") from None
    body = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    return _numbers(path, body, "spike times")


def _read_spike2pop(path: Path) -> list[tuple[str, np.ndarray]]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise RecordingError(f"{path}: cannot read as a Spike2Pop CSV ({err}).") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows or rows[0][0].strip().lstrip("\ufeff").upper() != "ID":
        raise RecordingError(
            f"{path}: not a Spike2Pop CSV: the first line must be a header whose first column is 'ID' "
            '(then one row per cell: ID,"[t1, t2, ...]" in ms). For a plain list of times use format="text".'
        )
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise RecordingError(
                f"{path}: line {line}: expected 2 columns (ID and the quoted spike-time list), got {len(row)}; "
                'quote the list: 0,"[1.0, 2.0]".'
            )
        cell, times = row[0].strip(), row[1].strip()
        if not (times.startswith("[") and times.endswith("]")):
            raise RecordingError(f"{path}: line {line}: spike times must be written as \"[t1, t2, ...]\", got {times!r}.")
        out.append((cell, _numbers(path, times[1:-1], f"line {line} (ID {cell})")))
    if not out:
        raise RecordingError(f"{path}: the Spike2Pop CSV has a header but no cells: no spikes.")
    return out


def _text_trains(
    path: Path, rows: list[tuple[str, np.ndarray]], unit: pq.Quantity, channels: Any, t_start: Any, t_stop: Any
) -> tuple[list[neo.SpikeTrain], list[TrainOrigin]]:
    keep = _select(path, channels, [name for name, _ in rows], "cell")
    scale = float(unit.rescale(pq.ms).magnitude)  # times are stored in ms inside dic_sbi
    times = [rows[i][1] * scale for i in keep]
    for i, t in zip(keep, times):  # NaN, infinite, duplicate... named before any window is derived from them
        try:
            spike_times_ms(t)
        except InvalidInputError as err:
            raise RecordingError(f"{path}: cell {rows[i][0]!r}: {err}") from None
    if all(t.size == 0 for t in times):
        raise RecordingError(f"{path}: no spikes in the file.")
    trains, origins = [], []
    for i, t in zip(keep, times):
        name = rows[i][0]
        if t_start is None and t_stop is None and t.size >= 2:
            half = 0.5 * float(np.mean(np.diff(t)))  # half a mean ISI on each side (see read_recording)
            start: Any = max(0.0, float(t[0]) - half)  # negative times stay an error (before t_start = 0)
            stop: Any = float(t[-1]) + half
        else:
            start = 0.0 if t_start is None else t_start
            stop = t_stop if t_stop is not None else max(float(t[-1]) if t.size else 0.0, np.nextafter(0.0, 1.0))
        try:
            train = to_spiketrain(t, t_start=start, t_stop=stop, name=name, segment=0, channel=i, detected=False)
        except InvalidInputError as err:
            raise RecordingError(f"{path}: cell {name!r}: {err}") from None
        trains.append(train)
        origins.append(TrainOrigin(segment=0, channel=i, name=name, detected=False))
    return trains, origins


# --------------------------------------------------------------------------------------------------------------
# Neo formats
# --------------------------------------------------------------------------------------------------------------


def _read_neo(path: Path, ios: list[type]) -> tuple[list[neo.Block], str]:
    """Blocks read by the first candidate IO that can; the error of each one that cannot."""
    errors: list[tuple[bool, str]] = []
    missing_modules: list[str] = []
    for io_class in ios:
        # NixIO opens read-write by default: never risk modifying the user's recording
        kwargs = {"mode": "ro"} if io_class is neo.io.NixIO else {}
        io = None
        try:
            io = io_class(str(path), **kwargs)
            blocks = io.read(lazy=False)
        except Exception as err:  # noqa: BLE001 -- each Neo IO fails in its own way on a damaged file
            # an IO whose optional dependency is missing says nothing about the file: report it last
            missing = isinstance(err, ImportError)
            if missing:
                missing_modules.append((getattr(err, "name", None) or "an optional package").split(".")[0])
            errors.append((missing, f"{io_class.__name__}: {type(err).__name__}: {err}"))
            continue
        finally:
            close = getattr(io, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001 -- closing a half-opened file must not hide the real error
                    pass
        return list(blocks), io_class.__name__
    missing = sorted({_PIP_NAMES.get(name, name) for name in missing_modules})
    if missing and all(m for m, _ in errors):
        raise RecordingError(
            f"{path}: reading this format needs the missing package {' and '.join(missing)}: "
            f"pip install {' '.join(missing)}  ({'; '.join(msg for _, msg in errors)})."
        )
    relevant = [msg for missing, msg in errors if not missing] or [msg for _, msg in errors]
    if path.is_dir():
        raise RecordingError(f"{path}: is a folder, and no folder-based Neo reader recognises it "
                             f"({'; '.join(relevant)}); give the recording file inside it.")  # fmt: skip
    hint = f" Another reader needs the missing package {', '.join(missing)} (pip install {' '.join(missing)})." if missing else ""
    raise RecordingError(
        f"{path}: cannot read the file: it is corrupt, truncated or not in the format its extension says "
        f"({'; '.join(relevant)}).{hint}"
    )


def _select(path: Path, wanted: Any, names: list[str], what: str) -> list[int]:
    """Indices into ``names`` chosen by ``wanted`` (None: all; ints or names)."""
    if wanted is None:
        return list(range(len(names)))
    items = [wanted] if isinstance(wanted, (int, np.integer, str)) else list(wanted)
    out = []
    for item in items:
        if isinstance(item, str):
            if item not in names:
                raise RecordingError(f"{path}: no {what} named {item!r}; the file has {names}.")
            out.append(names.index(item))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not -len(names) <= item < len(names):
                raise RecordingError(f"{path}: {what} {item} does not exist; the file has {len(names)} ({names}).")
            out.append(int(item) % len(names))
        else:
            raise RecordingError(f"{path}: {what} selections must be ints or names, got {item!r}.")
    return out


def _is_voltage(units: pq.Quantity) -> bool:
    try:
        units.rescale(pq.mV)
    except ValueError:
        return False
    return True


def _voltage_channels(seg: neo.Segment) -> list[tuple[neo.AnalogSignal, int, str]]:
    """Every channel of the segment's analog signals: (signal, column, name), counted across signals."""
    out = []
    for sig in seg.analogsignals:
        names = sig.array_annotations.get("channel_names") if sig.array_annotations else None
        for c in range(sig.shape[1]):
            if names is not None and len(names) == sig.shape[1]:
                name = str(names[c])
            else:
                name = f"{sig.name}[{c}]" if sig.shape[1] > 1 else str(sig.name)
            out.append((sig, c, name))
    return out


def _neo_trains(
    path: Path,
    blocks: list[neo.Block],
    selected: Any,
    channels: Any,
    spikes_from: str,
    threshold: Any,
    rearm: Any,
    voltage_unit: pq.Quantity | None,
    window: tuple[float | None, float | None],
    min_spikes: int,
    notes: list[str],
) -> tuple[list[neo.SpikeTrain], list[TrainOrigin]]:
    segs = [seg for block in blocks for seg in block.segments]
    if not segs:
        raise RecordingError(f"{path}: the file holds no segments (no data).")
    keep = _select(path, selected, [str(s.name) for s in segs], "segment")
    trains: list[neo.SpikeTrain] = []
    origins: list[TrainOrigin] = []
    found_signal_units: list[str] = []
    for s in keep:
        seg = segs[s]
        span = _segment_window(path, seg, s, window, notes)
        use_recorded = spikes_from == "recorded" or (spikes_from == "auto" and len(seg.spiketrains) > 0)
        if use_recorded:
            names = [str(t.name) for t in seg.spiketrains]
            for c in _select(path, channels, names, f"spike train of segment {s}"):
                trains.append(_cut(path, _recorded_train(path, seg.spiketrains[c], s, c), span, s, names[c]))
                origins.append(TrainOrigin(segment=s, channel=c, name=names[c], detected=False))
            continue
        chans = _voltage_channels(seg)
        found_signal_units += [sig.units.dimensionality.string for sig, _, _ in chans]
        explicit = channels is not None
        for c in _select(path, channels, [n for _, _, n in chans], f"voltage channel of segment {s}"):
            sig, col, name = chans[c]
            sig = _as_voltage(path, sig, voltage_unit, name, s, explicit)
            if sig is None:
                continue  # a current or other non-voltage channel, not asked for by name or index
            trace = sig[:, col]
            if span is not None:
                trace = _cut_signal(path, trace, span, s, name)
            try:
                train = detect_spikes(trace, threshold=threshold, rearm=rearm)
                if not isinstance(threshold, str) and len(train) < max(min_spikes, 1):
                    # suspiciously few spikes at fixed levels: does the trace hold spikes they miss?
                    derived = detect_spikes(trace, threshold="auto")
                    if len(derived) > len(train) and len(derived) >= max(min_spikes, 1):
                        notes.append(
                            f"segment {s}, channel {name!r}: only {len(train)} spike(s) cross "
                            f"{train.annotations['threshold_mV']:g} mV, but the trace has {len(derived)} spike-like "
                            f"peaks (threshold derived from the trace: {derived.annotations['threshold_mV']:.1f} mV); "
                            "if these are spikes, use threshold='auto' (--threshold auto) or a lower threshold"
                        )  # fmt: skip
            except InvalidInputError as err:
                raise RecordingError(f"{path}: segment {s}, channel {name!r}: {err}") from None
            train.annotations.update(name=name, segment=s, channel=c, detected=True)
            train.name = name
            trains.append(train)
            origins.append(TrainOrigin(segment=s, channel=c, name=name, detected=True))
    if not trains:
        if spikes_from == "recorded":
            raise RecordingError(f"{path}: no recorded spike trains in the selected segments.")
        units = sorted(set(found_signal_units))
        raise RecordingError(
            f"{path}: no spike trains and no voltage signal in the selected segments"
            + (f" (signals in {units})" if units else "")
            + "; give a file with spike times or membrane potential, or units='mV' for a signal stored without units."
        )
    # Sweeps of a step protocol record the same channel again: name each train after its sweep too.
    names = [o.name for o in origins]
    for k, o in enumerate(origins):
        if names.count(o.name) > 1:
            name = f"{o.name} sweep {o.segment}"
            origins[k] = TrainOrigin(segment=o.segment, channel=o.channel, name=name, detected=o.detected)
            trains[k].name = name
            trains[k].annotations["name"] = name
    return trains, origins


def _segment_window(
    path: Path, seg: neo.Segment, s: int, window: tuple[float | None, float | None], notes: list[str]
) -> tuple[float | None, float | None] | None:
    """The window (ms) to cut segment ``s`` to: the one given, else its stimulus epoch if it has one, else None."""
    if window != (None, None):
        return window
    for epoch in getattr(seg, "epochs", []):
        labels = [str(epoch.name or "")] + [str(label) for label in np.asarray(epoch.labels).ravel()]
        if len(epoch) == 0 or not any(w in label.lower() for label in labels for w in _STIMULUS_WORDS):
            continue
        start = float(epoch.times.rescale(pq.ms).magnitude.min())
        stop = float((epoch.times + epoch.durations).rescale(pq.ms).magnitude.max())
        if stop > start:
            notes.append(f"segment {s}: rates measured over the stimulus epoch {epoch.name or labels[1]!r} "
                         f"({start:g}-{stop:g} ms); give t_start/t_stop (--t-start/--t-stop) for another window")  # fmt: skip
            return start, stop
    return None


def _cut(path: Path, train: neo.SpikeTrain, span: Any, s: int, name: str) -> neo.SpikeTrain:
    """A recorded train restricted to the window ``span`` (ms; None ends: the train's own)."""
    if span is None:
        return train
    lo = float(train.t_start) if span[0] is None else max(span[0], float(train.t_start))
    hi = float(train.t_stop) if span[1] is None else min(span[1], float(train.t_stop))
    if not hi > lo:
        raise RecordingError(f"{path}: segment {s}, train {name!r}: the window {span} ms does not overlap the "
                             f"recording ({float(train.t_start):g}-{float(train.t_stop):g} ms).")  # fmt: skip
    out = train.time_slice(lo * pq.ms, hi * pq.ms)
    out.annotations.update(train.annotations)
    return out


def _cut_signal(path: Path, sig: neo.AnalogSignal, span: Any, s: int, name: str) -> neo.AnalogSignal:
    t0, t1 = float(sig.t_start.rescale(pq.ms)), float(sig.t_stop.rescale(pq.ms))
    lo = t0 if span[0] is None else max(span[0], t0)
    hi = t1 if span[1] is None else min(span[1], t1)
    if not hi > lo:
        raise RecordingError(f"{path}: segment {s}, channel {name!r}: the window {span} ms does not overlap the "
                             f"recording ({t0:g}-{t1:g} ms).")  # fmt: skip
    out = sig.time_slice(lo * pq.ms, hi * pq.ms)
    if out.shape[0] < 2:
        raise RecordingError(f"{path}: segment {s}, channel {name!r}: the window {span} ms holds fewer than 2 samples.")
    return out


def _recorded_train(path: Path, train: neo.SpikeTrain, s: int, c: int) -> neo.SpikeTrain:
    """A recorded train in ms, checked (neo allows unsorted and negative times; dic_sbi does not)."""
    annotations = {k: v for k, v in train.annotations.items() if k not in ("segment", "channel", "detected")}
    try:
        return to_spiketrain(
            train, t_start=train.t_start, t_stop=train.t_stop, name=train.name, **annotations,
            segment=s, channel=c, detected=False,
        )  # fmt: skip
    except InvalidInputError as err:
        raise RecordingError(f"{path}: segment {s}, spike train {c} ({train.name!r}): {err}") from None


def _as_voltage(
    path: Path, sig: neo.AnalogSignal, voltage_unit: pq.Quantity | None, name: str, s: int, explicit: bool
) -> neo.AnalogSignal | None:
    """The signal in a voltage unit; None (skip) or an error for a non-voltage one."""
    if _is_voltage(sig.units):
        return sig
    if voltage_unit is not None and sig.units.dimensionality.string == "dimensionless":
        # the file has no unit for this signal; the caller says what it is
        return neo.AnalogSignal(
            sig.magnitude * float(voltage_unit.rescale(pq.mV).magnitude), units=pq.mV,
            sampling_period=sig.sampling_period, t_start=sig.t_start, name=sig.name,
        )  # fmt: skip
    if explicit:
        hint = " (it has no unit: pass units='mV' if it is membrane potential)" if (
            sig.units.dimensionality.string == "dimensionless"
        ) else ""
        raise RecordingError(
            f"{path}: segment {s}, channel {name!r} is in {sig.units.dimensionality.string!r}, not a voltage; "
            f"spikes can only be detected in membrane potential{hint}."
        )
    return None


def _check_counts(
    path: Path, trains: list[neo.SpikeTrain], origins: list[TrainOrigin], minimum: int, notes: list[str]
) -> tuple[list[neo.SpikeTrain], list[TrainOrigin]]:
    """The trains with at least ``minimum`` spikes; the others skipped with a note; an error if none is left."""
    counts = [len(t) for t in trains]
    if sum(counts) == 0:
        detected = any(o.detected for o in origins)
        hint = f" above the detection threshold ({trains[0].annotations.get('threshold_mV')} mV; set threshold=, or threshold='auto')" if (
            detected
        ) else ""
        raise RecordingError(f"{path}: no spikes in the selected trains{hint}." + "".join(f" Note: {n}." for n in notes))

    def what(n: int, o: TrainOrigin) -> str:
        return (f"segment {o.segment}, {'channel' if o.detected else 'train'} {o.channel} ({o.name!r}) has {n} "
                f"spike{'s' if n != 1 else ''}")  # fmt: skip

    kept = [k for k, n in enumerate(counts) if n >= minimum]
    if not kept:
        k = int(np.argmax(counts))
        others = " (no other selected train has more)" if len(counts) > 1 else ""
        raise RecordingError(
            f"{path}: {what(counts[k], origins[k])}{others}; at least {minimum} are needed to read a firing pattern. "
            "Select other segments/channels or lower min_spikes." + "".join(f" Note: {n}." for n in notes)
        )
    for k, (n, o) in enumerate(zip(counts, origins)):
        if n < minimum:
            notes.append(f"skipped {what(n, o)}, fewer than min_spikes = {minimum}")
    return [trains[k] for k in kept], [origins[k] for k in kept]
