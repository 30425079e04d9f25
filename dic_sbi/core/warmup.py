"""Compile the numerical core's kernels ahead of a first run, e.g. in background processes.

numba compiles each kernel on its first use and keeps it in an on-disk cache, so only the first run on a machine
pays (about 20 s of CPU for the compensation, feature and STG simulator kernels on a 2-vCPU VM). An interactive
front end (the app) runs this module in two processes at once while the user is still choosing a recording (the
two halves take about the same time); a run that starts later loads the kernels from the cache.

    python -m dic_sbi.core.warmup              # the compensation kernel (shared by all models)
    python -m dic_sbi.core.warmup --model stg  # STG's simulator kernel and the spike-train feature kernels
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

__all__ = ["compile_compensation", "compile_simulator", "is_compiled"]

COMPENSATION = "compensation"


def _marker(part: str) -> Path:
    """The file that says ``part``'s kernels (``COMPENSATION`` or a model) are in the current caches: named by a
    hash of what numba's cache depends on (interpreter, numba, cache folder, the kernels' source files and their
    time stamps, the model's generated kernel), so a change of any of them makes it absent again."""
    import numba

    from ..spiketrains import features
    from . import _population_kernels, kernels

    h = hashlib.sha256(f"{sys.version}\n{numba.__version__}\n{os.environ.get('NUMBA_CACHE_DIR', '')}\n".encode())
    if part == COMPENSATION:
        files = [_population_kernels.__file__]
    else:
        from ..models import get_model
        from .tables import compile_model

        m = get_model(part)
        h.update(f"{kernels.KERNEL_VERSION}\n{kernels.kernel_source(compile_model(m, m.protocol.dt))}".encode())
        files = [features.__file__]
    for f in files:
        st = os.stat(f)
        h.update(f"{f}\n{st.st_mtime_ns}\n{st.st_size}\n".encode())
    return kernels._cache_dir() / f"compiled-{h.hexdigest()[:20]}"


def is_compiled(part: str) -> bool:
    """True when a warm-up already compiled ``part`` (``COMPENSATION`` or a model name) into the current caches.
    A false True (caches deleted by hand) only costs the head start: the run then compiles what it needs."""
    try:
        return _marker(part).exists()
    except Exception:  # noqa: BLE001 -- e.g. an unknown model: not compiled
        return False


def compile_compensation() -> None:
    """Compile (or load from the cache) the compensation kernel of :func:`~dic_sbi.degenerate_population`; its
    argument types do not depend on the model (the DIC map is passed as arrays)."""
    from ..models import get_model
    from .populations import degenerate_population

    degenerate_population(get_model("stg"), -2.0, 4.0, 2, seed=0, on_unreachable="nan")


def compile_simulator(model: str) -> None:
    """Compile (or load from the cache) the simulator kernel of ``model`` (a name or ``file.py:NAME``) and the
    kernels that turn its spike trains into features."""
    from ..models import get_model
    from .simulator import simulate

    m = get_model(model)
    # the kernel depends on the model's structure only: any cell and a few steps compile it
    result = simulate(m, np.ones(m.n_conductances), duration=4 * m.protocol.dt, transient=0.0, progress=False)
    result.features()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dic_sbi.core.warmup", description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", default=[], help="compile this model's simulator kernel (repeatable)")
    p.add_argument("--nice", type=int, default=0, help="lower this process's priority by N (default: 0)")
    args = p.parse_args(argv)
    if args.nice > 0 and hasattr(os, "nice"):
        os.nice(args.nice)
    if args.model:
        for name in args.model:
            compile_simulator(name)
            _marker(name).touch()
    else:
        compile_compensation()
        _marker(COMPENSATION).touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
