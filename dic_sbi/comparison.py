"""Head-to-head harness: DIC-space NPE against standard NPE over conductances (application layer).

For each simulation budget, three posteriors are trained with the same features, density estimator, training
settings and number of simulations (:func:`~dic_sbi.sbi.train_dic_posterior`,
:func:`~dic_sbi.sbi.train_conductance_posterior`):

- ``dic``: NPE over ``(g_s, g_u)`` under :class:`~dic_sbi.sbi.DICPrior`, pushed to conductances by compensation;
- ``conductance_linear`` / ``conductance_log``: NPE over ḡ under a uniform / log-uniform
  :class:`~dic_sbi.sbi.ConductancePrior` box (the standard approach);
- ``dic_learned``: the ``dic`` recipe plus a learned law of the free conductances ``q(z | t, x)``
  (:class:`~dic_sbi.sbi.FreeConductanceEstimator`) trained on the same simulations (they hold the cells), so each
  DIC sample's cell is drawn from the part of its population that fires like ``x``; calibrated in conductance
  space (:func:`~dic_sbi.sbi.evaluation.conductance_calibration`);
- ``dic_learned_wide`` (on request, ``methods=``): ``dic_learned`` trained on a DIC prior whose seed law is widened
  (:func:`~dic_sbi.models.widen_seed_law`, ``seed_law_widening`` times each free range's log-width, within the
  box): the seed law bounds how much of the degenerate set a DIC population can span, and this lifts the bound.

With ``screen=K`` (K > 1), every method also gets a ``<method>_screened`` row: a firing emulator
(:func:`~dic_sbi.sbi.emulator.train_emulator`) trained on the **same** simulations as the method (their cells and
firing features; no simulation more), and for each observation ``K ×`` the samples drawn, of which the ones the
emulator ranks likeliest to fire like the observation are kept (:func:`~dic_sbi.sbi.emulator.select_faithful`,
what ``infer --screen K`` does). Every method is screened alike, so the screen's gain is not mistaken for the
method's.

They are evaluated on the same held-out observations, drawn two ways so that neither method plays at home:

- ``dic_population``: DICs from ``DICPrior``, one compensated cell each (the DIC method's generative process);
- ``conductance_box``: ḡ from the linear ``ConductancePrior`` box (the baseline's generative process).

Both sets are conditioned on firing (silent cells are redrawn), so that every observation has a firing pattern
to reproduce. Per method × budget × observation set (means over observations, bootstrap 95 % intervals):

- ``fidelity``: fraction of posterior samples whose simulation has the observed firing class and features within
  tolerance (mean rate ± 10 %; for bursters also burst period ± 10 % and spikes per burst ± 1);
- ``same_class``: fraction with the observed firing class; ``validity``: fraction non-silent;
- degenerate coverage of the faithful samples in ``log ḡ`` (natural log): per-conductance std
  (``log_std_<name>``, their mean ``coverage_log_std``) and ``coverage_logdet``, the log-determinant of their
  covariance (defined when there are more faithful samples than conductances and the covariance is regular);
- ``dic_mae_g_s`` / ``dic_mae_g_u``: mean absolute error of the samples' DICs against the observation's;
- calibration in each method's own space (fresh prior-predictive pairs, independent of the observation set):
  SBC (smallest KS p-value over dimensions, largest C2ST accuracy of the ranks) and TARP (ATC, KS p-value);
- cost: simulation and training seconds of the budget, sampling seconds per observation.

Every method is also compared with a baseline on the same observations (:func:`paired_differences`: the mean of
the per-observation differences and its paired bootstrap interval, per class too), which is much tighter than
setting two methods' intervals side by side: the observations' own difficulty, shared by both, cancels.

Next to them, the same metrics for each observation's *true DIC population* (cells drawn at its exact DICs, no
training): what a perfect DIC estimate would give (on box observations many exact DICs are unreachable by the
compensation, so there it bounds nothing).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .core.checks import is_int
from .errors import DicSbiError, InvalidInputError
from .io.atomic import atomic_file
from .io.outputs import reserve_output, safe_output
from .models import ConductanceModel, get_model
from .spiketrains.fidelity import FIDELITY_TOLERANCES

__all__ = ["compare", "ComparisonResult", "paired_differences", "draw_observations", "checkpoint_calibration", "METHODS",
           "ALL_METHODS", "OBSERVATION_SETS", "TOLERANCES"]

#: Methods run by default.
METHODS: tuple[str, ...] = ("dic", "conductance_linear", "conductance_log", "dic_learned")
#: Every method, in seed order (a method's seeds depend on its index here, so adding one changes no other's).
ALL_METHODS: tuple[str, ...] = METHODS + ("dic_learned_wide", "dic_box", "dic_box_npe")
#: The DIC-space posteriors trained on the linear box's own cells (:mod:`dic_sbi.sbi.box_dic`).
_BOX_DIC: tuple[str, ...] = ("dic_box", "dic_box_npe")
_LEARNED = ("dic_learned", "dic_learned_wide")
OBSERVATION_SETS: tuple[str, ...] = ("dic_population", "conductance_box")
#: Tolerances of a faithful sample (:data:`~dic_sbi.spiketrains.FIDELITY_TOLERANCES`).
TOLERANCES: dict[str, float] = FIDELITY_TOLERANCES

#: Per-observation metrics, in table order.
_METRICS = ("fidelity", "same_class", "validity", "coverage_log_std", "coverage_logdet", "dic_mae_g_s", "dic_mae_g_u",
            "sampling_seconds")  # fmt: skip
_CALIBRATION = ("sbc_ks_pval_min", "sbc_c2st_ranks_max", "tarp_atc", "tarp_ks_pval", "calibration_n_dropped")
#: The calibration columns of a row without calibration (skipped, or a screen, which is no posterior).
_NO_CALIBRATION = dict.fromkeys(_CALIBRATION, math.nan)
_MAX_DRAW_ROUNDS = 50
_BATCH_RULE = "max(200, budget // 100)"


def _batch_size(budget: int) -> int:
    """Training batch size at a budget (:data:`_BATCH_RULE`): sbi's 200 up to 2·10⁴ simulations, then 1 % of them."""
    return max(200, budget // 100)

_LOG_FLOOR = 1e-12  # mS/cm²: a zero conductance has no log; floor it (coverage only)


@dataclass
class ComparisonResult:
    """Result of :func:`compare`.

    Attributes
    ----------
    rows : list of dict
        One row per method × budget × observation set: identifiers, then each metric with ``_lo`` / ``_hi``
        (bootstrap 95 % interval over observations; NaN where undefined), calibration and cost columns.
    per_observation : list of dict
        The per-observation metrics behind the rows.
    reference : list of dict
        Per observation set, the same metrics for the *true DIC population* of each observation (cells drawn at its
        exact DICs): what a perfect DIC estimate achieves.
    config : dict
        Everything needed to rerun it.
    out : Path or None
        Folder the outputs were written to.
    """

    rows: list[dict[str, Any]]
    per_observation: list[dict[str, Any]] = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict)
    out: Path | None = None
    reference: list[dict[str, Any]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []

    def row(self, method: str, budget: int, observation_set: str) -> dict[str, Any]:
        """The row of one method, budget and observation set."""
        for r in self.rows:
            if r["method"] == method and r["budget"] == budget and r["observation_set"] == observation_set:
                return r
        raise InvalidInputError(f"no row for method={method!r}, budget={budget}, observation_set={observation_set!r}")

    def markdown(self) -> str:
        """The main metrics as a Markdown table, ``mean [lo, hi]``."""
        return self._markdown(self.paired())

    def _markdown(self, all_paired: list[dict[str, Any]]) -> str:
        cols = ("fidelity", "validity", "coverage_log_std", "coverage_logdet", "dic_mae_g_s", "dic_mae_g_u")
        head = ["set", "budget", "method", *cols, "SBC min KS p", "TARP ATC", "sim s", "train s", "sample s/obs"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [r["observation_set"], str(r["budget"]), r["method"]]
            cells += [_ci_text(r[c], r[f"{c}_lo"], r[f"{c}_hi"]) for c in cols]
            cells += [_num(r["sbc_ks_pval_min"]), _num(r["tarp_atc"]), _num(r["simulation_seconds"]),
                      _num(r["training_seconds"]), _num(r["sampling_seconds"])]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        if self.reference:
            lines += ["", "Reference, the true DIC population of each observation (cells at its exact DICs):", "",
                      "| set | " + " | ".join(cols[:4]) + " |", "|" + "---|" * 5]  # fmt: skip
            for r in self.reference:
                lines.append(f"| {r['observation_set']} | " + " | ".join(_ci_text(r[c], r[f'{c}_lo'], r[f'{c}_hi'])
                                                                          for c in cols[:4]) + " |")  # fmt: skip
        paired = [r for r in all_paired if r["class"] == "all"]
        by_class: dict[tuple, dict[str, float]] = {}
        for q in all_paired:
            by_class.setdefault(_pair_key(q), {})[q["class"]] = q["difference"]
        if paired:
            lines += ["", f"Paired differences in fidelity against `{paired[0]['baseline']}` on the same observations "
                      "(method − baseline; screened methods also against the baseline given the same screen):", "",
                      "| set | budget | method | baseline | difference [95 %] | spiking | bursting |", "|" + "---|" * 7]
            for r in paired:
                by = by_class[_pair_key(r)]
                lines.append(f"| {r['observation_set']} | {r['budget']} | {r['method']} | {r['baseline']} | "
                             f"{_ci_text(r['difference'], r['difference_lo'], r['difference_hi'])} | "
                             f"{_num(by.get('spiking', math.nan))} | {_num(by.get('bursting', math.nan))} |")
        c = self.config
        note = (
            f"\nModel `{c.get('model')}`, {c.get('n_observations')} observations per set, "
            f"{c.get('num_posterior_samples')} posterior samples each; protocol {c.get('protocol')}. "
            "Means over observations with bootstrap 95 % intervals; coverage over faithful samples in ln ḡ.\n"
        )
        return "\n".join(lines) + "\n" + note

    def paired(self, baseline: str = "conductance_linear", *, metric: str = "fidelity",
               n_bootstrap: int | None = None) -> list[dict[str, Any]]:
        """Each method's paired difference in ``metric`` against ``baseline`` (:func:`paired_differences`; empty
        when the baseline was not run)."""
        n_boot = int(self.config.get("n_bootstrap", 2000)) if n_bootstrap is None else n_bootstrap
        return paired_differences(self.per_observation, baseline, metric=metric, n_bootstrap=n_boot,
                                  seed=int(self.config.get("seed", 0)))  # fmt: skip

    def write(self, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write ``comparison.csv``, ``comparison.md``, ``per_observation.csv``, ``reference.csv``, ``paired.csv``
        (when ``conductance_linear`` was run: :meth:`paired`), ``config.json`` and plots.

        Atomic: everything goes to a staging folder beside ``out``, moved to ``out`` at the end. ``out`` must be
        new, empty, or (with ``overwrite=True``) a previous dic_sbi output holding nothing else
        (:func:`dic_sbi.io.safe_output`).
        """
        out = Path(out)
        with safe_output(out, overwrite=overwrite, option="out", overwrite_option="overwrite=True",
                         command=f"compare {self.config.get('model')}") as staging:  # fmt: skip
            _write_csv(staging / "comparison.csv", self.rows)
            _write_csv(staging / "per_observation.csv", self.per_observation)
            if self.reference:
                _write_csv(staging / "reference.csv", self.reference)
            paired = self.paired()
            if paired:
                _write_csv(staging / "paired.csv", paired)
            (staging / "comparison.md").write_text(self._markdown(paired))
            (staging / "config.json").write_text(json.dumps(self.config, indent=1))
            _plot(self, staging)
        self.out = out
        return out


def compare(
    model: str | ConductanceModel,
    budgets: Sequence[int],
    n_observations: int,
    *,
    seed: int = 0,
    num_posterior_samples: int = 100,
    calibration_simulations: int | None = None,
    duration: float | None = None,
    transient: float | None = None,
    dt: float | None = None,
    noise_std: float = 0.0,
    training: dict | None = None,
    density_estimator: str = "nsf",
    hidden_features: int = 50,
    num_transforms: int = 5,
    torch_threads: int | None = 1,
    n_bootstrap: int = 2000,
    progress: bool = True,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    checkpoint: str | os.PathLike | None = None,
    methods: Sequence[str] = METHODS,
    seed_law_widening: float = 4.0,
    wide_dic_box: str | tuple[tuple[float, float], tuple[float, float]] | None = None,
    wide_dic_density: str | None = None,
    screen: int = 1,
    replicate: int = 0,
    seed_law_tail: tuple[float, float] | None = None,
    members: int = 1,
) -> ComparisonResult:
    """Compare DIC-space NPE with standard NPE over conductances (linear and log box priors).

    Parameters
    ----------
    model
        Model name or object.
    budgets
        Simulation budgets (each ≥ 2); every method gets each budget.
    n_observations
        Held-out observations per observation set.
    seed
        Seed of everything (observations, simulations, training, sampling, bootstrap).
    num_posterior_samples
        Posterior samples per observation (each simulated), and per calibration pair.
    calibration_simulations
        Prior-predictive pairs for SBC / TARP per method and budget (default ``max(n_observations, 50)``);
        0 skips calibration (its columns are NaN).
    duration, transient, dt, noise_std
        Protocol of every simulation (default: the model's).
    training, density_estimator, hidden_features, num_transforms, torch_threads
        Shared training settings (see :func:`~dic_sbi.sbi.train_dic_posterior`). Unless ``training`` sets
        ``training_batch_size``, a budget trains with batches of ``max(200, budget // 100)`` (200 up to 2·10⁴
        simulations): the same for every method at a budget, and 10⁵ simulations train in minutes, not hours, on
        a CPU.
    n_bootstrap
        Bootstrap resamples of the confidence intervals.
    progress
        Print one line per trained posterior (on by default: training takes minutes to hours, as in sbi).
    out
        Folder to write the outputs to (see :meth:`ComparisonResult.write`); ``None`` writes nothing. It is
        checked and reserved before any work.
    overwrite
        Allow replacing a previous dic_sbi output in ``out``.
    checkpoint
        Folder keeping each finished method × budget (rows and per-observation metrics, and the trained
        posterior as a pickle, ``<entry>.posterior.pt``). A rerun with the same settings takes them from there
        instead of simulating and training again, so a run of hours can be interrupted and resumed, with more
        budgets, other methods or a screen (which then simulates again for its emulator but does not retrain);
        other settings in the same folder are an error. Every method × budget is seeded from
        ``(seed, budget, method)`` alone, so the resumed result equals an uninterrupted one (for the learned laws,
        to the last bits of threaded float sums, as between any two runs).
    methods
        Methods to run, from :data:`ALL_METHODS` (default :data:`METHODS`). ``dic_box`` is the DIC-space
        posterior trained on the linear conductance box's own cells (:mod:`dic_sbi.sbi.box_dic`: the prior and
        simulations of ``conductance_linear``, re-expressed as DICs and the conductances off the compensating
        pair); it is calibrated in conductance space on box pairs. ``dic_box_npe`` is ``dic_box`` whose fiber law is
        standard NPE's density (trained on the same simulations) restricted to the fiber of the drawn DICs.
    seed_law_widening
        Factor on the log-width of the seed law's ranges for ``dic_learned_wide``
        (:func:`~dic_sbi.models.widen_seed_law`).
    seed_law_tail
        ``(tail_factor, tail_weight)``: ``dic_learned_wide``'s seed law also draws each free conductance, with
        probability ``tail_weight``, from its range widened by ``tail_factor`` (a mixture of two uniforms,
        :func:`~dic_sbi.models.widen_seed_law`); ``None`` (default): no tail.
    wide_dic_box
        DIC box of ``dic_learned_wide``'s prior: ``None`` the model's published box; ``"conductance"`` the box
        that holds the conductance box's cells (:func:`~dic_sbi.sbi.priors.dic_image_box`), so that the method
        can represent the ``conductance_box`` observations; or ``((g_s_min, g_s_max), (g_u_min, g_u_max))``.
        The observation sets do not change.
    wide_dic_density
        Density of ``dic_learned_wide``'s DIC prior on that box: ``None`` uniform; ``"conductance"`` one that
        follows the DICs of the conductance box's cells (:func:`~dic_sbi.sbi.priors.dic_image_weights`), so that
        the simulations fall where the box's cells are instead of spreading evenly over the box.
    screen
        With K > 1, every method also gets a ``<method>_screened`` row: K × the samples drawn, screened by a
        firing emulator trained on the method's own simulations (see the module's docstring). Default 1: none.
    replicate
        0 (default): the seeds above. ``r > 0`` draws every method's simulations, training, sampling and bootstrap
        from other seeds, on the **same** observations: runs of replicates 0, 1, 2, ... of one comparison measure how
        much a method's figures move from one training run to the next, which the bootstrap intervals (over
        observations) do not hold.
    members
        K > 1 trains K networks per method on the same simulations (training seeds apart; the first is the
        single network of ``members=1``) and uses their equal-weight mixture
        (:func:`~dic_sbi.sbi.ensemble.mixture_posterior`; the DIC-space methods' learned free-conductance laws
        too): an ensemble for every method alike, K times the training, no simulation more.
    """
    if torch_threads is not None:
        _positive_int(torch_threads, "torch_threads")
    from contextlib import nullcontext

    from .sbi._utils import torch_threads_set  # torch loads only when a comparison runs

    reserved = (reserve_output(out, overwrite=overwrite, option="out", overwrite_option="overwrite=True")
                if out is not None else nullcontext())  # fmt: skip
    with reserved, torch_threads_set(torch_threads):
        result = _compare(
            model, budgets, n_observations, seed=seed, num_posterior_samples=num_posterior_samples,
            calibration_simulations=calibration_simulations, duration=duration, transient=transient, dt=dt,
            noise_std=noise_std, training=training, density_estimator=density_estimator,
            hidden_features=hidden_features, num_transforms=num_transforms, torch_threads=torch_threads,
            n_bootstrap=n_bootstrap, progress=progress, checkpoint=checkpoint, methods=methods,
            seed_law_widening=seed_law_widening, wide_dic_box=wide_dic_box, wide_dic_density=wide_dic_density,
            screen=screen, replicate=replicate, seed_law_tail=seed_law_tail, members=members,
        )  # fmt: skip
        if out is not None:
            result.write(out, overwrite=overwrite)
    return result


def _compare(model, budgets, n_observations, *, seed, num_posterior_samples, calibration_simulations, duration,
             transient, dt, noise_std, training, density_estimator, hidden_features, num_transforms, torch_threads,
             n_bootstrap, progress, checkpoint, methods=METHODS, seed_law_widening=4.0,
             wide_dic_box=None, wide_dic_density=None, screen=1, replicate=0, seed_law_tail=None,
             members=1) -> ComparisonResult:  # fmt: skip
    import torch

    from .models import widen_seed_law
    from .sbi import ConductancePrior, ConductanceSimulator, DICPosterior, DICPrior, DICSimulator
    from .sbi import train_conductance_posterior, train_dic_posterior, train_free_conductances
    from .sbi.box_dic import train_box_dic_posterior
    from .sbi.ensemble import mixture_posterior
    from .sbi.priors import check_dic_box, dic_image_box, dic_image_weights

    model = get_model(model)
    budgets = _check_budgets(budgets)
    methods = _check_methods(methods)
    n_observations = _positive_int(n_observations, "n_observations")
    num_posterior_samples = _positive_int(num_posterior_samples, "num_posterior_samples", minimum=2)
    n_cal = max(n_observations, 50) if calibration_simulations is None else calibration_simulations
    n_cal = 0 if n_cal == 0 else _positive_int(n_cal, "calibration_simulations", minimum=2)
    n_bootstrap = _positive_int(n_bootstrap, "n_bootstrap")
    screen = _positive_int(screen, "screen")
    replicate = _positive_int(replicate, "replicate", minimum=0)
    members = _positive_int(members, "members")
    protocol, dic_sim, proto = _protocol(model, duration, transient, dt, noise_std)
    g_sim = ConductanceSimulator(model, **protocol)
    priors = {"dic": DICPrior(model), "conductance_linear": ConductancePrior(model, "linear"),
              "conductance_log": ConductancePrior(model, "log")}  # fmt: skip
    priors["dic_learned"] = priors["dic"]
    for name in _BOX_DIC:  # the box's own cells, re-expressed through their DICs
        priors[name] = priors["conductance_linear"]
    simulators = {"dic": dic_sim, "conductance_linear": g_sim, "conductance_log": g_sim, "dic_learned": dic_sim,
                  **dict.fromkeys(_BOX_DIC, g_sim)}  # fmt: skip
    models = dict.fromkeys(METHODS + _BOX_DIC, model)
    if wide_dic_box == "conductance":
        wide_dic_box = dic_image_box(model)
    elif wide_dic_box is not None:
        wide_dic_box = check_dic_box(wide_dic_box)
    if wide_dic_density not in (None, "conductance"):
        raise InvalidInputError(f"wide_dic_density: expected None or 'conductance', got {wide_dic_density!r}")
    weights = None
    if "dic_learned_wide" in methods:
        wide = widen_seed_law(model, seed_law_widening, **_tail_arguments(seed_law_tail))
        models["dic_learned_wide"] = wide
        if wide_dic_density == "conductance":  # the box's cells are the model's, not the widened law's
            weights = dic_image_weights(model, wide_dic_box if wide_dic_box is not None else model.dic_box)
        priors["dic_learned_wide"] = DICPrior(wide, box=wide_dic_box, weights=weights)
        simulators["dic_learned_wide"] = DICSimulator(wide, **protocol)
    observations = _observation_sets(model, n_observations, seed, priors["dic"], priors["conductance_linear"], dic_sim,
                                     proto)  # fmt: skip
    train_settings = dict(training=dict(training or {}), density_estimator=density_estimator,
                          hidden_features=hidden_features, num_transforms=num_transforms, torch_threads=torch_threads)  # fmt: skip

    config = {
        "model": model.name, "budgets": list(budgets), "n_observations": n_observations, "seed": seed,
        "num_posterior_samples": num_posterior_samples, "calibration_simulations": n_cal, "protocol": proto,
        "training": train_settings, "n_bootstrap": n_bootstrap, "tolerances": TOLERANCES,
        "training_batch_size": (train_settings["training"]["training_batch_size"] if "training_batch_size"
                                in train_settings["training"] else _BATCH_RULE),
        "methods": list(methods), "observation_sets": list(OBSERVATION_SETS),
    }  # fmt: skip
    if "dic_learned_wide" in methods:  # only then, so that checkpoints of the default methods stay valid
        config["seed_law_widening"] = float(seed_law_widening)
        if wide_dic_box is not None:  # only then, so that earlier checkpoints stay valid
            config["wide_dic_box"] = [list(r) for r in wide_dic_box]
        if weights is not None:  # likewise
            config["wide_dic_density"] = wide_dic_density
        wide_law = models["dic_learned_wide"].seed_population
        config["wide_seed_law"] = {"free_ranges": {k: list(v) for k, v in wide_law.free_ranges.items()},
                                   "leak_range": list(wide_law.leak_range)}  # fmt: skip
        if wide_law.tail_ranges:  # only then, so that earlier checkpoints stay valid
            config["seed_law_tail"] = [float(v) for v in seed_law_tail]
            config["wide_seed_law"].update(tail_ranges={k: list(v) for k, v in wide_law.tail_ranges.items()},
                                           tail_weight=wide_law.tail_weight)  # fmt: skip
    if screen > 1:  # only then, so that earlier checkpoints stay valid
        config["screen"] = screen
    if replicate:  # likewise; replicates do not share a checkpoint folder
        config["replicate"] = replicate
    if members > 1:  # likewise
        config["members"] = members
    store = _Checkpoint(checkpoint, config) if checkpoint is not None else None

    held = store.load("reference", kind="reference") if store is not None else None
    if held is not None:
        reference = held["rows"]
    else:
        reference = _reference(model, observations, num_posterior_samples, np.random.SeedSequence([seed, 2]), proto,
                               n_bootstrap, progress)  # fmt: skip
        if store is not None:
            store.save("reference", {"kind": "reference", "rows": reference})
    rows: list[dict[str, Any]] = []
    per_obs: list[dict[str, Any]] = []
    for budget in budgets:
        for method in methods:
            # The screened variant has its own checkpoint entry, so a run with a screen resumes an earlier one
            # without it: the method's trained posterior is kept beside its entry, so only the simulations (which
            # train the screen's emulator) are redone; entries from before posteriors were kept train it again.
            names = {method: f"budget{budget}_{method}"}
            if screen > 1:
                names[f"{method}_screened"] = f"budget{budget}_{method}_screened{screen}"
            done = {name: store.load(key, budget=budget, method=name) if store is not None else None
                    for name, key in names.items()}  # fmt: skip
            if all(v is not None for v in done.values()):
                if progress:
                    print(f"compare: {model.name} budget {budget} {method}: from checkpoint {store.folder}", flush=True)
                for v in done.values():
                    rows += v["rows"]
                    per_obs += v["per_observation"]
                continue
            # Seeds depend on (seed, budget, method) only, so a budget gives the same numbers whichever other
            # budgets run beside it, and a checkpointed run resumes to what an uninterrupted one would give.
            (sim_seed, train_seed, sample_seed, cal_seed, boot_seed, screen_seed,
             emulator_seed) = _method_seeds(seed, budget, method, replicate)  # fmt: skip
            prior, simulator, mmodel = priors[method], simulators[method], models[method]
            t0 = time.perf_counter()
            theta = prior.sample((budget,), seed=sim_seed)
            if isinstance(simulator, DICSimulator):  # the same x as simulator(theta), and the cells behind it
                x, cells = simulator.simulate_with_cells(theta, seed=sim_seed)
            else:
                x, cells = simulator(theta, seed=sim_seed), theta.to(torch.float64).numpy()
            t_sim = time.perf_counter() - t0
            kept = store.load_posterior(names[method]) if store is not None and done[method] is not None else None
            if kept is not None:
                posterior, t_train, epochs = kept["posterior"], kept["training_seconds"], kept["epochs"]
                if progress:
                    print(f"compare: {model.name} budget {budget} {method}: simulated {t_sim:.1f} s, posterior "
                          f"from checkpoint {store.folder}", flush=True)  # fmt: skip
            else:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    # The harness reports its own progress (one line per method and budget), not sbi's bars.
                    settings = dict(train_settings, show_progress_bars=False,
                                    training={"training_batch_size": _batch_size(budget), **train_settings["training"]})  # fmt: skip
                    posts = []
                    for k in range(members):
                        # Member k trains from seed + 1000 k: member 0 is the single network of members=1.
                        tseed = train_seed + 1000 * k
                        if method in _BOX_DIC:
                            post, fit = train_box_dic_posterior(
                                model, theta, x, prior=prior, simulator=simulator, seed=tseed,
                                fiber_density="npe" if method == "dic_box_npe" else None,
                                hidden_features=hidden_features, num_transforms=num_transforms,
                                density_estimator=density_estimator, torch_threads=torch_threads,
                                show_progress_bars=False, training=settings["training"],
                            )  # fmt: skip
                            posts.append(post)
                            epochs = fit["dic_epochs"]
                            continue
                        if method in ("dic",) + _LEARNED:
                            run = train_dic_posterior(mmodel, budget, prior=prior, simulator=simulator, theta=theta,
                                                      x=x, seed=tseed, **settings)  # fmt: skip
                        else:
                            run = train_conductance_posterior(model, budget, scale=prior.scale, prior=prior,
                                                              simulator=simulator, theta=theta, x=x, seed=tseed,
                                                              **settings)  # fmt: skip
                        if method in _LEARNED:
                            est, _ = train_free_conductances(
                                mmodel, theta, cells, x, pair=simulator.pair, seed=tseed + 1, show_progress_bars=False,
                                training={"training_batch_size": _batch_size(budget), **train_settings["training"]},
                            )  # fmt: skip
                            run.posterior = DICPosterior(run.posterior.posterior, mmodel, pair=simulator.pair,
                                                         simulator=simulator, free_conductances=est)  # fmt: skip
                        posts.append(run.posterior)
                        epochs = int((run.inference.summary.get("epochs_trained") or [0])[-1])
                t_train = time.perf_counter() - t0
                posterior = posts[0] if members == 1 else mixture_posterior(posts)
                if store is not None:
                    store.save_posterior(names[method], {"posterior": posterior, "training_seconds": t_train,
                                                         "epochs": epochs})  # fmt: skip
                if progress:
                    print(f"compare: {model.name} budget {budget} {method}: simulated {t_sim:.1f} s, "
                          f"trained {t_train:.1f} s", flush=True)  # fmt: skip
            for name, key in names.items():
                if done[name] is not None:
                    new_rows, new_obs = done[name]["rows"], done[name]["per_observation"]
                elif name == method:
                    if not n_cal:
                        calib = dict(_NO_CALIBRATION)
                    elif method in _LEARNED:
                        calib = _conductance_calibration(posterior, n_cal, num_posterior_samples, proto["noise_std"],
                                                         cal_seed)  # fmt: skip
                    else:
                        calib = _calibration(posterior, prior, simulator, n_cal, num_posterior_samples, cal_seed)
                    sample_rng = np.random.default_rng(sample_seed)
                    draw = lambda o, i, r=sample_rng: _sample(method, posterior, o["x"][i : i + 1],  # noqa: E731
                                                              num_posterior_samples, r)  # fmt: skip
                    new_rows, new_obs = _evaluate_method(
                        model, name, budget, draw, observations, num_posterior_samples, sample_rng,
                        np.random.default_rng(boot_seed), proto, n_bootstrap,
                        {**{k: calib[k] for k in _CALIBRATION}, "simulation_seconds": t_sim, "training_seconds": t_train,
                         "epochs": epochs},
                    )  # fmt: skip
                else:
                    t0 = time.perf_counter()
                    emu = _train_screen(cells, x, emulator_seed)
                    t_emu = time.perf_counter() - t0
                    if progress:
                        print(f"compare: {model.name} budget {budget} {method}: emulator trained {t_emu:.1f} s", flush=True)
                    sample_rng = np.random.default_rng(screen_seed)
                    draw = lambda o, i, r=sample_rng, e=emu: _screened_sample(  # noqa: E731
                        method, posterior, o, i, num_posterior_samples, screen, e, r)
                    # The screen selects among posterior samples; it is no posterior, so it has no SBC or TARP.
                    new_rows, new_obs = _evaluate_method(
                        model, name, budget, draw, observations, num_posterior_samples, sample_rng,
                        np.random.default_rng(boot_seed + 1), proto, n_bootstrap,
                        {**_NO_CALIBRATION, "simulation_seconds": t_sim,
                         "training_seconds": t_train + t_emu, "epochs": epochs, "screen": screen},
                    )  # fmt: skip
                if store is not None and done[name] is None:
                    store.save(key, {"budget": budget, "method": name, "rows": new_rows, "per_observation": new_obs})
                rows += new_rows
                per_obs += new_obs
    return ComparisonResult(rows, per_obs, config, reference=reference)


def _method_seeds(seed: int, budget: int, method: str, replicate: int = 0) -> tuple[int, ...]:
    """The seeds of one method × budget of :func:`compare` (simulation, training, sampling, calibration, bootstrap,
    screen, emulator): they depend on ``(seed, budget, method, replicate)`` alone, so a benchmark can regenerate a
    run's simulations (``ConductancePrior.sample((budget,), seed=sim_seed)`` and the simulator at ``sim_seed``)."""
    mseq = np.random.SeedSequence([seed, 1, budget, ALL_METHODS.index(method)] + ([replicate] if replicate else []))
    return tuple(int(s.generate_state(1)[0]) for s in mseq.spawn(7))


def paired_differences(
    per_observation: Sequence[dict[str, Any]],
    baseline: str = "conductance_linear",
    *,
    metric: str = "fidelity",
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Each method's per-observation ``metric`` minus the baseline's on the same observation, averaged, with a
    paired bootstrap 95 % interval.

    Two methods evaluated on the same observations share each observation's difficulty; the interval of their
    difference is therefore much narrower than their two intervals side by side, and it is the one that says
    whether one method is ahead. A screened method (``<method>_screened``) is compared with ``baseline`` and, when
    it was run, with ``<baseline>_screened`` too (like for like).

    Parameters
    ----------
    per_observation
        Per-observation rows (:attr:`ComparisonResult.per_observation`; runs of the same model, seed, protocol
        and observation count may be concatenated: their observations are the same).
    baseline
        The method compared against.
    metric
        A per-observation metric (default ``fidelity``).
    n_bootstrap
        Bootstrap resamples of the observations (the same resampling for every pair with the same observations).
    seed
        Seed of the bootstrap.

    Returns
    -------
    list of dict
        Per observation set × budget × method × baseline × class (``all``, then each observed class): the
        number of observations with both values finite, the two means, ``difference`` and its ``_lo`` / ``_hi``.
        Empty when the baseline is absent.
    """
    if metric not in _METRICS:
        raise InvalidInputError(f"metric: expected one of {', '.join(_METRICS)}, got {metric!r}")
    _positive_int(n_bootstrap, "n_bootstrap", 2)
    table: dict[tuple[str, int, str], dict[int, tuple[float, str]]] = {}
    for r in per_observation:
        key = (str(r["observation_set"]), int(r["budget"]), str(r["method"]))
        obs = table.setdefault(key, {})
        i = int(r["observation"])
        if i in obs:
            raise InvalidInputError(f"per_observation: observation {i} appears twice for {key}")
        obs[i] = (float(r[metric]) if r[metric] not in ("", None) else math.nan, str(r["observed_class"]))
    out: list[dict[str, Any]] = []
    for (set_name, budget, method), values in table.items():
        if method == baseline or method.startswith(baseline + "_screened"):
            continue
        bases = [baseline]
        if "_screened" in method:
            bases.append(baseline + "_screened" + method.rsplit("_screened", 1)[1])
        for base in bases:
            ref = table.get((set_name, budget, base))
            if ref is None:
                continue
            common = sorted(set(values) & set(ref))
            for i in common:
                if values[i][1] != ref[i][1]:
                    raise InvalidInputError(f"per_observation: observation {i} of {set_name} has class {values[i][1]!r} "
                                            f"for {method} but {ref[i][1]!r} for {base}: not the same observations")
            a = np.array([values[i][0] for i in common])
            b = np.array([ref[i][0] for i in common])
            classes = np.array([values[i][1] for i in common])
            for cls in ["all", *sorted(set(classes.tolist()))]:
                keep = np.isfinite(a) & np.isfinite(b) & ((classes == cls) if cls != "all" else True)
                d, lo, hi = _bootstrap((a - b)[keep], n_bootstrap, np.random.default_rng(seed))
                out.append({"observation_set": set_name, "budget": budget, "method": method, "baseline": base,
                            "class": cls, "metric": metric, "n_observations": int(keep.sum()),
                            "method_mean": float(a[keep].mean()) if keep.any() else math.nan,
                            "baseline_mean": float(b[keep].mean()) if keep.any() else math.nan,
                            "difference": d, "difference_lo": lo, "difference_hi": hi})  # fmt: skip
    return out


def _summary_row(model, metrics: dict[str, np.ndarray], n_bootstrap: int, rng: np.random.Generator,
                 **ids: Any) -> dict[str, Any]:
    """``ids``, then every per-observation metric as its mean and bootstrap interval (``_lo``, ``_hi``)."""
    row: dict[str, Any] = {"model": model.name, **ids}
    for name in list(_METRICS) + [f"log_std_{n}" for n in model.conductance_names]:
        row[name], row[f"{name}_lo"], row[f"{name}_hi"] = _bootstrap(metrics[name], n_bootstrap, rng)
    return row


def _reference(model, observations, S, seq, proto, n_bootstrap, progress) -> list[dict[str, Any]]:
    """The metrics of each observation's true DIC population (``S`` cells at its exact DICs)."""
    from .core import degenerate_population

    rng = np.random.default_rng(seq)
    out = []
    t0 = time.perf_counter()
    for set_name in OBSERVATION_SETS:
        obs = observations[set_name]

        def draw(i, d=obs["dics"]):
            if not np.all(np.isfinite(d[i])):
                return np.full((S, model.n_conductances), np.nan)
            return degenerate_population(model, d[i, 0], d[i, 1], S, seed=rng, on_unreachable="nan")

        metrics = _evaluate(model, draw, obs, S, rng, proto)
        row = _summary_row(model, metrics, n_bootstrap, rng, method="true_dic_population", observation_set=set_name,
                           n_observations=len(obs["classes"]))  # fmt: skip
        row["n_unreachable"] = int(np.sum(np.isnan(metrics["dic_mae_g_s"])))
        out.append(row)
    if progress:
        print(f"compare: {model.name} reference (true DIC populations): {time.perf_counter() - t0:.1f} s", flush=True)
    return out


_WIDE_SETTINGS = ("seed_law_widening", "wide_dic_box", "wide_dic_density", "wide_seed_law", "seed_law_tail")


def _tail_arguments(seed_law_tail: Any) -> dict[str, float]:
    """``widen_seed_law``'s tail arguments from ``seed_law_tail = (tail_factor, tail_weight)`` or ``None``."""
    if seed_law_tail is None:
        return {}
    try:
        factor, weight = (float(v) for v in seed_law_tail)
    except (TypeError, ValueError):
        raise InvalidInputError(f"seed_law_tail: expected (tail_factor, tail_weight), got {seed_law_tail!r}") from None
    return {"tail_factor": factor, "tail_weight": weight}


def _wide_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The widened seed law's settings (empty for a run without ``dic_learned_wide``); a missing ``wide_dic_box``
    is the published box, a setting of its own."""
    if "seed_law_widening" not in settings:
        return {}
    return {k: settings.get(k) for k in _WIDE_SETTINGS}


class _Checkpoint:
    """One JSON file per finished method × budget (and one for the reference rows) in ``folder``, beside the
    settings they were run with."""

    def __init__(self, folder: str | os.PathLike, config: dict[str, Any]):
        self.folder = Path(folder)
        # Budgets may change between runs (add one, resume the rest), and so may the screen (its entries are
        # named by it) and the methods (entries are named by method, seeded per method); everything else must
        # not. The widened seed law's settings exist only in runs of dic_learned_wide: they must match when both
        # runs hold them, and are added when a run brings them to a folder without them.
        self.settings = json.loads(json.dumps({k: v for k, v in config.items() if k not in ("budgets", "screen")}))
        path = self.folder / "settings.json"
        if path.exists():
            try:
                held = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise InvalidInputError(f"checkpoint: cannot read {path}: {exc}") from None
            new, old = _wide_settings(self.settings), _wide_settings(held)
            keys = (set(held) | set(self.settings)) - {"methods", *_WIDE_SETTINGS}
            diff = sorted(k for k in keys if held.get(k) != self.settings.get(k))
            if new and old and new != old:
                diff += sorted(k for k in set(new) | set(old) if new.get(k) != old.get(k))
            if diff:
                raise InvalidInputError(f"checkpoint: {self.folder} holds a run with other settings ({', '.join(diff)}); "
                                        "use another folder or the same settings")  # fmt: skip
            # The folder's settings then name every method it holds, and the wide law once a run brought it.
            methods = list(held.get("methods", []))
            methods += [m for m in self.settings["methods"] if m not in methods]
            brought = {k: self.settings[k] for k in _WIDE_SETTINGS if k in self.settings} if new and not old else {}
            merged = {**held, **brought, "methods": methods}
            if merged != held:
                self._write(path, merged)
        else:
            if self.folder.exists() and not self.folder.is_dir():
                raise InvalidInputError(f"checkpoint: {self.folder} exists and is not a folder")
            self.folder.mkdir(parents=True, exist_ok=True)
            self._write(path, self.settings)

    @classmethod
    def reader(cls, folder: str | os.PathLike) -> "_Checkpoint":
        """A checkpoint folder opened to read only (``__init__`` checks the settings against a run's and writes them)."""
        self = cls.__new__(cls)
        self.folder = Path(folder)
        return self

    @staticmethod
    def _write(path: Path, settings: dict[str, Any]) -> None:
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(settings, indent=1))

    def _path(self, name: str, suffix: str = ".json") -> Path:
        return self.folder / f"{name}{suffix}"

    def load(self, name: str, **ids: Any) -> dict[str, Any] | None:
        """The payload saved under ``name`` (``None`` if there is none); ``ids`` must match what it holds."""
        path = self._path(name)
        if not path.exists():
            return None
        try:
            done = json.loads(path.read_text())
            if any(done[k] != v for k, v in ids.items()):
                raise ValueError(f"{', '.join(ids)} do not match the file name")
            return done
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"checkpoint: {path} is damaged ({exc}); delete it to recompute") from None

    def save(self, name: str, payload: dict[str, Any]) -> None:
        with atomic_file(self._path(name)) as tmp:
            tmp.write_text(json.dumps(payload))

    def load_posterior(self, name: str) -> dict[str, Any] | None:
        """What :meth:`save_posterior` kept under ``name`` (``None`` if nothing, e.g. an entry from an older
        version). A pickle: load checkpoints you made, as with any ``torch.load`` of a full object."""
        import torch

        path = self._path(name, ".posterior.pt")
        if not path.exists():
            return None
        try:
            kept = torch.load(path, weights_only=False)
            return {k: kept[k] for k in ("posterior", "training_seconds", "epochs")}
        except Exception as exc:  # a truncated or foreign file: any unpickling error
            raise InvalidInputError(f"checkpoint: {path} is damaged ({exc}); delete it to retrain") from None

    def save_posterior(self, name: str, payload: dict[str, Any]) -> None:
        """Keep a trained posterior beside entry ``name``, so a later run adding a screen need not retrain it."""
        import torch

        with atomic_file(self._path(name, ".posterior.pt")) as tmp:
            torch.save(payload, tmp)


# -- observations ---------------------------------------------------------------------------------------------


def _simulate_features(model: ConductanceModel, g: np.ndarray, proto: dict, rng: np.random.Generator):
    from .core import simulate
    from .sbi import summary_statistics
    from .spiketrains import features_from_csr

    res = simulate(model, g, duration=proto["duration"], transient=proto["transient"], dt=proto["dt"],
                   noise_std=proto["noise_std"], seed=rng if proto["noise_std"] > 0 else None, progress=False)  # fmt: skip
    return features_from_csr(res.times, res.offsets, res.t_start, res.t_stop), summary_statistics(res)


def draw_observations(
    model: str | ConductanceModel,
    n_observations: int,
    *,
    seed: int = 0,
    duration: float | None = None,
    transient: float | None = None,
    dt: float | None = None,
    noise_std: float = 0.0,
) -> dict[str, dict[str, Any]]:
    """The observation sets :func:`compare` evaluates on with the same model, count, seed and protocol.

    Returns, per set of :data:`OBSERVATION_SETS`, the observations' conductances ``g``, features, ``x``, firing
    ``classes`` and ``dics``, in the order of the ``observation`` index of :attr:`ComparisonResult.per_observation`,
    so that a comparison's per-observation figures can be related to where each observation lies.
    """
    from .sbi import ConductancePrior, DICPrior

    model = get_model(model)
    _positive_int(n_observations, "n_observations")
    _, dic_sim, proto = _protocol(model, duration, transient, dt, noise_std)
    return _observation_sets(model, n_observations, seed, DICPrior(model), ConductancePrior(model, "linear"), dic_sim,
                             proto)  # fmt: skip


def _protocol(model, duration, transient, dt, noise_std) -> tuple[dict[str, float], Any, dict[str, float]]:
    """The simulators' arguments (the model's defaults where ``None``), a DIC simulator with them, and the full
    protocol it runs."""
    from .sbi import DICSimulator

    protocol = {k: v for k, v in dict(duration=duration, transient=transient, dt=dt).items() if v is not None}
    protocol["noise_std"] = float(noise_std)
    dic_sim = DICSimulator(model, **protocol)
    proto = dict(duration=dic_sim.duration, transient=dic_sim.transient, dt=dic_sim.dt, noise_std=dic_sim.noise_std)
    return protocol, dic_sim, proto


def _observation_sets(model, n, seed, dic_prior, box_prior, dic_sim, proto) -> dict[str, dict[str, Any]]:
    obs_seq = np.random.SeedSequence(seed).spawn(3)[0]  # the observation sets' seed (unchanged since 0.1)
    obs_rngs = [np.random.default_rng(s) for s in obs_seq.spawn(len(OBSERVATION_SETS))]
    return {
        "dic_population": _draw_firing(model, n, obs_rngs[0], dic_prior, dic_sim, proto),
        "conductance_box": _draw_firing(model, n, obs_rngs[1], box_prior, None, proto),
    }


def _draw_firing(model, n, rng, prior, dic_simulator, proto) -> dict[str, Any]:
    """``n`` non-silent observations: conductances, features, ``x`` and DICs."""
    import torch

    from .core import dics

    g_all, x_all, feats_all = [], [], []
    have = 0
    for _ in range(_MAX_DRAW_ROUNDS):
        m = max(8, 3 * (n - have))
        theta = prior.sample((m,), seed=int(rng.integers(0, 2**62)))
        g = dic_simulator.cells(theta, seed=rng) if dic_simulator is not None else theta.to(torch.float64).numpy()
        g = g[np.all(np.isfinite(g), axis=1)]
        if g.shape[0] == 0:
            continue
        feats, x = _simulate_features(model, g, proto, rng)
        keep = np.flatnonzero(feats["firing_class"] != "silent")[: n - have]
        g_all.append(g[keep])
        x_all.append(x[keep])
        feats_all.append({k: np.asarray(v)[keep] for k, v in feats.items()})
        have += keep.size
        if have >= n:
            break
    if have < n:
        raise DicSbiError(f"could not draw {n} firing observations from {type(prior).__name__} in "
                          f"{_MAX_DRAW_ROUNDS} rounds (only {have}); is the protocol too short?")  # fmt: skip
    g = np.concatenate(g_all)
    feats = {k: np.concatenate([f[k] for f in feats_all]) for k in feats_all[0]}
    return {"g": g, "x": torch.cat(x_all), "features": feats, "classes": [str(c) for c in feats["firing_class"]],
            "dics": dics(model, g)[:, 1:]}  # fmt: skip


# -- metrics ------------------------------------------------------------------------------------------------


def _sample(method: str, posterior, x, n: int, rng: np.random.Generator) -> np.ndarray:
    import torch

    from .core import degenerate_population

    if method in _LEARNED + _BOX_DIC:
        return posterior.sample((n,), x=x, seed=rng).numpy()
    if method == "dic":
        t = posterior.sample_dics((n,), x=x, seed=rng).to(torch.float64).numpy()
        g = degenerate_population(posterior.model, t[:, 0], t[:, 1], 1, seed=rng, on_unreachable="nan",
                                  pair=posterior.pair, calcium_path_tau=posterior.calcium_path_tau)[:, 0, :]  # fmt: skip
        return g
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(0, 2**62)))
        return posterior.sample((n,), x=x, show_progress_bars=False).to(torch.float64).numpy()


