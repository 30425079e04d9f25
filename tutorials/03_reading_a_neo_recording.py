# %% [markdown]
# # From a Neo recording to a degenerate population
#
# The main job of dic_sbi, step by step: read a recording with Neo (any format Neo reads: NIX, ABF, NWB, Spike2,
# ...), detect the spikes, look at them with Elephant, and infer the family of conductance-based models that
# fire like it with the pretrained DIC posterior shipped in the package. The same in one command:
#
#     dic-sbi infer RECORDING --model stg -n 1000 --out DIR --validate
#
# `DIC_SBI_TUTORIAL_QUICK=1` (set by the test suite) makes the populations smaller.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import neo
import numpy as np
import quantities as pq

import dic_sbi
from dic_sbi.data import example_recording
from dic_sbi.io import read_recording

QUICK = os.environ.get("DIC_SBI_TUTORIAL_QUICK") == "1"
N_CELLS = 100 if QUICK else 1000

# Figures are saved as PNG files in ./tutorial_figures (and shown inline when opened as a notebook).
FIGURES = Path("tutorial_figures")
FIGURES.mkdir(exist_ok=True)
workdir = Path(tempfile.mkdtemp(prefix="dic_sbi_tutorial3_"))

# %% [markdown]
# ## The recording
# The package ships one example per model: a NIX file holding a membrane-potential trace (a simulated
# current-clamp recording of the published example STG cell with a noisy current, so that we know the answer).
# Any Neo-readable file works the same way; here is the raw content, read with Neo itself.

# %%
path = example_recording("stg")
with neo.io.NixIO(path, mode="ro") as io:
    block = io.read_block()
vm = block.segments[0].analogsignals[0]
print(block.name, "-", vm.name, vm.shape, vm.units.dimensionality, "sampled every", vm.sampling_period)

# %% [markdown]
# ## Reading and spike detection
# `read_recording` returns spike trains in ms with their provenance. Recorded spike trains are used as they are;
# voltage traces go through spike detection: an upward crossing of the threshold (+10 mV by default, as in the
# published pipeline), re-armed when V falls back below 0 mV. Sweeps (`segments=`), channels (`channels=`),
# the threshold and units are all selectable.

# %%
rec = read_recording(path)
train = rec[0]
print(rec.format, rec.origins[0])
print(len(train), "spikes between", train.t_start, "and", train.t_stop)

rec_low = read_recording(path, threshold=-20.0, rearm=-40.0)  # lower levels, e.g. for small spikes
print("spikes with a -20 mV threshold:", len(rec_low[0]))

fig, ax = plt.subplots(figsize=(8, 2.5))
keep = vm.times.rescale("ms").magnitude < float(vm.t_start.rescale("ms")) + 1000
ax.plot(vm.times.rescale("ms").magnitude[keep], vm.magnitude[keep, 0], lw=0.5, color="k")
spk = train.magnitude[train.magnitude < float(vm.t_start.rescale("ms")) + 1000]
ax.plot(spk, np.full_like(spk, 30.0), "v", color="tab:red", ms=4, label="detected spikes")
ax.set(xlabel="time (ms)", ylabel="V (mV)", title="example recording (first second)")
ax.legend(loc="lower right")
fig.tight_layout()
fig.savefig(FIGURES / "03_recording_and_spikes.png", dpi=110)

# %% [markdown]
# ## Your own files
# A recording of your own, as a Neo object, saved in any writable Neo format, reads the same way. Spike times
# from a spreadsheet go through the Spike2Pop CSV (`ID`, `"[t1, t2, ...]"` in ms) or a plain text file of
# times; text files carry no window, so give `t_start`/`t_stop` when silent stretches matter.

# %%
own = neo.Block(name="my cell")
seg = neo.Segment(name="sweep 1")
seg.analogsignals.append(vm.time_slice(vm.t_start, vm.t_start + 1500 * pq.ms))
own.segments.append(seg)
with neo.io.NixIO(str(workdir / "my_cell.nix"), mode="ow") as io:
    io.write_block(own)
