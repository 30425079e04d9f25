"""``dic-sbi`` command line (application layer).

    dic-sbi population --model stg --g-s 4 --g-u 5 -n 1000 --out pop.csv [--validate]
    dic-sbi simulate CONDUCTANCES.csv --model stg --out spikes.csv [--nix spikes.nix]
    dic-sbi simulate --model stg --prior dic|conductance --num 1000000 --store DIR [--scheduler ADDRESS]
    dic-sbi infer RECORDING --model stg -n 1000 --out DIR [--validate | --match-class] [--seed S]
    dic-sbi train --model stg --num-simulations 100000 --work DIR --out dic_sbi/data/pretrained/stg
    dic-sbi demo --out DIR
    dic-sbi compare --model stg --budgets 1000,10000,100000 --observations 100 --out DIR
    dic-sbi app [--port 5006] [--no-browser]

Every command checks where it will write before any work and writes atomically (to a hidden staging folder,
moved into place when complete): it never replaces the current or home folder, the recording or a folder holding
files it did not write, replaces a previous output only with ``--overwrite``, and refuses a second run writing
to the same place. Bad input gives a one-line message and a non-zero status, leaving nothing partial behind. A campaign (``simulate
--store``) writes chunk by chunk, each chunk marked complete only once written: run the same command again to
resume it after an interruption.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import sys
import time
import warnings
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DicSbiError
from .io.outputs import reserve_output, safe_output

__all__ = ["main"]


# -- output helpers -----------------------------------------------------------------------------------------


def _write_atomic(path: Path, write, overwrite: bool = False) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeded (a safe output file)."""
    with safe_output(path, kind="file", overwrite=overwrite) as tmp:
        write(tmp)


def write_conductances_csv(path: Path, names: Sequence[str], g: np.ndarray, extra: dict | None = None, *,
                           overwrite: bool = False) -> None:  # fmt: skip
    """One row per cell: ``cell`` then one column per conductance (mS/cm²), then ``extra`` columns; headers carry
    units (``Na [mS/cm^2]``, ``burst_period [ms]``)."""
    from .io.tables import CONDUCTANCE_UNIT, header

    extra = extra or {}

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["cell", *(header(n, CONDUCTANCE_UNIT) for n in names), *(header(k) for k in extra)])
            for i, row in enumerate(g):
                w.writerow([i, *(f"{v:.10g}" for v in row), *(_fmt(extra[k][i]) for k in extra)])

    _write_atomic(path, write, overwrite)


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v)


