"""Simulation campaigns: θ from a prior → cells → spike trains → features, chunk by chunk into a store.

Chunk ``k`` depends only on ``(seed, k)``: its θ and its simulation seeds come from
``numpy.random.SeedSequence([seed, k])``, so any chunk can be recomputed identically, in any order, on any
worker, and a resumed or distributed campaign writes the same bytes as one uninterrupted local run.
"""

from __future__ import annotations

import math
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..core.checks import is_int
from ..errors import DicSbiError, InvalidInputError
from ..spiketrains.jitter import check_jitter
from .store import FORMAT, FORMAT_VERSION, CampaignStore

__all__ = ["CampaignSpec", "CampaignReport", "run_campaign", "compute_chunk"]

PriorName = Literal["dic", "conductance"]


def noise_range_of(noise_std: Any) -> tuple[float, float] | None:
    """``(low, high)`` when ``noise_std`` is a range of σ (validated: finite, 0 <= low < high), ``None`` for one σ."""
    if not isinstance(noise_std, (list, tuple, np.ndarray)):
        return None
    try:
        lo, hi = (float(v) for v in noise_std)
    except (TypeError, ValueError):
        raise InvalidInputError(f"noise_std: expected a σ or a range (low, high), got {noise_std!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
        raise InvalidInputError(f"noise_std: a range needs finite 0 <= low < high, got {noise_std!r}")
    return (lo, hi)


@dataclass(frozen=True)
class CampaignSpec:
    """What a campaign simulates (everything the content of the store depends on).

    Arguments:
        model: Registered model name (``"stg"``, ``"da"``), a model file ``"path/file.py:NAME"``, or a model
            loaded from one (stored as its file reference).
        prior: ``"dic"`` (:class:`~dic_sbi.sbi.DICPrior`, one compensated cell per θ) or ``"conductance"``
            (:class:`~dic_sbi.sbi.ConductancePrior`, θ = ḡ).
        num: Number of simulations.
        chunk_size: Simulations per chunk (the unit of work, of resumption and of the store's chunking).
        seed: Campaign seed.
        scale: Scale of the conductance prior (``"linear"`` or ``"log"``); ignored for ``"dic"``.
        duration, transient, dt: Protocol (ms); ``None``: the model's.
        noise_std, i_app: Current noise σ and constant current (µA/cm²); ``noise_std`` may be a range
            ``(low, high)``: each simulation then draws its σ uniformly from it, and the store keeps it per row
            (field ``noise_std``), e.g. to train a posterior that takes the noise level as an input.
        output, max_isis: Encoding of ``x`` (see :mod:`dic_sbi.sbi.features`).
        spike_times: Keep the spike times too (large: ~ rate × window per cell).
        box: For ``"dic"``: draw θ from the :class:`~dic_sbi.sbi.DICPrior` of this box
            ``((g_s_min, g_s_max), (g_u_min, g_u_max))`` instead of the model's, e.g. to concentrate simulations
            where a firing class is rare (a law of the cells *given* θ, such as q(z | t, x), does not depend on
            the law of θ it is trained under). ``None``: the model's box.
        jitter: ``(fraction, max_sd)``: that fraction of the simulations has its spike times jittered by
            N(0, sd²) with sd ~ U(0, ``max_sd``) ms before ``x`` is computed (spike-detection imprecision, so a
            posterior trained on the store does not rely on sub-millisecond timing); the store keeps each row's
            sd (field ``jitter_std``) and, with ``spike_times``, the jittered times. ``None``: no jitter.
    """

    model: str
    prior: PriorName
    num: int
    chunk_size: int = 1000
    seed: int = 0
    scale: Literal["linear", "log"] = "linear"
    duration: float | None = None
    transient: float | None = None
    dt: float | None = None
    noise_std: float | tuple[float, float] = 0.0
    i_app: float = 0.0
    output: Literal["summary", "intervals", "isi"] = "summary"
    max_isis: int = 128
    spike_times: bool = False
    box: tuple[tuple[float, float], tuple[float, float]] | None = None
    jitter: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        from ..models import ConductanceModel, get_model, is_model_file_reference, model_reference

        if isinstance(self.model, ConductanceModel) or (isinstance(self.model, str) and is_model_file_reference(self.model)):
            # A model from a file is stored as its absolute file reference: workers and resumed runs load it again.
            object.__setattr__(self, "model", model_reference(self.model))
        if not isinstance(self.model, str):
            raise InvalidInputError(f"model: a campaign needs a model name or file reference, got {type(self.model).__name__}")
        get_model(self.model)  # UnknownModelError names the model
        if self.prior not in ("dic", "conductance"):
            raise InvalidInputError(f"prior: expected 'dic' or 'conductance', got {self.prior!r}")
        for name in ("num", "chunk_size"):
            v = getattr(self, name)
            if not is_int(v, 1):
                raise InvalidInputError(f"{name}: expected an int >= 1, got {v!r}")
        if not is_int(self.seed, 0):
            raise InvalidInputError(f"seed: expected an int >= 0, got {self.seed!r}")
        noise_range = noise_range_of(self.noise_std)
        if noise_range:
            object.__setattr__(self, "noise_std", noise_range)  # hashable, and equal however it was given
        if self.box is not None:
            if self.prior != "dic":
                raise InvalidInputError("box: only a DIC-prior campaign ('dic') takes a DIC box")
            from ..sbi.priors import check_dic_box

            # tuples of floats: hashable (the spec is a cache key) and equal to the lists a stored config reads back
            object.__setattr__(self, "box", check_dic_box(self.box))
        if self.jitter is not None:
            object.__setattr__(self, "jitter", check_jitter(self.jitter))

    @property
    def noise_range(self) -> tuple[float, float] | None:
        """``(low, high)`` when each simulation draws its own σ, else ``None``."""
        return self.noise_std if isinstance(self.noise_std, tuple) else None

    @property
    def n_chunks(self) -> int:
        return -(-self.num // self.chunk_size)

    def config(self) -> dict:
        """The settings as stored in the store (plus names of the columns)."""
        prior, sim = _objects(self)
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **asdict(self),
            "noise_std": list(self.noise_range) if self.noise_range else self.noise_std,  # as JSON reads it back
            "box": [list(r) for r in self.box] if self.box is not None else None,
            "jitter": list(self.jitter) if self.jitter is not None else None,
            "duration": sim.duration,  # resolved protocol, so the store says what was simulated
            "transient": sim.transient,
            "dt": sim.dt,
            # the integrator's spike substepping: a store is resumed only with the numerics it was started with
            "spike_substeps": _substeps(prior.model),
            "rate_table_step_mV": prior.model.protocol.table_step,
            "theta_names": list(prior.names),
            "conductance_names": list(prior.model.conductance_names),
            "x_names": list(sim.names),
        }

    def shapes(self) -> dict[str, tuple[tuple[int, ...], str]]:
        prior, sim = _objects(self)
        return {
            "theta": ((self.num, len(prior.names)), "float32"),
            "conductances": ((self.num, prior.model.n_conductances), "float64"),
            "x": ((self.num, sim.x_dim), "float32"),
            "spike_counts": ((self.num,), "int64"),
            **({"noise_std": ((self.num,), "float64")} if self.noise_range else {}),
            **({"jitter_std": ((self.num,), "float64")} if self.jitter is not None else {}),
        }

    @classmethod
    def from_config(cls, config: dict) -> "CampaignSpec":
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: config[k] for k in names if k in config})


