"""Populations whose every member fires in the observed class: posterior cells filtered by simulation.

A DIC posterior population reproduces the observed firing class only as often as cells sharing the same
``(g_s, g_u)`` do (82–88 % on the held-out sets, for the true DIC populations as for the posterior ones: the
DICs at one voltage do not fix the class). :func:`class_matched_population` keeps drawing posterior cells,
simulates them, and keeps those that fire in the observed class until ``n`` are kept, reporting how many were
drawn. With a noisy current a cell near a class boundary can change class from one noise realisation to the
next, so each candidate is simulated ``noise_repeats`` times (default 3) and kept only if it fires in the
observed class every time (``benchmarks/class_matching.py`` measures how often kept cells keep their class
under fresh noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
from numpy.typing import NDArray

from ..core.checks import is_int
from ..errors import InvalidInputError
from ._utils import Seed, numpy_rng, simulation_settings
from .evaluation import CLASSES
from .posterior import DICPosterior

if TYPE_CHECKING:
    from threading import Event

__all__ = ["MatchedPopulation", "class_matched_population", "check_matching_options"]


@dataclass
class MatchedPopulation:
    """Result of :func:`class_matched_population`.

    Attributes
    ----------
    dics, conductances
        ``(k, 2)`` DIC samples and ``(k, n_conductances)`` cells kept, in draw order (``k = n`` when complete).
    simulation
        The kept cells' :class:`~dic_sbi.core.simulator.SimulationResult`.
    drawn, matching
        Cells drawn and simulated in all, and how many of them fired in the observed class (in every one of the
        ``noise_repeats`` realisations with noise).
    first_fraction
        Fraction in the observed class among the first ``n`` drawn (first noise realisation): the unfiltered
        posterior population.
    complete
        Whether ``n`` cells were kept within ``max_draws``.
    """

    dics: NDArray[np.float64]
    conductances: NDArray[np.float64]
    simulation: Any
    drawn: int
    matching: int
    first_fraction: float
    complete: bool
    #: Cells simulated in all (noise repeats included): the cost of the kept cells.
    simulated: int = 0
    #: What a kept cell had to do: ``"class"``, or the tolerances of :func:`~dic_sbi.spiketrains.fires_like`.
    criterion: Any = "class"

    @property
    def acceptance(self) -> float:
        """Fraction of the drawn cells that fired in the observed class."""
        return self.matching / self.drawn if self.drawn else math.nan

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable counts (for reports)."""
        kept = int(len(self.conductances))
        return {"kept": kept, "drawn": self.drawn, "matching": self.matching, "acceptance": self.acceptance,
                "unfiltered_fraction_matching": self.first_fraction, "complete": self.complete,
                "criterion": self.criterion, "simulations": self.simulated,
                "simulations_per_kept_cell": self.simulated / kept if kept else None}  # fmt: skip


def check_matching_options(n: int, max_draws: int | None, noise_repeats: int | None) -> tuple[int, int]:
    """Validated ``(max_draws, noise_repeats)`` with their defaults (``20 n``, 3); clear errors otherwise."""
    if not is_int(n, 1):
        raise InvalidInputError(f"n: expected a positive int, got {n!r}")
    max_draws = 20 * int(n) if max_draws is None else max_draws
    if not is_int(max_draws, n):
        raise InvalidInputError(f"max_draws: expected an int >= n ({n}), got {max_draws!r}")
    repeats = 3 if noise_repeats is None else noise_repeats
    if not is_int(repeats, 1):
        raise InvalidInputError(f"noise_repeats: expected an int >= 1, got {noise_repeats!r}")
    return int(max_draws), int(repeats)


