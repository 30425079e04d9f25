"""Numerical core (numpy + numba, float64, no torch): simulator, reference integrator, DICs, populations."""

from .dics import dics, sensitivity_matrix, steady_state_current, threshold_voltage
from .populations import PopulationInfo, degenerate_population, population_log_density
from .reachability import ReachabilityMap, reachability, reachability_map
from .simulator import SimulationResult, simulate

__all__ = [
    "simulate",
    "SimulationResult",
    "dics",
    "sensitivity_matrix",
    "steady_state_current",
    "threshold_voltage",
    "degenerate_population",
    "population_log_density",
    "reachability",
    "reachability_map",
    "ReachabilityMap",
    "PopulationInfo",
]
