"""Dynamic Input Conductances (DICs): sensitivity matrix, DICs and threshold voltage.

Definitions and conventions: Drion, Franci, Dethier, Sepulchre (2015). At a voltage V the
model is linearised at equilibrium (every gate at its steady state, intracellular calcium at ``Ca_inf(V)``) and the
derivative of the steady-state current is split into a fast, a slow and an ultraslow part by the log-interpolated
timescale weights of each gate. Every DIC is divided by gleak, so ``(g_f, g_s, g_u)`` are dimensionless.

The maths is linear in the maximal conductances except through ``Ca_inf``, which depends on the
calcium-carrying conductances (STG CaT, CaS) and feeds calcium-gated channels (STG KCa). This module writes the
DICs as

    gleak · DIC(g) = S0 g + Σ_k g_k [ r_k(Ca)^p_k C_k + p_k r_k^(p_k-1) r_k'(Ca) D_k (b · g) w_Ca ],
    Ca = β + a · g,    r_k(Ca) = Ca / (Ca + K_k),

where ``S0`` holds every calcium-independent column, ``k`` runs over calcium-gated channels (``C_k`` is their
column with ``r = 1``, ``D_k`` the calcium-path factor), ``a · g`` is ``-α I_Ca,inf`` and ``b · g`` is
``dCa_inf/dV``. The same :class:`Linearization` drives the numpy DICs here and the compiled compensation kernels
of :mod:`dic_sbi.core.populations`, so the two never disagree.

Broadcasting: ``conductances`` has shape ``(..., n_conductances)``. ``V`` is ``None`` (the model's reference
threshold), a scalar (result ``(..., 3)``) or a 1-D array of m voltages (result ``(..., m, 3)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model
from ..models.base import CalciumGate, Gate, InstantaneousGate
from ..models.kinetics import ErgScheme, voltage_derivative
from .checks import check_conductances

__all__ = [
    "Linearization",
    "linearize",
    "sensitivity_matrix",
    "dics",
    "steady_state_current",
    "threshold_voltage",
    "timescale_weight",
]

Array = NDArray[np.float64]
CalciumPathTau = Union[float, None, str]

#: Rows of a DIC array.
FAST, SLOW, ULTRASLOW = 0, 1, 2


def timescale_weight(tau: ArrayLike, tau_a: ArrayLike, tau_b: ArrayLike) -> Array:
    """Log-interpolated weight ``w(τ; τ_a, τ_b)`` (Drion et al. 2015): 1 below ``τ_a``, 0 from ``τ_b`` on."""
    tau, tau_a, tau_b = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (tau, tau_a, tau_b)))
    with np.errstate(divide="ignore", invalid="ignore"):
        mid = np.log(tau_b / tau) / np.log(tau_b / tau_a)
    return np.where(tau < tau_a, 1.0, np.where(tau >= tau_b, 0.0, mid))


@dataclass(frozen=True)
class Linearization:
    """The DIC map of a model at fixed voltages, split into its calcium-independent and calcium parts.

    Leading dimensions ``(...)`` are those of the voltage array it was built at. With ``k`` calcium-gated
    channels and ``n`` conductances:

    Attributes
    ----------
    S0 : (..., 3, n)
        Calcium-independent sensitivity columns (zero for calcium-gated channels).
    ca_index, ca_power, ca_K : (k,)
        Position, exponent of the calcium gate and its half-activation ``K`` for each calcium-gated channel.
    ca_C : (..., k, 3)
        Voltage-path column of each calcium-gated channel at ``r(Ca) = 1``.
    ca_D : (..., k)
        ``Π_V (V - E)``: the calcium-path factor (the gate product without ``r``, times the driving force).
    ca_a, ca_b : (..., n)
        ``Ca_inf = β + a · g`` and ``dCa_inf/dV = b · g``.
    ca_beta : float
        ``β`` of the calcium dynamics.
    ca_w : (..., 3)
        Split of the calcium path over (fast, slow, ultraslow).
    """

    S0: Array
    ca_index: NDArray[np.intp]
    ca_power: NDArray[np.intp]
    ca_K: Array
    ca_C: Array
    ca_D: Array
    ca_a: Array
    ca_b: Array
    ca_beta: float
    ca_w: Array

    @property
    def has_calcium(self) -> bool:
        return self.ca_index.size > 0

    def calcium(self, g: Array) -> Array:
        """``Ca_inf`` for conductances ``g (..., n)`` (broadcast against the voltage dimensions)."""
        return self.ca_beta + np.sum(self.ca_a * g, axis=-1)

    def columns(self, g: Array) -> Array:
        """Exact sensitivity ``S(V; g)`` with ``gleak · DIC = S g``: the calcium terms go in their channel's column."""
        S = np.array(np.broadcast_to(self.S0, np.broadcast_shapes(self.S0.shape, g.shape[:-1] + (1, 1))))
        if not self.has_calcium:
            return S
        Ca = self.calcium(g)
        dCa = np.sum(self.ca_b * g, axis=-1)
        for j, (idx, p, K) in enumerate(zip(self.ca_index, self.ca_power, self.ca_K)):
            r = Ca / (Ca + K)
            dr = K / (Ca + K) ** 2
            voltage_path = r[..., None] ** p * self.ca_C[..., j, :]
            calcium_path = (p * r ** (p - 1) * dr * self.ca_D[..., j] * dCa)[..., None] * self.ca_w
            S[..., :, idx] = voltage_path + calcium_path
        return S

    def raw(self, g: Array) -> Array:
        """``gleak · DIC`` (un-normalised DICs), shape ``broadcast(..., g[..., :-1]) + (3,)``."""
        return np.einsum("...rn,...n->...r", self.columns(g), g)


