"""Reference integrator: the model equations through :func:`scipy.integrate.solve_ivp`.

It shares only the model *data* with the fast simulator: the right-hand side evaluates the kinetic functions
of :mod:`dic_sbi.models` directly (no rate tables, no exponential Euler, no numba), the gates are ordinary ODE
states (the ERG scheme too), and spike times are located by solve_ivp's event root-finding on its dense output.
With tight tolerances it is the yardstick of the simulator's accuracy; with the published settings
(``method="BDF", rtol=1e-2, atol=1e-4``) it is the published pipeline's integration, the baseline of the
speed benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import solve_ivp

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model
from ..models.base import CalciumGate, Gate, InstantaneousGate
from ..models.kinetics import ErgScheme
from .tables import initial_state

__all__ = ["simulate_reference", "ReferenceResult", "reference_rhs"]


@dataclass(frozen=True)
class ReferenceResult:
    """Spike times (ms, absolute, ``>= t_start``) of one cell, and solver statistics."""

    spike_times: NDArray[np.float64]
    t_start: float
    t_stop: float
    n_rhs: int
    method: str
    rtol: float
    atol: float


def reference_rhs(model: ConductanceModel, conductances: ArrayLike, i_app: float = 0.0):
    """Return ``(f, y0)``: the right-hand side ``f(t, y)`` and the initial state of one cell.

    State layout: ``[V, gate states in model order (ERG: o, i), Ca (if the model has calcium)]``;
    instantaneous gates are not states.
    """
    g = np.asarray(conductances, dtype=float)
    gates = model.gate_list()
    slot: dict[int, int] = {}
    n = 1
    for gate in gates:
        if isinstance(gate, InstantaneousGate):
            continue
        slot[id(gate)] = n
        n += 2 if isinstance(gate, ErgScheme) else 1
    ca_slot = n if model.calcium is not None else None
    n_states = n + (1 if ca_slot is not None else 0)
    channels = [(g[k], ch.reversal, ch.gates, ch.carries_calcium) for k, ch in enumerate(model.channels)]
    ca = model.calcium
    cm = model.capacitance

    def f(t: float, y: NDArray[np.float64]) -> NDArray[np.float64]:
        V = y[0]
        Ca = y[ca_slot] if ca_slot is not None else 0.0
        dy = np.empty(n_states)
        for gate in gates:
            if isinstance(gate, Gate):
                s = slot[id(gate)]
                dy[s] = (gate.steady_state(V) - y[s]) / gate.time_constant(V)
            elif isinstance(gate, CalciumGate):
                s = slot[id(gate)]
                dy[s] = (gate.steady_state(V, Ca) - y[s]) / gate.time_constant(V)
            elif isinstance(gate, ErgScheme):
                s = slot[id(gate)]
                a0, b0, ai, bi = gate.rates(V)
                o, i = y[s], y[s + 1]
                dy[s] = a0 * (1.0 - o - i) + bi * i - o * (ai + b0)
                dy[s + 1] = ai * o - bi * i
        I_ion = 0.0
        I_ca = 0.0
        for gbar, E, chan_gates, carries_ca in channels:
            p = gbar
            for gate, expo in chan_gates:
                x = gate.steady_state(V) if isinstance(gate, InstantaneousGate) else y[slot[id(gate)]]
                p = p * x**expo
            current = p * (V - E)
            I_ion += current
            if carries_ca:
                I_ca += current
        dy[0] = (i_app - I_ion) / cm
        if ca_slot is not None:
            dy[ca_slot] = (ca.steady_state(I_ca) - Ca) / ca.tau
        return dy

    V0, Ca0, x0 = initial_state(model)
    y0 = np.empty(n_states)
    y0[0] = V0
    k = 0
    for gate in gates:  # initial_state lists every gate, instantaneous ones included
        width = 2 if isinstance(gate, ErgScheme) else 1
        if not isinstance(gate, InstantaneousGate):
            y0[slot[id(gate)] : slot[id(gate)] + width] = x0[k : k + width]
        k += width
    if ca_slot is not None:
        y0[ca_slot] = Ca0
    return f, y0


def simulate_reference(
    model: str | ConductanceModel,
    conductances: ArrayLike,
    *,
    duration: float | None = None,
    transient: float | None = None,
    i_app: float = 0.0,
    method: str = "LSODA",
    rtol: float = 1e-8,
    atol: float = 1e-8,
    max_step: float = np.inf,
) -> ReferenceResult:
    """Integrate one cell with :func:`scipy.integrate.solve_ivp` and return its spike times.

    Spikes follow the simulator's rule: an upward crossing of the model's spike threshold (+10 mV), counted
    only when the detector is armed, re-armed by a downward crossing of the re-arm level (0 mV).

    Parameters
    ----------
    model, conductances
        A model (name or object) and one conductance vector in the model's order.
    duration, transient
        Simulated and discarded time (ms); default: the model's protocol.
    method, rtol, atol, max_step
        Passed to :func:`~scipy.integrate.solve_ivp`.
    """
    model = get_model(model)
    g = np.asarray(conductances, dtype=float)
    if g.shape != (model.n_conductances,) or not np.all(np.isfinite(g)) or np.any(g < 0):
        raise InvalidInputError(
            f"conductances: expected {model.n_conductances} finite values >= 0 for model {model.name!r}, got {g!r}"
        )
    duration = float(model.protocol.duration if duration is None else duration)
    transient = float(model.protocol.transient if transient is None else transient)
    if not 0 <= transient < duration:
        raise InvalidInputError(f"transient: must satisfy 0 <= transient < duration, got {transient}, {duration}")
    thr, rearm = model.protocol.spike_threshold, model.protocol.spike_rearm
    f, y0 = reference_rhs(model, g, i_app)

    def up(t: float, y: NDArray[np.float64]) -> float:
        return y[0] - thr

    def down(t: float, y: NDArray[np.float64]) -> float:
        return y[0] - rearm

    up.direction = 1.0  # type: ignore[attr-defined]
    down.direction = -1.0  # type: ignore[attr-defined]
    sol = solve_ivp(f, (0.0, duration), y0, method=method, rtol=rtol, atol=atol, max_step=max_step,
                    events=(up, down), dense_output=False)  # fmt: skip
    if sol.status < 0:
        raise RuntimeError(f"reference integration failed: {sol.message}")
    # Merge the two event streams in time order and apply the re-arm rule.
    events = sorted([(t, 1) for t in sol.t_events[0]] + [(t, 0) for t in sol.t_events[1]])
    armed = y0[0] < rearm
    spikes = []
    for t, is_up in events:
        if is_up and armed:
            spikes.append(t)
            armed = False
        elif not is_up:
            armed = True
    spikes_arr = np.asarray(spikes, dtype=float)
    return ReferenceResult(
        spike_times=spikes_arr[spikes_arr >= transient],
        t_start=transient,
        t_stop=duration,
        n_rhs=int(sol.nfev),
        method=method,
        rtol=rtol,
        atol=atol,
    )
