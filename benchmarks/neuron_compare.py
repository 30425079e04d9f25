"""dic_sbi's simulator against an independent one, NEURON 9.0.2 (CVODE), on the Pospischil model (issue 19).

The cells are those of the Pospischil accuracy test (``tests/reference_data/pospischil_reference.json``: the
paper's four cells, IB cells with more L current, degenerate-population cells; spiking, bursting and silent).
Each is simulated by ``dic_sbi.simulate`` (default protocol), by NEURON through ``benchmarks/neuron_runner.py`` in
its own venv (``bash benchmarks/neuron_setup.sh``; the NMODL model there is written from the paper, not from
dic_sbi), and its stored scipy LSODA reference (rtol = atol = 1e-8) is read. Printed per cell: firing class and
the relative differences of mean ISI (spiking) or burst period and intra-burst ISI (bursting), dic_sbi vs NEURON
and NEURON vs the reference; the result is written to ``benchmarks/results/neuron_pospischil.json``.

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
                     "neuron_vs_reference": errors(theirs, ref, t_start, t_stop), "neuron_wall_s": n["wall_s"]})  # fmt: skip
    print(f"{'cell':42s} {'class':9s} {'dic_sbi vs NEURON':>28s} {'NEURON vs LSODA':>28s}")
    for r in rows:
        def fmt(e):
            if e.get("class"):
                return "CLASS DIFFERS"
            return " ".join(f"{k}={v * 100:.3f}%" for k, v in e.items() if k != "class") or "-"
        print(f"{r['model'] + ': ' + r['source']:42s} {r['class']:9s} {fmt(r['dic_sbi_vs_neuron']):>28s} {fmt(r['neuron_vs_reference']):>28s}")
    worst = max((v for r in rows for k, v in r["dic_sbi_vs_neuron"].items() if k != "class"), default=0.0)
    same = all(not r["dic_sbi_vs_neuron"]["class"] for r in rows)
    print(f"same class on all {len(rows)} cells: {same}; largest dic_sbi vs NEURON difference {worst * 100:.3f} % "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip
    OUT.write_text(json.dumps({"neuron": nrn["neuron"], "cvode_atol": nrn["atol"], "cells": rows,
                               "largest_relative_difference": worst, "same_class": same}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
