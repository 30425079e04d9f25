"""Voltage-dependent kinetic functions: the building blocks a model is written in.

Each object is a small frozen dataclass that evaluates on numpy arrays of voltage (mV) and knows its own
derivative where the DIC maths needs one. The same objects feed the fast simulator (which tabulates them), the
reference integrator (which evaluates them directly) and the DIC engine (which differentiates them), so a model
is written once.

A model may also use any vectorised callable of V (numpy in, numpy out) as a steady state or a time constant,
or Hodgkin–Huxley opening and closing rates α(V), β(V) through :class:`RateSteadyState` and
:class:`RateTimeConstant` (``x_inf = α / (α + β)``, ``τ = 1 / (α + β)``). Where a steady state has no
``derivative`` method, :func:`voltage_derivative` differentiates it numerically (a five-point central stencil).

Notation: ``σ(V; C, D) = 1 / (1 + exp((V + D) / C))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "sigmoid",
    "Sigmoid",
    "SigmoidTau",
    "DoubleExpTau",
    "ProductSigmoidTau",
    "FunctionTau",
    "ConstantTau",
    "MagnesiumBlock",
    "ErgScheme",
    "RateSteadyState",
    "RateTimeConstant",
    "voltage_derivative",
    "DERIVATIVE_STEP",
]

Array = NDArray[np.float64]

#: Step (mV) of the numerical derivative of :func:`voltage_derivative`. With the five-point stencil the truncation
#: error is ~ h⁴ f⁽⁵⁾ / 30 (~1e-12 relative for a sigmoid of slope 5 mV) and the rounding error ~ 1e-14 / h.
DERIVATIVE_STEP = 1e-2


def voltage_derivative(function: Callable[[Array], Array], V: ArrayLike) -> Array:
    """``d function / dV`` at ``V``: the function's own ``derivative(V)`` if it has one, else numerically.

    The numerical derivative is the fourth-order central stencil
    ``(f(V - 2h) - 8 f(V - h) + 8 f(V + h) - f(V + 2h)) / (12 h)`` with ``h =`` :data:`DERIVATIVE_STEP` mV.
    """
    V = np.asarray(V, dtype=float)
    analytic = getattr(function, "derivative", None)
    if callable(analytic):
        return np.asarray(analytic(V), dtype=float)
    h = DERIVATIVE_STEP

    def f(x: Array) -> Array:
        return np.asarray(function(x), dtype=float)

    return (f(V - 2 * h) - 8.0 * f(V - h) + 8.0 * f(V + h) - f(V + 2 * h)) / (12.0 * h)


def sigmoid(V: ArrayLike, C: float, D: float) -> Array:
    """``σ(V; C, D) = 1 / (1 + exp((V + D) / C))``, overflow-safe."""
    z = (np.asarray(V, dtype=float) + D) / C
    # exp overflows past ~709; the sigmoid is exactly 0 there in float64 anyway.
    return 1.0 / (1.0 + np.exp(np.minimum(z, 700.0)))


@dataclass(frozen=True)
class Sigmoid:
    """Steady-state activation ``x_inf(V) = σ(V; C, D)``."""

    C: float
    D: float

    def __call__(self, V: ArrayLike) -> Array:
        return sigmoid(V, self.C, self.D)

    def derivative(self, V: ArrayLike) -> Array:
        """``dσ/dV = -σ (1 - σ) / C`` (this form does not overflow)."""
        s = self(V)
        return -s * (1.0 - s) / self.C


@dataclass(frozen=True)
class SigmoidTau:
    """Time constant ``τ(V) = a + b σ(V; C, D)`` (ms)."""

    a: float
    b: float
    C: float
    D: float

    def __call__(self, V: ArrayLike) -> Array:
        return self.a + self.b * sigmoid(V, self.C, self.D)


@dataclass(frozen=True)
class DoubleExpTau:
    """Time constant ``τ(V) = a + b / (exp((V + c1) / d1) + exp((V + c2) / d2))`` (ms)."""

    a: float
    b: float
    c1: float
    d1: float
    c2: float
    d2: float

    def __call__(self, V: ArrayLike) -> Array:
        V = np.asarray(V, dtype=float)
        den = np.exp(np.minimum((V + self.c1) / self.d1, 700.0)) + np.exp(np.minimum((V + self.c2) / self.d2, 700.0))
        return self.a + self.b / den


@dataclass(frozen=True)
class ProductSigmoidTau:
    """Time constant ``τ(V) = scale · σ(V; C1, D1) · (offset + σ(V; C2, D2))`` (ms), Liu 1998's τ_hNa."""

    scale: float
    C1: float
    D1: float
    offset: float
    C2: float
    D2: float

    def __call__(self, V: ArrayLike) -> Array:
        return self.scale * sigmoid(V, self.C1, self.D1) * (self.offset + sigmoid(V, self.C2, self.D2))


@dataclass(frozen=True)
class FunctionTau:
    """A time constant given by an explicit vectorised function of V (for published rate expressions)."""

    function: Callable[[Array], Array]
    description: str

    def __call__(self, V: ArrayLike) -> Array:
        return np.asarray(self.function(np.asarray(V, dtype=float)), dtype=float)


@dataclass(frozen=True)
class ConstantTau:
    """A voltage-independent time constant (ms)."""

    tau: float

    def __call__(self, V: ArrayLike) -> Array:
        return np.full(np.shape(V), float(self.tau))


