"""Neuron models as data, and the registry that names them.

>>> from dic_sbi import get_model
>>> get_model("stg").conductance_names
('Na', 'Kd', 'CaT', 'CaS', 'KCa', 'A', 'H', 'leak')

A model of one's own lives in one's own file and is named ``"path/to/file.py:NAME"`` wherever a model is named
(``get_model``, every API function, ``dic-sbi --model``): see :func:`load_model_file`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
import sys
from pathlib import Path

from ..errors import InvalidInputError, UnknownModelError
from .base import (
    KINETICS_RANGE,
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
    choose_reference_timescales,
    same_kinetics,
    widen_seed_law,
)
from .kinetics import RateSteadyState, RateTimeConstant, voltage_derivative
from .da import DA
from .pospischil import POSPISCHIL, POSPISCHIL_VARIANTS
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
    "widen_seed_law",
    "same_kinetics",
    "STG",
    "DA",
    "POSPISCHIL",
    "get_model",
    "register_model",
    "available_models",
    "load_model_file",
    "model_reference",
    "is_model_file_reference",
    "choose_reference_timescales",
    "RateSteadyState",
    "RateTimeConstant",
    "voltage_derivative",
    "KINETICS_RANGE",
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


def get_model(model: str | os.PathLike | ConductanceModel) -> ConductanceModel:
    """Return a registered model by name (case-insensitive), a model from a file (``"path/file.py:NAME"``, see
    :func:`load_model_file`), or ``model`` itself if it already is one.

    Raises
    ------
    UnknownModelError
        If no model has that name.
    """
    if isinstance(model, ConductanceModel):
        return model
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str):
        raise InvalidInputError(f"model: expected a model name or a ConductanceModel, got {type(model).__name__}")
    if is_model_file_reference(model):
        path, _, name = model.rpartition(":") if not model.endswith(".py") else (model, ":", "")
        return load_model_file(path, name or None)
    try:
        return _REGISTRY[model.lower()]
    except KeyError:
        wide = _widened(model.lower())
        if wide is not None:
            return wide
        raise UnknownModelError(
            f"model: unknown model {model!r}; available models are {', '.join(available_models())} (and "
            "'<name>-wide<factor>' for one with a widened seed law), or a model file as 'path/to/file.py:NAME'"
        ) from None


#: Seed-law variants handed out by name (``"stg-wide4"``), one object per name: models key caches by identity.
_WIDENED: dict[str, ConductanceModel] = {}
_NUM = r"[0-9]+(?:\.[0-9]+)?"
_WIDE_NAME = re.compile(rf"^(?P<base>.+?)-wide(?P<factor>{_NUM})(?:-tail(?P<tail>{_NUM})w(?P<weight>{_NUM}(?:e-[0-9]+)?))?$")


def _widened(name: str) -> ConductanceModel | None:
    """``"<registered name>-wide<factor>"`` (optionally ``"-tail<tail_factor>w<tail_weight>"``): the registered
    model with its seed law widened (:func:`widen_seed_law`)."""
    match = _WIDE_NAME.match(name)
    if match is None or match["base"] not in _REGISTRY:
        return None
    factor = float(match["factor"])
    tail = dict(tail_factor=float(match["tail"]), tail_weight=float(match["weight"])) if match["tail"] else {}
    if factor <= 1 and not tail:  # "stg-wide1" would be stg itself under another name
        return None
    key = f"{match['base']}-wide{factor:g}" + (f"-tail{tail['tail_factor']:g}w{tail['tail_weight']:g}" if tail else "")
    if key not in _WIDENED:
        try:
            _WIDENED[key] = widen_seed_law(_REGISTRY[match["base"]], factor, **tail)
        except InvalidInputError:  # a factor, tail factor or weight widen_seed_law refuses
            return None
    if name != key:  # "stg-wide4.0" and "stg-wide4" are one model
        _WIDENED[name] = _WIDENED[key]
    return _WIDENED[name]


def is_model_file_reference(text: str) -> bool:
    """Whether ``text`` names a model in a file: ``"file.py"`` or ``"file.py:NAME"``."""
    return isinstance(text, str) and (text.endswith(".py") or ".py:" in text)


#: Model files run so far, by (resolved path, modification time): a model named again is the same object, so its
#: compiled tables and kernels are built once per process; an edited file is run again.
_FILE_MODULES: dict[tuple[str, int], dict] = {}
#: The model objects handed out, by (resolved path, name, modification time).
_FILE_MODELS: dict[tuple[str, str, int], ConductanceModel] = {}


def load_model_file(path: str | os.PathLike, name: str | None = None) -> ConductanceModel:
    """Load the :class:`ConductanceModel` named ``name`` from the Python file ``path``.

    The file is run as a module of its own (it may import numpy, scipy, dic_sbi, ... and define helper functions);
    ``name`` is the variable holding the model, and may be omitted if the file defines exactly one model.
    ``get_model("path/file.py:NAME")`` and ``dic-sbi ... --model path/file.py:NAME`` call this. The returned model
    remembers where it came from (``model.source``), so that worker processes, stored posteriors and campaign
    stores load it again from the file.

    Raises
    ------
    UnknownModelError
        If the file does not exist or does not define that model.
    InvalidInputError
        If the file fails to run or its model is inconsistent (the message says what is wrong).
    """
    p = Path(os.fspath(path)).expanduser()
    if p.suffix != ".py":
        raise InvalidInputError(f"model: a model file must be a .py file, got {str(path)!r}")
    if not p.is_file():
        raise UnknownModelError(f"model: no model file {str(path)!r} (expected path/to/file.py:NAME)")
    p = p.resolve()
    if name is not None and (not isinstance(name, str) or not name.isidentifier()):
        raise InvalidInputError(f"model: {name!r} is not a Python variable name (expected path/to/file.py:NAME)")
    mtime = p.stat().st_mtime_ns
    namespace = _FILE_MODULES.get((str(p), mtime))
    if namespace is None:
        namespace = _FILE_MODULES[(str(p), mtime)] = _run_model_file(p)
    models = {k: v for k, v in namespace.items() if isinstance(v, ConductanceModel) and not k.startswith("_")}
    if name is None:
        own = {k: v for k, v in models.items() if not _is_registered(v)}
        if len(own) != 1:
            raise UnknownModelError(
                f"model: {p.name} defines {len(own)} models ({', '.join(own) or 'none'}); name one as {p.name}:NAME"
            )
        name = next(iter(own))
    key = (str(p), name, mtime)
    if key in _FILE_MODELS:
        return _FILE_MODELS[key]
    if name not in namespace:
        raise UnknownModelError(f"model: {p.name} has no {name!r}; its models are {', '.join(models) or 'none'}")
    model = namespace[name]
    if not isinstance(model, ConductanceModel):
        raise InvalidInputError(f"model: {p.name}:{name} is not a ConductanceModel but a {type(model).__name__}")
    if _REGISTRY.get(model.name.lower()) is model:  # a registered model imported by the file: itself
        return model
    source = f"{p}:{name}"
    if model.source != source:
        model = dataclasses.replace(model, source=source) if model.source else model
        object.__setattr__(model, "source", source)
    _FILE_MODELS[key] = model
    return model


def _run_model_file(p: Path) -> dict:
    """Run the model file ``p`` as a module of its own; its namespace."""
    module_name = "dic_sbi_user_model_" + hashlib.sha1(str(p).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(module_name, p)
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module  # dataclasses and pickling look module-level objects up by module name
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as err:  # noqa: BLE001 -- user code: one clear line
        if previous is not None:
            sys.modules[module_name] = previous
        else:
            sys.modules.pop(module_name, None)
        if isinstance(err, InvalidInputError):
            raise InvalidInputError(f"model file {p.name}: {err}") from None
        raise InvalidInputError(f"model file {p.name}: running it failed: {type(err).__name__}: {err}") from None
    return vars(module)


def model_reference(model: str | ConductanceModel) -> str:
    """A string that :func:`get_model` turns back into ``model``: its registry name, or ``"/abs/file.py:NAME"``
    for a model loaded from a file (what stored posteriors and campaign stores record).

    Raises
    ------
    InvalidInputError
        For a model that is neither registered nor loaded from a file (it could not be found again).
    """
    m = get_model(model)
    try:
        if get_model(m.name) is m:
            return m.name
    except (UnknownModelError, InvalidInputError):
        pass
    if m.source:
        return m.source
    raise InvalidInputError(
        f"model: {m.name!r} is a Python object that cannot be found again by name; put it in a file and use "
        "'path/file.py:NAME' (or register_model(model))"
    )


def _is_registered(model: ConductanceModel) -> bool:
    """Whether ``model`` is a registered object (a model file that imports a built-in model does not define it)."""
    return _REGISTRY.get(model.name.lower()) is model


register_model(STG)
register_model(DA)
register_model(POSPISCHIL)
for _variant in POSPISCHIL_VARIANTS.values():  # pospischil-rs, -fs, -ib, -lts: the paper's cells and their drive
    register_model(_variant)