def _resolve_calcium_tau(model: ConductanceModel, calcium_path_tau: CalciumPathTau) -> float | None:
    if isinstance(calcium_path_tau, str):
        if calcium_path_tau == "model":
            return model.dics.calcium_path_tau
        if calcium_path_tau == "ultraslow":
            return None
        raise InvalidInputError(
            f"calcium_path_tau: expected 'model', 'ultraslow', None or a time constant in ms, got {calcium_path_tau!r}"
        )
    if calcium_path_tau is None:
        return None
    tau = float(calcium_path_tau)
    if not np.isfinite(tau) or tau <= 0:
        raise InvalidInputError(f"calcium_path_tau: a time constant must be a positive number of ms, got {tau}")
    return tau


def _reference_tau(model: ConductanceModel, which: str | float, V: Array) -> Array:
    if isinstance(which, str):
        gate = model.gates()[which]
        return np.asarray(gate.time_constant(V), dtype=float)
    return np.full(V.shape, float(which))


def _gate_parts(gate, V: Array, tau_f: Array, tau_s: Array, tau_u: Array):
    """Steady state (``r = 1`` for a calcium gate), its V-derivative and the weights (w_fs, w_su) of one gate."""
    if isinstance(gate, CalciumGate):
        x, dx = np.asarray(gate.voltage_factor(V), dtype=float), voltage_derivative(gate.voltage_factor, V)
        tau = np.asarray(gate.time_constant(V), dtype=float)
    elif isinstance(gate, Gate):
        x, dx = np.asarray(gate.steady_state(V), dtype=float), voltage_derivative(gate.steady_state, V)
        tau = np.asarray(gate.time_constant(V), dtype=float)
    elif isinstance(gate, InstantaneousGate):
        # Always at steady state: entirely fast (NMDA).
        x = np.asarray(gate.steady_state(V), dtype=float)
        return x, voltage_derivative(gate.steady_state, V), np.ones_like(V), np.ones_like(V)
    elif isinstance(gate, ErgScheme):
        # The ERG scheme is entirely ultraslow.
        o, _ = gate.steady_state(V)
        return o, gate.open_derivative(V), np.zeros_like(V), np.zeros_like(V)
    else:  # pragma: no cover - guarded by the model layer
        raise InvalidInputError(f"model: gate {gate!r} has a type the DIC engine does not know")
    return x, dx, timescale_weight(tau, tau_f, tau_s), timescale_weight(tau, tau_s, tau_u)


