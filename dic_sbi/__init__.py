"""dic_sbi: degenerate populations of conductance-based neuron models from spike times, in sbi's terms."""

from .core import (
    SimulationResult,
    degenerate_population,
    dics,
    PopulationInfo,
    ReachabilityMap,
    population_log_density,
    reachability,
    reachability_map,
    sensitivity_matrix,
    simulate,
    steady_state_current,
    threshold_voltage,
)
from .errors import DicSbiError, InvalidInputError, UnknownModelError, UnreachableTargetError
from .models import ConductanceModel, available_models, get_model, register_model

__version__ = "0.1.0"

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
    "get_model",
    "register_model",
    "available_models",
    "ConductanceModel",
    "DicSbiError",
    "InvalidInputError",
    "UnknownModelError",
    "UnreachableTargetError",
]
