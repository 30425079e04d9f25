"""``simulate``: the batched, parallel simulator, and the :class:`SimulationResult` it returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import scipy.signal
from numpy.typing import ArrayLike, NDArray

from .._parallel import run_ranges
from ..errors import CancelledError, InvalidInputError
from ..models import ConductanceModel, get_model
from . import kernels
from .checks import check_conductances, is_int, is_seed
from .tables import compile_model, initial_state

if TYPE_CHECKING:  # neo is imported lazily: the numerical core does not need it
    from threading import Event

    import neo

__all__ = ["simulate", "responsive_chunk_size", "SimulationResult", "NOISE_CUTOFF_HZ", "NOISE_FILTER_ORDER"]

NOISE_CUTOFF_HZ = 1000.0  # Brandoit v2: white noise low-passed at 1 kHz ...
NOISE_FILTER_ORDER = 4  # ... by a 4th-order Butterworth filter
# σ is the standard deviation of white-noise samples drawn every 0.05 ms (20 kHz). At another dt each step's sample
# is scaled by sqrt(0.05 / dt): the noise keeps its spectral density, so σ means the same current at any dt.
NOISE_SAMPLE_DT = 0.05
MAX_SPIKE_RATE_KHZ = 0.3  # first guess of the spike buffer (300 Hz); cells above it are re-run exactly
MAX_VOLTAGE_BYTES = 8 * 2**30


@dataclass
class SimulationResult:
    """Spike times (and optionally voltage traces) of a batch of simulated cells.

    Spike times are stored CSR-style, in ms from the start of the simulation: the spikes of cell ``i`` are
    ``times[offsets[i]:offsets[i + 1]]``; only spikes at ``t >= t_start`` (the end of the transient) are kept.

    Attributes
    ----------
    model
        The simulated model.
    conductances
        ``(N, n_conductances)`` maximal conductances, in the model's order.
    times, offsets
        Flat spike times (ms) and CSR offsets (length ``N + 1``).
    t_start, t_stop
        Recorded window (ms): end of the transient and end of the simulation.
    dt
        Integration step (ms).
    voltage
        ``(N, n_samples)`` membrane potential (mV) sampled every ``sampling_interval`` ms from ``t_start``, or
        ``None``.
    """

    model: ConductanceModel
    conductances: NDArray[np.float64]
    times: NDArray[np.float64]
    offsets: NDArray[np.int64]
    t_start: float
    t_stop: float
    dt: float
    i_app: NDArray[np.float64]
    noise_std: float | NDArray[np.float64]
    seed: int | None
    voltage: NDArray[np.float64] | None = None
    sampling_interval: float | None = None
    _features: object = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return self.offsets.size - 1

    @property
    def spike_counts(self) -> NDArray[np.int64]:
        """Number of recorded spikes per cell."""
        return np.diff(self.offsets)

    def spike_times(self, i: int) -> NDArray[np.float64]:
        """Spike times (ms) of cell ``i``."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"cell index {i} out of range for {n} cells")
        i %= n
        return self.times[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[NDArray[np.float64]]:
        for i in range(len(self)):
            yield self.times[self.offsets[i] : self.offsets[i + 1]]

    @property
    def voltage_times(self) -> NDArray[np.float64]:
        """Sample times (ms) of :attr:`voltage`."""
        if self.voltage is None:
            raise InvalidInputError("voltage was not recorded: call simulate(..., record_voltage=True)")
        return self.t_start + self.sampling_interval * np.arange(self.voltage.shape[1])

    def spiketrain(self, i: int) -> "neo.SpikeTrain":
        """Cell ``i`` as a :class:`neo.SpikeTrain` (ms), annotated with the model and its conductances."""
        from ..spiketrains import to_spiketrain

        times = self.spike_times(i)
        i %= len(self)
        annotations = {"model": self.model.name, "cell": int(i)}
        annotations.update({f"g_{name}": float(v) for name, v in zip(self.model.conductance_names, self.conductances[i])})
        return to_spiketrain(times, t_start=self.t_start, t_stop=self.t_stop, **annotations)

    def spiketrains(self) -> list["neo.SpikeTrain"]:
        """Every cell as a :class:`neo.SpikeTrain`."""
        return [self.spiketrain(i) for i in range(len(self))]

    def analogsignal(self, i: int) -> "neo.AnalogSignal":
        """Voltage trace of cell ``i`` as a :class:`neo.AnalogSignal` (mV)."""
        import neo
        import quantities as pq

        if self.voltage is None:
            raise InvalidInputError("voltage was not recorded: call simulate(..., record_voltage=True)")
        return neo.AnalogSignal(
            self.voltage[i][:, None],
            units=pq.mV,
            sampling_period=self.sampling_interval * pq.ms,
            t_start=self.t_start * pq.ms,
            name=f"{self.model.name} cell {i % len(self)}",
        )

    def take(self, indices: ArrayLike) -> "SimulationResult":
        """The cells ``indices`` (in that order) as a new result."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"cell indices out of range for {len(self)} cells")
        idx %= max(len(self), 1)
        offsets = _offsets(self.spike_counts[idx])
        times = np.concatenate([self.times[self.offsets[i] : self.offsets[i + 1]] for i in idx]) if idx.size else np.empty(0)
        noise = self.noise_std if np.ndim(self.noise_std) == 0 else np.asarray(self.noise_std)[idx]
        return replace(self, conductances=self.conductances[idx], times=times, offsets=offsets, i_app=self.i_app[idx],
                       noise_std=noise, voltage=None if self.voltage is None else self.voltage[idx], _features=None)  # fmt: skip

    @staticmethod
    def concatenate(results: Sequence["SimulationResult"]) -> "SimulationResult":
        """The cells of several results of the same model and protocol, in order (noise levels kept per cell;
        the seed is dropped: the cells came from different draws)."""
        if not results:
            raise InvalidInputError("results: nothing to concatenate")
        first = results[0]
        for r in results[1:]:
            if r.model is not first.model or (r.t_start, r.t_stop, r.dt) != (first.t_start, first.t_stop, first.dt):
                raise InvalidInputError("results: different models or protocols cannot be concatenated")
            if (r.voltage is None) != (first.voltage is None) or r.sampling_interval != first.sampling_interval:
                raise InvalidInputError("results: all or none must carry voltage, at the same sampling interval")
        offsets = _offsets(np.concatenate([r.spike_counts for r in results]))
        noise = np.concatenate([np.broadcast_to(np.asarray(r.noise_std, dtype=float), (len(r),)) for r in results])
        return replace(
            first, conductances=np.concatenate([r.conductances for r in results]),
            times=np.concatenate([r.times for r in results]), offsets=offsets,
            i_app=np.concatenate([r.i_app for r in results]), noise_std=_noise_levels(noise), seed=None,
            voltage=None if first.voltage is None else np.concatenate([r.voltage for r in results]), _features=None,
        )  # fmt: skip

    def features(self) -> dict[str, NDArray[np.float64]]:
        """Firing class and burst features of every cell (see :mod:`dic_sbi.spiketrains`); cached."""
        if self._features is None:
            from ..spiketrains import features_from_csr

            self._features = features_from_csr(self.times, self.offsets, self.t_start, self.t_stop)
        return self._features  # type: ignore[return-value]


def _offsets(counts: NDArray[np.int64]) -> NDArray[np.int64]:
    """CSR offsets (length ``len(counts) + 1``) of per-cell spike counts."""
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def _noise_levels(noise: NDArray[np.float64]) -> float | NDArray[np.float64]:
    """Per-cell σ as a result stores it: one float when every cell shares it, else the array."""
    return float(noise[0]) if noise.size and np.all(noise == noise[0]) else noise


# -- input checking ------------------------------------------------------------------------------------------


def _as_batch(model: ConductanceModel, conductances: ArrayLike) -> NDArray[np.float64]:
    g = check_conductances(model, conductances)
    if g.ndim == 1:
        g = g[None, :]
    if g.ndim != 2:
        raise InvalidInputError(
            f"conductances: expected shape (N, {model.n_conductances}) or ({model.n_conductances},) for model "
            f"{model.name!r}, got {g.shape}"
        )
    if g.shape[0] == 0:
        raise InvalidInputError("conductances: empty batch (N = 0)")
    return np.ascontiguousarray(g)


def _number(name: str, value: object, *, strict: bool) -> float:
    """``value`` as a finite float that is > 0 (``strict``) or >= 0, else an error naming ``name``."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (strict and v == 0):
        raise InvalidInputError(f"{name}: must be a finite number {'>' if strict else '>='} 0, got {value!r}")
    return v


def _seed_bits(seed: int | np.random.Generator | None) -> np.uint64:
    if seed is None:
        return np.uint64(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])
    if isinstance(seed, np.random.Generator):
        return np.uint64(seed.integers(0, 2**63, dtype=np.uint64))
    if is_seed(seed):
        return np.uint64(np.random.SeedSequence(int(seed)).generate_state(1, dtype=np.uint64)[0])
    raise InvalidInputError(f"seed: expected None, an int from 0 to 2**63 - 1 or a numpy Generator, got {seed!r}")


