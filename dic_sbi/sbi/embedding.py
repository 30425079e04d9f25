"""Embedding nets for ``x``: a fixed standardisation, a masked convolutional net over log-ISI sequences, and an
adapter that puts any sequence net (sbi's embedding nets) on the same input.

Both are meant for ``sbi.neural_nets.posterior_nn(..., embedding_net=..., z_score_x="none")``: sbi's own
z-scoring would rescale the ISI count that :class:`ISIEmbedding` reads its mask from, and it floors standard
deviations at 1e-7, so a feature constant in the training set (say, no silent cell) blows up to ~1e7 on an
observation where it is not. :class:`Standardize` does the same job with a sane floor.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import InvalidInputError
from .features import SUMMARY_NAMES, defined_mask, undefined_rule

__all__ = ["Standardize", "ISIEmbedding", "SequenceEmbedding"]


class Standardize(nn.Module):
    """``(x - mean) / max(std, min_std)`` per column, with statistics fixed at construction.

    Arguments:
        mean, std: ``(k,)`` column statistics (e.g. of the training ``x``).
        min_std: Floor of the standard deviation.
    """

    def __init__(self, mean: Tensor, std: Tensor, *, min_std: float = 0.1) -> None:
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32)
        std = torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != std.shape or mean.ndim != 1:
            raise InvalidInputError(f"mean, std: expected two (k,) tensors, got {tuple(mean.shape)} and {tuple(std.shape)}")
        # Frozen parameters rather than buffers: sbi locates a net's device from its first parameter.
        self.mean = nn.Parameter(mean, requires_grad=False)
        self.std = nn.Parameter(std.clamp_min(min_std), requires_grad=False)
        # 1 when each value column holds the moments of the rows where it is defined (from_data(names=...)),
        # 0 for moments of the whole mixture; stored with the weights (the out-of-distribution check reads it).
        self.register_buffer("defined_moments", torch.tensor(0.0))
        # Column j is undefined where x[:, ref_index[j]] == ref_value[j] (ref_index -1: always defined); such
        # entries are mapped to 0 (the mean of the defined values) and the indicator columns say which they are.
        # Without it a sentinel 40 spreads below a burst feature's defined values would reach the flow as -40.
        self.register_buffer("ref_index", torch.full(mean.shape, -1, dtype=torch.long))
        self.register_buffer("ref_value", torch.zeros(mean.shape))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Weights saved before these buffers existed hold mixture moments and map every value as it is.
        k = state_dict[prefix + "mean"].shape if prefix + "mean" in state_dict else self.mean.shape
        state_dict.setdefault(prefix + "defined_moments", torch.tensor(0.0))
        state_dict.setdefault(prefix + "ref_index", torch.full(k, -1, dtype=torch.long))
        state_dict.setdefault(prefix + "ref_value", torch.zeros(k))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @classmethod
    def from_data(
        cls, x: Tensor, *, columns: int | None = None, min_std: float = 0.1, names: Sequence[str] | None = None
    ) -> "Standardize":
        """Statistics of the finite rows of ``x``; with ``columns``, only the first ``columns`` are scaled.

        With ``names`` (the columns of ``x``, :func:`~dic_sbi.sbi.features.feature_names`), each column's
        statistics are those of the rows where its value is defined (:func:`~dic_sbi.sbi.features.undefined_rule`),
        and undefined entries map to 0: a feature of bursting trains is then scaled by its spread among bursting
        trains, not squashed by the sentinels of the other classes. A column with fewer than two defined rows is
        left as it is.
        """
        x = torch.as_tensor(x, dtype=torch.float32)
        finite = torch.isfinite(x).all(dim=1)
        defined = None
        if names is not None:
            ref_index, ref_value = undefined_rule(names)
            defined = defined_mask(x, names)[finite]
        x = x[finite]
        if x.shape[0] < 2:
            raise InvalidInputError("x: need at least two finite rows to standardise")
        mean, std = x.mean(0), x.std(0)
        if defined is not None:
            for j in range(x.shape[1]):
                v = x[defined[:, j], j]
                mean[j], std[j] = (v.mean(), v.std()) if v.numel() >= 2 else (0.0, 1.0)
        if columns is not None:
            mean[columns:], std[columns:] = 0.0, 1.0
        out = cls(mean, std, min_std=min_std)
        if defined is not None:
            out.defined_moments.fill_(1.0)
            out.ref_index.copy_(ref_index)
            out.ref_value.copy_(ref_value)
        return out

    def forward(self, x: Tensor) -> Tensor:
        z = (x - self.mean) / self.std
        ruled = self.ref_index >= 0
        if bool(ruled.any()):
            undefined = (x[..., self.ref_index.clamp_min(0)] == self.ref_value) & ruled
            z = torch.where(undefined, torch.zeros_like(z), z)
        return z


class _ISIInput(nn.Module):
    """What both ISI embeddings share: the ``isi`` layout (summary, count, padded log-ISIs), split and checked."""

    def __init__(self, max_isis: int, n_summary: int) -> None:
        super().__init__()
        self.max_isis = int(max_isis)
        self.n_summary = int(n_summary)

    @property
    def input_dim(self) -> int:
        return self.n_summary + 1 + self.max_isis

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Summary columns, ISI count, padded log-ISIs and their mask (1 on the first ``n``) of ``x``'s rows."""
        if x.shape[-1] != self.input_dim:
            raise InvalidInputError(
                f"x: the ISI embedding expects {self.input_dim} columns (summary {self.n_summary}, count 1, ISIs "
                f"{self.max_isis}), got {x.shape[-1]}; simulate with output='isi', max_isis={self.max_isis}"
            )
        n = x[:, self.n_summary].round().clamp(0, self.max_isis)
        seq = x[:, self.n_summary + 1 :]
        mask = (torch.arange(self.max_isis, device=x.device)[None, :] < n[:, None]).to(x.dtype)
        return x[:, : self.n_summary], n, seq, mask


