"""Degenerate populations, reachability and the generative density (spec §4)."""

from __future__ import annotations

import dataclasses

import numba
import numpy as np
import pytest

import dic_sbi
from scipy import stats

from dic_sbi.core import populations as P
from dic_sbi.core.dics import dics
from dic_sbi.core.populations import degenerate_population, population_log_density
from dic_sbi.core.reachability import reachability, reachability_map
from dic_sbi.errors import InvalidInputError, UnknownModelError, UnreachableTargetError
from dic_sbi.models import get_model

MODELS = ["stg", "da"]


def box_targets(model: str, T: int, seed: int) -> np.ndarray:
    (s_lo, s_hi), (u_lo, u_hi) = get_model(model).dic_box
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(s_lo, s_hi, T), rng.uniform(u_lo, u_hi, T)], axis=-1)


# -- exactness over the published boxes ---------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_thousand_targets_exact_or_clearly_unreachable(model):
    n = 16
    targets = box_targets(model, 1000, seed=11)
    g, info = degenerate_population(
        model, targets[:, 0], targets[:, 1], n, seed=5, on_unreachable="nan", return_info=True
    )
    assert g.shape == (1000, n, get_model(model).n_conductances) and g.dtype == np.float64
    reached = ~np.isnan(g).any(axis=(1, 2))
    # Each target is either complete (exactly n valid cells) or entirely NaN: never a partial population.
    assert np.all(reached | np.isnan(g).all(axis=(1, 2)))
    cells = g[reached]
    assert np.all(cells >= 0)
    residual = np.abs(dics(model, cells)[..., 1:] - targets[reached][:, None, :])
    assert residual.max() <= 1e-6
    assert reached.mean() > 0.8
    # Unreachable targets raise, naming the target and its reachability.
    missed = targets[~reached][:3]
    for gs, gu in missed:
        with pytest.raises(UnreachableTargetError, match=f"g_s={gs:g}, g_u={gu:g}") as err:
            degenerate_population(model, gs, gu, n, seed=1, max_draws=2000)
        assert err.value.reachability[0] < n / 2000
    assert np.all(info.reachability[reached] > 0)


def test_da_known_unreachable_target_raises():
    with pytest.raises(UnreachableTargetError, match="cannot be reached"):
        degenerate_population("da", 15.0, 0.0, 10, seed=0, max_draws=5000)


@pytest.mark.parametrize("model", MODELS)
def test_shapes_and_exact_count(model):
    n_cond = get_model(model).n_conductances
    assert degenerate_population(model, 5.0, 8.0, 7, seed=0).shape == (7, n_cond)
    assert degenerate_population(model, [5.0, 2.0], [8.0, 6.0], 3, seed=0).shape == (2, 3, n_cond)
    assert degenerate_population(model, np.full((2, 3), 4.0), 8.0, 2, seed=0).shape == (2, 3, 2, n_cond)


def test_calcium_path_tau_20_populations_hit_their_convention():
    g = degenerate_population("stg", [-10.0, 8.0], [6.0, 4.0], 50, seed=2, calcium_path_tau=20.0)
    d = dics("stg", g, calcium_path_tau=20.0)
    want = np.broadcast_to(np.array([[-10.0, 6.0], [8.0, 4.0]])[:, None, :], d[..., 1:].shape)
    np.testing.assert_allclose(d[..., 1:], want, atol=1e-6)
    assert not np.allclose(dics("stg", g)[..., 1:], d[..., 1:], atol=1e-3)


def test_forced_pair():
    g = degenerate_population("stg", 8.0, 10.0, 20, seed=3, pair=("CaS", "H"))
    np.testing.assert_allclose(dics("stg", g)[:, 1:], [[8.0, 10.0]] * 20, atol=1e-6)
    with pytest.raises(InvalidInputError, match="pair"):
        degenerate_population("stg", 8.0, 10.0, 2, pair=("Na", "Kd"))


