"""Priors in sbi's terms: exact ``torch.distributions`` over conductances and over DICs.

Both priors sample float32 (sbi's dtype), have an exact ``support`` (every sample lies in it, ``log_prob`` is
finite exactly on it), closed-form ``mean`` and ``variance``, and pass ``sbi.utils.process_prior`` unwrapped.

A log-uniform built as ``TransformedDistribution(Uniform, ExpTransform)`` is avoided on purpose: ``exp`` of a
float32 uniform can round past the upper bound, so the sample leaves the declared support. Here samples are
drawn in float64, rounded to float32 and clamped to the float32 bounds the support itself uses.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch.distributions import Distribution, constraints
from torch.distributions.constraint_registry import biject_to, transform_to
from torch.distributions.transforms import IndependentTransform, Transform

from ..errors import InvalidInputError
from ..models import ConductanceModel, get_model
from ._utils import Seed, torch_generator

__all__ = ["ConductancePrior", "DICPrior", "DICRegion", "dic_image_box", "dic_image_weights", "reachable_floor"]

#: Largest accepted conductance bound (mS/cm²); real ones stay below ~1e4, float32 overflows at ~3e38.
MAX_CONDUCTANCE = 1e9
#: Smallest lower bound of a log-uniform conductance prior (float32's normal range starts at ~1.2e-38).
MIN_LOG_CONDUCTANCE = 1e-30
#: Largest accepted |bound| of a DIC box (normalised DICs are O(10); float32 moments overflow near 1e19).
MAX_DIC = 1e6
_BOUNDARY_SEED = 20250912  # fixed: the reachable region of a model is a deterministic object


# -- conductance prior ---------------------------------------------------------------------------------------
class ConductancePrior(Distribution):
    r"""Independent uniform (``scale="linear"``) or log-uniform (``scale="log"``) box over maximal conductances.

    The "standard" prior of simulation-based inference on conductance-based models (e.g. Gonçalves et al. 2020):
    every conductance, leak included, varies independently in ``[low, high]`` (mS/cm², model order).

    Arguments:
        model: Model name or object.
        scale: ``"linear"`` (uniform) or ``"log"`` (uniform in ``log ḡ``; bounds must be > 0).
        low, high: ``(n_conductances,)`` bounds; default ``model.default_bounds()``.

    References:
        Gonçalves et al. (2020). Training deep neural density estimators to identify mechanistic models of neural
        dynamics. eLife 9:e56261.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        model: str | ConductanceModel,
        scale: Literal["linear", "log"] = "linear",
        *,
        low: ArrayLike | None = None,
        high: ArrayLike | None = None,
        validate_args: bool | None = False,
    ) -> None:
        self.model = get_model(model)
        if scale not in ("linear", "log"):
            raise InvalidInputError(f"scale: expected 'linear' or 'log', got {scale!r}")
        self.scale = scale
        default_lo, default_hi = self.model.default_bounds()
        n = self.model.n_conductances
        lo = _bound("low", default_lo if low is None else low, n)
        hi = _bound("high", default_hi if high is None else high, n)
        if np.any(lo < 0):
            raise InvalidInputError(f"low: maximal conductances are >= 0; got {lo}")
        if scale == "log" and np.any(lo <= 0):
            raise InvalidInputError(f"low: a log-uniform prior needs bounds > 0; got {lo}")
        if np.any(hi <= lo):
            raise InvalidInputError(f"high: every upper bound must exceed its lower bound; got low={lo}, high={hi}")
        if scale == "log" and np.any(lo < MIN_LOG_CONDUCTANCE):
            # The float32 support would round such a bound to 0 (or a subnormal) and reject its own samples.
            raise InvalidInputError(f"low: log-uniform bounds below {MIN_LOG_CONDUCTANCE:g} mS/cm² are not usable; got {lo}")
        if np.any(hi > MAX_CONDUCTANCE):
            # Samples are float32 and the variance is (hi - lo)² / 12: bounds far beyond any physical
            # conductance would overflow to inf.
            raise InvalidInputError(f"high: bounds above {MAX_CONDUCTANCE:g} mS/cm² are not conductances; got {hi}")
        self._lo64, self._hi64 = lo, hi
        self.low = torch.as_tensor(lo, dtype=torch.float32)
        self.high = torch.as_tensor(hi, dtype=torch.float32)
        if scale == "linear":
            self._log_norm = float(np.sum(np.log(hi - lo)))
        else:
            self._log_norm = float(np.sum(np.log(np.log(hi / lo))))
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([n]), validate_args=validate_args)

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names (the model's conductances), e.g. for ``sbi.analysis.pairplot(labels=...)``."""
        return self.model.conductance_names

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self) -> constraints.Constraint:
        return constraints.independent(constraints.interval(self.low, self.high), 1)

    def sample(self, sample_shape: torch.Size | tuple = torch.Size(), *, seed: Seed = None) -> torch.Tensor:
        """Draw ``sample_shape + (n_conductances,)`` float32 conductances (``seed``: int or torch Generator)."""
        shape = self._extended_shape(torch.Size(sample_shape))
        u = torch.rand(shape, dtype=torch.float64, generator=torch_generator(seed))
        lo, hi = torch.as_tensor(self._lo64), torch.as_tensor(self._hi64)
        if self.scale == "linear":
            x = lo + (hi - lo) * u
        else:
            x = torch.exp(torch.log(lo) + torch.log(hi / lo) * u)
        # Rounding to float32 can cross a bound: clamp to the very bounds the support checks.
        return torch.clamp(x.to(torch.float32), self.low, self.high)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = _as_value(self, value)
        if value.numel() == 0:  # torch's independent(interval).check cannot reshape an empty batch
            return torch.empty(value.shape[:-1], dtype=value.dtype, device=value.device)
        inside = self.support.check(value)
        if self.scale == "linear":
            lp = torch.full(inside.shape, -self._log_norm, dtype=value.dtype, device=value.device)
        else:
            lp = -torch.log(value.clamp_min(torch.finfo(value.dtype).tiny)).sum(-1) - self._log_norm
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    @property
    def mean(self) -> torch.Tensor:
        lo, hi = self._lo64, self._hi64
        m = 0.5 * (lo + hi) if self.scale == "linear" else (hi - lo) / np.log(hi / lo)
        return torch.as_tensor(m, dtype=torch.float32)

    @property
    def variance(self) -> torch.Tensor:
        lo, hi = self._lo64, self._hi64
        if self.scale == "linear":
            v = (hi - lo) ** 2 / 12.0
        else:
            L = np.log(hi / lo)
            v = (hi**2 - lo**2) / (2.0 * L) - ((hi - lo) / L) ** 2
        return torch.as_tensor(v, dtype=torch.float32)

    def __repr__(self) -> str:
        return f"ConductancePrior({self.model.name!r}, scale={self.scale!r})"


