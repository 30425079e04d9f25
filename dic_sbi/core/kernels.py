"""Numba kernels of the batched simulator (layer 2: numpy + numba, float64, no torch).

The kernel is *generated from the model data*: :func:`kernel_source` writes a numba function specialised to a
:class:`~dic_sbi.core.tables.CompiledModel` (gates unrolled, integer exponents and reversal potentials as
literals), the way Brian2 generates code from equations. Every model runs through the same generator, so there is
one simulator, not one per model. Per step and per cell it does:

1. gates: Rush–Larsen update ``x <- x_inf + (x - x_inf) exp(-dt/τ)`` from the rate table at the current V
   (ERG: the exact affine one-step map of the (o, i) pair at frozen V);
2. voltage: exponential Euler, the exact solution over ``dt`` of ``C dV/dt = -G (V - V_inf)`` with the total
   conductance ``G`` and its reversal ``V_inf`` frozen at the new gates: stable however stiff the spike is;
3. calcium: exact exponential update towards ``Ca_inf = β - α I_Ca``;
4. spikes: upward crossings of the threshold (linearly interpolated in time), re-armed below ``rearm``.

A step that starts above the protocol's ``fine_above`` voltage while V moves fast (it changed by at least
``fine_min_slope`` mV/ms over the previous step: the upstroke and repolarisation of a spike, where the sodium
gate's τ falls to 0.06 ms) is taken as ``fine_substeps`` substeps with a second table; everywhere else one step.
Gates are updated before V, so gates live at half steps (a staggered scheme; measured: errors fall 2–6× when dt
halves, benchmarks/README.md).

Each thread advances a block of up to ``BLOCK`` cells as lanes: the table lookups are done lane by lane, the
arithmetic across lanes in SIMD registers (see :func:`kernel_source`). Blocks run in parallel (ranges of blocks on
threads, :func:`dic_sbi._parallel.run_ranges`); each
cell's noise stream is a counter-based generator keyed by ``(seed, global cell index)``, so results do not depend
on chunking, block size or thread scheduling.

The generated module is written to a cache folder (``$DIC_SBI_CACHE_DIR``, else ``~/.cache/dic_sbi``) so that
numba's on-disk cache makes later imports start fast.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numba
import numpy as np
from numba import njit

from .tables import GATE_CALCIUM, GATE_ERG, CompiledModel

__all__ = ["get_kernel", "kernel_source", "NO_SEED"]

NO_SEED = np.uint64(0)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0
KERNEL_VERSION = 10  # bump when the generated code changes
PACK = 8  # packed lanes run in whole AVX-512 vectors of float64 (measured: 8 beats 4, 16 and 32)
# Most cells (lanes) a thread advances together; a call may use fewer (``block`` argument, a multiple of PACK) so
# that a small batch still spreads over all cores. Large blocks pack the lanes inside a spike into fewer, fuller
# vectors: measured on the STG benchmark cells, 128 lanes 1.78 ms per cell, 96: 1.84, 64: 1.95, 32: 2.1-2.2.
BLOCK = 128
# Row stride of the work arrays, in lanes: BLOCK plus one vector, so that rows do not start at addresses 1 KiB
# apart (with a stride of exactly 128 lanes the rows alias in the L1 cache: 2.24 ms per cell instead of 1.78).
STRIDE = BLOCK + PACK


@njit(inline="always")
def _splitmix64(state):
    """One step of SplitMix64: returns (new state, 64 random bits)."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return state, z ^ (z >> _S31)


@njit(inline="always")
def _uniform_open(bits):
    """Uniform on (0, 1] from 53 random bits (never 0, so its log is finite)."""
    return (float(bits >> _S11) + 1.0) * _TWO_M53


@njit(inline="always")
def noise_init(seed, cell):
    """Initial random-generator state of one cell, keyed by the seed and the cell's global index."""
    rng = seed ^ (np.uint64(cell) * _GOLDEN)
    rng, _ = _splitmix64(rng)
    return rng