# -- the seed distribution ----------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_free_conductances_follow_the_seed_distribution(model):
    m = get_model(model)
    sp = m.seed_population
    g = degenerate_population(model, 6.0, 8.0, 20_000, seed=4)  # pair without free conductances in it? see below
    leak = g[:, m.index("leak")]
    a, b = sp.leak_range
    assert leak.mean() == pytest.approx((a + b) / 2, rel=0.01)
    assert leak.var() == pytest.approx((b - a) ** 2 / 12, rel=0.05)
    pair = set(sp.compensation.pairs[int(sp.compensation.choose(np.array(6.0), np.array(8.0)))])
    for name, (lo, hi) in sp.free_ranges.items():
        if name in pair:
            continue  # overwritten by the compensation
        u = (g[:, m.index(name)] * sp.reference_leak / leak - lo) / (hi - lo)
        assert stats.kstest(u, "uniform").pvalue > 1e-3, name
    for name, value in sp.fixed.items():
        np.testing.assert_allclose(g[:, m.index(name)], value * leak / sp.reference_leak)
    assert np.all(g.std(axis=0) > 0)  # diverse


# -- seeds and threads --------------------------------------------------------------------------------------
def test_same_seed_same_population_any_thread_count():
    targets = box_targets("stg", 20, seed=1)
    a = degenerate_population("stg", targets[:, 0], targets[:, 1], 50, seed=9, on_unreachable="nan")
    b = degenerate_population("stg", targets[:, 0], targets[:, 1], 50, seed=9, on_unreachable="nan")
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        c = degenerate_population("stg", targets[:, 0], targets[:, 1], 50, seed=9, on_unreachable="nan")
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    d = degenerate_population("stg", targets[:, 0], targets[:, 1], 50, seed=np.random.default_rng(9), on_unreachable="nan")
    np.testing.assert_array_equal(a, d)
    e = degenerate_population("stg", targets[:, 0], targets[:, 1], 50, seed=10, on_unreachable="nan")
    assert not np.array_equal(np.nan_to_num(a), np.nan_to_num(e))