def write_spikes_csv(path: Path, result, *, overwrite: bool = False) -> None:
    """Spike2Pop-style CSV: ``ID`` and the spike times (ms) as ``"[t1, t2, ...]"``."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["ID", "spike_times_ms"])
            for i, t in enumerate(result):
                w.writerow([i, "[" + ", ".join(f"{x:.4f}" for x in t) + "]"])

    _write_atomic(path, write, overwrite)


def write_spikes_nix(path: Path, result, *, overwrite: bool = False) -> None:
    """All cells as ``neo.SpikeTrain`` objects of one segment, in a NIX file."""
    import neo

    from .io import write_nix_block

    block = neo.Block(name=f"dic_sbi {result.model.name} simulation")
    seg = neo.Segment(name="simulation")
    seg.spiketrains.extend(result.spiketrains())
    block.segments.append(seg)
    with safe_output(path, kind="file", overwrite=overwrite) as tmp:
        write_nix_block(tmp, block)


def read_conductances_csv(path: Path, names: Sequence[str]) -> np.ndarray:
    """Read a CSV with one column per conductance (by name, with or without a ``[unit]``; extra columns ignored)."""
    from .io.tables import column_name

    if not path.is_file():
        raise DicSbiError(f"{path}: no such file")
    with open(path, newline="") as fh:
        rows = [{column_name(k): v for k, v in r.items() if k is not None} for r in csv.DictReader(fh)]
    if not rows:
        raise DicSbiError(f"{path}: no rows")
    missing = [n for n in names if n not in rows[0]]
    if missing:
        raise DicSbiError(f"{path}: missing conductance column(s) {', '.join(missing)} (expected {', '.join(names)})")
    try:
        return np.array([[float(r[n]) for n in names] for r in rows])
    except ValueError as err:
        raise DicSbiError(f"{path}: non-numeric conductance ({err})") from None


# -- commands ---------------------------------------------------------------------------------------------


def _fidelity(features: dict) -> dict:
    from .inference import fidelity_report

    return fidelity_report(features, {})


def cmd_population(args: argparse.Namespace) -> int:
    import dic_sbi

    with reserve_output(args.out, kind="file", overwrite=args.overwrite):
        return _population(args)


def _population(args: argparse.Namespace) -> int:
    import dic_sbi

    model = dic_sbi.get_model(args.model)
    g = dic_sbi.degenerate_population(model, args.g_s, args.g_u, args.n, seed=args.seed)
    extra = {}
    report = {"model": model.name, "target": {"g_s": args.g_s, "g_u": args.g_u}, "n": args.n, "seed": args.seed}
    if args.validate:
        res = dic_sbi.simulate(model, g, progress=not args.quiet)
        feats = res.features()
        extra = {"firing_class": feats["firing_class"], "spiking_frequency": feats["spiking_frequency"],
                 "burst_period": feats["burst_period"], "spikes_per_burst": feats["spikes_per_burst"]}  # fmt: skip
        report["simulation"] = _fidelity(feats)
    write_conductances_csv(Path(args.out), model.conductance_names, g, extra, overwrite=args.overwrite)
    print(json.dumps(report, indent=1))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import dic_sbi

    campaign_args = [f"--{n.replace('_', '-')}" for n in ("prior", "num", "scheduler", "chunk_size", "max_chunks")
                     if getattr(args, n) is not None] + (["--spike-times"] if args.spike_times else [])  # fmt: skip
    if args.store is not None:
        if args.conductances is not None or args.out is not None or args.nix is not None:
            raise DicSbiError("--store runs a campaign from a prior: give --prior and --num, not a CSV, --out or --nix")
        return cmd_campaign(args)
    if campaign_args:
        raise DicSbiError(f"{', '.join(campaign_args)} need --store DIR (a campaign)")
    if args.conductances is None or args.out is None:
        raise DicSbiError("give CONDUCTANCES.csv and --out FILE, or run a campaign with --prior, --num and --store")
    if args.nix is not None and Path(args.nix).resolve() == Path(args.out).resolve():
        raise DicSbiError("--nix: the same file as --out; give two names")
    outs = [(args.out, "--out")] + ([(args.nix, "--nix")] if args.nix else [])
    with ExitStack() as stack:
        for path, option in outs:
            stack.enter_context(reserve_output(path, kind="file", overwrite=args.overwrite, option=option,
                                               protect=[args.conductances]))  # fmt: skip
        return _simulate(args)


def _simulate(args: argparse.Namespace) -> int:
    import dic_sbi

    model = dic_sbi.get_model(args.model)
    g = read_conductances_csv(Path(args.conductances), model.conductance_names)
    if isinstance(args.noise_std, tuple):
        raise DicSbiError("--noise-std: a range LOW,HIGH is drawn per simulation of a campaign (--store); give one σ here")
    res = dic_sbi.simulate(model, g, duration=args.duration, transient=args.transient, dt=args.dt,
                           noise_std=args.noise_std, seed=args.seed, progress=not args.quiet)  # fmt: skip
    write_spikes_csv(Path(args.out), res, overwrite=args.overwrite)
    if args.nix:
        write_spikes_nix(Path(args.nix), res, overwrite=args.overwrite)
    print(json.dumps(_fidelity(res.features()), indent=1))
    return 0


def _noise_arg(text: str) -> float | tuple[float, float]:
    """``--noise-std``: one σ (``5``) or a range (``0.5,5``)."""
    try:
        parts = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a σ or LOW,HIGH, got {text!r}") from None
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        return (parts[0], parts[1])
    raise argparse.ArgumentTypeError(f"expected a σ or LOW,HIGH, got {text!r}")


def cmd_campaign(args: argparse.Namespace) -> int:
    """Simulations drawn from a prior, chunk by chunk into a resumable store (``simulate --store``)."""
    from .campaign import CampaignSpec, run_campaign

    if args.prior is None or args.num is None:
        raise DicSbiError("a campaign needs --prior (dic or conductance) and --num")
    spec = CampaignSpec(model=args.model, prior=args.prior, num=args.num, chunk_size=args.chunk_size or 1000,
                        seed=args.seed, scale=args.scale, duration=args.duration, transient=args.transient, dt=args.dt,
                        noise_std=args.noise_std, spike_times=args.spike_times, box=args.box, jitter=args.jitter)  # fmt: skip
    report = run_campaign(spec, args.store, scheduler=args.scheduler, n_threads=args.threads, overwrite=args.overwrite,
                          max_chunks=args.max_chunks, progress=not args.quiet)  # fmt: skip
    st = report.store
    print(json.dumps({"store": str(st.path), "model": spec.model, "prior": spec.prior, "num": spec.num,
                      **({"store_num": st.num} if st.num != spec.num else {}),  # a grown store serving its first chunks
                      "chunks": spec.n_chunks, "complete_chunks": sum(k < spec.n_chunks for k in st.complete_chunks()),
                      "computed_now": len(report.computed), "found_complete": len(report.skipped),
                      "seconds": round(report.seconds, 2),
                      "simulations_per_second": round(report.simulations_per_second, 1)
                      if report.computed else None}, indent=1))  # fmt: skip
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``infer --validate`` on the example recordings shipped in the package (one per model), into ``--out``."""
    import dic_sbi

    from .data import example_cells, example_noise_std, example_recording
    from .inference import infer

    out = Path(args.out)
    models = ("stg", "da") if args.model is None else (args.model,)
    with safe_output(out, overwrite=args.overwrite, command="demo") as staging:
        summary = {}
        for name in models:
            t0 = time.perf_counter()
            model = dic_sbi.get_model(name)
            sigma = example_noise_std(name)
            print(f"{name}: reading {Path(example_recording(name)).name} (simulated example cell, noisy current "
                  f"σ = {sigma:g} µA/cm², validated with the same noise)", flush=True)  # fmt: skip
            result = infer(example_recording(name), name, args.n, seed=args.seed, validate=True, noise_std=sigma,
                           progress=not args.quiet)  # fmt: skip
            _print_inference(result)
            # The recording is a simulation, so the DICs behind it are known: report and plot them with the posterior.
            _, g_s, g_u = dic_sbi.dics(model, example_cells()[name])
            result.true_dics = np.array([g_s, g_u])
            result.write(staging / name, overwrite=False)
            report = result.report()
            report["true_dics_of_the_example_cell"] = {"g_s": float(g_s), "g_u": float(g_u)}
            report["seconds"] = round(time.perf_counter() - t0, 2)
            summary[name] = report
            print(f"{name}: true DICs of the example cell g_s = {float(g_s):.2f}, g_u = {float(g_u):.2f}", flush=True)
        (staging / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {out}/ (one folder per model: population.csv/.nix, dic_samples.csv, report.json, plots)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """DIC-space NPE against NPE over conductances (linear, log box priors): tables and plots in ``--out``."""
    from .comparison import compare

    try:
        budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        raise DicSbiError(f"--budgets: expected comma-separated integers, got {args.budgets!r}") from None
    training = {"max_num_epochs": args.max_epochs} if args.max_epochs is not None else None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    result = compare(args.model, budgets, args.observations, seed=args.seed, num_posterior_samples=args.samples,
                     calibration_simulations=args.calibration_simulations, duration=args.duration,
                     transient=args.transient, dt=args.dt, noise_std=args.noise_std, training=training,
                     torch_threads=args.torch_threads, progress=not args.quiet, out=args.out,
                     overwrite=args.overwrite, checkpoint=args.checkpoint, methods=methods,
                     seed_law_widening=args.seed_law_widening, wide_dic_box=args.wide_dic_box,
                     wide_dic_density=None if args.wide_dic_density == "uniform" else args.wide_dic_density, screen=args.screen,
                     replicate=args.replicate, seed_law_tail=args.seed_law_tail, members=args.members)  # fmt: skip
    print(result.markdown())
    print(f"wrote {result.out}/")
    return 0


def _read_options(args: argparse.Namespace) -> dict:
    opts = {"threshold": args.threshold, "rearm": args.rearm, "segments": _indices(args.segments),
            "channels": _indices(args.channels), "units": args.units, "t_start": args.t_start, "t_stop": args.t_stop,
            "min_spikes": args.min_spikes}  # fmt: skip
    if args.format:
        opts["format"] = args.format
    return {k: v for k, v in opts.items() if v is not None}


def _indices(text: str | None):
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    return [int(t) if t.lstrip("-").isdigit() else t for t in items]


def _print_inference(result) -> None:
    for t in result.trains:
        d = t.dics
        line = (f"train {t.index} ({t.name}): observed {t.observed_class}; g_s = {d[:, 0].mean():.2f} ± {d[:, 0].std():.2f}, "
                f"g_u = {d[:, 1].mean():.2f} ± {d[:, 1].std():.2f}; {len(d)} cells in {1000 * t.seconds:.0f} ms")  # fmt: skip
        if t.fidelity is not None:
            line += (f"; {100 * t.fidelity['fraction_matching_class']:.1f} % of {t.fidelity['simulated_cells']} "
                     f"simulated cells fire {t.observed_class}")  # fmt: skip
            if "fraction_faithful" in t.fidelity:
                line += f", {100 * t.fidelity['fraction_faithful']:.1f} % fire like the recording"
            cm = t.fidelity.get("class_matching")
            if cm:
                line += (f" (kept from {cm['drawn']} drawn, {cm['simulations']} simulations; "
                         f"{100 * cm['unfiltered_fraction_matching']:.1f} % before filtering)")  # fmt: skip
        print(line, flush=True)
        for warning in t.out_of_distribution:
            print(f"warning: train {t.index} ({t.name}): {_cli_words(warning)}", file=sys.stderr, flush=True)
    for note in result.notes:
        print(f"note: {_cli_words(note)}", flush=True)


def cmd_infer(args: argparse.Namespace) -> int:
    """Recording → DIC posterior → degenerate population, with fidelity report and plots."""
    import dic_sbi

    from .inference import _size_estimate
    from .spiketrains import SPIKE_THRESHOLD_MV

    if args.rearm is not None and args.threshold == "auto":
        raise DicSbiError("--rearm: derived from the trace with --threshold auto; give a --threshold in mV with it")
    threshold = SPIKE_THRESHOLD_MV if args.threshold is None else args.threshold
    if args.rearm is not None and threshold != "auto" and args.rearm > threshold:
        raise DicSbiError(f"--rearm ({args.rearm:g} mV) must not be above --threshold ({threshold:g} mV"
                          f"{', the default' if args.threshold is None else ''})")  # fmt: skip
    if args.t_start is not None and args.t_stop is not None and not args.t_stop > args.t_start:
        raise DicSbiError(f"--t-stop ({args.t_stop:g} ms) must be greater than --t-start ({args.t_start:g} ms)")
    if args.train is not None:
        _train_indices(args.train)
    # Enough free space for the output (at least one train's worth), before any work.
    model = dic_sbi.get_model(args.model)
    out = Path(args.out).absolute()
    place = next(p for p in (out, *out.parents) if p.exists())
    try:
        free = shutil.disk_usage(place).free
    except OSError:
        free = None
    if free is not None and args.n * (model.n_conductances + 2) * 24 > free:
        raise DicSbiError(f"-n: {args.n} cells need {_size_estimate(model, args.n)}, but {place} has "
                          f"{free / 1e9:.2g} GB free; give a smaller -n or another --out")  # fmt: skip
    with reserve_output(args.out, overwrite=args.overwrite, protect=[args.recording]):
        return _infer(args)


def _train_indices(text: str) -> list[int]:
    """``--train``: comma-separated non-negative indices."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items or not all(t.isdigit() for t in items):
        raise DicSbiError(f"--train: expected comma-separated train indices (0, 1, ...), got {text!r}")
    return [int(t) for t in items]


def _infer(args: argparse.Namespace) -> int:
    from .inference import infer

    trains = None if args.train is None else _train_indices(args.train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the out-of-distribution warnings are printed below
        result = infer(args.recording, args.model, args.n, posterior=args.posterior, seed=args.seed,
                       validate=args.validate, trains=trains, read_options=_read_options(args),
                       noise_std=args.noise_std, match_class=args.match_class, match=args.match, max_draws=args.max_draws,
                       noise_repeats=args.noise_repeats, refine=args.refine, screen=args.screen,
                       progress=not args.quiet)  # fmt: skip
    _print_inference(result)
    result.write(args.out, plots=not args.no_plots, overwrite=args.overwrite)
    print(f"wrote {args.out}/")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Simulate (resumable campaigns), train and evaluate a DIC posterior; write weights, settings, metrics."""
    from .train import train_pretrained

    training = {"max_num_epochs": args.max_epochs} if args.max_epochs is not None else {}
    if args.batch_size is not None:
        training["training_batch_size"] = args.batch_size
    with ExitStack() as stack:
        _reserve_outputs(stack, args.out, _POSTERIOR_FILES, args.overwrite)
        return _train(args, training)


def _train(args: argparse.Namespace, training: dict) -> int:
    from .train import train_pretrained

    meta = train_pretrained(
        args.model, args.out, work_dir=args.work, num_simulations=args.num_simulations,
        noisy_simulations=args.noisy_simulations, noise_std=args.noise_std, seed=args.seed,
        estimator={"hidden_features": args.hidden_features, "num_transforms": args.num_transforms,
                   "defined_scaling": args.defined_scaling, "members": args.members},
        training=training, heldout_points=args.heldout_points, cells_per_point=args.cells_per_point,
        ppc_points=args.ppc_points, ppc_cells=args.ppc_cells, torch_threads=args.torch_threads, quiet=args.quiet,
        duration=args.duration, transient=args.transient, dt=args.dt, chunk_size=args.chunk_size,
        noise_input=args.noise_input, overwrite=args.overwrite, features=args.features, device=args.device,
        jitter=args.jitter,
    )  # fmt: skip
    print(json.dumps({k: meta["metrics"][k]["accuracy"]["all"] for k in meta["metrics"]}, indent=1))
    return 0


#: Files a pretrained posterior is written to (OUT + suffix), without and with a learned free-conductance law.
_POSTERIOR_FILES = (".pt", ".json")
_LAW_FILES = (".pt", ".free.pt", ".emulator.pt", ".json")


def _reserve_outputs(stack: ExitStack, out: str, suffixes: Sequence[str], overwrite: bool) -> None:
    """Reserve ``OUT + suffix`` for each suffix until ``stack`` closes (new files unless ``overwrite``)."""
    for suffix in suffixes:
        stack.enter_context(reserve_output(Path(out).with_suffix(suffix), kind="file", overwrite=overwrite))


def _out_options(sp: argparse.ArgumentParser, suffixes: Sequence[str]) -> None:
    """``--out`` and ``--overwrite`` of a command that writes ``OUT + suffix`` for each suffix."""
    files = ", ".join(f"OUT{x}" for x in suffixes[:-1]) + f" and OUT{suffixes[-1]}"
    sp.add_argument("--out", required=True, help=f"destination without suffix (writes {files}; new files unless --overwrite)")
    sp.add_argument("--overwrite", action="store_true", help=f"replace existing {files}")


def cmd_train_free(args: argparse.Namespace) -> int:
    """Learn q(free conductances | DICs, x) for a pretrained posterior; write it with the posterior's weights."""
    from .train import train_free_conductances_for

    with ExitStack() as stack:
        _reserve_outputs(stack, args.out, _LAW_FILES, args.overwrite)
        meta = train_free_conductances_for(
            args.posterior, args.out, work_dir=args.work, num_simulations=args.num_simulations,
            noisy_simulations=args.noisy_simulations, focus_boxes=args.focus_box,
            focus_simulations=args.focus_simulations, seed=args.seed, chunk_size=args.chunk_size,
            hidden_features=args.hidden_features, num_transforms=args.num_transforms, max_epochs=args.max_epochs,
            passes=args.passes or None, fidelity_observations=args.fidelity_observations, fidelity_cells=args.fidelity_cells,
            torch_threads=args.torch_threads, quiet=args.quiet, overwrite=args.overwrite, jitter=args.jitter,
            seed_law_widening=args.seed_law_widening, defined_scaling=args.defined_scaling,
            recalibration_pairs=args.recalibration_pairs,
        )  # fmt: skip
    print(json.dumps(meta["free_conductances"]["fidelity"], indent=1))
    return 0


def cmd_train_emulator(args: argparse.Namespace) -> int:
    """Learn a firing emulator for a pretrained posterior (what infer screens with); write it with the posterior."""
    from .train import train_emulator_for

    with ExitStack() as stack:
        _reserve_outputs(stack, args.out, _LAW_FILES, args.overwrite)
        meta = train_emulator_for(
            args.posterior, args.out, work_dir=args.work, num_simulations=args.num_simulations,
            focus_boxes=args.focus_box if args.focus_box else None, focus_simulations=args.focus_simulations,
            noisy_simulations=args.noisy_simulations, noisy_focus_simulations=args.noisy_focus_simulations,
            noise_std=args.noise_std, members=args.members, width=args.width, depth=args.depth, epochs=args.epochs, seed=args.seed,
            chunk_size=args.chunk_size, torch_threads=args.torch_threads, quiet=args.quiet, overwrite=args.overwrite,
        )  # fmt: skip
    print(json.dumps(meta["emulator"]["accuracy"], indent=1))
    return 0


def cmd_recalibrate_free(args: argparse.Namespace) -> int:
    """Recalibrate the location of a pretrained posterior's learned free-conductance law on new simulations."""
    from .train import recalibrate_free_conductances_for

    with ExitStack() as stack:
        _reserve_outputs(stack, args.out, _LAW_FILES, args.overwrite)
        meta = recalibrate_free_conductances_for(args.posterior, args.out, pairs=args.pairs, samples=args.samples,
                                                 seed=args.seed, chunk_size=args.chunk_size,
                                                 torch_threads=args.torch_threads, quiet=args.quiet,
                                                 overwrite=args.overwrite)  # fmt: skip
    print(json.dumps(meta["free_conductances"]["recalibration"], indent=1))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate a pretrained posterior again on its held-out sets (rebuilt from the stored seeds)."""
    from .train import evaluate_pretrained

    from .sbi.evaluation import published_comparison
    from .sbi.pretrained import pretrained_info

    if args.free_conductances:
        from .train import evaluate_free_conductances

        print(json.dumps(evaluate_free_conductances(args.posterior, write=args.write, quiet=args.quiet), indent=1))
        return 0
    model = pretrained_info(args.posterior)["model"]
    metrics = evaluate_pretrained(args.posterior, write=args.write, quiet=args.quiet)
    summary = {}
    for name, m in metrics.items():
        summary[name] = {"accuracy": m["accuracy"]["all"],
                         "non_silent_per_class_vs_published": published_comparison(model, m["accuracy"]),
                         "coverage_90_non_silent": m.get("coverage_90_non_silent"),
                         "sbc_ks_pvals": m["sbc"]["ks_pvals"],
                         "sbc_firing_ks_pvals": m.get("sbc_firing", {}).get("ks_pvals"),
                         "tarp_ks_pval": m["tarp"]["ks_pval"], "class_reproduction": m.get("class_reproduction", {}).get("mean")}  # fmt: skip
    print(json.dumps(summary, indent=1))
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    """Serve the graphical app on this machine and open it in the browser."""
    from .app import require_panel, serve

    require_panel()  # before any message that the server starts
    serve(args.port, address=args.address, open_browser=not args.no_browser,
          on_ready=lambda url: print(f"dic-sbi app: serving {url} (Ctrl+C to stop)", flush=True))  # fmt: skip
    return 0


# -- argument types: every value checked by argparse, so that errors name the flag ------------------------------
_MATCH_KEYS = {"rate": "mean_rate", "period": "burst_period", "spikes": "spikes_per_burst"}


def _match_type(text: str) -> dict[str, float]:
    """``--match rate=0.05,period=0.2,spikes=2``: tolerances of fires_like (any subset)."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in _MATCH_KEYS:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE pairs with NAME in {', '.join(_MATCH_KEYS)}, got {part!r}")
        try:
            v = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{key.strip()}: expected a number, got {value!r}") from None
        if not (math.isfinite(v) and v >= 0):
            raise argparse.ArgumentTypeError(f"{key.strip()}: expected a finite tolerance >= 0, got {value!r}")
        out[_MATCH_KEYS[key.strip()]] = v
    return out


