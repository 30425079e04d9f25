"""Midbrain dopaminergic (DA) neuron of Drion et al. (2011) / Qian et al. (2014), as used by Fyon et al. (2024)
and Brandoit et al. (2025).

Seven conductances ``Na, Kd, CaL, CaN, ERG, NMDA, leak``; a three-state ERG scheme and an instantaneous NMDA
magnesium block. Equations and constants: Drion et al. (2011) and Qian et al. (2014).

References
----------
Drion, Massotte, Sepulchre, Seutin (2011). How modeling can reconcile apparently discrepant experimental results:
the case of pacemaking in dopaminergic neurons. PLoS Comput Biol 7:e1002050.
Qian, Yu, Sun, Lee, Ratcliffe, Sepulchre, Hu (2014). J Neurophysiol.
"""

from __future__ import annotations

import numpy as np

from .base import Channel, CompensationRule, ConductanceModel, DICConventions, Gate, InstantaneousGate, Protocol, SeedPopulation
from .kinetics import ErgScheme, FunctionTau, MagnesiumBlock, Sigmoid, SigmoidTau

E_NA, E_K, E_CA, E_LEAK, E_NMDA = 60.0, -85.0, 60.0, -50.0, 0.0

# τ_m's bracket has a pole at V = -19.565 / 0.5052 ≈ -38.727 mV whose numerator vanishes 17 µV away: a
# removable singularity in the original rate, made a spike by rounding of the published constants, where τ_m
# dips to 0 and turns negative over a few µV. Across ±TAU_M_BRIDGE mV around the pole τ_m is replaced by the
# straight line between its values at the two ends (a guard against the removable singularity), so every consumer -
# tables, reference integrator, DICs - sees the same smooth, positive function.
V_POLE = -19.565 / 0.5052
TAU_M_BRIDGE = 1.0  # mV: the pole still moves τ_m by 0.3 % at the ends
TAU_M_FLOOR = 0.01  # ms


def _tau_m_raw(V: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        alpha = -(15.6504 + 0.4043 * V) / (np.exp(np.minimum(-19.565 - 0.5052 * V, 700.0)) - 1.0)
        bracket = alpha + 3.0212 * np.exp(np.minimum(-7.4630e-3 * V, 700.0))
        tau = 0.01 + 1.0 / bracket
    return np.maximum(np.where(np.isfinite(tau), tau, TAU_M_FLOOR), TAU_M_FLOOR)


_TAU_M_ENDS = _tau_m_raw(np.array([V_POLE - TAU_M_BRIDGE, V_POLE + TAU_M_BRIDGE]))


def _tau_m(V: np.ndarray) -> np.ndarray:
    V = np.asarray(V, dtype=float)
    w = (V - (V_POLE - TAU_M_BRIDGE)) / (2 * TAU_M_BRIDGE)
    bridge = _TAU_M_ENDS[0] + w * (_TAU_M_ENDS[1] - _TAU_M_ENDS[0])
    return np.where(np.abs(V - V_POLE) < TAU_M_BRIDGE, bridge, _tau_m_raw(V))


def _tau_h(V: np.ndarray) -> np.ndarray:
    return 0.4 + 1.0 / (
        5.0754e-4 * np.exp(np.minimum(-6.3213e-2 * V, 700.0)) + 9.7529 * np.exp(np.minimum(0.13442 * V, 700.0))
    )


m = Gate("m", Sigmoid(-9.7264, 30.0907), FunctionTau(_tau_m, "Qian 2014 fast sodium activation"))
h = Gate("h", Sigmoid(10.7665, 54.0289), FunctionTau(_tau_h, "Qian 2014 fast sodium inactivation"))
n = Gate("n", Sigmoid(-12.0, 25.0), SigmoidTau(20.0, -18.0, -10.0, 38.0))
m_L = Gate("mL", Sigmoid(-2.0, 50.0), SigmoidTau(30.0, -28.0, -3.0, 45.0))
m_N = Gate("mN", Sigmoid(-7.0, 30.0), SigmoidTau(30.0, -25.0, -6.0, 55.0))
erg = ErgScheme()
mg_block = InstantaneousGate("B", MagnesiumBlock(Mg=1.4))



def brandoit_da_pair(g_s: np.ndarray, g_u: np.ndarray) -> np.ndarray:
    """Brandoit 2025's compensating pair: ``g_s < 0`` → (ERG, CaL); otherwise (ERG, Kd)."""
    g_s, g_u = np.broadcast_arrays(np.asarray(g_s, dtype=float), np.asarray(g_u, dtype=float))
    return np.where(g_s < 0, 0, 1).astype(np.intp)


DA = ConductanceModel(
    name="da",
    channels=(
        Channel("Na", E_NA, ((m, 3), (h, 1))),
        Channel("Kd", E_K, ((n, 3),)),
        Channel("CaL", E_CA, ((m_L, 2),)),
        Channel("CaN", E_CA, ((m_N, 1),)),
        Channel("ERG", E_K, ((erg, 1),)),
        Channel("NMDA", E_NMDA, ((mg_block, 1),)),
        Channel("leak", E_LEAK),
    ),
    initial_voltage=-90.0,
    calcium=None,
    dics=DICConventions(fast="m", slow="n", ultraslow=100.0, reference_threshold=-55.5),
    # dt and substepping: the cheapest settings tested that meet 1 % against the reference on all 28 DA reference
    # cells (benchmarks/accuracy.py): 0.1-ms steps, 8 substeps above -65 mV whatever the slope (with substeps only
    # above -55 mV, two DIC-population bursters gained a spike per burst: the slow approach to threshold needs them)
    protocol=Protocol(duration=12000.0, transient=3000.0, dt=0.1, fine_above=-65.0, fine_substeps=8),
    # Box of the conductance-space prior: holds the 0.5–99.5 % range of every conductance of degenerate
    # populations over the published DIC box (as for STG; 98.6 % of the cells lie inside; no box is published).
    default_ranges={
        "Na": (5.0, 120.0),
        "Kd": (1.0, 100.0),
        "CaL": (0.001, 0.7),
        "CaN": (0.001, 0.3),
        "ERG": (0.001, 1.0),
        "NMDA": (0.05, 0.25),
        "leak": (0.007, 0.021),
    },
    dic_box=((-10.0, 15.0), (0.0, 20.0)),
    seed_population=SeedPopulation(
        leak_range=(0.0087, 0.017),
        reference_leak=0.013,
        free_ranges={"Kd": (6.0, 10.0), "CaL": (0.015, 0.075)},
        fixed={"NMDA": 0.12},
        seed_solve=("Na", "CaN", "ERG"),
        seed_target=(-3.9 * 0.5 - 11.0, 0.5, 5.0),
        compensation=CompensationRule(pairs=(("ERG", "CaL"), ("ERG", "Kd")), choose=brandoit_da_pair),
    ),
    reference="Drion et al. 2011, PLoS Comput Biol 7:e1002050; Qian et al. 2014; conventions of Fyon 2024 / Brandoit 2025",
    description="Midbrain dopaminergic neuron with ERG and NMDA currents",
)
