"""Benchmark: degenerate populations, dic_sbi against a plain numpy implementation of the published algorithm.

Run from the repository root::

    python benchmarks/populations.py            # full run (about a minute)
    python benchmarks/populations.py --quick    # smaller populations, for a smoke test

Both sides draw the same free-conductance law and solve the same DIC systems (spec §4). The numpy baseline is
the published algorithm written plainly: a batch ``np.linalg.solve`` for the 3 × 3 seed system, then for the
compensating pair a batch 2 × 2 ``np.linalg.solve``, repeated for 5 fixed-point passes when the pair carries
calcium (starting from gCaS⁰ = 34.12 - 2.33 g_s, scaled by gleak / reference leak), one population per target,
and cells with a negative conductance dropped (so it returns fewer cells than asked). It comes in two variants:
"published" evaluates the DIC sensitivities from the kinetics at every pass, as the published DIC function is
called; "precomputed" evaluates the voltage-dependent part once (V_th is fixed) and only the calcium-dependent
column per pass, a stronger baseline. dic_sbi returns exactly n cells per target at residual <= 1e-9.
Throughput is *valid cells returned per second* (wall clock), median of repeats; the timed functions are run
interleaved, so a change in machine load hits them alike, and the ratios are the meaningful numbers on a shared
machine.

Scenarios: one target with a large population, and many targets (drawn uniformly over the part of the published
DIC box that the rule reaches for at least half of the draws) with 1 000 cells each. The STG single target
(g_s, g_u) = (-10, 8) uses the calcium pair (CaS, H); the DA one (-3, 6) uses (ERG, CaL).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dic_sbi.core.dics import dics, linearize  # noqa: E402
from dic_sbi.core.populations import degenerate_population, seed_distribution  # noqa: E402
from dic_sbi.core.reachability import reachability_map  # noqa: E402
from dic_sbi.models import get_model  # noqa: E402


# -- the published algorithm, plain numpy ----------------------------------------------------------------------
def numpy_population(
    model, g_s: float, g_u: float, n: int, rng: np.random.Generator, *, passes: int = 5, precompute: bool = False
) -> np.ndarray:
    """One population for one target, as the published code does it (cells with a negative conductance dropped)."""
    sd = seed_distribution(model)
    V = model.dics.reference_threshold
    if precompute:
        lin = linearize(model, V)
        sensitivity = lin.columns
    else:
        def sensitivity(g):  # the DIC sensitivities from the kinetics, at every call (intermediate passes may
            return linearize(model, V).columns(g)  # hold negative values, which sensitivity_matrix rejects)

    gl = rng.gamma(sd.gamma_shape, sd.gamma_scale, n)
    s = gl / sd.reference_leak
    g = np.zeros((n, model.n_conductances))
    g[:, sd.leak] = gl
    g[:, sd.free_index] = (sd.free_low + (sd.free_high - sd.free_low) * rng.random((n, sd.free_index.size))) * s[:, None]
    g[:, sd.fixed_index] = sd.fixed_value * s[:, None]
    # Seed: 3 × 3 solve for the seed conductances.
    rest = np.setdiff1d(np.arange(model.n_conductances), sd.seed_index)
    S = sensitivity(g)
    rhs = sd.seed_target * gl[:, None] - np.einsum("crj,cj->cr", S[:, :, rest], g[:, rest])
    g[:, sd.seed_index] = np.linalg.solve(S[:, :, sd.seed_index], rhs[..., None])[..., 0]
    # Move: 2 × 2 solve for the pair, fixed-point passes when Ca_inf depends on the pair.
    pair = sd.pairs[int(model.seed_population.compensation.choose(np.array(g_s), np.array(g_u)))]
    lin0 = linearize(model, V)
    carries = (lin0.ca_a[pair] != 0) | (lin0.ca_b[pair] != 0)
    if carries.any():
        g[:, pair[carries]] = ((34.12 - 2.33 * g_s) * s)[:, None]
    rest = np.setdiff1d(np.arange(model.n_conductances), pair)
    target = np.array([g_s, g_u])
    for _ in range(passes if carries.any() else 1):
        S = sensitivity(g)[:, 1:, :]
        rhs = target * gl[:, None] - np.einsum("crj,cj->cr", S[:, :, rest], g[:, rest])
        g[:, pair] = np.linalg.solve(S[:, :, pair], rhs[..., None])[..., 0]
    return g[(g >= 0).all(axis=1)]


# -- timing -----------------------------------------------------------------------------------------------------
def interleaved_medians(fns: dict, repeats: int) -> dict:
    """Median wall time of each function, run in turn ``repeats`` times (A B C A B C ...)."""
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def machine_info() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}, "
        f"numba {numba.__version__}, {platform.system()} {platform.release()}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in load)}"
    )


def reachable_targets(model: str, T: int, rng: np.random.Generator) -> np.ndarray:
    r = reachability_map(model, n_draws=200, seed=0)
    S, U = np.meshgrid(r.g_s, r.g_u)
    ok = r.rule_fraction >= 0.5
    # Uniform over the box, kept if the nearest grid point is reachable.
    out = []
    (s_lo, s_hi), (u_lo, u_hi) = get_model(model).dic_box
    while len(out) < T:
        t = np.stack([rng.uniform(s_lo, s_hi, 4 * T), rng.uniform(u_lo, u_hi, 4 * T)], axis=-1)
        i = np.abs(t[:, 1, None] - r.g_u).argmin(axis=1)
        j = np.abs(t[:, 0, None] - r.g_s).argmin(axis=1)
        out.extend(t[ok[i, j]])
    return np.array(out[:T])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small populations (smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n_single = 200_000 if args.quick else 1_000_000
    n_targets = 100 if args.quick else 1000
    base_single = 50_000 if args.quick else 200_000
    base_targets = 20 if args.quick else 100
    all_threads = numba.config.NUMBA_NUM_THREADS

    print(f"# machine: {machine_info()}")
    rows = []
    for name, single in (("stg", (-10.0, 8.0)), ("da", (-3.0, 6.0))):
        model = get_model(name)
        targets = reachable_targets(name, n_targets, np.random.default_rng(0))
        degenerate_population(model, targets[:4, 0], targets[:4, 1], 10, seed=0)  # compile

        def ours(threads, scenario):
            def run():
                numba.set_num_threads(threads)
                if scenario == "one":
                    degenerate_population(model, *single, n_single, seed=1)
                else:
                    degenerate_population(model, targets[:, 0], targets[:, 1], 1000, seed=1)
            return run

        def base(precompute, scenario):
            def run():
                r = np.random.default_rng(1)
                if scenario == "one":
                    numpy_population(model, *single, base_single, r, precompute=precompute)
                else:
                    for gs, gu in targets[:base_targets]:
                        numpy_population(model, gs, gu, 1000, r, precompute=precompute)
            return run

        for scenario, label in (("one", "1 target"), ("many", f"{n_targets} targets")):
            # Cells each baseline keeps (it drops negatives), and its DIC residual.
            r = np.random.default_rng(1)
            if scenario == "one":
                kept = [numpy_population(model, *single, base_single, r)]
                asked = base_single
            else:
                kept = [numpy_population(model, gs, gu, 1000, r) for gs, gu in targets[:base_targets]]
                asked = base_targets * 1000
            goal = [single] if scenario == "one" else targets[:base_targets]
            residual = np.mean([np.abs(dics(model, k)[:, 1:] - np.asarray(t)).mean() for k, t in zip(kept, goal)])
            n_kept = sum(k.shape[0] for k in kept)
            t = interleaved_medians(
                {
                    "ours1": ours(1, scenario),
                    "oursN": ours(all_threads, scenario),
                    "published": base(False, scenario),
                    "precomputed": base(True, scenario),
                },
                args.repeats,
            )
            ours_cells = n_single if scenario == "one" else n_targets * 1000
            for threads, key in ((1, "ours1"), (all_threads, "oursN")):
                rows.append(
                    (name, label, threads, ours_cells / t[key], n_kept / t["published"], n_kept / t["precomputed"],
                     n_kept / asked, residual)
                )
        numba.set_num_threads(all_threads)

    print()
    print("| model | scenario | threads | dic_sbi | numpy, published | ratio | numpy, S precomputed | ratio | numpy kept | numpy residual |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, scen, threads, ours_rate, pub, pre, kept, resid in rows:
        print(
            f"| {name} | {scen} | {threads} | {ours_rate / 1e6:.2f} M/s | {pub / 1e6:.3f} M/s | {ours_rate / pub:.0f}× | "
            f"{pre / 1e6:.3f} M/s | {ours_rate / pre:.1f}× | {100 * kept:.1f} % | {resid:.2g} |"
        )
    print(f"\n# load average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
