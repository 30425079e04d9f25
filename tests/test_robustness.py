"""Robustness: random shapes and values into the public API, damaged stores into the readers, and no NaN or inf
out of ``simulate``, ``dics`` or ``degenerate_population`` over many random prior draws.

Contract checked everywhere: a call either returns finite numbers of the documented shape, or raises a
:class:`~dic_sbi.errors.DicSbiError` (never another exception, never a silent NaN).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dic_sbi
from dic_sbi.campaign import FIELDS, CampaignSpec, CampaignStore, run_campaign
from dic_sbi.errors import DicSbiError
from dic_sbi.sbi import ConductancePrior, DICPrior
from dic_sbi.sbi.features import encode

MODELS = ("stg", "da")
N_COND = {"stg": 8, "da": 7}
# Derandomized by default, so the suite gives the same verdict on every run; DIC_SBI_FUZZ=N explores N random
# examples per test instead (a deeper search, run by hand).
_FUZZ = int(os.environ.get("DIC_SBI_FUZZ", "0"))
FAST = settings(max_examples=_FUZZ or 40, derandomize=not _FUZZ, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
SLOW = settings(FAST, max_examples=_FUZZ or 15)

# Any float, including the awkward ones.
any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, -1.0, 1e300, np.nan, np.inf, -np.inf]),
)
# Conductances: typical values, invalid ones, and finite values over 12 decades (not 600: a ratio beyond the
# float64 range overflows the DICs, see the known issues below).
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0]
GRID = st.integers(-30_000, 30_000).map(lambda i: i / 1000.0)
conductance_value = st.one_of(
    st.floats(0.0, 2000.0), st.floats(1e-6, 1e6), st.sampled_from([0.0, -0.0, -1.0, np.nan, np.inf, -np.inf])
)


def _arrays(n_last: st.SearchStrategy[int], values: st.SearchStrategy[float]):
    """Arrays of 0 to 3 dimensions whose last dimension is drawn from ``n_last``."""
    shapes = st.tuples(st.lists(st.integers(0, 4), max_size=2), n_last).map(lambda t: (*t[0], t[1]))
    return st.one_of(
        hnp.arrays(np.float64, st.just(()), elements=values),
        shapes.flatmap(lambda s: hnp.arrays(np.float64, s, elements=values)),
    )


# -- simulate --------------------------------------------------------------------------------------------------
@FAST
@given(
    model=st.sampled_from(MODELS),
    data=st.data(),
    # whole milliseconds mostly, so that duration is a whole number of steps and most draws do simulate
    duration=st.one_of(st.integers(1, 40).map(float), st.integers(1, 40), st.floats(1.0, 40.0), any_float),
    transient=st.one_of(st.integers(0, 20).map(float), st.floats(0.0, 20.0), any_float),
    dt=st.one_of(st.sampled_from([0.05, 0.1, 0.025]), any_float),
    noise_std=st.one_of(st.just(0.0), st.floats(0.0, 5.0), any_float),
    seed=st.one_of(st.none(), st.integers(-5, 2**63), st.just("x")),
)
def test_simulate_random_input(model, data, duration, transient, dt, noise_std, seed):
    n = N_COND[model]
    valid = st.one_of(
        hnp.arrays(np.float64, st.just((n,)), elements=st.floats(0.0, 2000.0)),
        hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.just(n)), elements=st.floats(0.0, 2000.0)),
    )
    g = data.draw(st.one_of(valid, _arrays(st.sampled_from([n, n, n - 1, 0]), conductance_value)), label="conductances")
    assume(not (np.isfinite(dt) and dt > 0 and np.isfinite(duration) and duration / dt > 2000))  # keep it quick
    try:
        res = dic_sbi.simulate(model, g, duration=duration, transient=transient, dt=dt, noise_std=noise_std,
                               seed=seed, progress=False)  # fmt: skip
    except DicSbiError:
        event("refused")
        return
    event("simulated")
    assert np.all(np.isfinite(res.times))
    assert res.offsets[0] == 0 and np.all(np.diff(res.offsets) >= 0) and res.offsets[-1] == res.times.size
    assert np.all((res.times >= res.t_start) & (res.times <= res.t_stop))
    x = encode(res.times, res.offsets, res.t_start, res.t_stop, "summary", 8)
    assert np.all(np.isfinite(x))


@FAST
@given(
    model=st.sampled_from(MODELS),
    data=st.data(),
    duration=st.integers(2, 60),
    transient=st.integers(0, 1),
    dt=st.sampled_from([0.025, 0.05, 0.1, 0.2]),
    noise_std=st.one_of(st.just(0.0), st.floats(0.0, 20.0)),
    i_app=st.floats(-20.0, 20.0),
    seed=st.integers(0, 2**63 - 1),  # the largest valid seed (2**63 is refused)
)
def test_simulate_random_valid_input(model, data, duration, transient, dt, noise_std, i_app, seed):
    """Valid but arbitrary cells and protocols: finite, well-formed spike trains."""
    n = N_COND[model]
    shape = data.draw(st.sampled_from([(n,), (1, n), (3, n)]), label="shape")
    g = data.draw(hnp.arrays(np.float64, shape, elements=st.one_of(st.floats(0.0, 3000.0), st.just(0.0))), label="g")
    g[..., -1] = np.maximum(g[..., -1], 1e-3)  # a leak, so the cell has a resting state
    transient = transient * duration / 2.0
    try:
        res = dic_sbi.simulate(model, g, duration=float(duration), transient=transient, dt=dt, noise_std=noise_std,
                               i_app=i_app, seed=seed, progress=False)  # fmt: skip
    except DicSbiError as err:  # only the noise filter may refuse a coarse dt
        assert "dt" in str(err) and noise_std > 0
        return
    assert len(res) == (1 if g.ndim == 1 else g.shape[0])
    assert np.all(np.isfinite(res.times)) and np.all((res.times >= res.t_start) & (res.times <= res.t_stop))
    assert np.all(np.isfinite(encode(res.times, res.offsets, res.t_start, res.t_stop, "isi", 8)))


# -- dics ------------------------------------------------------------------------------------------------------
@FAST
@given(
    model=st.sampled_from(MODELS),
    data=st.data(),
    # physiological voltages, invalid ones, and the range [-200, 200] mV (far outside it the DIC maths gives NaN:
    # see the known issues below)
    V=st.one_of(st.none(), st.floats(-80.0, -30.0), st.floats(-200.0, 200.0), st.sampled_from(SPECIAL),
                hnp.arrays(np.float64, st.integers(0, 3),
                           elements=st.one_of(st.floats(-80.0, -30.0), st.sampled_from(SPECIAL)))),
)  # fmt: skip
def test_dics_random_input(model, data, V):
    n = N_COND[model]
    g = data.draw(_arrays(st.sampled_from([n, n, n, n + 1]), conductance_value), label="conductances")
    try:
        d = dic_sbi.dics(model, g, V)
    except DicSbiError:
        return
    assert d.shape[-1] == 3 and np.all(np.isfinite(d))


# -- degenerate_population ---------------------------------------------------------------------------------
@FAST
@given(
    model=st.sampled_from(MODELS),
    g_s=st.one_of(st.floats(-20.0, 20.0), any_float,
                  hnp.arrays(np.float64, st.integers(0, 3), elements=st.one_of(st.floats(-20, 20), any_float))),
    g_u=st.one_of(st.floats(0.0, 20.0), any_float),
    n=st.one_of(st.integers(-2, 6), st.just(2.5), st.just(True)),
    on_unreachable=st.sampled_from(["raise", "nan", "ignore"]),
    seed=st.one_of(st.none(), st.integers(0, 2**32)),
)  # fmt: skip
def test_degenerate_population_random_input(model, g_s, g_u, n, on_unreachable, seed):
    try:
        pop = dic_sbi.degenerate_population(model, g_s, g_u, n, seed=seed, on_unreachable=on_unreachable,
                                            max_draws=2000)  # fmt: skip
    except DicSbiError:
        return
    assert pop.shape[-2:] == (n, N_COND[model])
    rows = pop.reshape(-1, N_COND[model])
    valid = ~np.isnan(rows).any(axis=1)
    if on_unreachable == "raise":
        assert valid.all()
    # NaN only as whole "unreachable" cells (asked for with on_unreachable="nan"); never inf, never negative
    assert np.all(np.isnan(rows[~valid])) and np.all(np.isfinite(rows[valid])) and np.all(rows[valid] >= 0)


# -- priors ----------------------------------------------------------------------------------------------------
@FAST
@given(
    model=st.sampled_from(MODELS),
    scale=st.sampled_from(["linear", "log", "cubic"]),
    # Finite bounds within float32's range (|v| < 1e6, 0 or > 1e-6): see the known issues below.
    lo=st.one_of(st.just(0.0), st.floats(1e-6, 10.0), GRID.map(lambda v: 30 * v), st.sampled_from(SPECIAL)),
    width=st.one_of(st.floats(1e-3, 1e4), GRID.map(lambda v: 30 * v), st.sampled_from(SPECIAL)),
    shape=st.lists(st.integers(0, 3), max_size=2),
    seed=st.integers(0, 2**40),
)
def test_conductance_prior_random_bounds(model, scale, lo, width, shape, seed):
    n = N_COND[model]
    try:
        prior = ConductancePrior(model, scale, low=np.full(n, lo), high=np.full(n, lo + width))
    except DicSbiError:
        return
    x = prior.sample(tuple(shape), seed=seed)
    assert x.shape == (*shape, n) and torch.isfinite(x).all()
    if x.numel():  # torch's independent constraint cannot check an empty batch (see the known issues below)
        assert prior.support.check(x).all()
        assert torch.isfinite(prior.log_prob(x)).all()
    assert torch.isfinite(prior.mean).all() and torch.isfinite(prior.variance).all()


@SLOW
@given(
    model=st.sampled_from(MODELS),
    # bounds on a 1e-3 grid: a box narrower than ~1e-150 underflows its area (see the known issues below)
    box=st.tuples(st.tuples(st.one_of(GRID, st.sampled_from(SPECIAL)), st.one_of(GRID, st.sampled_from(SPECIAL))),
                  st.tuples(st.one_of(GRID, st.sampled_from(SPECIAL)), st.one_of(GRID, st.sampled_from(SPECIAL)))),
    shape=st.lists(st.integers(0, 3), max_size=2),
)
def test_dic_prior_random_boxes(model, box, shape):
    # reachable_only=False: the reachable region is mapped by Monte Carlo (seconds per box); the input
    # checking of the box is the same either way.
    try:
        prior = DICPrior(model, box=box, reachable_only=False)
    except DicSbiError:
        return
    x = prior.sample(tuple(shape), seed=0)
    assert x.shape == (*shape, 2) and torch.isfinite(x).all()
    assert prior.support.check(x).all() and torch.isfinite(prior.log_prob(x)).all()


# -- issues found by the property tests above, fixed; kept as regression tests ------------------------------
def test_known_issue_population_negative_seed():
    with pytest.raises(DicSbiError):
        dic_sbi.degenerate_population("stg", 0.0, 5.0, 1, seed=-3)


def test_known_issue_dics_overflow():
    g = np.full(8, 1.849e-181)
    g[0] = 2.054e132
    try:
        d = dic_sbi.dics("stg", g)
    except DicSbiError:
        return
    assert np.all(np.isfinite(d))


def test_known_issue_dics_absurd_voltage():
    try:
        d = dic_sbi.dics("da", np.ones(7), 3685.0)
    except DicSbiError:
        return
    assert np.all(np.isfinite(d))


def test_known_issue_dic_prior_vanishing_box():
    try:
        DICPrior("stg", box=((0.0, 1.4e-142), (0.0, 1e-300)), reachable_only=False)
    except DicSbiError:
        return


def test_known_issue_conductance_prior_bounds_beyond_float32():
    with pytest.raises(DicSbiError):
        ConductancePrior("stg", low=np.zeros(8), high=np.full(8, 3.5e38))


def test_known_issue_conductance_prior_subnormal_low():
    try:
        prior = ConductancePrior("stg", "log", low=np.full(8, 1.1e-308), high=np.full(8, 2.0))
    except DicSbiError:
        return
    assert torch.isfinite(prior.log_prob(prior.sample((4,), seed=0))).all()


def test_known_issue_conductance_prior_variance_overflow():
    with pytest.raises(DicSbiError):  # refused at construction: no conductance is that large
        ConductancePrior("stg", low=np.zeros(8), high=np.full(8, 6.4e19))


def test_known_issue_conductance_prior_empty_batch_log_prob():
    assert ConductancePrior("stg").log_prob(torch.empty(0, 8)).shape == (0,)


# -- readers fed damaged stores -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("robust") / "store"
    spec = CampaignSpec("stg", "conductance", num=60, chunk_size=20, seed=5, spike_times=True,
                        duration=300.0, transient=100.0)  # fmt: skip
    run_campaign(spec, path, progress=False)
    return path


@FAST
@given(data=st.data())
def test_readers_on_corrupted_or_truncated_files(small_store, tmp_path_factory, data):
    """Damage one file of a complete store; a reader returns the original data or raises a DicSbiError."""
    fields = FIELDS + ("spike_times",)
    original = {c.index: c for c in CampaignStore.open(small_store).iter_chunks(fields)}
    path = tmp_path_factory.mktemp("damaged") / "store"
    shutil.copytree(small_store, path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    victim = data.draw(st.sampled_from(files), label="file")
    raw = victim.read_bytes()
    how = data.draw(st.sampled_from(["truncate", "flip", "garbage", "empty", "delete"]), label="how")
    if how == "truncate":
        victim.write_bytes(raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))])
    elif how == "flip" and raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        victim.write_bytes(raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :])
    elif how == "garbage":
        victim.write_bytes(data.draw(st.binary(max_size=64)))
    elif how == "empty":
        victim.write_bytes(b"")
    else:
        victim.unlink()
    try:
        store = CampaignStore.open(path)
        for c in store.iter_chunks(fields):
            for name in fields:
                np.testing.assert_array_equal(getattr(c, name), getattr(original[c.index], name), err_msg=name)
    except DicSbiError:
        pass


# -- no NaN or inf over many random prior draws -------------------------------------------------------------
N_DRAWS = 1_000_000  # per prior and model, through the vectorised dics and degenerate_population
N_SIM = 10_000  # cells simulated per prior and model (short protocol: 300 ms, 100 ms transient)


@pytest.mark.parametrize("model", MODELS)
def test_no_nan_from_a_million_conductance_prior_draws(model):
    t0 = time.process_time()
    g = ConductancePrior(model, "log").sample((N_DRAWS,), seed=7).numpy().astype(np.float64)
    assert np.all(np.isfinite(dic_sbi.dics(model, g)))
    g = ConductancePrior(model).sample((N_DRAWS,), seed=8).numpy().astype(np.float64)
    assert np.all(np.isfinite(dic_sbi.dics(model, g)))
    res = dic_sbi.simulate(model, g[:N_SIM], duration=300.0, transient=100.0, progress=False)
    assert np.all(np.isfinite(res.times))
    assert np.all(np.isfinite(encode(res.times, res.offsets, res.t_start, res.t_stop, "summary", 8)))
    print(f"{model}: {N_DRAWS} conductance-prior draws (dics), {N_SIM} simulated, {time.process_time() - t0:.1f} s CPU")


@pytest.mark.parametrize("model", MODELS)
def test_no_nan_from_a_million_dic_prior_draws(model):
    t0 = time.process_time()
    theta = DICPrior(model).sample((N_DRAWS,), seed=9).numpy().astype(np.float64)
    # on the prior's support every target is reachable: "raise" would fail the test on any unreachable draw
    pop = dic_sbi.degenerate_population(model, theta[:, 0], theta[:, 1], 1, seed=10)[:, 0]
    assert np.all(np.isfinite(pop)) and np.all(pop >= 0)
    d = dic_sbi.dics(model, pop)
    assert np.all(np.isfinite(d))
    np.testing.assert_allclose(d[:, 1:], theta, atol=1e-6)  # the cells have the DICs that were drawn
    res = dic_sbi.simulate(model, pop[:N_SIM], duration=300.0, transient=100.0, progress=False)
    assert np.all(np.isfinite(res.times))
    assert np.all(np.isfinite(encode(res.times, res.offsets, res.t_start, res.t_stop, "summary", 8)))
    print(f"{model}: {N_DRAWS} DIC-prior draws (population + dics), {N_SIM} simulated, {time.process_time() - t0:.1f} s CPU")
