"""Writing Neo objects to NIX files, and the compact NIX layout of simulated populations' spike trains.

Neo's NIX layout stores every spike train as its own data array with its own metadata section: ~16 kB per
train before any spike, 42 MB for an inferred population of 1 000 cells. :func:`write_spike_groups` stores each
population in two data arrays (all spike times, and the cell each spike belongs to), ~10 bytes per spike;
:func:`read_spike_groups` reads them back as a ``neo.Block`` with one ``neo.SpikeTrain`` per cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import RecordingError
from .atomic import atomic_file

__all__ = ["write_nix_block", "SpikeGroup", "write_spike_groups", "read_spike_groups", "SPIKE_GROUPS_LAYOUT"]

#: Value of the ``layout`` property of the file section that marks a compact spike file.
SPIKE_GROUPS_LAYOUT = "dic_sbi spike groups 1"


def write_nix_block(path: str | os.PathLike, block) -> Path:
    """Write the ``neo.Block`` to the NIX file ``path`` atomically (replacing it; nothing partial on error)."""
    from neo.io import NixIO

    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.unlink()  # NixIO refuses to overwrite an existing non-NIX file (the empty placeholder) in mode "ow"
        with NixIO(str(tmp), mode="ow") as io:
            io.write_block(block)
    return path


@dataclass(frozen=True)
class SpikeGroup:
    """The spike trains of a group of simulated cells sharing one window (one block of a compact spike file).

    Attributes
    ----------
    name
        Name of the group (e.g. the recorded train it was inferred from).
    cells
        ``(k,)`` index of each simulated cell (e.g. its row in ``population.csv``), silent cells included.
    times, offsets
        Flat spike times (ms) and ``(k + 1,)`` offsets: cell ``cells[j]`` fired ``times[offsets[j]:offsets[j+1]]``.
    t_start, t_stop
        The window of the simulated trains (ms).
    observed
        Optional recorded ``neo.SpikeTrain`` stored beside them.
    conductances, conductance_names
        Optional ``(k, n)`` conductances of the cells (mS/cm²) and their names.
    """

    name: str
    cells: np.ndarray
    times: np.ndarray
    offsets: np.ndarray
    t_start: float
    t_stop: float
    observed: Any = None
    conductances: np.ndarray | None = None
    conductance_names: Sequence[str] = ()


def write_spike_groups(path: str | os.PathLike, groups: Sequence[SpikeGroup], *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``groups`` to the NIX file ``path`` in the compact layout, atomically (nothing partial on error).

    Per group, a NIX block holding the data arrays ``spike_times`` (ms) and ``cell`` (the cell of each spike),
    ``cells`` (every simulated cell, silent ones included), optionally ``conductances`` and
    ``observed_spike_times``; the window is in the block's metadata (``t_start_ms``, ``t_stop_ms``).
    ``metadata`` (str, int, float or bool values) goes to the file's section. Read it back with
    :func:`read_spike_groups`.
    """
    import nixio

    path = Path(path)
    with atomic_file(path) as tmp:
        f = nixio.File.open(str(tmp), nixio.FileMode.Overwrite, compression=nixio.Compression.DeflateNormal)
        try:
            sec = f.create_section("dic_sbi", "dic_sbi.spike_groups")
            sec["layout"] = SPIKE_GROUPS_LAYOUT
            for key, value in (metadata or {}).items():
                sec[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
            for g in groups:
                cells = np.asarray(g.cells, dtype=np.int64).reshape(-1)
                offsets = np.asarray(g.offsets, dtype=np.int64).reshape(-1)
                times = np.asarray(g.times, dtype=np.float64).reshape(-1)
                if offsets.size != cells.size + 1 or offsets[0] != 0 or offsets[-1] != times.size:
                    raise ValueError(f"group {g.name!r}: offsets do not match {cells.size} cells and {times.size} spikes")
                block = f.create_block(g.name, "dic_sbi.spike_group")
                meta = sec.create_section(g.name, "dic_sbi.spike_group")
                meta["t_start_ms"], meta["t_stop_ms"] = float(g.t_start), float(g.t_stop)
                block.metadata = meta
                _array(block, "spike_times", times, "ms")
                _array(block, "cell", np.repeat(cells, np.diff(offsets)), None)
                _array(block, "cells", cells, None)
                if g.conductances is not None:
                    da = block.create_data_array("conductances", "dic_sbi.conductances",
                                                 data=np.asarray(g.conductances, dtype=np.float64))  # fmt: skip
                    da.unit = "mS/cm^2"
                    da.append_set_dimension()
                    da.append_set_dimension(labels=list(g.conductance_names))
                if g.observed is not None:
                    obs = g.observed
                    _array(block, "observed_spike_times", np.asarray(obs.rescale("ms").magnitude, dtype=np.float64), "ms")
                    meta["observed_t_start_ms"] = float(obs.t_start.rescale("ms").magnitude)
                    meta["observed_t_stop_ms"] = float(obs.t_stop.rescale("ms").magnitude)
                    meta["observed_name"] = str(obs.name or "observed")
        finally:
            f.close()
    return path


def _array(block, name: str, data: np.ndarray, unit: str | None) -> None:
    import nixio

    dtype = nixio.DataType.Double if data.dtype.kind == "f" else nixio.DataType.Int64
    da = block.create_data_array(name, f"dic_sbi.{name}", dtype=dtype, shape=data.shape)
    if data.size:
        da.write_direct(data)
    if unit is not None:
        da.unit = unit
    da.append_set_dimension()


def read_spike_groups(path: str | os.PathLike):
    """Read a file written by :func:`write_spike_groups` (e.g. an inference's ``simulated_spikes.nix``).

    Returns
    -------
    neo.Block
        One segment per group, named as the group: the observed train first when stored (name ``"observed"``,
        annotation ``observed=True``), then one ``neo.SpikeTrain`` (ms) per cell, named ``"cell {i}"`` and
        annotated with ``cell`` (its index), ``observed=False`` and, when stored, its conductances
        (``g_Na``, ... in mS/cm²).

    Raises
    ------
    RecordingError
        The file is missing or is not a compact spike file.
    """
    import neo
    import nixio
    import quantities as pq

    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    try:
        f = nixio.File.open(str(path), nixio.FileMode.ReadOnly)
    except Exception as err:  # noqa: BLE001 -- h5py/nixio raise several kinds on a file that is not NIX
        raise RecordingError(f"{path}: not a NIX file ({type(err).__name__}: {err})") from None
    try:
        secs = [s for s in f.sections if s.type == "dic_sbi.spike_groups"]
        if not secs or secs[0].props["layout"].values[0] != SPIKE_GROUPS_LAYOUT:
            raise RecordingError(f"{path}: not a dic_sbi compact spike file (layout {SPIKE_GROUPS_LAYOUT!r}); "
                                 "read Neo NIX files with dic_sbi.read_recording")  # fmt: skip
        sec = secs[0]
        out = neo.Block(name=path.stem, **{p.name: p.values[0] for p in sec.props if p.name != "layout"})
        for block in f.blocks:
            meta = block.metadata
            seg = neo.Segment(name=block.name)
            arrays = block.data_arrays
            if "observed_spike_times" in arrays:
                seg.spiketrains.append(neo.SpikeTrain(
                    np.asarray(arrays["observed_spike_times"][:], dtype=float) * pq.ms,
                    t_start=meta["observed_t_start_ms"] * pq.ms, t_stop=meta["observed_t_stop_ms"] * pq.ms,
                    name="observed", observed=True, source=str(meta["observed_name"]),
                ))  # fmt: skip
            times = np.asarray(arrays["spike_times"][:], dtype=float)
            owner = np.asarray(arrays["cell"][:], dtype=np.int64)
            cells = np.asarray(arrays["cells"][:], dtype=np.int64)
            g = names = None
            if "conductances" in arrays:
                g = np.asarray(arrays["conductances"][:], dtype=float)
                names = arrays["conductances"].dimensions[1].labels
            t0, t1 = meta["t_start_ms"] * pq.ms, meta["t_stop_ms"] * pq.ms
            # the writer stores each cell's spikes as one run, in the order of `cells`
            ids, counts = np.unique(owner, return_counts=True)
            per_cell = dict(zip(ids.tolist(), counts.tolist()))
            offsets = np.concatenate([[0], np.cumsum([per_cell.get(int(c), 0) for c in cells], dtype=np.int64)])
            for j, c in enumerate(cells):
                ann = {"cell": int(c), "observed": False}
                if g is not None:
                    ann.update({f"g_{n}": float(v) for n, v in zip(names, g[j])})
                seg.spiketrains.append(neo.SpikeTrain(times[offsets[j] : offsets[j + 1]] * pq.ms, t_start=t0, t_stop=t1,
                                                      name=f"cell {int(c)}", **ann))  # fmt: skip
            out.segments.append(seg)
        return out
    finally:
        f.close()
