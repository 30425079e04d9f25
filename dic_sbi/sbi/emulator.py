r"""A learned forward emulator of a model's firing, and the population screen it makes possible.

The amortised conductance posterior ``q(t | x) · q(z | t, x)`` places cells on the right DICs, but a noise-free
burst is a thin set of each DIC's degenerate fiber (burst period ± 10 % and spikes per burst ± 1), so many of
its cells do not fire like the recording (DA bursters: a third do). ``infer --match`` fixes that by simulating
candidates; a :class:`FiringEmulator` does it without simulation: an ensemble of MLPs from ``ln ḡ`` to the
firing class and a Gaussian over ``ln`` mean rate, burst period and spikes per burst (and whether a bursting cell
shows a period at all), trained on simulations of the model under the posterior's protocol: noise-free ones, and
for a *noise-aware* emulator also simulations with a noisy current whose σ is a further input (the Gaussians then
hold the spread a noise realisation adds, and the screen ranks cells by how likely a noisy simulation of them fires
like the noisy recording).
:func:`screen_population` then draws ``K × n`` cells of the posterior and keeps the ``n`` whose emulated
probability of passing every tolerance of :func:`~dic_sbi.spiketrains.fires_like` is highest. Every kept cell
keeps its DICs exactly (the screen only selects); the population is a sharper approximation of the noise-free
posterior than the amortised one, not a draw of it, so ``sample`` / ``log_prob`` and sbi's diagnostics use the
unscreened posterior.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from ..errors import InvalidInputError
from ..spiketrains.fidelity import FIDELITY_TOLERANCES

__all__ = ["FiringEmulator", "train_emulator", "screen_population", "select_faithful", "emulator_accuracy"]

Array = NDArray[np.float64]

#: The emulated features, in the order of the network's Gaussian outputs (ln scale).
TARGETS = ("mean_rate", "burst_period", "spikes_per_burst")
_CLASSES = ("silent", "spiking", "bursting")
_LOGVAR = (-12.0, 4.0)  # clamp of the predicted log-variances (standardised units): no zero or runaway widths


def _mlp(n_in: int, width: int, depth: int) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for _ in range(depth):
        layers += [torch.nn.Linear(n_in, width), torch.nn.SiLU()]
        n_in = width
    # 3 class logits, 3 means, 3 log-variances, 1 logit of "a bursting cell shows a burst period"
    layers.append(torch.nn.Linear(n_in, 10))
    return torch.nn.Sequential(*layers)


class FiringEmulator(torch.nn.Module):
    """``ln ḡ`` → firing class, Gaussian ``ln`` (rate, burst period, spikes per burst), P(period shown | bursting).

    An equal-weight ensemble of ``members`` MLPs (``depth`` hidden layers of ``width``); inputs and targets are
    standardised by the training data's moments, stored as buffers so the state dict is the whole emulator.
    """

    def __init__(self, n_conductances: int, *, width: int = 256, depth: int = 3, members: int = 1,
                 noise_input: bool = False) -> None:
        super().__init__()
        if min(n_conductances, width, depth, members) < 1:
            raise InvalidInputError("FiringEmulator: n_conductances, width, depth and members must be >= 1")
        self.settings = {"n_conductances": int(n_conductances), "width": int(width), "depth": int(depth),
                         "members": int(members)}  # fmt: skip
        if noise_input:  # only then, so that the settings of noise-free emulators stay as they were
            self.settings["noise_input"] = True
        n_in = n_conductances + int(bool(noise_input))
        self.nets = torch.nn.ModuleList(_mlp(n_in, width, depth) for _ in range(members))
        self.register_buffer("g_mean", torch.zeros(n_conductances, dtype=torch.float64))
        self.register_buffer("g_std", torch.ones(n_conductances, dtype=torch.float64))
        self.register_buffer("y_mean", torch.zeros(3, dtype=torch.float64))
        self.register_buffer("y_std", torch.ones(3, dtype=torch.float64))
        if noise_input:
            # the top of the σ range trained on: inputs are σ / it, and a larger σ is refused (never seen)
            self.register_buffer("noise_max", torch.ones((), dtype=torch.float64))

    @property
    def noise_input(self) -> bool:
        """Whether the emulator takes the current noise σ (µA/cm²) as an input (trained on noisy simulations)."""
        return bool(self.settings.get("noise_input", False))

    @property
    def noise_range(self) -> tuple[float, float]:
        """The σ the emulator answers for: ``(0, top of the σ range trained on)``, or ``(0, 0)`` for a noise-free one."""
        return (0.0, float(self.noise_max)) if self.noise_input else (0.0, 0.0)

    def _inputs(self, g: Any, noise_std: Any = None) -> Tensor:
        g = np.asarray(g, dtype=np.float64)
        if g.ndim != 2 or g.shape[1] != self.settings["n_conductances"]:
            raise InvalidInputError(f"g: expected shape (n, {self.settings['n_conductances']}), got {g.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._standardised(np.log(g), self._noise(noise_std, g.shape[0]))

    def _noise(self, noise_std: Any, n: int) -> Array | None:
        """σ per row ``(n,)`` for a noise-aware emulator (``None`` otherwise), checked against what it knows."""
        try:
            sigma = np.broadcast_to(np.asarray(0.0 if noise_std is None else noise_std, dtype=np.float64), (n,))
        except (TypeError, ValueError):
            sigma = None
        lo, hi = self.noise_range
        if sigma is None or not np.isfinite(sigma).all() or (sigma < lo).any() or (sigma > hi * (1 + 1e-9)).any():
            what = f"σ in [0, {hi:g}]" if self.noise_input else "σ = 0 (it is of noise-free firing; see train-emulator --noisy-simulations)"
            raise InvalidInputError(f"noise_std: this firing emulator answers for {what}, got {noise_std!r}")
        return np.array(sigma) if self.noise_input else None

    def _standardised(self, lg: Array, sigma: Array | None = None) -> Tensor:
        """Network inputs for ``ln ḡ`` (non-finite entries, of invalid cells, map to the mean) and, for a
        noise-aware emulator, σ per row."""
        z = (lg - self.g_mean.numpy()) / self.g_std.numpy()
        z = np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
        if self.noise_input:
            if sigma is None:
                raise InvalidInputError("noise_std: a noise-aware firing emulator needs σ")
            z = np.column_stack([z, sigma / float(self.noise_max)])
        return torch.as_tensor(z, dtype=torch.float32)

    def forward(self, z: Tensor) -> Tensor:
        """Raw outputs ``(members, n, 10)`` for standardised ``ln ḡ`` ``z``."""
        return torch.stack([net(z) for net in self.nets])

    @torch.no_grad()
    def predict(self, g: Any, noise_std: Any = None) -> dict[str, Array]:
        """Per member (first axis): ``log_class`` ``(M, n, 3)`` log-probabilities of silent / spiking / bursting,
        ``mean`` and ``sd`` ``(M, n, 3)`` of ln (rate Hz, period ms, spikes per burst), ``log_period_shown``
        and ``log_period_hidden`` ``(M, n)``; of a simulation with current noise ``noise_std`` (scalar or per
        row; default 0, the only σ a noise-free emulator takes)."""
        out = self.forward(self._inputs(g, noise_std)).double()
        ym, ys = self.y_mean.numpy(), self.y_std.numpy()
        logits = out[..., :3]
        logv = out[..., 6:9].clamp(*_LOGVAR)
        shown = out[..., 9]
        return {
            "log_class": (logits - torch.logsumexp(logits, dim=-1, keepdim=True)).numpy(),
            "mean": out[..., 3:6].numpy() * ys + ym,
            "sd": np.exp(0.5 * logv.numpy()) * ys,
            "log_period_shown": torch.nn.functional.logsigmoid(shown).numpy(),
            "log_period_hidden": torch.nn.functional.logsigmoid(-shown).numpy(),
        }

    def log_prob_faithful(self, g: Any, observed: Mapping[str, Any], tolerances: Mapping[str, float] | None = None,
                          noise_std: Any = None) -> Array:
        """Emulated log-probability that each cell of ``g`` fires like ``observed`` (:func:`~dic_sbi.spiketrains.fires_like`'s
        rule: same class, rate within ``tolerances``; bursters also period and spikes per burst), ``(n,)``, when
        simulated with current noise ``noise_std`` (default 0).

        Within a member the features are taken as independent given ``ḡ``; the ensemble is a mixture."""
        tol = {**FIDELITY_TOLERANCES, **{k: v for k, v in (tolerances or {}).items() if v is not None}}
        klass = str(observed["firing_class"])
        if klass not in _CLASSES:
            raise InvalidInputError(f"observed: unknown firing class {klass!r}")
        p = self.predict(g, noise_std)
        score = p["log_class"][..., _CLASSES.index(klass)].copy()
        if klass == "silent":
            return _mixture(score)
        intervals = [(0, _relative_interval(float(observed["mean_rate"]), tol["mean_rate"]))]
        if klass == "bursting":
            period = float(observed["burst_period"])
            if math.isfinite(period):
                score += p["log_period_shown"]
                intervals.append((1, _relative_interval(period, tol["burst_period"])))
            else:  # a single-burst window: matched by cells showing no period either
                score += p["log_period_hidden"]
            spb = float(observed["spikes_per_burst"])
            if math.isfinite(spb):
                lo = spb - tol["spikes_per_burst"]
                intervals.append((2, (math.log(lo) if lo > 0 else -math.inf, math.log(spb + tol["spikes_per_burst"]))))
        for j, (lo, hi) in intervals:
            score += _log_interval(p["mean"][..., j], p["sd"][..., j], lo, hi)
        return _mixture(score)


def _relative_interval(value: float, rtol: float) -> tuple[float, float]:
    if not (math.isfinite(value) and value > 0):
        return (-math.inf, math.inf)  # nothing to hold the cells to (fires_like then fails or passes all alike)
    lo = value * (1.0 - rtol)
    return (math.log(lo) if lo > 0 else -math.inf, math.log(value * (1.0 + rtol)))


def _log_interval(mean: Array, sd: Array, lo: float, hi: float) -> Array:
    """log P(lo < Y < hi) for Y ~ N(mean, sd²), stable in both tails."""
    from scipy.special import log_ndtr

    a, b = (lo - mean) / sd, (hi - mean) / sd
    # log(Φ(b) − Φ(a)) through the tail the interval lies in (mirrored when it sits above the mean), so cells far
    # off still rank by how far off instead of all rounding to log 0
    with np.errstate(divide="ignore", invalid="ignore"):
        above = a + b > 0  # (−inf, inf) gives NaN: not above
        top, bottom = np.where(above, -a, b), np.where(above, -b, a)
        lt, lb = log_ndtr(top), log_ndtr(bottom)
        out = lt + np.log1p(-np.exp(np.minimum(lb - lt, 0.0)))
    return np.maximum(out, -1e300)


def _mixture(score: Array) -> Array:
    return np.logaddexp.reduce(score, axis=0) - math.log(score.shape[0])


def _targets(features: Mapping[str, Any]) -> tuple[NDArray[np.int64], Array, NDArray[np.bool_]]:
    """Class codes, ln targets (NaN where undefined) and the period-shown flags of simulated cells."""
    klass = np.asarray(features["firing_class"]).astype(str)
    code = np.full(klass.shape, -1, dtype=np.int64)
    for i, c in enumerate(_CLASSES):
        code[klass == c] = i
    y = np.column_stack([np.asarray(features[k], dtype=float) for k in TARGETS])
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(y > 0, np.log(y), np.nan)
    y[code == 0] = np.nan  # a silent cell has no rate to emulate
    return code, y, np.isfinite(y[:, 1])


def train_emulator(
    g: Any,
    features: Mapping[str, Any],
    *,
    members: int = 1,
    width: int = 256,
    depth: int = 3,
    epochs: int = 200,
    batch_size: int = 512,
    learning_rate: float = 2e-3,
    burst_weight: float = 3.0,
    seed: int = 0,
    noise_std: Any = None,
    noise_max: float | None = None,
    on_epoch: Callable[[int, int, int, float], None] | None = None,
) -> FiringEmulator:
    """Train a :class:`FiringEmulator` on simulated cells ``g`` ``(n, k)`` and their ``features``
    (:func:`~dic_sbi.spiketrains.features_from_csr` of their simulations).

    ``noise_std`` ``(n,)``: each simulation's current noise σ; given, the emulator is noise-aware (σ is an input,
    up to ``noise_max``, default the largest σ given; include noise-free rows, σ = 0, for it to answer for
    noise-free recordings too; give the top of the range the σ were drawn from as ``noise_max``, so that the
    whole range is answered for). ``None`` (default): the simulations are noise-free and so is the emulator.

    Each member minimises the class cross-entropy plus the Gaussian negative log-likelihood of the defined ln
    features plus, on bursting cells, the cross-entropy of "shows a burst period"; bursting rows weigh
    ``burst_weight`` (their tolerances are the tight ones). One-cycle learning rate, ``epochs`` passes.
    ``on_epoch(member, epoch, epochs, loss)`` reports progress. Rows with invalid cells or features are dropped.
    """
    g = np.asarray(g, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != np.asarray(features["firing_class"]).shape[0]:
        raise InvalidInputError("g, features: expected one row of conductances per simulated cell")
    code, y, shown = _targets(features)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = np.log(g)
    sigma = None
    if noise_std is not None:
        sigma = np.asarray(noise_std, dtype=np.float64)
        if sigma.shape != (g.shape[0],) or not np.isfinite(sigma).all() or (sigma < 0).any() or sigma.max() <= 0:
            raise InvalidInputError("noise_std: expected one σ >= 0 per simulated cell, some of them > 0")
        if noise_max is not None and not (np.isfinite(noise_max) and noise_max >= sigma.max()):
            raise InvalidInputError(f"noise_max: expected a finite σ >= the largest σ given ({sigma.max():g}), got {noise_max!r}")
    ok = np.isfinite(lg).all(axis=1) & (code >= 0)
    if ok.sum() < 100 or not (code[ok] > 0).any():
        raise InvalidInputError(f"features: {int(ok.sum())} usable rows (need >= 100, some firing)")
    lg, code, y, shown = lg[ok], code[ok], y[ok], shown[ok]
    emu = FiringEmulator(g.shape[1], width=width, depth=depth, members=members, noise_input=sigma is not None)
    if sigma is not None:
        sigma = sigma[ok]
        emu.noise_max.fill_(float(sigma.max() if noise_max is None else noise_max))
    defined = np.isfinite(y)
    ym = np.array([y[defined[:, j], j].mean() if defined[:, j].any() else 0.0 for j in range(3)])
    ys = np.array([y[defined[:, j], j].std() if defined[:, j].sum() > 1 else 1.0 for j in range(3)])
    ys = np.where(ys > 0, ys, 1.0)
    emu.g_mean.copy_(torch.as_tensor(lg.mean(axis=0)))
    emu.g_std.copy_(torch.as_tensor(np.where(lg.std(axis=0) > 0, lg.std(axis=0), 1.0)))
    emu.y_mean.copy_(torch.as_tensor(ym))
    emu.y_std.copy_(torch.as_tensor(ys))
    X = emu._standardised(lg, sigma)
    Y = torch.as_tensor(np.where(defined, (y - ym) / ys, 0.0), dtype=torch.float32)
    C = torch.as_tensor(code)
    bursting = C == 2
    W = torch.where(bursting, float(burst_weight), 1.0)
    M = torch.as_tensor(defined, dtype=torch.float32) * W[:, None]
    S = torch.as_tensor(shown, dtype=torch.float32)
    steps = epochs * math.ceil(len(X) / batch_size)
    for m, net in enumerate(emu.nets):
        gen = torch.Generator().manual_seed(int(seed) * 1000 + m)
        torch.manual_seed(int(seed) * 1000 + m)
        for layer in net:  # a distinct initialisation per member
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()
        opt = torch.optim.AdamW(net.parameters(), learning_rate, weight_decay=1e-5)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=steps)
        net.train()
        for ep in range(epochs):
            order = torch.randperm(len(X), generator=gen)
            total = 0.0
            for a in range(0, len(X), batch_size):
                i = order[a : a + batch_size]
                out = net(X[i])
                ce = (torch.nn.functional.cross_entropy(out[:, :3], C[i], reduction="none") * W[i]).mean()
                logv = out[:, 6:9].clamp(*_LOGVAR)
                nll = 0.5 * ((out[:, 3:6] - Y[i]) ** 2 / logv.exp() + logv)
                reg = (nll * M[i]).sum() / M[i].sum().clamp(min=1.0)
                b = bursting[i]
                per = torch.nn.functional.binary_cross_entropy_with_logits(out[b, 9], S[i][b]) if b.any() else out.sum() * 0
                loss = ce + reg + per
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(i)
            if on_epoch is not None:
                on_epoch(m, ep + 1, epochs, total / len(X))
        net.eval()
    return emu.eval()


def emulator_accuracy(emu: FiringEmulator, g: Any, features: Mapping[str, Any], noise_std: Any = None) -> dict[str, Any]:
    """On cells not used in training (simulated with current noise ``noise_std``, default 0): per true class, the
    share whose emulated class is right and whose ensemble-median feature falls within each
    :data:`~dic_sbi.spiketrains.FIDELITY_TOLERANCES` of the simulated one (the ``fires_like`` tolerances, one at
    a time)."""
    code, y, _ = _targets(features)
    p = emu.predict(g, noise_std)
    cls = _mixture(p["log_class"]).argmax(axis=-1)
    med = np.exp(np.median(p["mean"], axis=0))
    truth = np.exp(y)
    out: dict[str, Any] = {}
    for c in (1, 2):
        m = code == c
        row: dict[str, Any] = {"n": int(m.sum()), "class": float((cls[m] == c).mean()) if m.any() else None}
        for j, k in enumerate(TARGETS):
            d = m & np.isfinite(truth[:, j])
            if c == 1 and k != "mean_rate" or not d.any():
                continue
            tol = FIDELITY_TOLERANCES[k] * (truth[d, j] if k != "spikes_per_burst" else 1.0)
            row[k] = float((np.abs(med[d, j] - truth[d, j]) <= tol).mean())
        out[_CLASSES[c]] = row
    return out


def select_faithful(
    g: Any, emulator: FiringEmulator, observed: Mapping[str, Any], n: int, tolerances: Mapping[str, float] | None = None,
    noise_std: float | None = None,
) -> tuple[NDArray[np.int64], Array]:
    """Indices (ascending) of the ``n`` rows of ``g`` the emulator finds likeliest to fire like ``observed`` (when
    simulated with current noise ``noise_std``, default 0), and every row's emulated log-probability of fidelity
    (``-inf`` for invalid cells)."""
    g = np.asarray(g, dtype=np.float64)
    valid = np.isfinite(g).all(axis=1)
    logp = emulator.log_prob_faithful(np.where(valid[:, None], g, 1.0), observed, tolerances, noise_std=noise_std)
    logp = np.where(valid, logp, -np.inf)
    return np.sort(np.argsort(-logp, kind="stable")[: int(n)]), logp


def screen_population(
    draw: Callable[[int], tuple[Array, Array]],
    emulator: FiringEmulator,
    observed: Mapping[str, Any],
    n: int,
    *,
    screen: int,
    tolerances: Mapping[str, float] | None = None,
    noise_std: float | None = None,
) -> tuple[Array, Array, dict[str, Any]]:
    """Draw ``screen × n`` cells with ``draw(k) -> (g (k, m), dics (k, 2))`` and keep the ``n`` the emulator
    finds likeliest to fire like ``observed`` (:func:`select_faithful`; ``noise_std``: the recording's current
    noise σ, which a noise-aware emulator takes and a noise-free one refuses unless 0).

    Returns the kept cells, their DICs (in draw order among the kept) and a summary: ``screen``, ``drawn``,
    and the emulated probability of fidelity, mean over kept and over all drawn cells.
    """
    if int(screen) < 1:
        raise InvalidInputError(f"screen: expected an integer >= 1, got {screen!r}")
    t0 = time.perf_counter()
    g, d = draw(int(screen) * int(n))
    keep, logp = select_faithful(g, emulator, observed, n, tolerances, noise_std=noise_std)
    summary = {"screen": int(screen), "drawn": int(g.shape[0]),
               "emulated_fidelity_kept": float(np.exp(logp[keep]).mean()),
               "emulated_fidelity_drawn": float(np.exp(logp).mean()),
               **({"noise_std": float(noise_std)} if noise_std else {}),
               "seconds": time.perf_counter() - t0}  # fmt: skip
    return g[keep], d[keep], summary
