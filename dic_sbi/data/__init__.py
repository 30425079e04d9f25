"""Example data shipped with the package."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["example_cells", "example_recording", "example_noise_std", "shipped_posteriors"]


def pretrained_dir() -> Path:
    """The folder of the shipped posteriors (``NAME.pt``, ``NAME.json``, ``NAME.free.pt``)."""
    return Path(str(resources.files("dic_sbi") / "data" / "pretrained"))


def shipped_posteriors() -> tuple[str, ...]:
    """Names of the posteriors shipped with the package (``NAME.json`` beside ``NAME.pt``), without importing
    torch (e.g. for a page that lists them)."""
    d = pretrained_dir()
    return tuple(sorted(p.stem for p in d.glob("*.json") if (d / f"{p.stem}.pt").is_file())) if d.is_dir() else ()


def example_cells() -> dict[str, np.ndarray]:
    """The published example cells: row 1 of Fyon et al. (2024)'s STG and DA sets (model order, mS/cm²)."""
    raw = json.loads(resources.files(__package__).joinpath("example_cells.json").read_text())
    return {name: np.asarray(cell["conductances"], dtype=float) for name, cell in raw["cells"].items()}


def example_recording(model: str) -> str:
    """Path of the example recording shipped for ``model`` (NIX: one noisy membrane-potential trace of the
    published example cell, simulated; see :mod:`dic_sbi.data._make_examples`)."""
    from ..errors import InvalidInputError

    path = resources.files(__package__).joinpath(f"example_{model}.nix")
    if not path.is_file():
        raise InvalidInputError(f"model: no example recording for {model!r}; available: stg, da")
    return str(path)


def example_noise_std(model: str) -> float:
    """σ (µA/cm²) of the noisy current the example recording of ``model`` was simulated with (known, since it is a
    simulation): what ``infer`` is told by ``dic-sbi demo``."""
    from ..errors import InvalidInputError
    from ._make_examples import SETTINGS

    if model not in SETTINGS:
        raise InvalidInputError(f"model: no example recording for {model!r}; available: {', '.join(SETTINGS)}")
    return float(SETTINGS[model][1])
