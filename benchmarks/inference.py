"""Benchmark: one recording → 1 000-cell population with the pretrained posterior, on CPU (issue 5 bar: ≤ 100 ms,
validation simulations excluded).

Run from the repository root::

    python benchmarks/inference.py            # 30 repeats per model
    python benchmarks/inference.py --quick    # 5 repeats

Timed, per model, on the example recording shipped in the package (a NIX file with a membrane-potential trace):

* ``end to end``: ``dic_sbi.infer(path, model, n=1000, preview=0, screen=1)`` — reading the file with Neo, spike
  detection, summary features, 1 000 DIC samples from the posterior, compensation into 1 000 cells (no
  simulation, no screen): the bar's row;
* ``from spike train``: the same without the file (features → samples → cells), i.e. what ``TrainInference.seconds``
  reports;
* ``posterior sampling`` and the cells separately: ``compensation, seed law`` (free draws from the seed law) and,
  when the posterior has one, ``learned free conductances + compensation`` (free draws from ``q(z | t, x)``,
  what ``infer`` uses then);
* ``end to end, screened``: when the posterior has a firing emulator, ``infer`` with a screen of
  ``DEFAULT_SCREEN`` (``DEFAULT_SCREEN × n`` cells drawn and scored, ``n`` kept): what ``infer`` does by default
  for a recording whose σ the emulator knows (noise-free, or up to its σ for a noise-aware one; the example
  recordings have σ = 1);
* ``cold load``: loading the pretrained network (first call in a process; later calls hit a cache).

Wall clock and process CPU time, medians over repeats after one warm-up call; torch with ``--torch-threads``
threads (default: torch's own default, one per core, which is what ``infer`` gets; on the 2-vCPU VM, 2 threads
were ~20 ms faster end to end than 1 on 2026-12-06, though earlier runs found 1 no slower). The published pipeline needs ~2 ms of network inference on a
GPU plus 1-12 ms of population generation, and gives no uncertainty (one DIC estimate per recording).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up (numba and torch first calls)
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--torch-threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "inference.json"))
    args = p.parse_args()
    repeats = 5 if args.quick else 30

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    import dic_sbi
    from dic_sbi.core.populations import degenerate_population
    from dic_sbi.data import example_noise_std, example_recording
    from dic_sbi.io import read_recording
    from dic_sbi.sbi.pretrained import _load, load_pretrained

    rows = []
    for model in ("stg", "da"):
        _load.cache_clear()
        t0 = time.perf_counter()
        post = load_pretrained(model)
        cold = time.perf_counter() - t0
        path = example_recording(model)
        train = read_recording(path)[0]
        sigma = example_noise_std(model)  # the example recording's known noise level
        known = post.conditions_among(noise_std=sigma)
        x = post.observe(train, **known)
        d = post.sample_dics((args.n,), x=x, seed=0).to(torch.float64).numpy()
        m = post.model

        timings = {
            "end to end (file → cells)": lambda: dic_sbi.infer(path, model, args.n, seed=1, preview=0, traces=0,
                                                               noise_std=sigma, screen=1),
            # What infer does per train: DIC samples, then one cell each (learned free law when shipped).
            "from spike train (features → cells)": lambda: post.sample(
                (args.n,), x=post.observe(train, **known), seed=1
            ),
            "posterior sampling (1 000 DICs)": lambda: post.sample_dics((args.n,), x=x, seed=1),
            "compensation, seed law (1 000 cells)": lambda: degenerate_population(m, d[:, 0], d[:, 1], 1, seed=1),
        }
        if post.emulator is not None:  # infer's default where the emulator knows σ: K × n cells drawn, n kept
            from dic_sbi.inference import DEFAULT_SCREEN

            # infer's rule: the emulator's default screen is for the σ it answers for (0 only for a noise-free one)
            told = sigma if sigma <= post.emulator.noise_range[1] else 0.0
            timings[f"end to end, screened (K = {DEFAULT_SCREEN}, infer's default at σ = {told:g})"] = (
                lambda told=told: dic_sbi.infer(path, model, args.n, seed=1, preview=0, traces=0, noise_std=told,
                                                screen=DEFAULT_SCREEN)  # fmt: skip
            )
        if post.free_conductances is not None:
            timings["learned free conductances + compensation (1 000 cells)"] = (
                lambda: post.free_conductances.sample_cells(d, x, seed=1)
            )
        for name, fn in timings.items():
            wall, cpu = _timed(fn, repeats)
            rows.append({"model": model, "step": name, "wall_ms": 1000 * wall, "cpu_ms": 1000 * cpu})
        rows.append({"model": model, "step": "cold load of the network", "wall_ms": 1000 * cold, "cpu_ms": None})

    machine = (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}, "
               f"{torch.get_num_threads()} torch threads")
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"# Inference benchmark ({args.n} cells; medians of {repeats}; {machine}; load {load:.1f})\n")
    print("| model | step | wall (ms) | CPU (ms) |\n|---|---|---:|---:|")
    for r in rows:
        cpu = "" if r["cpu_ms"] is None else f"{r['cpu_ms']:.1f}"
        print(f"| {r['model']} | {r['step']} | {r['wall_ms']:.1f} | {cpu} |")
    bar = [r for r in rows if r["step"] == "end to end (file → cells)"]
    print("\nbar ≤ 100 ms end to end: " + ", ".join(f"{r['model']} {'met' if r['wall_ms'] <= 100 else 'NOT met'}" for r in bar))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "load": load, "repeats": repeats, "n": args.n, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