@njit(inline="always")
def noise_sample(rng, spare, has_spare, z, sos, noise_std):
    """Next filtered noise current; returns (value, rng, spare, has_spare). ``z`` (S, 2) is updated in place."""
    if has_spare:
        w = spare
        has_spare = False
    else:
        rng, b1 = _splitmix64(rng)
        rng, b2 = _splitmix64(rng)
        rad = math.sqrt(-2.0 * math.log(_uniform_open(b1)))
        ang = 2.0 * math.pi * _uniform_open(b2)
        w = rad * math.cos(ang)
        spare = rad * math.sin(ang)
        has_spare = True
    y = noise_std * w
    for k in range(sos.shape[0]):  # transposed direct form II, one biquad per section
        out = sos[k, 0] * y + z[k, 0]
        z[k, 0] = sos[k, 1] * y - sos[k, 4] * out + z[k, 1]
        z[k, 1] = sos[k, 2] * y - sos[k, 5] * out
        y = out
    return y, rng, spare, has_spare


# 2**k for k = -1022 .. 0 (the scalar exp_nonpositive; the kernel builds 2**k from its bits instead).
_POW2 = np.ldexp(1.0, np.arange(-1022, 1))
# Taylor coefficients 1/n!, n = 13 .. 0: |r| <= ln(2)/2 gives a truncation error below 1e-17.
_EXP_COEFFS = tuple(1.0 / math.factorial(n) for n in range(13, -1, -1))
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 split in two so that k * _LN2_HI is exact
_LN2_LO = 1.9082149292705877e-10


@njit(inline="always", error_model="numpy", fastmath={"contract"})
def exp_parts(x):
    """``(p, k)`` with ``exp(x) = p * 2**k`` for ``x <= 0``, in branch-free arithmetic that LLVM vectorises.

    Range reduction ``x = k ln 2 + r`` with ``|r| <= ln(2)/2`` and a degree-13 Taylor polynomial ``p`` for
    ``exp(r)``; ``x < -700`` is taken as ``-700`` (``exp(-700)`` ~ 1e-304 is 0 for every use here). The kernel
    builds ``2**k`` from its bits, ``(k + 1023) << 52``, so no table lookup stops vectorisation.
    """
    x = max(x, -700.0)
    k = math.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = _EXP_COEFFS[0]
    p = p * r + _EXP_COEFFS[1]
    p = p * r + _EXP_COEFFS[2]
    p = p * r + _EXP_COEFFS[3]
    p = p * r + _EXP_COEFFS[4]
    p = p * r + _EXP_COEFFS[5]
    p = p * r + _EXP_COEFFS[6]
    p = p * r + _EXP_COEFFS[7]
    p = p * r + _EXP_COEFFS[8]
    p = p * r + _EXP_COEFFS[9]
    p = p * r + _EXP_COEFFS[10]
    p = p * r + _EXP_COEFFS[11]
    p = p * r + _EXP_COEFFS[12]
    p = p * r + _EXP_COEFFS[13]
    return p, np.int64(k)


@njit(inline="always", error_model="numpy", fastmath={"contract"})
def exp_nonpositive(x):
    """``exp(x)`` for ``x <= 0`` from :func:`exp_parts` (accurate to about 2 ulp; tested against ``math.exp``)."""
    p, k = exp_parts(x)
    return p * _POW2[k + 1022]


def _power(var: str, p: int) -> str:
    # by squaring: x**4 is two multiplications, not three (no fastmath reassociation is allowed)
    return {1: var, 2: f"({var} * {var})", 3: f"({var} * {var} * {var})", 4: f"(({var} * {var}) * ({var} * {var}))"}.get(
        p, "*".join([var] * p)
    )


