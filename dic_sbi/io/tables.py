"""Column headers of the CSV files dic_sbi writes: each carries its unit, as ``name [unit]``.

Readers match columns by name with :func:`column_name`, so files written before units were added read the same.
"""

from __future__ import annotations

__all__ = ["CONDUCTANCE_UNIT", "COLUMN_UNITS", "header", "column_name"]

CONDUCTANCE_UNIT = "mS/cm^2"

#: Units of the non-conductance columns (absent: a label, an index, a count or a ratio without unit).
COLUMN_UNITS = {
    "g_s": "per gleak",
    "g_u": "per gleak",
    "spiking_frequency": "Hz",
    "burst_period": "ms",
    "intra_burst_frequency": "Hz",
    "mean_rate": "Hz",
    "spike_times": "ms",
}


def header(name: str, unit: str | None = None) -> str:
    """``"name [unit]"`` (``unit`` default: :data:`COLUMN_UNITS`), or ``name`` for a quantity without unit."""
    unit = COLUMN_UNITS.get(name) if unit is None else unit
    return f"{name} [{unit}]" if unit else name


def column_name(text: str) -> str:
    """The name in a header: ``"Na [mS/cm^2]"`` → ``"Na"``; a header without unit is returned stripped."""
    return text.split(" [", 1)[0].strip()
