"""The general conductance-based model, as data.

A :class:`ConductanceModel` lists its channels (each a maximal conductance, a reversal potential and gates with
exponents), optional special paths (intracellular calcium, an ERG kinetic scheme, an instantaneous gate), its
initial state, its DIC conventions and its default protocol. The numerical core reads these objects; it never
knows which model it runs. Adding a model means writing one file that fills these classes in: gate kinetics are
any vectorised callables of V (or Hodgkin–Huxley rates, :meth:`Gate.from_rates`), and every object checks its
data when it is built, so a broken model fails with one clear :class:`~dic_sbi.errors.InvalidInputError`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidInputError
from .kinetics import ConstantTau, ErgScheme, RateSteadyState, RateTimeConstant, voltage_derivative

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
    "choose_reference_timescales",
    "KINETICS_RANGE",
]

Array = NDArray[np.float64]
VoltageFunction = Callable[[ArrayLike], Array]
TimeConstant = VoltageFunction

#: Voltage range (mV) on which every gate's kinetics must be defined: the simulator tabulates them over it (and a
#: row beyond), so a steady state outside [0, 1] or a τ <= 0 anywhere in it is rejected when the gate is built.
KINETICS_RANGE = (-150.0, 100.0)
_CHECK_GRID = np.linspace(KINETICS_RANGE[0], KINETICS_RANGE[1] + 2.0, 2521)  # 0.1-mV steps, the table's last rows too


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInputError(f"{kind}: name must be a non-empty string, got {name!r}")


def _check_function(gate: str, what: str, function: Any, *, kind: str) -> None:
    """Evaluate ``function`` on the kinetics grid and reject what the simulator and the DIC maths cannot use.

    ``kind`` is ``"steady"`` (values in [0, 1]), ``"tau"`` (values > 0 ms) or ``"rate"`` (values >= 0 per ms).
    """
    where = f"gate {gate!r}: {what}"
    if not callable(function):
        raise InvalidInputError(f"{where} must be a callable of V (mV), got {type(function).__name__}")
    V = _CHECK_GRID
    try:
        with np.errstate(all="ignore"):
            values = np.asarray(function(V.copy()), dtype=float)
    except Exception as err:  # noqa: BLE001 -- any failure of user code becomes one clear message
        raise InvalidInputError(
            f"{where} failed on an array of voltages ({type(err).__name__}: {err}); it must be a vectorised "
            "function of V (numpy operations, not math.*)"
        ) from None
    if values.shape != V.shape:
        raise InvalidInputError(
            f"{where} must return one value per voltage (a vectorised function of V); for {V.size} voltages it "
            f"returned shape {values.shape}"
        )
    span = f"[{KINETICS_RANGE[0]:g}, {KINETICS_RANGE[1]:g}] mV"
    bad = ~np.isfinite(values)
    if bad.any():
        raise InvalidInputError(
            f"{where} is not finite at V = {V[bad][0]:.4g} mV (it must be finite on {span}); guard removable "
            "singularities, e.g. x / (1 - exp(-x)) as 1 / scipy.special.exprel(-x)"
        )
    if kind == "steady":
        bad = (values < -1e-12) | (values > 1.0 + 1e-12)
        if bad.any():
            raise InvalidInputError(f"{where} must lie in [0, 1]; it is {values[bad][0]:.4g} at V = {V[bad][0]:.4g} mV")
    elif kind == "rate":
        bad = values < 0
        if bad.any():
            raise InvalidInputError(f"{where} must be >= 0 (1/ms); it is {values[bad][0]:.4g} at V = {V[bad][0]:.4g} mV")
    else:
        bad = values <= 0
        if bad.any():
            raise InvalidInputError(f"{where} must be > 0 ms on {span}; it is {values[bad][0]:.4g} at V = {V[bad][0]:.4g} mV")


def _time_constant(gate: str, tau: Any) -> VoltageFunction:
    """A number is a constant time constant (ms); a callable is checked on the kinetics grid."""
    if isinstance(tau, numbers.Real) and not isinstance(tau, bool):
        if not (np.isfinite(tau) and tau > 0):
            raise InvalidInputError(f"gate {gate!r}: time constant must be > 0 ms, got {tau!r}")
        return ConstantTau(float(tau))
    _check_function(gate, "time constant", tau, kind="tau")
    return tau


@dataclass(frozen=True)
class Gate:
    """A gating variable with ``dx/dt = (x_inf(V) - x) / τ(V)``.

    Parameters
    ----------
    name
        Gate name, unique in the model (the DIC conventions refer to gates by name).
    steady_state
        ``x_inf(V)``: any vectorised callable of V (mV) with values in [0, 1]. Its ``derivative(V)`` method is
        used by the DIC maths if it has one, else it is differentiated numerically.
    time_constant
        ``τ(V)`` in ms: a vectorised callable with values > 0, or a number (a constant τ).
    """

    name: str
    steady_state: VoltageFunction
    time_constant: TimeConstant

    def __post_init__(self) -> None:
        _check_name("Gate", self.name)
        _check_function(self.name, "steady state", self.steady_state, kind="steady")
        object.__setattr__(self, "time_constant", _time_constant(self.name, self.time_constant))

    @classmethod
    def from_rates(cls, name: str, alpha: VoltageFunction, beta: VoltageFunction) -> "Gate":
        """A gate with Hodgkin–Huxley rates ``dx/dt = α(V) (1 - x) - β(V) x`` (α, β in 1/ms, vectorised).

        Equivalent to ``x_inf = α / (α + β)`` and ``τ = 1 / (α + β)``.
        """
        for what, rate in (("alpha", alpha), ("beta", beta)):
            if not callable(rate):
                raise InvalidInputError(f"gate {name!r}: {what} must be a callable of V (mV), got {type(rate).__name__}")
            _check_function(name, f"rate {what}", rate, kind="rate")
        return cls(name, RateSteadyState(alpha, beta), RateTimeConstant(alpha, beta))


@dataclass(frozen=True)
class CalciumGate:
    """A gate whose steady state is ``Ca / (Ca + K) · f(V)`` (Liu 1998's KCa activation has ``f = σ``).

    ``voltage_factor`` is any vectorised callable of V with values in [0, 1]; the time constant depends on V only
    (a callable or a number, ms). ``K`` is the calcium half-activation (same unit as the calcium pool).
    """

    name: str
    voltage_factor: VoltageFunction
    time_constant: TimeConstant
    K: float = 3.0

    def __post_init__(self) -> None:
        _check_name("CalciumGate", self.name)
        _check_function(self.name, "voltage factor", self.voltage_factor, kind="steady")
        object.__setattr__(self, "time_constant", _time_constant(self.name, self.time_constant))
        if not (isinstance(self.K, numbers.Real) and np.isfinite(self.K) and self.K > 0):
            raise InvalidInputError(f"gate {self.name!r}: K (calcium half-activation) must be > 0, got {self.K!r}")

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
    """A gate always at its steady state (no time constant), e.g. the NMDA magnesium block.

    ``steady_state`` is any vectorised callable of V with values in [0, 1]; it counts as entirely fast in the DICs.
    """

    name: str
    steady_state: VoltageFunction

    def __post_init__(self) -> None:
        _check_name("InstantaneousGate", self.name)
        _check_function(self.name, "steady state", self.steady_state, kind="steady")


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

    def __post_init__(self) -> None:
        _check_name("Channel", self.name)
        if not (isinstance(self.reversal, numbers.Real) and np.isfinite(self.reversal)):
            raise InvalidInputError(f"channel {self.name!r}: reversal potential must be a finite number (mV), got {self.reversal!r}")
        try:
            gates = tuple((g, p) for g, p in self.gates)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"channel {self.name!r}: gates must be a sequence of (gate, exponent) pairs, got {self.gates!r}"
            ) from None
        for g, p in gates:
            if not isinstance(g, (Gate, CalciumGate, InstantaneousGate, ErgScheme)):
                raise InvalidInputError(
                    f"channel {self.name!r}: {g!r} is not a gate; use Gate, Gate.from_rates, CalciumGate or InstantaneousGate"
                )
            if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1:
                raise InvalidInputError(f"channel {self.name!r}: gate exponents must be integers >= 1, got {p!r}")
        object.__setattr__(self, "gates", gates)
        object.__setattr__(self, "reversal", float(self.reversal))


@dataclass(frozen=True)
class CalciumDynamics:
    """``τ dCa/dt = -α I_Ca - Ca + β``, with ``I_Ca`` the sum of the calcium-carrying currents."""

    tau: float
    alpha: float
    beta: float
    initial: float

    def __post_init__(self) -> None:
        values = {"tau": self.tau, "alpha": self.alpha, "beta": self.beta, "initial": self.initial}
        for key, v in values.items():
            if isinstance(v, bool) or not (isinstance(v, numbers.Real) and np.isfinite(v)):
                raise InvalidInputError(f"CalciumDynamics: {key} must be a finite number, got {v!r}")
        if self.tau <= 0:
            raise InvalidInputError(f"CalciumDynamics: tau must be > 0 ms, got {self.tau!r}")
        if self.initial < 0:
            raise InvalidInputError(f"CalciumDynamics: initial calcium must be >= 0, got {self.initial!r}")

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
        for key in ("duration", "transient", "dt", "spike_threshold", "spike_rearm", "fine_above"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or np.isnan(v):
                raise InvalidInputError(f"Protocol: {key} must be a number, got {v!r}")
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
    time constant at the same V) or a constant in ms; ``None`` (the default) lets the model choose from the time
    constants at ``reference_threshold`` (:func:`choose_reference_timescales`), and ``reason`` then says what it
    chose and why. ``reference_threshold`` (mV, required) is where DIC coordinates are reported.
    ``calcium_path_tau`` is ``None`` for an entirely ultraslow calcium path (project convention) or a time constant
    in ms (Brandoit's code uses 20 ms).
    """

    fast: Union[str, float, None] = None
    slow: Union[str, float, None] = None
    ultraslow: Union[str, float, None] = None
    reference_threshold: float | None = None
    calcium_path_tau: float | None = None
    reason: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        v = self.reference_threshold
        if v is None:
            raise InvalidInputError("DICConventions: reference_threshold (mV) is required: the voltage at which DICs are reported")
        if isinstance(v, bool) or not (isinstance(v, numbers.Real) and np.isfinite(v)):
            raise InvalidInputError(f"DICConventions: reference_threshold must be a finite voltage (mV), got {v!r}")
        for key in ("fast", "slow", "ultraslow"):
            ref = getattr(self, key)
            if ref is None or isinstance(ref, str):
                continue
            if isinstance(ref, bool) or not (isinstance(ref, numbers.Real) and np.isfinite(ref) and ref > 0):
                raise InvalidInputError(f"DICConventions: {key} must be a gate name, a time constant > 0 ms or None, got {ref!r}")
        c = self.calcium_path_tau
        if c is not None and (isinstance(c, bool) or not (isinstance(c, numbers.Real) and np.isfinite(c) and c > 0)):
            raise InvalidInputError(f"DICConventions: calcium_path_tau must be None or a time constant > 0 ms, got {c!r}")


@dataclass(frozen=True)
class CompensationRule:
    """How a seed cell is moved to a target (g_s, g_u): the compensating pairs of :func:`~dic_sbi.degenerate_population`.

    ``pairs`` lists the candidate pairs of conductances solved for the target; ``choose(g_s, g_u)`` takes arrays
    of targets and returns, per target, the index in ``pairs`` of the pair to use. ``choose`` must be a
    module-level function so that models stay picklable.
    """

    pairs: tuple[tuple[str, str], ...]
    choose: Callable[[Array, Array], NDArray[np.intp]] | None = None

    def __post_init__(self) -> None:
        try:
            pairs = tuple((a, b) for a, b in self.pairs)
        except (TypeError, ValueError):
            raise InvalidInputError(f"CompensationRule: pairs must be a sequence of (name, name) pairs, got {self.pairs!r}") from None
        if not pairs:
            raise InvalidInputError("CompensationRule: give at least one pair of conductances")
        for a, b in pairs:
            if not (isinstance(a, str) and isinstance(b, str)) or a == b:
                raise InvalidInputError(f"CompensationRule: a pair must name two different conductances, got {(a, b)!r}")
        if self.choose is None:
            if len(pairs) > 1:
                raise InvalidInputError("CompensationRule: with several pairs, give choose(g_s, g_u) -> index of the pair")
            object.__setattr__(self, "choose", first_pair)
        elif not callable(self.choose):
            raise InvalidInputError(f"CompensationRule: choose must be a function of (g_s, g_u), got {self.choose!r}")
        object.__setattr__(self, "pairs", pairs)


def first_pair(g_s: Array, g_u: Array) -> NDArray[np.intp]:
    """The choice of a one-pair :class:`CompensationRule`: index 0 for every target."""
    return np.zeros(np.broadcast_shapes(np.shape(g_s), np.shape(g_u)), dtype=np.intp)


@dataclass(frozen=True)
class SeedPopulation:
    """Settings of the spiking seed population of :func:`~dic_sbi.degenerate_population` (densities per mean leak).

    ``leak_range`` is the uniform range whose mean and variance give the Gamma law of gleak; ``free_ranges``
    maps each free conductance to its uniform range at ``reference_leak``; ``fixed`` maps conductances held at a
    value at ``reference_leak``; every one of them is scaled by ``gleak / reference_leak``. ``seed_solve`` names
    the three conductances solved so that the DICs at the reference threshold equal ``seed_target`` (g_f, g_s, g_u).
    ``compensation`` is the rule that picks the pair of conductances moving a seed to a target; ``None`` (the
    default) uses one pair, chosen by :func:`~dic_sbi.core.populations.default_compensation`.

    Every conductance but the leak must be free, fixed or solved. The seed solve needs three conductances whose
    (g_f, g_s, g_u) columns at the reference threshold are independent (typically the fast sodium, a slow and an
    ultraslow current), and a compensating pair needs two whose (g_s, g_u) columns are independent: with fewer
    than four conductances besides the leak the seed has no free conductance, and every cell of a population
    differs only by its leak.

    ``tail_ranges`` (optional) gives some free conductances a wider range that contains their free range: each of
    them is then drawn, independently and with probability ``tail_weight`` (in (0, 1)), uniformly from its tail
    range instead of its free range. The law of each such conductance is that mixture of two uniforms (piecewise
    constant), so a seed law can stay dense where most cells lie and still reach the rest of the box.
    """

    leak_range: tuple[float, float]
    reference_leak: float
    free_ranges: dict[str, tuple[float, float]]
    seed_solve: tuple[str, str, str]
    seed_target: tuple[float, float, float]
    fixed: dict[str, float] = field(default_factory=dict)
    compensation: CompensationRule | None = None
    tail_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    tail_weight: float = 0.0

    def __post_init__(self) -> None:
        a, b = _pair_of_numbers("SeedPopulation: leak_range", self.leak_range)
        if not 0 < a < b:
            raise InvalidInputError(f"SeedPopulation: leak_range must be (low, high) with 0 < low < high, got {self.leak_range!r}")
        r = self.reference_leak
        if isinstance(r, bool) or not (isinstance(r, numbers.Real) and np.isfinite(r) and r > 0):
            raise InvalidInputError(f"SeedPopulation: reference_leak must be > 0, got {r!r}")
        if not isinstance(self.free_ranges, dict) or not isinstance(self.fixed, dict):
            raise InvalidInputError("SeedPopulation: free_ranges and fixed must be dicts {conductance name: ...}")
        for name, rng in self.free_ranges.items():
            lo, hi = _pair_of_numbers(f"SeedPopulation: free_ranges[{name!r}]", rng)
            if not 0 <= lo <= hi:
                raise InvalidInputError(f"SeedPopulation: free_ranges[{name!r}] must be (low, high) with 0 <= low <= high, got {rng!r}")
        for name, v in self.fixed.items():
            if isinstance(v, bool) or not (isinstance(v, numbers.Real) and np.isfinite(v) and v >= 0):
                raise InvalidInputError(f"SeedPopulation: fixed[{name!r}] must be a number >= 0, got {v!r}")
        solve = tuple(self.seed_solve) if isinstance(self.seed_solve, (tuple, list)) else ()
        if len(solve) != 3 or len(set(solve)) != 3 or not all(isinstance(n, str) for n in solve):
            raise InvalidInputError(f"SeedPopulation: seed_solve must name three different conductances, got {self.seed_solve!r}")
        target = np.asarray(self.seed_target, dtype=float) if _is_numbers(self.seed_target) else np.zeros(0)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise InvalidInputError(f"SeedPopulation: seed_target must be three finite DICs (g_f, g_s, g_u), got {self.seed_target!r}")
        if self.compensation is not None and not isinstance(self.compensation, CompensationRule):
            raise InvalidInputError(f"SeedPopulation: compensation must be a CompensationRule or None, got {self.compensation!r}")
        object.__setattr__(self, "seed_solve", solve)
        object.__setattr__(self, "seed_target", tuple(float(t) for t in target))
        self._check_tail()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Seed laws pickled before tails existed (checkpoints, saved posteriors) have no tail: fill it in.
        self.__dict__.update({"tail_ranges": {}, "tail_weight": 0.0, **state})

    def _check_tail(self) -> None:
        w = self.tail_weight
        if isinstance(w, bool) or not (isinstance(w, numbers.Real) and 0 <= w < 1):
            raise InvalidInputError(f"SeedPopulation: tail_weight must be a number in [0, 1), got {w!r}")
        if not isinstance(self.tail_ranges, dict):
            raise InvalidInputError("SeedPopulation: tail_ranges must be a dict {free conductance name: (low, high)}")
        if (w > 0) != bool(self.tail_ranges):
            raise InvalidInputError("SeedPopulation: give tail_ranges and a tail_weight > 0 together, or neither")
        tails = {}
        for name, rng in self.tail_ranges.items():
            if name not in self.free_ranges:
                raise InvalidInputError(f"SeedPopulation: tail_ranges[{name!r}]: not a free conductance "
                                        f"(free: {', '.join(self.free_ranges)})")  # fmt: skip
            lo, hi = _pair_of_numbers(f"SeedPopulation: tail_ranges[{name!r}]", rng)
            a, b = (float(v) for v in self.free_ranges[name])
            if not (0 <= lo <= a and b <= hi and hi > lo):
                raise InvalidInputError(f"SeedPopulation: tail_ranges[{name!r}] must contain the free range "
                                        f"({a:g}, {b:g}) and be >= 0, got {rng!r}")  # fmt: skip
            tails[name] = (lo, hi)
        object.__setattr__(self, "tail_ranges", tails)
        object.__setattr__(self, "tail_weight", float(w))



def widen_seed_law(
    model: "ConductanceModel", factor: float, *, tail_factor: float | None = None, tail_weight: float = 0.0
) -> "ConductanceModel":
    """A copy of ``model`` whose seed law spans ``factor`` times the log-width of each range, within the box.

    Each free conductance's uniform range ``(a, b)`` and the leak range become
    ``(c · (a/b)^(factor/2), c · (b/a)^(factor/2))`` around their geometric centre ``c = sqrt(a b)``, clipped to
    the model's ``default_ranges`` (the conductance box of standard NPE). Kinetics, DICs, seed solve and
    compensation are unchanged, so every cell still has its target DICs exactly; only the law of the free draws
    widens, and with it the spread a DIC population can cover (issue 17: the seed law bounds the degeneracy that
    a learned free-conductance law can reach). The copy is named ``"<name>-wide<factor>"``, the name
    :func:`~dic_sbi.get_model` resolves for a registered model; ``factor = 1`` returns ``model`` itself. (A copy of
    a model loaded from a file has no file reference: campaigns cannot reload it.)

    With ``tail_factor`` (> ``factor``) and ``tail_weight`` in (0, 1), each free conductance whose range widened by
    ``tail_factor`` is wider than by ``factor`` gets that range as its tail (:class:`SeedPopulation`): it is drawn
    from the ``factor`` range with probability ``1 - tail_weight`` and from the ``tail_factor`` one otherwise
    (the leak keeps the ``factor`` range). The copy is named ``"<name>-wide<factor>-tail<tail_factor>w<tail_weight>"``.
    """
    if isinstance(factor, bool) or not (isinstance(factor, numbers.Real) and np.isfinite(factor) and factor >= 1):
        raise InvalidInputError(f"widen_seed_law: factor must be a number >= 1, got {factor!r}")
    if tail_factor is not None and (isinstance(tail_factor, bool) or not (
            isinstance(tail_factor, numbers.Real) and np.isfinite(tail_factor) and tail_factor > factor)):
        raise InvalidInputError(f"widen_seed_law: tail_factor must be a number > factor ({factor:g}), got {tail_factor!r}")
    if (tail_factor is None) != (tail_weight == 0) or isinstance(tail_weight, bool) or not (
            isinstance(tail_weight, numbers.Real) and 0 <= tail_weight < 1):
        raise InvalidInputError("widen_seed_law: give tail_factor > factor with a tail_weight in (0, 1), or neither; "
                                f"got tail_factor={tail_factor!r}, tail_weight={tail_weight!r}")  # fmt: skip
    sp = model.seed_population
    if sp is None:
        raise InvalidInputError(f"widen_seed_law: model {model.name!r} defines no seed population")
    if factor == 1 and tail_factor is None:
        return model

    def widen(name: str, lo: float, hi: float, by: float) -> tuple[float, float]:
        box_lo, box_hi = model.default_ranges[name]
        if lo <= 0 or hi <= lo:  # a zero-width or zero-based range has no log-width to widen
            return lo, hi
        c, half = np.sqrt(lo * hi), 0.5 * float(by) * np.log(hi / lo)
        return float(max(min(c * np.exp(-half), lo), box_lo)), float(min(max(c * np.exp(half), hi), box_hi))

    # free_ranges hold values at reference_leak: they are clipped to the box as a cell with that leak would be.
    free = {n: widen(n, *r, factor) for n, r in sp.free_ranges.items()}
    name = f"{model.name}-wide{float(factor):g}"
    tails: dict[str, tuple[float, float]] = {}
    if tail_factor is not None:
        tails = {n: t for n, r in sp.free_ranges.items() if (t := widen(n, *r, tail_factor)) != free[n]}
        if not tails:
            raise InvalidInputError(f"widen_seed_law: no free range of {model.name!r} widens further by {tail_factor:g} "
                                    f"than by {factor:g} within the box: the tail would be empty")  # fmt: skip
        name += f"-tail{float(tail_factor):g}w{float(tail_weight):g}"
    seed = replace(sp, free_ranges=free, leak_range=widen("leak", *sp.leak_range, factor), tail_ranges=tails,
                   tail_weight=float(tail_weight) if tails else 0.0)  # fmt: skip
    return replace(model, name=name, seed_population=seed, source="")


def same_kinetics(a: "ConductanceModel", b: "ConductanceModel") -> bool:
    """Whether two models simulate and compute DICs alike (they may differ in name and seed law only)."""
    fields = ("channels", "initial_voltage", "dics", "protocol", "default_ranges", "dic_box", "calcium", "capacitance")
    return a is b or all(getattr(a, f) == getattr(b, f) for f in fields)

def _is_numbers(value: Any) -> bool:
    try:
        np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (str, bytes))


