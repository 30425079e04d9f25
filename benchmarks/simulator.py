"""Simulator benchmark (issue 2): dic_sbi.simulate against the published integration and Brian2, side by side.

For each model's default protocol (STG 6000 ms, DA 12000 ms, dt = the model default) it times, on the same cells
(by default one degenerate-population cell per DIC target drawn uniformly over the published box: the cells the
pipeline simulates, a mix of spiking and bursting; ``--workload box`` draws uniformly from the conductance box):

- dic_sbi.simulate for N = 1, 100, 10 000 cells, on one thread and on all cores, and at the previous default
  step settings (``--previous``; N = 1 000, one thread) to show what the current ones gain;
- (a) the reference integrator at the published settings (scipy BDF, rtol 1e-2, atol 1e-4, one cell at a time,
  Python right-hand side as in the published code) on a few of the cells;
- (b) Brian2 2.9 running the same equations (exponential_euler), from its own virtual environment
  (``benchmarks/brian2_setup.sh``), when that environment exists, at the steps of ``--brian2-dts``: by default
  STG at 0.04 ms (the largest dt at which Brian2's scheme is within 1 % of the reference on the STG test vector,
  i.e. equal accuracy; see brian2_runner.py) and at dic_sbi's dt; DA at 0.05 ms only (Brian2 needs 0.0015 ms for
  1 % on DA, 33x more steps: not run).

Per-cell *CPU* time is the single-core figure (this machine is shared: CPU time excludes time stolen by other
load, wall time does not); medians over repeats. Ratios are baseline / dic_sbi, one core each.

    python benchmarks/simulator.py                 # full run (~15 min on 2 cores)
    python benchmarks/simulator.py --quick         # smaller N, for a smoke test
    python benchmarks/simulator.py --models stg,pospischil --brian2-target none \
        --out benchmarks/results/simulator_pospischil.json   # the Pospischil model (4000 ms, dt 0.025) next to STG
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import dic_sbi
from accuracy import with_settings  # benchmarks/ is on sys.path when this script runs
from dic_sbi.core.reference import simulate_reference

HERE = Path(__file__).resolve().parent
BRIAN2_PYTHON = HERE / ".brian2-venv" / "bin" / "python"


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "dic_sbi": dic_sbi.__version__,
        "load_average_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def cells(model: dic_sbi.ConductanceModel, n: int, workload: str, seed: int = 0) -> np.ndarray:
    """``population``: one degenerate cell per DIC target drawn uniformly over the published box (what the
    pipeline simulates: training sets, validation); ``box``: uniform over the default conductance box."""
    rng = np.random.default_rng(seed)
    if workload == "box":
        lo, hi = model.default_bounds()
        return lo + (hi - lo) * rng.random((n, model.n_conductances))
    (s0, s1), (u0, u1) = model.dic_box
    g = dic_sbi.degenerate_population(model, rng.uniform(s0, s1, 2 * n), rng.uniform(u0, u1, 2 * n), 1, seed=rng,
                                      on_unreachable="nan")[:, 0]  # fmt: skip
    return g[np.all(np.isfinite(g), axis=1)][:n]


def time_fast(model, g: np.ndarray, threads: int | None, repeats: int) -> dict:
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = dic_sbi.simulate(model, g, n_threads=threads, progress=False)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"wall_s": float(np.median(walls)), "cpu_s": float(np.median(cpus)), "spikes": int(res.times.size)}


def time_reference(name: str, g: np.ndarray) -> list[float]:
    out = []
    for row in g:
        c0 = time.process_time()
        simulate_reference(name, row, method="BDF", rtol=1e-2, atol=1e-4)
        out.append(time.process_time() - c0)
    return out


def time_brian2(name: str, g: np.ndarray, dt: float, duration: float, transient: float, target: str,
                threads: int) -> dict | None:  # fmt: skip
    if not BRIAN2_PYTHON.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/g.npy", g)
        cmd = [str(BRIAN2_PYTHON), str(HERE / "brian2_runner.py"), "--model", name, "--conductances", f"{tmp}/g.npy",
               "--duration", str(duration), "--transient", str(transient), "--dt", str(dt), "--target", target,
               "--threads", str(threads), "--out", f"{tmp}/out.json", "--build-dir", f"{tmp}/build"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"brian2 failed: {proc.stderr[-2000:]}", file=sys.stderr)
            return None
        return json.loads(Path(f"{tmp}/out.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="N up to 500 and fewer repeats")
    ap.add_argument("--models", default="stg,da")
    ap.add_argument("--reference-cells", type=int, default=3)
    ap.add_argument("--workload", default="population", choices=("population", "box"))
    ap.add_argument("--brian2-target", default="cpp_standalone", choices=("cython", "cpp_standalone", "none"))
    ap.add_argument("--brian2-max-n", type=int, default=100, help="largest N run through Brian2")
    ap.add_argument("--brian2-threads", default="1", help="comma-separated OpenMP thread counts for cpp_standalone")
    ap.add_argument("--brian2-dts", default="stg=0.04,default;da=0.05",
                    help="per model, the dt (ms) of the Brian2 runs ('default': dic_sbi's)")
    ap.add_argument("--previous", default="stg=0.1:-45:6:2:0.02;da=0.1:-65:8:0:0.02",
                    help="per model, the previous default step settings (dt:fine_above:substeps:min_slope[:table_step])")
    ap.add_argument("--out", default=str(HERE / "results" / "simulator.json"))
    args = ap.parse_args()

    sizes = (1, 100, 500) if args.quick else (1, 100, 10_000)
    repeats = {1: 20, 100: 3, 500: 1, 10_000: 1}
    all_threads = os.cpu_count() or 1
    info = machine()
    print(f"# machine: {info['cpu']}, {info['cores']} cores, load {info['load_average_at_start']}", flush=True)
    rows = []
    for name in args.models.split(","):
        model = dic_sbi.get_model(name)
        p = model.protocol
        n_steps = int(round(p.duration / p.dt))
        g_all = cells(model, max(sizes), args.workload)
        dic_sbi.simulate(name, g_all[:2], duration=10 * p.dt, transient=0.0)  # compile outside the timings
        fast = {}
        for n in sizes:
            for threads in (1, all_threads):
                r = time_fast(name, g_all[:n], threads, repeats[n])  # the model's default protocol
                fast[(n, threads)] = r
                rows.append({"model": name, "engine": "dic_sbi", "N": n, "threads": threads,
                             "per_cell_wall_ms": 1e3 * r["wall_s"] / n, "per_cell_cpu_ms": 1e3 * r["cpu_s"] / n,
                             "ns_per_cell_step_cpu": 1e9 * r["cpu_s"] / n / n_steps})  # fmt: skip
                print(rows[-1], flush=True)
        ours_1core = rows[-2]["per_cell_cpu_ms"]  # largest N, one thread
        previous = dict(kv.split("=") for kv in args.previous.split(";") if kv).get(name)
        if previous:
            old = with_settings(model, previous)
            n = min(1000, max(sizes))
            dic_sbi.simulate(old, g_all[:2], duration=10 * p.dt, transient=0.0)
            r = time_fast(old, g_all[:n], 1, 3)
            cpu = 1e3 * r["cpu_s"] / n
            rows.append({"model": name, "engine": f"dic_sbi, previous default {previous}", "N": n, "threads": 1,
                         "per_cell_wall_ms": 1e3 * r["wall_s"] / n, "per_cell_cpu_ms": cpu,
                         "ns_per_cell_step_cpu": 1e6 * cpu / round(p.duration / old.protocol.dt),
                         "ratio_vs_dic_sbi": cpu / (1e3 * time_fast(name, g_all[:n], 1, 3)["cpu_s"] / n)})  # fmt: skip
            print(rows[-1], flush=True)
        ref = time_reference(name, g_all[: args.reference_cells])
        rows.append({"model": name, "engine": "scipy BDF rtol 1e-2 (published settings)", "N": len(ref), "threads": 1,
                     "per_cell_wall_ms": float("nan"), "per_cell_cpu_ms": 1e3 * float(np.median(ref)),
                     "ns_per_cell_step_cpu": 1e9 * float(np.median(ref)) / n_steps,
                     "ratio_vs_dic_sbi": 1e3 * float(np.median(ref)) / ours_1core})  # fmt: skip
        print(rows[-1], flush=True)
        brian2_dts = dict(kv.split("=") for kv in args.brian2_dts.split(";") if kv).get(name, "default")
        for dt_b in [p.dt if d == "default" else float(d) for d in brian2_dts.split(",")] if args.brian2_target != "none" else []:
            for n in [s for s in sizes if s <= args.brian2_max_n]:
                for threads in ([int(t) for t in args.brian2_threads.split(",")] if args.brian2_target == "cpp_standalone" else (1,)):
                    b = time_brian2(name, g_all[:n], dt_b, p.duration, p.transient, args.brian2_target, threads)
                    if b is None:
                        continue
                    per_cell_cpu = 1e3 * (b.get("cpu_s") or b["loop_wall_s"]) / n
                    ours = fast[(n, 1)]["cpu_s"] * 1e3 / n
                    rows.append({"model": name, "engine": f"brian2 {args.brian2_target}, dt {dt_b:g}", "N": n,
                                 "threads": threads, "per_cell_wall_ms": 1e3 * b["loop_wall_s"] / n,
                                 "per_cell_cpu_ms": per_cell_cpu, "ns_per_cell_step_cpu": 1e6 * per_cell_cpu / round(p.duration / dt_b),
                                 "ratio_vs_dic_sbi": per_cell_cpu / ours})  # fmt: skip
                    print(rows[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": info, "workload": args.workload, "rows": rows}, indent=1))
    print("\n| model | engine | N | threads | wall ms/cell | CPU ms/cell | CPU ns/cell-step | baseline / dic_sbi (1 core) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ratio_vs_dic_sbi']:.3g}×" if "ratio_vs_dic_sbi" in r else ""
        print(f"| {r['model']} | {r['engine']} | {r['N']} | {r['threads']} | {r['per_cell_wall_ms']:.3g} | "
              f"{r['per_cell_cpu_ms']:.3g} | {r['ns_per_cell_step_cpu']:.1f} | {ratio} |")  # fmt: skip


if __name__ == "__main__":
    main()