# -- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(g_s=[1.0, 2.0], g_u=[1.0, 2.0, 3.0]), "g_s, g_u"),
        (dict(g_s=np.nan), "g_s"),
        (dict(g_u=np.inf), "g_u"),
        (dict(n=0), "n"),
        (dict(n=-3), "n"),
        (dict(n=2.5), "n"),
        (dict(max_draws=1), "max_draws"),
        (dict(seed="abc"), "seed"),
        (dict(on_unreachable="ignore"), "on_unreachable"),
        (dict(tol=-1.0), "tol"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(model="stg", g_s=5.0, g_u=5.0, n=4)
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        degenerate_population(args.pop("model"), args.pop("g_s"), args.pop("g_u"), args.pop("n"), **args)


def test_unknown_model():
    with pytest.raises(UnknownModelError, match="model"):
        degenerate_population("squid", 5.0, 5.0, 4)
    with pytest.raises(UnknownModelError, match="model"):
        population_log_density("squid", np.ones(8))


def test_density_bad_input():
    with pytest.raises(InvalidInputError, match="conductances"):
        population_log_density("stg", np.ones(7))
    with pytest.raises(InvalidInputError, match="conductances"):
        population_log_density("stg", np.full(8, np.nan))
    assert population_log_density("stg", -np.ones(8)) == -np.inf  # outside the support, not an error


# -- reachability -------------------------------------------------------------------------------------------
def test_reachability_map():
    r = reachability_map("da", np.linspace(-10, 15, 6), np.linspace(0, 20, 5), n_draws=200, seed=0)
    assert r.fraction.shape == (2, 5, 6)
    assert r.rule_fraction.shape == (5, 6)
    assert np.all((r.fraction >= 0) & (r.fraction <= 1))
    # Published: large g_s with small g_u is out of reach for DA; the middle of the box is reachable.
    assert r.rule_fraction[0, -1] == 0.0
    assert r.rule_fraction[2, 2] == 1.0
    np.testing.assert_array_equal(r.rule_fraction, np.take_along_axis(r.fraction, r.rule_pair[None], 0)[0])
    again = reachability_map("da", np.linspace(-10, 15, 6), np.linspace(0, 20, 5), n_draws=200, seed=0)
    np.testing.assert_array_equal(r.fraction, again.fraction)


def test_reachability_agrees_with_sampler():
    _, info = degenerate_population("stg", -20.0, 0.0, 2000, seed=0, return_info=True)
    rho = reachability("stg", -20.0, 0.0, n_draws=20_000, seed=1)
    assert 0.9 < rho < 1.0
    assert info.reachability == pytest.approx(rho, abs=0.01)


def test_plot_reachability():
    import matplotlib

    matplotlib.use("Agg")
    from dic_sbi.plots import plot_reachability

    r = reachability_map("stg", np.linspace(-20, 20, 5), np.linspace(0, 20, 3), n_draws=50, seed=0)
    ax = plot_reachability(r)
    assert ax.get_xlabel() and ax.get_ylabel()


# -- generative density -------------------------------------------------------------------------------------
def _log_p_free(model: str, cell: np.ndarray, free_seed_values: np.ndarray) -> float:
    sd = P.seed_distribution(model)
    sp = get_model(model).seed_population
    gl = cell[sd.leak]
    s = gl / sd.reference_leak
    lp = stats.gamma.logpdf(gl, a=sd.gamma_shape, scale=sd.gamma_scale)
    for name, value in zip(sp.free_ranges, free_seed_values):
        (a, b), w = sp.free_ranges[name], sp.tail_weight
        dens = stats.uniform.pdf(value, loc=a * s, scale=(b - a) * s)
        if name in sp.tail_ranges:  # the mixture (1 - w) U(free range) + w U(tail range)
            lo, hi = sp.tail_ranges[name]
            dens = (1 - w) * dens + w * stats.uniform.pdf(value, loc=lo * s, scale=(hi - lo) * s)
        lp += np.log(dens)
    return float(lp)


@pytest.mark.parametrize(
    "model, box",
    [
        ("stg", ((-12.0, -8.0), (6.0, 10.0))),  # (CaS, H): calcium equation, non-linear
        ("stg", ((8.0, 12.0), (6.0, 10.0))),  # (A, H): linear
        ("da", ((3.0, 6.0), (6.0, 9.0))),  # (ERG, Kd)
        ("da", ((-4.0, -2.0), (5.0, 7.0))),  # (ERG, CaL)
    ],
)
def test_log_density_change_of_variables(model, box):
    """Fixed free draws z, targets t ~ U(box): the compensated pair has density q(t) |det ∂t/∂ḡ_P|.

    Box masses of the sampled pair values are compared with quadrature of exp(population_log_density - log p(z))
    · q(t) on a grid, where p(z) comes from scipy.stats.
    """
    m = get_model(model)
    plan = P._plan(m, "model")
    rng = np.random.default_rng(7)
    gleak, uniforms = P._draw_free(plan.seed, rng, 1)
    (s_lo, s_hi), (u_lo, u_hi) = box
    M = 60_000
    t = np.stack([rng.uniform(s_lo, s_hi, M), rng.uniform(u_lo, u_hi, M)], axis=-1)
    pair = P._choose_pairs(m, plan.seed, t[:, 0], t[:, 1], None)
    assert np.all(pair == pair[0])
    cells, status = P._run_kernel(
        plan, np.repeat(gleak, M), np.repeat(uniforms, M, axis=0), np.arange(M, dtype=np.intp), t, pair,
        tol=P.DEFAULT_TOL, max_iter=30,
    )
    assert np.all(status == P.VALID)
    cols = plan.seed.pairs[pair[0]]
    x = cells[:, cols]

    # p(z) from scipy, with the free conductances at the values actually drawn.
    s = gleak[0] / plan.seed.reference_leak
    drawn_free = (plan.seed.free_low + (plan.seed.free_high - plan.seed.free_low) * uniforms[0]) * s
    log_pz = _log_p_free(model, cells[0], drawn_free)

    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = 0.02 * (hi - lo)
    k = 240
    ax0 = np.linspace(lo[0] - pad[0], hi[0] + pad[0], k + 1)
    ax1 = np.linspace(lo[1] - pad[1], hi[1] + pad[1], k + 1)
    c0, c1 = 0.5 * (ax0[1:] + ax0[:-1]), 0.5 * (ax1[1:] + ax1[:-1])
    G0, G1 = np.meshgrid(c0, c1, indexing="ij")
    grid = np.repeat(cells[:1], G0.size, axis=0)
    grid[:, cols[0]] = G0.ravel()
    grid[:, cols[1]] = G1.ravel()
    grid = np.maximum(grid, 0.0)
    logd = population_log_density(model, grid)
    tg = dics(model, grid)[:, 1:]
    inside = (tg[:, 0] >= s_lo) & (tg[:, 0] <= s_hi) & (tg[:, 1] >= u_lo) & (tg[:, 1] <= u_hi)
    q = inside / ((s_hi - s_lo) * (u_hi - u_lo))
    dens = np.where(np.isfinite(logd), np.exp(logd - log_pz), 0.0) * q
    cell_area = (ax0[1] - ax0[0]) * (ax1[1] - ax1[0])
    assert dens.sum() * cell_area == pytest.approx(1.0, abs=0.02)

    # 3 × 3 boxes over the sampled range.
    e0, e1 = np.linspace(lo[0], hi[0], 4), np.linspace(lo[1], hi[1], 4)
    D = dens.reshape(k, k)
    for i in range(3):
        for j in range(3):
            empirical = np.mean((x[:, 0] >= e0[i]) & (x[:, 0] < e0[i + 1]) & (x[:, 1] >= e1[j]) & (x[:, 1] < e1[j + 1]))
            sel0 = (c0 >= e0[i]) & (c0 < e0[i + 1])
            sel1 = (c1 >= e1[j]) & (c1 < e1[j + 1])
            quad = D[np.ix_(sel0, sel1)].sum() * cell_area
            sigma = np.sqrt(max(empirical, 1e-3) * (1 - empirical) / M)
            assert abs(empirical - quad) <= 5 * sigma + 0.01, (i, j, empirical, quad)


@pytest.mark.parametrize("model, target", [("stg", (-10.0, 8.0)), ("stg", (3.0, -2.0)), ("stg", (10.0, 5.0)), ("da", (-3.0, 6.0)), ("da", (5.0, 8.0)),
                                           ("da-wide4-tail16w0.3", (5.0, 8.0)), ("stg-wide2-tail4w0.5", (10.0, 5.0))])  # fmt: skip
def test_log_density_recovers_the_free_draws(model, target):
    m = get_model(model)
    plan = P._plan(m, "model")
    rng = np.random.default_rng(3)
    N = 200
    gleak, uniforms = P._draw_free(plan.seed, rng, N)
    t = np.array([target])
    pair = P._choose_pairs(m, plan.seed, t[:, 0], t[:, 1], None)
    cells, status = P._run_kernel(plan, gleak, uniforms, np.zeros(N, dtype=np.intp), t, pair, tol=P.DEFAULT_TOL, max_iter=30)
    ok = status == P.VALID
    assert ok.mean() > (0.9 if "-wide" not in model else 0.2)  # wide DA seed laws: many draws give a negative seed conductance
    parts = P._density_parts(m, cells[ok], pair=None, calcium_path_tau="model", tol=P.DEFAULT_TOL, max_iter=30, support_rtol=1e-6)
    assert parts.on_support.all()
    s = gleak[ok, None] / plan.seed.reference_leak
    drawn_free = (plan.seed.free_low + (plan.seed.free_high - plan.seed.free_low) * uniforms[ok]) * s
    np.testing.assert_allclose(parts.seed_cells[:, plan.seed.free_index], drawn_free, rtol=1e-7)
    want = [_log_p_free(model, c, f) for c, f in zip(cells[ok], drawn_free)]
    np.testing.assert_allclose(parts.log_p_free, want, rtol=1e-10)
    # log |det| against finite differences of the DICs in the pair.
    cols = plan.seed.pairs[pair[0]]
    c = cells[ok][0]
    J = np.empty((2, 2))
    for b, col in enumerate(cols):
        h = 1e-6 * c[col]
        up, dn = c.copy(), c.copy()
        up[col] += h
        dn[col] -= h
        J[:, b] = (dics(model, up)[1:] - dics(model, dn)[1:]) / (2 * h)
    assert parts.log_det[0] == pytest.approx(np.log(abs(np.linalg.det(J))), abs=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_log_density_finite_on_samples_and_minus_inf_off_support(model):
    targets = np.array([[5.0, 8.0], [-3.0, 6.0], [2.0, 2.0]])
    g = degenerate_population(model, targets[:, 0], targets[:, 1], 100, seed=8)
    lp = population_log_density(model, g)
    assert lp.shape == (3, 100) and np.all(np.isfinite(lp))
    off = g.copy()
    off[..., get_model(model).index("Na")] *= 1.05  # Na is never compensated: the cell leaves the sampled set
    assert np.all(population_log_density(model, off) == -np.inf)


def test_log_density_normalisation():
    g = degenerate_population("stg", -20.0, 0.0, 20, seed=1)
    plain = population_log_density("stg", g)
    norm = population_log_density("stg", g, normalize=True, n_draws=5000, seed=2)
    rho = reachability("stg", dics("stg", g)[:, 1], dics("stg", g)[:, 2], n_draws=5000, seed=2)
    np.testing.assert_allclose(norm - plain, -np.log(rho), rtol=1e-12)
    assert np.all(norm > plain)


# -- simulation check ---------------------------------------------------------------------------------------
# Grids where the published behaviour is expected (model's published protocol, no noise). Measured with 32
# cells per target (seed 1, ultraslow calcium path; τ = 20 ms gives the same picture):
# - STG spikes tonically for g_s > 0. It bursts for all cells at g_s ∈ [-10, -8] and for g_u ≤ 5 at any g_s < 0,
#   but at g_s ≤ -15 with g_u ≥ 10 about 10-25 % of the cells spike tonically (confirmed with the solve_ivp
#   reference integrator), and near the transition (g_s = -3) up to 60 %.
# - DA bursts only in a band around g_s ∈ [-4, -2], g_u ∈ [3, 8]: more negative g_s gives oscillations whose peaks
#   stay below the +10 mV spike threshold (silent by the published rule, spec §5), and g_s < 0 with large g_u
#   gives tonic spiking or rest.
SIM_GRIDS = {
    "stg": {
        "spiking": [(gs, gu) for gs in (5.0, 10.0, 15.0) for gu in (2.0, 10.0, 20.0)],
        "bursting": [(gs, gu) for gs in (-20.0, -15.0, -10.0, -8.0, -5.0) for gu in (2.0, 5.0)]
        + [(gs, gu) for gs in (-10.0, -8.0) for gu in (10.0, 15.0, 20.0)],
    },
    "da": {
        "spiking": [(gs, gu) for gs in (2.0, 5.0, 10.0) for gu in (2.0, 5.0, 10.0)],
        "bursting": [(-4.0, 8.0), (-3.0, 4.0), (-3.0, 5.0), (-3.0, 6.0), (-3.0, 7.0), (-3.0, 8.0),
                     (-2.0, 3.0), (-2.0, 4.0), (-2.0, 5.0), (-2.0, 6.0)],
    },
}


@pytest.mark.parametrize("model", MODELS)
def test_populations_fire_as_their_targets_say(model):
    from dic_sbi import simulate

    n = 8
    for expected, grid in SIM_GRIDS[model].items():
        targets = np.array(grid)
        g = degenerate_population(model, targets[:, 0], targets[:, 1], n, seed=0)
        result = simulate(model, g.reshape(-1, g.shape[-1]))  # the model's published protocol
        classes = np.asarray(result.features()["firing_class"])
        assert np.mean(classes == expected) >= 0.95, (model, expected, np.unique(classes, return_counts=True))


# -- compensate / free_draws: the compensation on given free draws ----------------------------------------------
@pytest.mark.parametrize("model", ["stg", "da"])
def test_compensate_inverts_free_draws(model):
    """free_draws recovers z from a cell; compensate(t, z) gives the cell back (to the solve tolerance)."""
    from dic_sbi.core.populations import compensate, free_draws

    g_s, g_u = np.linspace(-5, 10, 40), np.linspace(1, 15, 40)
    g = dic_sbi.degenerate_population(model, g_s, g_u, 1, seed=3)[:, 0]
    gl, u, on = free_draws(model, g)
    assert on.all() and np.all((u >= 0) & (u <= 1)) and u.shape[0] == 40
    again, valid = compensate(model, g_s, g_u, gl, u)
    assert valid.all()
    np.testing.assert_allclose(again, g, rtol=1e-7)
    np.testing.assert_allclose(dic_sbi.dics(model, again)[:, 1:], np.column_stack([g_s, g_u]), atol=1e-6)


def test_compensate_same_draws_as_degenerate_population():
    """On the seed law's own draws, compensate makes exactly the cells degenerate_population keeps."""
    from dic_sbi.core.populations import _draw_free, compensate, seed_distribution

    rng = np.random.default_rng(5)
    gl, u = _draw_free(seed_distribution("stg"), rng, 500)
    cells, valid = compensate("stg", 2.0, 6.0, gl, u)
    assert 0.5 < valid.mean() <= 1.0 and np.isnan(cells[~valid]).all()
    assert np.all(cells[valid] >= 0)
    np.testing.assert_allclose(dic_sbi.dics("stg", cells[valid])[:, 1:], [[2.0, 6.0]] * int(valid.sum()), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(gleak=[0.01, -1.0], uniforms=[[0.5] * 4] * 2), "gleak > 0"),
        (dict(gleak=[0.01], uniforms=[[0.5] * 4, [0.5] * 4]), "shape"),
        (dict(gleak=[0.01], uniforms=[[1.5] * 4]), "uniforms in"),
        (dict(gleak=[0.01], uniforms=[[0.5] * 3]), "shape"),
    ],
)
def test_compensate_bad_input(kwargs, match):
    from dic_sbi.core.populations import compensate

    with pytest.raises(dic_sbi.InvalidInputError, match=match):
        compensate("stg", 2.0, 6.0, **kwargs)


