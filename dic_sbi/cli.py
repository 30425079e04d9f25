"""``dic-sbi`` command line (application layer).

    dic-sbi population --model stg --g-s 4 --g-u 5 -n 1000 --out pop.csv [--validate]
    dic-sbi simulate CONDUCTANCES.csv --model stg --out spikes.csv [--nix spikes.nix]
    dic-sbi simulate --model stg --prior dic|conductance --num 1000000 --store DIR [--scheduler ADDRESS]
    dic-sbi demo --out DIR
    dic-sbi compare --model stg --budgets 1000,10000,100000 --observations 100 --out DIR

Every command writes its outputs atomically (to a temporary name, renamed when complete) and exits with a
non-zero status and a one-line message on bad input, leaving nothing partial behind. A campaign (``simulate
--store``) writes chunk by chunk, each chunk marked complete only once written: run the same command again to
resume it after an interruption.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DicSbiError
from .io.atomic import atomic_directory, atomic_file

__all__ = ["main"]


# -- output helpers -----------------------------------------------------------------------------------------


def _write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeded."""
    with atomic_file(path) as tmp:
        write(tmp)


def write_conductances_csv(path: Path, names: Sequence[str], g: np.ndarray, extra: dict | None = None) -> None:
    """One row per cell: ``cell`` then one column per conductance (mS/cm²), then ``extra`` columns."""
    extra = extra or {}

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["cell", *names, *extra])
            for i, row in enumerate(g):
                w.writerow([i, *(f"{v:.10g}" for v in row), *(_fmt(extra[k][i]) for k in extra)])

    _write_atomic(path, write)


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v)


