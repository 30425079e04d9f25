# %% [markdown]
# # dic_sbi priors and simulators inside a plain sbi workflow
#
# A jupytext script (run it as a script, or open it as a notebook with jupytext). It is written for someone who
# already knows [sbi](https://sbi-dev.github.io/sbi/): dic_sbi's priors are `torch.distributions`, its simulators
# are batched callables `θ[B, d] → x[B, k]`, and its posterior wrapper speaks sbi's `sample` / `log_prob`
# language, so they drop into the usual sbi 0.27 loop
#
# ```
# prior → process_prior / process_simulator / check_sbi_inputs → simulate_for_sbi → NPE → build_posterior
# ```
#
# unchanged. The tutorial first runs that loop by hand on the STG model, with DICs `θ = (g_s, g_u)` as the
# parameters, then shows the one-call recipe that does the same, and finally the *standard* approach (NPE
# directly over the maximal conductances) through the very same code.
#
# `DIC_SBI_TUTORIAL_QUICK=1` (set by the test suite) shortens everything: a 1.5 s protocol, a few hundred
# simulations and 5 training epochs. The posteriors of the quick mode are therefore poor; the code is what
# matters there. Without it, the tutorial uses the model's own protocol and a few thousand simulations.

# %%
import os
import warnings
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))
import matplotlib.pyplot as plt
import numpy as np
import torch
from sbi.analysis import pairplot
from sbi.inference import NPE, simulate_for_sbi
from sbi.utils.user_input_checks import check_sbi_inputs, process_prior, process_simulator

import dic_sbi
from dic_sbi.sbi import (
    ConductancePrior,
    ConductanceSimulator,
    DICPosterior,
    DICPrior,
    DICSimulator,
    build_density_estimator,
    posterior_predictive_check,
    simulation_based_calibration,
    summary_statistics,
    tarp_calibration,
    train_dic_posterior,
)

QUICK = os.environ.get("DIC_SBI_TUTORIAL_QUICK") == "1"
# Protocol of every simulation (ms): the model's own (STG: 6000 ms, the first 3000 ms discarded) unless QUICK.
PROTOCOL = dict(duration=1500.0, transient=500.0) if QUICK else {}
N_SIMULATIONS = 300 if QUICK else 3000
TRAINING = dict(max_num_epochs=5) if QUICK else {}  # sbi's default: train until the validation loss stalls
N_SAMPLES = 100 if QUICK else 1000  # posterior samples per observation
N_PPC = 20 if QUICK else 200  # cells simulated by the posterior-predictive checks
N_CALIBRATION = 20 if QUICK else 200  # prior-predictive pairs for SBC / TARP
FLOW = dict(hidden_features=20, num_transforms=2) if QUICK else dict(hidden_features=50, num_transforms=5)

# Figures are saved as PNG files in ./tutorial_figures (and shown inline when opened as a notebook).
FIGURES = Path("tutorial_figures")
FIGURES.mkdir(exist_ok=True)

# These flows are small: one torch thread is usually the fastest, and kind to a shared machine.
torch.set_num_threads(1)
warnings.filterwarnings("ignore", message="Data has constant values")  # sbi: e.g. no silent cell in a column
if QUICK:  # sbi rightly warns that 5 epochs and 20 calibration pairs are too few; we know
    warnings.filterwarnings("ignore", message=".*(Maximum number of epochs|SBC|TARP|max_sampling_batch_size)")

# %% [markdown]
# ## The prior: a `torch.distributions.Distribution` over DICs
# `DICPrior("stg")` is uniform over `(g_s, g_u)` at the model's reference threshold (-51 mV for STG), on the part
# of the published target box that the degenerate-population compensation can reach. It has an exact `support`
# (a custom constraint, with a registered bijection to R², which sbi uses to transform θ), a closed-form
# `mean` / `variance`, and samples float32 - everything `process_prior` wants, so it passes through unwrapped.

