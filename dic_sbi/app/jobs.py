"""Long work of the app in a background thread, with progress and a cancel that really stops it.

The work is the package's own API (``infer``, ``simulate``) called with a ``cancel`` event and an
``on_progress`` callback: the thread never touches the page; the page polls :meth:`Job.status`. A thread, not a
process: the API stops at its next check once ``cancel`` is set (between chunks of a few hundred simulated
cells), so nothing keeps running and there is no worker process to orphan.
"""

from __future__ import annotations

import atexit
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable


from ..errors import CancelledError, DicSbiError

__all__ = ["Job", "JobStatus", "WarmUp", "describe_error", "warm_up", "wait_for_warm_up"]

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


class WarmUp:
    """Do once, in the background, what a first run would wait for.

    - compile the numerical core's kernels (or load them from numba's on-disk cache) in separate processes, so
      that compilation runs on other cores and never holds this process's GIL: one process for the kernels all
      models share, one for the page's default model's simulator kernel, then one for the other models;
    - in a thread of this process: import torch and sbi and load the shipped posteriors.

    Started when the server starts, while the user is still choosing a recording. A run waits for what it needs
    (:meth:`wait`) and then finds the kernels in the cache. The processes are ended when the app exits.
    """

    def __init__(self, models: list[str], first: str | None = None) -> None:
        self.models = sorted(models, key=lambda n: n != first)  # the likely model first
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stopped = False
        from ..core.warmup import COMPENSATION, is_compiled

        # nothing to start where an earlier warm-up already compiled it (every start after the first)
        self._pending = [m for m in self.models if not is_compiled(m)]
        if not is_compiled(COMPENSATION):
            self._spawn("shared")
        if self.models and self.models[0] in self._pending:
            self._spawn("model", self.models[0])
        atexit.register(self.stop)
        self._thread = threading.Thread(target=self._work, name="dic-sbi-app-warm-up", daemon=True)
        self._thread.start()

    @staticmethod
    def command(models: tuple[str, ...]) -> list[str]:
        """The warm-up process's command line: the shared kernels, or the simulator kernels of ``models``; at low
        priority (serving the page comes first)."""
        flags = [a for m in models for a in ("--model", m)]
        return [sys.executable, "-m", "dic_sbi.core.warmup", "--nice", "10", *flags]

    def _spawn(self, key: str, *models: str) -> None:
        with self._lock:
            if self._stopped:
                return
            try:  # output discarded: only a head start (a run reports any real problem itself)
                proc = subprocess.Popen(self.command(models), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)  # fmt: skip
            except OSError:
                return
            self._procs[key if not models else f"model:{models[0]}"] = proc
            for m in models[1:]:
                self._procs[f"model:{m}"] = proc

    def _work(self) -> None:
        from ..sbi.pretrained import load_pretrained

        for name in self.models:
            try:
                load_pretrained(name)
            except Exception:  # noqa: BLE001 -- only a head start
                pass
        rest = [m for m in self._pending if m != self.models[0]]
        if rest:
            first = self._procs.get(f"model:{self.models[0]}")
            if first is not None:
                first.wait()
            self._spawn("model", *rest)  # after the first: two compiling processes on 2 cores at most

    def wait(self, model: str | None = None, timeout: float = 300.0) -> None:
        """Wait (at most ``timeout`` s) until the kernels a run of ``model`` needs are compiled."""
        deadline = time.monotonic() + timeout
        keys = ["shared"] + ([f"model:{model}"] if model else [])
        if model in self.models[1:]:
            self._thread.join(max(0.0, deadline - time.monotonic()))  # its process is started by the thread
        for key in keys:
            with self._lock:
                proc = self._procs.get(key)
            if proc is not None:
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    return  # the run compiles what it still needs itself

    def stop(self) -> None:
        """End the warm-up processes still running (at exit: nothing is left behind)."""
        with self._lock:
            self._stopped = True
            procs = list(self._procs.values())
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


#: The server's warm-up (None in a notebook or a test that did not start one).
_WARM_UP: WarmUp | None = None


def warm_up(first: str | None = None) -> WarmUp:
    """Start the background warm-up (see :class:`WarmUp`) for the models with a shipped posterior; runs wait
    for it through :func:`wait_for_warm_up`. ``first``: the model to prepare first (the page's default)."""
    global _WARM_UP
    from ..data import shipped_posteriors

    _WARM_UP = WarmUp(list(shipped_posteriors()), first=first)
    return _WARM_UP


def wait_for_warm_up(model: str | None = None) -> None:
    """Wait until the warm-up has compiled what a run of ``model`` needs (returns at once without a warm-up)."""
    if _WARM_UP is not None:
        _WARM_UP.wait(model)