@dataclass(frozen=True)
class MagnesiumBlock:
    """Instantaneous NMDA magnesium block ``B(V) = 1 / (1 + Mg exp(k_V V) / k_Mg)``.

    With ``slope = -0.08`` /mV, ``k_Mg = 10`` and ``Mg = 1.4`` mM this is the DA model's NMDA magnesium block (Qian et al. 2014).
    """

    Mg: float = 1.4
    slope: float = -0.08
    k_Mg: float = 10.0

    def __call__(self, V: ArrayLike) -> Array:
        e = np.exp(np.minimum(self.slope * np.asarray(V, dtype=float), 700.0))
        return 1.0 / (1.0 + self.Mg * e / self.k_Mg)

    def derivative(self, V: ArrayLike) -> Array:
        """``dB/dV = -B² · Mg · slope · exp(slope V) / k_Mg``."""
        V = np.asarray(V, dtype=float)
        e = np.exp(np.minimum(self.slope * V, 700.0))
        B = 1.0 / (1.0 + self.Mg * e / self.k_Mg)
        return -B * B * self.Mg * self.slope * e / self.k_Mg


@dataclass(frozen=True)
class ErgScheme:
    """Three-state ERG scheme (closed, open ``o``, inactivated ``i``) with exponential rates.

    ``do/dt = a0 (1 - o - i) + bi i - o (ai + b0)``, ``di/dt = ai o - bi i``, and each rate is
    ``r(V) = A exp(k V)``. The conductance is proportional to ``o``.
    """

    a0: tuple[float, float] = (0.0036, 0.0759)
    b0: tuple[float, float] = (1.2523e-5, -0.0671)
    ai: tuple[float, float] = (0.1, 0.1189)
    bi: tuple[float, float] = (0.003, -0.0733)

    @staticmethod
    def _rate(p: tuple[float, float], V: Array) -> Array:
        return p[0] * np.exp(np.clip(p[1] * V, -700.0, 700.0))

    def rates(self, V: ArrayLike) -> tuple[Array, Array, Array, Array]:
        """The four rates ``(a0, b0, ai, bi)`` at V (1/ms)."""
        V = np.asarray(V, dtype=float)
        return self._rate(self.a0, V), self._rate(self.b0, V), self._rate(self.ai, V), self._rate(self.bi, V)

    def generator(self, V: ArrayLike) -> tuple[Array, Array]:
        """Affine generator of ``d(o, i)/dt = A (o, i) + b``: returns ``A (..., 2, 2)`` and ``b (..., 2)``."""
        a0, b0, ai, bi = self.rates(V)
        A = np.empty(np.shape(a0) + (2, 2))
        A[..., 0, 0] = -(a0 + ai + b0)
        A[..., 0, 1] = bi - a0
        A[..., 1, 0] = ai
        A[..., 1, 1] = -bi
        b = np.stack([a0, np.zeros_like(a0)], axis=-1)
        return A, b

    def steady_state(self, V: ArrayLike) -> tuple[Array, Array]:
        """Equilibrium ``(o_inf, i_inf)``: ``o_inf = a0 bi / (a0 (ai + bi) + b0 bi)``, ``i_inf = o_inf ai / bi``."""
        a0, b0, ai, bi = self.rates(V)
        o = a0 * bi / (a0 * (ai + bi) + b0 * bi)
        return o, o * ai / bi

    def open_derivative(self, V: ArrayLike) -> Array:
        """``d o_inf / dV`` by the quotient rule on the exponential rates."""
        a0, b0, ai, bi = self.rates(V)
        ka0, kb0, kai, kbi = self.a0[1], self.b0[1], self.ai[1], self.bi[1]
        num = a0 * bi
        den = a0 * (ai + bi) + b0 * bi
        dnum = (ka0 + kbi) * num
        dden = a0 * (ka0 + kai) * ai + a0 * (ka0 + kbi) * bi + b0 * bi * (kb0 + kbi)
        return (dnum * den - num * dden) / (den * den)


@dataclass(frozen=True)
class RateSteadyState:
    """Steady state ``x_inf(V) = α(V) / (α(V) + β(V))`` of a gate with Hodgkin–Huxley rates (1/ms).

    ``alpha`` and ``beta`` are vectorised callables of V (mV); write removable singularities such as
    ``(V + 40) / (1 - exp(-(V + 40) / 10))`` with :func:`scipy.special.exprel` so that they stay finite.
    """

    alpha: Callable[[Array], Array]
    beta: Callable[[Array], Array]

    def __call__(self, V: ArrayLike) -> Array:
        V = np.asarray(V, dtype=float)
        a = np.asarray(self.alpha(V), dtype=float)
        return a / (a + np.asarray(self.beta(V), dtype=float))


@dataclass(frozen=True)
class RateTimeConstant:
    """Time constant ``τ(V) = 1 / (α(V) + β(V))`` (ms) of a gate with Hodgkin–Huxley rates (1/ms)."""

    alpha: Callable[[Array], Array]
    beta: Callable[[Array], Array]

    def __call__(self, V: ArrayLike) -> Array:
        V = np.asarray(V, dtype=float)
        return 1.0 / (np.asarray(self.alpha(V), dtype=float) + np.asarray(self.beta(V), dtype=float))