def _pair_of_numbers(where: str, value: Any) -> tuple[float, float]:
    arr = np.asarray(value, dtype=float) if _is_numbers(value) else np.zeros(0)
    if arr.shape != (2,) or not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{where}: expected (low, high), two finite numbers, got {value!r}")
    return float(arr[0]), float(arr[1])


@dataclass(frozen=True, eq=False)  # identity hash: models key caches of compiled tables
class ConductanceModel:
    """A single-compartment conductance-based neuron model, as data.

    Parameters
    ----------
    name
        Registry name (``"stg"``, ``"da"``).
    channels
        Ionic channels in the conductance order of the model; one ohmic channel (no gates) must be named ``leak``
        (DICs are normalised by its conductance).
    initial_voltage
        Membrane potential at t = 0 (mV); gates start at their steady state there.
    dics
        DIC conventions (reference threshold voltage; reference timescales, chosen automatically when omitted).
    protocol
        Default simulation protocol.
    default_ranges
        Default box over maximal conductances (mS/cm²), one ``(low, high)`` per channel.
    dic_box
        Target box ``((g_s_min, g_s_max), (g_u_min, g_u_max))`` at the reference threshold (priors, training).
    calcium
        Intracellular calcium dynamics, or ``None`` (needed by calcium-carrying channels and calcium gates).
    seed_population
        Settings of the degenerate-population seed (needed by :func:`~dic_sbi.degenerate_population`).
    capacitance
        Membrane capacitance (µF/cm²).
    reference
        Citation.
    source
        Set by :func:`~dic_sbi.models.load_model_file`: ``"/abs/path/file.py:NAME"``, how to load the model again
        (pickling, stored posteriors and campaigns).

    Every field is checked when the model is built; an inconsistent model raises
    :class:`~dic_sbi.errors.InvalidInputError` naming what is wrong.
    """

    name: str
    channels: tuple[Channel, ...]
    initial_voltage: float
    dics: DICConventions
    protocol: Protocol
    default_ranges: dict[str, tuple[float, float]]
    dic_box: tuple[tuple[float, float], tuple[float, float]]
    calcium: CalciumDynamics | None = None
    seed_population: SeedPopulation | None = None
    capacitance: float = 1.0
    reference: str = ""
    description: str = field(default="", compare=False)
    source: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_model(self)
        if self.dics.fast is None or self.dics.slow is None or self.dics.ultraslow is None:
            object.__setattr__(self, "dics", choose_reference_timescales(self.channels, self.dics))

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
        if self.source:  # a model loaded from a file travels as its file reference
            return (get_model, (self.source,))
        return super().__reduce_ex__(protocol)

    def __repr__(self) -> str:
        return f"ConductanceModel({self.name!r}, conductances={self.conductance_names})"


