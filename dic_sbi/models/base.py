"""The general conductance-based model, as data.

A :class:`ConductanceModel` lists its channels (each a maximal conductance, a reversal potential and gates with
exponents), optional special paths (intracellular calcium, an ERG kinetic scheme, an instantaneous gate), its
initial state, its DIC conventions and its default protocol. The numerical core reads these objects; it never
knows which model it runs. Adding a model means writing one file that fills these classes in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .kinetics import ErgScheme, MagnesiumBlock, Sigmoid

__all__ = [
    "Gate",
    "CalciumGate",
    "InstantaneousGate",
    "Channel",
    "CalciumDynamics",
    "Protocol",
    "DICConventions",
    "SeedPopulation",
    "CompensationRule",
    "ConductanceModel",
]

Array = NDArray[np.float64]
TimeConstant = Callable[[ArrayLike], Array]


@dataclass(frozen=True)
class Gate:
    """A gating variable with ``dx/dt = (x_inf(V) - x) / τ(V)``."""

    name: str
    steady_state: Sigmoid
    time_constant: TimeConstant


@dataclass(frozen=True)
class CalciumGate:
    """A gate whose steady state is ``Ca / (Ca + K) · σ(V)`` (Liu 1998's KCa activation).

    The time constant depends on V only.
    """

    name: str
    voltage_factor: Sigmoid
    time_constant: TimeConstant
    K: float = 3.0

    def steady_state(self, V: ArrayLike, Ca: ArrayLike) -> Array:
        """``x_inf(V, Ca)``."""
        Ca = np.asarray(Ca, dtype=float)
        return Ca / (Ca + self.K) * self.voltage_factor(V)

    def calcium_derivative(self, V: ArrayLike, Ca: ArrayLike) -> Array:
        """``∂x_inf/∂Ca = K σ(V) / (Ca + K)²``."""
        Ca = np.asarray(Ca, dtype=float)
        return self.K * self.voltage_factor(V) / (Ca + self.K) ** 2


@dataclass(frozen=True)
class InstantaneousGate:
    """A gate always at its steady state (no time constant), e.g. the NMDA magnesium block."""

    name: str
    steady_state: MagnesiumBlock


AnyGate = Union[Gate, CalciumGate, InstantaneousGate, ErgScheme]


@dataclass(frozen=True)
class Channel:
    """An ionic current ``I = g · Π_y y^{p_y} · (V - E)``.

    ``gates`` is a tuple of ``(gate, exponent)``; an :class:`~dic_sbi.models.kinetics.ErgScheme` gate stands for
    its open probability ``o`` (exponent 1). A channel with no gates is ohmic (leak).
    """

    name: str
    reversal: float
    gates: tuple[tuple[AnyGate, int], ...] = ()
    carries_calcium: bool = False


@dataclass(frozen=True)
class CalciumDynamics:
    """``τ dCa/dt = -α I_Ca - Ca + β``, with ``I_Ca`` the sum of the calcium-carrying currents."""

    tau: float
    alpha: float
    beta: float
    initial: float

    def steady_state(self, calcium_current: ArrayLike) -> Array:
        """``Ca_inf = -α I_Ca + β``."""
        return -self.alpha * np.asarray(calcium_current, dtype=float) + self.beta


@dataclass(frozen=True)
class Protocol:
    """Default simulation protocol: total duration, discarded transient, time step (ms), spike detection, the
    substepping of spikes (a step that starts above ``fine_above`` mV is taken as ``fine_substeps`` substeps) and
    the voltage grid of the simulator's rate tables."""

    duration: float
    transient: float
    dt: float
    spike_threshold: float = 10.0
    spike_rearm: float = 0.0
    fine_above: float = float("inf")  # mV: a step starting above this voltage (in a spike) ...
    fine_substeps: int = 1  # ... is split into this many substeps (1: a plain fixed-step scheme)
    fine_min_slope: float = 0.0  # mV/ms: ... while |dV/dt| over the previous step is at least this (0: always)
    table_step: float = 0.2  # mV: voltage grid of the simulator's rate tables (linear interpolation between rows)

    def __post_init__(self) -> None:
        from ..errors import InvalidInputError

        if not (self.dt > 0 and 0 <= self.transient < self.duration):
            raise InvalidInputError(f"Protocol: need dt > 0 and 0 <= transient < duration, got {self}")
        if not isinstance(self.fine_substeps, (int, np.integer)) or isinstance(self.fine_substeps, bool) or self.fine_substeps < 1:
            raise InvalidInputError(f"Protocol: fine_substeps must be an int >= 1, got {self.fine_substeps!r}")
        if not (np.isfinite(self.fine_min_slope) and self.fine_min_slope >= 0):
            raise InvalidInputError(f"Protocol: fine_min_slope must be finite and >= 0 (mV/ms), got {self.fine_min_slope!r}")
        if not (np.isfinite(self.table_step) and 0 < self.table_step <= 1.0):
            raise InvalidInputError(f"Protocol: table_step must be in (0, 1] mV, got {self.table_step!r}")


@dataclass(frozen=True)
class DICConventions:
    """How DICs are computed for a model (Drion, Franci, Dethier, Sepulchre 2015; :mod:`dic_sbi.core.dics`).

    ``fast``, ``slow`` and ``ultraslow`` give the reference timescales τ_f, τ_s, τ_u: either a gate name (its
    time constant at the same V) or a constant in ms. ``calcium_path_tau`` is ``None`` for an entirely ultraslow
    calcium path (project convention) or a time constant in ms (Brandoit's code uses 20 ms).
    """

    fast: Union[str, float]
    slow: Union[str, float]
    ultraslow: Union[str, float]
    reference_threshold: float
    calcium_path_tau: float | None = None


@dataclass(frozen=True)
class CompensationRule:
    """How a seed cell is moved to a target (g_s, g_u): the compensating pairs of :func:`~dic_sbi.degenerate_population`.

    ``pairs`` lists the candidate pairs of conductances solved for the target; ``choose(g_s, g_u)`` takes arrays
    of targets and returns, per target, the index in ``pairs`` of the pair to use. ``choose`` must be a
    module-level function so that models stay picklable.
    """

    pairs: tuple[tuple[str, str], ...]
    choose: Callable[[Array, Array], NDArray[np.intp]]


@dataclass(frozen=True)
class SeedPopulation:
    """Settings of the spiking seed population of :func:`~dic_sbi.degenerate_population` (densities per mean leak).

    ``leak_range`` is the uniform range whose mean and variance give the Gamma law of gleak; ``free_ranges``
    maps each free conductance to its uniform range at ``reference_leak``; ``fixed`` maps conductances held at a
    value at ``reference_leak``; every one of them is scaled by ``gleak / reference_leak``. ``seed_solve`` names
    the three conductances solved so that the DICs at the reference threshold equal ``seed_target`` (g_f, g_s, g_u).
    ``compensation`` is the rule that picks the pair of conductances moving a seed to a target.
    """

    leak_range: tuple[float, float]
    reference_leak: float
    free_ranges: dict[str, tuple[float, float]]
    fixed: dict[str, float]
    seed_solve: tuple[str, str, str]
    seed_target: tuple[float, float, float]
    compensation: CompensationRule | None = None


@dataclass(frozen=True, eq=False)  # identity hash: models key caches of compiled tables
class ConductanceModel:
    """A single-compartment conductance-based neuron model, as data.

    Parameters
    ----------
    name
        Registry name (``"stg"``, ``"da"``).
    channels
        Ionic channels in the conductance order of the model; the last one is conventionally ``leak``.
    initial_voltage
        Membrane potential at t = 0 (mV); gates start at their steady state there.
    calcium
        Intracellular calcium dynamics, or ``None``.
    dics
        DIC conventions (reference timescales, reference threshold voltage).
    protocol
        Default simulation protocol.
    default_ranges
        Default box over maximal conductances (mS/cm²), one ``(low, high)`` per channel.
    dic_box
        Published target box ``((g_s_min, g_s_max), (g_u_min, g_u_max))`` at the reference threshold.
    seed_population
        Settings of the degenerate-population seed.
    capacitance
        Membrane capacitance (µF/cm²).
    reference
        Citation.
    """

    name: str
    channels: tuple[Channel, ...]
    initial_voltage: float
    calcium: CalciumDynamics | None
    dics: DICConventions
    protocol: Protocol
    default_ranges: dict[str, tuple[float, float]]
    dic_box: tuple[tuple[float, float], tuple[float, float]]
    seed_population: SeedPopulation | None = None
    capacitance: float = 1.0
    reference: str = ""
    description: str = field(default="", compare=False)

    # -- derived views --------------------------------------------------------------------------------------
    @property
    def conductance_names(self) -> tuple[str, ...]:
        """Conductance names in the model's order."""
        return tuple(c.name for c in self.channels)

    @property
    def n_conductances(self) -> int:
        return len(self.channels)

    @property
    def reversal_potentials(self) -> Array:
        return np.array([c.reversal for c in self.channels], dtype=float)

    def index(self, name: str) -> int:
        """Position of conductance ``name`` in the model's order."""
        try:
            return self.conductance_names.index(name)
        except ValueError:
            raise KeyError(f"model {self.name!r} has no conductance {name!r}; it has {self.conductance_names}") from None

    def gate_list(self) -> list[AnyGate]:
        """Every distinct gate, in order of first appearance in the channels (the simulator's state order)."""
        return list(self.gates().values())

    def gates(self) -> dict[str, AnyGate]:
        """Every distinct gate of the model by name (an ERG scheme appears under ``"erg"``)."""
        out: dict[str, AnyGate] = {}
        for ch in self.channels:
            for g, _ in ch.gates:
                out[getattr(g, "name", "erg")] = g
        return out

    def default_bounds(self) -> tuple[Array, Array]:
        """Lower and upper default conductance bounds, arrays in the model's order."""
        lo = np.array([self.default_ranges[n][0] for n in self.conductance_names], dtype=float)
        hi = np.array([self.default_ranges[n][1] for n in self.conductance_names], dtype=float)
        return lo, hi

    def __reduce_ex__(self, protocol):
        # A registered model pickles as its name: workers (simulate_for_sbi, dask) then use their own registered
        # object, whose compiled tables and kernels are cached per process, instead of a fresh copy per batch.
        from . import get_model

        try:
            if get_model(self.name) is self:
                return (get_model, (self.name,))
        except KeyError:
            pass
        return super().__reduce_ex__(protocol)

    def __repr__(self) -> str:
        return f"ConductanceModel({self.name!r}, conductances={self.conductance_names})"
