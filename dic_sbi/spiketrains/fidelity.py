"""Does a simulated cell fire like the recording? One definition for the comparison, ``infer`` and matching.

A cell is *faithful* to an observed train when it fires in the same class (silent, spiking, bursting) and, for a
firing train, its mean rate is within 10 % of the observed one; for a bursting train also its burst period within
10 % and its spikes per burst within ±1 (:data:`FIDELITY_TOLERANCES`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from numpy.typing import NDArray

__all__ = ["FIDELITY_TOLERANCES", "fires_like"]

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
    tol = {**FIDELITY_TOLERANCES, **{k: v for k, v in (tolerances or {}).items() if v is not None}}
    klass = str(observed["firing_class"])
    same = np.asarray(features["firing_class"]).astype(str) == klass
    ok = same.copy()
    with np.errstate(invalid="ignore"):
        if klass != "silent":
            r = float(observed["mean_rate"])
            ok &= np.abs(np.asarray(features["mean_rate"], dtype=float) - r) <= tol["mean_rate"] * abs(r)
        if klass == "bursting":
            p = float(observed["burst_period"])
            ok &= np.abs(np.asarray(features["burst_period"], dtype=float) - p) <= tol["burst_period"] * abs(p)
            spb = np.asarray(features["spikes_per_burst"], dtype=float)
            ok &= np.abs(spb - float(observed["spikes_per_burst"])) <= tol["spikes_per_burst"]
    return same, ok