def linearize(
    model: str | ConductanceModel, V: ArrayLike | None = None, *, calcium_path_tau: CalciumPathTau = "model"
) -> Linearization:
    """Build the :class:`Linearization` of ``model`` at voltages ``V`` (any shape; default: reference V_th)."""
    model = get_model(model)
    V = _check_voltage(model, V)
    tau_c = _resolve_calcium_tau(model, calcium_path_tau)
    conv = model.dics
    tau_f, tau_s, tau_u = (_reference_tau(model, w, V) for w in (conv.fast, conv.slow, conv.ultraslow))

    n = model.n_conductances
    S0 = np.zeros(V.shape + (3, n))
    total = np.zeros(V.shape + (n,))  # d(Π (V - E))/dV per unit conductance, every path: for dCa_inf/dV
    steady = np.zeros(V.shape + (n,))  # Π (V - E) per unit conductance
    ca_index, ca_power, ca_K, ca_C, ca_D = [], [], [], [], []
    for i, ch in enumerate(model.channels):
        parts = [_gate_parts(g, V, tau_f, tau_s, tau_u) for g, _ in ch.gates]
        powers = [p for _, p in ch.gates]
        drive = V - ch.reversal
        prod = np.ones_like(V)
        for (x, *_), p in zip(parts, powers):
            prod = prod * x**p
        col = np.zeros(V.shape + (3,))
        col[..., FAST] = prod
        for j, ((x, dx, w_fs, w_su), p) in enumerate(zip(parts, powers)):
            others = np.ones_like(V)
            for jj, ((y, *_), q) in enumerate(zip(parts, powers)):
                if jj != j:
                    others = others * y**q
            c = p * x ** (p - 1) * others * drive * dx
            col[..., FAST] += w_fs * c
            col[..., SLOW] += (w_su - w_fs) * c
            col[..., ULTRASLOW] += (1.0 - w_su) * c
        calcium_gates = [(g, p) for g, p in ch.gates if isinstance(g, CalciumGate)]
        if calcium_gates:
            if len(calcium_gates) > 1 or model.calcium is None or ch.carries_calcium:
                raise InvalidInputError(
                    f"model: channel {ch.name!r} needs one calcium gate, calcium dynamics, and must not carry calcium"
                )
            gate, p = calcium_gates[0]
            ca_index.append(i)
            ca_power.append(p)
            ca_K.append(gate.K)
            ca_C.append(col)
            ca_D.append(prod * drive)
        else:
            S0[..., :, i] = col
            steady[..., i] = prod * drive
            total[..., i] = col.sum(axis=-1)

    k = len(ca_index)
    if k:
        alpha, beta = model.calcium.alpha, model.calcium.beta
        carries = np.array([ch.carries_calcium for ch in model.channels])
        ca_a = np.where(carries, -alpha * steady, 0.0)
        ca_b = np.where(carries, -alpha * total, 0.0)
        if tau_c is None:
            ca_w = np.zeros(V.shape + (3,))
            ca_w[..., ULTRASLOW] = 1.0
        else:
            w_fs = timescale_weight(tau_c, tau_f, tau_s)
            w_su = timescale_weight(tau_c, tau_s, tau_u)
            ca_w = np.stack([w_fs, w_su - w_fs, 1.0 - w_su], axis=-1)
        ca_C_arr = np.stack(ca_C, axis=-2)
        ca_D_arr = np.stack(ca_D, axis=-1)
    else:
        beta = 0.0
        ca_a = np.zeros(V.shape + (n,))
        ca_b = np.zeros(V.shape + (n,))
        ca_w = np.zeros(V.shape + (3,))
        ca_C_arr = np.zeros(V.shape + (0, 3))
        ca_D_arr = np.zeros(V.shape + (0,))
    return Linearization(
        S0=S0,
        ca_index=np.asarray(ca_index, dtype=np.intp),
        ca_power=np.asarray(ca_power, dtype=np.intp),
        ca_K=np.asarray(ca_K, dtype=float),
        ca_C=ca_C_arr,
        ca_D=ca_D_arr,
        ca_a=ca_a,
        ca_b=ca_b,
        ca_beta=float(beta),
        ca_w=ca_w,
    )


# -- input checks -------------------------------------------------------------------------------------------
MAX_ABS_VOLTAGE = 500.0  # mV: beyond it the gate exponentials overflow; no membrane gets there
def _check_voltage(model: ConductanceModel, V: ArrayLike | None, *, name: str = "V") -> Array:
    if V is None:
        return np.asarray(model.dics.reference_threshold, dtype=float)
    try:
        arr = np.asarray(V, dtype=float)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name}: expected a voltage in mV or an array of them, got {type(V).__name__}") from None
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name}: voltages must be finite numbers (mV); got NaN or inf")
    if np.any(np.abs(arr) > MAX_ABS_VOLTAGE):
        raise InvalidInputError(f"{name}: voltages must lie within ±{MAX_ABS_VOLTAGE:g} mV; got {arr[np.abs(arr) > MAX_ABS_VOLTAGE].ravel()[0]:g}")
    return arr


def _voltage_layout(V: Array) -> tuple[Array, bool]:
    if V.ndim > 1:
        raise InvalidInputError(f"V: expected None, a scalar or a 1-D array of voltages, got shape {V.shape}")
    return V, V.ndim == 1