def write_spikes_csv(path: Path, result) -> None:
    """Spike2Pop-style CSV: ``ID`` and the spike times (ms) as ``"[t1, t2, ...]"``."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["ID", "spike_times_ms"])
            for i, t in enumerate(result):
                w.writerow([i, "[" + ", ".join(f"{x:.4f}" for x in t) + "]"])

    _write_atomic(path, write)


def write_spikes_nix(path: Path, result) -> None:
    """All cells as ``neo.SpikeTrain`` objects of one segment, in a NIX file."""
    import neo
    from neo.io import NixIO

    def write(tmp: Path) -> None:
        tmp.unlink()  # NixIO refuses to overwrite in mode "ow" an empty non-NIX file
        block = neo.Block(name=f"dic_sbi {result.model.name} simulation")
        seg = neo.Segment(name="simulation")
        seg.spiketrains.extend(result.spiketrains())
        block.segments.append(seg)
        with NixIO(str(tmp), mode="ow") as io:
            io.write_block(block)

    _write_atomic(path, write)


def read_conductances_csv(path: Path, names: Sequence[str]) -> np.ndarray:
    """Read a CSV with one column per conductance (by name; extra columns ignored)."""
    if not path.is_file():
        raise DicSbiError(f"{path}: no such file")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
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


def _fidelity(features: dict, target_class: str | None = None) -> dict:
    classes, counts = np.unique(features["firing_class"], return_counts=True)
    out = {"firing_class_counts": {str(c): int(k) for c, k in zip(classes, counts)}}
    if target_class is not None:
        out["fraction_matching_class"] = float(np.mean(features["firing_class"] == target_class))
    for key in ("spiking_frequency", "burst_period", "spikes_per_burst", "intra_burst_frequency", "duty_cycle"):
        v = features[key][np.isfinite(features[key])]
        if v.size:
            out[key] = {"median": float(np.median(v)), "q05": float(np.quantile(v, 0.05)),
                        "q95": float(np.quantile(v, 0.95)), "n": int(v.size)}  # fmt: skip
    return out


def cmd_population(args: argparse.Namespace) -> int:
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
    write_conductances_csv(Path(args.out), model.conductance_names, g, extra)
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
    model = dic_sbi.get_model(args.model)
    g = read_conductances_csv(Path(args.conductances), model.conductance_names)
    res = dic_sbi.simulate(model, g, duration=args.duration, transient=args.transient, dt=args.dt,
                           noise_std=args.noise_std, seed=args.seed, progress=not args.quiet)  # fmt: skip
    write_spikes_csv(Path(args.out), res)
    if args.nix:
        write_spikes_nix(Path(args.nix), res)
    print(json.dumps(_fidelity(res.features()), indent=1))
    return 0


def cmd_campaign(args: argparse.Namespace) -> int:
    """Simulations drawn from a prior, chunk by chunk into a resumable store (``simulate --store``)."""
    from .campaign import CampaignSpec, run_campaign

    if args.prior is None or args.num is None:
        raise DicSbiError("a campaign needs --prior (dic or conductance) and --num")
    spec = CampaignSpec(model=args.model, prior=args.prior, num=args.num, chunk_size=args.chunk_size or 1000,
                        seed=args.seed, scale=args.scale, duration=args.duration, transient=args.transient, dt=args.dt,
                        noise_std=args.noise_std, spike_times=args.spike_times)  # fmt: skip
    report = run_campaign(spec, args.store, scheduler=args.scheduler, n_threads=args.threads, overwrite=args.overwrite,
                          max_chunks=args.max_chunks, progress=not args.quiet)  # fmt: skip
    st = report.store
    print(json.dumps({"store": str(st.path), "model": spec.model, "prior": spec.prior, "num": spec.num,
                      "chunks": st.n_chunks, "complete_chunks": len(st.complete_chunks()),
                      "computed_now": len(report.computed), "found_complete": len(report.skipped),
                      "seconds": round(report.seconds, 2),
                      "simulations_per_second": round(report.simulations_per_second, 1)
                      if report.computed else None}, indent=1))  # fmt: skip
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Built-in example cells → their DICs → degenerate populations → simulated check, for both models."""
    import dic_sbi
    from .data import example_cells

    out = Path(args.out)
    with atomic_directory(out) as staging:
        summary = {}
        for name, g_example in example_cells().items():
            t0 = time.perf_counter()
            model = dic_sbi.get_model(name)
            observed = dic_sbi.simulate(model, g_example, progress=False)
            obs_feats = observed.features()
            obs_class = str(obs_feats["firing_class"][0])
            _, g_s, g_u = dic_sbi.dics(model, g_example)
            pop = dic_sbi.degenerate_population(model, g_s, g_u, args.n, seed=args.seed)
            res = dic_sbi.simulate(model, pop, progress=not args.quiet)
            feats = res.features()
            write_conductances_csv(staging / f"{name}_population.csv", model.conductance_names, pop,
                                   {"firing_class": feats["firing_class"]})  # fmt: skip
            write_spikes_csv(staging / f"{name}_observed_spikes.csv", observed)
            summary[name] = {
                "observed_firing_class": obs_class,
                "observed_features": {k: _fmt(v[0]) for k, v in obs_feats.items() if k != "firing_class_code"},
                "dics_at_reference_threshold": {"g_s": float(g_s), "g_u": float(g_u),
                                                "V_th_ref_mV": model.dics.reference_threshold},  # fmt: skip
                "population": _fidelity(feats, obs_class),
                "seconds": round(time.perf_counter() - t0, 2),
            }
            frac = summary[name]["population"]["fraction_matching_class"]
            print(f"{name}: example cell is {obs_class} (g_s = {float(g_s):.2f}, g_u = {float(g_u):.2f}); "
                  f"{args.n} degenerate cells, {100 * frac:.1f} % fire the same way", flush=True)  # fmt: skip
        (staging / "report.json").write_text(json.dumps(summary, indent=1))
    print(f"wrote {out}/")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """DIC-space NPE against NPE over conductances (linear, log box priors): tables and plots in ``--out``."""
    from .compare import compare

    try:
        budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        raise DicSbiError(f"--budgets: expected comma-separated integers, got {args.budgets!r}") from None
    training = {"max_num_epochs": args.max_epochs} if args.max_epochs is not None else None
    result = compare(args.model, budgets, args.observations, seed=args.seed, num_posterior_samples=args.samples,
                     calibration_simulations=args.calibration_simulations, duration=args.duration,
                     transient=args.transient, dt=args.dt, noise_std=args.noise_std, training=training,
                     torch_threads=args.torch_threads, progress=not args.quiet, out=args.out)  # fmt: skip
    print(result.markdown())
    print(f"wrote {result.out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dic-sbi", description="Degenerate neuron populations from spike times (DICs + sbi)")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", default="stg", help="model name (stg, da)")
        sp.add_argument("--seed", type=int, default=0, help="random seed")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    sp = sub.add_parser("population", help="degenerate population at a DIC target")
    common(sp)
    sp.add_argument("--g-s", type=float, required=True, help="slow DIC at the reference threshold (per gleak)")
    sp.add_argument("--g-u", type=float, required=True, help="ultraslow DIC at the reference threshold (per gleak)")
    sp.add_argument("-n", type=int, default=1000, help="cells")
    sp.add_argument("--out", required=True, help="CSV file, one row per cell")
    sp.add_argument("--validate", action="store_true", help="simulate the cells and report their firing")
    sp.set_defaults(func=cmd_population)

    sp = sub.add_parser("simulate", help="simulate conductance vectors from a CSV, or a campaign from a prior (--store)")
    common(sp)
    sp.add_argument("conductances", nargs="?", help="CSV with one column per conductance")
    sp.add_argument("--out", help="spike times CSV (ID, [t1, ...] in ms)")
    sp.add_argument("--nix", help="also write the spike trains to this NIX file")
    sp.add_argument("--duration", type=float)
    sp.add_argument("--transient", type=float)
    sp.add_argument("--dt", type=float)
    sp.add_argument("--noise-std", type=float, default=0.0)
    g = sp.add_argument_group("campaign (simulations drawn from a prior into a resumable zarr store)")
    g.add_argument("--store", help="store directory; run the same command again to resume")
    g.add_argument("--prior", choices=("dic", "conductance"), help="DICPrior or ConductancePrior")
    g.add_argument("--num", type=int, help="number of simulations")
    g.add_argument("--chunk-size", type=int, help="simulations per chunk (default 1000)")
    g.add_argument("--scale", choices=("linear", "log"), default="linear", help="conductance prior scale")
    g.add_argument("--spike-times", action="store_true", help="also keep the spike times")
    g.add_argument("--scheduler", help="dask.distributed scheduler address (default: this machine, no cluster)")
    g.add_argument("--threads", type=int, help="simulator threads per chunk")
    g.add_argument("--max-chunks", type=int, help="compute at most this many chunks now")
    g.add_argument("--overwrite", action="store_true", help="delete an existing store first")
    sp.set_defaults(func=cmd_simulate)

    sp = sub.add_parser("demo", help="run the pipeline on the built-in example cells")
    sp.add_argument("--out", default="dic_sbi_demo", help="output folder (replaced)")
    sp.add_argument("-n", type=int, default=200, help="cells per population")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("compare", help="DIC-space NPE against standard NPE over conductances (tables, plots)")
    common(sp)
    sp.add_argument("--budgets", default="1000,10000,100000", help="comma-separated simulation budgets")
    sp.add_argument("--observations", type=int, default=100, help="held-out observations per set")
    sp.add_argument("--samples", type=int, default=100, help="posterior samples per observation")
    sp.add_argument("--calibration-simulations", type=int, help="SBC/TARP pairs (default max(observations, 50))")
    sp.add_argument("--duration", type=float)
    sp.add_argument("--transient", type=float)
    sp.add_argument("--dt", type=float)
    sp.add_argument("--noise-std", type=float, default=0.0)
    sp.add_argument("--max-epochs", type=int, help="cap on training epochs (default: the recipe's)")
    sp.add_argument("--torch-threads", type=int, default=1, help="torch threads while training")
    sp.add_argument("--out", required=True, help="output folder (replaced)")
    sp.set_defaults(func=cmd_compare)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DicSbiError as err:
        print(f"dic-sbi {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
