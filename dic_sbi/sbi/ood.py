"""Is an observation like the ones a posterior was trained on? Two checks that need no retraining.

An amortised posterior extrapolates silently: a 990-Hz Poisson train, or a pacemaker far slower than any
training cell, still gets a posterior, often pinned to an edge of the prior box with a tiny spread. Two checks
flag it:

- **Range of x.** The network's first layer is a fixed :class:`~dic_sbi.sbi.Standardize` holding the mean and
  standard deviation of the training ``x`` (every posterior built by
  :func:`~dic_sbi.sbi.training.build_density_estimator`, the shipped ones included, stores them with its weights).
  Posteriors built since 2026-12-05 store, for each feature, the moments of the training cells for which it is
  defined (``Standardize.defined_moments``). Older ones store moments of a mixture (silent cells hold the floor
  rate, tonic cells the sentinel in the burst columns), and the indicator columns' means give each group's
  share, so the moments of the cells for which a feature is defined follow exactly (``_z_scores``); a column whose ``|z|`` against them is above
  :data:`Z_LIMIT` is outside what the flow was fitted on. By Chebyshev's inequality at most ``1 / Z_LIMIT**2``
  (4 %) of the training set lies that far out in any one column, whatever the distribution (and the floor of
  ``std`` at 0.1 only makes ``|z|`` smaller, so the check is conservative); known conditions are left out (they
  are checked against their trained values by :meth:`DICPosterior.check_conditions`).
- **Mass on the edge of the prior box.** Samples in the unconstrained space of the prior's support cannot leave
  the box, so an extrapolating flow piles them against a bound instead. When at least :data:`EDGE_FRACTION`
  of the DIC samples lie within :data:`EDGE_WIDTH` of the box width from one bound, the posterior is pinned
  there, which a well-trained posterior of an observation the prior covers rarely does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from .embedding import Standardize
from .features import RATE_FLOOR_HZ, SENTINEL, SUMMARY_NAMES

__all__ = ["out_of_distribution", "training_standardization", "Z_LIMIT", "EDGE_WIDTH", "EDGE_FRACTION"]

#: ``|z|`` beyond which a feature is outside the training range (Chebyshev: at most 4 % of training x per column).
Z_LIMIT = 5.0
#: Distance from a bound of the prior box, as a fraction of the box width, that counts as on the edge ...
EDGE_WIDTH = 0.01
#: ... and the fraction of DIC samples there that says the posterior is pinned to that edge.
EDGE_FRACTION = 0.5
#: Floor of the standard deviations derived for the defined cells (that of :class:`Standardize`).
_MIN_STD = 0.1


def training_standardization(posterior: Any) -> Standardize | None:
    """The :class:`Standardize` layer holding the training mean and std of ``x``, or None if the network has none."""
    inner = getattr(posterior, "posterior", posterior)
    net = getattr(getattr(inner, "posterior_estimator", None), "_embedding_net", None)
    if isinstance(net, torch.nn.Sequential) and len(net) and isinstance(net[0], Standardize):
        return net[0]
    return net if isinstance(net, Standardize) else None


# Column -> (indicator column that says it is defined, its encoded value when not): silent cells have the floor
# rate log10(0.1) = -1; other undefined values are the sentinel (dic_sbi.sbi.features.encode_summary).
_DEFINED_BY = {0: (10, np.log10(RATE_FLOOR_HZ), False), 1: (13, SENTINEL, True), 2: (13, SENTINEL, True),
               3: (13, SENTINEL, True), 4: (13, SENTINEL, True), 5: (14, SENTINEL, True), 6: (14, SENTINEL, True),
               7: (16, SENTINEL, True), 8: (15, SENTINEL, True), 9: (14, SENTINEL, True)}  # fmt: skip


def _z_scores(scale: Standardize, x: np.ndarray) -> np.ndarray:
    """``x`` standardised by the training moments of the cells for which each feature is defined.

    The training set mixes cells for which a feature is defined with cells for which it holds a constant (the
    sentinel, or the floor rate of silent cells); the indicator columns give the constant's share ``p``, so the
    moments of the defined cells follow exactly from the stored mixture moments:
    ``m1 = (m - p c) / (1 - p)``, ``E1[x²] = (s² + m² - p c²) / (1 - p)``. A feature the observation does not have
    (it holds the constant itself) is not scored; indicator columns are scored against the whole mixture.
    """
    mean = scale.mean.detach().numpy().astype(np.float64)
    std = scale.std.detach().numpy().astype(np.float64)
    z = (x - mean[: x.size]) / std[: x.size]
    direct = bool(scale.defined_moments)  # the stored moments are already those of the defined cells
    for col, (flag, const, defined_when_set) in _DEFINED_BY.items():
        share = mean[flag] if defined_when_set else 1.0 - mean[flag]  # fraction of training cells with the feature
        observed = x[flag] > 0.5 if defined_when_set else x[flag] < 0.5
        if not observed:
            z[col] = 0.0  # the observation holds the constant, as the training cells without the feature
            continue
        if direct:
            continue
        if not 0.01 <= share <= 1.0:
            continue  # (almost) no training cell without the feature: the mixture moments are those of the defined
        p = 1.0 - share
        m1 = (mean[col] - p * const) / share
        var1 = (std[col] ** 2 + mean[col] ** 2 - p * const**2) / share - m1**2
        z[col] = (x[col] - m1) / max(np.sqrt(max(var1, 0.0)), _MIN_STD)
    return z


def out_of_distribution(posterior: Any, x: Any, dics: Any) -> list[str]:
    """Warnings (empty if none) when ``x`` lies outside the training range or the DIC samples sit on the box edge.

    Parameters
    ----------
    posterior
        A :class:`~dic_sbi.sbi.DICPosterior` whose network starts with a :class:`Standardize` layer (else only
        the edge check is made).
    x
        The ``(k,)`` or ``(1, k)`` observation the posterior was conditioned on.
    dics
        ``(n, 2)`` DIC samples ``(g_s, g_u)`` drawn for ``x``.

    Returns
    -------
    list of str
        One sentence per problem: the features outside the training range with their ``z``, and the bound the
        samples pile on.
    """
    x = torch.as_tensor(x, dtype=torch.float32).reshape(-1)
    d = np.asarray(dics, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != 2 or d.shape[0] == 0:
        raise InvalidInputError(f"dics: expected (n, 2) samples (g_s, g_u), got shape {d.shape}")
    warnings: list[str] = []
    scale = training_standardization(posterior)
    if scale is not None and x.shape[0] >= len(SUMMARY_NAMES):
        z = _z_scores(scale, x[: len(SUMMARY_NAMES)].detach().numpy().astype(np.float64))
        far = [i for i in np.argsort(-np.abs(z)) if abs(z[i]) > Z_LIMIT]
        if far:
            listed = ", ".join(f"{SUMMARY_NAMES[i]} = {float(x[i]):.3g} (z = {z[i]:+.1f})" for i in far[:4])
            warnings.append(
                f"the recording's features lie outside the range the posterior was trained on: {listed}; "
                f"|z| > {Z_LIMIT:g} training standard deviations from the training mean. The posterior "
                "extrapolates: do not trust its DICs"
            )
    box = getattr(getattr(posterior, "prior", None), "box", None)
    if box is not None:
        for j, (name, (lo, hi)) in enumerate(zip(("g_s", "g_u"), box)):
            width = EDGE_WIDTH * (hi - lo)
            for bound, near in ((lo, d[:, j] <= lo + width), (hi, d[:, j] >= hi - width)):
                if near.mean() >= EDGE_FRACTION:
                    warnings.append(
                        f"{100 * near.mean():.0f} % of the posterior's {name} samples lie on the edge {name} = {bound:g} "
                        f"of the prior box [{lo:g}, {hi:g}] ({name} = {d[:, j].mean():.4g} ± {d[:, j].std():.2g}): "
                        "the posterior is pinned to the box, the recording is probably unlike any training cell"
                    )
    return warnings
