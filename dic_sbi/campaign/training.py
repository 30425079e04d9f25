"""Training an NPE straight from a campaign store larger than memory.

sbi 0.27's ``NPE.append_simulations`` takes tensors and ``NPE.train`` builds its data loaders from the tensors
it holds, so it cannot stream. Here the store is streamed chunk by chunk through a
:class:`torch.utils.data.IterableDataset` and the training loop is written over sbi's own density estimator:
``posterior_nn`` builds it (the same builder, architecture and ``x`` standardisation as the in-memory recipes of
:mod:`dic_sbi.sbi.training`), its ``loss`` is sbi's first-round NPE loss (``-log q(θ | x)``), and the trained
estimator is wrapped in sbi's ``DirectPosterior`` (and, for a DIC campaign, in :class:`~dic_sbi.sbi.DICPosterior`).
Memory holds a few chunks at a time, whatever the size of the store. Training stops early on a held-out set
of whole chunks, like sbi's ``train(stop_after_epochs=...)``.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..core.checks import is_int
from ..errors import InvalidInputError
from .store import CampaignStore

__all__ = ["StoreDataset", "StoreTrainingRun", "train_npe_from_store"]


class StoreDataset(IterableDataset):
    """Minibatches ``(θ, x)`` (float32 tensors) streamed from the complete chunks of a store.

    Each pass visits the chosen chunks in a fresh random order (``seed`` + epoch), pools ``shuffle_chunks`` of
    them and shuffles their rows, and yields batches of ``batch_size`` rows; rows with a non-finite ``x``
    (sbi's invalid simulations) are dropped, as sbi's NPE does. Use with ``DataLoader(dataset, batch_size=None)``;
    with ``num_workers > 1`` the chunks are split between the loader's workers.

    Arguments:
        store: Path or :class:`CampaignStore`.
        chunks: Chunk indices to use (default: every complete chunk).
        batch_size: Rows per batch.
        shuffle: Shuffle chunk order and rows (else: chunks in order, rows in order).
        shuffle_chunks: Chunks pooled for the row shuffle (memory: that many chunks).
        seed: Seed of the shuffles.
    """

    def __init__(
        self,
        store: str | os.PathLike | CampaignStore,
        *,
        chunks: Sequence[int] | None = None,
        batch_size: int = 256,
        shuffle: bool = True,
        shuffle_chunks: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.store = store if isinstance(store, CampaignStore) else CampaignStore.open(store)
        complete = self.store.complete_chunks()
        if chunks is None:
            chunks = complete
        missing = sorted(set(int(k) for k in chunks) - set(complete))
        if missing:
            raise InvalidInputError(f"chunks: {missing[:5]} are not complete chunks of {self.store.path}")
        if not chunks:
            raise InvalidInputError(f"store: {self.store.path} has no complete chunk to train on")
        for name, v in (("batch_size", batch_size), ("shuffle_chunks", shuffle_chunks)):
            if not is_int(v, 1):
                raise InvalidInputError(f"{name}: expected an int >= 1, got {v!r}")
        self.chunks = [int(k) for k in chunks]
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.shuffle_chunks = int(shuffle_chunks)
        self.seed = int(seed)
        self.epoch = 0  # bumped by the training loop so that every epoch has its own order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.chunks) if self.shuffle else np.asarray(self.chunks)
        info = get_worker_info()
        if info is not None:
            order = order[info.id :: info.num_workers]
        for i in range(0, len(order), self.shuffle_chunks):
            parts = [self.store.read_chunk(int(k), ("theta", "x")) for k in order[i : i + self.shuffle_chunks]]
            theta = np.concatenate([p.theta for p in parts])
            x = np.concatenate([p.x for p in parts])
            valid = np.all(np.isfinite(x), axis=1) & np.all(np.isfinite(theta), axis=1)
            theta, x = theta[valid], x[valid]
            rows = rng.permutation(len(x)) if self.shuffle else np.arange(len(x))
            for a in range(0, len(rows), self.batch_size):
                idx = rows[a : a + self.batch_size]
                yield torch.from_numpy(theta[idx]), torch.from_numpy(x[idx])

    def n_rows(self) -> int:
        """Rows in the chosen chunks (before dropping invalid ones)."""
        return sum(b - a for a, b in map(self.store.rows, self.chunks))


@dataclass
class StoreTrainingRun:
    """What :func:`train_npe_from_store` produced.

    Attributes
    ----------
    posterior
        sbi ``DirectPosterior`` over θ (conductance campaign) or :class:`~dic_sbi.sbi.DICPosterior` (DIC).
    estimator
        The trained sbi density estimator (best validation epoch).
    prior
        The campaign's prior.
    train_losses, validation_losses
        Mean loss per epoch.
    train_chunks, validation_chunks
        The chunk split.
    """

    posterior: Any
    estimator: Any
    prior: Any
    train_losses: list[float] = field(default_factory=list)
    validation_losses: list[float] = field(default_factory=list)
    train_chunks: list[int] = field(default_factory=list)
    validation_chunks: list[int] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.train_losses)


def _mean_loss(estimator, loader: DataLoader, optimizer=None, clip: float | None = None) -> float:
    total, n = 0.0, 0
    for theta, x in loader:
        if optimizer is None:
            with torch.no_grad():
                loss = estimator.loss(theta, x)
        else:
            optimizer.zero_grad()
            loss = estimator.loss(theta, x)
            loss.mean().backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(estimator.parameters(), max_norm=clip)
            optimizer.step()
        total += float(loss.detach().sum())
        n += loss.numel()
    return total / max(n, 1)


def train_npe_from_store(
    store: str | os.PathLike | CampaignStore,
    *,
    density_estimator: str = "maf",
    hidden_features: int = 50,
    num_transforms: int = 5,
    batch_size: int = 256,
    learning_rate: float = 5e-4,
    validation_chunks: int | float = 0.1,
    stop_after_epochs: int = 20,
    max_epochs: int = 2**31 - 1,
    clip_max_norm: float | None = 5.0,
    shuffle_chunks: int = 4,
    num_workers: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> StoreTrainingRun:
    """Train NPE on every complete chunk of ``store``, streaming (never loading the whole store).

    Parameters
    ----------
    store
        Campaign store (path or :class:`CampaignStore`).
    density_estimator, hidden_features, num_transforms
        sbi's ``posterior_nn`` settings (``"maf"``, ``"nsf"``, ``"mdn"``, ``"made"``).
    batch_size, learning_rate, clip_max_norm
        Adam on minibatches, gradient norm clipped (sbi's defaults).
    validation_chunks
        Held-out chunks for early stopping: a count, or a fraction of the complete chunks (at least one when
        there are two or more chunks).
    stop_after_epochs, max_epochs
        Stop when the validation loss has not improved for this many epochs, or after ``max_epochs``.
    shuffle_chunks, num_workers
        Chunks pooled per shuffle; ``DataLoader`` workers reading chunks in parallel.
    seed
        Seed of the initialisation, the split and the shuffles.
    progress
        Show a progress bar over epochs.
    """
    from ..sbi.training import _density_estimator
    from .runner import CampaignSpec, _objects

    st = store if isinstance(store, CampaignStore) else CampaignStore.open(store)
    for name, v in (("stop_after_epochs", stop_after_epochs), ("max_epochs", max_epochs), ("num_workers", num_workers + 1)):
        if not is_int(v, 1):
            raise InvalidInputError(f"{name}: expected a positive int, got {v!r}")
    if not (isinstance(learning_rate, (int, float)) and math.isfinite(learning_rate) and learning_rate > 0):
        raise InvalidInputError(f"learning_rate: expected a number > 0, got {learning_rate!r}")
    complete = st.complete_chunks()
    if not complete:
        raise InvalidInputError(f"store: {st.path} has no complete chunk to train on (run the campaign first)")
    if isinstance(validation_chunks, float):
        if not 0.0 <= validation_chunks < 1.0:
            raise InvalidInputError(f"validation_chunks: a fraction must be in [0, 1), got {validation_chunks}")
        n_val = max(1, round(validation_chunks * len(complete))) if validation_chunks > 0 else 0
    elif isinstance(validation_chunks, (int, np.integer)) and validation_chunks >= 0:
        n_val = int(validation_chunks)
    else:
        raise InvalidInputError(f"validation_chunks: expected an int >= 0 or a fraction, got {validation_chunks!r}")
    n_val = min(n_val, len(complete) - 1)
    rng = np.random.default_rng(seed)
    perm = [int(k) for k in rng.permutation(complete)]
    val, train = sorted(perm[:n_val]), sorted(perm[n_val:])

    spec = CampaignSpec.from_config(st.config)
    prior, simulator = _objects(spec)
    torch.manual_seed(seed)
    # The standardisation of x and the flow's z-scoring of θ are fitted on the first training chunk(s): one
    # chunk of a campaign is a uniform sample of it, so its statistics are those of the whole store.
    first = [st.read_chunk(k, ("theta", "x")) for k in train[: max(1, shuffle_chunks)]]
    theta0 = torch.from_numpy(np.concatenate([c.theta for c in first]))
    x0 = torch.from_numpy(np.concatenate([c.x for c in first]))
    ok = torch.isfinite(x0).all(1)
    if int(ok.sum()) < 2:
        raise InvalidInputError(f"store: the first chunks of {st.path} hold fewer than 2 valid simulations")
    build = _density_estimator(density_estimator, x0[ok], spec.output, spec.max_isis, None,
                               hidden_features=hidden_features, num_transforms=num_transforms)  # fmt: skip
    estimator = build(theta0[ok], x0[ok])
    optimizer = torch.optim.Adam(estimator.parameters(), lr=learning_rate)

    train_ds = StoreDataset(st, chunks=train, batch_size=batch_size, shuffle_chunks=shuffle_chunks, seed=seed)
    val_ds = StoreDataset(st, chunks=val, batch_size=4096, shuffle=False) if val else None
    loader = DataLoader(train_ds, batch_size=None, num_workers=num_workers)
    val_loader = DataLoader(val_ds, batch_size=None) if val_ds is not None else None
    run = StoreTrainingRun(posterior=None, estimator=estimator, prior=prior, train_chunks=train, validation_chunks=val)
    best, best_state, since = math.inf, copy.deepcopy(estimator.state_dict()), 0
    bar = None
    if progress:
        from .._progress import progress_bar

        bar = progress_bar(desc="NPE from store", unit="epoch")
    try:
        for epoch in range(max_epochs):
            train_ds.epoch = epoch
            estimator.train()
            run.train_losses.append(_mean_loss(estimator, loader, optimizer, clip_max_norm))
            estimator.eval()
            score = _mean_loss(estimator, val_loader) if val_loader is not None else run.train_losses[-1]
            run.validation_losses.append(score)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(train=f"{run.train_losses[-1]:.3f}", val=f"{score:.3f}")
            if score < best:
                best, best_state, since = score, copy.deepcopy(estimator.state_dict()), 0
            else:
                since += 1
                if since >= stop_after_epochs:
                    break
    finally:
        if bar is not None:
            bar.close()
    estimator.load_state_dict(best_state)
    estimator.eval()

    from sbi.inference.posteriors import DirectPosterior

    posterior = DirectPosterior(posterior_estimator=estimator, prior=prior)
    if spec.prior == "dic":
        from ..sbi import DICPosterior

        posterior = DICPosterior(posterior, spec.model, simulator=simulator)
    run.posterior = posterior
    return run
