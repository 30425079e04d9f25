"""Does a simulated cell fire like the recording? One definition for the comparison, ``infer`` and matching.

A cell is *faithful* to an observed train when it fires in the same class (silent, spiking, bursting) and, for a
firing train, its mean rate is within 10 % of the observed one; for a bursting train also its burst period within
10 % and its spikes per burst within ±1 (:data:`FIDELITY_TOLERANCES`). A bursting window with a single burst has
no burst period: a cell then matches it on the period only if it has none either (one burst in the window too).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from numpy.typing import NDArray

__all__ = ["FIDELITY_TOLERANCES", "fires_like", "fidelity_checks"]

#: Tolerances of a faithful cell: relative (mean rate, burst period), absolute (spikes per burst).
FIDELITY_TOLERANCES: dict[str, float] = {"mean_rate": 0.10, "burst_period": 0.10, "spikes_per_burst": 1.0}


def fires_like(
    features: Mapping[str, Any], observed: Mapping[str, Any], tolerances: Mapping[str, float] | None = None
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Which simulated cells fire in the observed class, and which are faithful to it.

    Parameters
    ----------
    features
        Features of the simulated cells (arrays: ``firing_class``, ``mean_rate``, ``burst_period``,
        ``spikes_per_burst``), e.g. :func:`~dic_sbi.spiketrains.features_from_csr`.
    observed
        The observed train's features (scalars, same keys), e.g. ``spike_train_features(train).as_dict()``.
    tolerances
        Overrides of :data:`FIDELITY_TOLERANCES` (a key missing from it, or ``None``, keeps the default).

    Returns
    -------
    same_class, faithful
        Boolean arrays, one entry per simulated cell.
    """
    same, ok, _ = fidelity_checks(features, observed, tolerances)
    return same, ok


def fidelity_checks(
    features: Mapping[str, Any], observed: Mapping[str, Any], tolerances: Mapping[str, float] | None = None
) -> tuple[NDArray[np.bool_], NDArray[np.bool_], dict[str, NDArray[np.bool_]]]:
    """:func:`fires_like` with its parts: ``same_class``, ``faithful`` (in the class and within every tolerance),
    and each tolerance the observed class is held to (``mean_rate`` for a firing train; ``burst_period`` and
    ``spikes_per_burst`` for a bursting one) on its own, so a report can say which one the cells miss."""
    tol = {**FIDELITY_TOLERANCES, **{k: v for k, v in (tolerances or {}).items() if v is not None}}
    klass = str(observed["firing_class"])
    same = np.asarray(features["firing_class"]).astype(str) == klass
    checks: dict[str, NDArray[np.bool_]] = {}
    with np.errstate(invalid="ignore"):
        if klass != "silent":
            checks["mean_rate"] = _close(features["mean_rate"], observed["mean_rate"], tol["mean_rate"], relative=True)
        if klass == "bursting":
            checks["burst_period"] = _close(features["burst_period"], observed["burst_period"], tol["burst_period"], relative=True)
            checks["spikes_per_burst"] = _close(features["spikes_per_burst"], observed["spikes_per_burst"],
                                                tol["spikes_per_burst"], relative=False)  # fmt: skip
    ok = same.copy()
    for passed in checks.values():
        ok &= passed
    return same, ok, checks


def _close(values: Any, target: Any, tol: float, *, relative: bool) -> NDArray[np.bool_]:
    """``values`` within ``tol`` of ``target``; an undefined target (NaN: a bursting window holding one burst
    has no period) is matched by undefined values only, so a train that cannot show a period is not scored 0."""
    v = np.asarray(values, dtype=float)
    t = float(target)
    if not np.isfinite(t):
        return ~np.isfinite(v)
    return np.abs(v - t) <= tol * (abs(t) if relative else 1.0)
