"""Input checks shared by the numerical core: one place, one wording."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidInputError
from ..models import ConductanceModel

__all__ = ["check_conductances", "is_int", "is_seed", "MAX_SEED"]

#: Largest integer seed: numpy takes any integer >= 0, but torch generators and NIX metadata hold an int64.
MAX_SEED = 2**63 - 1


def is_int(value: Any, minimum: int) -> bool:
    """Whether ``value`` is an integer (Python or numpy; a bool is not) of at least ``minimum``."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum


def is_seed(value: Any) -> bool:
    """Whether ``value`` is an integer seed every layer accepts: 0 <= seed <= :data:`MAX_SEED`."""
    return is_int(value, 0) and value <= MAX_SEED


def check_conductances(
    model: ConductanceModel,
    conductances: ArrayLike,
    *,
    name: str = "conductances",
    nonnegative: bool = True,
    positive_leak: bool = False,
) -> NDArray[np.float64]:
    """Validate maximal conductances ``(..., n_conductances)`` in the model's order and return them as float64.

    Every value must be finite and (with ``nonnegative``, the default) >= 0; with ``positive_leak``, gleak must
    also be > 0 (DICs are normalised by it). Densities pass ``nonnegative=False``: a negative vector is a valid
    point with log-density -inf, not an error. Messages name the argument and, for bad values, the first offending cell and conductance.
    """
    try:
        g = np.asarray(conductances, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidInputError(f"{name}: could not be read as an array of numbers ({err})") from None
    n = model.n_conductances
    if g.ndim == 0 or g.shape[-1] != n:
        raise InvalidInputError(
            f"{name}: expected shape (..., {n}) with the conductances of model {model.name!r} in the order "
            f"{', '.join(model.conductance_names)}; got shape {g.shape}"
        )

    def first(mask: NDArray[np.bool_]) -> str:
        idx = np.argwhere(mask)[0]
        cell = f"cell {tuple(int(i) for i in idx[:-1])} " if idx.size > 1 else ""
        return f"{cell}({model.conductance_names[idx[-1]]} = {g[tuple(idx)]:g})"

    bad = ~np.isfinite(g)
    if bad.any():
        raise InvalidInputError(f"{name}: conductances must be finite; {int(bad.sum())} NaN/inf value(s), first {first(bad)}")
    neg = g < 0
    if nonnegative and neg.any():
        raise InvalidInputError(
            f"{name}: maximal conductances must be non-negative; {int(neg.sum())} negative value(s), first {first(neg)}"
        )
    if positive_leak:
        leak = model.index("leak")
        zero = np.zeros(g.shape, dtype=bool)
        zero[..., leak] = g[..., leak] <= 0
        if zero.any():
            raise InvalidInputError(f"{name}: gleak must be positive (DICs are normalised by it); first {first(zero)}")
    return g
