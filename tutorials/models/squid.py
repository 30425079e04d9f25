"""A model of one's own for dic_sbi: Hodgkin & Huxley's (1952) squid axon (V shifted to rest near -65 mV) with an
M-type potassium current and an H current, and a leak that reverses at -45 mV so that cells fire on their own.

Load it anywhere a model is named: ``dic_sbi.get_model("tutorials/models/squid.py:HH")`` or
``dic-sbi population --model tutorials/models/squid.py:HH ...``.
"""

import numpy as np
from scipy.special import exprel

from dic_sbi.models import Channel, ConductanceModel, DICConventions, Gate, Protocol, SeedPopulation


# Hodgkin-Huxley opening and closing rates (1/ms); x / (1 - exp(-x)) is written 1 / exprel(-x), finite at x = 0.
def a_m(V): return 1.0 / exprel(-(V + 40.0) / 10.0)
def b_m(V): return 4.0 * np.exp(-(V + 65.0) / 18.0)
def a_h(V): return 0.07 * np.exp(-(V + 65.0) / 20.0)
def b_h(V): return 1.0 / (1.0 + np.exp(-(V + 35.0) / 10.0))
def a_n(V): return 0.1 / exprel(-(V + 55.0) / 10.0)
def b_n(V): return 0.125 * np.exp(-(V + 65.0) / 80.0)


# Steady states and time constants (ms) as plain vectorised functions.
def p_inf(V): return 1.0 / (1.0 + np.exp(-(V + 35.0) / 10.0))
def tau_p(V): return 400.0 / (3.3 * np.exp((V + 35.0) / 20.0) + np.exp(-(V + 35.0) / 20.0))
def q_inf(V): return 1.0 / (1.0 + np.exp((V + 80.0) / 6.0))
def tau_q(V): return 100.0 + 400.0 / (np.exp((V + 70.0) / 15.0) + np.exp(-(V + 70.0) / 15.0))


m, h, n = Gate.from_rates("m", a_m, b_m), Gate.from_rates("h", a_h, b_h), Gate.from_rates("n", a_n, b_n)
p, q = Gate("p", p_inf, tau_p), Gate("q", q_inf, tau_q)

HH = ConductanceModel(
    name="squid",
    channels=(
        Channel("Na", 50.0, ((m, 3), (h, 1))),
        Channel("K", -77.0, ((n, 4),)),
        Channel("M", -77.0, ((p, 1),)),
        Channel("H", -20.0, ((q, 1),)),
        Channel("leak", -45.0),
    ),
    initial_voltage=-65.0,
    dics=DICConventions(reference_threshold=-55.0),  # fast, slow, ultraslow gates: chosen from the time constants
    protocol=Protocol(duration=1500.0, transient=500.0, dt=0.025),
    default_ranges={"Na": (50.0, 200.0), "K": (1.0, 40.0), "M": (0.01, 6.0), "H": (0.001, 1.0), "leak": (0.15, 0.45)},
    dic_box=((6.0, 12.0), (0.5, 3.0)),
    seed_population=SeedPopulation(  # compensation: none given, so dic_sbi picks the pair (K, M)
        leak_range=(0.2, 0.4), reference_leak=0.3, free_ranges={"H": (0.0, 0.5)},
        seed_solve=("Na", "K", "M"), seed_target=(-10.0, 8.0, 2.0),
    ),
    reference="Hodgkin & Huxley 1952 (J Physiol 117:500) sodium and potassium; M and H currents added",
)
