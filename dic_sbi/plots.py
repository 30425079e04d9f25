"""Plots (matplotlib). matplotlib is imported when a plot is drawn, not when dic_sbi is imported."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .core.reachability import ReachabilityMap

__all__ = ["plot_reachability"]


def plot_reachability(result: "ReachabilityMap", ax: "Axes | None" = None, *, level: float = 0.5) -> "Axes":
    """Draw a :class:`~dic_sbi.core.reachability.ReachabilityMap`.

    The colour map is the reachability of the model's rule (fraction of valid draws); one contour per
    compensating pair outlines where that pair reaches at least ``level`` of its draws, and dashed lines mark
    where the rule switches pair.

    Parameters
    ----------
    result
        Output of :func:`~dic_sbi.core.reachability.reachability_map`.
    ax
        Axes to draw on (default: a new figure).
    level
        Reachability level of the per-pair contours.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.0))
    S, U = np.meshgrid(result.g_s, result.g_u)
    mesh = ax.pcolormesh(S, U, result.rule_fraction, vmin=0.0, vmax=1.0, cmap="viridis", shading="nearest")
    ax.figure.colorbar(mesh, ax=ax, label="reachability (rule)")
    colours = plt.get_cmap("tab10")
    handles = []
    if S.shape[0] > 1 and S.shape[1] > 1:
        for p, names in enumerate(result.pair_names):
            frac = result.fraction[p]
            if frac.min() < level <= frac.max():
                ax.contour(S, U, frac, levels=[level], colors=[colours(p)], linewidths=1.5)
            handles.append(plt.Line2D([], [], color=colours(p), label=f"{names[0]}, {names[1]} ≥ {level:g}"))
        if np.unique(result.rule_pair).size > 1:
            ax.contour(S, U, result.rule_pair, levels=np.arange(len(result.pair_names)) + 0.5, colors="w",
                       linestyles="--", linewidths=0.8)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize="small", title="pair reaches")
    ax.set_xlabel("g_s (normalised by gleak)")
    ax.set_ylabel("g_u (normalised by gleak)")
    ax.set_title(f"{result.model}: reachable DIC targets ({result.n_draws} draws per point)")
    return ax