#: Python parameter names that a command spells differently from ``--name-with-dashes``.
_RENAMED = {"infer": {"trains": "--train"}, "train": {"num": "--num-simulations"},
            "compare": {"n_observations": "--observations", "num_posterior_samples": "--samples"}}  # fmt: skip
#: Python parameter names as the command line spells them, for messages of the API (see _cli_words).
_FLAGS = {"n": "-n", "seed": "--seed", "threshold": "--threshold", "rearm": "--rearm", "min_spikes": "--min-spikes",
          "noise_std": "--noise-std", "max_draws": "--max-draws", "noise_repeats": "--noise-repeats",
          "trains": "--train", "t_start": "--t-start", "t_stop": "--t-stop", "units": "--units", "format": "--format",
          "segments": "--segments", "sweeps": "--sweeps", "channels": "--channels", "posterior": "--posterior",
          "overwrite": "--overwrite", "out": "--out", "max_epochs": "--max-epochs", "g_s": "--g-s", "g_u": "--g-u"}  # fmt: skip


def _cli_words(message: str, flags: frozenset[str] | None = None, renamed: dict[str, str] | None = None) -> str:
    """An API message with its Python parameter names spelled as the command line's flags: ``threshold='auto'``
    → ``--threshold auto``, ``n: ...`` → ``-n: ...``, ``min_spikes`` → ``--min-spikes``. With ``flags`` (the
    command's option strings), only names the command has as flags are respelled."""
    table = {**_FLAGS, **(renamed or {})}
    if flags is not None:
        table = {k: v for k, v in {**{k: f"--{k.replace('_', '-')}" for k in _PARAMETERS}, **table}.items()
                 if v in flags}  # fmt: skip
    if not table:
        return message
    names = "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True))
    message = re.sub(rf"(?<![\w/.-])({names})=('?)([\w.+-]*)\2",
                     lambda m: f"{table[m.group(1)]} {m.group(3)}".rstrip(), message)  # fmt: skip
    message = re.sub(rf"(?<![\w/.-])({names})(?=: | must )", lambda m: table[m.group(1)], message)
    message = re.sub(rf"^({names})(?=, )", lambda m: table[m.group(1)], message)
    long = "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True) if k in _PROSE)
    if not long:
        return message
    return re.sub(rf"(?<![\w/.-])({long})(?![\w-])", lambda m: table[m.group(1)], message)


