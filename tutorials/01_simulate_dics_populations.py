# %% [markdown]
# # Simulating neurons, computing DICs, building degenerate populations
#
# A jupytext script (run it as a script, or open it as a notebook with jupytext). It walks through the numerical
# core of dic_sbi: the STG model as data, the batched simulator, the spike-train layer (neo / elephant), Dynamic
# Input Conductances, and the degenerate population that shares a cell's DICs.
#
# `DIC_SBI_TUTORIAL_QUICK=1` (set by the test suite) shortens the simulations.

# %%
import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np

import dic_sbi

QUICK = os.environ.get("DIC_SBI_TUTORIAL_QUICK") == "1"
protocol = dict(duration=2000.0, transient=1000.0) if QUICK else {}
N_CELLS = 50 if QUICK else 500

# Figures are saved as PNG files in ./tutorial_figures (and shown inline when opened as a notebook).
FIGURES = Path("tutorial_figures")
FIGURES.mkdir(exist_ok=True)

# %% [markdown]
# ## The model is data
# `get_model` returns a `ConductanceModel`: conductance order, reversal potentials, gate kinetics, protocol.

# %%
stg = dic_sbi.get_model("stg")
print(stg.conductance_names)
print(stg.protocol)
from dic_sbi.data import example_cells

g_example = example_cells()["stg"]  # row 1 of Fyon et al. (2024)'s STG set

# %% [markdown]
# ## Simulate, look at the spikes as neo objects

# %%
res = dic_sbi.simulate(stg, g_example, record_voltage=True, sampling_interval=0.1, **protocol)
train = res.spiketrain(0)  # a neo.SpikeTrain in ms, annotated with the conductances
print(train.t_start, train.t_stop, len(train), "spikes")
features = res.features()
print("firing class:", features["firing_class"][0], "- mean ISI (ms):", round(float(features["mean_isi"][0]), 2))

fig, ax = plt.subplots(figsize=(8, 2.5))
ax.plot(res.voltage_times, res.voltage[0], lw=0.6)
ax.set(xlabel="time (ms)", ylabel="V (mV)", title="example STG cell")
fig.tight_layout()
fig.savefig(FIGURES / "01_example_cell_voltage.png", dpi=110)

# %% [markdown]
# ## Dynamic Input Conductances
# `dics` returns (g_f, g_s, g_u) / gleak at the model's reference threshold (-51 mV for STG), or at any voltages.

# %%
g_f, g_s, g_u = dic_sbi.dics(stg, g_example)
print(f"g_f = {g_f:.2f}, g_s = {g_s:.2f}, g_u = {g_u:.2f}  (V_th of this cell: {dic_sbi.threshold_voltage(stg, g_example):.3f} mV)")
V = np.linspace(-70, -40, 61)
curves = dic_sbi.dics(stg, g_example, V=V)  # (61, 3)
fig, ax = plt.subplots(figsize=(5, 3))
for k, name in enumerate(("g_f", "g_s", "g_u")):
    ax.plot(V, curves[:, k], label=name)
ax.axhline(0, color="k", lw=0.5)
ax.set(xlabel="V (mV)", ylabel="DIC / gleak", ylim=(-30, 40))
ax.legend()
fig.tight_layout()
fig.savefig(FIGURES / "01_dic_curves.png", dpi=110)

# %% [markdown]
# ## The degenerate population
# Many conductance vectors share these DICs. `degenerate_population` draws exactly `n` of them (all ḡ ≥ 0).

# %%
pop = dic_sbi.degenerate_population(stg, g_s, g_u, N_CELLS, seed=0)
print(pop.shape, "max |DIC - target| =", float(np.abs(dic_sbi.dics(stg, pop)[:, 1:] - [g_s, g_u]).max()))
spread = np.log10(pop.max(axis=0) / pop.min(axis=0))
for name, s in zip(stg.conductance_names, spread):
    print(f"{name:>5}: spans {s:.2f} decades")

pop_res = dic_sbi.simulate(stg, pop, progress=False, **protocol)
classes = pop_res.features()["firing_class"]
print("fraction firing like the example:", float(np.mean(classes == features["firing_class"][0])))

# %% [markdown]
# Same DICs, same firing, very different channel compositions: that is the degeneracy dic_sbi infers from spikes.