# %%
prior = DICPrior("stg")
print(prior)
print("names:", prior.names, "- support:", prior.support)
print("mean:", prior.mean, "- std:", prior.variance.sqrt())
theta_demo = prior.sample((4,), seed=0)
print("samples:\n", theta_demo)
print("log_prob:", prior.log_prob(theta_demo), "(uniform: the same everywhere on the support)")

# %% [markdown]
# ## The simulator: DICs → one compensated cell → spike train → `x`
# `DICSimulator` draws, for every θ, one cell of the degenerate population with those DICs, simulates the whole
# batch in one compiled call and encodes each spike train as a fixed-length, always finite summary `x`
# (17 columns: log rate, ISI statistics, burst statistics, class indicators; `summary_statistics` computes the
# same encoding from any recorded spike train). The population's variability is part of the likelihood: the
# same θ gives different cells, hence different `x`.

# %%
simulator = DICSimulator("stg", **PROTOCOL)
print(simulator, "- x has", simulator.x_dim, "columns:")
print(simulator.names)
x_demo, cells_demo = simulator.simulate_with_cells(theta_demo[:1].repeat(3, 1), seed=0)
print("one θ, three cells (ḡ, mS/cm²):\n", np.round(cells_demo, 3))
print("their x (first five columns):\n", x_demo[:, :5])

# %% [markdown]
# ## sbi's input checks
# Nothing dic_sbi-specific here: the prior needs no wrapper (`process_prior` returns it as it is), the simulator
# is wrapped by sbi like any batched callable, and `check_sbi_inputs` simulates a couple of prior draws.

# %%
prior, num_parameters, prior_returns_numpy = process_prior(prior)
sbi_simulator = process_simulator(simulator, prior, prior_returns_numpy)
check_sbi_inputs(sbi_simulator, prior)
print(type(prior).__name__, "with", num_parameters, "parameters; simulator checked")

# %% [markdown]
# ## Simulate the training set
# `simulate_for_sbi` calls the simulator with `simulation_batch_size` parameters at a time. Its default of 1
# would pay the setup of a compiled simulation per θ; the dic_sbi simulators are vectorised, so give them large
# batches (and `num_workers > 1` to spread batches over processes: the simulators pickle by model name).
#
# Under `DICPrior` every θ is reachable, so no row of `x` is NaN. (With another prior over DICs, unreachable θ
# give NaN rows; sbi's NPE leaves such rows out of training without further notice.)