#: Parameter names respelled wherever they appear (unambiguous in prose, unlike ``g_s`` or ``n``).
_PROSE = ("min_spikes", "noise_std", "max_draws", "noise_repeats", "t_start", "t_stop")
#: Further parameter names whose flag is ``--name-with-dashes`` where a command has it.
_PARAMETERS = ("duration", "transient", "dt", "num", "chunk_size", "max_chunks", "threads", "budgets",
               "torch_threads", "num_simulations", "noisy_simulations", "hidden_features", "num_transforms",
               "heldout_points", "cells_per_point", "ppc_points", "ppc_cells", "calibration_simulations", "scale",
               "prior", "store", "scheduler", "nix", "work", "checkpoint")  # fmt: skip


def _box_type(text: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """``GS_MIN,GS_MAX,GU_MIN,GU_MAX`` → ``((g_s_min, g_s_max), (g_u_min, g_u_max))`` (DICPrior checks the rest)."""
    try:
        s_lo, s_hi, u_lo, u_hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GS_MIN,GS_MAX,GU_MIN,GU_MAX (four numbers), got {text!r}") from None
    return ((s_lo, s_hi), (u_lo, u_hi))


_box_type.__name__ = "box"


def _wide_dic_box(text: str) -> str | tuple[tuple[float, float], tuple[float, float]]:
    """``conductance`` or ``GS_MIN,GS_MAX,GU_MIN,GU_MAX``."""
    return "conductance" if text.strip() == "conductance" else _box_type(text)


_wide_dic_box.__name__ = "DIC box"


def _seed_law_tail(text: str) -> tuple[float, float]:
    """``FACTOR,WEIGHT`` → ``(tail_factor, tail_weight)`` (FACTOR > 1, 0 < WEIGHT < 1; the rest checked by the model)."""
    try:
        factor, weight = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FACTOR,WEIGHT, got {text!r}") from None
    if not (np.isfinite(factor) and factor > 1 and 0 < weight < 1):
        raise argparse.ArgumentTypeError(f"expected FACTOR > 1 and 0 < WEIGHT < 1, got {text!r}")
    return factor, weight


_seed_law_tail.__name__ = "seed-law tail"


def _jitter_type(text: str) -> tuple[float, float]:
    """``FRACTION,MAX_MS`` → ``(fraction, max_sd)`` (checked by the campaign)."""
    from .spiketrains import check_jitter

    try:
        return check_jitter(tuple(float(v) for v in text.split(",")))
    except (ValueError, DicSbiError) as err:
        raise argparse.ArgumentTypeError(f"expected FRACTION,MAX_MS (0 < FRACTION <= 1, MAX_MS > 0), got {text!r}") from err


_jitter_type.__name__ = "jitter"


def _jitter_or_none_type(text: str) -> tuple[float, float] | None | str:
    """``FRACTION,MAX_MS``, ``none``, or ``posterior`` (the posterior's own)."""
    word = text.strip().lower()
    return None if word == "none" else "posterior" if word == "posterior" else _jitter_type(text)


_jitter_or_none_type.__name__ = "jitter"


def _int_type(flag: str, minimum: int, maximum: int | None = None, what: str | None = None):
    what = what or (f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum:,}")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    parse.__name__ = flag  # argparse names the type in some messages
    return parse


def _float_type(what: str, *, minimum: float | None = None, positive: bool = False, auto: bool = False):
    def parse(text: str):
        if auto and text.strip().lower() == "auto":
            return "auto"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}{' or auto' if auto else ''}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite {what}, got {text}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum:g}, got {text}")
        if positive and not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {what}, got {text}")
        return value

    parse.__name__ = what
    return parse


