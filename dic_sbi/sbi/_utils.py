"""Small helpers shared by the sbi layer: seeds, argument checks, models that pickle by name."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Union

import numpy as np
import torch
from numpy.typing import NDArray

from ..core.checks import is_seed
from ..errors import InvalidInputError

__all__ = ["Seed", "numpy_rng", "torch_generator", "as_batch", "torch_threads_set", "simulation_settings"]

#: What every stochastic function of this layer accepts as ``seed``.
Seed = Union[int, np.random.Generator, torch.Generator, None]


def _draw_int(generator: torch.Generator | None) -> int:
    return int(torch.randint(0, 2**62, (), generator=generator))


def numpy_rng(seed: Seed, name: str = "seed") -> np.random.Generator:
    """A numpy Generator from ``seed``.

    ``None`` draws the seed from torch's global generator, so that ``torch.manual_seed`` and
    ``sbi.inference.simulate_for_sbi(seed=...)`` (which seeds torch in every worker) make runs reproducible.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, torch.Generator):
        return np.random.default_rng(_draw_int(seed))
    if seed is None:
        return np.random.default_rng(_draw_int(None))
    if is_seed(seed):
        return np.random.default_rng(int(seed))
    raise InvalidInputError(
        f"{name}: expected None, an int from 0 to 2**63 - 1, a numpy.random.Generator or a torch.Generator, got {seed!r}"
    )


def torch_generator(seed: Seed, name: str = "seed") -> torch.Generator | None:
    """A torch Generator from ``seed``, or ``None`` (torch's global generator) when ``seed`` is ``None``."""
    if seed is None or isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, np.random.Generator):
        return torch.Generator().manual_seed(int(seed.integers(0, 2**62)))
    if is_seed(seed):
        return torch.Generator().manual_seed(int(seed))
    raise InvalidInputError(
        f"{name}: expected None, an int from 0 to 2**63 - 1, a numpy.random.Generator or a torch.Generator, got {seed!r}"
    )


def as_batch(value: Any, dim: int, name: str) -> NDArray[np.float64]:
    """``value`` (torch or numpy, ``(dim,)`` or ``(B, dim)``) as a float64 ``(B, dim)`` array of finite numbers."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name}: expected a tensor or array of numbers, got {type(value).__name__}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise InvalidInputError(f"{name}: expected shape (batch, {dim}) or ({dim},), got {tuple(np.shape(value))}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name}: found NaN or inf; every entry must be finite")
    return np.ascontiguousarray(arr)


def simulation_settings(simulator: Any, **given: Any) -> dict[str, Any]:
    """Each given simulation setting (``duration=...``, ``dt=...``), or where it is ``None`` the posterior's
    training simulator's (``None`` when there is none or it lacks the setting: then the model's default)."""
    return {k: v if v is not None else getattr(simulator, k, None) for k, v in given.items()}


@contextmanager
def torch_threads_set(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (``None``: unchanged), restoring the previous count after."""
    # Small flows train fastest on one thread; on a busy machine, OpenMP barriers can make every step of a
    # multi-threaded run wait for a descheduled thread (~100x slower per step measured on a loaded 2-core box).
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
