"""An equal-weight mixture of trained density estimators, used as one sbi density estimator.

A single neural posterior trained to convergence tends to be a little over-confident, and its errors differ
from one training seed to the next (Lakshminarayanan et al. 2017; Hermans et al. 2022, "A trust crisis in
simulation-based inference?", where ensembles were the most reliable remedy). ``MixtureEstimator`` averages the
densities of networks trained on the same simulations with different seeds,

    q(θ | x) = (1/K) Σ_k q_k(θ | x),

and behaves as any sbi ``ConditionalDensityEstimator``: sbi's ``DirectPosterior`` wraps it, so ``sample``,
``sample_batched``, ``log_prob``, ``log_prob_batched`` and ``map`` work unchanged, and its ``state_dict`` holds
every member (``net.<k>.…``) for :func:`~dic_sbi.sbi.pretrained.save_pretrained`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..errors import InvalidInputError

__all__ = ["MixtureEstimator", "mixture_free_conductances", "mixture_posterior"]


def _estimator_base() -> type:
    from sbi.neural_nets.estimators import ConditionalDensityEstimator

    return ConditionalDensityEstimator


class MixtureEstimator(_estimator_base()):  # type: ignore[misc]
    """Equal-weight mixture of ``members`` (sbi density estimators of the same input and condition shapes).

    Parameters
    ----------
    members
        Two or more trained estimators (e.g. NPE trained with different seeds on the same simulations).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        members = list(members)
        if len(members) < 2:
            raise InvalidInputError(f"members: a mixture needs at least 2 estimators, got {len(members)}")
        shapes = {(tuple(m.input_shape), tuple(m.condition_shape)) for m in members}
        if len(shapes) != 1:
            raise InvalidInputError(f"members: estimators of different input / condition shapes {sorted(shapes)}")
        first = members[0]
        super().__init__(nn.ModuleList(members), first.input_shape, first.condition_shape)

    @property
    def members(self) -> nn.ModuleList:
        """The mixed estimators, in order (member ``k`` of ``dic-sbi train --members``)."""
        return self.net

    @property
    def embedding_net(self) -> nn.Module | None:
        # The members share one training set, hence one fitted standardisation; the first member's stands for
        # all (dic_sbi.sbi.ood reads the training moments from it).
        return getattr(self.members[0], "embedding_net", None)

    @property
    def _embedding_net(self) -> nn.Module | None:
        return getattr(self.members[0], "_embedding_net", None)

    def log_prob(self, input: Tensor, condition: Tensor, **kwargs) -> Tensor:
        """``log (1/K) Σ_k q_k(input | condition)``, shape ``(sample_dim, batch_dim)`` as each member's."""
        parts = torch.stack([m.log_prob(input, condition, **kwargs) for m in self.members])
        return torch.logsumexp(parts, dim=0) - math.log(len(self.members))

    def loss(self, input: Tensor, condition: Tensor, **kwargs) -> Tensor:
        """Negative log-density of the mixture (the members are trained on their own, not through this)."""
        return -self.log_prob(input.unsqueeze(0), condition, **kwargs).squeeze(0)

    def sample(self, sample_shape: torch.Size, condition: Tensor, **kwargs) -> Tensor:
        """Samples of shape ``(*sample_shape, batch_dim, *input_shape)``: each draw's member is chosen uniformly
        (torch's global generator), and each member draws only as many samples as it was chosen for."""
        sample_shape = torch.Size(sample_shape)
        n = sample_shape.numel()
        batch = condition.shape[0]
        choice = torch.randint(len(self.members), (n, batch), device=condition.device)
        out = torch.empty((n, batch, *self.input_shape), device=condition.device)
        for k, member in enumerate(self.members):
            chosen = choice == k
            need = int(chosen.sum(0).max()) if n else 0
            if need == 0:
                continue
            draws = member.sample(torch.Size((need,)), condition, **kwargs)  # (need, batch, *input_shape)
            # The j-th draw chosen for member k in column b is its j-th sample for that column.
            order = torch.cumsum(chosen.long(), dim=0) - 1
            rows, cols = chosen.nonzero(as_tuple=True)
            out[rows, cols] = draws[order[rows, cols], cols]
        return out.reshape(*sample_shape, batch, *self.input_shape)


