#!/usr/bin/env python
"""Independent simulator for the Pospischil et al. (2008) model: NEURON 9.0.2 (PyPI) with CVODE.

Runs inside its own virtualenv (``bash benchmarks/neuron_setup.sh`` makes ``benchmarks/.neuron-venv``) and does
NOT import dic_sbi: the model is written below in NMODL from the paper's equations (Pospischil et al. 2008, Biol
Cybern 99:427, Sect. 2), compiled with ``nrnivmodl``, and must stay identical to ``dic_sbi/models/pospischil.py``.

    benchmarks/.neuron-venv/bin/python benchmarks/neuron_runner.py --cells cells.json --out spikes.json

``cells.json`` is a list of ``{"conductances": [Na, Kd, M, L, T, leak] (mS/cm²), "leak_reversal": mV,
"duration": ms}``; the output lists each cell's spike times (ms): upward crossings of +10 mV found by NEURON's
threshold detection (a NetCon on the soma's voltage, re-armed when V falls below +10 mV), interpolated by CVODE.
One single-compartment section (any area: every density is per cm²), C = 1 µF/cm², V0 = -70 mV and every gate at
its steady state there (``finitialize``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MOD = r"""
NEURON {
    SUFFIX pospischil
    NONSPECIFIC_CURRENT i
    RANGE gna, gkd, gm, gl, gt
}
UNITS {
    (mA) = (milliamp)
    (mV) = (millivolt)
    (S) = (siemens)
}
PARAMETER {
    gna = 0 (S/cm2)
    gkd = 0 (S/cm2)
    gm = 0 (S/cm2)
    gl = 0 (S/cm2)
    gt = 0 (S/cm2)
    ena = 50 (mV)
    ek = -100 (mV)
    eca = 120 (mV)
    vt = -55 (mV)
    taumax = 1000 (ms)
    vx = 2 (mV)
}
ASSIGNED { v (mV)  i (mA/cm2) }
STATE { m h n p q r u }
BREAKPOINT {
    SOLVE states METHOD derivimplicit
    i = gna*m*m*m*h*(v - ena) + (gkd*n*n*n*n + gm*p)*(v - ek) + (gl*q*q*r + gt*sinf(v)*sinf(v)*u)*(v - eca)
}
INITIAL {
    m = am(v)/(am(v) + bm(v))
    h = ah(v)/(ah(v) + bh(v))
    n = an(v)/(an(v) + bn(v))
    p = pinf(v)
    q = aq(v)/(aq(v) + bq(v))
    r = ar(v)/(ar(v) + br(v))
    u = uinf(v)
}
DERIVATIVE states {
    m' = am(v)*(1 - m) - bm(v)*m
    h' = ah(v)*(1 - h) - bh(v)*h
    n' = an(v)*(1 - n) - bn(v)*n
    p' = (pinf(v) - p)/taup(v)
    q' = aq(v)*(1 - q) - bq(v)*q
    r' = ar(v)*(1 - r) - br(v)*r
    u' = (uinf(v) - u)/tauu(v)
}
UNITSOFF
: x / (exp(x / k) - 1) * k... written as k * efun(x / k), with efun(z) = z / (exp(z) - 1) finite at z = 0
FUNCTION efun(z) {
    if (fabs(z) < 1e-6) {
        efun = 1 - z/2
    } else {
        efun = z/(exp(z) - 1)
    }
}
FUNCTION am(v) { am = 0.32*4*efun(-(v - vt - 13)/4) }
FUNCTION bm(v) { bm = 0.28*5*efun((v - vt - 40)/5) }
FUNCTION ah(v) { ah = 0.128*exp(-(v - vt - 17)/18) }
FUNCTION bh(v) { bh = 4/(1 + exp(-(v - vt - 40)/5)) }
FUNCTION an(v) { an = 0.032*5*efun(-(v - vt - 15)/5) }
FUNCTION bn(v) { bn = 0.5*exp(-(v - vt - 10)/40) }
FUNCTION pinf(v) { pinf = 1/(1 + exp(-(v + 35)/10)) }
FUNCTION taup(v) { taup = taumax/(3.3*exp((v + 35)/20) + exp(-(v + 35)/20)) }
FUNCTION aq(v) { aq = 0.055*3.8*efun((-27 - v)/3.8) }
FUNCTION bq(v) { bq = 0.94*exp((-75 - v)/17) }
FUNCTION ar(v) { ar = 0.000457*exp((-13 - v)/50) }
FUNCTION br(v) { br = 0.0065/(exp((-15 - v)/28) + 1) }
FUNCTION sinf(v) { sinf = 1/(1 + exp(-(v + vx + 57)/6.2)) }
FUNCTION uinf(v) { uinf = 1/(1 + exp((v + vx + 81)/4)) }
FUNCTION tauu(v) {
    : Huguenard and McCormick's tau at 24 degC, divided by the Q10 factor 3^((36 - 24)/10)
    tauu = (30.8 + (211.4 + exp((v + vx + 113.2)/5))/(1 + exp((v + vx + 84)/3.2)))/(3^1.2)
}
UNITSON
"""


def compile_mechanism(folder: Path) -> Path:
    """Write and compile the NMODL file; the folder holding the compiled library."""
    (folder / "pospischil.mod").write_text(MOD)
    nrnivmodl = Path(sys.executable).with_name("nrnivmodl")  # the venv's, whether or not it is activated
    done = subprocess.run([str(nrnivmodl)], cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nrnivmodl failed:\n{done.stdout}\n{done.stderr}")
    return folder


def run_cell(h, cell: dict, *, atol: float, spike_threshold: float) -> dict:
    """Simulate one cell with CVODE; its spike times (ms)."""
    sec = h.Section(name="soma")
    sec.L = sec.diam = 50.0
    sec.cm = 1.0
    sec.insert("pas")
    sec.insert("pospischil")
    g = [x * 1e-3 for x in cell["conductances"]]  # mS/cm² -> S/cm²
    seg = sec(0.5)
    seg.pospischil.gna, seg.pospischil.gkd, seg.pospischil.gm, seg.pospischil.gl, seg.pospischil.gt = g[:5]
    seg.pas.g, seg.pas.e = g[5], cell["leak_reversal"]
    times = h.Vector()
    nc = h.NetCon(seg._ref_v, None, sec=sec)
    nc.threshold = spike_threshold
    nc.record(times)
    cvode = h.CVode()
    cvode.active(1)
    cvode.atol(atol)
    h.finitialize(-70.0)
    t0 = time.perf_counter()
    h.continuerun(cell["duration"])
    wall = time.perf_counter() - t0
    out = {"spike_times": list(times), "wall_s": wall}
    del nc
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--atol", type=float, default=1e-6, help="CVODE absolute tolerance (mV and gates)")
    ap.add_argument("--spike-threshold", type=float, default=10.0)
    args = ap.parse_args()
    cells = json.loads(args.cells.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        folder = compile_mechanism(Path(tmp))
        from neuron import h, load_mechanisms

        load_mechanisms(str(folder))
        h.load_file("stdrun.hoc")
        results = [run_cell(h, c, atol=args.atol, spike_threshold=args.spike_threshold) for c in cells]
    import neuron

    args.out.write_text(json.dumps({"neuron": neuron.__version__, "atol": args.atol, "cells": results}))


if __name__ == "__main__":
    main()
