"""Pretrained DIC posteriors: saving a trained estimator next to its settings, and loading it back.

A pretrained posterior is two small files in one folder, ``<name>.pt`` (the ``state_dict`` of sbi's density
estimator, loaded with ``weights_only=True``: tensors only, no pickled code) and ``<name>.json`` (everything
needed to rebuild the estimator and to judge it: model, simulation protocol, features, estimator settings,
prior, training budget and seeds, held-out metrics). The package ships one per model in
``dic_sbi/data/pretrained``; ``dic-sbi train`` (:mod:`dic_sbi.train`) produces them.

    posterior = load_pretrained("stg")                 # DICPosterior, default x unset
    x = posterior.observe(spikes, t_start=0, t_stop=3000, **known)
    cells = posterior.sample((1000,), x=x)

``known`` holds the posterior's known conditions (``posterior.conditions``, e.g. ``noise_std=0.0``); a
posterior trained without conditions takes none (``condition`` then returns ``x`` unchanged).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model, model_reference
from .features import feature_names
from .posterior import DICPosterior
from .priors import DICPrior
from .simulators import DICSimulator

__all__ = ["save_pretrained", "load_pretrained", "pretrained_info", "available_pretrained", "training_jitter", "PRETRAINED_FORMAT"]

PRETRAINED_FORMAT = 1
_PROTOCOL_KEYS = ("duration", "transient", "dt", "noise_std", "i_app")


def _shipped_dir() -> Path:
    from ..data import pretrained_dir

    return pretrained_dir()


def available_pretrained() -> tuple[str, ...]:
    """Names of the posteriors shipped with the package (e.g. ``("da", "stg")``)."""
    from ..data import shipped_posteriors

    return shipped_posteriors()


def _paths(name_or_path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(name_or_path)
    if p.suffix in (".json", ".pt"):
        p = p.with_suffix("")
    elif not p.parent.parts and str(name_or_path) in available_pretrained():
        p = _shipped_dir() / str(name_or_path)
    json_path, pt_path = p.with_suffix(".json"), p.with_suffix(".pt")
    if not json_path.is_file() or not pt_path.is_file():
        raise InvalidInputError(
            f"pretrained: no posterior at {str(name_or_path)!r} (need {json_path.name} and {pt_path.name}); "
            f"shipped: {list(available_pretrained())}"
        )
    return json_path, pt_path


def pretrained_info(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The settings and held-out metrics stored next to a pretrained posterior (its JSON file, as a dict)."""
    json_path, _ = _paths(name_or_path)
    try:
        info = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InvalidInputError(f"pretrained: cannot read {json_path}: {err}") from None
    if info.get("format") != PRETRAINED_FORMAT:
        raise InvalidInputError(f"pretrained: {json_path} has format {info.get('format')!r}, this dic_sbi reads {PRETRAINED_FORMAT}")
    return info


