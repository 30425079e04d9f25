"""Training recipes: NPE in DIC space (the method) and in conductance space (the standard baseline).

Both recipes share everything but the parameter space: the same features and encoding, the same density
estimator (``posterior_nn`` with the same architecture), the same simulation budget and training settings,
sbi 0.27's ``NPE`` (Papamakarios & Murray 2016; Greenberg et al. 2019), so a comparison measures the
parameterisation alone.
"""

from __future__ import annotations

import random
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model
from ._utils import Seed, numpy_rng, torch_threads_set
from .embedding import ISIEmbedding, Standardize
from .features import CONDITION_NAMES, SUMMARY_NAMES, feature_names
from .posterior import DICPosterior
from .priors import ConductancePrior, DICPrior
from .simulators import ConductanceSimulator, DICSimulator

__all__ = ["TrainingRun", "train_dic_posterior", "train_conductance_posterior", "build_density_estimator"]


@dataclass
class TrainingRun:
    """What a recipe produced: the posterior and everything needed to reproduce or diagnose it.

    Attributes
    ----------
    posterior
        :class:`~dic_sbi.sbi.DICPosterior` (DIC recipe) or sbi's ``DirectPosterior`` over ḡ (baseline).
    prior, simulator
        The prior and simulator used.
    theta, x
        Training simulations (``x`` may contain NaN rows for failed simulations; NPE drops them).
    inference
        The trained ``sbi.inference.NPE`` object (e.g. for ``.summary`` of the losses).
    """

    posterior: Any
    prior: Any
    simulator: Any
    theta: Tensor
    x: Tensor
    inference: Any


_ESTIMATORS = {"nsf": "zuko_nsf", "maf": "zuko_maf", "mdn": "mdn"}


def build_density_estimator(
    density_estimator: Literal["nsf", "maf", "mdn"],
    x: Tensor,
    output: str = "summary",
    max_isis: int = 0,
    embedding_net: nn.Module | None = None,
    *,
    prior: Any = None,
    n_conditions: int = 0,
    defined_scaling: bool = False,
    **kwargs: Any,
):
    """The ``posterior_nn`` builder both recipes use (``kwargs``: e.g. ``hidden_features``, ``num_transforms``).

    ``x`` is standardised by a fixed :class:`~dic_sbi.sbi.Standardize` fitted on its finite rows (std floored
    at 0.1) instead of sbi's z-scoring (floored at 1e-7, see :mod:`dic_sbi.sbi.embedding`); ISI columns are left
    as they are, since :class:`~dic_sbi.sbi.ISIEmbedding` reads the count from them. With ``prior``, θ is
    modelled in the unconstrained space of the prior's support (sbi's ``transform_to_unconstrained``, through
    the prior's ``biject_to``; zuko flows): no posterior mass leaks out of the prior, so sampling needs no
    rejection. Rejection stalls on observations unlike the training set, where a flow trained on θ itself can
    put almost all its mass outside the prior. Without ``prior``, θ is z-scored (sbi's default).
    ``n_conditions`` known-condition columns follow the summary (:func:`~dic_sbi.sbi.features.with_conditions`);
    they are standardised with it, and the ISI embedding counts them as summary columns.
    """
    from sbi.neural_nets import posterior_nn

    if density_estimator not in _ESTIMATORS:
        raise InvalidInputError(f"density_estimator: expected one of {sorted(_ESTIMATORS)}, got {density_estimator!r}")
    n_summary = len(SUMMARY_NAMES) + int(n_conditions)
    if output == "isi" or not defined_scaling:
        # The summary block only (the ISI columns stay raw: ISIEmbedding reads the count and its mask from them).
        scale = Standardize.from_data(x, columns=n_summary)
    else:
        # Opt-in (``defined_scaling``): every value column scaled by its spread where it is defined, undefined
        # entries mapped to 0. The default leaves the interval statistics unscaled and squashes the burst features
        # by the other classes' sentinels, which costs bursting STG cells ~20 % of MAE in a regression test
        # (benchmarks/standardisation.py); not yet the default: see benchmarks/README.md.
        names = feature_names(output, conditions=CONDITION_NAMES[: int(n_conditions)])
        scale = Standardize.from_data(x, names=names)  # refuses an x of another width
    if embedding_net is None and output == "isi":
        embedding_net = ISIEmbedding(max_isis, n_summary=n_summary)
    net = scale if embedding_net is None else nn.Sequential(scale, embedding_net)
    theta_kwargs = (
        dict(z_score_theta="independent") if prior is None
        else dict(z_score_theta="transform_to_unconstrained", x_dist=prior)
    )  # fmt: skip
    return posterior_nn(
        model=_ESTIMATORS[density_estimator], z_score_x="none", embedding_net=net, **theta_kwargs, **kwargs
    )


