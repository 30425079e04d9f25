# %% [markdown]
# # Bring your own model
#
# A jupytext script (run it as a script, or open it as a notebook with jupytext). Most recorded cells are neither
# the STG neuron nor the dopaminergic neuron shipped with dic_sbi. Any single-compartment conductance-based model
# can be brought in: write it in a file of your own, then name it as `path/to/file.py:NAME` wherever dic_sbi
# names a model (Python functions and every `dic-sbi` command). This tutorial
#
# 1. defines a model in one short file (`tutorials/models/squid.py`, shown below),
# 2. checks its DICs and a degenerate population,
# 3. trains a small DIC posterior for it (`dic-sbi train --model tutorials/models/squid.py:HH`),
# 4. infers a population from a recording's spike times.
#
# `DIC_SBI_TUTORIAL_QUICK=1` (set by the test suite) shortens the training and the populations.

# %%
import os
import warnings
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np

import dic_sbi

QUICK = os.environ.get("DIC_SBI_TUTORIAL_QUICK") == "1"
N_SIMULATIONS = 300 if QUICK else 5000  # training simulations
EPOCHS = 2 if QUICK else None  # None: train until the validation loss stalls
N_CELLS = 20 if QUICK else 200  # cells per population
if QUICK:  # sbi rightly warns that tiny held-out sets are too small for calibration checks; we know
    warnings.filterwarnings("ignore", message=".*(SBC|TARP).*", category=UserWarning)

FIGURES = Path("tutorial_figures")
FIGURES.mkdir(exist_ok=True)
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path("tutorials").resolve()
MODEL_FILE = HERE / "models" / "squid.py"

# %% [markdown]
# ## 1. The model file
# A model is data: a `ConductanceModel` whose channels have gates, exponents and reversal potentials. A gate is
# either `Gate(name, x_inf, tau)` with any vectorised functions of V (numpy in, numpy out; τ in ms, or a number
# for a constant τ), or `Gate.from_rates(name, alpha, beta)` with Hodgkin–Huxley rates (1/ms:
# `x_inf = α/(α+β)`, `τ = 1/(α+β)`). The DIC maths needs `dx_inf/dV`: it is taken numerically (a fourth-order
# central difference) unless the steady state has a `derivative` method. The rest of the file says
#
# - `DICConventions(reference_threshold=...)`: where DICs are reported. The fast, slow and ultraslow reference
#   gates may be named (`fast="m"`, ...) or left out: the model then picks them from the time constants at the
#   reference threshold, and `model.dics.reason` says what it chose and why;
# - `Protocol(duration, transient, dt)`: the default simulation;
# - `default_ranges` (a box over conductances, for the standard baseline prior) and `dic_box` (the targets a DIC
#   prior draws from);
# - `SeedPopulation(...)`: how degenerate populations are generated. Three conductances (`seed_solve`) are solved
#   so that a seed cell has the DICs `seed_target`; every other conductance but the leak is drawn
#   (`free_ranges`) or fixed; then a compensating pair of conductances is solved to reach each target (g_s, g_u).
#   With no `compensation=CompensationRule(...)` the pair that moves (g_s, g_u) most independently is used. The
#   seed solve needs three conductances with independent (g_f, g_s, g_u) columns at the threshold, the pair two
#   with independent (g_s, g_u) columns, and at least one free conductance makes the cells differ by more than
#   their leak: so a model needs about four conductances besides the leak (Hodgkin and Huxley's Na, K and leak
#   alone are too few; the file adds an M-type and an H current).
#
# Each piece checks its data when it is built: a τ <= 0 or a steady state outside [0, 1] anywhere on
# [-150, 100] mV, a missing leak, a gate or conductance name that does not exist ... raise an `InvalidInputError`
# that names what is wrong.

# %%
print(MODEL_FILE.read_text())

# %%
squid = dic_sbi.get_model(f"{MODEL_FILE}:HH")
print(squid, "\n", squid.dics.reason)

# %% [markdown]
# ## 2. DICs and a degenerate population
# The classic Hodgkin–Huxley conductances (no M, no H) first: their DIC curves, and the identity
# `g_f + g_s + g_u = (1/g_leak) dI_ss/dV` that holds whatever the timescale split.

# %%
g_hh = np.array([120.0, 36.0, 0.0, 0.0, 0.3])  # Na, K, M, H, leak (mS/cm²)
V = np.linspace(-80.0, -30.0, 201)
d = dic_sbi.dics(squid, g_hh, V)
h = 1e-3  # mV: a central difference of the steady-state current
slope = (dic_sbi.steady_state_current(squid, g_hh, V + h) - dic_sbi.steady_state_current(squid, g_hh, V - h)) / (2 * h * g_hh[-1])
print("identity holds to", float(np.max(np.abs(d.sum(axis=-1) - slope))))

fig, ax = plt.subplots(figsize=(6, 3.5))
for k, label in enumerate(("g_f", "g_s", "g_u")):
    ax.plot(V, d[:, k], label=label)