def _substeps(model) -> dict:
    p = model.protocol
    return {"above_mV": p.fine_above, "substeps": p.fine_substeps, "min_slope_mV_per_ms": p.fine_min_slope}


@lru_cache(maxsize=8)
def _objects(spec: CampaignSpec):
    """The prior and simulator of ``spec``, built once per process (a DICPrior maps its region on creation)."""
    from ..sbi import ConductancePrior, ConductanceSimulator, DICPrior, DICSimulator

    proto = dict(duration=spec.duration, transient=spec.transient, dt=spec.dt,
                 noise_std=0.0 if spec.noise_range else spec.noise_std,  # a range is drawn per row in compute_chunk
                 i_app=spec.i_app, output=spec.output, max_isis=spec.max_isis)  # fmt: skip
    if spec.prior == "dic":
        return DICPrior(spec.model, box=spec.box), DICSimulator(spec.model, on_unreachable="nan", **proto)
    return ConductancePrior(spec.model, spec.scale), ConductanceSimulator(spec.model, **proto)


def _chunk_seeds(seed: int, k: int) -> tuple[int, np.random.Generator, np.random.Generator, np.random.Generator]:
    """Prior seed, simulation generator, noise-level generator and jitter generator of chunk ``k``.

    Children of one ``SeedSequence([seed, k])``: adding the third (noise ranges) and fourth (jitter) left the
    first ones, and so every earlier store, unchanged."""
    prior_ss, sim_ss, noise_ss, jitter_ss = np.random.SeedSequence([int(seed), int(k)]).spawn(4)
    # torch.Generator.manual_seed takes < 2**63; the top bit is dropped
    prior_seed = int(prior_ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return prior_seed, np.random.default_rng(sim_ss), np.random.default_rng(noise_ss), np.random.default_rng(jitter_ss)


def compute_chunk(spec: CampaignSpec, k: int, *, n_threads: int | None = None) -> dict[str, NDArray[Any]]:
    """Simulate chunk ``k`` of ``spec``: a dict of the store's fields (depends on ``(spec, k)`` only)."""
    from ..core.simulator import simulate
    from ..sbi.features import encode
    from ..spiketrains import draw_jitter_sd, jitter_spike_times

    if not 0 <= k < spec.n_chunks:
        raise InvalidInputError(f"k: expected 0 <= k < {spec.n_chunks}, got {k}")
    prior, sim = _objects(spec)
    n = min(spec.num, (k + 1) * spec.chunk_size) - k * spec.chunk_size
    prior_seed, rng, noise_rng, jitter_rng = _chunk_seeds(spec.seed, k)
    theta = prior.sample((n,), seed=prior_seed)
    if spec.prior == "dic":
        g = sim.cells(theta, seed=rng)
    else:
        g = theta.numpy().astype(np.float64)
    sigma = noise_rng.uniform(*spec.noise_range, n) if spec.noise_range else np.full(n, sim.noise_std)
    jitter_sd = draw_jitter_sd(spec.jitter, n, jitter_rng)
    x = np.full((n, sim.x_dim), np.nan)
    counts = np.zeros(n, dtype=np.int64)
    times = np.empty(0)
    ok = np.all(np.isfinite(g), axis=1)  # an unreachable DIC target gives a NaN cell: sbi's invalid simulation
    if ok.any():
        noisy = bool(np.any(sigma[ok] > 0))
        res = simulate(spec.model, g[ok], duration=sim.duration, transient=sim.transient, dt=sim.dt, i_app=sim.i_app,
                       noise_std=sigma[ok], seed=rng if noisy else None, n_threads=n_threads, progress=False)  # fmt: skip
        times, offsets = res.times, res.offsets
        if spec.jitter is not None:
            times, offsets = jitter_spike_times(times, offsets, jitter_sd[ok], res.t_start, res.t_stop, jitter_rng)
        x[ok] = encode(times, offsets, res.t_start, res.t_stop, sim.output, sim.max_isis)
        counts[ok] = np.diff(offsets)
    out = {"theta": theta.numpy(), "conductances": g, "x": x.astype(np.float32), "spike_counts": counts}
    if spec.noise_range:
        out["noise_std"] = sigma
    if spec.jitter is not None:
        out["jitter_std"] = jitter_sd
    if spec.spike_times:
        out["spike_times"] = times
    return out


def _run_and_write(spec: CampaignSpec, path: str, k: int, n_threads: int | None) -> tuple[int, int, float]:
    """Task body (local loop or dask worker): compute chunk ``k`` and write it; returns (k, rows, seconds)."""
    t0 = time.perf_counter()
    data = compute_chunk(spec, k, n_threads=n_threads)
    CampaignStore(Path(path), spec.config()).write_chunk(k, data)
    return k, len(data["theta"]), time.perf_counter() - t0


@dataclass
class CampaignReport:
    """What :func:`run_campaign` did: chunks computed now, chunks found complete, wall time."""

    store: CampaignStore
    computed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def simulations_per_second(self) -> float:
        rows = sum(b - a for a, b in map(self.store.rows, self.computed))
        return rows / self.seconds if self.seconds > 0 else math.nan


def _open_or_create(path: Path, spec: CampaignSpec, overwrite: bool) -> CampaignStore:
    from ..io.outputs import check_output, guard_place

    config = spec.config()
    guard_place(path, option="store")  # never the current, home or root folder, even if it is a store
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        try:
            store = CampaignStore.open(path)
        except DicSbiError:
            raise InvalidInputError(f"store: {path} exists and is not a campaign store; choose a new folder "
                                    "(dic-sbi never deletes what it did not write)") from None  # fmt: skip
        if overwrite:
            shutil.rmtree(path)
    else:
        check_output(path, option="store")
        if path.exists():
            path.rmdir()  # an empty folder: the store is created in its place
    if not path.exists():
        return CampaignStore.create(path, config, spec.shapes())
    differ = {k: (store.config.get(k), v) for k, v in config.items() if store.config.get(k) != v}
    if set(differ) == {"num"}:
        if int(spec.num) > store.num:
            store.grow(int(spec.num))  # the same campaign with more simulations: the chunks already there stay valid
            return store
        if int(spec.num) % store.chunk_size == 0:
            # The same campaign with fewer simulations: its chunks are the store's first ones (chunk k depends only
            # on (seed, k), and a whole number of chunks has no partial last chunk), so a grown store still serves
            # the campaign it grew from; run_campaign computes and reads only those chunks.
            return store
        raise InvalidInputError(
            f"store: {path} holds the same campaign with {store.num} simulations; fewer can be read from it only as "
            f"a whole number of its chunks (a multiple of {store.chunk_size}), asked {spec.num}"
        )
    if differ:
        what = ", ".join(f"{k}: stored {a!r}, asked {b!r}" for k, (a, b) in differ.items())
        raise InvalidInputError(
            f"store: {path} holds a different campaign ({what}); resume it with its own settings, or choose another "
            "store (or overwrite=True / --overwrite)"
        )
    return store


def run_campaign(
    spec: CampaignSpec,
    store: str | os.PathLike,
    *,
    scheduler: str | Any | None = None,
    n_threads: int | None = None,
    overwrite: bool = False,
    max_chunks: int | None = None,
    progress: bool = True,
) -> CampaignReport:
    """Run (or resume) a campaign into ``store``.

    Chunks already marked complete are skipped; every other chunk (never started, or killed half-way) is
    computed from ``(spec.seed, k)`` and written, then marked complete. Interrupting and calling again with
    the same ``spec`` finishes the campaign; the result is the same as one uninterrupted run.

    Parameters
    ----------
    spec
        The campaign.
    store
        Directory of the store (created if absent; an existing one must hold the same ``spec``, except that a
        larger ``spec.num`` grows it: the chunks already computed are kept, since chunk ``k`` depends only on
        ``(seed, k)``; and a smaller one, a multiple of the chunk size, is the store's first chunks: only those
        are computed, and ``CampaignStore.read(num=spec.num)`` reads them).
    scheduler
        ``None``: this process, chunk after chunk, each simulated with all cores. A ``dask.distributed``
        scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``: chunks run as tasks on that
        cluster, and each worker writes its chunks itself, so ``store`` must be on a file system every worker
        sees at the same path.
    n_threads
        Simulator threads per chunk (default: all cores locally, 1 per task on a cluster, whose worker threads
        already share the cores).
    overwrite
        Delete an existing store first.
    max_chunks
        Compute at most this many pending chunks now (e.g. to spread a campaign over several jobs).
    progress
        tqdm progress bar over simulations, with rate and ETA.
    """
    if not isinstance(spec, CampaignSpec):
        raise InvalidInputError(f"spec: expected a CampaignSpec, got {type(spec).__name__}")
    if max_chunks is not None and (not isinstance(max_chunks, (int, np.integer)) or max_chunks < 0):
        raise InvalidInputError(f"max_chunks: expected None or an int >= 0, got {max_chunks!r}")
    path = Path(store)
    st = _open_or_create(path, spec, overwrite)
    done = [k for k in st.complete_chunks() if k < spec.n_chunks]  # a larger store: this campaign is its first chunks
    todo = [k for k in st.pending_chunks() if k < spec.n_chunks][: max_chunks if max_chunks is not None else None]
    report = CampaignReport(store=st, skipped=done)
    bar = None
    if progress:
        from .._progress import progress_bar

        initial = sum(b - a for a, b in map(st.rows, done))
        bar = progress_bar(total=spec.num, initial=initial, unit="sim", desc=f"campaign {spec.model}/{spec.prior}",
                   smoothing=0.05, dynamic_ncols=True)  # fmt: skip
    t0 = time.perf_counter()
    try:
        if scheduler is None:
            for k in todo:
                _, rows, _ = _run_and_write(spec, str(path), k, n_threads)
                report.computed.append(k)
                if bar is not None:
                    bar.update(rows)
        else:
            _run_distributed(spec, path, todo, scheduler, 1 if n_threads is None else n_threads, report, bar)
    finally:
        report.seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
    return report


def _run_distributed(spec, path: Path, todo: list[int], scheduler, n_threads: int, report: CampaignReport, bar) -> None:
    from distributed import Client, as_completed

    own = not isinstance(scheduler, Client)
    if own and not isinstance(scheduler, str):
        raise InvalidInputError(f"scheduler: expected None, an address or a distributed.Client, got {scheduler!r}")
    client = Client(scheduler) if own else scheduler
    try:
        # A chunk is a side effect (it writes): a fresh key per run, so dask never hands back an earlier result.
        run_id = uuid.uuid4().hex[:12]
        futures = [client.submit(_run_and_write, spec, str(path), k, n_threads, key=f"dic_sbi-chunk-{k}-{run_id}",
                                 pure=False) for k in todo]  # fmt: skip
        try:
            for fut in as_completed(futures):
                k, rows, _ = fut.result()
                report.computed.append(k)
                if bar is not None:
                    bar.update(rows)
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        if own:
            client.close()
    report.computed.sort()
