"""Long work of the app in a background thread, with progress and a cancel that really stops it.

The work is the package's own API (``infer``, ``simulate``) called with a ``cancel`` event and an
``on_progress`` callback: the thread never touches the page; the page polls :meth:`Job.status`. A thread, not a
process: the API stops at its next check once ``cancel`` is set (between chunks of a few hundred simulated
cells), so nothing keeps running and there is no worker process to orphan.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import CancelledError, DicSbiError

__all__ = ["Job", "JobStatus", "describe_error", "warm_up"]

#: One computation at a time per process: numba's thread pool is shared by all sessions of a server, and two
#: simulations at once would only halve each other's speed.
_COMPUTE = threading.Lock()


def describe_error(err: BaseException) -> str:
    """A one-line message for the page: the package's own message for its errors, never a traceback."""
    if isinstance(err, CancelledError):
        return "Cancelled: nothing was computed or written."
    if isinstance(err, DicSbiError):
        return str(err)
    if isinstance(err, OSError):
        return f"{err.strerror or err} ({err.filename})" if getattr(err, "filename", None) else str(err)
    if isinstance(err, MemoryError):
        return "Out of memory: try a smaller population."
    return (f"Unexpected error ({type(err).__name__}: {err}); this is a bug in dic-sbi, please report it with the "
            "recording and settings.")  # fmt: skip


@dataclass(frozen=True)
class JobStatus:
    """What the page shows of a job: ``state`` is ``running``, ``done``, ``failed`` or ``cancelled``."""

    state: str
    stage: str
    fraction: float
    message: str
    seconds: float


class Job:
    """Run ``work(cancel, on_progress)`` in a daemon thread; ``on_progress(stage, done, total)`` as ``infer``'s.

    Parameters
    ----------
    work
        The computation; it must check ``cancel`` (a ``threading.Event``) and raise
        :class:`~dic_sbi.errors.CancelledError` once it is set, as the package's API does.
    weights
        Share of the progress bar of each stage (default: equal).
    """

    def __init__(self, work: Callable[[threading.Event, Callable[[str, int, int], None]], Any], *,
                 weights: dict[str, float] | None = None) -> None:  # fmt: skip
        self.cancel_event = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self._work = work
        self._weights = weights or {}
        self._stage, self._fraction = "waiting", 0.0
        self._started = time.perf_counter()
        self._finished: float | None = None
        self._thread = threading.Thread(target=self._run, name="dic-sbi-app-job", daemon=True)
        self._thread.start()

    def _progress(self, stage: str, done: int, total: int) -> None:
        # Stages fill consecutive parts of the bar in the order of ``weights``.
        order = list(self._weights)
        frac = done / total if total else 1.0
        if stage in self._weights:
            before = sum(self._weights[s] for s in order[: order.index(stage)])
            frac = before + self._weights[stage] * frac
        self._stage, self._fraction = stage, min(frac, 1.0)

    def _run(self) -> None:
        try:
            with _COMPUTE:
                if self.cancel_event.is_set():
                    raise CancelledError("cancelled before it started")
                self._stage = "starting"
                self.result = self._work(self.cancel_event, self._progress)
        except BaseException as err:  # noqa: BLE001 -- reported in the page by status()
            self.error = err
        finally:
            self._finished = time.perf_counter()

    def cancel(self) -> None:
        """Ask the work to stop at its next check."""
        self.cancel_event.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True when it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def status(self) -> JobStatus:
        """Where the job is (read from any thread)."""
        end = self._finished if self._finished is not None else time.perf_counter()
        seconds = end - self._started
        if self.running:
            words = "cancelling…" if self.cancel_event.is_set() else f"{self._stage}: {100 * self._fraction:.0f} %"
            return JobStatus("running", self._stage, self._fraction, words, seconds)
        if isinstance(self.error, CancelledError):
            return JobStatus("cancelled", self._stage, self._fraction, describe_error(self.error), seconds)
        if self.error is not None:
            return JobStatus("failed", self._stage, self._fraction, describe_error(self.error), seconds)
        return JobStatus("done", "done", 1.0, f"done in {seconds:.1f} s", seconds)


def warm_up(first: str | None = None) -> threading.Thread:
    """In a background thread, do once what a first run would wait for: import torch and sbi, load the shipped
    posteriors, and compile (or load from the on-disk cache) the simulator's kernel of each model. Started when
    the server starts, while the user is still choosing a recording; a run that starts meanwhile simply waits
    for what is not ready yet. ``first``: the model to prepare before the others (the page's default).
    """

    def work() -> None:
        from ..core.simulator import simulate
        from ..models import get_model
        from ..sbi.pretrained import available_pretrained, load_pretrained

        names = available_pretrained()
        for name in sorted(names, key=lambda n: n != first):  # a kernel compiles in tens of seconds: the likely one first
            try:
                load_pretrained(name)
                m = get_model(name)
                # the kernel depends on the model's structure only: any cell, a few steps, compiles it
                simulate(m, np.ones(m.n_conductances), duration=4 * m.protocol.dt, transient=0.0, progress=False)
            except Exception:  # noqa: BLE001 -- only a head start: the run itself reports any real problem
                pass

    thread = threading.Thread(target=work, name="dic-sbi-app-warm-up", daemon=True)
    thread.start()
    return thread