ax.axhline(0.0, color="k", lw=0.5)
ax.axvline(squid.dics.reference_threshold, color="grey", ls=":", label="reference threshold")
ax.set(xlabel="V (mV)", ylabel="DIC / g_leak", title="Hodgkin–Huxley conductances")
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "05_dics.png", dpi=100)

# %% [markdown]
# A degenerate population at the target (g_s, g_u) = (8, 1): many conductance vectors with exactly these DICs at
# the reference threshold. Simulated, they fire at similar rates.

# %%
population = dic_sbi.degenerate_population(squid, 8.0, 1.0, N_CELLS, seed=0)
print("DIC residual:", float(np.max(np.abs(dic_sbi.dics(squid, population)[:, 1:] - [8.0, 1.0]))))
res = dic_sbi.simulate(squid, population, progress=False)
rates = np.diff(res.offsets) / ((res.t_stop - res.t_start) / 1000.0)
print("firing rates (Hz): median", float(np.median(rates)), "range", float(rates.min()), "-", float(rates.max()))

fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
for i in range(min(N_CELLS, 20)):
    t = res.times[res.offsets[i] : res.offsets[i + 1]]
    axes[0].vlines(t, i + 0.6, i + 1.4, lw=0.8)
axes[0].set(xlabel="time (ms)", ylabel="cell", title="one DIC target, many cells")
for k, name in enumerate(squid.conductance_names[:-1]):
    axes[1].scatter(np.full(N_CELLS, k) + np.random.default_rng(k).uniform(-0.2, 0.2, N_CELLS),
                    population[:, k] / population[:, -1], s=6)  # fmt: skip
axes[1].set(xticks=range(4), xticklabels=squid.conductance_names[:-1], yscale="log", ylabel="g / g_leak",
            title="conductances of the population")  # fmt: skip
fig.tight_layout()
fig.savefig(FIGURES / "05_population.png", dpi=100)

# %% [markdown]
# ## 3. Train a DIC posterior
# `dic-sbi train` simulates cells drawn from the DIC prior over the model's `dic_box`, trains a normalising flow
# on their summary features and evaluates it on held-out cells. From the shell:
#
# ```bash
# dic-sbi train --model tutorials/models/squid.py:HH --out squid_posterior --work squid_work \
#     --num-simulations 5000 --noisy-simulations 0
# ```
#
# The same in Python (the quick mode trains on a few hundred simulations, two epochs: a poor posterior, fast):

# %%
from dic_sbi.train import train_pretrained

meta = train_pretrained(
    f"{MODEL_FILE}:HH", "squid_posterior", work_dir="squid_work", num_simulations=N_SIMULATIONS,
    noisy_simulations=0, training={"max_num_epochs": EPOCHS} if EPOCHS else None,
    estimator={"hidden_features": 16 if QUICK else 50, "num_transforms": 1 if QUICK else 3},
    heldout_points=4 if QUICK else 50, cells_per_point=2 if QUICK else 8, ppc_points=2 if QUICK else 20,
    ppc_cells=2 if QUICK else 50, quiet=True, overwrite=True,
)  # fmt: skip
print("held-out MAE (noise-free):", {k: round(v, 2) for k, v in meta["metrics"]["noise_free"]["accuracy"]["all"].items()
                                     if k.startswith("mae")})  # fmt: skip
print("the posterior's file records the model as", meta["model"])

# %% [markdown]
# ## 4. Infer a population from a recording
# Here the "recording" is one simulated cell written as a CSV of spike times (what `dic-sbi simulate --out` writes;
# a real recording can be any Neo-readable file). `infer` reads it, samples DICs from the posterior and turns
# each sample into a cell with exactly those DICs.

# %%
true_cell = dic_sbi.degenerate_population(squid, 9.0, 1.5, 1, seed=42)
rec = dic_sbi.simulate(squid, true_cell, progress=False)
times = ", ".join(f"{t:.3f}" for t in rec.times)
Path("squid_cell.csv").write_text(f'ID,spike_times\n0,"[{times}]"\n')

result = dic_sbi.infer("squid_cell.csv", f"{MODEL_FILE}:HH", N_CELLS, posterior="squid_posterior", seed=0)
train = result.trains[0]
print(train.conductances.shape, "cells; DICs of the first:", dic_sbi.dics(squid, train.conductances[0]))

fig, ax = plt.subplots(figsize=(4.5, 4))
ax.scatter(train.dics[:, 0], train.dics[:, 1], s=8, alpha=0.6, label="posterior cells")
ax.scatter([9.0], [1.5], marker="*", s=200, color="crimson", label="true DICs")
(s_lo, s_hi), (u_lo, u_hi) = squid.dic_box
ax.set(xlim=(s_lo, s_hi), ylim=(u_lo, u_hi), xlabel="g_s", ylabel="g_u", title="inferred DICs")
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "05_inferred.png", dpi=100)

# %% [markdown]
# From the shell, the same inference is
# `dic-sbi infer squid_cell.csv --model tutorials/models/squid.py:HH --posterior squid_posterior -n 200 --out squid_population`.