def noise_filter(dt: float) -> NDArray[np.float64]:
    """Second-order sections of the 4th-order 1 kHz Butterworth low-pass at sampling step ``dt`` (ms)."""
    fs = 1000.0 / dt  # Hz
    if NOISE_CUTOFF_HZ >= fs / 2:
        raise InvalidInputError(
            f"dt: {dt} ms samples the noise at {fs:g} Hz, too coarse for its {NOISE_CUTOFF_HZ:g} Hz low-pass; "
            f"use dt < {1000.0 / (2 * NOISE_CUTOFF_HZ):g} ms"
        )
    return np.ascontiguousarray(scipy.signal.butter(NOISE_FILTER_ORDER, NOISE_CUTOFF_HZ, fs=fs, output="sos"))


def _block_size(n_cells: int, n_threads: int) -> int:
    """Cells per thread block: the kernel's largest block (fastest per cell), unless that would leave threads idle;
    a whole number of SIMD vectors. The block size does not change results (each lane is stepped alone)."""
    per_thread = -(-n_cells // max(1, n_threads))
    return max(kernels.PACK, min(kernels.BLOCK, -(-per_thread // kernels.PACK) * kernels.PACK))


def responsive_chunk_size(n_threads: int | None = None) -> int:
    """A ``chunk_size`` for :func:`simulate` that keeps every thread busy with full blocks yet reports progress and
    checks ``cancel`` often (one block of cells per thread per chunk): what an interactive caller wants."""
    threads = kernels.max_threads() if n_threads is None else max(1, min(int(n_threads), kernels.max_threads()))
    return kernels.BLOCK * threads


# -- the simulator ------------------------------------------------------------------------------------------


def simulate(
    model: str | ConductanceModel,
    conductances: ArrayLike,
    *,
    duration: float | None = None,
    transient: float | None = None,
    dt: float | None = None,
    i_app: float | ArrayLike = 0.0,
    noise_std: float | ArrayLike = 0.0,
    seed: int | np.random.Generator | None = None,
    record_voltage: bool = False,
    sampling_interval: float | None = None,
    fine_substeps: int | None = None,
    chunk_size: int = 4096,
    n_threads: int | None = None,
    progress: bool | None = None,
    cancel: Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SimulationResult:
    """Simulate a batch of cells of one model and return their spike times.

    Parameters
    ----------
    model
        A model name (``"stg"``, ``"da"``) or a :class:`~dic_sbi.models.ConductanceModel`.
    conductances
        ``(N, n_conductances)`` or ``(n_conductances,)`` maximal conductances (mS/cm², model order), all >= 0.
    duration, transient, dt
        Simulated time, discarded initial time and integration step (ms); default: the model's protocol
        (STG 6000 / 3000 / 0.1, DA 12000 / 3000 / 0.1).
    i_app
        Constant injected current (µA/cm²), a scalar or one value per cell.
    noise_std
        σ (µA/cm²) of the white Gaussian current noise, low-passed by a 4th-order Butterworth filter at 1 kHz
        (Brandoit et al.); a scalar or one value per cell (e.g. to train a posterior on a range of noise levels).
        0 disables it. σ is the standard deviation of white noise sampled every 0.05 ms; one sample is drawn per
        step, scaled by ``sqrt(0.05 / dt)`` so that the noise's spectral density, and so the filtered current,
        does not depend on ``dt``.
    seed
        Seed of the noise (int or ``numpy.random.Generator``); the same seed gives the same result whatever the
        chunking or the number of threads.
    record_voltage
        Also return the membrane potential from ``transient`` to ``duration``.
    sampling_interval
        Step (ms) of the recorded voltage, a multiple of ``dt`` (default ``dt``).
    fine_substeps
        Substeps of a step that starts above the protocol's ``fine_above`` voltage while V moves at least
        ``fine_min_slope`` mV/ms, i.e. during spikes (default: the model's protocol: STG 5 above -45 mV and
        2 mV/ms, DA 8 above -65 mV); 1 gives a plain fixed-step scheme.
    chunk_size
        Cells per parallel chunk: memory stays bounded whatever N is.
    n_threads
        Threads (default: all cores).
    progress
        Show a progress bar over chunks (default: when there is more than one chunk).
    cancel
        A ``threading.Event`` checked before each chunk: once set, the simulation stops and raises
        :class:`~dic_sbi.errors.CancelledError` (for a caller running it in a thread, e.g. the app; give a smaller
        ``chunk_size`` to stop sooner, see :func:`responsive_chunk_size`).
    on_progress
        Called after each chunk with ``(cells done, cells in all)``.

    Returns
    -------
    SimulationResult
    """
    model = get_model(model)
    g = _as_batch(model, conductances)
    N = g.shape[0]
    proto = model.protocol
    duration = _number("duration", proto.duration if duration is None else duration, strict=True)
    dt = _number("dt", proto.dt if dt is None else dt, strict=True)
    transient = _number("transient", proto.transient if transient is None else transient, strict=False)
    if transient >= duration:
        raise InvalidInputError(f"transient: must be shorter than duration ({transient:g} >= {duration:g} ms)")
    if dt > duration - transient:
        raise InvalidInputError(f"dt: {dt:g} ms is longer than the recorded window ({duration - transient:g} ms)")
    n_steps = int(round(duration / dt))
    if abs(n_steps * dt - duration) > 1e-9 * duration:
        raise InvalidInputError(f"dt: duration {duration:g} ms is not a whole number of steps of {dt:g} ms")

    i_app_arr = np.asarray(i_app, dtype=np.float64)
    if i_app_arr.ndim == 0:
        i_app_arr = np.full(N, float(i_app_arr))
    if i_app_arr.shape != (N,) or not np.all(np.isfinite(i_app_arr)):
        raise InvalidInputError(f"i_app: expected a finite scalar or {N} finite values, got shape {i_app_arr.shape}")
    if np.ndim(noise_std) == 0:
        noise_arr = np.full(N, _number("noise_std", noise_std, strict=False))
    else:
        try:
            noise_arr = np.asarray(noise_std, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError("noise_std: could not be read as numbers") from None
        if noise_arr.shape != (N,) or not np.all(np.isfinite(noise_arr)) or np.any(noise_arr < 0):
            raise InvalidInputError(f"noise_std: expected a scalar or {N} finite values >= 0 (one per cell), got "
                                    f"shape {noise_arr.shape}, min {np.nanmin(noise_arr) if noise_arr.size else 'n/a'}")  # fmt: skip
    noisy = bool(np.any(noise_arr > 0))
    sos = noise_filter(dt) if noisy else np.zeros((0, 6))
    noise_step = noise_arr * math.sqrt(NOISE_SAMPLE_DT / dt)  # per-step σ (exactly σ at dt = 0.05 ms)
    seed_bits = _seed_bits(seed) if noisy else kernels.NO_SEED
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise InvalidInputError(f"chunk_size: expected a positive int, got {chunk_size!r}")

    first_record = int(math.ceil(transient / dt - 1e-9))
    if record_voltage:
        sampling_interval = dt if sampling_interval is None else _number("sampling_interval", sampling_interval, strict=True)
        record_every = int(round(sampling_interval / dt))
        if record_every < 1 or abs(record_every * dt - sampling_interval) > 1e-9 * sampling_interval:
            raise InvalidInputError(
                f"sampling_interval: must be a whole multiple of dt ({dt:g} ms), got {sampling_interval:g}"
            )
        n_samples = (n_steps - first_record) // record_every + 1
        if N * n_samples * 8 > MAX_VOLTAGE_BYTES:
            raise InvalidInputError(
                f"record_voltage: {N} traces of {n_samples} samples need {N * n_samples * 8 / 2**30:.1f} GiB; "
                "record fewer cells or use a larger sampling_interval"
            )
        voltage = np.full((N, n_samples), np.nan)
    else:
        sampling_interval, record_every, voltage = None, 1, None

    fine_substeps = proto.fine_substeps if fine_substeps is None else fine_substeps
    if not is_int(fine_substeps, 1):
        raise InvalidInputError(f"fine_substeps: expected an int >= 1, got {fine_substeps!r}")
    cm = compile_model(model, dt, proto.table_step)
    cm_fine = compile_model(model, dt / fine_substeps, proto.table_step)
    V0, Ca0, x0 = initial_state(model)
    cap = max(16, int(math.ceil((duration - transient) * MAX_SPIKE_RATE_KHZ)))
    chunks = [(s, min(s + chunk_size, N)) for s in range(0, N, chunk_size)]
    counts_all = np.empty(N, dtype=np.int64)
    pieces: list[NDArray[np.float64]] = []

    kernel = kernels.get_kernel(cm)

    def run(cells: NDArray[np.int64], capacity: int):
        # Cells are passed with their global index so that each keeps its own noise stream.
        spikes = np.empty((cells.size, capacity))
        counts = np.empty(cells.size, dtype=np.int64)
        vbuf = np.empty((cells.size, voltage.shape[1])) if voltage is not None else np.empty((0, 0))
        contiguous = cells.size == 0 or cells[-1] - cells[0] == cells.size - 1
        groups = [(0, cells.size)] if contiguous else [(k, k + 1) for k in range(cells.size)]
        for a, b in groups:
            c0 = int(cells[a])
            sigma = noise_step[c0 : c0 + b - a]
            run_ranges(
                kernel, -(-(b - a) // block),
                g[c0 : c0 + b - a], i_app_arr[c0 : c0 + b - a], c0, seed_bits, sigma, sos, V0, Ca0, x0, cm.table,
                cm_fine.table, cm.v_min, cm.inv_step, cm.calcium_decay, cm_fine.calcium_decay, dt, fine_substeps,
                proto.fine_above, proto.fine_min_slope, n_steps, transient, proto.spike_threshold, proto.spike_rearm, spikes[a:b], counts[a:b],
                first_record, record_every, vbuf[a:b] if voltage is not None else vbuf, block, bool(np.any(sigma > 0.0)),
                n_threads=threads,  # run_ranges never uses more threads than blocks
            )  # fmt: skip
        return spikes, counts, vbuf

    show = (len(chunks) > 1) if progress is None else bool(progress)
    if n_threads is not None and (not isinstance(n_threads, (int, np.integer)) or n_threads < 1):
        raise InvalidInputError(f"n_threads: expected None or an int >= 1, got {n_threads!r}")
    threads = kernels.max_threads() if n_threads is None else min(n_threads, kernels.max_threads())
    block = _block_size(min(N, chunk_size), threads)
    bar = None
    try:
        if show:
            from .._progress import progress_bar

            bar = progress_bar(total=N, desc=f"simulate {model.name}", unit="cell", leave=False)
        for lo, hi in chunks:
            if cancel is not None and cancel.is_set():
                raise CancelledError(f"simulate: cancelled after {lo} of {N} cells")
            spikes, counts, vbuf = run(np.arange(lo, hi), cap)
            over = np.flatnonzero(counts > cap)
            if over.size:
                s2, c2, v2 = run(lo + over, int(counts[over].max()))
                assert np.array_equal(c2, counts[over])  # deterministic re-run
            counts_all[lo:hi] = counts
            if over.size == 0:  # compact copy, so the chunk buffer is freed
                pieces.append(spikes[np.arange(cap) < counts[:, None]])
            else:
                rows = [spikes[k, : counts[k]] if counts[k] <= cap else s2[np.searchsorted(over, k), : counts[k]]
                        for k in range(hi - lo)]  # fmt: skip
                pieces.append(np.concatenate(rows))
            if voltage is not None:
                voltage[lo:hi] = vbuf
                if over.size:
                    voltage[lo + over] = v2
            if bar is not None:
                bar.update(hi - lo)
            if on_progress is not None:
                on_progress(hi, N)
    finally:
        if bar is not None:
            bar.close()

    offsets = _offsets(counts_all)
    times = np.concatenate(pieces) if pieces else np.empty(0)
    return SimulationResult(
        model=model,
        conductances=g.copy(),
        times=times,
        offsets=offsets,
        t_start=transient,
        t_stop=duration,
        dt=dt,
        i_app=i_app_arr,
        noise_std=_noise_levels(noise_arr),
        seed=seed if isinstance(seed, (int, np.integer)) else None,
        voltage=voltage,
        sampling_interval=sampling_interval,
    )