def _head(in_dim: int, hidden: int, output_dim: int) -> nn.Sequential:
    """The MLP both ISI embeddings end with."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, output_dim))


class ISIEmbedding(_ISIInput):
    r"""Embedding of a spike train given as summary features and a padded log-ISI sequence.

    Input rows are the ``output="isi"`` layout of the simulators: ``n_summary`` summary columns, the number
    ``n`` of ISIs kept, then ``max_isis`` log10-ISIs of which the first ``n`` are real. The sequence goes
    through ``n_layers`` masked 1-D convolutions (padding positions are zeroed after every layer, so they never
    leak into real ones), is pooled by masked mean and max (order-aware locally, length-independent globally),
    and is concatenated with the summary and ``log1p(n)`` before an MLP.

    Brandoit et al. (2025) embed log-ISIs with a transformer; a small convolutional net sees the same local ISI
    patterns (bursts, pauses) at a fraction of the CPU cost and trains in seconds in the test suite.

    Arguments:
        max_isis: Length of the padded sequence.
        n_summary: Number of summary columns before the sequence (default: the 17 of :data:`SUMMARY_NAMES`).
        output_dim: Size of the embedding.
        channels: Convolution channels.
        kernel_size: Odd convolution width.
        n_layers: Convolution layers.
        hidden: Width of the MLP.

    References:
        Brandoit, Ernst, Drion, Fyon (2025). arXiv 2509.12783.
    """

    def __init__(
        self,
        max_isis: int,
        *,
        n_summary: int = len(SUMMARY_NAMES),
        output_dim: int = 32,
        channels: int = 32,
        kernel_size: int = 5,
        n_layers: int = 3,
        hidden: int = 64,
    ) -> None:
        if max_isis < 1 or n_summary < 0 or kernel_size % 2 != 1 or n_layers < 1:
            raise InvalidInputError(
                f"ISIEmbedding: need max_isis >= 1, n_summary >= 0, odd kernel_size, n_layers >= 1; got "
                f"max_isis={max_isis}, n_summary={n_summary}, kernel_size={kernel_size}, n_layers={n_layers}"
            )
        super().__init__(max_isis, n_summary)
        convs = [nn.Conv1d(2, channels, kernel_size, padding=kernel_size // 2)]
        convs += [nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2) for _ in range(n_layers - 1)]
        self.convs = nn.ModuleList(convs)
        self.mlp = _head(n_summary + 1 + 2 * channels, hidden, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        summary, n, seq, mask = self.split(x)
        h = torch.stack([seq * mask, mask], dim=1)
        for conv in self.convs:
            h = nn.functional.gelu(conv(h)) * mask[:, None, :]
        count = mask.sum(-1, keepdim=True)
        mean = h.sum(-1) / count.clamp_min(1.0)
        # Masked max; an empty sequence (silent cell) pools to 0 rather than -inf.
        peak = torch.where(mask[:, None, :] > 0, h, torch.full_like(h, -torch.inf)).amax(-1)
        peak = torch.where(count > 0, peak, torch.zeros_like(peak))
        return self.mlp(torch.cat([summary, torch.log1p(n)[:, None], mean, peak], dim=-1))


class SequenceEmbedding(_ISIInput):
    r"""Any sequence net (e.g. sbi's ``CausalCNNEmbedding``) on the ``output="isi"`` layout, next to the summary.

    The padded log-ISI sequence goes to ``sequence_net`` as a ``(B, 2 * max_isis)`` row: the masked log-ISIs,
    then the mask (1 on real ISIs), i.e. two channels of length ``max_isis`` flattened channel-first, which is how
    sbi's ``CausalCNNEmbedding(input_shape=(max_isis,), in_channels=2)`` reads its input. Its output is
    concatenated with the summary columns and ``log1p(n)`` and mapped by an MLP, as in :class:`ISIEmbedding`;
    so the two differ only in how the sequence is read, and can be compared on the same data.

    Arguments:
        sequence_net: Module mapping ``(B, 2 * max_isis)`` to ``(B, sequence_dim)``.
        sequence_dim: Size of its output.
        max_isis: Length of the padded sequence.
        n_summary: Number of summary columns before the sequence (conditions included).
        output_dim: Size of the embedding.
        hidden: Width of the MLP.
    """

    def __init__(self, sequence_net: nn.Module, sequence_dim: int, max_isis: int, *, n_summary: int = len(SUMMARY_NAMES),
                 output_dim: int = 32, hidden: int = 64) -> None:  # fmt: skip
        if max_isis < 1 or n_summary < 0 or sequence_dim < 1:
            raise InvalidInputError(
                f"SequenceEmbedding: need max_isis >= 1, n_summary >= 0, sequence_dim >= 1; got max_isis={max_isis}, "
                f"n_summary={n_summary}, sequence_dim={sequence_dim}"
            )
        super().__init__(max_isis, n_summary)
        self.sequence_net = sequence_net
        self.mlp = _head(n_summary + 1 + int(sequence_dim), hidden, output_dim)

    def forward(self, x: Tensor) -> Tensor:
        summary, n, seq, mask = self.split(x)
        h = self.sequence_net(torch.cat([seq * mask, mask], dim=-1))
        return self.mlp(torch.cat([summary, torch.log1p(n)[:, None], h], dim=-1))

