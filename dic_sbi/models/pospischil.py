"""Cortical neuron of Pospischil et al. (2008): the minimal Hodgkin–Huxley models of regular-spiking (RS),
fast-spiking (FS), intrinsically bursting (IB) and low-threshold-spiking (LTS) cortical cells.

Written as a user writes a model of their own (``tutorials/05_bring_your_own_model.py``): Hodgkin–Huxley rates
through :meth:`Gate.from_rates`, steady states and time constants as plain vectorised functions. Six
conductances ``Na, Kd, M, L, T, leak`` (mS/cm², C = 1 µF/cm², currents in µA/cm²):

    C dV/dt = -gleak (V - E_leak) - gNa m³h (V - E_Na) - gKd n⁴ (V - E_K) - gM p (V - E_K)
              - gL q²r (V - E_Ca) - gT s_inf(V)² u (V - E_Ca)

- sodium and delayed-rectifier potassium: Traub & Miles (1991) rates, shifted by the threshold parameter V_T;
- M current (spike-frequency adaptation): ``p_inf = 1 / (1 + exp(-(V + 35)/10))``,
  ``τ_p = τ_max / (3.3 exp((V + 35)/20) + exp(-(V + 35)/20))`` (Yamada, Koch & Adams 1989);
- L-type (high-threshold) calcium: Reuveni et al. (1993) ``q²r`` rates;
- T-type (low-threshold) calcium: activation at steady state ``s_inf`` (exponent 2), inactivation ``u`` with the
  Huguenard & McCormick (1992) bi-exponential time constant divided by the Q10 factor 3^((36 - 24)/10) of the
  paper's 36 °C, and the screening-charge shift V_x = 2 mV.

Reversal potentials: E_Na = 50 mV, E_K = -100 mV and a fixed E_Ca = 120 mV (the paper's and its published
models' values; no Nernst calcium, no calcium pool: no current here depends on intracellular calcium).
V_T = -55 mV and τ_max = 1000 ms for every variant, as in the paper's published cells.

The four variants (:data:`VARIANTS`) are the paper's cells (its Figs. and the authors' published NEURON models,
ModelDB 123623) with their maximal conductances (``Variant.conductances``, mS/cm²):

=====  ======  =====  =====  =====  =====  =======  ======  =============
cell   Na      Kd     M      L      T      leak     E_leak  step (µA/cm²)
=====  ======  =====  =====  =====  =====  =======  ======  =============
RS     50      5      0.07   0      0      0.10     -70     2.590
FS     50      10     0      0      0      0.15     -70     3.546
IB     50      5      0.03   0.17   0      0.01     -85     0.518
LTS    50      5      0.03   0      0.4    0.01     -85     0.518
=====  ======  =====  =====  =====  =====  =======  ======  =============

The paper's cells are silent at rest and fire during a current step (0.75, 0.5, 0.15 and 0.15 nA on somata of
96, 67, 96 and 96 µm length and diameter; the IB cell's initial burst and the LTS cell's rebound burst are
transients, and in the steady state that the protocol records both fire tonically, the IB cell bursting
repetitively from L = 0.22 mS/cm², as in the paper). dic_sbi simulates spontaneous activity, so each variant model carries
its step in the leak reversal: ``gleak (V - E_leak) - I = gleak (V - E_leak')`` with
``E_leak' = E_leak + I / gleak`` — the same equations, exactly. ``get_model("pospischil-rs")`` (``-fs``,
``-ib``, ``-lts``) is the model of one variant, and ``get_model("pospischil")`` the one whose DIC map
and populations dic_sbi reports: the IB/LTS drive (E_leak' = -33.2 mV), with all five currents.

References
----------
Pospischil, Toledo-Rodriguez, Monier, Piwkowska, Bal, Frégnac, Markram, Destexhe (2008). Minimal Hodgkin–Huxley
type models for different classes of cortical and thalamic neurons. Biol Cybern 99:427–441.
Traub & Miles (1991). Neuronal Networks of the Hippocampus. Cambridge University Press.
Reuveni, Friedman, Amitai, Gutnick (1993). J Neurosci 13:4609–4621.
Huguenard & McCormick (1992). J Neurophysiol 68:1373–1383.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import exprel

# Absolute imports of the public model API, as a user's file has them: this file also loads as a model file
# (``get_model("path/to/pospischil.py:POSPISCHIL")``), which the tests check.
from dic_sbi.errors import InvalidInputError
from dic_sbi.models.base import (
    Channel,
    CompensationRule,
    ConductanceModel,
    DICConventions,
    Gate,
    InstantaneousGate,
    Protocol,
    SeedPopulation,
)

__all__ = ["Variant", "VARIANTS", "pospischil_model", "POSPISCHIL", "POSPISCHIL_VARIANTS"]

Array = NDArray[np.float64]

E_NA, E_K, E_CA = 50.0, -100.0, 120.0  # mV
V_T = -55.0  # mV: threshold parameter of the Na and Kd rates
TAU_MAX = 1000.0  # ms: the M current's τ_max
V_X = 2.0  # mV: shift of the T current's kinetics (screening charge, 2 mM external calcium)
T_Q10 = 3.0 ** ((36.0 - 24.0) / 10.0)  # temperature factor of τ_u: Huguenard's 24 °C data at 36 °C (Q10 = 3)


# Na and Kd (Traub & Miles), written with exprel so that x / (1 - exp(-x)) stays finite at x = 0.
def alpha_m(V: Array) -> Array:
    return 1.28 / exprel(-(V - V_T - 13.0) / 4.0)


def beta_m(V: Array) -> Array:
    return 1.4 / exprel((V - V_T - 40.0) / 5.0)


def alpha_h(V: Array) -> Array:
    return 0.128 * np.exp(-(V - V_T - 17.0) / 18.0)


def beta_h(V: Array) -> Array:
    return 4.0 / (1.0 + np.exp(-(V - V_T - 40.0) / 5.0))


def alpha_n(V: Array) -> Array:
    return 0.16 / exprel(-(V - V_T - 15.0) / 5.0)


def beta_n(V: Array) -> Array:
    return 0.5 * np.exp(-(V - V_T - 10.0) / 40.0)


# M current (adaptation).
def p_inf(V: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-(V + 35.0) / 10.0))


def tau_p(V: Array) -> Array:
    return TAU_MAX / (3.3 * np.exp((V + 35.0) / 20.0) + np.exp(-(V + 35.0) / 20.0))


# L-type calcium (Reuveni et al. 1993).
def alpha_q(V: Array) -> Array:
    return 0.055 * 3.8 / exprel((-27.0 - V) / 3.8)


def beta_q(V: Array) -> Array:
    return 0.94 * np.exp((-75.0 - V) / 17.0)


def alpha_r(V: Array) -> Array:
    return 0.000457 * np.exp((-13.0 - V) / 50.0)


def beta_r(V: Array) -> Array:
    return 0.0065 / (np.exp((-15.0 - V) / 28.0) + 1.0)


# T-type calcium (Huguenard & McCormick 1992; Destexhe et al. 1996): instantaneous activation, slow inactivation.
def s_inf(V: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-(V + V_X + 57.0) / 6.2))


def u_inf(V: Array) -> Array:
    return 1.0 / (1.0 + np.exp((V + V_X + 81.0) / 4.0))


def tau_u(V: Array) -> Array:
    ratio = (211.4 + np.exp((V + V_X + 113.2) / 5.0)) / (1.0 + np.exp((V + V_X + 84.0) / 3.2))
    return (30.8 + ratio) / T_Q10


m, h, n = Gate.from_rates("m", alpha_m, beta_m), Gate.from_rates("h", alpha_h, beta_h), Gate.from_rates("n", alpha_n, beta_n)
p = Gate("p", p_inf, tau_p)
q, r = Gate.from_rates("q", alpha_q, beta_q), Gate.from_rates("r", alpha_r, beta_r)
s, u = InstantaneousGate("s", s_inf), Gate("u", u_inf, tau_u)

CONDUCTANCES = ("Na", "Kd", "M", "L", "T", "leak")


@dataclass(frozen=True)
class Variant:
    """One of the paper's cells: its conductances (mS/cm², in :data:`CONDUCTANCES` order), its leak reversal
    (mV) and the current step (µA/cm²) under which the paper shows it firing."""

    name: str
    description: str
    conductances: tuple[float, float, float, float, float, float]
    leak_reversal: float
    step_current: float

    @property
    def effective_leak_reversal(self) -> float:
        """``E_leak + I_step / gleak``: the leak reversal that makes the step current part of the leak."""
        return self.leak_reversal + self.step_current / self.conductances[-1]


def _step(nA: float, soma_um: float) -> float:
    """A current step (nA) on a cylindrical soma of equal length and diameter (µm), as a density (µA/cm²)."""
    area_cm2 = np.pi * soma_um * soma_um * 1e-8
    return nA * 1e-3 / area_cm2


VARIANTS: dict[str, Variant] = {
    "rs": Variant("rs", "regular spiking (adapting) pyramidal cell", (50.0, 5.0, 0.07, 0.0, 0.0, 0.1), -70.0, _step(0.75, 96.0)),
    "fs": Variant("fs", "fast-spiking interneuron", (50.0, 10.0, 0.0, 0.0, 0.0, 0.15), -70.0, _step(0.5, 67.0)),
    "ib": Variant("ib", "intrinsically bursting pyramidal cell", (50.0, 5.0, 0.03, 0.17, 0.0, 0.01), -85.0, _step(0.15, 96.0)),
    "lts": Variant("lts", "low-threshold-spiking cell", (50.0, 5.0, 0.03, 0.0, 0.4, 0.01), -85.0, _step(0.15, 96.0)),
}

REFERENCE = "Pospischil et al. 2008, Biol Cybern 99:427 (and its published models, ModelDB 123623)"

# DIC conventions: the spike's upstroke (m) and repolarisation (n) are the fast and slow references, the M
# current's activation (τ_p ≈ 270 ms near threshold) the ultraslow one. -50 mV is the DIC threshold of the RS and
# FS cells (-49.9, -50.0 mV; IB and LTS: -53.0, -52.8 mV).
REFERENCE_THRESHOLD = -50.0
# 1 s of transient holds ~4 τ_p and ~2.5 τ_r (the L current's inactivation, ~420 ms); 3 s recorded hold several
# bursts of the repetitively bursting cells (period ~400-500 ms). dt = 0.025 ms without substeps: the cheapest
# setting tried that meets 1 % against the reference integrator on every cell of the accuracy test (worst: 0.37 %,
# an intra-burst ISI; dt = 0.05 misses intra-burst ISIs by up to 1.7 %, and substeps of spikes made it worse).
PROTOCOL = Protocol(duration=4000.0, transient=1000.0, dt=0.025)
# Box of the conductance-space prior (no box is published): about a decade either side of the paper's cells.
DEFAULT_RANGES = {
    "Na": (5.0, 200.0),
    "Kd": (0.5, 50.0),
    "M": (0.001, 1.0),
    "L": (0.001, 1.0),
    "T": (0.001, 2.0),
    "leak": (0.005, 0.2),
}
# g_s of the seed cells: the paper's IB cell has (g_f, g_s, g_u) = (-14.7, 0.62, 2.24) at -50 mV. Near threshold
# only Kd (n is the slow reference) and the T current's inactivation add to g_s, and only the L current's
# activation subtracts from it, so g_s spans a few units: the DIC box is small (benchmarks/dic_map.py maps it).
SEED_G_S = 0.6
DIC_BOX = ((-1.0, 3.0), (0.0, 8.0))


def compensating_pair(g_s: ArrayLike, g_u: ArrayLike) -> NDArray[np.intp]:
    """Index of the pair that moves a seed cell to ``(g_s, g_u)``: (L, M) below the seed's g_s (the L current is
    the only conductance that lowers g_s at threshold), (Kd, M) from it up."""
    g_s, g_u = np.broadcast_arrays(np.asarray(g_s, dtype=float), np.asarray(g_u, dtype=float))
    return np.where(g_s < SEED_G_S, 0, 1).astype(np.intp)


SEED_POPULATION = SeedPopulation(
    leak_range=(0.007, 0.013),  # around the IB/LTS leak, 0.01 mS/cm²
    reference_leak=0.01,
    # the IB cell's L (0.17) bursts repetitively from 0.22 mS/cm²; LTS's T is 0.4
    free_ranges={"L": (0.0, 0.35), "T": (0.0, 0.4)},
    seed_solve=("Na", "Kd", "M"),  # the spike (g_f), its repolarisation (g_s), adaptation (g_u)
    seed_target=(-15.0, SEED_G_S, 2.0),
    compensation=CompensationRule(pairs=(("L", "M"), ("Kd", "M")), choose=compensating_pair),
)


def pospischil_model(variant: str | None = None) -> ConductanceModel:
    """The Pospischil et al. (2008) model with the drive of one of the paper's cells.

    Parameters
    ----------
    variant
        ``"rs"``, ``"fs"``, ``"ib"`` or ``"lts"``: the model named ``"pospischil-<variant>"``, whose leak reversal
        carries that cell's current step; ``None``: the model named ``"pospischil"`` (the IB/LTS drive), the one
        whose DIC map and populations dic_sbi reports.

    Returns
    -------
    ConductanceModel
        Channels ``Na, Kd, M, L, T, leak``; the paper's cell is ``VARIANTS[variant].conductances``.
    """
    if variant is not None and variant not in VARIANTS:
        raise InvalidInputError(f"pospischil_model: unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    v = VARIANTS[variant or "ib"]
    name = "pospischil" if variant is None else f"pospischil-{variant}"
    what = "all five currents, IB/LTS drive" if variant is None else v.description
    return ConductanceModel(
        name=name,
        channels=(
            Channel("Na", E_NA, ((m, 3), (h, 1))),
            Channel("Kd", E_K, ((n, 4),)),
            Channel("M", E_K, ((p, 1),)),
            Channel("L", E_CA, ((q, 2), (r, 1))),
            Channel("T", E_CA, ((s, 2), (u, 1))),
            Channel("leak", v.effective_leak_reversal),
        ),
        initial_voltage=-70.0,
        dics=DICConventions(fast="m", slow="n", ultraslow="p", reference_threshold=REFERENCE_THRESHOLD),
        protocol=PROTOCOL,
        default_ranges=DEFAULT_RANGES,
        dic_box=DIC_BOX,
        seed_population=SEED_POPULATION,
        reference=REFERENCE,
        description=f"Pospischil 2008 cortical neuron ({what})",
    )


POSPISCHIL = pospischil_model()
POSPISCHIL_VARIANTS = {k: pospischil_model(k) for k in VARIANTS}
