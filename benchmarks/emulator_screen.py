"""What a learned forward emulator buys the population's fidelity: screen K × more posterior cells, keep the best.

An experiment toward issue 17 (DA bursters fire like the recording in a third of the cells; the bar is 0.8).
It is **not** a feature of the package: it measures whether screening candidate cells with a cheap learned
predictor of their firing, instead of simulating them (``infer --match``), is worth building.

1. Training data: ``--train`` new noise-free DIC-prior simulations of the shipped posterior's model and protocol,
   plus ``--focus`` in each focus box of its free-conductance law's training campaigns (the bursting regions), cells
   kept; cached in ``--cache``.
2. Emulator: an MLP from standardised ln ḡ to the firing class (cross-entropy) and ln rate, ln burst period and
   ln spikes per burst (squared error where defined), trained on 90 % of the rows; its accuracy on the other 10 %
   is reported per class as the share within each fidelity tolerance.
3. Screening: on the first ``--observations`` bursting and spiking observations of the held-out set of
   ``benchmarks/class_fidelity.py`` (3000 new targets, seed 9100, noise-free), ``max(K) × --cells`` cells of the
   shipped posterior (its DIC samples, its learned law) per observation; for each K the first ``K × cells`` are
   scored by the emulator (worst normalised miss over the tolerances the observed class is held to, a class miss
   adds 10) and the ``--cells`` best are simulated and scored with ``fires_like``. K = 1 is the shipped population.
   The faithful cells' spread (mean std of ln ḡ) says what the screen costs in degeneracy.

    python benchmarks/emulator_screen.py --model da --train 40000 --focus 10000 --screen 1,4,10,30 \\
        --cache /tmp/emu_da.npz --out benchmarks/results/emulator_screen_da.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dic_sbi.core.simulator import simulate
from dic_sbi.sbi import DICPrior
from dic_sbi.sbi.evaluation import _posterior_samples, classes_of, heldout_set, observed_features
from dic_sbi.sbi.pretrained import load_pretrained, pretrained_info
from dic_sbi.spiketrains import features_from_csr, fidelity_checks

TARGETS = ("mean_rate", "burst_period", "spikes_per_burst")
CODES = {"spiking": 1, "bursting": 2}


def training_data(post, info: dict, n: int, n_focus: int, seed: int, cache: Path | None) -> dict:
    """New noise-free DIC-prior simulations (and ``n_focus`` in each focus box of the law's campaigns), cached."""
    if cache is not None and cache.exists():
        return dict(np.load(cache))
    boxes = [c["box"] for c in info["free_conductances"]["campaigns"] if "box" in c]
    xs, gs = [], []
    for k, (num, box) in enumerate([(n, None)] + [(n_focus, b) for b in boxes]):
        if num <= 0:
            continue
        prior = DICPrior(post.model) if box is None else DICPrior(post.model, box=tuple(map(tuple, box)))
        t = prior.sample((int(num),), seed=seed + k)
        x, g = post.simulator.simulate_with_cells(t, seed=seed + 100 + k)
        xs.append(x.numpy())
        gs.append(g)
    out = {"x": np.concatenate(xs), "g": np.concatenate(gs)}
    if cache is not None:
        np.savez(cache, **out)
    return out


class Emulator:
    """ln ḡ → firing class and ln (rate, burst period, spikes per burst), an MLP trained on simulations."""

    def __init__(self, g: np.ndarray, x: np.ndarray, *, epochs: int, seed: int) -> None:
        ok = np.isfinite(x).all(axis=1) & np.isfinite(g).all(axis=1) & (g > 0).all(axis=1)
        g, x = g[ok], x[ok]
        f = observed_features(x)
        self.code = classes_of(x).clip(0)
        logs = np.log(g)
        self.mu, self.sd = logs.mean(0), logs.std(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.column_stack([np.log(np.where(f[k] > 0, f[k], np.nan)) for k in TARGETS])
        self.defined = np.isfinite(y)
        self.ym = np.array([y[self.defined[:, j], j].mean() for j in range(3)])
        self.ys = np.array([y[self.defined[:, j], j].std() for j in range(3)])
        self.y = np.where(self.defined, (y - self.ym) / self.ys, 0.0)
        self.inputs = (logs - self.mu) / self.sd
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        n = len(g)
        perm = np.random.default_rng(seed).permutation(n)
        self.valid, train = perm[: n // 10], perm[n // 10 :]
        X = torch.as_tensor(self.inputs, dtype=torch.float32)
        Y = torch.as_tensor(self.y, dtype=torch.float32)
        M = torch.as_tensor(self.defined, dtype=torch.float32)
        C = torch.as_tensor(self.code, dtype=torch.long)
        h = 256
        self.net = torch.nn.Sequential(torch.nn.Linear(X.shape[1], h), torch.nn.SiLU(), torch.nn.Linear(h, h), torch.nn.SiLU(),
                                       torch.nn.Linear(h, h), torch.nn.SiLU(), torch.nn.Linear(h, 6))  # fmt: skip
        opt = torch.optim.Adam(self.net.parameters(), 1e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        t0 = time.perf_counter()
        for _ in range(epochs):
            order = torch.as_tensor(train)[torch.randperm(len(train), generator=gen)]
            for a in range(0, len(order), 256):
                i = order[a : a + 256]
                out = self.net(X[i])
                loss = torch.nn.functional.cross_entropy(out[:, :3], C[i]) + ((out[:, 3:] - Y[i]) ** 2 * M[i]).sum() / M[i].sum().clamp(min=1)
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
        self.net.eval()
        self.train_seconds = time.perf_counter() - t0
        self.n_rows = n

    def predict(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted class code (0 silent, 1 spiking, 2 bursting) and (rate, period, spikes per burst)."""
        with torch.no_grad():
            out = self.net(torch.as_tensor((np.log(g) - self.mu) / self.sd, dtype=torch.float32)).double().numpy()
        return out[:, :3].argmax(axis=1), np.exp(out[:, 3:] * self.ys + self.ym)

    def accuracy(self) -> dict:
        """On the held-back rows, per true class: class accuracy and the share within each fidelity tolerance."""
        v = self.valid
        cls, pred = self.predict(np.exp(self.inputs[v] * self.sd + self.mu))
        out = {}
        for name, code in CODES.items():
            m = self.code[v] == code
            row = {"n": int(m.sum()), "class": round(float((cls[m] == code).mean()), 3)}
            for j, k in enumerate(TARGETS):
                d = m & self.defined[v, j]
                truth = np.exp(self.y[v][d, j] * self.ys[j] + self.ym[j])
                tol = 1.0 if k == "spikes_per_burst" else 0.1 * truth
                row[k] = round(float((np.abs(pred[d, j] - truth) <= tol).mean()), 3) if d.any() else None
            out[name] = row
        return out


def screen_score(cls: np.ndarray, pred: np.ndarray, obs: dict) -> np.ndarray:
    """Worst normalised miss of the predicted features over the tolerances ``obs``'s class is held to."""
    klass = str(obs["firing_class"])
    miss = [np.abs(np.log(pred[:, 0] / obs["mean_rate"])) / np.log(1.1)]
    if klass == "bursting":
        if np.isfinite(obs["burst_period"]):
            miss.append(np.abs(np.log(pred[:, 1] / obs["burst_period"])) / np.log(1.1))
        miss.append(np.abs(pred[:, 2] - obs["spikes_per_burst"]))
    return np.maximum.reduce(miss) + 10.0 * (cls != CODES[klass])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="da", choices=("stg", "da"))
    p.add_argument("--train", type=int, default=40000)
    p.add_argument("--focus", type=int, default=10000, help="simulations in each focus box of the law's campaigns")
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--screen", default="1,4,10,30", help="comma-separated K: cells screened per cell kept")
    p.add_argument("--observations", type=int, default=60, help="per firing class")
    p.add_argument("--cells", type=int, default=64)
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--cache", type=Path)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    ks = sorted({int(v) for v in a.screen.split(",")})
    t0 = time.perf_counter()
    post = load_pretrained(a.model)
    info = pretrained_info(a.model)
    proto = {k: info["protocol"][k] for k in ("duration", "transient", "dt")}
    data = training_data(post, info, a.train, a.focus, a.seed, a.cache)
    t_data = time.perf_counter() - t0
    emu = Emulator(data["g"], data["x"], epochs=a.epochs, seed=a.seed)
    acc = emu.accuracy()
    print(f"emulator: {emu.n_rows} rows, {emu.train_seconds:.0f} s; held-back accuracy {acc}", flush=True)
    ho = heldout_set(a.model, n_points=3000, cells_per_point=1, seed=9100, output=post.simulator.output, **proto)
    free = post.free_conductances
    rng = np.random.default_rng(a.seed + 7)
    result: dict = {}
    for cname, code in CODES.items():
        idx = np.flatnonzero(ho.klass == code)[: a.observations]
        raw = ho.x[torch.as_tensor(idx)]
        observed = observed_features(raw)
        xc = post.condition(raw, **post.conditions_among(noise_std=0.0))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(a.seed)
            t = _posterior_samples(post, xc, a.cells * ks[-1]).to(torch.float64).numpy()
        fid = {k: [] for k in ks}
        spread = {k: [] for k in ks}
        for i in range(idx.size):
            cells, _ = free.sample_cells(t[:, i, :], xc[i : i + 1], seed=rng)
            obs = {k: v[i] for k, v in observed.items()}
            cls, pred = emu.predict(cells)
            score = screen_score(cls, pred, obs)
            for k in ks:
                pool = np.arange(a.cells * k)
                keep = pool[np.argsort(score[pool], kind="stable")[: a.cells]] if k > 1 else pool
                g = cells[keep]
                r = simulate(post.model, g, progress=False, **proto)
                _, ok, _ = fidelity_checks(features_from_csr(r.times, r.offsets, r.t_start, r.t_stop), obs)
                fid[k].append(float(ok.mean()))
                if ok.sum() >= 2:
                    spread[k].append(float(np.log(g[ok]).std(axis=0, ddof=1).mean()))
        result[cname] = {"n": int(idx.size), **{f"K={k}": {"fidelity": round(float(np.mean(fid[k])), 3),
                                                           "faithful_log_std": round(float(np.mean(spread[k])), 3) if spread[k] else None}
                                                for k in ks}}  # fmt: skip
        print(cname, result[cname], flush=True)
    out = {"model": a.model, "args": vars(a) | {"cache": str(a.cache) if a.cache else None}, "emulator": {
        "rows": emu.n_rows, "epochs": a.epochs, "train_seconds": round(emu.train_seconds, 1), "accuracy": acc},
        "screen": result, "data_seconds": round(t_data, 1), "seconds": round(time.perf_counter() - t0, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip()}  # fmt: skip
    Path(a.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
