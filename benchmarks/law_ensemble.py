"""Does a second learned free-conductance law, mixed with the shipped one, calibrate it in conductance space?

The shipped DA law puts slightly too few true conductances in the middle of its draws (conductance-space ranks at
the true DICs: central 50 % ~0.47 where 0.485 is expected), and conductance-space SBC at 2 000 pairs fails at one
seed of four (CaL). Ensembles fixed the same symptom in the DA DIC posterior, so this trains one more law on the
shipped law's own campaigns (read from its record: the same stores, seeds, settings and epochs cap) with another
training seed, mixes it with the shipped law (:class:`dic_sbi.sbi.MixtureEstimator`), recalibrates each law's
location as the shipped one was (:func:`dic_sbi.train.recalibrate_free_conductances`), and compares

- the law alone at the true DICs (``--truth-pairs`` new pairs): draws compensated and ranked against the true
  cells, for the new member, the mixture and the shipped law on the same pairs;
- conductance-space SBC / TARP of the whole posterior with the mixture at ``--pairs`` pairs per ``--seeds``
  (:func:`dic_sbi.sbi.evaluation.conductance_calibration`, as ``conductance_calibration.py`` runs it).

Nothing is shipped; the new member's weights are written next to ``--out``.

    python benchmarks/law_ensemble.py --posterior da --work /work/stores --store-suffix _jitter \\
        --out benchmarks/results/law_ensemble_da.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from conductance_calibration import cell_ranks, rank_summary, uniform_ks  # this folder

from dic_sbi.sbi import DICPosterior, train_free_conductances
from dic_sbi.sbi.ensemble import MixtureEstimator
from dic_sbi.sbi.evaluation import conductance_calibration
from dic_sbi.sbi.features import with_conditions
from dic_sbi.sbi.free_conductances import FreeConductanceEstimator
from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info
from dic_sbi.train import dic_campaigns, law_ranks_at_truth, recalibrate_free_conductances


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--posterior", default="da")
    p.add_argument("--work", required=True, help="folder of the law's campaign stores (simulated there if absent)")
    p.add_argument("--store-suffix", default="_free_jitter",
                   help="store names {model}_dic_{tag}{suffix}: the law's own (default), or _jitter for the DIC "
                        "posterior's stores of the same campaigns")
    p.add_argument("--seed", type=int, default=1043, help="training seed of the new member (the shipped law's: 43)")
    p.add_argument("--recalibration-pairs", type=int, default=8000)
    p.add_argument("--truth-pairs", type=int, default=4000)
    p.add_argument("--truth-seed", type=int, default=7021)
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--seeds", default="7010,7011,7012,7013")
    p.add_argument("--torch-threads", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.torch_threads)
    post, info = load_pretrained(a.posterior), pretrained_info(a.posterior)
    shipped = post.free_conductances
    if shipped is None:
        p.error(f"--posterior: {a.posterior} has no learned free-conductance law")
    rec = info["free_conductances"]
    prefix = f"{post.model.name}_dic_"
    campaigns = [(c["store"][len(prefix):].split("_free")[0], c["num"],
                  tuple(c["noise_std"]) if isinstance(c["noise_std"], list) else c["noise_std"], c["seed"],
                  *([tuple(tuple(r) for r in c["box"])] if "box" in c else []))
                 for c in rec["campaigns"]]  # fmt: skip
    jitter = tuple(rec["campaigns"][0]["jitter"]) if rec["campaigns"][0].get("jitter") else None
    proto = {k: info["protocol"][k] for k in ("duration", "transient", "dt")}
    out = {"posterior": a.posterior, "settings": vars(a), "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    t0 = time.perf_counter()
    data, _, sim_seconds = dic_campaigns(post.model, campaigns, Path(a.work), fields=("theta", "conductances", "x"),
                                         suffix=a.store_suffix, output=info["features"]["output"], chunk_size=2000,
                                         quiet=False, jitter=jitter, **proto)  # fmt: skip
    x = torch.as_tensor(data["x"], dtype=torch.float32)
    if post.conditions:
        x = with_conditions(x, data["noise_std"][:, None])
    t1 = time.perf_counter()
    settings = {k: shipped.settings[k] for k in ("hidden_features", "num_transforms", "passes")}
    est, summary = train_free_conductances(post.model, data["theta"], data["conductances"], x, pair=post.pair, **settings,
                                           training=rec["training"]["settings"], seed=a.seed, show_progress_bars=False)  # fmt: skip
    out["member"] = {**summary, "seed": a.seed, "training_seconds": round(time.perf_counter() - t1, 1),
                     "simulation_seconds": round(sim_seconds, 1), "shipped_member": rec["training"]}  # fmt: skip
    torch.save(est.net.state_dict(), Path(a.out).with_suffix(".member.pt"))
    print("new member", out["member"], flush=True)
    laws = {"shipped": post}
    for label, net in (("member", est.net), ("mixture", MixtureEstimator([shipped.net, est.net]).eval())):
        law = FreeConductanceEstimator(net, post.model, x_dim=shipped.x_dim, pair=post.pair, settings=shipped.settings)
        q = DICPosterior(post.posterior, post.model, pair=post.pair, simulator=post.simulator, conditions=post.conditions,
                         free_conductances=law, training_jitter=post.training_jitter, emulator=post.emulator)  # fmt: skip
        laws[label], out[f"{label}_recalibration"] = recalibrate_free_conductances(q, pairs=a.recalibration_pairs, seed=500,
                                                                                   quiet=True)  # fmt: skip
    r = law_ranks_at_truth(post, pairs=a.truth_pairs, samples=2, seed=a.truth_seed)  # the pairs; draws below
    for label, q in laws.items():
        d = q.free_conductances.sample_w(r["dics"], torch.as_tensor(r["x"]), 100, seed=np.random.default_rng(a.truth_seed))
        cr, rejected = cell_ranks(q.free_conductances, d, r["truths"], r["dics"])
        out[f"{label}_at_true_dics"] = {**rank_summary(cr, 100), "rejected": round(rejected, 5), "ks_pvals": uniform_ks(cr)}
        s = out[f"{label}_at_true_dics"]
        print(f"{label:8s} at the true DICs: central 50 % {s['central_50']}, outer 10 % {s['outer_10']}, KS p {s['ks_pvals']}", flush=True)
    for seed in (int(v) for v in a.seeds.split(",") if v):
        c = conductance_calibration(laws["mixture"], n_pairs=a.pairs, num_posterior_samples=100, seed=seed, return_ranks=True,
                                    jitter=post.training_jitter)  # fmt: skip
        out[f"mixture_sbc_{seed}"] = {"sbc_ks_pvals": [round(v, 5) for v in c["sbc_ks_pvals"]], "tarp_atc": round(c["tarp_atc"], 4),
                                      "ranks": rank_summary(c["sbc_ranks"], 100)}  # fmt: skip
        print(f"mixture, {a.pairs} pairs, seed {seed}: SBC KS p {out[f'mixture_sbc_{seed}']['sbc_ks_pvals']}", flush=True)
    out["names"], out["seconds"] = list(post.model.conductance_names), round(time.perf_counter() - t0, 1)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
