"""Example data shipped with the package."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np

__all__ = ["example_cells"]


def example_cells() -> dict[str, np.ndarray]:
    """The published example cells: row 1 of Fyon et al. (2024)'s STG and DA sets (model order, mS/cm²)."""
    raw = json.loads(resources.files(__package__).joinpath("example_cells.json").read_text())
    return {name: np.asarray(cell["conductances"], dtype=float) for name, cell in raw["cells"].items()}