_density_estimator = build_density_estimator  # the name dic_sbi.campaign imports


def _train_npe(
    prior: Any,
    simulator: Any,
    num_simulations: int,
    *,
    density_estimator: str,
    embedding_net: nn.Module | None,
    hidden_features: int,
    num_transforms: int,
    training: dict | None,
    num_workers: int,
    simulation_batch_size: int | None,
    seed: Seed,
    show_progress_bars: bool,
    theta: Tensor | None,
    x: Tensor | None,
    torch_threads: int | None,
    n_conditions: int = 0,
    device: str = "cpu",
    defined_scaling: bool = False,
) -> tuple[Any, Tensor, Tensor, Any]:
    if not (isinstance(num_simulations, (int, np.integer)) and num_simulations >= 2):
        raise InvalidInputError(f"num_simulations: expected an int >= 2, got {num_simulations!r}")
    if not (isinstance(num_workers, (int, np.integer)) and num_workers >= 1):
        raise InvalidInputError(f"num_workers: expected a positive int, got {num_workers!r}")
    rng = numpy_rng(seed)
    sim_seed, train_seed = (int(s) for s in rng.integers(0, 2**31 - 1, size=2))
    if torch_threads is not None and not (isinstance(torch_threads, (int, np.integer)) and torch_threads >= 1):
        raise InvalidInputError(f"torch_threads: expected None or a positive int, got {torch_threads!r}")
    with _global_rngs_preserved(), torch_threads_set(torch_threads):
        return _train_npe_seeded(
            prior, simulator, num_simulations, density_estimator=density_estimator, embedding_net=embedding_net,
            hidden_features=hidden_features, num_transforms=num_transforms, training=training,
            num_workers=num_workers, simulation_batch_size=simulation_batch_size, sim_seed=sim_seed,
            train_seed=train_seed, show_progress_bars=show_progress_bars, theta=theta, x=x, n_conditions=n_conditions,
            device=device, defined_scaling=defined_scaling,
        )  # fmt: skip