def _evaluate_method(model, method, budget, draw, observations, S, sample_rng, boot_rng, proto, n_bootstrap,
                     extra: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Summary rows and per-observation rows of ``draw(obs, i)`` on every observation set."""
    new_rows, new_obs = [], []
    for set_name in OBSERVATION_SETS:
        obs = observations[set_name]
        metrics = _evaluate(model, lambda i, o=obs: draw(o, i), obs, S, sample_rng, proto)
        n = len(obs["classes"])
        for i in range(n):
            new_obs.append({"model": model.name, "method": method, "budget": budget, "observation_set": set_name,
                            "observation": i, "observed_class": obs["classes"][i],
                            **{k: float(v[i]) for k, v in metrics.items()}})  # fmt: skip
        row = _summary_row(model, metrics, n_bootstrap, boot_rng, method=method, budget=budget,
                           observation_set=set_name, n_observations=n)  # fmt: skip
        row["n_defined_coverage"] = int(np.sum(np.isfinite(metrics["coverage_logdet"])))
        row.update(extra)
        new_rows.append(row)
    return new_rows, new_obs


def _emulator_batch(n: int) -> int:
    """Emulator batch size for ``n`` training cells: a few dozen steps per epoch at small budgets, 512 at large."""
    return int(min(512, max(64, n // 40)))


def _train_screen(cells: np.ndarray, x, seed: int):
    """A firing emulator trained on a method's own simulations (cells and the firing features read from x)."""
    from .sbi.emulator import train_emulator
    from .sbi.evaluation import observed_features

    try:
        return train_emulator(cells, observed_features(x), batch_size=_emulator_batch(len(cells)), seed=seed)
    except InvalidInputError as exc:
        raise InvalidInputError(f"screen: cannot train the firing emulator on {len(cells)} simulations ({exc}); "
                                "use a larger budget or screen=1") from None


def _screened_sample(method: str, posterior, obs: dict, i: int, n: int, screen: int, emulator,
                     rng: np.random.Generator) -> np.ndarray:
    """``screen × n`` samples of ``method``, the ``n`` the emulator ranks likeliest to fire like observation i."""
    from .sbi.emulator import select_faithful

    g = _sample(method, posterior, obs["x"][i : i + 1], n * screen, rng)
    keep, _ = select_faithful(g, emulator, _observed(obs, i), n)
    return g[keep]


def _observed(obs: dict, i: int) -> dict[str, Any]:
    """The features of observation ``i`` that :func:`~dic_sbi.spiketrains.fires_like` compares."""
    of = obs["features"]
    return {"firing_class": obs["classes"][i], **{k: of[k][i] for k in ("mean_rate", "burst_period", "spikes_per_burst")}}


def _faithful(feats: dict, obs: dict, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(same class, faithful) masks of simulated cells against observation ``i``."""
    from .spiketrains import fires_like

    return fires_like(feats, _observed(obs, i), TOLERANCES)


def _evaluate(model, draw, obs, S, rng, proto) -> dict[str, np.ndarray]:
    """Metrics per observation of ``draw(i)``, ``S`` conductance vectors for observation ``i`` (NaN rows: invalid)."""
    from .core import dics

    n = len(obs["classes"])
    nc = model.n_conductances
    out = {k: np.full(n, np.nan) for k in _METRICS}
    out.update({f"log_std_{name}": np.full(n, np.nan) for name in model.conductance_names})
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        samples.append(draw(i))
        out["sampling_seconds"][i] = time.perf_counter() - t0
    g = np.concatenate(samples)
    valid = np.all(np.isfinite(g), axis=1) & np.all(g >= 0, axis=1)
    classes = np.full(g.shape[0], "invalid", dtype=object)
    feats = {k: np.full(g.shape[0], np.nan) for k in ("mean_rate", "burst_period", "spikes_per_burst")}
    if valid.any():
        f, _ = _simulate_features(model, g[valid], proto, rng)
        classes[valid] = f["firing_class"]
        for k in feats:
            feats[k][valid] = f[k]
    feats["firing_class"] = classes
    sample_dics = np.full((g.shape[0], 2), np.nan)
    dic_ok = valid & (np.where(valid, g[:, model.index("leak")], 0.0) > 0)
    if dic_ok.any():
        sample_dics[dic_ok] = dics(model, g[dic_ok])[:, 1:]
    for i in range(n):
        sl = slice(i * S, (i + 1) * S)
        fi = {k: v[sl] for k, v in feats.items()}
        same, ok = _faithful(fi, obs, i)
        out["fidelity"][i] = ok.mean()
        out["same_class"][i] = same.mean()
        out["validity"][i] = np.mean((classes[sl] != "silent") & (classes[sl] != "invalid"))
        err = np.abs(sample_dics[sl] - obs["dics"][i])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["dic_mae_g_s"][i], out["dic_mae_g_u"][i] = np.nanmean(err[:, 0]), np.nanmean(err[:, 1])
        logg = np.log(np.maximum(g[sl][ok], _LOG_FLOOR))
        if logg.shape[0] >= 2:
            std = logg.std(axis=0, ddof=1)
            for name, s in zip(model.conductance_names, std):
                out[f"log_std_{name}"][i] = s
            out["coverage_log_std"][i] = std.mean()
        if logg.shape[0] > nc:
            sign, logdet = np.linalg.slogdet(np.cov(logg, rowvar=False))
            out["coverage_logdet"][i] = logdet if sign > 0 else np.nan
    return out


def _calibration(posterior, prior, simulator, n: int, S: int, seed: int) -> dict[str, Any]:
    """SBC / TARP of a posterior in its own parameter space, as the harness's columns (and ``sbc_ks_pvals``, one
    per parameter, which the tables leave out)."""
    from .sbi import simulation_based_calibration, tarp_calibration

    rng = np.random.default_rng(seed)
    theta = prior.sample((n,), seed=int(rng.integers(0, 2**62)))
    x = simulator(theta, seed=rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sbc = simulation_based_calibration(posterior, theta, x, num_posterior_samples=S, seed=rng)
        tarp = tarp_calibration(posterior, theta, x, num_posterior_samples=S, seed=rng)
    return {
        "sbc_ks_pval_min": float(sbc.ks_pvals.min()),
        "sbc_c2st_ranks_max": float(sbc.c2st_ranks.max()),
        "tarp_atc": float(tarp.atc),
        "tarp_ks_pval": float(tarp.ks_pval),
        "calibration_n_dropped": int(sbc.n_dropped),
        "sbc_ks_pvals": [float(v) for v in sbc.ks_pvals],
    }


def _conductance_calibration(posterior, n: int, S: int, noise_std: float, seed: int) -> dict[str, Any]:
    """SBC / TARP of a conductance posterior made through DICs, in conductance space, as the harness's columns
    (and ``sbc_ks_pvals``)."""
    from .sbi.evaluation import conductance_calibration

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = conductance_calibration(posterior, n_pairs=n, num_posterior_samples=S, noise_std=noise_std, seed=seed)
    return {"sbc_ks_pval_min": min(c["sbc_ks_pvals"]), "sbc_c2st_ranks_max": max(c["sbc_c2st_ranks"]),
            "tarp_atc": c["tarp_atc"], "tarp_ks_pval": c["tarp_ks_pval"], "calibration_n_dropped": n - c["n_pairs"],
            "sbc_ks_pvals": [float(v) for v in c["sbc_ks_pvals"]]}  # fmt: skip


def checkpoint_calibration(checkpoint: str | os.PathLike | Sequence[str | os.PathLike], method: str, budget: int, *,
                           n_pairs: int, seed: int, num_posterior_samples: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The harness's calibration of one trained method again, on other and more pairs.

    Loads the posterior that a ``dic-sbi compare --checkpoint`` run kept for ``method`` at ``budget`` and runs
    SBC / TARP as the comparison does, in the same space (conductances; DICs for ``dic``), on ``n_pairs`` new
    prior-predictive pairs drawn from ``seed`` with the run's protocol and priors. The comparison calibrates on
    ``max(n_observations, 50)`` pairs; a miscalibration too small to show there may show at thousands.
    ``num_posterior_samples`` defaults to the run's. Several folders (e.g. replicates of one comparison, same model
    and protocol): the equal-weight mixture of their posteriors (:func:`~dic_sbi.sbi.ensemble.mixture_posterior`),
    with the first one's settings. The checkpoint is a pickle: load only folders you made.

    Returns
    -------
    dict
        The harness's calibration columns (``sbc_ks_pval_min``, ``sbc_c2st_ranks_max``, ``tarp_atc``,
        ``tarp_ks_pval``, ``calibration_n_dropped``), ``sbc_ks_pvals`` (one per parameter), ``parameters``
        (their names), ``n_pairs`` and ``seed``.
    """
    from .sbi import ConductancePrior, ConductanceSimulator, DICPrior, DICSimulator
    from .sbi.ensemble import mixture_posterior

    folders = [Path(checkpoint)] if isinstance(checkpoint, (str, os.PathLike)) else [Path(c) for c in checkpoint]
    if not folders:
        raise InvalidInputError("checkpoint: give at least one folder")
    posteriors, settings = [], {}
    for folder in folders:
        try:
            held_settings = json.loads((folder / "settings.json").read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"checkpoint: {folder} is no dic-sbi compare checkpoint folder ({exc})") from None
        if method not in held_settings.get("methods", ()):
            raise InvalidInputError(f"method: {method!r} is not in {folder} (it holds {', '.join(held_settings.get('methods', ()))})")
        settings = settings or held_settings
        if any(held_settings[k] != settings[k] for k in ("model", "protocol")):
            raise InvalidInputError(f"checkpoint: {folder} holds another model or protocol than {folders[0]}")
        held = _Checkpoint.reader(folder).load_posterior(f"budget{int(budget)}_{method}")
        if held is None:
            raise InvalidInputError(f"checkpoint: {folder} keeps no trained posterior of {method} at budget {budget}")
        posteriors.append(held["posterior"])
    n_pairs = _positive_int(n_pairs, "n_pairs", minimum=2)
    S = _positive_int(num_posterior_samples or settings["num_posterior_samples"], "num_posterior_samples", minimum=2)
    posterior = posteriors[0] if len(posteriors) == 1 else mixture_posterior(posteriors)
    model, proto = get_model(settings["model"]), dict(settings["protocol"])
    if method in _LEARNED:  # the posterior carries its own (possibly widened) model, prior and simulator
        out, names = _conductance_calibration(posterior, n_pairs, S, proto["noise_std"], seed), model.conductance_names
    elif method == "dic":
        out, names = _calibration(posterior, DICPrior(model), DICSimulator(model, **proto), n_pairs, S, seed), ("g_s", "g_u")
    else:
        scale = "linear" if method in _BOX_DIC else method.removeprefix("conductance_")  # the linear box's cells
        prior, sim = ConductancePrior(model, scale), ConductanceSimulator(model, **proto)
        out, names = _calibration(posterior, prior, sim, n_pairs, S, seed), model.conductance_names
    return {**out, "parameters": list(names), "n_pairs": n_pairs, "seed": int(seed)}


def _bootstrap(v: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean of the finite values and its percentile-bootstrap 95 % interval (NaN when fewer than 2)."""
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return mean, float(lo), float(hi)


# -- input checks and output ---------------------------------------------------------------------------------


def _positive_int(v: Any, name: str, minimum: int = 1) -> int:
    if not is_int(v, minimum):
        raise InvalidInputError(f"{name}: expected an int >= {minimum}, got {v!r}")
    return int(v)


def _check_methods(methods: Sequence[str]) -> list[str]:
    if isinstance(methods, str) or not isinstance(methods, Sequence):
        raise InvalidInputError(f"methods: expected a sequence of method names, got {methods!r}")
    chosen = list(methods)
    unknown = [m for m in chosen if m not in ALL_METHODS]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        raise InvalidInputError(f"methods: expected distinct names among {', '.join(ALL_METHODS)}, got {methods!r}")
    return chosen


def _check_budgets(budgets: Sequence[int]) -> list[int]:
    if isinstance(budgets, (int, np.integer)):
        budgets = [budgets]
    try:
        budgets = list(budgets)
    except TypeError:
        raise InvalidInputError(f"budgets: expected a sequence of ints, got {budgets!r}") from None
    if not budgets:
        raise InvalidInputError("budgets: give at least one simulation budget")
    out = [_positive_int(b, "budgets", minimum=2) for b in budgets]
    if len(set(out)) != len(out):
        raise InvalidInputError(f"budgets: duplicates in {out}")
    return out


def _num(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "—" if not np.isfinite(v) else f"{v:.3g}"
    return str(v)


def _pair_key(r: dict[str, Any]) -> tuple:
    """What a row of :func:`paired_differences` compares, without its class."""
    return r["observation_set"], r["budget"], r["method"], r["baseline"]


def _ci_text(m: float, lo: float, hi: float) -> str:
    if not np.isfinite(m):
        return "—"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{m:.3g}"
    return f"{m:.3g} [{lo:.3g}, {hi:.3g}]"


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        if not rows:
            return
        # Columns of every row, in first-seen order (screened rows add ``screen``).
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), restval="")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, (float, np.floating)) else v) for k, v in r.items()})


def _plot(result: ComparisonResult, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("fidelity", "validity", "coverage_log_std", "coverage_logdet", "dic_mae_g_s", "dic_mae_g_u")
    sets = result.config.get("observation_sets", list(OBSERVATION_SETS))
    fig, axes = plt.subplots(len(sets), len(metrics), figsize=(3.2 * len(metrics), 3.0 * len(sets)), squeeze=False)
    for si, s in enumerate(sets):
        for mi, metric in enumerate(metrics):
            ax = axes[si, mi]
            for method in dict.fromkeys(r["method"] for r in result.rows):  # screened variants included
                rs = sorted((r for r in result.rows if r["observation_set"] == s and r["method"] == method),
                            key=lambda r: r["budget"])  # fmt: skip
                b = np.array([r["budget"] for r in rs], dtype=float)
                m = np.array([r[metric] for r in rs], dtype=float)
                lo = np.array([r[f"{metric}_lo"] for r in rs], dtype=float)
                hi = np.array([r[f"{metric}_hi"] for r in rs], dtype=float)
                err = np.vstack([np.where(np.isfinite(lo), m - lo, 0), np.where(np.isfinite(hi), hi - m, 0)])
                ax.errorbar(b, m, yerr=np.abs(err), marker="o", capsize=3, label=method)
            ax.set_xscale("log")
            budgets = [r["budget"] for r in result.rows]
            for r in result.reference:  # the true DIC population: a horizontal line, it has no budget
                if r["observation_set"] == s and np.isfinite(r[metric]) and budgets:
                    ax.plot([min(budgets), max(budgets)], [r[metric]] * 2, color="k", ls="--", lw=1,
                            label="true DIC population")  # fmt: skip
            ax.set_title(f"{metric}\n({s})", fontsize=9)
            ax.set_xlabel("simulations")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "metrics.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in dict.fromkeys(r["method"] for r in result.rows):  # screened variants included
        rs = sorted((r for r in result.rows if r["method"] == method and r["observation_set"] == sets[0]),
                    key=lambda r: r["budget"])  # fmt: skip
        b = [r["budget"] for r in rs]
        ax.plot(b, [r["simulation_seconds"] + r["training_seconds"] for r in rs], marker="o", label=method)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simulations")
    ax.set_ylabel("simulation + training (s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "cost.png", dpi=110)
    plt.close(fig)