# Per-lane rows of the work array W (one row of STRIDE lanes each): everything the lane loops touch lives in one
# flat array at compile-time offsets, so LLVM sees a single base pointer and vectorises without alias checks.
def _work_rows(cm: CompiledModel) -> dict[str, int]:
    rows, off = {}, 0
    for name, n in (("g", cm.reversal.size), ("x", cm.n_states), ("tab", cm.table.shape[1] // 2), ("V", 1),
                    ("V_old", 1), ("Ca", 1), ("I", 1), ("h", 1), ("ca_decay", 1), ("poly", 1), ("V_inf", 1),
                    ("V_lin", 1), ("G_pos", 1), ("frac", 1)):  # fmt: skip
        rows[name] = off
        off += n
    rows["_size"] = off
    return rows


def kernel_source(cm: CompiledModel) -> str:
    """Python source of the numba kernel specialised to ``cm`` (structure only; tables are arguments).

    Each thread advances a block of at most :data:`BLOCK` cells (lanes) together. A step is split so that the
    arithmetic vectorises across lanes (numba's LLVM emits no gather instructions, so a loop that reads the rate
    table does not):

    1. *locate* (vectorised): each lane's table row and interpolation fraction at its V;
    2. *gather* (scalar loop over lanes): the interpolated table values, written lane-major into the work array
       (lanes that take substeps read the fine table ``T_fine``);
    3. *arithmetic* (vectorised): gates, conductances, the exact voltage step (exponential via
       :func:`exp_parts`, ``2**k`` from its bits), calcium;
    4. *spikes* (scalar loop over lanes): threshold crossings;
    5. lanes inside a spike (V above ``fine_above`` and moving at ``fine_slope`` or faster) are packed into a
       second work array and take the rest of their ``n_fine`` substeps there, through the same steps 1–4.

    The arithmetic is operation for operation that of one lane stepped alone, so the result does not depend on
    the block size or on which lanes share a block.
    """
    G = cm.gate_kind.size
    C = cm.reversal.size
    S = cm.n_states
    NCOL = cm.table.shape[1] // 2
    rows = _work_rows(cm)

    def w(name: str, i: int = 0, arr: str = "W", lane: str = "b") -> str:
        return f"{arr}[{(rows[name] + i) * STRIDE} + {lane}]"

    def locate(ind: str, arr: str, lane: str) -> list[str]:
        return [f"{ind}u = min(max(({w('V', 0, arr, lane)} - v_min) * inv_step, 0.0), u_max)",
                f"{ind}row[{lane}] = int(u)", f"{ind}{w('frac', 0, arr, lane)} = u - row[{lane}]"]  # fmt: skip

    def gather(ind: str, table: str, arr: str, lane: str) -> list[str]:
        out = [f"{ind}r = row[{lane}]", f"{ind}f = {w('frac', 0, arr, lane)}"]
        # The table stores, for every column c, the value at row r (2c) and its increment to row r+1 (2c+1).
        return out + [f"{ind}{w('tab', c, arr, lane)} = {table}[r, {2 * c}] + f * {table}[r, {2 * c + 1}]" for c in range(NCOL)]

    def arithmetic(ind: str, arr: str, lane: str) -> list[str]:
        def a_(name: str, i: int = 0) -> str:
            return w(name, i, arr, lane)

        out = [f"{ind}v = {a_('V')}"]
        add = out.append
        for j in range(G):
            c, s_, kind = int(cm.gate_col[j]), int(cm.gate_state[j]), int(cm.gate_kind[j])
            add(f"{ind}# gate {cm.gate_names[j]}")
            if kind == GATE_ERG:
                add(f"{ind}oe = {a_('tab', c)}")
                add(f"{ind}ie = {a_('tab', c + 1)}")
                add(f"{ind}do = {a_('x', s_)} - oe")
                add(f"{ind}di = {a_('x', s_ + 1)} - ie")
                add(f"{ind}x{s_} = oe + {a_('tab', c + 2)} * do + {a_('tab', c + 3)} * di")
                add(f"{ind}x{s_ + 1} = ie + {a_('tab', c + 4)} * do + {a_('tab', c + 5)} * di")
            else:
                if kind == GATE_CALCIUM:
                    add(f"{ind}a = {a_('tab', c)} * ({a_('Ca')} / ({a_('Ca')} + {float(cm.gate_K[j])!r}))")
                else:
                    add(f"{ind}a = {a_('tab', c)}")
                add(f"{ind}x{s_} = a + {a_('x', s_)} * {a_('tab', c + 1)}")
        for ch in range(C):
            factors = [a_("g", ch)]
            for q in range(cm.channel_start[ch], cm.channel_start[ch + 1]):
                factors.append(_power(f"x{int(cm.gate_state[cm.channel_gate[q]])}", int(cm.channel_exponent[q])))
            add(f"{ind}p{ch} = {' * '.join(factors)}")
        add(f"{ind}G_tot = {' + '.join(f'p{ch}' for ch in range(C))}")
        add(f"{ind}GE = {' + '.join(f'p{ch} * {float(cm.reversal[ch])!r}' for ch in range(C))}")
        # exact step of C dV/dt = -G (V - V_inf); as G -> 0 it tends to V + h I / C (selected, not branched)
        add(f"{ind}h = {a_('h')}")
        add(f"{ind}G_pos = G_tot > 0.0")
        add(f"{ind}G_safe = G_tot if G_pos else 1.0")
        add(f"{ind}{a_('V_inf')} = (GE + {a_('I')}) / G_safe")
        add(f"{ind}e_p, e_k = exp_parts((-h / {cm.capacitance!r}) * G_safe)")
        add(f"{ind}{a_('poly')} = e_p")
        add(f"{ind}k_bits[{lane}] = (e_k + 1023) << 52")
        add(f"{ind}{a_('G_pos')} = 1.0 if G_pos else 0.0")
        add(f"{ind}{a_('V_lin')} = v + h * {a_('I')} / {cm.capacitance!r}")
        add(f"{ind}{a_('V_old')} = v")
        if cm.has_calcium:
            ca_terms = [f"p{ch} * (v - {float(cm.reversal[ch])!r})" for ch in range(C) if cm.carries_calcium[ch]]
            add(f"{ind}ca_inf = {cm.calcium_beta!r} - {cm.calcium_alpha!r} * ({' + '.join(ca_terms)})")
            add(f"{ind}{a_('Ca')} = ca_inf + ({a_('Ca')} - ca_inf) * {a_('ca_decay')}")
        out += [f"{ind}{a_('x', s_)} = x{s_}" for s_ in range(S)]
        return out

    def voltage(ind: str, arr: str, lane: str) -> list[str]:  # own loop: k_bits is read through its float64 view
        V, V_inf = w("V", 0, arr, lane), w("V_inf", 0, arr, lane)
        return [f"{ind}v_exp = {V_inf} + ({V} - {V_inf}) * ({w('poly', 0, arr, lane)} * two_k[{lane}])",
                f"{ind}{V} = v_exp if {w('G_pos', 0, arr, lane)} > 0.5 else {w('V_lin', 0, arr, lane)}"]  # fmt: skip

    def spike(ind: str, sub: str, arr: str, lane: str) -> list[str]:
        # per-cell bookkeeping (armed, count, spikes) is indexed by the cell's lane b of the block
        return [
            f"{ind}v = {w('V_old', 0, arr, lane)}",
            f"{ind}v_new = {w('V', 0, arr, lane)}",
            f"{ind}if armed[b]:",
            f"{ind}    if v_new >= threshold:",
            f"{ind}        t_cross = step * dt + ({sub} + (threshold - v) / (v_new - v)) * {w('h', 0, arr, lane)}",
            f"{ind}        if t_cross >= transient:",
            f"{ind}            if count[b] < cap:",
            f"{ind}                spikes[n0 + b, count[b]] = t_cross",
            f"{ind}            count[b] += 1",
            f"{ind}        armed[b] = False",
            f"{ind}elif v_new < rearm:",
            f"{ind}    armed[b] = True",
        ]

    # rows a lane in a spike carries into the packed array, and the ones it brings back
    packed_in = [("g", i) for i in range(C)] + [("x", j) for j in range(S)] + [("V", 0), ("Ca", 0), ("I", 0), ("h", 0), ("ca_decay", 0)]
    packed_out = [("x", j) for j in range(S)] + [("V", 0), ("Ca", 0)]

    lines: list[str] = []
    add = lines.append
    add("import math")
    add("import numpy as np")
    add("from numba import njit")
    add("from dic_sbi.core.kernels import exp_parts, noise_init, noise_sample")
    add("")
    add(f"B = {BLOCK}")
    add("")
    # Serial over the blocks [blk0, blk1) and free of the GIL: dic_sbi._parallel.run_ranges runs ranges of blocks
    # on several threads (numba's prange compiled twice as slowly; the arithmetic is the same either way).
    add("@njit(cache=True, nogil=True, error_model='numpy', fastmath={'contract'})")
    add(
        "def kernel(blk0, blk1, g, i_app, cell_offset, seed, noise_std, sos, V0, Ca0, init, T, T_fine, v_min, inv_step,"
        " calcium_decay, calcium_decay_fine, dt, n_fine, fine_above, fine_slope, n_steps, transient, threshold, rearm, spikes,"
        " counts, first_record_step, record_every, voltage, block, noisy):"
    )
    add("    N = g.shape[0]")
    add("    u_max = float(T.shape[0] - 1) - 1e-9")
    add("    cap = spikes.shape[1]")
    add("    n_samples = voltage.shape[1] if voltage.shape[0] == N else 0")
    add("    dt_fine = dt / n_fine")
    add("    dv_fine = fine_slope * dt  # |ΔV| over the previous step that marks the fast phases of a spike")
    add("    for blk in range(blk0, blk1):  # block: lanes per block, 1 to B (the caller's n_blocks uses it)")
    add("        n0 = blk * block")
    add("        nb = min(block, N - n0)")
    add(f"        W = np.zeros({rows['_size'] * STRIDE})")
    add(f"        P = np.zeros({rows['_size'] * STRIDE})  # lanes inside a spike, packed")
    add("        k_bits = np.zeros(B, dtype=np.int64)")
    add("        two_k = k_bits.view(np.float64)")
    add("        row = np.zeros(B, dtype=np.int64)")
    add("        v_prev = np.full(B, V0)  # each lane's V at the start of its previous step")
    add("        fine = np.zeros(B, dtype=np.int64)  # lane of each packed lane")
    add("        armed = np.zeros(B, dtype=np.bool_)")
    add("        count = np.zeros(B, dtype=np.int64)")
    add("        I0 = np.zeros(B)")
    add("        rng = np.zeros(B, dtype=np.uint64)")
    add("        spare = np.zeros(B)")
    add("        has_spare = np.zeros(B, dtype=np.bool_)")
    add("        z = np.zeros((B, sos.shape[0], 2))")
    add("        for b in range(nb):")
    add(f"            for c in range({C}):")
    add(f"                W[({rows['g']} + c) * {STRIDE} + b] = g[n0 + b, c]")
    add(f"            for j in range({S}):")
    add(f"                W[({rows['x']} + j) * {STRIDE} + b] = init[j]")
    add(f"            {w('V')} = V0")
    add(f"            {w('Ca')} = Ca0")
    add("            I0[b] = i_app[n0 + b]")
    add(f"            {w('I')} = I0[b]")
    add("            armed[b] = V0 < rearm")
    add("            rng[b] = noise_init(seed, cell_offset + n0 + b)")
    add("            if n_samples > 0 and first_record_step == 0:")
    add("                voltage[n0 + b, 0] = V0")
    add("        for step in range(n_steps):")
    add("            if noisy:  # one noise sample per step, held over substeps")
    add("                for b in range(nb):")
    add("                    eta, rng[b], spare[b], has_spare[b] = noise_sample(")
    add("                        rng[b], spare[b], has_spare[b], z[b], sos, noise_std[n0 + b])")
    add(f"                    {w('I')} = I0[b] + eta")
    add("            for b in range(nb):  # 1. locate")
    lines.extend(locate(" " * 16, "W", "b"))
    add("            n_in_spike = 0")
    add("            for b in range(nb):  # 2. gather")
    add(f"                dv = {w('V')} - v_prev[b]")
    add(f"                v_prev[b] = {w('V')}")
    add(f"                if {w('V')} > fine_above and abs(dv) >= dv_fine:")
    add("                    fine[n_in_spike] = b")
    add("                    n_in_spike += 1")
    add(f"                    {w('h')} = dt_fine")
    add(f"                    {w('ca_decay')} = calcium_decay_fine")
    lines.extend(gather(" " * 20, "T_fine", "W", "b"))
    add("                else:")
    add(f"                    {w('h')} = dt")
    add(f"                    {w('ca_decay')} = calcium_decay")
    lines.extend(gather(" " * 20, "T", "W", "b"))
    add("            for b in range(nb):  # 3. arithmetic")
    lines.extend(arithmetic(" " * 16, "W", "b"))
    add("            for b in range(nb):")
    lines.extend(voltage(" " * 16, "W", "b"))
    add("            for b in range(nb):  # 4. spikes")
    lines.extend(spike(" " * 16, "0", "W", "b"))
    add("            if n_in_spike > 0 and n_fine > 1:  # 5. the other substeps of the lanes inside a spike, packed")
    add("                for q in range(n_in_spike):")
    add("                    b = fine[q]")
    for name, i in packed_in:
        add(f"                    {w(name, i, 'P', 'q')} = {w(name, i)}")
    add(f"                n_pack = min(nb, (n_in_spike + {PACK - 1}) // {PACK} * {PACK})  # whole vectors; extra lanes idle")
    add("                for sub in range(1, n_fine):")
    add("                    for q in range(n_pack):")
    lines.extend(locate(" " * 24, "P", "q"))
    add("                    for q in range(n_in_spike):")
    lines.extend(gather(" " * 24, "T_fine", "P", "q"))
    add("                    for q in range(n_pack):")
    lines.extend(arithmetic(" " * 24, "P", "q"))
    add("                    for q in range(n_pack):")
    lines.extend(voltage(" " * 24, "P", "q"))
    add("                    for q in range(n_in_spike):")
    add("                        b = fine[q]")
    lines.extend(spike(" " * 24, "sub", "P", "q"))
    add("                for q in range(n_in_spike):")
    add("                    b = fine[q]")
    for name, i in packed_out:
        add(f"                    {w(name, i)} = {w(name, i, 'P', 'q')}")
    add("            if n_samples > 0:")
    add("                k = step + 1 - first_record_step")
    add("                if k >= 0 and k % record_every == 0:")
    add("                    idx = k // record_every")
    add("                    if idx < n_samples:")
    add("                        for b in range(nb):")
    add(f"                            voltage[n0 + b, idx] = {w('V')}")
    add("        for b in range(nb):")
    add("            counts[n0 + b] = count[b]")
    return "\n".join(lines) + "\n"


def _cache_dir() -> Path:
    base = os.environ.get("DIC_SBI_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dic_sbi"
    )
    path = Path(base) / "kernels"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError:  # read-only home: fall back to a private temporary folder
        path = Path(tempfile.mkdtemp(prefix="dic_sbi_kernels_"))
    return path


_KERNELS: dict[str, Callable] = {}


def get_kernel(cm: CompiledModel) -> Callable:
    """The compiled kernel for ``cm`` (generated, written to the cache folder and imported once per process)."""
    source = kernel_source(cm)
    key = hashlib.sha256(f"{KERNEL_VERSION}\n{numba.__version__}\n{source}".encode()).hexdigest()[:16]
    if key not in _KERNELS:
        name = f"dic_sbi_kernel_{key}"
        path = _cache_dir() / f"{name}.py"
        if not path.exists() or path.read_text() != source:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(source)
            os.replace(tmp, path)  # atomic: concurrent processes never import a half-written file
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        _KERNELS[key] = module.kernel
    return _KERNELS[key]


def max_threads() -> int:
    """Threads numba may use (all cores unless ``NUMBA_NUM_THREADS`` says otherwise)."""
    return int(numba.config.NUMBA_NUM_THREADS)