# %%
theta, x = simulate_for_sbi(
    sbi_simulator, prior, N_SIMULATIONS, simulation_batch_size=max(1, N_SIMULATIONS // 4), seed=0,
    show_progress_bar=False,
)  # fmt: skip
print("theta", tuple(theta.shape), "x", tuple(x.shape), "- rows with NaN:", int(torch.isnan(x).any(dim=1).sum()))
classes = ("silent", "spiking", "bursting")
fractions = {name: round(float(x[:, simulator.names.index(f"is_{name}")].mean()), 2) for name in classes}
print("firing classes in the training set:", fractions)

# %% [markdown]
# ## NPE, the sbi way
# The textbook call is `NPE(prior=prior).append_simulations(theta, x).train()`. It works here. But sbi's
# default `DirectPosterior` samples by **rejection**: it draws from the flow, which models θ itself (z-scored),
# and throws away whatever falls outside the prior's support. A flow that has seen few epochs, or an observation
# unlike the training set, can put almost all its mass outside the support; rejection then stalls (sbi keeps
# drawing, with a warning, until it has enough samples). Our support is not even a box: it has a floor in g_u.
#
# `build_density_estimator(..., prior=prior)` returns an ordinary `posterior_nn` builder that avoids this:
#
# - θ is modelled in the **unconstrained space of the prior's support** (sbi's
#   `z_score_theta="transform_to_unconstrained"`, through the bijection registered for the support), so every
#   flow sample maps back inside the support and rejection accepts everything;
# - `x` is standardised by a fixed, fitted `Standardize` layer whose std is floored at 0.1 instead of sbi's
#   z-scoring (floored at 1e-7), so indicator columns that happen to be constant in the training set do not
#   blow up on an observation where they are not.
#
# Below, both are trained on the same simulations, and sbi's own `leakage_correction` (the fraction of flow
# samples that land inside the support, i.e. the rejection acceptance rate) is measured for one observation
# from the training set and for one silent cell, which is rare in it.

# %%
plain = NPE(prior=prior, show_progress_bars=False)
plain.append_simulations(theta, x).train(**TRAINING)
plain_posterior = plain.build_posterior()

builder = build_density_estimator("nsf", x, prior=prior, **FLOW)
inference = NPE(prior=prior, density_estimator=builder, show_progress_bars=False)
inference.append_simulations(theta, x).train(**TRAINING)
posterior = inference.build_posterior()
print("epochs:", plain.summary["epochs_trained"][-1], "(default estimator),",
      inference.summary["epochs_trained"][-1], "(unconstrained-space estimator)")  # fmt: skip

x_silent = summary_statistics([np.array([])], t_start=simulator.transient, t_stop=simulator.duration)
for label, x_check in (("a training x", x[:1]), ("a silent cell", x_silent)):
    rates = [float(p.leakage_correction(x_check, num_rejection_samples=2000)) for p in (plain_posterior, posterior)]
    print(f"rejection acceptance for {label}: default {rates[0]:.3f}, unconstrained space {rates[1]:.3f}")

# %% [markdown]
# The acceptance rate is the fraction of the flow's draws that sampling keeps. For the default estimator it
# is well below 1 after a few epochs of training (the quick mode: most draws are wasted), and on observations
# far from the training data it can fall low enough that sampling seems to hang. The unconstrained-space
# estimator accepts every draw by construction.
# `DirectPosterior.sample` also takes `max_sampling_time=` (seconds) and `return_partial_on_timeout=True`, a
# guard worth having whenever the default estimator is sampled on unusual data. From here on, the
# unconstrained-space posterior is used.
#
# ## An observation
# A cell with known DICs (a bursting target), made with `degenerate_population` and simulated with the
# *training protocol* - the rate and ISI features depend on the observation window, so an observed spike
# train must be encoded over the same window as the training data. `summary_statistics` encodes any spike
# train (here a `neo.SpikeTrain`), exactly as the simulator does: both routes give the same `x_o`.

# %%
target = (-8.0, 10.0)  # (g_s, g_u) at -51 mV
g_true = dic_sbi.degenerate_population("stg", *target, 1, seed=3)  # (1, n_conductances)
observed = dic_sbi.simulate("stg", g_true, progress=False, **PROTOCOL)
observed_train = observed.spiketrain(0)  # neo.SpikeTrain over [transient, duration]
x_o = summary_statistics(observed_train)
assert torch.allclose(x_o, torch.as_tensor(simulator.simulate_conductances(g_true), dtype=torch.float32))
print("observed:", observed.features()["firing_class"][0], "with", len(observed_train), "spikes")
print("true cell (mS/cm²):", {name: round(float(v), 3) for name, v in zip(prior.model.conductance_names, g_true[0])})

# %% [markdown]
# ## From a DIC posterior to a posterior over conductances
# `DICPosterior` wraps any sbi posterior over `(g_s, g_u)`. Sampling draws DICs from `q(g_s, g_u | x)` and,
# for each, one cell of the degenerate population: the result is a population of conductance vectors, spread
# along the directions the spike train does not constrain. `sample` returns float64 conductances (model
# order), `sample_dics` the DICs alone; `seed=` makes both reproducible.

# %%
dic_posterior = DICPosterior(posterior, "stg", simulator=simulator)
print(dic_posterior)
g_samples, t_samples = dic_posterior.sample((N_SAMPLES,), x=x_o, seed=1, return_dics=True)
dic_samples = dic_posterior.sample_dics((N_SAMPLES,), x=x_o, seed=1)
print("conductances", tuple(g_samples.shape), g_samples.dtype, "- DICs", tuple(dic_samples.shape))
print("DIC posterior mean:", dic_samples.mean(0), "- true:", target)
print("the cells carry their DICs:", torch.allclose(dic_posterior.dics_of(g_samples), t_samples.double(), atol=1e-4))

(s_lo, s_hi), (u_lo, u_hi) = prior.box
fig, _ = pairplot(dic_samples.numpy(), points=np.array([target]), labels=list(prior.names),
                  limits=[[s_lo, s_hi], [u_lo, u_hi]], figsize=(4, 4))  # fmt: skip
fig.suptitle("DIC posterior")
fig.savefig(FIGURES / "02_dic_posterior.png", dpi=110)
fig, _ = pairplot(np.log10(g_samples.numpy()), points=np.log10(g_true), figsize=(9, 9),
                  labels=[f"log10 {n}" for n in dic_posterior.names])  # fmt: skip
fig.suptitle("conductance posterior (log10 ḡ)")
fig.savefig(FIGURES / "02_conductance_posterior.png", dpi=110)

# %% [markdown]
# ## Densities
# `log_prob` gives the density of conductance vectors under that generative process (see the `DICPosterior`
# docstring): the DIC posterior's `log q(t(ḡ) | x)` plus the log-density of the compensation. A cell the
# compensation cannot produce - here the true cell with its leak changed, which the compensation never does -
# has density 0. `log_prob_dics` is the DIC posterior's own density.

# %%
print("log p(true cell | x_o)        =", dic_posterior.log_prob(g_true, x=x_o))
print("log p(samples | x_o), first 3 =", dic_posterior.log_prob(g_samples[:3], x=x_o))
g_off = g_true.copy()
g_off[0, dic_posterior.model.index("leak")] *= 1.1
print("log p(off-set cell | x_o)     =", dic_posterior.log_prob(g_off, x=x_o))
print("log q(true DICs | x_o)        =", dic_posterior.log_prob_dics(torch.tensor([target]), x=x_o))

# %% [markdown]
# ## Posterior-predictive check
# Simulate cells drawn from the posterior (with the training simulator's protocol, which `DICPosterior` keeps)
# and count how many reproduce the observed firing class and its features within `rtol` (20 % by default).

# %%
ppc = posterior_predictive_check(dic_posterior, observed_train, n=N_PPC, x=x_o, seed=2)
print("observed class:", ppc.observed_class, "- simulated classes:", ppc.class_counts)
print(f"same class: {ppc.fraction_same_class:.2f}, class and features within {ppc.rtol:.0%}: "
      f"{ppc.fraction_within_tolerance:.2f}", ppc.feature_fractions)  # fmt: skip

# %% [markdown]
# ## Calibration
# SBC and TARP run through `sbi.diagnostics` on the DIC posterior, over fresh prior-predictive pairs (rows with
# NaN would be dropped and counted). With the quick settings the numbers mean nothing; the calls are the same.

# %%
theta_cal = prior.sample((N_CALIBRATION,), seed=10)
x_cal = simulator(theta_cal, seed=10)
sbc = simulation_based_calibration(dic_posterior, theta_cal, x_cal, num_posterior_samples=N_SAMPLES, seed=0)
tarp = tarp_calibration(dic_posterior, theta_cal, x_cal, num_posterior_samples=N_SAMPLES, seed=0)
print("SBC KS p-values (g_s, g_u):", sbc.ks_pvals, "- ranks uniform at 5 %:", sbc.uniform())
print(f"TARP: ATC {tarp.atc:.3f} (0 = calibrated), KS p-value {tarp.ks_pval:.3f}")

# %% [markdown]
# ## The same, in one call
# `train_dic_posterior` runs exactly the loop above - `DICPrior`, `DICSimulator`, `simulate_for_sbi`, NPE with
# the unconstrained-space builder, `DICPosterior` - seeded, with the global random generators left as they
# were, and returns everything in a `TrainingRun`. Keyword arguments it does not know form the simulator's
# protocol; `theta=`, `x=` reuse simulations; `torch_threads=1` trains on one thread.

# %%
run = train_dic_posterior("stg", N_SIMULATIONS, training=TRAINING, torch_threads=1, seed=0, **FLOW, **PROTOCOL)
print(type(run.posterior).__name__, "- trained on", tuple(run.theta.shape), "θ with", run.simulator)
print("DIC posterior mean:", run.posterior.sample_dics((N_SAMPLES,), x=x_o, seed=1).mean(0))
ppc_recipe = posterior_predictive_check(run.posterior, observed_train, n=N_PPC, x=x_o, seed=2)
print(f"same class: {ppc_recipe.fraction_same_class:.2f}, "
      f"within tolerance: {ppc_recipe.fraction_within_tolerance:.2f}")  # fmt: skip

# %% [markdown]
# ## The standard approach, through the same interface
# `ConductancePrior` (independent uniform or log-uniform box over every ḡ) and `ConductanceSimulator` (ḡ → spike
# train → the same 17-column `x`) are the usual parameterisation of SBI on conductance-based models. They are
# built the same way, so the hand-written loop runs on them unchanged - written once as a function here - and
# the observation `x_o` is the same vector for both. (`train_conductance_posterior` is the matching recipe.)

# %%


def npe_posterior(prior, simulator, n, seed):
    """The plain sbi loop for any (prior, simulator) pair: checks, simulations, NPE, posterior."""
    prior, _, returns_numpy = process_prior(prior)
    sim = process_simulator(simulator, prior, returns_numpy)
    check_sbi_inputs(sim, prior)
    theta, x = simulate_for_sbi(sim, prior, n, simulation_batch_size=max(1, n // 4), seed=seed,
                                show_progress_bar=False)  # fmt: skip
    builder = build_density_estimator("nsf", x, prior=prior, **FLOW)
    inference = NPE(prior=prior, density_estimator=builder, show_progress_bars=False)
    inference.append_simulations(theta, x).train(**TRAINING)
    return inference.build_posterior()


g_prior = ConductancePrior("stg", "log")
g_simulator = ConductanceSimulator("stg", **PROTOCOL)
g_posterior = npe_posterior(g_prior, g_simulator, N_SIMULATIONS, seed=0)  # sbi's DirectPosterior over ḡ
print(g_prior, "-", g_simulator)
assert torch.equal(x_o, g_simulator(g_true))  # numpy float64 in: the very cell observed above

g_direct = g_posterior.sample((N_SAMPLES,), x=x_o, show_progress_bars=False).double()
log_p_direct = g_posterior.log_prob(torch.as_tensor(g_true, dtype=torch.float32), x=x_o)
print("log p(true cell | x_o) under conductance-space NPE:", log_p_direct)
ppc_g = posterior_predictive_check("stg", observed_train, conductances=g_direct[:N_PPC], seed=2, **PROTOCOL)
print(f"same class: {ppc_g.fraction_same_class:.2f}, within tolerance: {ppc_g.fraction_within_tolerance:.2f}")

# %% [markdown]
# (The two `log_prob` values are not comparable: the DIC posterior's density lives on the lower-dimensional
# set of cells the compensation produces, the conductance posterior's on all of conductance space.)
#
# Both posteriors are over the same 8 conductances and can be drawn on the same axes. In DIC space the
# network learns a 2-dimensional posterior and the compensation supplies the degenerate directions; in
# conductance space the network has to learn all 8 dimensions from the same budget.

# %%
fig, ax = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
for a, (label, g) in zip(ax, (("DIC-space NPE + compensation", g_samples), ("NPE over ḡ (log prior)", g_direct))):
    a.boxplot(np.log10(np.clip(g.numpy(), 1e-6, None)), showfliers=False)
    a.plot(np.arange(1, g_true.shape[1] + 1), np.log10(g_true[0]), "r*", ms=9, label="true cell")
    a.set_xticks(np.arange(1, g_true.shape[1] + 1), dic_posterior.names, rotation=45)
    a.set_title(label, fontsize=10)
ax[0].set_ylabel("log10 ḡ (mS/cm²)")
ax[0].legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "02_dic_vs_conductance_npe.png", dpi=110)

# %% [markdown]
# Which of the two gives better posteriors for a given budget is an empirical question; tutorial 4
# (`04_dic_vs_npe.py`) runs the comparison harness that measures it.