def save_pretrained(
    posterior: DICPosterior,
    path: str | os.PathLike,
    *,
    estimator: dict[str, Any],
    info: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write ``posterior`` as ``path.pt`` + ``path.json`` (both written atomically; existing files are replaced
    only with ``overwrite=True``); its free-conductance estimator, if it has one, as ``path.free.pt``.

    Parameters
    ----------
    posterior
        A :class:`DICPosterior` wrapping an sbi ``DirectPosterior`` whose prior is a :class:`DICPrior` and whose
        simulator is the :class:`DICSimulator` it was trained on.
    path
        Destination without suffix (e.g. ``dic_sbi/data/pretrained/stg``).
    estimator
        ``build_density_estimator`` settings: ``density_estimator``, ``hidden_features``, ``num_transforms``;
        ``members`` (default 1) when the network is a :class:`~dic_sbi.sbi.ensemble.MixtureEstimator`.
    info
        Anything else to store (training budget, seeds, metrics, ...), JSON-serialisable.
    """
    from ..io.outputs import check_output, safe_output

    if not isinstance(posterior, DICPosterior):
        raise InvalidInputError(f"posterior: expected a DICPosterior, got {type(posterior).__name__}")
    inner, prior, sim = posterior.posterior, posterior.prior, posterior.simulator
    net = getattr(inner, "posterior_estimator", None)
    if net is None or not isinstance(prior, DICPrior) or not isinstance(sim, DICSimulator):
        raise InvalidInputError("posterior: needs an sbi DirectPosterior over a DICPrior, trained with a DICSimulator")
    missing = {"density_estimator", "hidden_features", "num_transforms"} - set(estimator)
    if missing:
        raise InvalidInputError(f"estimator: missing {sorted(missing)}")
    from .ensemble import MixtureEstimator

    stored_members = int(estimator.get("members", 1))
    members = len(net.members) if isinstance(net, MixtureEstimator) else 1
    if stored_members != members:  # the JSON must rebuild the network the weights belong to
        raise InvalidInputError(f"estimator: says members={stored_members}, but the posterior's network has {members}")
    meta = {
        "format": PRETRAINED_FORMAT,
        "model": model_reference(posterior.model),
        "pair": list(posterior.pair) if posterior.pair else None,
        "protocol": {k: float(getattr(sim, k)) for k in _PROTOCOL_KEYS},
        "features": {"output": sim.output, "max_isis": int(sim.max_isis),
                     "names": list(feature_names(sim.output, sim.max_isis, tuple(posterior.conditions))),
                     "conditions": {k: list(v) for k, v in posterior.conditions.items()}},
        "estimator": dict(estimator),
        "prior": {"box": [list(b) for b in prior.box], "reachable_only": prior.reachable_only,
                  "min_reachability": prior.min_reachability,
                  **({"weights": prior.weights.tolist()} if prior.weights is not None else {})},
        **(info or {}),
    }  # fmt: skip
    free = posterior.free_conductances
    if free is not None:
        meta["free_conductances"] = {"x_dim": free.x_dim, **free.settings, **meta.get("free_conductances", {})}
        meta["free_conductances"].pop("w_offset", None)  # the estimator's own, not a stale one from info
        if free.w_offset is not None:
            meta["free_conductances"]["w_offset"] = [float(v) for v in free.w_offset]
        if free.model is not posterior.model:  # a law trained on a widened seed law names its model
            meta["free_conductances"]["model"] = model_reference(free.model)
    emu = posterior.emulator
    if emu is not None:
        held = {k: v for k, v in meta.get("emulator", {}).items() if k != "noise_input"}  # the emulator's own, not stale
        meta["emulator"] = {**held, **emu.settings}
    else:
        meta.pop("emulator", None)  # a stale block from info would name weights that are not written
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    json_path, pt_path, free_path = path.with_suffix(".json"), path.with_suffix(".pt"), path.with_suffix(".free.pt")
    emu_path = path.with_suffix(".emulator.pt")
    written = (pt_path, json_path) + ((free_path,) if free is not None else ()) + ((emu_path,) if emu is not None else ())
    for p in written:  # all checked before any is written
        check_output(p, kind="file", overwrite=overwrite, option="path", overwrite_option="overwrite=True")
    with safe_output(pt_path, kind="file", overwrite=overwrite, option="path", overwrite_option="overwrite=True") as tmp:
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, tmp)
    if free is not None:
        with safe_output(free_path, kind="file", overwrite=overwrite, option="path", overwrite_option="overwrite=True") as tmp:
            torch.save({k: v.detach().cpu() for k, v in free.net.state_dict().items()}, tmp)
    if emu is not None:
        with safe_output(emu_path, kind="file", overwrite=overwrite, option="path", overwrite_option="overwrite=True") as tmp:
            torch.save({k: v.detach().cpu() for k, v in emu.state_dict().items()}, tmp)
    with safe_output(json_path, kind="file", overwrite=overwrite, option="path", overwrite_option="overwrite=True") as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    _load.cache_clear()
    _load_free.cache_clear()
    _load_emulator.cache_clear()
    return json_path, pt_path


def load_pretrained(name_or_path: str | os.PathLike, *, device: str = "cpu") -> DICPosterior:
    """The pretrained :class:`DICPosterior` of a model (``"stg"``, ``"da"``) or at a path written by
    :func:`save_pretrained`.

    The estimator is rebuilt from its stored settings and its weights loaded; the posterior's simulator is a
    :class:`DICSimulator` with the training protocol, so predictive checks simulate what the network was trained
    on. Networks are cached per process; each call wraps the cached network in a fresh sbi posterior, so a default
    x set on one posterior does not leak into another.
    """
    from sbi.inference.posteriors import DirectPosterior

    json_path, pt_path = _paths(name_or_path)
    net, prior, info = _load(str(json_path.resolve()), str(pt_path.resolve()), device)
    # A fresh sbi posterior per call around the cached network: set_default_x on one must not leak into another.
    inner = DirectPosterior(posterior_estimator=net, prior=prior, device=device)
    pair = tuple(info["pair"]) if info.get("pair") else None
    sim = DICSimulator(info["model"], pair=pair, output=info["features"]["output"],
                       max_isis=info["features"]["max_isis"], **info["protocol"])  # fmt: skip
    free = None
    if "free_conductances" in info:
        free_path = pt_path.with_suffix(".free.pt")
        if not free_path.is_file():  # checked on every call: the estimator itself is cached
            raise InvalidInputError(f"pretrained: {json_path} names a free-conductance estimator but {free_path} is missing")
        free = _load_free(str(json_path.resolve()), str(free_path.resolve()))
    emulator = None
    if "emulator" in info:
        emu_path = pt_path.with_suffix(".emulator.pt")
        if not emu_path.is_file():
            raise InvalidInputError(f"pretrained: {json_path} names a firing emulator but {emu_path} is missing")
        emulator = _load_emulator(str(json_path.resolve()), str(emu_path.resolve()))
    return DICPosterior(inner, info["model"], pair=pair, simulator=sim, conditions=info["features"].get("conditions"),
                        free_conductances=free, training_jitter=training_jitter(info), emulator=emulator)  # fmt: skip


def training_jitter(info: dict[str, Any]) -> tuple[float, float] | None:
    """The spike-time jitter ``(fraction, max_sd)`` a pretrained posterior's campaigns were run with (``info``:
    :func:`pretrained_info`), or ``None``."""
    found = {tuple(c["jitter"]) for c in info.get("training", {}).get("campaigns", []) if c.get("jitter")}
    if len(found) > 1:
        raise InvalidInputError(f"posterior: its campaigns used different jitters {sorted(found)}; give jitter explicitly")
    return tuple(float(v) for v in found.pop()) if found else None


@lru_cache(maxsize=8)
def _load_free(json_path: str, free_path: str) -> Any:
    """The free-conductance estimator stored next to a posterior."""
    from ..core.populations import seed_distribution
    from .free_conductances import FreeConductanceEstimator, build_free_conductance_net

    info = pretrained_info(json_path)["free_conductances"]
    # Estimators saved before "passes" was stored are fully autoregressive (None).
    settings = {"hidden_features": int(info["hidden_features"]), "num_transforms": int(info["num_transforms"]),
                "passes": info.get("passes")}
    members = int(info.get("members", 1))  # a mixture of laws (mixture_free_conductances): every member's weights
    model = get_model(info.get("model", pretrained_info(json_path)["model"]))
    gen = torch.Generator().manual_seed(0)
    # Shapes only: the state dict overwrites every statistic fitted on these batches.
    w = torch.randn((64, seed_distribution(model).free_index.size + 1), generator=gen)
    cond = torch.randn((64, int(info["x_dim"]) + 2), generator=gen)
    nets = [build_free_conductance_net(w, cond, **settings) for _ in range(members)]
    net = nets[0]
    if members > 1:
        from .ensemble import MixtureEstimator

        net, settings["members"] = MixtureEstimator(nets), members
    try:
        net.load_state_dict(torch.load(free_path, map_location="cpu", weights_only=True))
    except Exception as err:  # corrupt file, or weights of another architecture
        raise InvalidInputError(f"pretrained: cannot load the weights {free_path}: {err}") from None
    pair = pretrained_info(json_path).get("pair")
    return FreeConductanceEstimator(net.eval(), model, x_dim=int(info["x_dim"]), pair=tuple(pair) if pair else None,
                                    settings=settings, w_offset=info.get("w_offset"))  # fmt: skip


@lru_cache(maxsize=8)
def _load_emulator(json_path: str, emu_path: str) -> Any:
    """The firing emulator stored next to a posterior."""
    from .emulator import FiringEmulator

    info = pretrained_info(json_path)["emulator"]
    try:
        emu = FiringEmulator(int(info["n_conductances"]), width=int(info["width"]), depth=int(info["depth"]),
                             members=int(info["members"]), noise_input=bool(info.get("noise_input", False)))  # fmt: skip
        emu.load_state_dict(torch.load(emu_path, map_location="cpu", weights_only=True))
    except Exception as err:  # corrupt file, or weights of another architecture
        raise InvalidInputError(f"pretrained: cannot load the emulator {emu_path}: {err}") from None
    return emu.eval()


@lru_cache(maxsize=8)
def _load(json_path: str, pt_path: str, device: str) -> tuple[Any, DICPrior, dict[str, Any]]:
    from .training import build_density_estimator

    info = pretrained_info(json_path)
    model: ConductanceModel = get_model(info["model"])
    p = info["prior"]
    prior = DICPrior(model, box=tuple(tuple(b) for b in p["box"]), reachable_only=p["reachable_only"],
                     min_reachability=p["min_reachability"], weights=p.get("weights"))  # fmt: skip
    est = info["estimator"]
    k = len(info["features"]["names"])
    # Shapes only: every statistic the builder would fit on these batches is overwritten by the state dict.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((64, k), generator=gen)
    theta = prior.sample((64,), seed=0)
    builder = build_density_estimator(
        est["density_estimator"], x, info["features"]["output"], info["features"]["max_isis"], prior=prior,
        hidden_features=est["hidden_features"], num_transforms=est["num_transforms"],
        n_conditions=len(info["features"].get("conditions") or {}), defined_scaling=bool(est.get("defined_scaling", False)),
    )  # fmt: skip
    members = int(est.get("members", 1))
    if members > 1:  # an ensemble (dic-sbi train --members): its state dict holds every member
        from .ensemble import MixtureEstimator

        net = MixtureEstimator([builder(theta, x) for _ in range(members)])
    else:
        net = builder(theta, x)
    try:
        state = torch.load(pt_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as err:  # corrupt file, or weights of another architecture
        raise InvalidInputError(f"pretrained: cannot load the weights {pt_path}: {err}") from None
    net.eval()
    net.to(device)
    return net, prior, info