# -- checks and automatic choices ---------------------------------------------------------------------------
def _check_model(model: ConductanceModel) -> None:
    """Consistency of a model's fields (each field class checks its own values)."""
    where = f"model {model.name!r}" if isinstance(model.name, str) else "model"
    _check_name("ConductanceModel", model.name)
    if ":" in model.name or model.name.lower().endswith(".py"):
        raise InvalidInputError(f"{where}: a model name must not contain ':' or end in '.py' (file references do)")
    channels = model.channels
    if isinstance(channels, list):
        channels = tuple(channels)
        object.__setattr__(model, "channels", channels)
    if not isinstance(channels, tuple) or not channels or not all(isinstance(c, Channel) for c in channels):
        raise InvalidInputError(f"{where}: channels must be a non-empty tuple of Channel objects")
    names = [c.name for c in channels]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInputError(f"{where}: conductance names must be unique; repeated: {dupes}")
    leak = [c for c in channels if c.name == "leak"]
    if not leak:
        raise InvalidInputError(
            f"{where}: missing leak; add an ohmic Channel('leak', E_leak) (DICs are normalised by gleak)"
        )
    if leak[0].gates:
        raise InvalidInputError(f"{where}: the leak channel must be ohmic (no gates)")
    if model.calcium is not None and not isinstance(model.calcium, CalciumDynamics):
        raise InvalidInputError(f"{where}: calcium must be a CalciumDynamics or None")
    seen: dict[str, AnyGate] = {}
    for ch in channels:
        for g, _ in ch.gates:
            key = getattr(g, "name", "erg")
            if key in seen and seen[key] is not g:
                raise InvalidInputError(f"{where}: two different gates are named {key!r}; gate names must be unique")
            seen[key] = g
        if ch.carries_calcium and model.calcium is None:
            raise InvalidInputError(f"{where}: channel {ch.name!r} carries calcium but the model has no calcium=CalciumDynamics(...)")
        n_ca = sum(isinstance(g, CalciumGate) for g, _ in ch.gates)
        if n_ca and model.calcium is None:
            raise InvalidInputError(f"{where}: channel {ch.name!r} has a calcium gate but the model has no calcium=CalciumDynamics(...)")
        if n_ca > 1 or (n_ca and ch.carries_calcium):
            raise InvalidInputError(f"{where}: channel {ch.name!r} may have at most one calcium gate, and then must not carry calcium")
    v0 = model.initial_voltage
    if isinstance(v0, bool) or not (isinstance(v0, numbers.Real) and KINETICS_RANGE[0] <= v0 <= KINETICS_RANGE[1]):
        raise InvalidInputError(f"{where}: initial_voltage must be a voltage in {KINETICS_RANGE} mV, got {v0!r}")
    c = model.capacitance
    if isinstance(c, bool) or not (isinstance(c, numbers.Real) and np.isfinite(c) and c > 0):
        raise InvalidInputError(f"{where}: capacitance must be > 0 (µF/cm²), got {c!r}")
    if not isinstance(model.dics, DICConventions):
        raise InvalidInputError(f"{where}: dics must be DICConventions(reference_threshold=..., ...)")
    if not isinstance(model.protocol, Protocol):
        raise InvalidInputError(f"{where}: protocol must be a Protocol(duration=..., transient=..., dt=...)")
    timed = {k for k, g in seen.items() if isinstance(g, (Gate, CalciumGate))}
    for key in ("fast", "slow", "ultraslow"):
        ref = getattr(model.dics, key)
        if isinstance(ref, str) and ref not in timed:
            raise InvalidInputError(
                f"{where}: DICConventions {key}={ref!r} is not a gate with a time constant; gates: {sorted(timed)}"
            )
    if not isinstance(model.default_ranges, dict):
        raise InvalidInputError(f"{where}: default_ranges must be a dict {{conductance name: (low, high)}}")
    missing = [n for n in names if n not in model.default_ranges]
    unknown = [n for n in model.default_ranges if n not in names]
    if missing or unknown:
        raise InvalidInputError(
            f"{where}: default_ranges must give one (low, high) per conductance; missing {missing}, unknown {unknown}"
        )
    for n in names:
        lo, hi = _pair_of_numbers(f"{where}: default_ranges[{n!r}]", model.default_ranges[n])
        if not 0 < lo < hi:
            raise InvalidInputError(
                f"{where}: default_ranges[{n!r}] must satisfy 0 < low < high (log-scale priors need low > 0), got {(lo, hi)}"
            )
    try:
        box = [_pair_of_numbers(f"{where}: dic_box", b) for b in model.dic_box]
    except TypeError:
        box = []
    if len(box) != 2 or not all(lo < hi for lo, hi in box):
        raise InvalidInputError(f"{where}: dic_box must be ((g_s_min, g_s_max), (g_u_min, g_u_max)) with min < max, got {model.dic_box!r}")
    sp = model.seed_population
    if sp is None:
        return
    if not isinstance(sp, SeedPopulation):
        raise InvalidInputError(f"{where}: seed_population must be a SeedPopulation or None")
    gated = [n for n in names if n != "leak"]
    uses = [("free_ranges", list(sp.free_ranges)), ("fixed", list(sp.fixed)), ("seed_solve", list(sp.seed_solve))]
    if sp.compensation is not None:
        uses.append(("compensation", [n for pair in sp.compensation.pairs for n in pair]))
    for what, used in uses:
        bad = [n for n in used if n not in gated]
        if bad:
            raise InvalidInputError(f"{where}: SeedPopulation {what} names unknown or leak conductances {bad}; choose from {gated}")
    roles: dict[str, str] = {}
    for what, used in uses[:3]:
        for n in used:
            if n in roles:
                raise InvalidInputError(f"{where}: SeedPopulation: {n!r} is both in {roles[n]} and in {what}")
            roles[n] = what
    unset = [n for n in gated if n not in roles]
    if unset:
        raise InvalidInputError(
            f"{where}: SeedPopulation: {unset} are neither free, fixed nor solved; give them a range in free_ranges "
            "or a value in fixed (0 leaves a current out)"
        )


