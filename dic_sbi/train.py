"""``dic-sbi train``: the reproducible recipe behind the pretrained DIC posteriors shipped in the package.

1. Two resumable simulation campaigns over :class:`~dic_sbi.sbi.DICPrior` (one compensated cell per DIC draw):
   noise-free, and with noisy current (σ = ``noise_std``), so that the posterior is trained on recordings with
   and without membrane noise (:mod:`dic_sbi.campaign`; rerunning resumes).
2. NPE on their union (:func:`~dic_sbi.sbi.train_dic_posterior`: neural spline flow in the prior's unconstrained
   space, the 17 summary features, early stopping on 10 % held back). With ``noise_input`` the network also
   gets each simulation's noise level (0 or σ) as a known input, so it learns ``p(θ | x, σ)`` instead of the
   posterior under the 2:1 mixture of the campaigns: a silent train says nothing about the noise level, and
   the mixture posterior cannot be calibrated for the noise-free and the noisy held-out sets at once.
3. Two held-out sets built like the published one (16 cells per DIC target, targets uniform over the box), one
   noise-free and one noisy, never seen in training (own seeds), and their metrics
   (:func:`~dic_sbi.sbi.evaluation.evaluate_dic_posterior`).
4. Weights + settings + metrics written with :func:`~dic_sbi.sbi.pretrained.save_pretrained`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DicSbiError, InvalidInputError
from .models import ConductanceModel, get_model, model_reference

__all__ = ["train_pretrained", "train_emulator_for", "dic_campaigns", "DEFAULT_ESTIMATOR", "DEFAULT_TRAINING"]

DEFAULT_ESTIMATOR = {"density_estimator": "nsf", "hidden_features": 64, "num_transforms": 5, "defined_scaling": False}
DEFAULT_TRAINING = {"training_batch_size": 512, "learning_rate": 5e-4, "stop_after_epochs": 20, "max_num_epochs": 300}


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[dic-sbi train {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train_pretrained(
    model: str | ConductanceModel,
    out: str | os.PathLike,
    *,
    work_dir: str | os.PathLike,
    num_simulations: int = 100_000,
    noisy_simulations: int = 50_000,
    noise_std: float | tuple[float, float] = 5.0,
    seed: int = 0,
    chunk_size: int = 2000,
    estimator: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    heldout_points: int = 200,
    cells_per_point: int = 16,
    ppc_points: int = 100,
    ppc_cells: int = 100,
    torch_threads: int = 1,
    noise_input: bool = False,
    quiet: bool = False,
    overwrite: bool = False,
    features: str = "summary",
    device: str = "cpu",
    jitter: tuple[float, float] | None = None,
    **protocol: Any,
) -> dict[str, Any]:
    """Simulate, train, evaluate and save a pretrained DIC posterior (module docstring); returns its metadata.

    Parameters
    ----------
    model
        ``"stg"``, ``"da"``, or a model file ``"path/to/file.py:NAME"`` (or a model loaded from one; the JSON
        records its file, so that the posterior finds its model again).
    out
        Destination without suffix (``out.pt`` and ``out.json`` are written).
    work_dir
        Folder of the campaign stores ``{model}_dic_clean`` and ``{model}_dic_noisy`` (kept for resuming).
    num_simulations, noisy_simulations, noise_std
        Campaign sizes (noise-free; noisy with current σ in µA/cm²; 0 skips the noisy campaign). ``noise_std`` may
        be a range ``(low, high)``: each noisy simulation draws its σ from it (with ``noise_input`` the posterior
        then takes any σ in it); the noisy held-out set uses σ = ``noise_std``, or ``high`` for a range.
    seed
        Campaigns use ``seed`` and ``seed + 1``, training ``seed + 2`` (ensemble members: ``estimator``), held-out sets
        ``seed + 3`` and ``+ 4``.
    estimator, training
        Overrides of :data:`DEFAULT_ESTIMATOR` (``defined_scaling``: see :func:`~dic_sbi.sbi.train_dic_posterior`;
        ``members``: train that many networks on the same simulations, member ``k`` with seed ``seed + 2 + 1000 k``,
        and ship their equal-weight mixture, :class:`~dic_sbi.sbi.ensemble.MixtureEstimator`) and
        :data:`DEFAULT_TRAINING` (``NPE.train`` arguments).
    heldout_points, cells_per_point, ppc_points, ppc_cells
        Held-out set size (targets × cells) and predictive check size (observations × simulated cells).
    noise_input
        Give the network each simulation's σ as a known input (conditions: σ = 0, and ``noise_std`` or its range).
    overwrite
        Replace existing ``out.pt`` / ``out.json`` (checked, and reserved against a concurrent run, before any work).
    features
        What the network reads: ``"summary"`` (17 summary features) or ``"intervals"`` (the summary plus the
        interval statistics: drift, variability, burst sequence; :mod:`dic_sbi.sbi.features`).
    device
        Torch device to train on (``"cuda"``: a GPU); simulations and evaluation run on the CPU.
    jitter
        ``(fraction, max_sd)``: that fraction of the training simulations has its spike times jittered by
        N(0, sd²), sd ~ U(0, ``max_sd``) ms (:class:`~dic_sbi.campaign.CampaignSpec`); the stores then get a
        ``_jitter`` suffix. Held-out sets are not jittered. ``None``: no jitter.
    **protocol
        ``duration``, ``transient``, ``dt`` (default: the model's published protocol).
    """
    import torch

    from .campaign.runner import noise_range_of
    from .sbi import DICSimulator, train_dic_posterior
    from .sbi.evaluation import evaluate_dic_posterior, heldout_set
    from .sbi.pretrained import save_pretrained

    m = get_model(model)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed: expected an int >= 0, got {seed!r}")
    if not (isinstance(noisy_simulations, (int, np.integer)) and noisy_simulations >= 0):
        raise InvalidInputError(f"noisy_simulations: expected an int >= 0, got {noisy_simulations!r}")
    noise_range = noise_range_of(noise_std)
    heldout_sigma = noise_range[1] if noise_range else float(noise_std)
    if noisy_simulations and not (np.isfinite(heldout_sigma) and heldout_sigma > 0):
        raise InvalidInputError(f"noise_std: expected > 0 for the noisy campaign, got {noise_std!r}")
    if noise_input and not noisy_simulations:
        raise InvalidInputError("noise_input: needs a noisy campaign (noisy_simulations > 0) to learn from")
    from .io.outputs import check_output

    for suffix in (".pt", ".json"):  # before hours of work, not after
        check_output(Path(out).with_suffix(suffix), kind="file", overwrite=overwrite, option="out",
                     overwrite_option="overwrite=True")  # fmt: skip
    est = {**DEFAULT_ESTIMATOR, **(estimator or {})}
    members = est.get("members", 1)
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
        raise InvalidInputError(f"estimator: members expected an int >= 1, got {members!r}")
    members = int(members)
    if members == 1:
        est.pop("members", None)  # a single network is stored as before
    train_kwargs = {**DEFAULT_TRAINING, **(training or {})}
    work = Path(work_dir)
    started = time.perf_counter()

    campaigns = [("clean", int(num_simulations), 0.0, int(seed))]
    if noisy_simulations:
        campaigns.append(("noisy", int(noisy_simulations), noise_range or float(noise_std), int(seed) + 1))
    if jitter is not None:
        from .spiketrains import check_jitter

        jitter = check_jitter(jitter)
    data, camp_meta, sim_seconds = dic_campaigns(m, campaigns, work, fields=("theta", "x"),
                                                 suffix="_jitter" if jitter else "", output=features,
                                                 chunk_size=chunk_size, quiet=quiet, jitter=jitter, **protocol)  # fmt: skip
    theta = torch.as_tensor(data["theta"], dtype=torch.float32)
    x = torch.as_tensor(data["x"], dtype=torch.float32)
    conditions = {}
    if noise_input:
        from .sbi.features import with_conditions

        x = with_conditions(x, data["noise_std"][:, None])
        conditions = {"noise_std": ((0.0, 0.0), noise_range or (heldout_sigma, heldout_sigma))}

    _log(f"training NPE ({est}) on {theta.shape[0]} simulations", quiet)
    t0 = time.perf_counter()
    simulator = DICSimulator(m, output=features, **protocol)
    member_seeds = _member_seeds(seed, members)
    runs = []
    for k, member_seed in enumerate(member_seeds):
        if members > 1:
            _log(f"ensemble member {k + 1} of {members} (training seed {member_seed})", quiet)
        runs.append(train_dic_posterior(
            m, int(theta.shape[0]), simulator=simulator, theta=theta, x=x, seed=member_seed, training=train_kwargs,
            torch_threads=torch_threads, show_progress_bars=not quiet, conditions=conditions, device=device,
            **{k_: v for k_, v in est.items() if k_ != "members"},
        ))  # fmt: skip
    train_seconds = time.perf_counter() - t0
    run = runs[0] if members == 1 else _ensemble_run(runs)
    epochs_each, best_each = [], []
    for r in runs:
        summary = r.inference.summary
        epochs_each.append(int(summary["epochs_trained"][-1]) if summary.get("epochs_trained") else 0)
        best_each.append(float(summary["best_validation_loss"][-1]) if summary.get("best_validation_loss") else None)

    metrics: dict[str, Any] = {}
    with_noise = [("noise_free", 0.0, int(seed) + 3)] + ([("noisy", heldout_sigma, int(seed) + 4)] if heldout_sigma > 0 else [])
    for name, noise, s in with_noise:
        _log(f"held-out set {name}: {heldout_points} targets × {cells_per_point} cells", quiet)
        ho = heldout_set(m, n_points=heldout_points, cells_per_point=cells_per_point, noise_std=noise, seed=s,
                         output=features, **protocol)  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            metrics[name] = evaluate_dic_posterior(run.posterior, ho, ppc_points=ppc_points, ppc_cells=ppc_cells, seed=s)
        acc = metrics[name]["accuracy"]["all"]
        _log(f"  MAE g_s {acc['mae_g_s']:.2f}, g_u {acc['mae_g_u']:.2f}; SBC {metrics[name]['sbc']['ks_pvals']}; "
             f"class reproduction {metrics[name].get('class_reproduction', {}).get('mean')}", quiet)  # fmt: skip

    import sbi

    from . import __version__

    info = {
        "name": Path(out).name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"dic_sbi": __version__, "sbi": sbi.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "command": _command(out, work, model_reference(m), num_simulations, noisy_simulations, noise_std, seed, chunk_size, est,
                            train_kwargs, heldout_points, cells_per_point, ppc_points, ppc_cells, torch_threads,
                            noise_input, protocol, features, device, jitter),  # fmt: skip
        "training": {
            "campaigns": camp_meta,
            "num_simulations": int(theta.shape[0]),
            "valid_simulations": int(torch.isfinite(x).all(dim=1).sum()),
            "settings": train_kwargs,
            "seed": member_seeds[0],
            "epochs": epochs_each[0],
            "best_validation_loss": best_each[0],
            **({"members": {"seeds": member_seeds, "epochs": epochs_each, "best_validation_loss": best_each}}
               if members > 1 else {}),
            "simulation_seconds_this_run": sim_seconds,  # 0 when the stores were already complete
            "training_seconds": train_seconds,
            "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs".strip(),
        },
        "heldout": {"points": int(heldout_points), "cells_per_point": int(cells_per_point), "seeds": [s for _, _, s in with_noise],
                    "noise_std": [sigma for _, sigma, _ in with_noise], "ppc_points": int(ppc_points), "ppc_cells": int(ppc_cells)},
        "metrics": metrics,
        "total_seconds": time.perf_counter() - started,
    }  # fmt: skip
    save_pretrained(run.posterior, out, estimator=est, info=info, overwrite=overwrite)
    _log(f"wrote {out}.pt and {out}.json", quiet)
    return json.loads(Path(f"{out}.json").read_text())


def _member_seeds(seed: int, members: int) -> list[int]:
    """Training seeds of the ensemble's members: ``seed + 2`` for the first (a one-member ensemble is the single
    network ``dic-sbi train`` has always trained), ``seed + 2 + 1000 k`` for member ``k``."""
    return [int(seed) + 2 + 1000 * k for k in range(int(members))]


def _ensemble_run(runs: list) -> Any:
    """One :class:`~dic_sbi.sbi.training.TrainingRun` whose posterior is the equal-weight mixture of ``runs``'
    networks (:func:`~dic_sbi.sbi.ensemble.mixture_posterior`), trained on the same simulations."""
    import dataclasses

    from .sbi.ensemble import mixture_posterior

    return dataclasses.replace(runs[0], posterior=mixture_posterior([r.posterior for r in runs]))


def dic_campaigns(m: Any, campaigns: list, work: Path, *, fields: tuple[str, ...], suffix: str, output: str,
                  chunk_size: int, quiet: bool, jitter: tuple[float, float] | None = None,
                  **protocol: Any) -> tuple[dict[str, np.ndarray], list, float]:  # fmt: skip
    """Run (or resume) DIC-prior campaigns ``(tag, num, σ or (low, high), seed[, box])`` into
    ``work/{model}_dic_{tag}{suffix}`` (``box``: the DIC prior's box, default the model's; ``jitter``: the
    campaigns' spike-time jitter, :class:`~dic_sbi.campaign.CampaignSpec`).

    Returns the stores' ``fields`` concatenated, with each row's ``noise_std`` (drawn per row for a range), the
    campaigns' records and the simulation seconds of this run.
    """
    from .campaign import CampaignSpec, CampaignStore, run_campaign

    parts, meta, seconds = [], [], 0.0
    for tag, num, noise, s, *box in campaigns:
        spec = CampaignSpec(model_reference(m), "dic", num=num, chunk_size=min(int(chunk_size), num), seed=s,
                            noise_std=noise, output=output, box=box[0] if box else None, jitter=jitter, **protocol)  # fmt: skip
        path = work / f"{m.name}_dic_{tag}{suffix}"
        _log(f"campaign {tag}: {num} simulations (noise σ = {noise}) into {path}", quiet)
        report = run_campaign(spec, path, progress=not quiet)
        seconds += report.seconds
        data = CampaignStore.open(path).read(fields + (("noise_std",) if spec.noise_range else ()), num=spec.num)
        if not spec.noise_range:
            data["noise_std"] = np.full(len(data["x"]), float(noise))
        parts.append(data)
        meta.append({"store": path.name, "num": num, "noise_std": list(noise) if spec.noise_range else noise, "seed": s,
                     **({"box": [list(r) for r in spec.box]} if spec.box is not None else {}), **({"jitter": list(spec.jitter)} if spec.jitter is not None else {}), "chunk_size": spec.chunk_size, "chunks_computed_this_run": len(report.computed)})  # fmt: skip
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, meta, seconds


def _command(out, work, model, num, noisy, noise, seed, chunk_size, est, train, points, cells, ppc_points, ppc_cells,
             threads, noise_input, protocol, features="summary", device="cpu", jitter=None) -> str:
    """The ``dic-sbi train`` command line that reproduces these settings (every option that changes the result)."""
    import shlex

    opts: list[tuple[str, Any]] = [
        ("--model", model), ("--out", out), ("--work", work), ("--num-simulations", num),
        ("--noisy-simulations", noisy), ("--noise-std", ",".join(f"{v:g}" for v in np.atleast_1d(noise))), ("--seed", seed),
        ("--chunk-size", chunk_size),
        ("--hidden-features", est["hidden_features"]), ("--num-transforms", est["num_transforms"]),
        ("--max-epochs", train["max_num_epochs"]), ("--heldout-points", points), ("--cells-per-point", cells),
        ("--ppc-points", ppc_points), ("--ppc-cells", ppc_cells), ("--torch-threads", threads),
        ("--features", features), ("--device", device),
    ]  # fmt: skip
    if train.get("training_batch_size", DEFAULT_TRAINING["training_batch_size"]) != DEFAULT_TRAINING["training_batch_size"]:
        opts.append(("--batch-size", train["training_batch_size"]))
    opts += [(f"--{k}", f"{protocol[k]:g}") for k in ("duration", "transient", "dt") if protocol.get(k) is not None]
    if jitter is not None:
        opts.append(("--jitter", f"{jitter[0]:g},{jitter[1]:g}"))
    if est.get("members", 1) > 1:
        opts.append(("--members", est["members"]))
    flag = " --noise-input" if noise_input else " --no-noise-input"
    if est.get("defined_scaling"):
        flag += " --defined-scaling"
    return "dic-sbi train " + " ".join(f"{k} {shlex.quote(str(v))}" for k, v in opts) + flag


def evaluate_pretrained(
    name_or_path: str | os.PathLike, *, write: bool = False, n_threads: int | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Rebuild the held-out sets of a pretrained posterior from its stored seeds and evaluate it again.

    Uses the settings in its JSON (held-out points, cells per point, seeds and predictive-check sizes, noise
    level of the noisy set, protocol), so the sets are the ones it was evaluated on when trained. Returns the new
    metrics; ``write=True`` stores them in the JSON (the weights are untouched), e.g. after the evaluation gained
    a metric.
    """
    import sbi
    import torch

    from . import __version__
    from .sbi.evaluation import evaluate_dic_posterior, heldout_set
    from .sbi.pretrained import _paths, load_pretrained, pretrained_info

    info = pretrained_info(name_or_path)
    posterior = load_pretrained(name_or_path)
    model = info["model"]
    ho = info["heldout"]
    proto = {k: info["protocol"][k] for k in ("duration", "transient", "dt")}
    if "noise_std" in ho:  # σ of each held-out set
        sigmas = ho["noise_std"]
    else:  # written before the held-out σ were stored: the noisy campaign's σ
        sigmas = [0.0] + [c["noise_std"] for c in info["training"]["campaigns"] if c["noise_std"] > 0][:1]
    ppc = {"ppc_points": ho["ppc_points"], "ppc_cells": ho["ppc_cells"]}
    sets = list(zip(("noise_free", "noisy"), sigmas, ho["seeds"]))
    metrics: dict[str, Any] = {}
    for name, sigma, s in sets:
        _log(f"{model}: held-out set {name} ({ho['points']} targets x {ho['cells_per_point']} cells, seed {s})", quiet)
        h = heldout_set(model, n_points=ho["points"], cells_per_point=ho["cells_per_point"], noise_std=sigma, seed=s,
                        n_threads=n_threads, output=info["features"]["output"], **proto)  # fmt: skip
        with torch.random.fork_rng(devices=[]):
            metrics[name] = evaluate_dic_posterior(posterior, h, seed=s, n_threads=n_threads, **ppc)
    if write:
        json_path, _ = _paths(name_or_path)
        info["metrics"] = metrics
        info["evaluated"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "versions": {"dic_sbi": __version__, "sbi": sbi.__version__, "torch": torch.__version__}}  # fmt: skip
        from .io.atomic import atomic_file

        with atomic_file(json_path) as tmp:
            tmp.write_text(json.dumps(info, indent=2) + "\n")
        _log(f"updated the metrics in {json_path}", quiet)
    return metrics


DEFAULT_FREE_TRAINING = {"training_batch_size": 512, "learning_rate": 5e-4, "stop_after_epochs": 15, "max_num_epochs": 60}


def train_free_conductances_for(
    posterior: str | os.PathLike,
    out: str | os.PathLike,
    *,
    work_dir: str | os.PathLike,
    num_simulations: int = 40_000,
    noisy_simulations: int = 0,
    focus_boxes: Sequence[tuple[tuple[float, float], tuple[float, float]]] = (),
    focus_simulations: int = 0,
    seed: int = 100,
    chunk_size: int = 2000,
    hidden_features: int = 64,
    num_transforms: int = 5,
    passes: int | None = 2,
    max_epochs: int = DEFAULT_FREE_TRAINING["max_num_epochs"],
    fidelity_observations: int = 100,
    fidelity_cells: int = 64,
    torch_threads: int = 1,
    quiet: bool = False,
    overwrite: bool = False,
    jitter: tuple[float, float] | None | str = "posterior",
    seed_law_widening: float = 1.0,
    defined_scaling: bool = False,
    recalibration_pairs: int = 4000,
) -> dict[str, Any]:
    """Give a pretrained DIC posterior a learned law of the free conductances ``q(z | t, x)`` and save both.

    1. Campaigns over the posterior's own :class:`~dic_sbi.sbi.DICPrior` with its protocol and features (the
       stores keep every cell): noise-free, and, for a posterior that takes the noise level as a known input,
       noisy with σ drawn from its trained range (that many ``noisy_simulations``); and ``focus_simulations``
       noise-free ones per box of ``focus_boxes``, DICs uniform on that box (reachable part), where a firing
       class is rare under the posterior's prior: q(z | t, x) is a law *given* t, so the law of t it is trained
       under moves only where its capacity goes, not what it converges to.
    2. :func:`~dic_sbi.sbi.train_free_conductances` on ``(t, cells, x)`` (``x`` with the known conditions).
    2b. With ``recalibration_pairs``, the law's location recalibrated on that many new simulations (seeds
       ``seed + 50``, ``+ 51``; :func:`recalibrate_free_conductances`), 0 for none.
    3. Population fidelity (:func:`~dic_sbi.sbi.evaluation.population_fidelity`) on a new noise-free held-out
       set (and a noisy one for a noise-aware posterior), seed law against learned law on the same DIC samples;
       SBC and TARP in conductance space (:func:`~dic_sbi.sbi.evaluation.conductance_calibration`, 2 ×
       ``fidelity_observations`` pairs).
    4. ``out.pt`` (the DIC posterior's weights, unchanged), ``out.free.pt`` and ``out.json`` (the posterior's
       record plus a ``free_conductances`` record: command, campaigns, training, fidelity, calibration).
    Seeds: campaigns ``seed`` and ``seed + 1`` (focus boxes ``seed + 5``, ``seed + 6``, ...), training ``seed + 2``, held-out sets ``seed + 3`` and ``+ 4``.

    ``jitter``: spike-time jitter ``(fraction, max_sd)`` of the campaigns (:class:`~dic_sbi.campaign.CampaignSpec`),
    ``None`` for none; by default ``"posterior"``, the jitter the posterior was trained with, so that the law reads
    ``x`` as the posterior does (held-out sets are never jittered).

    ``seed_law_widening``: train the law on DIC-prior simulations whose seed law spans that factor times each
    range's log-width (:func:`~dic_sbi.models.widen_seed_law`; a registered model only): the seed law bounds how
    much of the degenerate family the law can reach. The DIC posterior is kept as it is; every cell keeps its DICs.

    ``defined_scaling``: scale each feature of ``x`` by its moments over the rows where it is defined, undefined
    entries mapped to 0 (``x_names`` of :func:`~dic_sbi.sbi.train_free_conductances`), as ``dic-sbi train
    --defined-scaling`` does for the DIC posterior.
    """
    import shlex

    import torch

    from .io.outputs import check_output
    from .sbi import DICPosterior, train_free_conductances
    from .sbi._utils import torch_threads_set
    from .sbi.features import with_conditions
    from .sbi.pretrained import load_pretrained, pretrained_info, save_pretrained, training_jitter

    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed: expected an int >= 0, got {seed!r}")
    info = pretrained_info(posterior)
    post = load_pretrained(posterior)
    m = post.model
    if isinstance(jitter, str):
        if jitter != "posterior":
            raise InvalidInputError(f"jitter: expected (fraction, max_sd), None or 'posterior', got {jitter!r}")
        jitter = training_jitter(info)
    if jitter is not None:
        from .spiketrains import check_jitter

        jitter = check_jitter(jitter)
    m_free = _widened_model(m, seed_law_widening)
    for suffix in (".pt", ".json", ".free.pt"):  # before the work, not after
        check_output(Path(out).with_suffix(suffix), kind="file", overwrite=overwrite, option="out",
                     overwrite_option="--overwrite")  # fmt: skip
    noise_cond = post.conditions.get("noise_std")
    noisy_range = next(((lo, hi) for lo, hi in noise_cond if hi > 0), None) if noise_cond else None
    if noisy_simulations and noisy_range is None:
        raise InvalidInputError("noisy_simulations: this posterior does not take the noise level as an input; "
                                "train on noise-free simulations only (0)")  # fmt: skip
    proto = {k: info["protocol"][k] for k in ("duration", "transient", "dt")}
    output = info["features"]["output"]
    started = time.perf_counter()
    work = Path(work_dir)
    focus_boxes = [tuple(tuple(float(v) for v in r) for r in b) for b in focus_boxes]
    if bool(focus_boxes) != bool(focus_simulations):
        raise InvalidInputError("focus_boxes / focus_simulations: give both (boxes and simulations per box) or neither")
    campaigns = [("clean", int(num_simulations), 0.0, int(seed))]
    if noisy_simulations:
        campaigns.append(("noisy", int(noisy_simulations), noisy_range if noisy_range[0] < noisy_range[1] else noisy_range[1],
                          int(seed) + 1))  # fmt: skip
    campaigns += [(f"focus{i}", int(focus_simulations), 0.0, int(seed) + 5 + i, box) for i, box in enumerate(focus_boxes)]
    # Stores are named after the model: a widened seed law's ("stg-wide4_dic_clean_free") never mixes with another.
    data, camp_meta, sim_seconds = dic_campaigns(m_free, campaigns, work, fields=("theta", "conductances", "x"),
                                                 suffix="_free_jitter" if jitter else "_free", output=output,
                                                 chunk_size=chunk_size, quiet=quiet, jitter=jitter, **proto)  # fmt: skip
    x = torch.as_tensor(data["x"], dtype=torch.float32)
    if post.conditions:
        x = with_conditions(x, data["noise_std"][:, None])
    t0 = time.perf_counter()
    _log(f"training q(z | t, x) on {len(x)} simulations", quiet)
    training = {**DEFAULT_FREE_TRAINING, "max_num_epochs": int(max_epochs)}
    with torch_threads_set(torch_threads):
        est, summary = train_free_conductances(m_free, data["theta"], data["conductances"], x, pair=post.pair,
                                               hidden_features=hidden_features, num_transforms=num_transforms,
                                               passes=passes, training=training, seed=int(seed) + 2, show_progress_bars=not quiet,
                                               x_names=info["features"]["names"] if defined_scaling else None)  # fmt: skip
    train_seconds = time.perf_counter() - t0
    learned = DICPosterior(post.posterior, m, pair=post.pair, simulator=post.simulator, conditions=post.conditions,
                           free_conductances=est, training_jitter=jitter, emulator=post.emulator)  # fmt: skip
    recalibration = None
    if recalibration_pairs:
        with torch_threads_set(torch_threads):
            learned, recalibration = recalibrate_free_conductances(learned, pairs=recalibration_pairs, seed=int(seed) + 50,
                                                                   chunk_size=chunk_size, quiet=quiet)  # fmt: skip
    sets = [("noise_free", 0.0, int(seed) + 3)] + ([("noisy", float(noisy_range[1]), int(seed) + 4)] if noisy_simulations else [])
    evaluation = _evaluate_free(learned, sets, fidelity_observations, fidelity_cells, output, proto, quiet)
    command = "dic-sbi train-free-conductances " + " ".join(
        (k if v is None else f"{k} {shlex.quote(str(v))}") for k, v in [
            ("--posterior", posterior), ("--out", out), ("--work", work), ("--num-simulations", num_simulations),
            ("--noisy-simulations", noisy_simulations),
            *[("--focus-box=" + ",".join(f"{v:g}" for r in b for v in r), None) for b in focus_boxes],  # "=": may start with -
            *([("--focus-simulations", focus_simulations)] if focus_boxes else []), ("--seed", seed), ("--chunk-size", chunk_size),
            ("--hidden-features", hidden_features), ("--num-transforms", num_transforms),
            ("--passes", 0 if passes is None else passes), ("--max-epochs", max_epochs),
            ("--fidelity-observations", fidelity_observations), ("--fidelity-cells", fidelity_cells),
            ("--torch-threads", torch_threads),
            ("--jitter", f"{jitter[0]:g},{jitter[1]:g}" if jitter else "none"),
            ("--seed-law-widening", f"{float(seed_law_widening):g}"),
            ("--recalibration-pairs", int(recalibration_pairs)),
            *([("--defined-scaling", None)] if defined_scaling else [])]
    )  # fmt: skip
    record = {
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "campaigns": camp_meta,
        "training": {**summary, "settings": training, "seed": int(seed) + 2, "training_seconds": train_seconds,
                     "simulation_seconds_this_run": sim_seconds,
                     "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs".strip()},
        **({"recalibration": recalibration} if recalibration else {}),
        **evaluation,
        "heldout": {"sets": [list(v) for v in sets], "fidelity_observations": int(fidelity_observations),
                    "fidelity_cells": int(fidelity_cells)},
        "total_seconds": time.perf_counter() - started,
    }  # fmt: skip
    kept = {k: v for k, v in info.items() if k not in ("format", "model", "pair", "protocol", "features", "estimator", "prior")}
    kept["free_conductances"] = record
    save_pretrained(learned, out, estimator=info["estimator"], info=kept, overwrite=overwrite)
    _log(f"wrote {out}.pt, {out}.free.pt and {out}.json", quiet)
    return json.loads(Path(f"{out}.json").read_text())


def train_emulator_for(
    posterior: str | os.PathLike,
    out: str | os.PathLike,
    *,
    work_dir: str | os.PathLike,
    num_simulations: int = 40_000,
    focus_boxes: Sequence[tuple[tuple[float, float], tuple[float, float]]] | None = None,
    focus_simulations: int = 60_000,
    noisy_simulations: int = 0,
    noisy_focus_simulations: int = 0,
    noise_std: float | tuple[float, float] = (0.5, 5.0),
    members: int = 1,
    width: int = 256,
    depth: int = 3,
    epochs: int = 200,
    held_back: float = 0.05,
    seed: int = 300,
    chunk_size: int = 2000,
    torch_threads: int = 1,
    quiet: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Give a pretrained posterior a :class:`~dic_sbi.sbi.FiringEmulator` of its model's firing, and save both.

    1. Noise-free campaigns over the posterior's :class:`~dic_sbi.sbi.DICPrior` with its protocol (summary
       features, no jitter; the stores keep every cell): ``num_simulations``, and ``focus_simulations`` per box
       of ``focus_boxes`` (default: the focus boxes of its learned law's campaigns, the bands where a firing class
       is rare under the prior and the emulator's tolerances are tightest; none when ``focus_simulations`` is 0).
       Seeds ``seed``, ``seed + 1 + i``. With ``noisy_simulations`` > 0 the emulator is *noise-aware*: that many
       more over the prior and ``noisy_focus_simulations`` per focus box, each with a current noise σ drawn
       uniformly from ``noise_std`` (stored per row; σ becomes an input), seeds ``seed + 1 + len(focus_boxes)``,
       and on from there.
    2. :func:`~dic_sbi.sbi.train_emulator` on all but ``held_back`` of the cells (seed ``seed``), and its
       accuracy on the rest (:func:`~dic_sbi.sbi.emulator.emulator_accuracy`; noise-free and noisy rows apart).
    3. ``out.pt``, ``out.json`` (with an ``emulator`` record: command, campaigns, training, accuracy),
       ``out.free.pt`` if the posterior has a learned law, and ``out.emulator.pt``.
    """
    import shlex

    from .io.outputs import check_output
    from .sbi import DICPosterior, train_emulator
    from .sbi._utils import torch_threads_set
    from .sbi.emulator import emulator_accuracy
    from .sbi.evaluation import observed_features
    from .sbi.pretrained import load_pretrained, pretrained_info, save_pretrained

    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed: expected an int >= 0, got {seed!r}")
    if not 0 < float(held_back) < 0.5:
        raise InvalidInputError(f"held_back: expected a share in (0, 0.5), got {held_back!r}")
    noisy = int(noisy_simulations) > 0 or int(noisy_focus_simulations) > 0
    noise_range = tuple(float(v) for v in np.atleast_1d(noise_std))
    noise_range = noise_range * 2 if len(noise_range) == 1 else noise_range  # one σ: the range (σ, σ)
    if noisy and not (len(noise_range) == 2 and 0 <= noise_range[0] <= noise_range[1] and noise_range[1] > 0
                      and bool(np.isfinite(noise_range).all())):
        raise InvalidInputError(f"noise_std: expected a range (low, high) with 0 <= low <= high, high > 0, got {noise_std!r}")
    info = pretrained_info(posterior)
    post = load_pretrained(posterior)
    m = post.model
    suffixes = (".pt", ".json", ".emulator.pt") + ((".free.pt",) if post.free_conductances is not None else ())
    for suffix in suffixes:  # before the work, not after
        check_output(Path(out).with_suffix(suffix), kind="file", overwrite=overwrite, option="out",
                     overwrite_option="--overwrite")  # fmt: skip
    if focus_boxes is None:
        focus_boxes = [c["box"] for c in info.get("free_conductances", {}).get("campaigns", []) if "box" in c]
    focus_boxes = [tuple(tuple(float(v) for v in r) for r in b) for b in focus_boxes] if focus_simulations else []
    proto = {k: info["protocol"][k] for k in ("duration", "transient", "dt")}
    started = time.perf_counter()
    campaigns = [("clean", int(num_simulations), 0.0, int(seed))]
    campaigns += [(f"focus{i}", int(focus_simulations), 0.0, int(seed) + 1 + i, box) for i, box in enumerate(focus_boxes)]
    if noisy:
        s0 = int(seed) + 1 + len(focus_boxes)
        sig = noise_range if noise_range[0] < noise_range[1] else noise_range[0]  # a campaign's range needs low < high
        campaigns += [("noisy", int(noisy_simulations), sig, s0)] if int(noisy_simulations) else []
        campaigns += [(f"noisyfocus{i}", int(noisy_focus_simulations), sig, s0 + 1 + i, box)
                      for i, box in enumerate(focus_boxes) if int(noisy_focus_simulations)]  # fmt: skip
    data, camp_meta, sim_seconds = dic_campaigns(m, campaigns, Path(work_dir), fields=("conductances", "x"),
                                                 suffix="_emulator", output="summary", chunk_size=chunk_size,
                                                 quiet=quiet, **proto)  # fmt: skip
    features = observed_features(data["x"])
    order = np.random.default_rng(int(seed)).permutation(len(data["x"]))
    k = int(round(float(held_back) * len(order)))
    test, fit = order[:k], order[k:]
    sigma = data["noise_std"] if noisy else None
    _log(f"training the {'noise-aware ' if noisy else ''}firing emulator ({members} × {depth} × {width}) on {fit.size} "
         "simulations", quiet)  # fmt: skip

    def on_epoch(member: int, epoch: int, total: int, loss: float) -> None:
        if not quiet and (epoch % 10 == 0 or epoch == total):
            _log(f"  member {member + 1}/{members}, epoch {epoch}/{total}: loss {loss:.4f}", quiet)

    t0 = time.perf_counter()
    # noise_max: the emulator answers for the whole range σ was drawn from, not just up to the largest σ fitted
    with torch_threads_set(torch_threads):
        emu = train_emulator(data["conductances"][fit], {c: v[fit] for c, v in features.items()}, members=members,
                             width=width, depth=depth, epochs=epochs, seed=int(seed), on_epoch=on_epoch,
                             noise_std=None if sigma is None else sigma[fit],
                             noise_max=noise_range[1] if noisy else None)  # fmt: skip
    train_seconds = time.perf_counter() - t0

    def accuracy_on(rows: np.ndarray) -> dict[str, Any]:
        return emulator_accuracy(emu, data["conductances"][rows], {c: v[rows] for c, v in features.items()},
                                 noise_std=None if sigma is None else sigma[rows])  # fmt: skip

    clean_rows = test[data["noise_std"][test] == 0]
    accuracy = {"held_back_rows": int(clean_rows.size), **accuracy_on(clean_rows)}
    if noisy:  # noise-free and noisy recordings are told apart by users, so their accuracies are too
        noisy_rows = test[data["noise_std"][test] > 0]
        accuracy["noisy"] = {"held_back_rows": int(noisy_rows.size), "noise_std": list(noise_range), **accuracy_on(noisy_rows)}
    command = "dic-sbi train-emulator " + " ".join(
        (k if v is None else f"{k} {shlex.quote(str(v))}") for k, v in [
            ("--posterior", posterior), ("--out", out), ("--work", work_dir), ("--num-simulations", num_simulations),
            *[("--focus-box=" + ",".join(f"{v:g}" for r in b for v in r), None) for b in focus_boxes],
            ("--focus-simulations", focus_simulations),
            *([("--noisy-simulations", noisy_simulations), ("--noisy-focus-simulations", noisy_focus_simulations),
               ("--noise-std", ",".join(f"{v:g}" for v in noise_range))] if noisy else []),
            ("--members", members), ("--width", width), ("--depth", depth),
            ("--epochs", epochs), ("--seed", seed), ("--chunk-size", chunk_size), ("--torch-threads", torch_threads)]
    )  # fmt: skip
    record = {
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "campaigns": camp_meta,
        "training": {"rows": int(fit.size), "epochs": int(epochs), "seed": int(seed), "training_seconds": train_seconds,
                     "noise_std": list(noise_range) if noisy else 0.0,
                     "simulation_seconds_this_run": sim_seconds,
                     "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs".strip()},
        "accuracy": accuracy,
        "total_seconds": time.perf_counter() - started,
    }  # fmt: skip
    kept = {k: v for k, v in info.items() if k not in ("format", "model", "pair", "protocol", "features", "estimator", "prior")}
    kept["emulator"] = record
    out_post = DICPosterior(post.posterior, m, pair=post.pair, calcium_path_tau=post.calcium_path_tau, simulator=post.simulator,
                            conditions=post.conditions, free_conductances=post.free_conductances,
                            training_jitter=post.training_jitter, emulator=emu)  # fmt: skip
    save_pretrained(out_post, out, estimator=info["estimator"], info=kept, overwrite=overwrite)
    _log("wrote " + ", ".join(f"{out}{x}" for x in suffixes), quiet)
    return json.loads(Path(f"{out}.json").read_text())


def law_ranks_at_truth(posterior: Any, *, pairs: int, samples: int = 100, seed: int = 0, chunk_size: int = 2000,
                       quiet: bool = True, jitter: Any = "posterior") -> dict[str, Any]:
    """The learned law alone at the truth: ``pairs`` new noise-free DIC-prior simulations of ``posterior``'s
    protocol and training jitter (``jitter``: ``"posterior"``, ``None`` or ``(fraction, max_sd)``), ``samples``
    draws of ``w = (ln gleak, logit u)`` from ``q(z | t, x)`` at each pair's true DICs and x, and the truths
    (:mod:`dic_sbi.sbi.free_conductances`).

    Returns
    -------
    dict
        ``samples`` ``(N, samples, k)``, ``truths`` ``(N, k)``, the pairs' ``dics`` ``(N, 2)`` and ``jittered``
        ``(N,)`` (their spike times were jittered), their conditioned ``x`` ``(N, x_dim)``, and ``mean_rank`` per
        coordinate (the mean share of draws below the truth: 1/2 for a calibrated law).
    """
    import torch

    from .campaign.runner import CampaignSpec, compute_chunk
    from .core.populations import free_draws

    free, sim = posterior.free_conductances, posterior.simulator
    if free is None:
        raise InvalidInputError("posterior: it has no learned free-conductance law")
    if isinstance(jitter, str):
        if jitter != "posterior":
            raise InvalidInputError(f"jitter: expected (fraction, max_sd), None or 'posterior', got {jitter!r}")
        jitter = posterior.training_jitter
    spec = CampaignSpec(free.model, "dic", num=int(pairs), chunk_size=int(chunk_size), seed=int(seed), output=sim.output,
                        duration=sim.duration, transient=sim.transient, dt=sim.dt, max_isis=sim.max_isis,
                        jitter=jitter)  # fmt: skip
    draws, truths, dics, jittered, xs = [], [], [], [], []
    for k in range(spec.n_chunks):
        _log(f"  law at the truth: chunk {k + 1}/{spec.n_chunks} ({spec.chunk_size} simulations)", quiet)
        c = compute_chunk(spec, k)
        x = posterior.condition(torch.as_tensor(c["x"], dtype=torch.float32), **posterior.conditions_among(noise_std=0.0))
        gl, u, on = free_draws(free.model, c["conductances"], pair=posterior.pair)
        keep = on & torch.isfinite(x).all(dim=1).numpy()
        if keep.any():
            truths.append(free.to_w(gl[keep], u[keep]))
            dics.append(c["theta"][keep])
            jittered.append(c["jitter_std"][keep] > 0 if "jitter_std" in c else np.zeros(int(keep.sum()), dtype=bool))
            xk = x[torch.as_tensor(keep)]
            xs.append(xk.numpy())
            draws.append(free.sample_w(c["theta"][keep], xk, int(samples), seed=np.random.default_rng([int(seed), k])))
    if not truths:
        raise InvalidInputError("pairs: no usable simulation (all silent or unreachable); simulate more")
    w, d = np.concatenate(truths), np.concatenate(draws)
    return {"samples": d, "truths": w, "dics": np.concatenate(dics), "jittered": np.concatenate(jittered),
            "x": np.concatenate(xs), "mean_rank": (d < w[:, None, :]).mean(axis=(0, 1))}


def recalibrate_free_conductances(posterior: Any, *, pairs: int = 4000, samples: int = 100, seed: int = 0,
                                  chunk_size: int = 2000, quiet: bool = False) -> tuple[Any, dict[str, Any]]:
    """A copy of ``posterior`` whose learned law has its location recalibrated on held-out simulations.

    :func:`law_ranks_at_truth` on ``pairs`` new simulations (seed ``seed``) gives the shift of each coordinate of
    ``w`` that centres its ranks (:func:`~dic_sbi.sbi.free_conductances.location_offsets`), added to the law's
    :attr:`~dic_sbi.sbi.FreeConductanceEstimator.w_offset`; ``pairs`` more (seed ``seed + 1``) measure the mean
    ranks before and after. A shift keeps ``log_prob`` exact (no Jacobian term) and every cell's DICs.

    Returns
    -------
    posterior, record
        The recalibrated :class:`~dic_sbi.sbi.DICPosterior` and what was done (offsets, mean ranks, seeds, cost).
    """
    import copy

    from .sbi import DICPosterior
    from .sbi.free_conductances import location_offsets

    if not isinstance(pairs, (int, np.integer)) or pairs < 10:
        raise InvalidInputError(f"pairs: expected an int >= 10, got {pairs!r}")
    t0 = time.perf_counter()
    _log(f"recalibrating the law's location on {pairs} held-out simulations (seed {seed})", quiet)
    fit = law_ranks_at_truth(posterior, pairs=pairs, samples=samples, seed=seed, chunk_size=chunk_size, quiet=quiet)
    free = copy.copy(posterior.free_conductances)
    shift = location_offsets(fit["samples"], fit["truths"])
    free.w_offset = shift if free.w_offset is None else free.w_offset + shift
    out = DICPosterior(posterior.posterior, posterior.model, pair=posterior.pair, calcium_path_tau=posterior.calcium_path_tau,
                       simulator=posterior.simulator, conditions=posterior.conditions, free_conductances=free,
                       training_jitter=posterior.training_jitter, emulator=posterior.emulator)  # fmt: skip
    _log(f"checking on {pairs} more (seed {int(seed) + 1})", quiet)
    check = law_ranks_at_truth(posterior, pairs=pairs, samples=samples, seed=int(seed) + 1, chunk_size=chunk_size)
    # The shifted law's seeded draws are these minus the shift: its ranks without simulating the set again.
    after = (check["samples"] - shift < check["truths"][:, None, :]).mean(axis=(0, 1))
    n = len(check["truths"])
    record = {"w_offset": [float(v) for v in free.w_offset], "coordinates": ["ln_gleak"] + [f"logit_u{i}" for i in range(free.n_draws_dim - 1)],
              "pairs": int(pairs), "samples": int(samples), "seed": int(seed), "noise_std": 0.0,
              "jitter": None if posterior.training_jitter is None else list(posterior.training_jitter),
              "fit_mean_rank": [round(float(v), 4) for v in fit["mean_rank"]],
              "check": {"seed": int(seed) + 1, "n": n, "standard_error": round(0.2887 / np.sqrt(n), 4),
                        "mean_rank_before": [round(float(v), 4) for v in check["mean_rank"]],
                        "mean_rank_after": [round(float(v), 4) for v in after]},
              "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    _log(f"  offsets {np.round(free.w_offset, 4).tolist()}; held-out mean ranks {record['check']['mean_rank_before']} → "
         f"{record['check']['mean_rank_after']}", quiet)  # fmt: skip
    return out, record


def recalibrate_free_conductances_for(name_or_path: str | os.PathLike, out: str | os.PathLike, *, pairs: int = 4000,
                                      samples: int = 100, seed: int = 500, chunk_size: int = 2000,
                                      torch_threads: int = 1, quiet: bool = False,
                                      overwrite: bool = False) -> dict[str, Any]:  # fmt: skip
    """:func:`recalibrate_free_conductances` on a pretrained posterior with a learned law, written to ``out``
    (``out.pt``, ``out.free.pt``, ``out.json``: the record gains ``free_conductances.recalibration``; its stored
    fidelity and calibration were measured before it: ``dic-sbi evaluate --free-conductances --write`` renews
    them)."""
    from .io.outputs import check_output
    from .sbi._utils import torch_threads_set
    from .sbi.pretrained import load_pretrained, pretrained_info, save_pretrained

    info = pretrained_info(name_or_path)
    if "free_conductances" not in info:
        raise InvalidInputError(f"posterior: {name_or_path} has no learned free-conductance law to recalibrate")
    for suffix in (".pt", ".json", ".free.pt"):  # before the work, not after
        check_output(Path(out).with_suffix(suffix), kind="file", overwrite=overwrite, option="out",
                     overwrite_option="--overwrite")  # fmt: skip
    post = load_pretrained(name_or_path)
    with torch_threads_set(torch_threads):
        new, record = recalibrate_free_conductances(post, pairs=pairs, samples=samples, seed=seed, chunk_size=chunk_size,
                                                    quiet=quiet)  # fmt: skip
    record["command"] = (f"dic-sbi recalibrate-free-conductances --posterior {name_or_path} --out {out} --pairs {pairs} "
                         f"--samples {samples} --seed {seed} --chunk-size {chunk_size}")  # fmt: skip
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    kept = {k: v for k, v in info.items() if k not in ("format", "model", "pair", "protocol", "features", "estimator", "prior")}
    kept["free_conductances"] = {**kept["free_conductances"], "recalibration": record}
    save_pretrained(new, out, estimator=info["estimator"], info=kept, overwrite=overwrite)
    _log(f"wrote {out}.pt, {out}.free.pt and {out}.json", quiet)
    return json.loads(Path(f"{out}.json").read_text())


def _widened_model(m: Any, factor: float) -> Any:
    """The registered model ``m`` with its seed law widened by ``factor`` (``m`` itself for 1), found by name."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not np.isfinite(factor) or factor < 1:
        raise InvalidInputError(f"seed_law_widening: expected a number >= 1, got {factor!r}")
    if factor == 1:
        return m
    try:
        registered = get_model(m.name) is m
    except DicSbiError:
        registered = False
    if not registered:
        raise InvalidInputError(f"seed_law_widening: {m.name!r} is not a registered model; widen its seed_population "
                                "ranges in its file instead")  # fmt: skip
    return get_model(f"{m.name}-wide{float(factor):g}")


def _evaluate_free(posterior: Any, sets: list, n_obs: int, n_cells: int, output: str, proto: dict, quiet: bool) -> dict[str, Any]:
    """Fidelity (seed law vs learned law) and conductance-space SBC/TARP of a posterior with a learned free law,
    on held-out sets ``(name, σ, seed)``."""
    from .sbi.evaluation import conductance_calibration, heldout_set, population_fidelity

    fidelity: dict[str, Any] = {}
    calibration: dict[str, Any] = {}
    for name, sigma, s in sets:
        _log(f"population fidelity, held-out set {name} (σ = {sigma})", quiet)
        ho = heldout_set(posterior.model, n_points=int(2 * n_obs), cells_per_point=1, noise_std=sigma, seed=s,
                         output=output, **proto)  # fmt: skip
        fidelity[name] = population_fidelity(posterior, ho, n_observations=n_obs, n_cells=n_cells, seed=s)
        for law in ("seed_law", "learned"):
            f = fidelity[name][law]
            _log(f"  {law}: fidelity {f['non_silent']['fidelity']:.3f} (spiking {f.get('spiking', {}).get('fidelity')}, "
                 f"bursting {f.get('bursting', {}).get('fidelity')})", quiet)  # fmt: skip
        _log(f"conductance-space SBC and TARP, {name}", quiet)
        calibration[name] = conductance_calibration(posterior, n_pairs=max(20, 2 * n_obs), num_posterior_samples=100,
                                                    noise_std=sigma, seed=s + 1000)  # fmt: skip
        c = calibration[name]
        _log(f"  SBC KS p min {min(c['sbc_ks_pvals']):.3f}, C2ST max {max(c['sbc_c2st_ranks']):.3f}; TARP ATC "
             f"{c['tarp_atc']:.3f}, KS p {c['tarp_ks_pval']:.3f}", quiet)  # fmt: skip
    return {"fidelity": fidelity, "calibration": calibration}


def evaluate_free_conductances(name_or_path: str | os.PathLike, *, write: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Evaluate the learned free-conductance law of a pretrained posterior again, on held-out sets rebuilt from its
    stored seeds (fidelity against the seed law, conductance-space SBC and TARP); ``write=True`` stores the result
    in its JSON record."""
    from .io.atomic import atomic_file
    from .sbi.pretrained import _paths, load_pretrained, pretrained_info

    info = pretrained_info(name_or_path)
    rec = info.get("free_conductances")
    if rec is None or "heldout" not in rec:
        raise InvalidInputError(f"posterior: {name_or_path} has no learned free-conductance law with stored held-out settings")
    post = load_pretrained(name_or_path)
    proto = {k: info["protocol"][k] for k in ("duration", "transient", "dt")}
    ho = rec["heldout"]
    sets = [(str(n), float(sig), int(s)) for n, sig, s in ho["sets"]]
    result = _evaluate_free(post, sets, ho["fidelity_observations"], ho["fidelity_cells"], info["features"]["output"], proto, quiet)
    if write:
        json_path, _ = _paths(name_or_path)
        info["free_conductances"].update(result)
        with atomic_file(json_path) as tmp:
            tmp.write_text(json.dumps(info, indent=2) + "\n")
        _log(f"updated the free-conductance metrics in {json_path}", quiet)
    return result
