"""Which DIC targets a model's compensating pairs can reach with non-negative conductances.

The reachability of a target ``(g_s, g_u)`` with a pair is the probability that one draw of the degenerate-
population process (seed, then the pair solved for the target) gives a valid cell: every conductance ≥ 0 and
converged solves. It is the acceptance rate of :func:`~dic_sbi.core.populations.degenerate_population` and the
normaliser ``ρ(t)`` of :func:`~dic_sbi.core.populations.population_log_density`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model
from .dics import CalciumPathTau
from .populations import (  # the Monte Carlo estimate lives with the process it measures (no import cycle)
    DEFAULT_TOL,
    _as_rng,
    _check_positive_int,
    _choose_pairs,
    _fractions,
    _plan,
    reachability,
)

__all__ = ["ReachabilityMap", "reachability", "reachability_map"]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class ReachabilityMap:
    """Reachability of a grid of targets, per compensating pair and for the model's rule.

    Attributes
    ----------
    model : str
        Model name.
    g_s, g_u : ndarray
        Grid axes ``(n_s,)`` and ``(n_u,)``.
    pair_names : tuple
        The model's compensating pairs.
    fraction : ndarray
        ``(n_pairs, n_u, n_s)`` fraction of valid draws with each pair.
    rule_pair : ndarray
        ``(n_u, n_s)`` index of the pair the model's rule picks.
    rule_fraction : ndarray
        ``(n_u, n_s)`` fraction of valid draws with the rule's pair (the acceptance rate of
        :func:`~dic_sbi.core.populations.degenerate_population`).
    n_draws : int
        Draws per target and pair (the same draws for every pair).
    """

    model: str
    g_s: Array
    g_u: Array
    pair_names: tuple[tuple[str, str], ...]
    fraction: Array
    rule_pair: NDArray[np.intp]
    rule_fraction: Array
    n_draws: int

    def reachable(self, min_fraction: float = 0.01) -> NDArray[np.bool_]:
        """``(n_u, n_s)`` mask of targets whose rule reachability is at least ``min_fraction``."""
        return self.rule_fraction >= min_fraction


def reachability_map(
    model: str | ConductanceModel,
    g_s_grid: ArrayLike | None = None,
    g_u_grid: ArrayLike | None = None,
    *,
    n_draws: int = 500,
    seed: int | np.random.Generator | None = None,
    calcium_path_tau: CalciumPathTau = "model",
) -> ReachabilityMap:
    """Reachability of every pair and of the model's rule over a grid of targets.

    Parameters
    ----------
    model
        Model name or object.
    g_s_grid, g_u_grid
        1-D grid axes; default: the model's published DIC box in steps of 1.
    n_draws
        Draws per grid point (the same draws for every pair, so pairs are compared on equal terms).
    seed
        Seed or ``numpy.random.Generator``.
    """
    model = get_model(model)
    (s_lo, s_hi), (u_lo, u_hi) = model.dic_box
    axes = []
    for name, grid, lo, hi in (("g_s_grid", g_s_grid, s_lo, s_hi), ("g_u_grid", g_u_grid, u_lo, u_hi)):
        if grid is None:
            grid = np.linspace(lo, hi, int(round(hi - lo)) + 1)
        arr = np.asarray(grid, dtype=float)
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
            raise InvalidInputError(f"{name}: expected a non-empty 1-D array of finite DIC values")
        axes.append(arr)
    n_draws = _check_positive_int("n_draws", n_draws)
    plan = _plan(model, calcium_path_tau)
    S, U = np.meshgrid(axes[0], axes[1])
    fractions = np.empty((len(plan.seed.pair_names),) + S.shape)
    base = int(_as_rng(seed).integers(2**63))
    for p in range(len(plan.seed.pair_names)):
        rng = np.random.default_rng(base)  # common random numbers across pairs
        fractions[p] = _fractions(model, plan, S, U, np.full(S.shape, p, dtype=np.intp), n_draws, rng, DEFAULT_TOL, 30)
    rule = _choose_pairs(model, plan.seed, S, U, None)
    rule_fraction = np.take_along_axis(fractions, rule[None], axis=0)[0]
    return ReachabilityMap(
        model=model.name,
        g_s=axes[0],
        g_u=axes[1],
        pair_names=plan.seed.pair_names,
        fraction=fractions,
        rule_pair=rule,
        rule_fraction=rule_fraction,
        n_draws=n_draws,
    )