def _model_arg(text: str) -> str:
    """``--model``: a registered name, or ``path/to/file.py:NAME`` (loaded now, returned as its absolute reference)."""
    from .models import available_models, get_model, is_model_file_reference, model_reference

    if is_model_file_reference(text):
        try:
            return model_reference(get_model(text))
        except DicSbiError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix("model: ")) from None
    if text.lower() in available_models():
        return text.lower()
    raise argparse.ArgumentTypeError(
        f"unknown model {text!r}; choose from {', '.join(available_models())}, or give path/to/file.py:NAME"
    )


def _seed_type():
    from .inference import MAX_SEED

    return _int_type("seed", 0, MAX_SEED, "a seed, an integer from 0 to 2**63 - 1 (what numpy and NIX store)")


def _cells_type():
    from .inference import MAX_CELLS

    return _int_type("n", 1, MAX_CELLS, f"a number of cells from 1 to {MAX_CELLS:,} (the documented limit: "
                     "about 1 GB of memory and 2 GB of output for an 8-conductance model)")


class _UsageError(SystemExit):
    """A command line argparse refuses: reported as one line by :func:`main`, like every other error (a
    ``SystemExit(2)``, as argparse's own, for callers of :func:`build_parser`)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(2)
        self.message = f"{prog}: error: {message}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints the whole usage and exits; one line is enough
        raise _UsageError(self.prog, f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from ._cli_help import document_options

    p = _Parser(prog="dic-sbi", description="Degenerate neuron populations from spike times (DICs + sbi)")
    p.add_argument("--version", action="version", version=f"dic-sbi {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    from .models import available_models

    models = available_models()

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", required=True, type=_model_arg, metavar="MODEL",
                        help=f"model: {', '.join(models)}, or a model of your own as path/to/file.py:NAME; required")
        sp.add_argument("--seed", type=_seed_type(), default=0, help="random seed, 0 to 2**63 - 1")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    sp = sub.add_parser("population", help="degenerate population at a DIC target")
    common(sp)
    sp.add_argument("--g-s", type=_float_type("DIC (per gleak)"), required=True, help="slow DIC at the reference threshold (per gleak)")
    sp.add_argument("--g-u", type=_float_type("DIC (per gleak)"), required=True, help="ultraslow DIC at the reference threshold (per gleak)")
    sp.add_argument("-n", type=_cells_type(), default=1000, help="cells (at most 10^7)")
    sp.add_argument("--out", required=True, help="CSV file, one row per cell (new, unless --overwrite)")
    sp.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    sp.add_argument("--validate", action="store_true", help="simulate the cells and report their firing")
    sp.set_defaults(func=cmd_population)

    sp = sub.add_parser("simulate", help="simulate conductance vectors from a CSV, or a campaign from a prior (--store)")
    common(sp)
    sp.add_argument("conductances", nargs="?", help="CSV with one column per conductance")
    sp.add_argument("--out", help="spike times CSV (ID, [t1, ...] in ms)")
    sp.add_argument("--nix", help="also write the spike trains to this NIX file")
    sp.add_argument("--duration", type=_float_type("duration (ms)", positive=True))
    sp.add_argument("--transient", type=_float_type("transient (ms)", minimum=0.0))
    sp.add_argument("--dt", type=_float_type("time step (ms)", positive=True))
    sp.add_argument("--noise-std", type=_noise_arg, default=0.0,
                    help="σ (µA/cm²) of the noisy current; for a campaign also a range LOW,HIGH drawn per simulation")
    g = sp.add_argument_group("campaign (simulations drawn from a prior into a resumable zarr store)")
    g.add_argument("--store", help="store directory; run the same command again to resume")
    g.add_argument("--prior", choices=("dic", "conductance"), help="DICPrior or ConductancePrior")
    g.add_argument("--num", type=_int_type("num", 1), help="number of simulations")
    g.add_argument("--chunk-size", type=_int_type("chunk-size", 1), help="simulations per chunk (default 1000)")
    g.add_argument("--scale", choices=("linear", "log"), default="linear", help="conductance prior scale")
    g.add_argument("--spike-times", action="store_true", help="also keep the spike times")
    g.add_argument("--box", type=_box_type, metavar="GS_MIN,GS_MAX,GU_MIN,GU_MAX",
                   help="DIC prior (--prior dic) over this box instead of the model's")  # fmt: skip
    g.add_argument("--jitter", type=_jitter_type, metavar="FRACTION,MAX_MS",
                   help="jitter the spike times of FRACTION of the simulations by N(0, sd²), sd ~ U(0, MAX_MS) ms, "
                        "before their features (default: none)")  # fmt: skip
    g.add_argument("--scheduler", help="dask.distributed scheduler address (default: this machine, no cluster)")
    g.add_argument("--threads", type=_int_type("threads", 1), help="simulator threads per chunk")
    g.add_argument("--max-chunks", type=_int_type("max-chunks", 1), help="compute at most this many chunks now")
    g.add_argument("--overwrite", action="store_true", help="replace existing --out/--nix files; with --store, delete "
                   "an existing campaign store first (never a folder that is not one)")
    sp.set_defaults(func=cmd_simulate)

    sp = sub.add_parser("infer", help="recording → degenerate population (pretrained DIC posterior)")
    common(sp)
    sp.add_argument("recording", help="any Neo-readable file (NIX, ABF, NWB, ...), a Spike2Pop CSV or a text file")
    sp.add_argument("-n", type=_cells_type(), default=1000, help="cells per spike train (one per posterior sample); "
                    "at most 10^7 cells in all trains together")
    sp.add_argument("--out", required=True, help="output folder: new or empty, or a previous dic-sbi output with "
                    "--overwrite")
    sp.add_argument("--overwrite", action="store_true", help="replace a previous dic-sbi output in --out")
    sp.add_argument("--validate", action="store_true", help="simulate every cell and report fidelity")
    sp.add_argument("--match-class", action="store_true", help="keep only cells that fire in the recording's class, "
                    "drawing and simulating more posterior cells until -n do (implies --validate)")
    sp.add_argument("--match", nargs="?", const={}, type=_match_type, metavar="TOLERANCES",
                    help="keep only cells that fire like the recording: its class, mean rate within 10 %%, and for "
                         "bursters burst period within 10 %% and spikes per burst within ±1; change a tolerance with "
                         "e.g. --match rate=0.05,period=0.2,spikes=2 (relative, relative, spikes) (default: off)")
    sp.add_argument("--max-draws", type=_int_type("max-draws", 1), help="with --match-class or --match: most cells drawn per train (default 20 n)")
    sp.add_argument("--noise-repeats", type=_int_type("noise-repeats", 1), help="with --match-class and --noise-std: noise realisations in "
                    "which a cell must fire in the recording's class (default 3)")
    sp.add_argument("--refine", type=_int_type("refine", 20), default=0, metavar="SIMULATIONS",
                    help="first refine the posterior for each train on this many simulations near it (one "
                         "truncated-proposal round seeded by the shipped posterior; default: off)")
    sp.add_argument("--screen", type=_int_type("screen", 1), metavar="K",
                    help="draw K × -n posterior cells per train and keep the -n that the posterior's firing emulator "
                         "finds likeliest to fire like the recording, without simulating (default: 20 when the "
                         "posterior has an emulator that knows --noise-std: 0 for a noise-free one, up to the "
                         "top of the σ range trained on for a noise-aware one; 1: the posterior's own draws)")
    sp.add_argument("--posterior", help="pretrained posterior (path written by dic-sbi train; default: shipped)")
    sp.add_argument("--train", help="comma-separated indices of the recording's spike trains (default all)")
    sp.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    sp.add_argument("--noise-std", type=_float_type("σ (µA/cm²)", minimum=0.0), help="σ (µA/cm²) of the model's noisy current: conditions a posterior "
                    "that takes the noise level as input, and is used by the validation simulations (default 0)")
    r = sp.add_argument_group("reading the recording")
    r.add_argument("--format", help="spike2pop, text, or a Neo IO name (default: from the extension)")
    r.add_argument("--threshold", type=_float_type("voltage (mV)", auto=True),
                   help="spike threshold for voltage traces (mV, default 10), or auto: threshold and re-arm level "
                        "derived from each trace (spikes peaking below 0 mV, traces resting near 0 mV)")
    r.add_argument("--rearm", type=_float_type("voltage (mV)"), help="re-arm level of the spike detection (mV, "
                   "default 0, or 10 below a negative --threshold)")
    r.add_argument("--min-spikes", type=_int_type("min-spikes", 0), help="trains (sweeps, channels) with fewer "
                   "spikes are skipped with a note (default 3)")
    r.add_argument("--segments", "--sweeps", dest="segments", help="comma-separated segment (sweep) indices")
    r.add_argument("--channels", help="comma-separated channel indices or names")
    r.add_argument("--units", help="time unit of text files (default ms) or voltage unit of unitless signals")
    r.add_argument("--t-start", type=_float_type("time (ms)", minimum=0.0), help="start of the observation window "
                   "(ms); Neo files: trains are cut to it (default: the sweep, or its stimulus epoch if the file has one)")
    r.add_argument("--t-stop", type=_float_type("time (ms)", positive=True), help="end of the observation window (ms)")
    sp.set_defaults(func=cmd_infer)

    sp = sub.add_parser("train", help="simulate, train and evaluate a pretrained DIC posterior")
    common(sp)
    _out_options(sp, _POSTERIOR_FILES)
    sp.add_argument("--work", required=True, help="folder of the resumable simulation stores")
    sp.add_argument("--num-simulations", type=_int_type("num-simulations", 1), default=100_000, help="noise-free simulations")
    sp.add_argument("--noisy-simulations", type=_int_type("noisy-simulations", 0), default=50_000, help="simulations with noisy current")
    sp.add_argument("--noise-std", type=_noise_arg, default=5.0,
                    help="noise σ (µA/cm²) of the noisy campaign and held-out set, or a range LOW,HIGH drawn per "
                         "simulation (the held-out set then uses HIGH)")
    sp.add_argument("--noise-input", action=argparse.BooleanOptionalAction, default=False,
                    help="give the network the noise level as a known input (0 or --noise-std) instead of training it "
                         "on the unlabelled mixture")
    sp.add_argument("--hidden-features", type=_int_type("hidden-features", 1), default=64)
    sp.add_argument("--num-transforms", type=_int_type("num-transforms", 1), default=5)
    sp.add_argument("--members", type=_int_type("members", 1), default=1,
                    help="networks trained on the same simulations (seeds SEED+2, SEED+1002, ...), shipped as their "
                         "equal-weight mixture: better calibrated than one (default: %(default)s)")
    sp.add_argument("--max-epochs", type=_int_type("max-epochs", 1), help="cap on training epochs (default 300, early stopping)")
    sp.add_argument("--batch-size", type=_int_type("batch-size", 1), help="training batch size (default 512)")
    sp.add_argument("--features", choices=("summary", "intervals"), default="summary",
                    help="what the network reads: the 17 summary features, or the summary plus interval statistics "
                         "(drift, variability, burst sequence) (default: %(default)s)")
    sp.add_argument("--defined-scaling", action=argparse.BooleanOptionalAction, default=False,
                    help="scale each feature by its spread over the trains where it is defined (a burst feature among "
                         "bursting trains), undefined entries mapped to 0, instead of over all trains with their "
                         "sentinels (default: %(default)s)")
    sp.add_argument("--device", default="cpu", help="torch device for training, e.g. cuda (default: %(default)s)")
    sp.add_argument("--jitter", type=_jitter_type, metavar="FRACTION,MAX_MS",
                    help="train on spike times jittered by N(0, sd²), sd ~ U(0, MAX_MS) ms, in FRACTION of the training "
                         "simulations (robustness to spike-detection imprecision; held-out sets stay unjittered) "
                         "(default: none)")  # fmt: skip
    sp.add_argument("--heldout-points", type=_int_type("heldout-points", 1), default=200, help="held-out DIC targets")
    sp.add_argument("--cells-per-point", type=_int_type("cells-per-point", 1), default=16, help="held-out cells per target")
    sp.add_argument("--ppc-points", type=_int_type("ppc-points", 1), default=100, help="held-out observations of the predictive check")
    sp.add_argument("--ppc-cells", type=_int_type("ppc-cells", 1), default=100, help="population cells simulated per such observation")
    sp.add_argument("--torch-threads", type=_int_type("torch-threads", 1), default=1)
    sp.add_argument("--chunk-size", type=_int_type("chunk-size", 1), default=2000, help="simulations per stored chunk")
    sp.add_argument("--duration", type=_float_type("duration (ms)", positive=True))
    sp.add_argument("--transient", type=_float_type("transient (ms)", minimum=0.0))
    sp.add_argument("--dt", type=_float_type("time step (ms)", positive=True))
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("train-free-conductances", help="learn which cells of each DIC's population fire like the "
                        "recording (q(free conductances | DICs, x)) for a pretrained posterior")
    sp.add_argument("--posterior", required=True, help="shipped name (stg, da) or path written by dic-sbi train")
    _out_options(sp, _LAW_FILES)
    sp.add_argument("--work", required=True, help="folder of the resumable simulation stores")
    sp.add_argument("--num-simulations", type=_int_type("num-simulations", 1), default=40_000,
                    help="noise-free simulations (default: %(default)s)")
    sp.add_argument("--noisy-simulations", type=_int_type("noisy-simulations", 0), default=0,
                    help="simulations with noisy current, σ drawn from the posterior's trained range; only for a "
                         "posterior that takes the noise level as an input (default: %(default)s)")
    sp.add_argument("--focus-box", type=_box_type, action="append", default=[], metavar="GS_MIN,GS_MAX,GU_MIN,GU_MAX",
                    help="also simulate --focus-simulations noise-free cells with DICs uniform on this box (repeat for "
                         "several), to teach the law where a firing class is rare in the posterior's prior "
                         "(default: none)")
    sp.add_argument("--focus-simulations", type=_int_type("focus-simulations", 0), default=0,
                    help="simulations per --focus-box (default: %(default)s)")
    sp.add_argument("--seed", type=_seed_type(), default=100, help="seed of campaigns (SEED, SEED+1, focus boxes "
                    "SEED+5, SEED+6, ...), training (SEED+2) and held-out sets (SEED+3, SEED+4) (default: %(default)s)")
    sp.add_argument("--chunk-size", type=_int_type("chunk-size", 1), default=2000,
                    help="simulations per stored chunk (default: %(default)s)")
    sp.add_argument("--hidden-features", type=_int_type("hidden-features", 1), default=64,
                    help="width of the flow's layers (default: %(default)s)")
    sp.add_argument("--num-transforms", type=_int_type("num-transforms", 1), default=5,
                    help="spline transforms of the flow (default: %(default)s)")
    sp.add_argument("--passes", type=_int_type("passes", 0), default=2,
                    help="network passes per spline transform when sampling: 2 = coupling layers (fast), 0 = fully "
                         "autoregressive (default: %(default)s)")
    sp.add_argument("--max-epochs", type=_int_type("max-epochs", 1), default=60,
                    help="cap on training epochs, early stopping after 15 without progress (default: %(default)s)")
    sp.add_argument("--jitter", type=_jitter_or_none_type, metavar="FRACTION,MAX_MS", default="posterior",
                    help="jitter the spike times of FRACTION of the simulations by N(0, sd²), sd ~ U(0, MAX_MS) ms; none; "
                         "or posterior: the posterior's own training jitter, so the law reads x as it does")
    sp.add_argument("--seed-law-widening", type=_float_type("seed-law widening", minimum=1.0), default=1.0,
                    help="train on a seed law spanning this factor times each free range's log-width, within the "
                         "conductance box: the law can then reach more of the degenerate family (default: %(default)s)")
    sp.add_argument("--defined-scaling", action="store_true",
                    help="scale each feature by its spread over the trains where it is defined, undefined entries "
                         "mapped to 0 (as dic-sbi train --defined-scaling)")
    sp.add_argument("--recalibration-pairs", type=_int_type("recalibration-pairs", 0), default=4000,
                    help="recalibrate the law's location on this many new simulations (and as many to check it), 0 "
                         "for none (default: %(default)s)")
    sp.add_argument("--fidelity-observations", type=_int_type("fidelity-observations", 1), default=100,
                    help="held-out non-silent observations scored for fidelity (default: %(default)s)")
    sp.add_argument("--fidelity-cells", type=_int_type("fidelity-cells", 1), default=64,
                    help="population cells simulated per scored observation (default: %(default)s)")
    sp.add_argument("--torch-threads", type=_int_type("torch-threads", 1), default=1,
                    help="torch threads while training (default: %(default)s)")
    sp.add_argument("--quiet", action="store_true", help="no progress messages")
    sp.set_defaults(func=cmd_train_free)

    sp = sub.add_parser("train-emulator", help="learn a pretrained posterior's firing emulator (ln conductances → class, "
                        "rate, burst period, spikes per burst), which infer screens candidate cells with")
    sp.add_argument("--posterior", required=True, help="shipped name (stg, da) or path written by dic-sbi train")
    _out_options(sp, _LAW_FILES)
    sp.add_argument("--work", required=True, help="folder of the resumable simulation stores")
    sp.add_argument("--num-simulations", type=_int_type("num-simulations", 100), default=40_000,
                    help="noise-free simulations over the posterior's DIC prior (default: %(default)s)")
    sp.add_argument("--focus-box", type=_box_type, action="append", default=[], metavar="GS_MIN,GS_MAX,GU_MIN,GU_MAX",
                    help="simulate --focus-simulations more on this DIC box (repeat for several; default: the focus "
                         "boxes of the posterior's learned law)")
    sp.add_argument("--focus-simulations", type=_int_type("focus-simulations", 0), default=60_000,
                    help="simulations per focus box (default: %(default)s)")
    sp.add_argument("--noisy-simulations", type=_int_type("noisy-simulations", 0), default=0,
                    help="more simulations over the prior with a noisy current, σ drawn from --noise-std per cell: the "
                         "emulator becomes noise-aware (σ an input) and infer screens noisy recordings too "
                         "(default: %(default)s, noise-free only)")
    sp.add_argument("--noisy-focus-simulations", type=_int_type("noisy-focus-simulations", 0), default=0,
                    help="noisy simulations per focus box (default: %(default)s)")
    sp.add_argument("--noise-std", type=_noise_arg, default=(0.5, 5.0), metavar="LOW,HIGH",
                    help="σ (µA/cm²) of the noisy simulations, or a range drawn per simulation (default: 0.5,5)")
    sp.add_argument("--members", type=_int_type("members", 1), default=1, help="networks in the ensemble (default: %(default)s)")
    sp.add_argument("--width", type=_int_type("width", 1), default=256, help="hidden units per layer (default: %(default)s)")
    sp.add_argument("--depth", type=_int_type("depth", 1), default=3, help="hidden layers (default: %(default)s)")
    sp.add_argument("--epochs", type=_int_type("epochs", 1), default=200, help="epochs per member (default: %(default)s)")
    sp.add_argument("--seed", type=_seed_type(), default=300, help="seed of the campaigns (SEED, focus boxes SEED+1, ...) "
                    "and of the training (default: %(default)s)")
    sp.add_argument("--chunk-size", type=_int_type("chunk-size", 1), default=2000,
                    help="simulations per stored chunk (default: %(default)s)")
    sp.add_argument("--torch-threads", type=_int_type("torch-threads", 1), default=1, help="torch threads (default: %(default)s)")
    sp.add_argument("--quiet", action="store_true", help="no progress messages")
    sp.set_defaults(func=cmd_train_emulator)

    sp = sub.add_parser("recalibrate-free-conductances", help="shift a pretrained posterior's learned free-conductance "
                        "law so that its ranks at the true DICs are centred, on new simulations")
    sp.add_argument("--posterior", required=True, help="shipped name (stg, da) or path with a learned law")
    _out_options(sp, _LAW_FILES)
    sp.add_argument("--pairs", type=_int_type("pairs", 10), default=4000,
                    help="new noise-free simulations (with the posterior's training jitter) to fit the shift on, and "
                         "as many more to check it (default: %(default)s)")
    sp.add_argument("--samples", type=_int_type("samples", 2), default=100, help="law draws per simulation (default: %(default)s)")
    sp.add_argument("--seed", type=_seed_type(), default=500, help="seed of the fit (SEED) and check (SEED+1) "
                    "simulations (default: %(default)s)")
    sp.add_argument("--chunk-size", type=_int_type("chunk-size", 1), default=2000,
                    help="simulations per batch (default: %(default)s)")
    sp.add_argument("--torch-threads", type=_int_type("torch-threads", 1), default=1, help="torch threads (default: %(default)s)")
    sp.add_argument("--quiet", action="store_true", help="no progress messages")
    sp.set_defaults(func=cmd_recalibrate_free)

    sp = sub.add_parser("evaluate", help="evaluate a pretrained posterior again on its held-out sets")
    sp.add_argument("posterior", help="shipped name (stg, da) or path written by `dic-sbi train --out`")
    sp.add_argument("--write", action="store_true", help="store the new metrics in its JSON file")
    sp.add_argument("--free-conductances", action="store_true", help="evaluate only its learned free-conductance law "
                    "(population fidelity against the seed law, conductance-space SBC and TARP)")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("demo", help="infer populations from the example recordings shipped in the package")
    sp.add_argument("--out", default="dic_sbi_demo", help="output folder: new or empty, or a previous dic-sbi output "
                    "with --overwrite (default: %(default)s)")
    sp.add_argument("--overwrite", action="store_true", help="replace a previous dic-sbi output in --out")
    sp.add_argument("--model", choices=("stg", "da"), help="only this model's example (default both)")
    sp.add_argument("-n", type=_cells_type(), default=1000, help="cells per population")
    sp.add_argument("--seed", type=_seed_type(), default=0)
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("app", help="the graphical app in the browser: a recording in, the population out")
    sp.add_argument("--port", type=_int_type("port", 1, 65535), default=5006, help="port to listen on")
    sp.add_argument("--address", default="127.0.0.1", help="address to listen on; the default serves this machine "
                    "only, 0.0.0.0 serves the network")
    sp.add_argument("--no-browser", action="store_true", help="do not open the browser")
    sp.set_defaults(func=cmd_app)

    sp = sub.add_parser("compare", help="DIC-space NPE against standard NPE over conductances (tables, plots)")
    common(sp)
    sp.add_argument("--budgets", default="1000,10000,100000", help="comma-separated simulation budgets")
    sp.add_argument("--observations", type=_int_type("observations", 1), default=100, help="held-out observations per set")
    sp.add_argument("--samples", type=_int_type("samples", 1), default=100, help="posterior samples per observation")
    sp.add_argument("--calibration-simulations", type=_int_type("calibration-simulations", 0), help="SBC/TARP pairs (default max(observations, 50))")
    sp.add_argument("--duration", type=_float_type("duration (ms)", positive=True))
    sp.add_argument("--transient", type=_float_type("transient (ms)", minimum=0.0))
    sp.add_argument("--dt", type=_float_type("time step (ms)", positive=True))
    sp.add_argument("--noise-std", type=_float_type("σ (µA/cm²)", minimum=0.0), default=0.0)
    sp.add_argument("--max-epochs", type=_int_type("max-epochs", 1), help="cap on training epochs (default: the recipe's)")
    sp.add_argument("--torch-threads", type=_int_type("torch-threads", 1), default=1, help="torch threads while training")
    sp.add_argument("--out", required=True, help="output folder: new or empty, or a previous dic-sbi output with "
                    "--overwrite")
    sp.add_argument("--overwrite", action="store_true", help="replace a previous dic-sbi output in --out")
    sp.add_argument("--checkpoint", help="folder keeping finished method x budget runs; rerun to resume")
    sp.add_argument("--methods", default="dic,conductance_linear,conductance_log,dic_learned",
                    help="comma-separated methods, among dic, conductance_linear, conductance_log, dic_learned, "
                    "dic_learned_wide (dic_learned on a widened seed law), dic_box (DIC-space posterior trained on "
                    "the linear conductance box's own cells: q(g_s, g_u | x) · q(other conductances | g_s, g_u, x), "
                    "the pair solved), dic_box_npe (dic_box whose fiber law is standard NPE's density, trained on the "
                    "same simulations, on the fiber of the drawn DICs)")
    sp.add_argument("--seed-law-widening", type=_float_type("seed-law widening", minimum=1.0), default=4.0,
                    help="factor on the log-width of the seed law's ranges for dic_learned_wide")
    sp.add_argument("--seed-law-tail", type=_seed_law_tail, default=None, metavar="FACTOR,WEIGHT",
                    help="dic_learned_wide's seed law also draws each free conductance, with probability WEIGHT, "
                    "from its range widened by FACTOR (> --seed-law-widening); default: no tail")
    sp.add_argument("--wide-dic-box", type=_wide_dic_box, default=None, metavar="conductance|GS_MIN,GS_MAX,GU_MIN,GU_MAX",
                    help="DIC box of dic_learned_wide's prior: 'conductance' = the box holding the conductance box's "
                    "cells (default: the model's published box)")
    sp.add_argument("--wide-dic-density", choices=("uniform", "conductance"), default="uniform",
                    help="density of dic_learned_wide's DIC prior on its box: uniform, or 'conductance' = following "
                    "the DICs of the conductance box's cells")
    sp.add_argument("--screen", type=_int_type("screen", 1), default=1, metavar="K",
                    help="with K > 1, also a <method>_screened row per method: K x the samples, screened by a firing "
                    "emulator trained on the method's own simulations (what infer --screen K does); 1: none")
    sp.add_argument("--replicate", type=_int_type("replicate", 0), default=0, metavar="R",
                    help="R > 0: other seeds for every method's simulations and training, the same observations "
                    "(runs R = 0, 1, 2, ... measure how much a method moves between training runs)")
    sp.add_argument("--members", type=_int_type("members", 1), default=1, metavar="K",
                    help="K > 1: every method is an ensemble of K networks trained on its simulations (the DIC-space "
                    "methods' free-conductance laws too), the equal-weight mixture; 1: one network")
    sp.set_defaults(func=cmd_compare)
    return document_options(p)  # every option's help: its default and unit


def _command_flags(parser: argparse.ArgumentParser, command: str) -> frozenset[str]:
    """The option strings of one subcommand (argparse keeps them in its actions)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return frozenset(s for a in action.choices[command]._actions for s in a.option_strings)
    return frozenset()


def _announce_model(args: argparse.Namespace) -> None:
    """For a model from a file whose DIC reference timescales were chosen automatically, say which and why."""
    from .models import get_model, is_model_file_reference

    name = getattr(args, "model", None)
    if isinstance(name, str) and is_model_file_reference(name) and not getattr(args, "quiet", False):
        reason = get_model(name).dics.reason
        if reason:
            print(f"dic-sbi: {reason}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as err:
        print(err.message, file=sys.stderr)
        return 2
    try:
        _announce_model(args)
        return int(args.func(args))
    except DicSbiError as err:
        words = _cli_words(str(err), _command_flags(parser, args.command), _RENAMED.get(args.command, {}))
        print(f"dic-sbi {args.command}: error: {words}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, permissions, ...: a message, not a traceback
        print(f"dic-sbi {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 -- a bug or an unforeseen input: one line, never a traceback
        if os.environ.get("DIC_SBI_DEBUG"):
            raise
        print(f"dic-sbi {args.command}: error: unexpected {type(err).__name__}: {err} (a bug in dic-sbi: please "
              "report it with the command; DIC_SBI_DEBUG=1 shows the traceback)", file=sys.stderr)  # fmt: skip
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