# -- public API ---------------------------------------------------------------------------------------------
def sensitivity_matrix(
    model: str | ConductanceModel,
    V: ArrayLike | None = None,
    *,
    conductances: ArrayLike | None = None,
    calcium_path_tau: CalciumPathTau = "model",
) -> Array:
    """Sensitivity matrix ``S(V)`` with ``(g_f, g_s, g_u) = S(V) · ḡ / gleak``.

    Parameters
    ----------
    model
        Model name or object.
    V
        ``None`` (reference V_th), a scalar, or a 1-D array of m voltages (mV).
    conductances
        Needed for models with intracellular calcium (STG): ``Ca_inf`` depends on the calcium-carrying
        conductances, so ``S`` is exact for these conductances (calcium terms go in the calcium-gated column).
    calcium_path_tau
        ``"model"`` (the model's convention), ``"ultraslow"``/``None``, or a time constant in ms (e.g. 20).

    Returns
    -------
    ndarray
        ``(3, n)`` for scalar V, ``(m, 3, n)`` for 1-D V; with conductances ``(..., n)``: ``(..., 3, n)`` or
        ``(..., m, 3, n)``.
    """
    model = get_model(model)
    V, vector = _voltage_layout(_check_voltage(model, V))
    lin = linearize(model, V, calcium_path_tau=calcium_path_tau)
    if conductances is None:
        if lin.has_calcium:
            raise InvalidInputError(
                f"conductances: model {model.name!r} has intracellular calcium, so S(V) depends on the "
                "calcium-carrying conductances; pass conductances=..."
            )
        return lin.S0.copy()
    g = check_conductances(model, conductances, positive_leak=True)
    gb = g[..., None, :] if vector else g
    return lin.columns(gb)


def dics(
    model: str | ConductanceModel,
    conductances: ArrayLike,
    V: ArrayLike | None = None,
    *,
    calcium_path_tau: CalciumPathTau = "model",
) -> Array:
    """Normalised DICs ``(g_f, g_s, g_u) / gleak``.

    Parameters
    ----------
    model
        Model name or object.
    conductances
        ``(..., n_conductances)`` maximal conductances in the model's order (mS/cm²).
    V
        ``None`` (the model's reference V_th), a scalar, or a 1-D array of m voltages (mV).
    calcium_path_tau
        Weighting of the STG calcium path: ``"model"`` (default: the model's convention, ultraslow),
        ``"ultraslow"``/``None`` or a time constant in ms.

    Returns
    -------
    ndarray
        ``(..., 3)`` for scalar V, ``(..., m, 3)`` for 1-D V.
    """
    model = get_model(model)
    g = check_conductances(model, conductances, positive_leak=True)
    V, vector = _voltage_layout(_check_voltage(model, V))
    lin = linearize(model, V, calcium_path_tau=calcium_path_tau)
    gb = g[..., None, :] if vector else g
    with np.errstate(over="ignore", invalid="ignore"):
        out = lin.raw(gb) / gb[..., model.index("leak"), None]
    if not np.all(np.isfinite(out)):
        # Only conductances whose ratios leave float64's range get here (e.g. gNa 1e132 with gleak 1e-181).
        raise InvalidInputError(
            "conductances: the DICs of these conductances overflow float64 (ratios to gleak beyond ~1e300); "
            "check their units (mS/cm²)"
        )
    return out


def steady_state_current(model: str | ConductanceModel, conductances: ArrayLike, V: ArrayLike) -> Array:
    """Steady-state ionic current ``I_ss(V) = Σ_i ḡ_i Π y_inf^p (V - E_i)`` (µA/cm²), calcium at ``Ca_inf(V)``.

    ``conductances (..., n)`` and scalar V give ``(...)``; 1-D V of length m gives ``(..., m)``.
    """
    model = get_model(model)
    g = check_conductances(model, conductances, positive_leak=True)
    V, vector = _voltage_layout(_check_voltage(model, V))
    lin = linearize(model, V)
    gb = g[..., None, :] if vector else g
    # Π (V - E) per channel: the fast row at r = 1 is not it, so evaluate directly from the model data.
    steady = np.zeros(V.shape + (model.n_conductances,))
    for i, ch in enumerate(model.channels):
        prod = np.ones_like(V)
        for gate, p in ch.gates:
            if isinstance(gate, CalciumGate):
                x = gate.voltage_factor(V)
            elif isinstance(gate, ErgScheme):
                x = gate.steady_state(V)[0]
            else:
                x = gate.steady_state(V)
            prod = prod * x**p
        steady[..., i] = prod * (V - ch.reversal)
    steady = np.broadcast_to(steady, np.broadcast_shapes(steady.shape, gb.shape))
    if lin.has_calcium:
        Ca = lin.calcium(gb)
        steady = np.array(steady)
        for idx, p, K in zip(lin.ca_index, lin.ca_power, lin.ca_K):
            steady[..., idx] = steady[..., idx] * (Ca / (Ca + K)) ** p
    return np.sum(steady * gb, axis=-1)


