"""dic_sbi._parallel.run_ranges: every item computed once, on the threads asked for, errors surfaced."""

import threading

import numba
import numpy as np
import pytest

from dic_sbi._parallel import run_ranges


@numba.njit(nogil=True)
def _mark(start, stop, hits):
    for i in range(start, stop):
        hits[i] += 1


@pytest.mark.parametrize("n_items", [0, 1, 2, 7, 64, 1001])
@pytest.mark.parametrize("n_threads", [None, 1, 2, 5])
def test_every_item_once(n_items, n_threads):
    hits = np.zeros(n_items, dtype=np.int64)
    run_ranges(_mark, n_items, hits, n_threads=n_threads)
    assert np.array_equal(hits, np.ones(n_items, dtype=np.int64))


def test_threads_used_and_capped_by_items():
    seen: set[int] = set()
    lock = threading.Lock()
    barrier = threading.Barrier(2, timeout=10)

    def kernel(start, stop):
        with lock:
            seen.add(threading.get_ident())
        barrier.wait()  # only passes if two ranges run at the same time

    run_ranges(kernel, 2, n_threads=8)  # 2 items: 2 threads, not 8
    assert len(seen) == 2
    seen.clear()
    run_ranges(lambda a, b: seen.add(threading.get_ident()), 10, n_threads=1)
    assert seen == {threading.get_ident()}  # one thread: called in place


def test_kernel_error_is_raised():
    def kernel(start, stop):
        if start > 0:
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_ranges(kernel, 10, n_threads=2)
