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
from . import data
from .errors import (CancelledError, DicSbiError, InvalidInputError, RecordingError, UnknownModelError,
                     UnreachableTargetError)
from .io import Recording, read_recording
from .models import ConductanceModel, available_models, get_model, load_model_file, register_model

__version__ = "0.1.0"

# The sbi boundary (torch, sbi) and the campaigns (zarr, dask) are imported on first use, so that
# `import dic_sbi` and the numerical core stay light; `dic_sbi.DICPrior` etc. work as if imported here.
_SBI_NAMES = (
    "ConductancePrior",
    "DICPrior",
    "ConductanceSimulator",
    "DICSimulator",
    "DICPosterior",
    "summary_statistics",
    "ISIEmbedding",
    "SequenceEmbedding",
    "train_dic_posterior",
    "train_conductance_posterior",
    "simulation_based_calibration",
    "tarp_calibration",
    "posterior_predictive_check",
    "TrainingRun",
    "SBCResult",
    "TARPResult",
    "PredictiveCheck",
    "Standardize",
    "build_density_estimator",
    "SUMMARY_NAMES",
)


# Heavier layers (torch/sbi; zarr/dask) load on first use of one of their names.
_CAMPAIGN_NAMES = ("CampaignSpec", "run_campaign", "CampaignStore", "CorruptStoreError", "StoreDataset",
                   "train_npe_from_store")  # fmt: skip
_COMPARE_NAMES = ("compare", "ComparisonResult")
_INFERENCE_NAMES = ("infer", "InferenceResult")
_LAZY = {
    **dict.fromkeys(_SBI_NAMES, "sbi"),
    **dict.fromkeys(_CAMPAIGN_NAMES, "campaign"),
    **dict.fromkeys(_COMPARE_NAMES, "comparison"),
    **dict.fromkeys(_INFERENCE_NAMES, "inference"),
}


# Subpackages that load on first attribute access too (``dic_sbi.sbi.pretrained.load_pretrained`` after a plain
# ``import dic_sbi``).
_LAZY_MODULES = ("sbi", "campaign", "comparison", "inference", "plots", "train")


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'dic_sbi' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_MODULES))


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
    "load_model_file",
    "ConductanceModel",
    "DicSbiError",
    "InvalidInputError",
    "UnknownModelError",
    "UnreachableTargetError",
    "RecordingError",
    "CancelledError",
    "read_recording",
    "Recording",
    *_SBI_NAMES,
    *_CAMPAIGN_NAMES,
    *_COMPARE_NAMES,
    *_INFERENCE_NAMES,
]