def _as_value(dist: Distribution, value: ArrayLike) -> torch.Tensor:
    """``value`` as a floating tensor, validated against ``dist``'s support when validation is on."""
    value = torch.as_tensor(value)
    if not value.is_floating_point():
        value = value.to(torch.float32)
    if dist._validate_args:
        dist._validate_sample(value)
    return value


def _bound(name: str, value: ArrayLike, n: int) -> NDArray[np.float64]:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name}: expected {n} numbers, got {type(value).__name__}") from None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name}: expected {n} finite numbers (one per conductance), got shape {arr.shape}")
    return arr


# -- the reachable DIC region -------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def reachable_floor(
    model: ConductanceModel,
    box: tuple[tuple[float, float], tuple[float, float]],
    min_reachability: float,
    resolution: float,
    n_draws: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Knots on g_s and, per interval between knots, the lowest g_u the compensation reaches.

    For every knot ``s_k`` a bisection on g_u finds ``b_k``, the smallest g_u (to ``resolution / 5``) from which
    upward the reachability (fraction of valid draws of :func:`~dic_sbi.core.populations.degenerate_population`)
    is at least ``min_reachability``; the floor of an interval is the larger of its two knots' values, so the
    region errs on the reachable side. The bisection assumes reachability grows with g_u, which holds on the
    published maps (unreachable STG/DA targets sit at small g_u); a coarse grid above the floor is checked and
    the floor raised, with a warning, where the assumption fails. Fixed seeds make the result deterministic.

    Returns ``(knots (K + 1,), floor (K,))``.
    """
    from ..core.reachability import reachability

    (s_lo, s_hi), (u_lo, u_hi) = box
    K = max(1, int(math.ceil((s_hi - s_lo) / resolution - 1e-9)))
    knots = np.linspace(s_lo, s_hi, K + 1)
    rng = np.random.default_rng(_BOUNDARY_SEED)

    def ok(u: NDArray[np.float64]) -> NDArray[np.bool_]:
        return reachability(model, knots, u, n_draws=n_draws, seed=rng) >= min_reachability

    at_bottom = ok(np.full(K + 1, float(u_lo)))
    at_top = ok(np.full(K + 1, float(u_hi)))
    lo = np.full(K + 1, float(u_lo))
    hi = np.full(K + 1, float(u_hi))
    for _ in range(int(math.ceil(math.log2(max((u_hi - u_lo) / (resolution / 5), 2.0))))):
        mid = 0.5 * (lo + hi)
        good = ok(mid)
        hi = np.where(good, mid, hi)
        lo = np.where(good, lo, mid)
    b = np.where(at_bottom, u_lo, np.where(at_top, hi, u_hi))

    # Check the monotonicity assumption on a coarse grid above the floor.
    levels = np.linspace(u_lo, u_hi, 21)
    for u in levels:
        above = (u >= b) & (b < u_hi)  # empty columns (b = u_hi) have nothing to check
        if not above.any():
            continue
        bad = above & ~(reachability(model, knots, np.full(K + 1, u), n_draws=n_draws, seed=rng) >= 0.5 * min_reachability)
        if bad.any():
            import warnings

            warnings.warn(
                f"DICPrior: reachability of model {model.name!r} is not monotone in g_u at g_s = "
                f"{knots[bad][:3]} (g_u = {u:g}); the prior's floor is raised above it",
                stacklevel=3,
            )
            b = np.where(bad, min(u + (levels[1] - levels[0]), u_hi), b)
    floor = np.maximum(b[:-1], b[1:])
    return knots, floor


class DICRegion(constraints.Constraint):
    """The set ``{s_lo <= g_s <= s_hi, floor(g_s) <= g_u <= u_hi}`` with a piecewise-constant floor (event_dim 1)."""

    is_discrete = False
    event_dim = 1

    def __init__(self, knots: NDArray[np.float64], floor: NDArray[np.float64], u_hi: float) -> None:
        self.knots = torch.as_tensor(np.asarray(knots, dtype=np.float64))
        self.floor = torch.as_tensor(np.asarray(floor, dtype=np.float64))
        self.u_hi = float(u_hi)
        super().__init__()

    @property
    def s_lo(self) -> float:
        return float(self.knots[0])

    @property
    def s_hi(self) -> float:
        return float(self.knots[-1])

    def floor_at(self, s: torch.Tensor) -> torch.Tensor:
        """The floor of g_u at ``s`` (float64; the interval's value, the last interval at ``s_hi``)."""
        s = s.to(torch.float64)
        K = self.floor.numel()
        h = (self.s_hi - self.s_lo) / K
        k = torch.clamp(torch.floor((s - self.s_lo) / h), 0, K - 1).nan_to_num(0).long()
        return self.floor.to(k.device)[k]  # the support check runs on the training device (a GPU) too

    def check(self, value: torch.Tensor) -> torch.Tensor:
        s = value[..., 0].to(torch.float64)
        u = value[..., 1].to(torch.float64)
        floor = self.floor_at(s)
        # An interval whose floor is u_hi is empty (not a segment of measure zero).
        return (s >= self.s_lo) & (s <= self.s_hi) & (u <= self.u_hi) & (u >= floor) & (floor < self.u_hi)

    def area(self) -> float:
        h = (self.s_hi - self.s_lo) / self.floor.numel()
        return float(h * torch.sum(self.u_hi - self.floor))

    def __repr__(self) -> str:
        return f"DICRegion(g_s in [{self.s_lo:g}, {self.s_hi:g}], g_u in [floor(g_s), {self.u_hi:g}])"


class _DICRegionTransform(Transform):
    """Bijection from R² onto the interior of a :class:`DICRegion` (triangular, so its Jacobian is cheap).

    ``g_s = s_lo + (s_hi - s_lo) σ(z_0)``, ``g_u = c + (u_hi - c) σ(z_1)`` with ``c = floor(g_s)``.
    """

    domain = constraints.independent(constraints.real, 1)
    bijective = True
    sign = +1

    def __init__(self, region: DICRegion, cache_size: int = 0) -> None:
        super().__init__(cache_size=cache_size)
        self.region = region

    @property
    def codomain(self) -> constraints.Constraint:  # type: ignore[override]
        return self.region

    def with_cache(self, cache_size: int = 1) -> "_DICRegionTransform":
        return self if self._cache_size == cache_size else _DICRegionTransform(self.region, cache_size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _DICRegionTransform) and other.region is self.region

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        r = self.region
        s = r.s_lo + (r.s_hi - r.s_lo) * torch.sigmoid(z[..., 0])
        c = r.floor_at(s).to(z.dtype)
        u = c + (r.u_hi - c) * torch.sigmoid(z[..., 1])
        return torch.stack([s, u], dim=-1)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        r = self.region
        s, u = y[..., 0], y[..., 1]
        c = r.floor_at(s).to(y.dtype)
        z0 = torch.logit((s - r.s_lo) / (r.s_hi - r.s_lo))
        z1 = torch.logit((u - c) / (r.u_hi - c))
        return torch.stack([z0, z1], dim=-1)

    def log_abs_det_jacobian(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r = self.region
        c = r.floor_at(y[..., 0]).to(z.dtype)
        z0, z1 = z[..., 0], z[..., 1]
        return (
            math.log(r.s_hi - r.s_lo)
            + torch.nn.functional.logsigmoid(z0)
            + torch.nn.functional.logsigmoid(-z0)
            + torch.log(r.u_hi - c)
            + torch.nn.functional.logsigmoid(z1)
            + torch.nn.functional.logsigmoid(-z1)
        )


@biject_to.register(DICRegion)
@transform_to.register(DICRegion)
def _region_bijection(constraint: DICRegion) -> Transform:
    # Wrapped as an IndependentTransform (summing nothing) so that sbi, which wraps any other transform in
    # IndependentTransform(·, 1), does not sum the already-summed log-determinant over the batch.
    return IndependentTransform(_DICRegionTransform(constraint), 0)


# -- DIC prior ------------------------------------------------------------------------------------------------
def check_dic_box(box: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    """``((g_s_min, g_s_max), (g_u_min, g_u_max))`` as floats, validated (finite, max > min, within ±MAX_DIC)."""
    try:
        (s_lo, s_hi), (u_lo, u_hi) = ((float(a), float(b)) for a, b in box)
    except (TypeError, ValueError):
        raise InvalidInputError(f"box: expected ((g_s_min, g_s_max), (g_u_min, g_u_max)), got {box!r}") from None
    if not all(math.isfinite(v) for v in (s_lo, s_hi, u_lo, u_hi)) or s_hi <= s_lo or u_hi <= u_lo:
        raise InvalidInputError(f"box: expected finite ranges with max > min, got {box!r}")
    if max(abs(s_lo), abs(s_hi), abs(u_lo), abs(u_hi)) > MAX_DIC:
        raise InvalidInputError(f"box: DIC densities are O(10); bounds beyond ±{MAX_DIC:g} are refused, got {box!r}")
    return ((s_lo, s_hi), (u_lo, u_hi))


def _box_cell_dics(model: ConductanceModel, n: int, seed: int) -> NDArray[np.float64]:
    """``(g_s, g_u)`` of ``n`` cells drawn from the model's linear conductance box."""
    from ..core import dics

    g = ConductancePrior(model, "linear").sample((n,), seed=seed).to(torch.float64).numpy()
    return dics(model, g)[:, 1:]


def dic_image_box(
    model: str | ConductanceModel, *, coverage: float = 0.99, n: int = 100_000, seed: int = 0,
) -> tuple[tuple[float, float], tuple[float, float]]:  # fmt: skip
    """The DIC box that holds the cells of the model's conductance box: a central ``coverage`` range per DIC.

    Cells drawn uniformly from the linear conductance box have DICs far outside the published DIC box (STG:
    g_u up to ~170 against 20), so a DIC-space posterior on the published box cannot represent them. A
    :class:`DICPrior` on this box covers the same cells as :class:`ConductancePrior` (to ``coverage`` per DIC).

    Parameters
    ----------
    model
        Model name or object.
    coverage
        Central fraction of the DIC values of the box's cells kept on each axis, in (0, 1].
    n
        Cells drawn from the conductance box (a Monte Carlo estimate: 10⁵ fix the bounds to ~0.1).
    seed
        Seed of the draw.
    """
    m = model if isinstance(model, ConductanceModel) else get_model(model)
    if not (isinstance(coverage, (int, float)) and 0.0 < float(coverage) <= 1.0):
        raise InvalidInputError(f"coverage: expected a fraction in (0, 1], got {coverage!r}")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 100:
        raise InvalidInputError(f"n: expected an int >= 100, got {n!r}")
    d = _box_cell_dics(m, int(n), seed)
    tail = 50.0 * (1.0 - float(coverage))
    lo, hi = np.percentile(d, [tail, 100.0 - tail], axis=0)
    return check_dic_box(((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))))


def dic_image_weights(
    model: str | ConductanceModel,
    box: tuple[tuple[float, float], tuple[float, float]],
    *,
    bins: int = 32,
    floor: float = 0.05,
    n: int = 100_000,
    seed: int = 0,
) -> NDArray[np.float64]:
    """Relative densities on a ``bins × bins`` grid over ``box`` that follow the DICs of the conductance box's cells.

    :func:`dic_image_box` makes a DIC box hold the conductance box's cells, but a uniform prior on it spends most
    simulations where those cells are rare (STG: ~4 % of a uniform draw on that box falls in the published box,
    ~17 % of the box's cells do). These weights (``weights=`` of :class:`DICPrior`) put the DIC prior's mass where
    the box's cells are: a histogram of their DICs, mixed with a uniform part ``floor`` so that every target of the
    box keeps a positive density (the prior's support stays the whole region).

    Parameters
    ----------
    model
        Model name or object.
    box
        The DIC box of the grid (e.g. :func:`dic_image_box`).
    bins
        Cells of the grid per DIC axis.
    floor
        Weight of the uniform part, in (0, 1].
    n
        Cells drawn from the linear conductance box.
    seed
        Seed of the draw.
    """
    m = model if isinstance(model, ConductanceModel) else get_model(model)
    (s_lo, s_hi), (u_lo, u_hi) = check_dic_box(box)
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or not 1 <= bins <= 1000:
        raise InvalidInputError(f"bins: expected an int in [1, 1000], got {bins!r}")
    if not (isinstance(floor, (int, float)) and 0.0 < float(floor) <= 1.0):
        raise InvalidInputError(f"floor: expected a fraction in (0, 1], got {floor!r}")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 100:
        raise InvalidInputError(f"n: expected an int >= 100, got {n!r}")
    return histogram_weights(_box_cell_dics(m, int(n), seed), ((s_lo, s_hi), (u_lo, u_hi)), bins=int(bins),
                             floor=float(floor))  # fmt: skip


def histogram_weights(
    dics: ArrayLike, box: tuple[tuple[float, float], tuple[float, float]], *, bins: int = 32, floor: float = 0.05
) -> NDArray[np.float64]:
    """``weights=`` of :class:`DICPrior` that follow DIC values ``(N, 2)``: their histogram on a ``bins × bins``
    grid over ``box`` (values outside it are not counted), mixed with a uniform part ``floor``."""
    d = np.asarray(dics, dtype=float).reshape(-1, 2)
    (s_lo, s_hi), (u_lo, u_hi) = check_dic_box(box)
    counts, _, _ = np.histogram2d(d[:, 0], d[:, 1], bins=int(bins), range=((s_lo, s_hi), (u_lo, u_hi)))
    hist = counts / max(counts.sum(), 1.0)  # fraction of the values inside ``box`` per grid cell
    return (1.0 - float(floor)) * hist + float(floor) / counts.size


class DICPrior(Distribution):
    r"""Uniform prior over the DICs ``θ = (g_s, g_u)`` at the model's reference threshold, restricted to the
    targets the compensation can reach.

    The box is the published target box (``model.dic_box``: STG g_s ∈ [-20, 20], g_u ∈ [0, 20] at -51 mV, DA
    g_s ∈ [-10, 15], g_u ∈ [0, 20] at -55.5 mV; Brandoit et al. 2025). With ``reachable_only`` (default) the
    prior is uniform on the part of the box where at least ``min_reachability`` of the draws of
    :func:`~dic_sbi.core.populations.degenerate_population` give a cell with non-negative conductances:
    ``{floor(g_s) <= g_u}`` with a piecewise-constant floor on a grid of step ``resolution`` in g_s (see
    :func:`reachable_floor`). STG reaches its whole box (≥ 97 % everywhere); DA loses the corner g_s ≳ -1,
    g_u ≲ 0.5 (the published code silently drops those cells). Every sample of this prior can be turned into a cell, so :class:`DICSimulator` never fails on it.

    With ``weights`` the density is piecewise constant instead of uniform: proportional to ``weights[i, j]`` on
    cell ``(i, j)`` of an equal grid over the box (g_s along the rows, g_u along the columns), on the same region
    (e.g. :func:`dic_image_weights`, which follows the DICs of the conductance box's cells). Every weight must be
    positive, so the support stays the region.

    Arguments:
        model: Model name or object (with a seed population).
        box: ``((g_s_min, g_s_max), (g_u_min, g_u_max))``; default ``model.dic_box``.
        reachable_only: Restrict to the reachable region (else uniform on the whole box).
        min_reachability: Smallest acceptance rate of the compensation counted as reachable.
        resolution: Grid step (g_s) of the region's floor.
        n_draws: Monte Carlo draws per reachability estimate.
        weights: Positive relative densities on a grid over the box, shape ``(n_s, n_u)``; default uniform.

    References:
        Drion, Franci, Dethier, Sepulchre (2015). Dynamic input conductances shape neuronal spiking. eNeuro 2.
        Brandoit, Ernst, Drion, Fyon (2025). arXiv 2509.12783.
    """

    arg_constraints: dict = {}
    has_rsample = False
    names: tuple[str, str] = ("g_s", "g_u")

    def __init__(
        self,
        model: str | ConductanceModel,
        *,
        box: tuple[tuple[float, float], tuple[float, float]] | None = None,
        reachable_only: bool = True,
        min_reachability: float = 0.05,
        resolution: float = 0.25,
        n_draws: int = 400,
        weights: ArrayLike | None = None,
        validate_args: bool | None = False,
    ) -> None:
        self.model = get_model(model)
        (s_lo, s_hi), (u_lo, u_hi) = check_dic_box(self.model.dic_box if box is None else box)
        if not 0.0 < min_reachability <= 1.0:
            raise InvalidInputError(f"min_reachability: expected a fraction in (0, 1], got {min_reachability!r}")
        if not (isinstance(resolution, (int, float)) and resolution > 0):
            raise InvalidInputError(f"resolution: expected a positive step, got {resolution!r}")
        self.box = ((s_lo, s_hi), (u_lo, u_hi))
        self.reachable_only = bool(reachable_only)
        self.min_reachability = float(min_reachability)
        if reachable_only:
            knots, floor = reachable_floor(self.model, self.box, self.min_reachability, float(resolution), int(n_draws))
        else:
            knots, floor = np.array([s_lo, s_hi]), np.array([u_lo])
        if np.all(floor >= u_hi):
            raise InvalidInputError(
                f"box: no target of {box!r} is reachable by model {self.model.name!r} "
                f"(min_reachability={min_reachability}); see dic_sbi.reachability_map"
            )
        self.region = DICRegion(knots, floor, u_hi)
        area = self.region.area()
        if not area > 1e-12:  # a box with no room for float32 samples has no usable density
            raise InvalidInputError(f"box: the (reachable) region of {box!r} has area {area:g}; give a wider box")
        self._log_area = math.log(area)
        self.weights: NDArray[np.float64] | None = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.ndim != 2 or min(w.shape) < 1 or not np.all(np.isfinite(w)) or not np.all(w > 0):
                raise InvalidInputError(f"weights: expected a 2-D grid of finite positive relative densities, got shape "
                                        f"{w.shape} with min {np.min(w) if w.size else 'none'}")  # fmt: skip
            self.weights = w
            self._pieces, self._piece_prob, log_norm = _weighted_pieces(self.region, self.box, w)
            self._log_weights = torch.as_tensor(np.log(w) - log_norm)  # log density per grid cell
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([2]), validate_args=validate_args)

    def _grid_cell(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid indices ``(i, j)`` of ``value`` (clamped into the grid; used only inside the box)."""
        (s_lo, s_hi), (u_lo, u_hi) = self.box
        ns, nu = self.weights.shape
        return _grid_index(value[..., 0], s_lo, s_hi, ns), _grid_index(value[..., 1], u_lo, u_hi, nu)

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self) -> constraints.Constraint:
        return self.region

    def sample(self, sample_shape: torch.Size | tuple = torch.Size(), *, seed: Seed = None) -> torch.Tensor:
        """Draw ``sample_shape + (2,)`` float32 ``(g_s, g_u)``: uniform in the box, rejected outside the region.

        The acceptance test is the support's own check, so every sample lies in the support.
        """
        gen = torch_generator(seed)
        n = int(torch.Size(sample_shape).numel())
        if self.weights is not None:
            return self._sample_weighted(n, gen).reshape(self._extended_shape(torch.Size(sample_shape)))
        (s_lo, s_hi), (u_lo, u_hi) = self.box
        lo = torch.tensor([s_lo, u_lo], dtype=torch.float32)
        width = torch.tensor([s_hi - s_lo, u_hi - u_lo], dtype=torch.float32)
        out = torch.empty((n, 2), dtype=torch.float32)
        filled = 0
        accept = self.region.area() / ((s_hi - s_lo) * (u_hi - u_lo))
        while filled < n:
            m = int((n - filled) / accept * 1.1) + 16
            cand = torch.clamp(lo + width * torch.rand((m, 2), generator=gen), lo, lo + width)
            cand = cand[self.region.check(cand)][: n - filled]
            out[filled : filled + cand.shape[0]] = cand
            filled += cand.shape[0]
        return out.reshape(self._extended_shape(torch.Size(sample_shape)))

    def _sample_weighted(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` draws of the weighted law: a piece (rectangle of the region within one grid cell) by its mass, then
        uniform in it; a draw that float32 rounding puts outside the region is drawn again."""
        out = torch.empty((n, 2), dtype=torch.float32)
        filled = 0
        s0, s1, u0, u1 = (torch.as_tensor(c) for c in self._pieces)
        prob = torch.as_tensor(self._piece_prob)
        while filled < n:
            m = n - filled
            k = torch.multinomial(prob, m, replacement=True, generator=gen)
            r = torch.rand((m, 2), generator=gen, dtype=torch.float64)
            cand = torch.stack([s0[k] + (s1[k] - s0[k]) * r[:, 0], u0[k] + (u1[k] - u0[k]) * r[:, 1]], dim=1)
            cand = cand.to(torch.float32)
            cand = cand[self.region.check(cand)]
            out[filled : filled + cand.shape[0]] = cand
            filled += cand.shape[0]
        return out

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        value = _as_value(self, value)
        inside = self.region.check(value)
        if self.weights is None:
            lp = torch.full(inside.shape, -self._log_area, dtype=value.dtype, device=value.device)
        else:
            i, j = self._grid_cell(value)
            lp = self._log_weights.to(value.device)[i, j].to(value.dtype)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def _moments(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        if self.weights is not None:  # the pieces (rectangles) by their masses
            return _rectangle_moments(*self._pieces, self._piece_prob)
        # The region is a union of rectangles [s_k, s_k + h] × [c_k, u_hi], each by its area under the uniform law.
        r = self.region
        s = r.knots.numpy()[:-1]
        h = (r.s_hi - r.s_lo) / r.floor.numel()
        c = r.floor.numpy()
        w = h * (r.u_hi - c)
        return _rectangle_moments(s, s + h, c, np.full_like(c, r.u_hi), w / w.sum())

    @property
    def mean(self) -> torch.Tensor:
        return torch.as_tensor(self._moments()[0], dtype=torch.float32)

    @property
    def variance(self) -> torch.Tensor:
        return torch.as_tensor(self._moments()[1], dtype=torch.float32)

    def __repr__(self) -> str:
        (s_lo, s_hi), (u_lo, u_hi) = self.box
        where = "reachable part of " if self.reachable_only else ""
        law = "uniform" if self.weights is None else f"weighted ({self.weights.shape[0]}×{self.weights.shape[1]} grid)"
        return f"DICPrior({self.model.name!r}: {law} on the {where}g_s ∈ [{s_lo:g}, {s_hi:g}], g_u ∈ [{u_lo:g}, {u_hi:g}])"


def _rectangle_moments(s0, s1, u0, u1, p) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and variance of (g_s, g_u) under a mixture of uniform rectangles ``[s0, s1] × [u0, u1]`` with
    probabilities ``p`` (exact)."""
    m = np.array([np.sum(p * (s0 + s1) / 2), np.sum(p * (u0 + u1) / 2)])
    m2 = np.array([np.sum(p * (s0 * s0 + s0 * s1 + s1 * s1) / 3), np.sum(p * (u0 * u0 + u0 * u1 + u1 * u1) / 3)])
    return m, m2 - m * m


def _grid_index(v: torch.Tensor, lo: float, hi: float, n: int) -> torch.Tensor:
    """Index of the cell of ``n`` equal cells on ``[lo, hi]`` that holds each value (clamped into the grid)."""
    return torch.clamp(torch.floor((v.to(torch.float64) - lo) / (hi - lo) * n), 0, n - 1).nan_to_num(0).long()


def _weighted_pieces(
    region: DICRegion, box: tuple[tuple[float, float], tuple[float, float]], w: NDArray[np.float64],
) -> tuple[tuple[NDArray[np.float64], ...], NDArray[np.float64], float]:  # fmt: skip
    """The region cut by the weight grid into rectangles ``(s0, s1, u0, u1)``, their probabilities and the log of
    the normalising constant ``Σ w · area``: each g_s interval between the region's knots and the grid's edges has
    one floor and one grid column, and each grid row cuts it into at most one rectangle above the floor."""
    (s_lo, s_hi), (u_lo, u_hi) = box
    ns, nu = w.shape
    knots = region.knots.numpy()
    edges = np.unique(np.concatenate([knots, np.linspace(s_lo, s_hi, ns + 1)]))
    a, b = edges[:-1], edges[1:]
    keep = b > a
    a, b = a[keep], b[keep]
    mid = 0.5 * (a + b)
    floor = region.floor_at(torch.as_tensor(mid)).numpy()
    col = _grid_index(torch.as_tensor(mid), s_lo, s_hi, ns).numpy()
    u_edges = np.linspace(u_lo, u_hi, nu + 1)
    lo = np.maximum(u_edges[None, :-1], floor[:, None])  # (intervals, rows)
    hi = np.broadcast_to(u_edges[None, 1:], lo.shape)
    area = (b - a)[:, None] * np.clip(hi - lo, 0.0, None)
    mass = w[col] * area
    pick = mass > 0
    ii, jj = np.nonzero(pick)
    total = float(mass.sum())
    if not total > 0:
        raise InvalidInputError("weights: no mass on the prior's region")
    pieces = (a[ii], b[ii], lo[ii, jj], hi[ii, jj])
    return pieces, mass[pick] / total, math.log(total)
