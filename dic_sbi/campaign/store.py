"""The on-disk store of a simulation campaign: one zarr v3 group, written chunk by chunk, read only where complete.

Layout of ``DIR``::

    DIR/zarr.json              group metadata; attribute "campaign" holds the campaign's settings
    DIR/theta                  (num, d) float32      parameters drawn from the prior
    DIR/conductances           (num, n) float64      the simulated cells (θ itself for a ConductancePrior)
    DIR/x                      (num, k) float32      encoded features (sbi's x)
    DIR/spike_counts           (num,)   int64        spikes in the recorded window
    DIR/spike_times/00000012   (m,)     float64      optional: the spike times of chunk 12, CSR by spike_counts
    DIR/_complete/00000012.json                      completion marker of chunk 12 (rows, SHA-256 of every array)

Every zarr array is chunked by the campaign's chunk size, so campaign chunk ``k`` is exactly zarr chunk ``k`` of
every array and a chunk's writes never touch another chunk's files. A chunk is *complete* when its marker
exists; the marker is written last, atomically (temporary file, ``fsync``, ``os.replace``), so a chunk killed
half-way has no marker: its files are ignored by the reader and overwritten when the campaign resumes. The
checksums in the marker let the reader detect a complete chunk damaged afterwards (truncated or edited files).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import DicSbiError, InvalidInputError

__all__ = ["CampaignStore", "StoreChunk", "CorruptStoreError", "FIELDS", "NOISE_FIELD", "JITTER_FIELD", "FORMAT", "FORMAT_VERSION"]

FORMAT = "dic_sbi.campaign"
FORMAT_VERSION = 1
#: Per-row arrays of a store (``spike_times`` is per chunk, see the module docstring).
FIELDS: tuple[str, ...] = ("theta", "conductances", "x", "spike_counts")
#: Per-row array of campaigns that draw the noise level per simulation (``noise_std`` a range in the config).
NOISE_FIELD = "noise_std"
#: Per-row spike-time jitter sd (ms) of campaigns with ``jitter`` in the config.
JITTER_FIELD = "jitter_std"
_MARKERS = "_complete"
_TIMES = "spike_times"


class CorruptStoreError(DicSbiError):
    """A store, or a chunk marked complete, cannot be read back as written (damaged, truncated, not a store)."""


@dataclass
class StoreChunk:
    """One complete chunk: rows ``start:stop`` of the campaign.

    ``spike_times`` (flat, ms) is ``None`` unless the campaign kept spike times and they were asked for; the
    spikes of row ``i`` of the chunk are ``spike_times[offsets[i]:offsets[i + 1]]`` with
    ``offsets = [0, cumsum(spike_counts)]``.
    """

    index: int
    start: int
    stop: int
    theta: NDArray[np.float32] | None = None
    conductances: NDArray[np.float64] | None = None
    x: NDArray[np.float32] | None = None
    spike_counts: NDArray[np.int64] | None = None
    spike_times: NDArray[np.float64] | None = None
    noise_std: NDArray[np.float64] | None = None
    jitter_std: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return self.stop - self.start


def _digest(a: NDArray[Any]) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _chunk_name(k: int) -> str:
    return f"{k:08d}"


def _write_json_atomic(path: Path, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())  # the marker must not reach disk before its content
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CampaignStore:
    """A campaign store on disk (see the module docstring for the layout).

    Create one with :meth:`create` (done by :func:`~dic_sbi.campaign.run_campaign`), open one with
    :meth:`open`. Readers see complete chunks only, in order.
    """

    def __init__(self, path: Path, config: dict) -> None:
        self.path = Path(path)
        self.config = config

    # -- creation and opening -------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, config: dict, shapes: dict[str, tuple[tuple[int, ...], str]]) -> "CampaignStore":
        """Create an empty store at ``path`` (must not exist), atomically: built beside it, then renamed."""
        import zarr

        path = Path(path)
        if path.exists():
            raise InvalidInputError(f"store: {path} already exists")
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.creating.", dir=path.parent))
        try:
            group = zarr.open_group(str(staging), mode="w", attributes={"campaign": config})
            chunk = int(config["chunk_size"])
            for name, (shape, dtype) in shapes.items():
                fill = 0 if np.dtype(dtype).kind == "i" else np.nan
                group.create_array(name, shape=shape, chunks=(chunk,) + shape[1:], dtype=dtype, fill_value=fill)
            group.create_group(_TIMES)
            (staging / _MARKERS).mkdir()
            os.replace(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return cls(path, config)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "CampaignStore":
        """Open an existing store (read its settings; no data is read)."""
        import zarr

        path = Path(path)
        if not path.is_dir():
            raise InvalidInputError(f"store: {path} is not a directory")
        try:
            attrs = dict(zarr.open_group(str(path), mode="r").attrs)
        except Exception as err:  # noqa: BLE001 - any failure to parse the metadata means "not a store"
            raise CorruptStoreError(f"store: {path} is not a readable zarr group ({type(err).__name__}: {err})") from None
        config = attrs.get("campaign")
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise CorruptStoreError(f"store: {path} is not a dic_sbi campaign store (no 'campaign' attribute)")
        if config.get("format_version") != FORMAT_VERSION:
            raise CorruptStoreError(
                f"store: {path} has format version {config.get('format_version')!r}; this dic_sbi reads {FORMAT_VERSION}"
            )
        return cls(path, config)

    # -- geometry --------------------------------------------------------------------------------------------
    @property
    def num(self) -> int:
        return int(self.config["num"])

    @property
    def chunk_size(self) -> int:
        return int(self.config["chunk_size"])

    @property
    def n_chunks(self) -> int:
        return -(-self.num // self.chunk_size)

    @property
    def fields(self) -> tuple[str, ...]:
        """Per-row fields of this store: :data:`FIELDS`, plus ``noise_std`` when the noise level was drawn per row
        and ``jitter_std`` when spike times were jittered."""
        return (FIELDS + ((NOISE_FIELD,) if isinstance(self.config.get("noise_std"), list) else ())
                + ((JITTER_FIELD,) if self.config.get("jitter") else ()))  # fmt: skip

    def rows(self, k: int) -> tuple[int, int]:
        """Rows ``(start, stop)`` of chunk ``k``."""
        if not 0 <= k < self.n_chunks:
            raise InvalidInputError(f"chunk: expected 0 <= chunk < {self.n_chunks}, got {k}")
        return k * self.chunk_size, min(self.num, (k + 1) * self.chunk_size)

    # -- markers ---------------------------------------------------------------------------------------------
    def _marker_path(self, k: int) -> Path:
        return self.path / _MARKERS / f"{_chunk_name(k)}.json"

    def _marker(self, k: int) -> dict | None:
        """The marker of chunk ``k``, or ``None`` when absent or unreadable (then the chunk is not complete)."""
        try:
            m = json.loads(self._marker_path(k).read_text())
        except (OSError, ValueError):
            return None
        start, stop = self.rows(k)
        if not isinstance(m, dict) or m.get("chunk") != k or m.get("rows") != [start, stop] or not isinstance(m.get("sha256"), dict):
            return None
        return m

    def complete_chunks(self) -> list[int]:
        """Indices of the chunks marked complete, in order."""
        done = []
        for p in sorted((self.path / _MARKERS).glob("*.json")):
            try:
                k = int(p.stem)
            except ValueError:
                continue  # a temporary marker (".00000012.json.xyz") or a stray file
            if 0 <= k < self.n_chunks and self._marker(k) is not None:
                done.append(k)
        return done

    def pending_chunks(self) -> list[int]:
        """Indices of the chunks not (yet) complete, in order."""
        done = set(self.complete_chunks())
        return [k for k in range(self.n_chunks) if k not in done]

    @property
    def is_complete(self) -> bool:
        return len(self.complete_chunks()) == self.n_chunks

    def n_complete_rows(self) -> int:
        return sum(b - a for a, b in map(self.rows, self.complete_chunks()))

    # -- writing ---------------------------------------------------------------------------------------------
    def write_chunk(self, k: int, data: dict[str, NDArray[Any]]) -> None:
        """Write chunk ``k`` (every field of :data:`FIELDS`, plus ``spike_times`` if kept), then mark it complete.

        Rewriting a chunk that is not complete is safe: its marker is removed first, so a reader never sees a
        mix of old and new data.
        """
        import zarr

        start, stop = self.rows(k)
        self._marker_path(k).unlink(missing_ok=True)
        group = zarr.open_group(str(self.path), mode="r+")
        sums = {}
        for name in self.fields:
            arr = np.asarray(data[name])
            if arr.shape[0] != stop - start:
                raise InvalidInputError(f"data: {name} has {arr.shape[0]} rows, chunk {k} has {stop - start}")
            group[name][start:stop] = arr
            sums[name] = _digest(arr.astype(group[name].dtype))
        if self.config.get("spike_times"):
            times = np.asarray(data["spike_times"], dtype=np.float64)
            if times.size != int(np.sum(data["spike_counts"])):
                raise InvalidInputError(f"data: chunk {k} has {times.size} spike times for {np.sum(data['spike_counts'])} spikes")
            a = group[_TIMES].create_array(_chunk_name(k), shape=times.shape, chunks=(max(1, min(times.size, 2**20)),),
                                           dtype="float64", fill_value=np.nan, overwrite=True)  # fmt: skip
            if times.size:
                a[:] = times
            sums["spike_times"] = _digest(times)
        _write_json_atomic(self._marker_path(k), {"chunk": k, "rows": [start, stop], "sha256": sums})

    # -- reading ---------------------------------------------------------------------------------------------
    def read_chunk(self, k: int, fields: Sequence[str] = FIELDS, *, verify: bool = True) -> StoreChunk:
        """Complete chunk ``k``; raises :class:`CorruptStoreError` if it is not complete or fails its checksums."""
        import zarr

        marker = self._marker(k)
        if marker is None:
            raise CorruptStoreError(f"store: chunk {k} of {self.path} is not complete (run the campaign again to finish it)")
        start, stop = self.rows(k)
        out = StoreChunk(index=k, start=start, stop=stop)
        for name in fields:
            if name not in self.fields and name != "spike_times":
                raise InvalidInputError(f"fields: unknown field {name!r}; expected some of {self.fields + ('spike_times',)}")
            if name == "spike_times" and not self.config.get("spike_times"):
                raise InvalidInputError("fields: this campaign did not keep spike times (spike_times=False)")
            try:
                group = zarr.open_group(str(self.path), mode="r")
                arr = group[_TIMES][_chunk_name(k)][:] if name == "spike_times" else group[name][start:stop]
            except Exception as err:  # noqa: BLE001 - codec, metadata and file errors all mean a damaged chunk
                raise CorruptStoreError(
                    f"store: chunk {k} ({name}) of {self.path} cannot be read ({type(err).__name__}: {err}); "
                    "delete its marker _complete/" + _chunk_name(k) + ".json and resume the campaign to recompute it"
                ) from None
            if verify and marker["sha256"].get(name) != _digest(arr):
                raise CorruptStoreError(
                    f"store: chunk {k} ({name}) of {self.path} does not match its checksum; delete its marker "
                    f"_complete/{_chunk_name(k)}.json and resume the campaign to recompute it"
                )
            setattr(out, name, arr)
        return out

    def iter_chunks(self, fields: Sequence[str] = FIELDS, *, verify: bool = True) -> Iterator[StoreChunk]:
        """The complete chunks, in order (a chunk completed while iterating is seen if not yet passed)."""
        for k in self.complete_chunks():
            yield self.read_chunk(k, fields, verify=verify)

    def read(self, fields: Sequence[str] = ("theta", "x"), *, verify: bool = True,
             num: int | None = None) -> dict[str, NDArray[Any]]:  # fmt: skip
        """Every complete row, concatenated in order (fits in memory only for small campaigns).

        ``num``: only the first ``num`` rows' chunks (a whole number of chunks: the same campaign with fewer
        simulations, read from a store grown beyond it)."""
        if num is not None and (isinstance(num, bool) or not isinstance(num, (int, np.integer)) or not 0 < num <= self.num
                                or (num % self.chunk_size and num != self.num)):
            raise InvalidInputError(f"num: expected a multiple of the chunk size {self.chunk_size} up to {self.num} "
                                    f"(or {self.num}), got {num!r}")  # fmt: skip
        limit = self.n_chunks if num is None else -(-int(num) // self.chunk_size)
        chunks = [self.read_chunk(k, fields, verify=verify) for k in self.complete_chunks() if k < limit]
        out: dict[str, NDArray[Any]] = {}
        for name in fields:
            parts = [getattr(c, name) for c in chunks]
            out[name] = np.concatenate(parts) if parts else np.empty((0,))
        out["rows"] = np.concatenate([np.arange(c.start, c.stop) for c in chunks]) if chunks else np.empty(0, np.int64)
        return out

    def grow(self, num: int) -> None:
        """Extend the store to ``num`` rows: the same campaign with more simulations.

        Chunk ``k`` depends only on ``(seed, k)``, so every complete full chunk stays valid; a partial last
        chunk loses its marker (its rows change) and is recomputed. The arrays grow first and the settings are
        rewritten last, so an interrupted call leaves a store that reads as before and can be grown again.
        """
        import zarr

        if not isinstance(num, (int, np.integer)) or isinstance(num, bool) or num < self.num:
            raise InvalidInputError(f"num: a store only grows; it holds {self.num} rows, asked {num!r}")
        if num == self.num:
            return
        group = zarr.open_group(str(self.path), mode="r+")
        for name in (*FIELDS, NOISE_FIELD, JITTER_FIELD):  # not group.array_keys(): it warns on _complete/
            if not (self.path / name).is_dir():
                continue
            arr = group[name]
            arr.resize((int(num),) + tuple(arr.shape[1:]))
        config = {**self.config, "num": int(num)}
        group.attrs.update({"campaign": config})
        self.config = config

    def invalidate(self, k: int) -> None:
        """Forget chunk ``k`` (remove its marker): the next run recomputes it."""
        self._marker_path(k).unlink(missing_ok=True)

    def __repr__(self) -> str:
        c = self.config
        return (f"CampaignStore({str(self.path)!r}: {c.get('model')} / {c.get('prior')} prior, "
                f"{self.n_complete_rows()}/{self.num} simulations in {len(self.complete_chunks())}/{self.n_chunks} chunks)")  # fmt: skip