def mixture_free_conductances(laws: Sequence[Any]) -> Any:
    """One :class:`~dic_sbi.sbi.free_conductances.FreeConductanceEstimator` whose flow is the equal-weight mixture of
    ``laws``' flows (learned free-conductance laws trained on the same simulations with different seeds).

    The laws must share model, ``x`` width, compensating pair and architecture, and carry no location offset (a
    shift of each member is not a shift of their mixture). The mixture samples and evaluates densities as a single
    law does; it has no single base space (``base_coordinates`` refuses it).
    """
    from ..models.base import same_kinetics
    from .free_conductances import FreeConductanceEstimator

    laws = list(laws)
    if len(laws) < 2 or not all(isinstance(f, FreeConductanceEstimator) for f in laws):
        raise InvalidInputError(f"laws: a mixture needs at least 2 FreeConductanceEstimator, got {laws!r}")
    first = laws[0]
    for f in laws[1:]:
        # Models compare by identity; laws unpickled apart hold equal copies: the same kinetics and seed law suffice.
        same_model = same_kinetics(f.model, first.model) and f.model.seed_population == first.model.seed_population
        if (not same_model or f.x_dim != first.x_dim or f.pair != first.pair
                or f.calcium_path_tau != first.calcium_path_tau or f.settings != first.settings):  # fmt: skip
            raise InvalidInputError("laws: the laws to mix differ in model, x width, pair or architecture")
    if any(f.w_offset is not None for f in laws):
        raise InvalidInputError("laws: a law with a location offset (w_offset) cannot be mixed; mix before recalibrating")
    net = MixtureEstimator([f.net for f in laws])
    return FreeConductanceEstimator(net, first.model, x_dim=first.x_dim, pair=first.pair,
                                    calcium_path_tau=first.calcium_path_tau,
                                    settings={**first.settings, "members": len(laws)})  # fmt: skip


def mixture_posterior(posteriors: Sequence[Any]) -> Any:
    """One posterior whose networks are the equal-weight mixtures of ``posteriors``' networks.

    ``posteriors``: trained on the same simulations with different seeds, either sbi ``DirectPosterior`` (standard
    NPE), :class:`~dic_sbi.sbi.DICPosterior` (whose learned free-conductance laws, if any, are mixed too:
    :func:`mixture_free_conductances`) or :class:`~dic_sbi.sbi.box_dic.BoxDICPosterior` (both factors, and the fiber
    densities if any, mixed). The first one gives the prior, model, pair, simulator, conditions, training jitter and
    firing emulator. For the two-factor posteriors each factor is its own mixture: a draw's DIC member and its
    second factor's member are chosen independently.
    """
    from sbi.inference.posteriors import DirectPosterior

    from .box_dic import BoxDICPosterior
    from .posterior import DICPosterior

    posteriors = list(posteriors)
    if len(posteriors) < 2:
        raise InvalidInputError(f"posteriors: a mixture needs at least 2, got {len(posteriors)}")
    first = posteriors[0]
    if all(type(p) is DirectPosterior for p in posteriors):
        mixture = MixtureEstimator([p.posterior_estimator for p in posteriors]).eval()
        return DirectPosterior(posterior_estimator=mixture, prior=first.prior)
    if all(isinstance(p, BoxDICPosterior) for p in posteriors):
        if any(p.pair != first.pair or p.x_dim != first.x_dim or p.model.name != first.model.name
               or p.coordinates != first.coordinates for p in posteriors):  # fmt: skip
            raise InvalidInputError("posteriors: the BoxDICPosterior to mix differ in model, pair, x width or coordinates")
        dens = [p.fiber_density for p in posteriors]
        if any(d is None for d in dens) and not all(d is None for d in dens):
            raise InvalidInputError("posteriors: some BoxDICPosterior have a fiber density and some do not")
        if dens[0] is not None:  # the densities are mixed too (they must be sbi DirectPosterior to be)
            dens[0] = mixture_posterior(dens)
        dic = MixtureEstimator([p.dic_posterior.posterior_estimator for p in posteriors]).eval()
        return BoxDICPosterior(DirectPosterior(posterior_estimator=dic, prior=first.dic_posterior.prior),
                               MixtureEstimator([p.fiber_net for p in posteriors]).eval(), first.model, pair=first.pair,
                               x_dim=first.x_dim, prior=first.prior, max_rounds=first.max_rounds,
                               coordinates=first.coordinates, fiber_density=dens[0],
                               fiber_proposals=first.fiber_proposals)  # fmt: skip
    if not all(isinstance(p, DICPosterior) for p in posteriors):
        raise InvalidInputError("posteriors: expected all sbi DirectPosterior, all DICPosterior or all BoxDICPosterior, got "
                                + ", ".join(type(p).__name__ for p in posteriors))  # fmt: skip
    if not all(type(p.posterior) is DirectPosterior for p in posteriors):
        raise InvalidInputError("posteriors: each DICPosterior must wrap an sbi DirectPosterior (an NPE network) to be mixed")
    laws = [p.free_conductances for p in posteriors]
    if any(f is None for f in laws) and not all(f is None for f in laws):
        raise InvalidInputError("posteriors: some have a learned free-conductance law and some do not")
    mixture = MixtureEstimator([p.posterior.posterior_estimator for p in posteriors]).eval()
    return DICPosterior(DirectPosterior(posterior_estimator=mixture, prior=first.posterior.prior), first.model,
                        pair=first.pair, calcium_path_tau=first.calcium_path_tau, simulator=first.simulator,
                        conditions=first.conditions,
                        free_conductances=None if laws[0] is None else mixture_free_conductances(laws),
                        emulator=first.emulator, training_jitter=first.training_jitter)  # fmt: skip
