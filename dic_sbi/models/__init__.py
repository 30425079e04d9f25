"""Neuron models as data, and the registry that names them.

>>> from dic_sbi import get_model
>>> get_model("stg").conductance_names
('Na', 'Kd', 'CaT', 'CaS', 'KCa', 'A', 'H', 'leak')
"""

from __future__ import annotations

from ..errors import InvalidInputError, UnknownModelError
from .base import (
    CalciumDynamics,
    CalciumGate,
    Channel,
    CompensationRule,
    ConductanceModel,
    DICConventions,
    Gate,
    InstantaneousGate,
    Protocol,
    SeedPopulation,
)
from .da import DA
from .stg import STG

__all__ = [
    "ConductanceModel",
    "Channel",
    "CompensationRule",
    "Gate",
    "CalciumGate",
    "InstantaneousGate",
    "CalciumDynamics",
    "DICConventions",
    "Protocol",
    "SeedPopulation",
    "STG",
    "DA",
    "get_model",
    "register_model",
    "available_models",
]

_REGISTRY: dict[str, ConductanceModel] = {}


def register_model(model: ConductanceModel, *, overwrite: bool = False) -> None:
    """Add ``model`` to the registry under ``model.name`` (lower case)."""
    if not isinstance(model, ConductanceModel):
        raise InvalidInputError(f"register_model: expected a ConductanceModel, got {type(model).__name__}")
    key = model.name.lower()
    if key in _REGISTRY and not overwrite:
        raise InvalidInputError(f"register_model: a model named {key!r} is already registered (pass overwrite=True)")
    _REGISTRY[key] = model


def available_models() -> tuple[str, ...]:
    """Names of the registered models."""
    return tuple(sorted(_REGISTRY))


def get_model(model: str | ConductanceModel) -> ConductanceModel:
    """Return a registered model by name (case-insensitive), or ``model`` itself if it already is one.

    Raises
    ------
    UnknownModelError
        If no model has that name.
    """
    if isinstance(model, ConductanceModel):
        return model
    if not isinstance(model, str):
        raise InvalidInputError(f"model: expected a model name or a ConductanceModel, got {type(model).__name__}")
    try:
        return _REGISTRY[model.lower()]
    except KeyError:
        raise UnknownModelError(
            f"model: unknown model {model!r}; available models are {', '.join(available_models())}"
        ) from None


register_model(STG)
register_model(DA)
