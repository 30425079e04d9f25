r"""A posterior specific to one recording: truncated-proposal rounds seeded by the amortised posterior.

The shipped posteriors are amortised: one network for every recording, trained where the DIC prior puts its
simulations. For one recording ``x_o`` a user may spend more simulations near it. Each round of
:func:`refine_posterior` (truncated sequential NPE, Deistler et al. 2022):

1. draws DIC targets ``t`` from the prior *truncated* to the ``1 - quantile`` highest-density region of the
   current ``q(t | x_o)`` (rejection from the prior; sbi's ``get_density_thresholder`` / ``RestrictedPrior``
   logic, here with the threshold estimated once from the posterior's own samples);
2. makes one cell of each by the seed law and simulates it with the posterior's protocol (and the recording's
   known noise level);
3. fine-tunes copies of the DIC network ``q(t | x)`` and, if the posterior has one, of the free-conductance law
   ``q(z | t, x)`` on these simulations, with sbi's first-round NPE loss.

Why this is valid: under the truncated prior ``p̃(t) ∝ p(t) 1_R(t)`` the NPE loss is minimised by
``p̃(t | x) ∝ p(t | x) 1_R(t)``, the true posterior wherever it has mass when ``R`` holds ``1 - quantile`` of it;
the free draws keep their seed law, so ``q(z | t, x)``'s target ``p(z | t, x)`` does not change at all. The
networks start from the amortised weights (and their input scaling), so a few thousand simulations refine
rather than relearn. Cost: ``rounds × num_simulations`` simulations, reported.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..core.checks import is_int
from ..errors import InvalidInputError
from ._utils import Seed, numpy_rng, torch_threads_set
from .posterior import DICPosterior
from .priors import DICPrior

__all__ = ["Refinement", "refine_posterior"]

#: Most prior draws per accepted target before a round gives up (the region is then too small to sample).
MAX_PRIOR_DRAWS_PER_TARGET = 2000


@dataclass
class Refinement:
    """Result of :func:`refine_posterior`: the refined posterior and what it cost.

    Attributes
    ----------
    posterior
        A :class:`~dic_sbi.sbi.DICPosterior` (same model, protocol, conditions; refined networks).
    simulations
        Simulations run in all (``rounds × num_simulations``).
    rounds
        Per round: simulations, valid ones, prior draws and acceptance of the truncation, the region's share of
        the prior, epochs, best validation losses and seconds.
    """

    posterior: DICPosterior
    simulations: int
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable record (for reports)."""
        return {"simulations": self.simulations, "rounds": self.rounds}


def _truncated_prior_sample(inner: Any, prior: DICPrior, x: Tensor, n: int, quantile: float,
                            n_threshold: int) -> tuple[Tensor, int, float]:  # fmt: skip
    """``n`` prior draws inside the ``1 - quantile`` HPD region of ``inner``'s ``q(t | x)``, the prior draws
    needed, and the region's log-density threshold (``quantile`` of log q over ``n_threshold`` draws of q)."""
    t_q = inner.sample((int(n_threshold),), x=x, show_progress_bars=False)
    log_q = inner.log_prob(t_q, x=x, norm_posterior=False)
    threshold = torch.quantile(log_q, float(quantile))
    kept: list[Tensor] = []
    have = drawn = 0
    while have < n:
        batch = max(4 * (n - have), 1024)
        t = prior.sample((batch,))
        drawn += batch
        ok = inner.log_prob(t, x=x, norm_posterior=False) > threshold
        kept.append(t[ok])
        have += int(ok.sum())
        if drawn > MAX_PRIOR_DRAWS_PER_TARGET * n and have < n:
            raise InvalidInputError(
                f"refine: the posterior's {1 - quantile:.4g} region holds under 1/{MAX_PRIOR_DRAWS_PER_TARGET} of the "
                f"prior ({have} of {drawn} draws); raise quantile or use the amortised posterior"
            )  # fmt: skip
    return torch.cat(kept)[:n], drawn, float(threshold)