#: Fallback ultraslow reference (ms) when no gate is much slower than the slow reference (the DA convention).
ULTRASLOW_FALLBACK = 100.0
#: A gate is a candidate ultraslow reference if its τ at threshold is at least this many times τ_s.
ULTRASLOW_RATIO = 5.0


def choose_reference_timescales(channels: tuple[Channel, ...], conventions: DICConventions) -> DICConventions:
    """Fill the reference timescales left ``None`` in ``conventions`` from the time constants at its
    ``reference_threshold`` V_ref, and say why in ``reason``.

    - fast: the fastest activation gate (``dx_inf/dV > 0`` at V_ref), the spike's upstroke (STG mNa, DA m);
    - slow: the fastest activation gate of an outward current (reversal below V_ref), other than the fast one,
      the spike's repolarisation (STG mKd, DA n); without one, the next-fastest activation gate;
    - ultraslow: the slowest gate at V_ref if its τ is at least 5 τ_s (STG mH); otherwise a constant
      ``max(100 ms, 5 τ_s)`` (DA: 100 ms).
    """
    V = float(conventions.reference_threshold)
    at = np.array([V])
    gates: dict[str, tuple[AnyGate, float]] = {}  # name -> (gate, reversal of its first channel)
    for ch in channels:
        for g, _ in ch.gates:
            if isinstance(g, (Gate, CalciumGate)) and g.name not in gates:
                gates[g.name] = (g, ch.reversal)
    tau = {n: float(np.asarray(g.time_constant(at), dtype=float).reshape(-1)[0]) for n, (g, _) in gates.items()}

    def slope(g: AnyGate) -> float:
        f = g.voltage_factor if isinstance(g, CalciumGate) else g.steady_state
        return float(np.asarray(voltage_derivative(f, at)).reshape(-1)[0])

    activation = sorted((n for n, (g, _) in gates.items() if slope(g) > 0), key=lambda n: tau[n])
    where = f"at V_ref = {V:g} mV"

    def tau_of(ref: str | float) -> float:
        return tau[ref] if isinstance(ref, str) else float(ref)

    reasons = []
    fast = conventions.fast
    if fast is None:
        if not activation:
            raise InvalidInputError(
                f"DICConventions: no activation gate (x_inf increasing {where}) to be the fast reference; give fast=..."
            )
        fast = activation[0]
        reasons.append(f"fast = {fast!r}, the fastest activation gate (τ = {tau[fast]:.3g} ms)")
    slow = conventions.slow
    if slow is None:
        outward = [n for n in activation if n != fast and gates[n][1] < V]
        others = [n for n in activation if n != fast and tau[n] > tau_of(fast)]
        if outward:
            slow = outward[0]
            reasons.append(f"slow = {slow!r}, the fastest activation gate of an outward current "
                           f"(E = {gates[slow][1]:g} mV, τ = {tau[slow]:.3g} ms)")  # fmt: skip
        elif others:
            slow = others[0]
            reasons.append(f"slow = {slow!r}, the next-fastest activation gate (no outward current; τ = {tau[slow]:.3g} ms)")
        else:
            raise InvalidInputError(f"DICConventions: no activation gate slower than the fast one {where}; give slow=...")
    ultraslow = conventions.ultraslow
    if ultraslow is None:
        tau_s = tau_of(slow)
        slowest = max(tau, key=lambda n: tau[n]) if tau else None
        if slowest is not None and tau[slowest] >= ULTRASLOW_RATIO * tau_s:
            ultraslow = slowest
            reasons.append(f"ultraslow = {slowest!r}, the slowest gate (τ = {tau[slowest]:.3g} ms >= "
                           f"{ULTRASLOW_RATIO:g} τ_s = {ULTRASLOW_RATIO * tau_s:.3g} ms)")  # fmt: skip
        else:
            ultraslow = max(ULTRASLOW_FALLBACK, ULTRASLOW_RATIO * tau_s)
            reasons.append(f"ultraslow = {ultraslow:g} ms, a constant (no gate is >= {ULTRASLOW_RATIO:g} τ_s "
                           f"= {ULTRASLOW_RATIO * tau_s:.3g} ms)")  # fmt: skip
    if not tau_of(fast) < tau_of(slow) < tau_of(ultraslow):
        raise InvalidInputError(
            f"DICConventions: reference timescales must increase {where}: τ_f = {tau_of(fast):.3g}, "
            f"τ_s = {tau_of(slow):.3g}, τ_u = {tau_of(ultraslow):.3g} ms; give fast/slow/ultraslow explicitly"
        )
    reason = f"DIC reference timescales chosen {where}: " + "; ".join(reasons)
    return replace(conventions, fast=fast, slow=slow, ultraslow=ultraslow, reason=reason)