def class_matched_population(
    posterior: DICPosterior,
    x: torch.Tensor,
    observed_class: str,
    n: int,
    *,
    first: tuple[NDArray, NDArray, Any] | None = None,
    observed: Mapping[str, Any] | None = None,
    tolerances: Mapping[str, float] | None = None,
    max_draws: int | None = None,
    noise_std: float = 0.0,
    noise_repeats: int | None = None,
    duration: float | None = None,
    transient: float | None = None,
    dt: float | None = None,
    seed: Seed = None,
    n_threads: int | None = None,
    progress: bool = False,
    cancel: Event | None = None,
) -> MatchedPopulation:
    """``n`` posterior cells that fire in ``observed_class`` (or like ``observed``) when simulated.

    Parameters
    ----------
    posterior, x
        The DIC posterior and the (conditioned) observation it samples from.
    observed_class
        ``"spiking"``, ``"bursting"`` or ``"silent"``.
    n
        Cells to keep.
    first
        ``(dics, conductances, simulation)`` of cells already drawn and simulated (e.g. a validated population):
        they are filtered first, so no simulation is repeated.
    observed, tolerances
        The observed train's features (``spike_train_features(train).as_dict()``): with them a kept cell must
        fire like the recording by :func:`~dic_sbi.spiketrains.fires_like` (class; mean rate, burst period,
        spikes per burst within ``tolerances``, default :data:`~dic_sbi.spiketrains.FIDELITY_TOLERANCES`), not
        only in its class.
    max_draws
        Most cells drawn in all (default ``20 n``); fewer than ``n`` are returned, ``complete=False``, when the
        class is rarer than that.
    noise_std, duration, transient, dt
        Protocol of the simulations (default: the posterior's training simulator's, else the model's).
    noise_repeats
        With noise, noise realisations a candidate must all fire in the observed class (default 3; the first is
        the one kept in ``simulation``); ignored without noise, where one simulation decides.
    seed
        Seed of the sampling, compensation and noise.
    cancel
        A ``threading.Event``: once set, the simulations stop with :class:`~dic_sbi.errors.CancelledError`.
    """
    from ..core.simulator import SimulationResult, simulate
    from ..spiketrains import FIDELITY_TOLERANCES, fires_like

    if observed_class not in CLASSES:
        raise InvalidInputError(f"observed_class: expected one of {CLASSES}, got {observed_class!r}")
    max_draws, repeats = check_matching_options(n, max_draws, noise_repeats)
    repeats = repeats if noise_std > 0 else 1
    rng = numpy_rng(seed)
    proto = simulation_settings(posterior.simulator, duration=duration, transient=transient, dt=dt)

    if observed is not None:
        unknown = sorted(set(tolerances or {}) - set(FIDELITY_TOLERANCES))
        if unknown:
            raise InvalidInputError(f"tolerances: unknown feature(s) {unknown}; expected {sorted(FIDELITY_TOLERANCES)}")
        if any(not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0) for v in (tolerances or {}).values()):
            raise InvalidInputError(f"tolerances: expected finite values >= 0, got {dict(tolerances)}")
        observed = {**observed, "firing_class": observed_class}
    criterion: Any = "class" if observed is None else {**FIDELITY_TOLERANCES, **(tolerances or {})}
    simulated = 0

    def run(g: NDArray) -> Any:
        nonlocal simulated
        simulated += len(g)
        noise = dict(noise_std=noise_std, seed=rng) if noise_std > 0 else {}
        return simulate(posterior.model, g, progress=progress, n_threads=n_threads, cancel=cancel, **noise, **proto)

    def accepted(res: Any) -> NDArray[np.bool_]:
        f = res.features()
        if observed is None:
            return np.asarray(f["firing_class"]) == observed_class
        return fires_like(f, observed, tolerances)[1]

    def draw(k: int) -> tuple[NDArray, NDArray, Any]:
        g, d = posterior.sample((k,), x=x, seed=rng, return_dics=True)
        return d.to(torch.float64).numpy(), g.numpy(), run(g.numpy())

    def in_class(g: NDArray, res: Any) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """In the class in the first realisation, and in all of them."""
        once = accepted(res)
        same = once.copy()
        for _ in range(repeats - 1):  # the other realisations, only for the cells still accepted
            idx = np.flatnonzero(same)
            if idx.size:
                same[idx] = accepted(run(g[idx]))
        return once, same

    kept: list[tuple[NDArray, NDArray, Any]] = []
    n_kept = drawn = matching = 0
    first_match: list[NDArray] = []
    batch = first
    if first is not None:
        simulated += len(first[1])
    while True:
        if batch is None:
            # enough for the cells still missing at the acceptance seen so far (at least 1 in 10 assumed), +10 %
            rate = max(matching / drawn, 0.1) if drawn else 1.0
            k = min(max(32, math.ceil(1.1 * (n - n_kept) / rate)), max_draws - drawn)
            batch = draw(k)
        d, g, res = batch
        batch = None
        once, same = in_class(g, res)
        if drawn < n:
            first_match.append(once[: n - drawn])
        drawn += len(g)
        matching += int(same.sum())
        idx = np.flatnonzero(same)[: n - n_kept]
        if idx.size:
            kept.append((d[idx], g[idx], res.take(idx)))
            n_kept += idx.size
        if n_kept >= n or drawn >= max_draws:
            break
    model = posterior.model
    if kept:
        dics = np.concatenate([k[0] for k in kept])
        cells = np.concatenate([k[1] for k in kept])
        simulation = SimulationResult.concatenate([k[2] for k in kept])
    else:
        dics, cells, simulation = np.zeros((0, 2)), np.zeros((0, model.n_conductances)), None
    first_fraction = float(np.concatenate(first_match).mean())
    return MatchedPopulation(dics, cells, simulation, drawn, matching, first_fraction, n_kept >= n, simulated, criterion)