def refine_posterior(
    posterior: DICPosterior,
    x: Tensor,
    *,
    num_simulations: int = 2000,
    rounds: int = 1,
    quantile: float = 1e-3,
    max_epochs: int = 100,
    learning_rate: float = 2e-4,
    seed: Seed = None,
    n_threads: int | None = None,
    torch_threads: int | None = 1,
    show_progress_bars: bool = False,
) -> Refinement:
    """Refine an amortised DIC posterior on simulations near one recording (truncated-proposal rounds).

    Parameters
    ----------
    posterior
        A conditional :class:`~dic_sbi.sbi.DICPosterior` whose sbi posterior has a prior (a
        :class:`~dic_sbi.sbi.DICPrior`), e.g. a shipped one.
    x
        The recording's features, conditioned as the posterior takes them (``posterior.condition(x, ...)``),
        one row ``(k,)`` or ``(1, k)``.
    num_simulations, rounds
        Simulations per round, and rounds (each truncates with the posterior of the previous one).
    quantile
        Posterior mass left outside the truncation region (TSNPE's ε; default 1e-3).
    max_epochs, learning_rate
        Fine-tuning: epochs cap (early stopping after 10 without progress) and learning rate.
    seed
        Seed of the targets, cells, noise and training.
    n_threads, torch_threads
        Simulator threads; torch threads while fine-tuning (``None``: unchanged).

    Returns
    -------
    Refinement
        The refined posterior (use it as the amortised one: ``sample``, ``log_prob``, ``map``) and the cost.
    """
    from sbi.inference import NPE

    from .free_conductances import train_free_conductances
    from .simulators import DICSimulator

    if not isinstance(posterior, DICPosterior) or not posterior._conditional():
        raise InvalidInputError("posterior: expected a conditional DICPosterior (an sbi posterior over the DICs)")
    prior = getattr(posterior.posterior, "prior", None)
    if not isinstance(prior, DICPrior):
        raise InvalidInputError("posterior: refinement truncates its DIC prior; this posterior has no DICPrior")
    for name, v, lo in (("num_simulations", num_simulations, 20), ("rounds", rounds, 1), ("max_epochs", max_epochs, 1)):
        if not is_int(v, lo):
            raise InvalidInputError(f"{name}: expected an int >= {lo}, got {v!r}")
    if not (isinstance(quantile, (int, float)) and 0 < quantile < 0.5):
        raise InvalidInputError(f"quantile: expected 0 < quantile < 0.5, got {quantile!r}")
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise InvalidInputError(f"learning_rate: expected > 0, got {learning_rate!r}")
    x = torch.as_tensor(x, dtype=torch.float32)
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] != 1:
        raise InvalidInputError(f"x: expected one observation (k,) or (1, k), got shape {tuple(x.shape)}")
    posterior._check_x(x)
    if not torch.isfinite(x).all():
        raise InvalidInputError("x: the observation has non-finite features")
    noise_std = posterior.conditions_of(x).get("noise_std", 0.0)  # the recording's known σ, 0 without conditions
    sim0 = posterior.simulator
    sim = DICSimulator(posterior.model, noise_std=float(noise_std), n_threads=n_threads, pair=posterior.pair,
                       **({k: getattr(sim0, k) for k in ("duration", "transient", "dt", "output", "max_isis")} if sim0 else {}))  # fmt: skip
    rng = numpy_rng(seed)
    train = dict(training_batch_size=min(200, max(20, int(num_simulations) // 10)), learning_rate=float(learning_rate),
                 max_num_epochs=int(max_epochs), stop_after_epochs=10)  # fmt: skip
    current, records, total = posterior, [], 0
    for r in range(int(rounds)):
        t0 = time.perf_counter()
        inner = current.posterior
        with torch.random.fork_rng(devices=[]), torch_threads_set(torch_threads):
            torch.manual_seed(int(rng.integers(0, 2**62)))
            t, drawn, _ = _truncated_prior_sample(inner, prior, x, int(num_simulations), quantile, 20_000)
            xs, cells = sim.simulate_with_cells(t, seed=rng)
            total += len(t)
            xs = current.condition(xs, **current.conditions_among(noise_std=float(noise_std)))
            ok = torch.isfinite(xs).all(dim=1)
            if int(ok.sum()) < 20:
                raise InvalidInputError(f"refine: only {int(ok.sum())} of {len(t)} simulations near this recording are "
                                        "valid; the recording may be out of the model's reach")  # fmt: skip
            net = copy.deepcopy(inner.posterior_estimator).train()
            npe = NPE(prior=prior, density_estimator=lambda th, xx: net, show_progress_bars=show_progress_bars)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Data has constant values")
                npe.append_simulations(t[ok], xs[ok])
            npe.train(**train)
            new_inner = npe.build_posterior()
            rec: dict[str, Any] = {"round": r + 1, "simulations": len(t), "valid": int(ok.sum()), "prior_draws": int(drawn),
                                   "region_prior_share": len(t) / drawn,
                                   "dic_epochs": int(npe.summary["epochs_trained"][-1]),
                                   "dic_best_validation_loss": float(npe.summary["best_validation_loss"][-1])}  # fmt: skip
            free = current.free_conductances
            if free is not None:
                free, fsum = train_free_conductances(posterior.model, t.numpy(), cells, xs, pair=posterior.pair, init=free,
                                                     training=train, seed=rng, show_progress_bars=show_progress_bars)  # fmt: skip
                rec.update(free_epochs=fsum["epochs"], free_best_validation_loss=fsum["best_validation_loss"])
        current = DICPosterior(new_inner, posterior.model, pair=posterior.pair, calcium_path_tau=posterior.calcium_path_tau,
                               simulator=posterior.simulator, conditions=posterior.conditions, free_conductances=free,
                               emulator=posterior.emulator)  # fmt: skip
        rec["seconds"] = time.perf_counter() - t0
        records.append(rec)
    return Refinement(current, total, records)