@contextmanager
def _global_rngs_preserved():
    # simulate_for_sbi reseeds Python's, numpy's and torch's global generators; give the caller theirs back.
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _train_npe_seeded(
    prior, simulator, num_simulations, *, density_estimator, embedding_net, hidden_features, num_transforms,
    training, num_workers, simulation_batch_size, sim_seed, train_seed, show_progress_bars, theta, x, n_conditions=0,
    device="cpu", defined_scaling=False,
):  # fmt: skip
    from sbi.inference import NPE, simulate_for_sbi
    from sbi.utils import process_prior
    from sbi.utils.user_input_checks import process_simulator

    prior, _, prior_is_numpy = process_prior(prior)
    if theta is None or x is None:
        if simulation_batch_size is None:
            # Four batches per worker: balanced load, few process round trips, large vectorised batches.
            simulation_batch_size = max(1, int(np.ceil(num_simulations / (4 * num_workers))))
        theta, x = simulate_for_sbi(
            process_simulator(simulator, prior, prior_is_numpy), prior, int(num_simulations),
            num_workers=int(num_workers), simulation_batch_size=int(simulation_batch_size), seed=sim_seed,
            show_progress_bar=show_progress_bars,
        )  # fmt: skip
    theta = torch.as_tensor(theta, dtype=torch.float32)
    x = torch.as_tensor(x, dtype=torch.float32)
    if theta.shape[0] != x.shape[0] or theta.shape[0] != num_simulations:
        raise InvalidInputError(
            f"theta, x: expected num_simulations={num_simulations} pairs, got {theta.shape[0]} parameters and "
            f"{x.shape[0]} simulations"
        )
    output = getattr(simulator, "output", "summary")
    max_isis = getattr(simulator, "max_isis", 0)
    train_kwargs = {"max_num_epochs": 200, "training_batch_size": 200}
    train_kwargs.update(training or {})
    torch.manual_seed(train_seed)
    builder = build_density_estimator(
        density_estimator, x, output, max_isis, embedding_net, prior=prior, hidden_features=hidden_features,
        num_transforms=num_transforms, n_conditions=n_conditions, defined_scaling=defined_scaling,
    )  # fmt: skip
    on_cpu = str(device) == "cpu"
    # sbi wants the prior on the training device, and the DIC priors sample on the CPU (the compensation is numpy):
    # on a GPU the flow is trained without a prior (a first, amortised round needs none) and the posterior is built
    # on the CPU with it, where it is used.
    inference = NPE(prior=prior if on_cpu else None, density_estimator=builder, device=str(device),
                    show_progress_bars=show_progress_bars)  # fmt: skip
    with warnings.catch_warnings():
        # sbi warns about columns constant in this training set (e.g. no silent cell); our Standardize maps
        # them to 0 here and keeps them finite elsewhere, so the warning is noise.
        warnings.filterwarnings("ignore", message="Data has constant values")
        warnings.filterwarnings("ignore", message=".*prior.*None.*")
        inference.append_simulations(theta, x, exclude_invalid_x=True, data_device="cpu")
    net = inference.train(**train_kwargs)
    if show_progress_bars:
        print(flush=True)  # sbi's epoch counter ends without a newline: end its line (in a terminal and in a log)
    if on_cpu:
        return inference.build_posterior(), theta, x, inference
    return inference.build_posterior(net.to("cpu"), prior=prior), theta, x, inference


def train_dic_posterior(
    model: str | ConductanceModel,
    num_simulations: int,
    *,
    prior: DICPrior | None = None,
    simulator: DICSimulator | None = None,
    density_estimator: Literal["nsf", "maf", "mdn"] = "nsf",
    embedding_net: nn.Module | None = None,
    hidden_features: int = 50,
    num_transforms: int = 5,
    training: dict | None = None,
    num_workers: int = 1,
    simulation_batch_size: int | None = None,
    seed: Seed = None,
    show_progress_bars: bool = True,
    theta: Tensor | None = None,
    x: Tensor | None = None,
    torch_threads: int | None = None,
    conditions: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    device: str = "cpu",
    defined_scaling: bool = False,
    **protocol: Any,
) -> TrainingRun:
    """Train NPE on DICs ``θ = (g_s, g_u)`` and wrap it as a :class:`~dic_sbi.sbi.DICPosterior` over conductances.

    Parameters
    ----------
    model
        Model name or object.
    num_simulations
        Simulation budget.
    prior, simulator
        Default ``DICPrior(model)`` and ``DICSimulator(model, **protocol)``.
    density_estimator, hidden_features, num_transforms
        ``sbi.neural_nets.posterior_nn`` settings (default: neural spline flow, 5 transforms of width 50).
    embedding_net
        Net applied to ``x`` after standardisation (default: none for summary features, :class:`ISIEmbedding`
        for ``output="isi"``).
    training
        Keyword arguments of ``NPE.train`` (default ``max_num_epochs=200, training_batch_size=200``).
    num_workers, simulation_batch_size
        Parallel simulation (``simulate_for_sbi``); the batch size defaults to ``num_simulations / (4 workers)``.
    seed
        Seed of the simulations and of training (int, numpy or torch Generator).
    show_progress_bars
        tqdm bars for simulation and training (on by default, as in sbi; ``False`` for none).
    theta, x
        Reuse simulations instead of running them (e.g. to compare estimators on the same budget).
    torch_threads
        torch threads during training (restored afterwards); ``None`` leaves torch's setting. 1 is often
        fastest for these small flows, and much faster on a busy machine.
    conditions
        Known conditions carried by ``x`` after the summary (:func:`~dic_sbi.sbi.features.with_conditions`),
        with the values present in the training set as intervals, e.g. ``{"noise_std": ((0, 0), (5, 5))}`` for
        simulations without and with noisy current σ = 5 (see :class:`~dic_sbi.sbi.DICPosterior`); needs ``theta``
        and ``x`` (the simulator does not add them).
    device
        Torch device to train on (``"cuda"`` for a GPU); the posterior is returned on the CPU either way.
    defined_scaling
        Scale each feature by its moments over the rows where it is defined, undefined entries mapped to 0
        (:func:`build_density_estimator`; ``features="intervals"`` / ``"summary"`` layouts).
    **protocol
        Simulator settings when ``simulator`` is not given: ``duration``, ``transient``, ``dt``, ``noise_std``,
        ``output``, ``max_isis``, ...

    Returns
    -------
    TrainingRun
        ``.posterior`` is the :class:`~dic_sbi.sbi.DICPosterior`.
    """
    model = get_model(model)
    prior = DICPrior(model) if prior is None else prior
    if simulator is None:
        simulator = DICSimulator(model, **protocol)
    elif protocol:
        raise InvalidInputError(f"protocol: pass {sorted(protocol)} to the simulator you gave, not to the recipe")
    conditions = dict(conditions or {})
    if conditions:
        if theta is None or x is None:
            raise InvalidInputError("conditions: pass theta and x (with the condition columns); the simulator does not add them")
        expected = simulator.x_dim + len(conditions)
        if x.shape[-1] != expected:
            raise InvalidInputError(f"x: expected {expected} columns (features + {len(conditions)} conditions), got {x.shape[-1]}")
    posterior, theta, x, inference = _train_npe(
        prior, simulator, num_simulations, density_estimator=density_estimator, embedding_net=embedding_net,
        hidden_features=hidden_features, num_transforms=num_transforms, training=training, num_workers=num_workers,
        simulation_batch_size=simulation_batch_size, seed=seed, show_progress_bars=show_progress_bars,
        theta=theta, x=x, torch_threads=torch_threads, n_conditions=len(conditions), device=device,
        defined_scaling=defined_scaling,
    )  # fmt: skip
    dic_posterior = DICPosterior(posterior, model, pair=getattr(simulator, "pair", None), simulator=simulator,
                                 conditions=conditions)  # fmt: skip
    return TrainingRun(dic_posterior, prior, simulator, theta, x, inference)