def threshold_voltage(
    model: str | ConductanceModel,
    conductances: ArrayLike,
    *,
    v_range: tuple[float, float] = (-90.0, 0.0),
    step: float = 0.25,
    tol: float = 1e-6,
    on_missing: Literal["nan", "raise"] = "nan",
    calcium_path_tau: CalciumPathTau = "model",
) -> Array:
    """Threshold voltage: the first V, scanning upward, where ``g_f + g_s + g_u`` goes from > 0 to ≤ 0.

    The sum is scanned on a grid of ``step`` mV over ``v_range`` and the first sign change is refined by
    bisection to ``tol`` mV. Because the sum is independent of the timescale weights, so is V_th.

    Parameters
    ----------
    model, conductances
        Model and ``(..., n_conductances)`` maximal conductances.
    v_range, step, tol
        Scan interval and grid step (mV), bisection tolerance (mV).
    on_missing
        For a cell with no crossing in ``v_range`` (e.g. a cell without a regenerative region): ``"nan"``
        returns NaN for that cell, ``"raise"`` raises :class:`~dic_sbi.errors.InvalidInputError`.

    Returns
    -------
    ndarray
        ``(...)`` thresholds in mV.
    """
    model = get_model(model)
    g = check_conductances(model, conductances, positive_leak=True)
    lo, hi = (float(v) for v in v_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise InvalidInputError(f"v_range: expected (low, high) with low < high in mV, got {v_range}")
    if not (np.isfinite(step) and 0 < step <= hi - lo):
        raise InvalidInputError(f"step: expected a positive grid step (mV) below the range width, got {step}")
    if not (np.isfinite(tol) and tol > 0):
        raise InvalidInputError(f"tol: expected a positive tolerance in mV, got {tol}")
    if on_missing not in ("nan", "raise"):
        raise InvalidInputError(f"on_missing: expected 'nan' or 'raise', got {on_missing!r}")
    grid = np.linspace(lo, hi, int(np.ceil((hi - lo) / step)) + 1)
    leak = model.index("leak")
    batch = g.reshape(-1, g.shape[-1])

    def total(gg: Array, V: Array) -> Array:
        # g_f + g_s + g_u: the weights cancel, so any calcium-path convention gives the same sum.
        lin = linearize(model, V, calcium_path_tau=calcium_path_tau)
        return lin.raw(gg).sum(axis=-1) / gg[..., leak]

    out = np.full(batch.shape[0], np.nan)
    chunk = max(1, 200_000 // grid.size)
    lin_grid = linearize(model, grid, calcium_path_tau=calcium_path_tau)
    for start in range(0, batch.shape[0], chunk):
        gc = batch[start : start + chunk]
        s = lin_grid.raw(gc[:, None, :]).sum(axis=-1) / gc[:, None, leak]
        cross = (s[:, :-1] > 0) & (s[:, 1:] <= 0)
        found = cross.any(axis=1)
        first = np.argmax(cross, axis=1)
        rows = np.flatnonzero(found)
        if rows.size == 0:
            continue
        a, b = grid[first[rows]], grid[first[rows] + 1]
        gr = gc[rows]
        # Bisection keeps the invariant total(a) > 0 >= total(b).
        n_iter = int(np.ceil(np.log2(step / tol))) + 1
        for _ in range(n_iter):
            m = 0.5 * (a + b)
            pos = total(gr, m) > 0
            a = np.where(pos, m, a)
            b = np.where(pos, b, m)
        out[start + rows] = 0.5 * (a + b)
    if on_missing == "raise" and np.isnan(out).any():
        bad = int(np.flatnonzero(np.isnan(out))[0])
        raise InvalidInputError(
            f"conductances: cell {bad} has no threshold (g_f + g_s + g_u never turns from > 0 to <= 0) in "
            f"v_range={v_range}; widen v_range or use on_missing='nan'"
        )
    return out.reshape(g.shape[:-1])
