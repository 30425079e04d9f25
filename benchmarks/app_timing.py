"""The app's acceptance timings, measured as a person meets them, in headless Chromium (issue 18):

1. ``dic-sbi app`` started → its page served (HTTP 200 with the page), from the process start;
2. "Use example" clicked → the validated 1 000-cell population's raster on screen (image loaded in the page),
   with the page's defaults (STG example, 1 000 cells, validate on, the example's known noise σ).

Each repetition starts a new server process. The compiled kernels live in on-disk caches (the simulator's
generated module in ``DIC_SBI_CACHE_DIR``, numba's compiled code in ``NUMBA_CACHE_DIR`` or next to the package's
sources): ``--cold`` points both at empty folders, as on the very first run after an install, so every kernel is
compiled during the measurement.

    python benchmarks/app_timing.py [--repeats 3] [--cold] [--json benchmarks/results/app_timing.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

from dic_sbi.app.testing import AppProcess, chromium, click, wait_for, wait_for_image


def one_run(env: dict[str, str]) -> dict[str, float]:
    with AppProcess(env=env, timeout=120) as app:
        driver = chromium()
        try:
            driver.get(app.url)
            wait_for(driver, "button", "Use example", timeout=60)
            t0 = time.perf_counter()
            click(driver, "Use example")
            wait_for(driver, ".dic-spike-count", "48 spikes", timeout=60)
            click(driver, "Run")
            wait_for_image(driver, ".dic-raster", timeout=600)
            on_screen = time.perf_counter() - t0
        finally:
            driver.quit()
    return {"page_served_s": app.served_after, "example_to_population_s": on_screen}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cold", action="store_true", help="empty kernel cache for every repetition")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    runs = []
    load_before = os.getloadavg()
    for k in range(args.repeats):
        env = ({"DIC_SBI_CACHE_DIR": tempfile.mkdtemp(prefix="dic_sbi_cold_"),
                "NUMBA_CACHE_DIR": tempfile.mkdtemp(prefix="numba_cold_")} if args.cold else {})  # fmt: skip
        runs.append(one_run(env))
        print(f"run {k + 1}: {runs[-1]}", flush=True)
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.platform()})",
        "kernel_cache": "empty (cold: DIC_SBI_CACHE_DIR and NUMBA_CACHE_DIR)" if args.cold else "warm",
        # the machine may be shared: the 1-minute load average before and after the runs
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "repeats": args.repeats,
        **{f"median_{key}": round(statistics.median(r[key] for r in runs), 2) for key in runs[0]},
        "runs": runs,
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)
            fh.write("\n")


if __name__ == "__main__":
    sys.exit(main())
