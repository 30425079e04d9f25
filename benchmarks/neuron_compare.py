"""dic_sbi's simulator against an independent one, NEURON 9.0.2 (CVODE), on the Pospischil model (issue 19).

The cells are those of the Pospischil accuracy test (``tests/reference_data/pospischil_reference.json``: the
paper's four cells, IB cells with more L current, degenerate-population cells; spiking, bursting and silent).
Each is simulated by ``dic_sbi.simulate`` (default protocol), by NEURON through ``benchmarks/neuron_runner.py`` in
its own venv (``bash benchmarks/neuron_setup.sh``; the NMODL model there is written from the paper, not from
dic_sbi), and its stored scipy LSODA reference (rtol = atol = 1e-8) is read. Printed per cell: firing class and
the relative differences of mean ISI (spiking) or burst period and intra-burst ISI (bursting), dic_sbi vs NEURON
and NEURON vs the reference, and the largest shift of a spike time between dic_sbi and NEURON as a fraction of
the cell's mean ISI (spike by spike, when both give the same number of spikes); the result is written to
``benchmarks/results/neuron_pospischil.json``.

    python benchmarks/neuron_compare.py [--atol 1e-6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import dic_sbi
from dic_sbi.spiketrains import spike_train_features

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from accuracy import errors  # noqa: E402

REFERENCE = HERE.parent / "tests" / "reference_data" / "pospischil_reference.json"
VENV_PYTHON = HERE / ".neuron-venv" / "bin" / "python"
OUT = HERE / "results" / "neuron_pospischil.json"


def run_neuron(cells: list[dict], *, atol: float, python: Path = VENV_PYTHON) -> dict:
    """Spike times of ``cells`` (``{"model", "conductances"}``) simulated by NEURON over each model's protocol."""
    jobs = []
    for c in cells:
        model = dic_sbi.get_model(c["model"])
        leak = model.channels[model.index("leak")].reversal
        jobs.append({"conductances": c["conductances"], "leak_reversal": leak, "duration": model.protocol.duration})
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "cells.json", Path(tmp) / "spikes.json"
        src.write_text(json.dumps(jobs))
        subprocess.run([str(python), str(HERE / "neuron_runner.py"), "--cells", str(src), "--out", str(out),
                        "--atol", str(atol)], check=True, capture_output=True)  # fmt: skip
        return json.loads(out.read_text())


def spike_shift(a: np.ndarray, b: np.ndarray) -> dict | None:
    """Spike by spike: the largest |a_k - b_k| relative to b_k (time from the start of the simulation) and relative
    to the mean ISI of ``b``; None if the counts differ or there are fewer than 2 spikes."""
    if a.size != b.size or b.size < 2:
        return None
    shift = np.abs(a - b)
    return {"over_time": float(np.max(shift / b)), "over_isi": float(np.max(shift) / np.mean(np.diff(b)))}


def _errors_text(e: dict) -> str:
    if e.get("class"):
        return "CLASS DIFFERS"
    return " ".join(f"{k}={v * 100:.3f}%" for k, v in e.items() if k not in ("class", "spikes_per_burst")) or "-"


def _shift_text(d: dict | None) -> str:
    return "-" if d is None else f"{d['over_time'] * 100:.4f}%, {d['over_isi'] * 100:.2f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--atol", type=float, default=1e-6, help="CVODE absolute tolerance")
    args = ap.parse_args()
    if not VENV_PYTHON.exists():
        raise SystemExit("no NEURON venv: run  bash benchmarks/neuron_setup.sh  first")
    cells = json.loads(REFERENCE.read_text())["cells"]
    t0 = time.perf_counter()
    nrn = run_neuron(cells, atol=args.atol)
    rows = []
    for c, n in zip(cells, nrn["cells"]):
        model = dic_sbi.get_model(c["model"])
        t_start, t_stop = model.protocol.transient, model.protocol.duration
        fast = dic_sbi.simulate(model, np.array(c["conductances"])[None], progress=False).spike_times(0)
        theirs = np.array(n["spike_times"])
        theirs = theirs[theirs >= t_start]
        ref = np.array(c["spike_times"])
        cls = spike_train_features(theirs, t_start=t_start, t_stop=t_stop).firing_class
        rows.append({"model": c["model"], "source": c["source"], "class": str(cls),
                     "dic_sbi_vs_neuron": errors(fast, theirs, t_start, t_stop),
                     "neuron_vs_reference": errors(theirs, ref, t_start, t_stop), "neuron_wall_s": n["wall_s"],
                     "spike_shift": spike_shift(fast, theirs)})  # fmt: skip
    print(f"{'cell':46s} {'class':9s} {'dic_sbi vs NEURON':>44s} {'NEURON vs LSODA':>44s} {'spike shift /t, /ISI':>20s}")
    for r in rows:
        print(f"{r['model'] + ': ' + r['source']:46s} {r['class']:9s} {_errors_text(r['dic_sbi_vs_neuron']):>44s} "
              f"{_errors_text(r['neuron_vs_reference']):>44s} {_shift_text(r['spike_shift']):>20s}")  # fmt: skip
    shifts = [r["spike_shift"]["over_time"] for r in rows if r["spike_shift"]]
    worst = max((v for r in rows for k, v in r["dic_sbi_vs_neuron"].items() if k != "class"), default=0.0)
    same = all(not r["dic_sbi_vs_neuron"]["class"] for r in rows)
    print(f"same class on all {len(rows)} cells: {same}; largest dic_sbi vs NEURON difference {worst * 100:.3f} %; "
          f"largest spike-time shift {max(shifts) * 100:.4f} % of the spike's time ({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    OUT.write_text(json.dumps({"neuron": nrn["neuron"], "cvode_atol": nrn["atol"], "cells": rows,
                               "largest_relative_difference": worst, "same_class": same,
                               "largest_spike_shift_over_time": max(shifts)}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