def test_widen_seed_law_widens_within_the_box_and_keeps_the_dics():
    from dic_sbi.models import widen_seed_law

    stg = get_model("stg")
    assert widen_seed_law(stg, 1) is stg
    wide = widen_seed_law(stg, 2.0)
    assert wide.name == "stg-wide2" and wide.channels == stg.channels and wide.dics == stg.dics
    for name, (a, b) in stg.seed_population.free_ranges.items():
        lo, hi = wide.seed_population.free_ranges[name]
        box = stg.default_ranges[name]
        assert box[0] <= lo <= a and b <= hi <= box[1]
        # Twice the log-width, unless the box clips it.
        if lo > box[0] and hi < box[1]:
            assert np.isclose(np.log(hi / lo), 2 * np.log(b / a))
            assert np.isclose(np.sqrt(lo * hi), np.sqrt(a * b))
    g = degenerate_population(wide, [3.0, -5.0], [4.0, 8.0], 300, seed=0)
    d = dics(wide, g.reshape(-1, g.shape[-1]))
    assert np.allclose(d[:, 1], np.repeat([3.0, -5.0], 300), atol=1e-6)
    assert np.allclose(d[:, 2], np.repeat([4.0, 8.0], 300), atol=1e-6)
    narrow = degenerate_population(stg, [3.0, -5.0], [4.0, 8.0], 300, seed=0)
    assert np.log(g).std(axis=1).mean() > 1.2 * np.log(narrow).std(axis=1).mean()
    for bad in (0.5, float("nan"), True, "2"):
        with pytest.raises(InvalidInputError, match="factor"):
            widen_seed_law(stg, bad)
    # By name: "<registered name>-wide<factor>", one object per model (caches key on identity); campaigns and
    # stored posteriors refer to it so.
    from dic_sbi.models import model_reference, same_kinetics

    named = get_model("stg-wide2")
    assert named is get_model("STG-wide2.0") and named.seed_population == wide.seed_population
    assert model_reference(named) == "stg-wide2" and same_kinetics(named, stg) and not same_kinetics(stg, get_model("da"))
    for unknown in ("stg-wide1", "stg-wide0.5", "nope-wide2", "stg-widex"):
        with pytest.raises(UnknownModelError, match="wide"):
            get_model(unknown)


