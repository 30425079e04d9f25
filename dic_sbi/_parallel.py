"""Run a compiled kernel over ranges of independent work items on several threads.

The package's numba kernels are serial functions of a range ``[start, stop)`` of work items (blocks of cells,
spike trains) compiled with ``nogil=True``; :func:`run_ranges` splits the items into contiguous ranges and runs
them on a few Python threads, which then execute in parallel. This replaces ``numba.prange``: its parallel
passes made the first-use compilation about twice as long (measured on the simulator and compensation kernels,
issue 18's cold start), and results never depended on the schedule (every item is computed alone).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numba

__all__ = ["run_ranges"]

# Ranges per thread: more than one so that uneven items (a block of bursting cells next to a silent one) balance.
_RANGES_PER_THREAD = 4

# One pool per process, kept between calls (creating threads per call cost ~0.5 ms, a quarter of a 1 000-cell
# compensation); re-created in a forked child, which inherits the object but not its threads.
_POOL: ThreadPoolExecutor | None = None
_POOL_PID = -1
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL = ThreadPoolExecutor(max_workers=max(1, int(numba.config.NUMBA_NUM_THREADS)),
                                       thread_name_prefix="dic_sbi")  # fmt: skip
            _POOL_PID = os.getpid()
        return _POOL


def run_ranges(kernel: Callable[..., Any], n_items: int, *args: Any, n_threads: int | None = None) -> None:
    """Call ``kernel(start, stop, *args)`` over contiguous ranges covering ``range(n_items)``.

    Parameters
    ----------
    kernel
        A numba function compiled with ``nogil=True`` whose first two arguments are the range it computes.
    n_items
        Number of work items.
    *args
        The kernel's other arguments, shared by every range.
    n_threads
        Threads to use, the calling one included; ``None``: numba's current thread count
        (:func:`numba.get_num_threads`, which ``NUMBA_NUM_THREADS`` and :func:`numba.set_num_threads` set). Never
        more than ``n_items``.
    """
    n_items = int(n_items)
    if n_items <= 0:
        return
    threads = numba.get_num_threads() if n_threads is None else int(n_threads)
    threads = max(1, min(threads, n_items))
    if threads == 1:
        kernel(0, n_items, *args)
        return
    n_ranges = min(n_items, threads * _RANGES_PER_THREAD)
    bounds = [n_items * k // n_ranges for k in range(n_ranges + 1)]
    ranges = iter(list(zip(bounds[:-1], bounds[1:])))
    lock = threading.Lock()

    def worker() -> None:  # takes ranges until none is left: at most ``threads`` run at once
        while True:
            with lock:
                r = next(ranges, None)
            if r is None:
                return
            kernel(r[0], r[1], *args)

    pool = _pool()
    futures = [pool.submit(worker) for _ in range(threads - 1)]
    error: BaseException | None = None
    try:
        worker()  # the calling thread works too
    except BaseException as err:  # noqa: BLE001 -- raised below, once the other threads have stopped
        error = err
    for future in futures:
        try:
            future.result()  # re-raises a kernel's error here
        except BaseException as err:  # noqa: BLE001
            error = error or err
    if error is not None:
        raise error
