"""The sbi boundary (layer 4): priors, simulators, features, embedding nets, the DIC posterior, training and
diagnostics. torch and sbi are imported only here."""

from .diagnostics import (
    DEFAULT_PPC_FEATURES,
    PredictiveCheck,
    SBCResult,
    TARPResult,
    posterior_predictive_check,
    simulation_based_calibration,
    tarp_calibration,
)
from .embedding import ISIEmbedding, SequenceEmbedding, Standardize
from .ensemble import MixtureEstimator, mixture_free_conductances, mixture_posterior
from .emulator import FiringEmulator, screen_population, select_faithful, train_emulator
from .features import SUMMARY_NAMES, summary_statistics
from .free_conductances import FreeConductanceEstimator, train_free_conductances
from .posterior import DICPosterior
from . import pretrained  # dic_sbi.sbi.pretrained.load_pretrained after a plain import
from .priors import ConductancePrior, DICPrior
from .simulators import ConductanceSimulator, DICSimulator
from .training import TrainingRun, build_density_estimator, train_conductance_posterior, train_dic_posterior

__all__ = [
    "ConductancePrior",
    "DICPrior",
    "ConductanceSimulator",
    "DICSimulator",
    "summary_statistics",
    "SUMMARY_NAMES",
    "ISIEmbedding",
    "SequenceEmbedding",
    "Standardize",
    "DICPosterior",
    "MixtureEstimator",
    "mixture_free_conductances",
    "mixture_posterior",
    "FreeConductanceEstimator",
    "train_free_conductances",
    "FiringEmulator",
    "train_emulator",
    "screen_population",
    "select_faithful",
    "TrainingRun",
    "train_dic_posterior",
    "train_conductance_posterior",
    "build_density_estimator",
    "simulation_based_calibration",
    "tarp_calibration",
    "posterior_predictive_check",
    "SBCResult",
    "TARPResult",
    "PredictiveCheck",
    "DEFAULT_PPC_FEATURES",
]