def test_seed_law_tail_mixes_two_uniforms():
    """A tail: each tailed free conductance ~ (1 - w) U(free range) + w U(tail range), checked against scipy."""
    from dic_sbi.models import widen_seed_law

    da = get_model("da")
    mixed = widen_seed_law(da, 4, tail_factor=16, tail_weight=0.3)
    wide4, wide16 = widen_seed_law(da, 4), widen_seed_law(da, 16)
    sp = mixed.seed_population
    assert mixed.name == "da-wide4-tail16w0.3" and get_model("da-wide4-tail16w0.3").seed_population == sp
    assert sp.free_ranges == wide4.seed_population.free_ranges and sp.leak_range == wide4.seed_population.leak_range
    assert sp.tail_ranges == wide16.seed_population.free_ranges and sp.tail_weight == 0.3
    sd = P.seed_distribution(mixed)
    u = sd.positions(np.random.default_rng(0).random((40_000, sd.free_index.size)))
    for f, name in enumerate(sp.free_ranges):
        value = sd.free_low[f] + (sd.free_high[f] - sd.free_low[f]) * u[:, f]
        (a, b), (lo, hi) = sp.free_ranges[name], sp.tail_ranges[name]

        def cdf(x, a=a, b=b, lo=lo, hi=hi):
            return 0.7 * stats.uniform.cdf(x, a, b - a) + 0.3 * stats.uniform.cdf(x, lo, hi - lo)

        assert stats.kstest(value, cdf).pvalue > 1e-3, name
    # Without a tail the positions are the uniforms themselves (seed laws draw exactly as before).
    v = np.random.default_rng(1).random((5, 2))
    assert P.seed_distribution(wide4).positions(v) is v
    # Cells keep their DICs exactly; Kd reaches beyond the × 4 range.
    g = degenerate_population(mixed, 5.0, 8.0, 2000, seed=0)
    d = dics(mixed, g)
    assert np.allclose(d[:, 1], 5.0, atol=1e-6) and np.allclose(d[:, 2], 8.0, atol=1e-6)
    kd = g[:, da.index("Kd")] * sp.reference_leak / g[:, da.index("leak")]
    assert (kd > sp.free_ranges["Kd"][1] * 1.01).mean() > 0.1
    assert np.all(np.isfinite(population_log_density(mixed, g)))
    with pytest.raises(InvalidInputError, match="tail_factor"):
        widen_seed_law(da, 4, tail_factor=2, tail_weight=0.3)
    for bad in (0.0, 1.0, -0.1, True):
        with pytest.raises(InvalidInputError, match="tail"):
            widen_seed_law(da, 4, tail_factor=16, tail_weight=bad)
    with pytest.raises(InvalidInputError, match="widens further"):
        widen_seed_law(da, 16, tail_factor=32, tail_weight=0.3)  # × 16 already spans the box
    with pytest.raises(InvalidInputError, match="contain the free range"):
        dataclasses.replace(sp, tail_ranges={"Kd": (3.0, 50.0)})
    with pytest.raises(InvalidInputError, match="not a free conductance"):
        dataclasses.replace(sp, tail_ranges={"Na": (1.0, 100.0)})
    with pytest.raises(InvalidInputError, match="together"):
        dataclasses.replace(sp, tail_weight=0.0)
    for unknown in ("da-wide4-tail2w0.3", "da-wide4-tail16w1.5", "da-wide16-tail32w0.3"):
        with pytest.raises(UnknownModelError):
            get_model(unknown)


def test_seed_law_pickled_before_tails_still_loads():
    """A SeedPopulation pickled before tail_ranges / tail_weight existed (checkpoints, saved posteriors) loads
    without a tail and draws as before."""
    import pickle

    sp = get_model("da").seed_population
    state = {k: v for k, v in sp.__dict__.items() if k not in ("tail_ranges", "tail_weight")}
    old = object.__new__(type(sp))
    object.__setattr__(old, "__dict__", state)  # what an old pickle holds
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.tail_ranges == {} and loaded.tail_weight == 0.0 and loaded == sp
    model = dataclasses.replace(get_model("da"), name="da-old-pickle", seed_population=loaded)
    np.testing.assert_array_equal(degenerate_population(model, 5.0, 8.0, 20, seed=3),
                                  degenerate_population("da", 5.0, 8.0, 20, seed=3))  # fmt: skip
