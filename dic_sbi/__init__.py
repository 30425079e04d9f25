"""dic_sbi: degenerate populations of conductance-based neuron models from spike times, in sbi's terms."""

from .core import SimulationResult, simulate
from .errors import DicSbiError, InvalidInputError, UnknownModelError, UnreachableTargetError
from .models import ConductanceModel, available_models, get_model, register_model

__version__ = "0.1.0"

__all__ = [
    "simulate",
    "SimulationResult",
    "get_model",
    "register_model",
    "available_models",
    "ConductanceModel",
    "DicSbiError",
    "InvalidInputError",
    "UnknownModelError",
    "UnreachableTargetError",
]
