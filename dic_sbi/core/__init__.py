"""Numerical core (numpy + numba, float64, no torch): simulator, reference integrator, DICs, populations."""

from .simulator import SimulationResult, simulate

__all__ = ["simulate", "SimulationResult"]
