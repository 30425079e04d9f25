"""Plots (matplotlib). matplotlib is imported when a plot is drawn, not when dic_sbi is imported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .core.reachability import ReachabilityMap

# The inference plots take an ``InferenceResult`` and one of its ``TrainInference`` (dic_sbi.inference), read by
# attribute only: plots never import the inference module, which imports them (one direction of dependency).
InferenceResult = Any
TrainInference = Any

__all__ = [
    "observed_voltage",
    "plot_reachability",
    "plot_population_raster",
    "plot_traces",
    "plot_dic_posterior",
    "plot_conductance_pairplot",
    "plot_conductance_distributions",
    "plot_voltage_with_spikes",
    "plot_recording_raster",
    "plot_cells",
]


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


def _window(train: "TrainInference") -> tuple[float, float]:
    """Start of the simulated window and the span shown: the shorter of the simulated and observed windows."""
    sim = train.simulation
    if sim is None:
        return 0.0, train.window_ms
    return float(sim.t_start), min(float(sim.t_stop - sim.t_start), train.window_ms)


def plot_population_raster(result: "InferenceResult", train: "TrainInference", *, max_cells: int = 30) -> "Figure":
    """Raster of the observed train (top, black) above the simulated population members (coloured by whether
    they fire in the observed class), each relative to the start of its window, over the shorter window."""
    import matplotlib.pyplot as plt

    obs = result.recording[train.index]
    obs_t = obs.rescale("ms").magnitude - float(obs.t_start.rescale("ms").magnitude)
    start, span = _window(train)
    k = 0 if train.simulation is None else min(max_cells, len(train.simulation))
    fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.16 * (k + 2)))
    ax.eventplot([obs_t[obs_t <= span]], lineoffsets=[k + 1.5], linelengths=1.2, colors="k")
    if k:
        feats = train.simulation.features()
        same = feats["firing_class"][:k] == train.observed_class
        trains = [train.simulation.times[train.simulation.offsets[j] : train.simulation.offsets[j + 1]] - start for j in range(k)]
        ax.eventplot([t[t <= span] for t in trains], lineoffsets=np.arange(k), linelengths=0.8,
                     colors=["tab:blue" if s else "tab:red" for s in same])  # fmt: skip
    ax.set_yticks([k + 1.5] + ([0, k - 1] if k > 1 else []))
    ax.set_yticklabels(["observed"] + ([f"cell {train.simulated[0]}", f"cell {train.simulated[k - 1]}"] if k > 1 else []))
    ax.set_xlim(0, span)
    ax.set_xlabel("time in window (ms)")
    ax.set_title(f"{result.model.name}: observed ({train.observed_class}) vs {k} population members "
                 f"(blue: same class, red: other)", fontsize="small")  # fmt: skip
    fig.tight_layout()
    return fig


def observed_voltage(result: "InferenceResult", train: "TrainInference"):
    """The membrane potential the observed train was detected in, as a ``neo.AnalogSignal`` (mV), read again
    from the recording; ``None`` when the train was recorded as spike times or the signal is not in a voltage
    unit."""
    from .errors import RecordingError
    from .io import read_voltage

    rec = result.recording
    origin = rec.origins[train.index]
    if not origin.detected or rec.path is None:
        return None
    try:
        return read_voltage(rec.path, segment=origin.segment, channel=origin.channel, format=rec.format)
    except RecordingError:  # not a voltage unit (read_recording was told the unit): show spike times instead
        return None


def plot_traces(result: "InferenceResult", train: "TrainInference", *, span_ms: float = 2000.0) -> "Figure | None":
    """The observed membrane potential (top, black; its spike times when the recording holds no voltage) above
    the membrane potential of the first few population members, over ``span_ms`` of their windows."""
    import matplotlib.pyplot as plt

    tr = train.traces
    if tr is None or tr.voltage is None or len(tr) == 0:
        return None
    k = tr.voltage.shape[0]
    fig, axes = plt.subplots(k + 1, 1, figsize=(8.0, 1.6 * (k + 1) + 0.4), sharex=True, squeeze=False)
    top = axes[0, 0]
    v = observed_voltage(result, train)
    obs = result.recording[train.index]
    if v is not None:
        t_obs = (v.times - v.t_start).rescale("ms").magnitude
        keep = t_obs <= span_ms
        top.plot(t_obs[keep], v.magnitude[keep, 0], lw=0.6, color="k")
        top.set_ylabel("V (mV)")
    else:
        spikes = obs.rescale("ms").magnitude - float(obs.t_start.rescale("ms").magnitude)
        top.eventplot([spikes[spikes <= span_ms]], colors="k", linelengths=0.8)
        top.set_yticks([])
    top.set_title(f"observed: train {train.name} ({train.observed_class})" + ("" if v is not None else ", spike times"),
                  fontsize="small", loc="left")  # fmt: skip
    t = tr.voltage_times - tr.t_start
    keep = t <= span_ms
    for j, ax in enumerate(axes[1:, 0]):
        ax.plot(t[keep], tr.voltage[j, keep], lw=0.6, color="tab:blue")
        ax.set_ylabel("V (mV)")
        ax.set_title(f"simulated: cell {train.simulated[j]}  (g_s = {train.dics[j, 0]:.2f}, g_u = {train.dics[j, 1]:.2f})",
                     fontsize="small", loc="left")  # fmt: skip
    axes[-1, 0].set_xlabel("time in window (ms)")
    fig.tight_layout()
    return fig


def plot_dic_posterior(result: "InferenceResult", train: "TrainInference") -> "Figure":
    """DIC posterior samples (g_s, g_u) over the prior box, with marginal histograms."""
    import matplotlib.pyplot as plt

    d = train.dics
    (s_lo, s_hi), (u_lo, u_hi) = result.model.dic_box
    fig = plt.figure(figsize=(5.5, 5.0))
    grid = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4), hspace=0.05, wspace=0.05)
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    right = fig.add_subplot(grid[1, 1], sharey=ax)
    ax.scatter(d[:, 0], d[:, 1], s=3, alpha=0.35, color="tab:blue", lw=0, label="posterior samples")
    ax.plot([s_lo, s_hi, s_hi, s_lo, s_lo], [u_lo, u_lo, u_hi, u_hi, u_lo], color="0.5", lw=0.8, ls="--", label="prior box")
    truth = getattr(result, "true_dics", None)
    if truth is not None:  # known when the recording is a simulation (the demo's example cells)
        ts, tu = (float(v) for v in truth)
        ax.scatter([ts], [tu], marker="*", s=160, color="tab:red", edgecolor="k", lw=0.6, zorder=5,
                   label=f"true DICs ({ts:.2f}, {tu:.2f})")  # fmt: skip
        top.axvline(ts, color="tab:red", lw=1.2)
        right.axhline(tu, color="tab:red", lw=1.2)
    ax.set_xlim(s_lo - 1, s_hi + 1)
    ax.set_ylim(u_lo - 1, u_hi + 1)
    ax.set_xlabel("g_s (per gleak)")
    ax.set_ylabel("g_u (per gleak)")
    ax.legend(loc="upper right", fontsize="small")
    top.hist(d[:, 0], bins=40, color="tab:blue", zorder=1)
    right.hist(d[:, 1], bins=40, color="tab:blue", orientation="horizontal", zorder=1)
    top.tick_params(labelbottom=False)
    right.tick_params(labelleft=False)
    top.set_title(f"{result.model.name}: DIC posterior, train {train.name} ({train.observed_class})", fontsize="small")
    return fig


def plot_conductance_pairplot(result: "InferenceResult", train: "TrainInference", *, max_points: int = 1000) -> "Figure":
    """sbi's ``pairplot`` of log10 of the population's conductances in mS/cm² (zeros drawn at the smallest
    positive value); axis labels (``log10 g_Na``) and title say so."""
    from sbi.analysis import pairplot

    g = train.conductances[:max_points]
    pos = g[g > 0]
    floor = pos.min() if pos.size else 1e-6
    logg = np.log10(np.maximum(g, floor))
    names = result.model.conductance_names
    fig, _ = pairplot(logg, labels=[f"log10 g_{n}" for n in names], upper="scatter", diag="hist",
                      figsize=(1.3 * len(names) + 1, 1.3 * len(names) + 1),
                      upper_kwargs={"mpl_kwargs": {"s": 2, "alpha": 0.3}})  # fmt: skip
    zeros = " (zeros drawn at the smallest value)" if (g == 0).any() else ""
    fig.suptitle(f"{result.model.name}: population of train {train.name}, {len(g)} cells; axes: log10 of the maximal "
                 f"conductance g in mS/cm²{zeros}", fontsize="small")  # fmt: skip
    return fig


def plot_voltage_with_spikes(signal: Any, spikes: Any, *, threshold: float | None = None, rearm: float | None = None,
                             title: str = "") -> "Figure":  # fmt: skip
    """A membrane-potential trace (``neo.AnalogSignal``, mV) with its detected spikes marked, and the detection
    levels as dashed lines: what a threshold choice finds in a recording."""
    import matplotlib.pyplot as plt

    t = signal.times.rescale("ms").magnitude
    v = np.asarray(signal.rescale("mV").magnitude).reshape(len(t), -1)[:, 0]
    st = np.asarray(spikes.rescale("ms").magnitude if hasattr(spikes, "rescale") else spikes, dtype=float)
    fig, ax = plt.subplots(figsize=(9.0, 2.6))
    ax.plot(t, v, lw=0.5, color="k")
    if st.size:
        ax.plot(st, np.interp(st, t, v), "v", ms=4, color="tab:red", label=f"{st.size} spikes")
        ax.legend(loc="upper right", fontsize="small")
    for level, name in ((threshold, "threshold"), (rearm, "re-arm")):
        if level is not None:
            ax.axhline(level, color="tab:red" if name == "threshold" else "tab:orange", lw=0.8, ls="--")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("V (mV)")
    ax.set_title(title, fontsize="small", loc="left")
    fig.tight_layout()
    return fig


def plot_conductance_distributions(result: "InferenceResult", train: "TrainInference", *, kind: str = "box",
                                   max_points: int = 1000, seed: int = 0) -> "Figure":  # fmt: skip
    """One box (or violin) per conductance of the population (mS/cm², log scale), with the cells drawn on top as
    jittered points (at most ``max_points``; ``seed`` fixes the jitter)."""
    import matplotlib.pyplot as plt

    from .errors import InvalidInputError

    if kind not in ("box", "violin"):
        raise InvalidInputError(f"kind: expected 'box' or 'violin', got {kind!r}")
    names = result.model.conductance_names
    g = train.conductances
    pos = g[g > 0]
    floor = pos.min() if pos.size else 1e-6  # zeros at the smallest positive value: a log axis has no 0
    shown = [np.maximum(g[:, k], floor) for k in range(len(names))]
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(names), 3.6))
    x = np.arange(1, len(names) + 1)
    if kind == "box":
        ax.boxplot(shown, positions=x, widths=0.6, showfliers=False)
    else:
        ax.violinplot([np.log10(v) for v in shown], positions=x, widths=0.8, showextrema=False)
    rng = np.random.default_rng(seed)
    k = min(max_points, g.shape[0])
    for j, v in enumerate(shown):
        y = v[:k] if kind == "box" else np.log10(v[:k])
        ax.scatter(x[j] + rng.uniform(-0.22, 0.22, k), y, s=2, alpha=0.3, color="tab:blue", lw=0)
    if kind == "box":
        ax.set_yscale("log")
        ax.set_ylabel("g (mS/cm²)")
    else:
        ax.set_ylabel("log10 g (mS/cm²)")
    ax.set_xticks(x, [f"g_{n}" for n in names])
    ax.set_title(f"{result.model.name}: conductances of the population of train {train.name}, {g.shape[0]} cells",
                 fontsize="small")  # fmt: skip
    fig.tight_layout()
    return fig


def plot_cells(simulation: Any, cells: Any, *, span_ms: float | None = None) -> "Figure":
    """Simulated cells one per row: the membrane potential (a ``SimulationResult`` with voltage) or, without
    voltage, the spike raster, beside a bar chart of the cell's conductances; ``cells`` labels the rows."""
    import matplotlib.pyplot as plt

    k = len(simulation)
    names = simulation.model.conductance_names
    fig, axes = plt.subplots(k, 2, figsize=(10.0, 1.6 * k + 0.6), squeeze=False,
                             gridspec_kw={"width_ratios": (4, 1.4)})  # fmt: skip
    span = float(simulation.t_stop - simulation.t_start) if span_ms is None else span_ms
    for j in range(k):
        left, right = axes[j]
        if simulation.voltage is not None:
            t = simulation.voltage_times - simulation.t_start
            keep = t <= span
            left.plot(t[keep], simulation.voltage[j, keep], lw=0.6, color="tab:blue")
            left.set_ylabel("V (mV)")
        else:
            times = simulation.times[simulation.offsets[j] : simulation.offsets[j + 1]] - simulation.t_start
            left.eventplot([times[times <= span]], colors="tab:blue", linelengths=0.8)
            left.set_yticks([])
        left.set_xlim(0, span)
        left.set_title(f"cell {cells[j]}", fontsize="small", loc="left")
        right.bar(np.arange(len(names)), simulation.conductances[j], color="tab:gray")
        right.set_yscale("symlog", linthresh=1e-3)
        right.set_xticks(np.arange(len(names)), names, fontsize="x-small", rotation=90)
        right.tick_params(axis="y", labelsize="x-small")
    axes[-1, 0].set_xlabel("time in window (ms)")
    axes[0, 1].set_title("g (mS/cm²)", fontsize="small")
    fig.tight_layout()
    return fig


def plot_recording_raster(recording: Any) -> "Figure":
    """The spike trains of a :class:`~dic_sbi.io.Recording`, one row each (spike-time files have no voltage)."""
    import matplotlib.pyplot as plt

    k = len(recording)
    fig, ax = plt.subplots(figsize=(9.0, 1.0 + 0.3 * k))
    ax.eventplot([st.rescale("ms").magnitude for st in recording], lineoffsets=np.arange(k), linelengths=0.8,
                 colors="k")  # fmt: skip
    ax.set_yticks(np.arange(k), [str(st.name) for st in recording], fontsize="small")
    ax.set_xlabel("time (ms)")
    ax.set_title(f"{recording.path.name if recording.path is not None else 'recording'}: {k} spike trains",
                 fontsize="small", loc="left")  # fmt: skip
    fig.tight_layout()
    return fig