def train_conductance_posterior(
    model: str | ConductanceModel,
    num_simulations: int,
    *,
    scale: Literal["linear", "log"] = "log",
    prior: ConductancePrior | None = None,
    simulator: ConductanceSimulator | None = None,
    density_estimator: Literal["nsf", "maf", "mdn"] = "nsf",
    embedding_net: nn.Module | None = None,
    hidden_features: int = 50,
    num_transforms: int = 5,
    training: dict | None = None,
    num_workers: int = 1,
    simulation_batch_size: int | None = None,
    seed: Seed = None,
    show_progress_bars: bool = True,
    theta: Tensor | None = None,
    x: Tensor | None = None,
    torch_threads: int | None = None,
    defined_scaling: bool = False,
    **protocol: Any,
) -> TrainingRun:
    """The standard baseline: NPE directly on maximal conductances, ``θ = ḡ ~ ConductancePrior(model, scale)``.

    Same arguments as :func:`train_dic_posterior` (same features, estimator, budget), plus ``scale``
    (default ``"log"``: conductances span decades). ``.posterior`` is sbi's ``DirectPosterior`` over ḡ.
    """
    model = get_model(model)
    prior = ConductancePrior(model, scale) if prior is None else prior
    if simulator is None:
        simulator = ConductanceSimulator(model, **protocol)
    elif protocol:
        raise InvalidInputError(f"protocol: pass {sorted(protocol)} to the simulator you gave, not to the recipe")
    posterior, theta, x, inference = _train_npe(
        prior, simulator, num_simulations, density_estimator=density_estimator, embedding_net=embedding_net,
        hidden_features=hidden_features, num_transforms=num_transforms, training=training, num_workers=num_workers,
        simulation_batch_size=simulation_batch_size, seed=seed, show_progress_bars=show_progress_bars,
        theta=theta, x=x, torch_threads=torch_threads, defined_scaling=defined_scaling,
    )  # fmt: skip
    return TrainingRun(posterior, prior, simulator, theta, x, inference)