print("my_cell.nix:", len(read_recording(workdir / "my_cell.nix")[0]), "spikes")

(workdir / "times.txt").write_text("\n".join(f"{t:.3f}" for t in train.magnitude))
txt = read_recording(workdir / "times.txt", t_start=float(train.t_start), t_stop=float(train.t_stop))
print("times.txt:", len(txt[0]), "spikes, window", txt[0].t_start, "-", txt[0].t_stop)

# %% [markdown]
# ## Elephant on the recorded train
# The trains are plain `neo.SpikeTrain` objects, so Elephant's statistics apply directly. dic_sbi's firing
# features (silent / spiking / bursting by the CV of the ISIs, burst splitting; `dic_sbi.spiketrains`) sit on top of them.

# %%
import elephant.statistics as es

from dic_sbi.spiketrains import spike_train_features

print("mean rate:", es.mean_firing_rate(train).rescale("Hz"))
isi = es.isi(train)
print("CV:", round(float(es.cv(isi)), 3), " LV:", round(float(es.lv(isi)), 3))
feats = spike_train_features(train)
print("firing class:", feats.firing_class, "- spiking frequency (Hz):", round(feats.spiking_frequency, 2))

# %% [markdown]
# ## Inference
# `dic_sbi.infer` conditions the pretrained DIC posterior on the train's features (`posterior.observe`: the summary
# features and, for the shipped STG posterior, the interval statistics, with the known noise level), draws `n` DIC
# samples `(g_s, g_u)` and turns each into one cell of its degenerate population: the population carries the
# posterior's uncertainty. `validate=True` simulates every cell with the training protocol and compares its
# firing with the recording. The posterior and the settings it was trained with are described by
# `pretrained_info`.

# %%
from dic_sbi.sbi.pretrained import pretrained_info

info = pretrained_info("stg")
print(info["command"])
print({k: v["accuracy"]["all"]["mae_g_s"] for k, v in info["metrics"].items()}, "(held-out MAE of g_s)")

result = dic_sbi.infer(path, "stg", n=N_CELLS, seed=0, validate=True)
t = result.trains[0]
print(f"inference: {1000 * t.seconds:.0f} ms for {N_CELLS} cells (simulations excluded)")
print("DIC posterior:", {k: round(v["mean"], 2) for k, v in result.report()["trains"][0]["dic_posterior"].items()})
_, g_s_true, g_u_true = dic_sbi.dics("stg", dic_sbi.data.example_cells()["stg"])
print(f"true DICs of the simulated example cell: g_s = {g_s_true:.2f}, g_u = {g_u_true:.2f}")
print(f"{100 * t.fidelity['fraction_matching_class']:.1f} % of the population fires like the recording "
      f"({t.observed_class})")

# %% [markdown]
# The population is a `(n, n_conductances)` array in mS/cm²; its cells share the DICs of their sample but
# differ widely in individual conductances: the degeneracy the recording cannot resolve.

# %%
from dic_sbi.plots import plot_conductance_pairplot, plot_dic_posterior, plot_population_raster, plot_traces

g = t.conductances
print(dict(zip(result.model.conductance_names, np.round(np.median(g, axis=0), 3))))
print("ratio of 95th to 5th percentile per conductance:",
      dict(zip(result.model.conductance_names, np.round(np.quantile(g, 0.95, 0) / np.quantile(g, 0.05, 0), 1))))
result.true_dics = (g_s_true, g_u_true)  # known here (a simulated recording): marked on the DIC posterior plot
for name, draw in (("dic_posterior", plot_dic_posterior), ("raster", plot_population_raster),
                   ("traces", plot_traces), ("pairplot", plot_conductance_pairplot)):  # fmt: skip
    draw(result, t).savefig(FIGURES / f"03_{name}.png", dpi=110)

# %% [markdown]
# ## Writing everything
# `result.write(folder)` writes the population (CSV, one row per cell, and NIX), the DIC samples, the fidelity
# report and the plots, atomically: a failure leaves no half-written folder behind.

# %%
out = result.write(workdir / "population")
print(sorted(p.name for p in out.iterdir()))
