"""Campaign throughput: simulations per second of ``run_campaign`` (full protocol by default), and the time it
projects for 10⁶ simulations.

    python benchmarks/campaign.py                         # STG, DIC prior, 6 s of model time, 2000 simulations
    python benchmarks/campaign.py --num 4000 --prior conductance --scheduler tcp://host:8786

The store is written to a temporary directory (or ``--store``) and removed afterwards unless ``--keep``. The
measured run includes everything a campaign does: prior draws, compensation (DIC prior), simulation, feature
encoding, checksums and zarr writes. The projection for 10⁶ is a linear extrapolation of the measured rate,
printed as such: it is not a measurement of a 10⁶-simulation run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from dic_sbi.campaign import CampaignSpec, CampaignStore, compute_chunk, run_campaign


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="stg")
    p.add_argument("--prior", default="dic", choices=("dic", "conductance"))
    p.add_argument("--num", type=int, default=2000, help="simulations measured")
    p.add_argument("--chunk-size", type=int, default=500)
    p.add_argument("--duration", type=float, help="ms (default: the model's protocol; STG 6000)")
    p.add_argument("--transient", type=float, help="ms (default: the model's protocol; STG 3000)")
    p.add_argument("--scheduler", help="dask.distributed scheduler address (default: this machine)")
    p.add_argument("--threads", type=int, help="simulator threads per chunk")
    p.add_argument("--store", help="store directory (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the store")
    p.add_argument("--target", type=float, default=1_000_000, help="campaign size to project to")
    args = p.parse_args()

    spec = CampaignSpec(args.model, args.prior, num=args.num, chunk_size=args.chunk_size, seed=0,
                        duration=args.duration, transient=args.transient)  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix="dic_sbi_campaign_bench."))
    path = Path(args.store) if args.store else tmp / "store"
    try:
        # Warm-up outside the timing: numba compilation, the DIC prior's reachable region, tables.
        warm = CampaignSpec(args.model, args.prior, num=8, chunk_size=8, seed=1, duration=args.duration,
                            transient=args.transient)  # fmt: skip
        compute_chunk(warm, 0, n_threads=args.threads)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        report = run_campaign(spec, path, scheduler=args.scheduler, n_threads=args.threads, overwrite=True, progress=True)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        st = CampaignStore.open(path)
        assert st.is_complete
        rate = args.num / wall
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"scheduler: {args.scheduler or 'local'}")  # fmt: skip
        print(f"campaign: {args.model} / {args.prior} prior, protocol {st.config['duration']:g} ms "
              f"(transient {st.config['transient']:g} ms, dt {st.config['dt']:g} ms), chunk {args.chunk_size}")  # fmt: skip
        print(f"measured: {args.num} simulations in {wall:.1f} s wall ({cpu:.1f} s CPU of this process): "
              f"{rate:.1f} simulations/s, {1000 * wall / args.num:.2f} ms each; store {_size(path)}")  # fmt: skip
        proj = args.target / rate
        print(f"PROJECTED (linear extrapolation, not measured): {args.target:.0f} simulations in {proj / 3600:.2f} h "
              f"({proj:.0f} s); store ~{_size(path, args.target / args.num)}")  # fmt: skip
        del report
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
            if args.store:
                shutil.rmtree(path, ignore_errors=True)


def _size(path: Path, factor: float = 1.0) -> str:
    b = factor * sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return f"{b / 2**20:.1f} MiB" if b < 2**30 else f"{b / 2**30:.2f} GiB"


if __name__ == "__main__":
    main()
