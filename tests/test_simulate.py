"""The batched simulator: input checking, determinism, chunking, noise, voltage recording, neo output."""

from __future__ import annotations

import numpy as np
import pytest
import quantities as pq

import dic_sbi
from dic_sbi import InvalidInputError, UnknownModelError, simulate
from dic_sbi.core.tables import compile_model

STG_VECTOR = np.array([3951.841874625046, 137.74048912522852, 2.9127829247578534, 7.284855521681209,
                       109.17735788681486, 239.38396353795864, 0.29088220179767166, 0.009126662525247945])  # fmt: skip
DA_VECTOR = np.array([42.17872311164837, 8.972168993357155, 0.02539789992130862, 0.0644062068629352,
                      0.16653562721303106, 0.13891638491433672, 0.01504927503238648])  # fmt: skip
SHORT = dict(duration=1000.0, transient=200.0)


def test_single_vector_and_batch_agree():
    one = simulate("stg", STG_VECTOR, **SHORT)
    many = simulate("stg", np.stack([STG_VECTOR] * 3), **SHORT)
    assert len(one) == 1 and len(many) == 3
    for i in range(3):
        np.testing.assert_array_equal(many.spike_times(i), one.spike_times(0))
    assert one.spike_counts[0] > 5


def test_spikes_inside_window_and_sorted():
    res = simulate("da", DA_VECTOR, duration=4000.0, transient=1000.0)
    t = res.spike_times(0)
    assert t.size >= 3
    assert np.all(np.diff(t) > 0)
    assert t[0] >= 1000.0 and t[-1] <= 4000.0


def test_chunking_and_threads_do_not_change_results():
    rng = np.random.default_rng(1)
    g = STG_VECTOR * rng.uniform(0.9, 1.1, size=(11, 8))
    a = simulate("stg", g, **SHORT, chunk_size=3, noise_std=3.0, seed=5)
    b = simulate("stg", g, **SHORT, chunk_size=64, noise_std=3.0, seed=5, n_threads=1)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.times, b.times)
    # a cell's result does not depend on which batch it is in (noise keyed by global index is the exception)
    c = simulate("stg", g[4], **SHORT)
    np.testing.assert_array_equal(c.spike_times(0), simulate("stg", g, **SHORT).spike_times(4))


def test_block_size_does_not_change_results():
    """Big batches run in blocks of up to 128 lanes, small ones (or small chunks) in smaller blocks: same spikes."""
    from dic_sbi.core.simulator import _block_size

    assert _block_size(10_000, 1) == 128 and _block_size(20, 1) == 24 and _block_size(100, 2) == 56
    assert _block_size(1, 16) == 8
    rng = np.random.default_rng(3)
    g = STG_VECTOR * rng.uniform(0.7, 1.3, size=(260, 8))
    big = simulate("stg", g, **SHORT, n_threads=1, noise_std=2.0, seed=1)  # blocks of 128, 128, 4 lanes
    small = simulate("stg", g, **SHORT, n_threads=1, chunk_size=20, noise_std=2.0, seed=1)  # blocks of 24 lanes
    assert big.spike_counts.sum() > 260 * 5
    np.testing.assert_array_equal(big.offsets, small.offsets)
    np.testing.assert_array_equal(big.times, small.times)


@pytest.mark.parametrize("model", ["stg", "da"])
def test_lanes_are_independent_bit_for_bit(model):
    """The kernel steps blocks of cells as SIMD lanes and packs the lanes inside a spike for their substeps: a
    cell's spike times must not depend on its lane, on its neighbours, or on how many of them are in a spike."""
    from dic_sbi.core.populations import degenerate_population

    rng = np.random.default_rng(3)
    box = {"stg": ((-15.0, 15.0), (2.0, 18.0)), "da": ((-8.0, 12.0), (1.0, 15.0))}[model]
    t = np.column_stack([rng.uniform(*box[0], 45), rng.uniform(*box[1], 45)])
    g = degenerate_population(model, t[:, 0], t[:, 1], 1, seed=4)[:, 0, :]
    kw = dict(duration=1500.0, transient=0.0)
    batch = simulate(model, g, **kw)
    assert batch.spike_counts.sum() > 100  # spiking cells, so lanes do enter the packed substeps
    for i in range(len(g)):
        np.testing.assert_array_equal(simulate(model, g[i], **kw).spike_times(0), batch.spike_times(i))
    shuffled = rng.permutation(len(g))
    again = simulate(model, g[shuffled], **kw)
    for j, i in enumerate(shuffled):
        np.testing.assert_array_equal(again.spike_times(j), batch.spike_times(i))


def test_noise_is_seeded():
    kw = dict(**SHORT, noise_std=5.0)
    a = simulate("stg", STG_VECTOR, seed=1, **kw).spike_times(0)
    b = simulate("stg", STG_VECTOR, seed=1, **kw).spike_times(0)
    c = simulate("stg", STG_VECTOR, seed=2, **kw).spike_times(0)
    np.testing.assert_array_equal(a, b)
    assert a.size != c.size or not np.allclose(a, c)
    gen = simulate("stg", STG_VECTOR, seed=np.random.default_rng(3), **kw)
    assert gen.spike_counts[0] > 0


def test_noise_level_per_cell():
    """One σ per cell: each cell is what it would be simulated with its σ alone (same seed, same global index),
    σ = 0 cells are noise-free, and a uniform array equals the scalar."""
    g = np.stack([STG_VECTOR] * 4)
    sig = np.array([0.0, 2.0, 5.0, 0.0])
    mixed = simulate("stg", g, **SHORT, noise_std=sig, seed=9)
    for i, s_ in enumerate(sig):
        alone = simulate("stg", g, **SHORT, noise_std=float(s_), seed=9)  # the same batch at one σ
        np.testing.assert_array_equal(mixed.spike_times(i), alone.spike_times(i))
    clean = simulate("stg", STG_VECTOR, **SHORT)
    np.testing.assert_array_equal(mixed.spike_times(0), clean.spike_times(0))
    assert not np.array_equal(mixed.spike_times(1), clean.spike_times(0))
    np.testing.assert_array_equal(mixed.noise_std, sig)
    same = simulate("stg", g, **SHORT, noise_std=np.full(4, 2.0), seed=9)
    np.testing.assert_array_equal(same.times, simulate("stg", g, **SHORT, noise_std=2.0, seed=9).times)
    assert same.noise_std == 2.0
    for bad, match in (([1.0, 2.0], "noise_std: expected a scalar or 4"), ([0.0, -1.0, 0.0, 0.0], "noise_std: expected"),
                       ([0.0, np.nan, 0.0, 0.0], "noise_std: expected"), (["a"] * 4, "noise_std: could not be read")):
        with pytest.raises(InvalidInputError, match=match):
            simulate("stg", g, **SHORT, noise_std=bad, seed=1)


def _passive_noise_variance(dt: float, sigma: float) -> tuple[float, float, float]:
    """Variance of V of a passive cell (only leak, τ = 1 ms) driven by the noise: measured, predicted from the
    filter, and the mean of V (all relative to E_leak)."""
    from scipy import signal

    model = dic_sbi.get_model("stg")
    g = np.zeros(model.n_conductances)
    g[model.index("leak")] = 1.0  # τ = 1 ms, so V follows the filtered current closely
    res = simulate(model, g, duration=4000.0, transient=100.0, dt=dt, noise_std=sigma, seed=0, record_voltage=True)
    v = res.voltage[0] - model.channels[-1].reversal
    # predicted: white noise of σ per 0.05-ms sample, i.e. σ sqrt(0.05 / dt) per step, through Butterworth then RC
    sos = signal.butter(4, 1000.0, fs=1000.0 / dt, output="sos")
    impulse = np.zeros(int(500 / dt))
    impulse[0] = 1.0
    h = signal.sosfilt(sos, impulse)
    a = np.exp(-dt)  # exponential-Euler RC response to a step-wise constant input, gain (1 - a)
    h_v = signal.lfilter([0.0, 1.0 - a], [1.0, -a], h)
    predicted = sigma**2 * (0.05 / dt) * np.sum(h_v**2)
    return float(np.var(v)), float(predicted), float(np.mean(v))


def test_noise_statistics_match_filtered_white_noise():
    """V fluctuates with the variance the filter predicts, and the same σ gives the same fluctuations at any dt
    (the noise's spectral density does not depend on the step)."""
    measured = {}
    for dt in (0.025, 0.05, 0.1):
        var, predicted, mean = _passive_noise_variance(dt, 4.0)
        assert var == pytest.approx(predicted, rel=0.1), dt
        assert abs(mean) < 0.1 * np.sqrt(var)
        measured[dt] = var
    assert measured[0.1] == pytest.approx(measured[0.025], rel=0.15)
    assert measured[0.05] == pytest.approx(measured[0.025], rel=0.15)


def test_injected_current_shifts_passive_voltage():
    model = dic_sbi.get_model("da")
    g = np.zeros(model.n_conductances)
    g[model.index("leak")] = 0.05
    res = simulate(model, g, duration=600.0, transient=500.0, i_app=1.0, record_voltage=True, sampling_interval=1.0)
    # steady state of a passive membrane: V = E_leak + I / g_leak
    np.testing.assert_allclose(res.voltage[0, -1], -50.0 + 1.0 / 0.05, atol=1e-6)
    per_cell = simulate(model, np.stack([g, g]), duration=600.0, transient=500.0, i_app=[0.0, 0.5],
                        record_voltage=True, sampling_interval=1.0)  # fmt: skip
    np.testing.assert_allclose(per_cell.voltage[:, -1], [-50.0, -40.0], atol=1e-6)


def test_voltage_recording_and_neo_objects():
    res = simulate("stg", STG_VECTOR, **SHORT, record_voltage=True, sampling_interval=0.1)
    assert res.voltage.shape == (1, int(800 / 0.1) + 1)
    np.testing.assert_allclose(res.voltage_times[[0, -1]], [200.0, 1000.0])
    assert np.nanmax(res.voltage) > 10.0
    sig = res.analogsignal(0)
    assert sig.units == pq.mV and float(sig.sampling_period.rescale("ms")) == pytest.approx(0.1)
    st = res.spiketrain(0)
    assert st.units == pq.ms
    assert float(st.t_start) == 200.0 and float(st.t_stop) == 1000.0
    np.testing.assert_allclose(st.magnitude, res.spike_times(0))
    assert st.annotations["model"] == "stg" and st.annotations["g_Na"] == pytest.approx(STG_VECTOR[0])
    assert len(res.spiketrains()) == 1
    # spikes detected from the recorded trace by the spike-train layer equal the in-loop detection (without
    # substeps, the trace holds every step the in-loop detector saw)
    from dic_sbi.spiketrains import detect_spikes

    fine = simulate("stg", STG_VECTOR, **SHORT, record_voltage=True, fine_substeps=1)
    detected = detect_spikes(fine.analogsignal(0))
    np.testing.assert_allclose(detected.rescale("ms").magnitude, fine.spike_times(0), atol=1e-9)


def test_spike_buffer_overflow_is_rerun_exactly():
    # Shrink the first-guess spike buffer so that cells overflow it and are re-run with an exact one.
    import dic_sbi.core.simulator as sim

    old = sim.MAX_SPIKE_RATE_KHZ
    try:
        sim.MAX_SPIKE_RATE_KHZ = 0.001  # capacity of 16 spikes
        small = simulate("stg", np.stack([STG_VECTOR] * 5), duration=2500.0, transient=200.0)
    finally:
        sim.MAX_SPIKE_RATE_KHZ = old
    ref = simulate("stg", np.stack([STG_VECTOR] * 5), duration=2500.0, transient=200.0)
    np.testing.assert_array_equal(small.times, ref.times)
    assert small.spike_counts.max() > 16


def test_features_of_result():
    res = simulate("stg", np.stack([STG_VECTOR, np.zeros(8) + np.eye(8)[7] * 0.01]), **SHORT)
    f = res.features()
    assert list(f["firing_class"]) == ["spiking", "silent"] or f["firing_class"][1] == "silent"


def test_rate_table_interpolation_is_accurate():
    """The tabulated steady states and decay factors match the kinetic functions between grid points.

    Linear interpolation on the 0.2-mV grid is within 1e-5 of the exact kinetics for every STG gate, and for DA
    except near the guarded singularity of τ_m (-38.7 mV, where τ_m has a kink) and the ERG equilibrium: 1e-4 there.
    """
    loose = {("da", "m"), ("da", "erg")}
    for name in ("stg", "da"):
        model = dic_sbi.get_model(name)
        cm = compile_model(model, 0.05)
        V = np.linspace(-99.0, 60.0, 20001) + 0.0037  # off-grid
        u = (V - cm.v_min) * cm.inv_step
        r = u.astype(int)
        f = u - r
        for gate_name, col in zip(cm.gate_names, cm.gate_col):
            tol = 1e-4 if (name, gate_name) in loose else 1e-5
            gate = model.gates()[gate_name]
            if gate_name == "erg":
                o_inf, _ = gate.steady_state(V)
                approx = cm.table[r, 2 * col] + f * cm.table[r, 2 * col + 1]
                np.testing.assert_allclose(approx, o_inf, atol=tol)
                continue
            ss = getattr(gate, "voltage_factor", None) or gate.steady_state
            A = cm.table[r, 2 * col] + f * cm.table[r, 2 * col + 1]
            d = cm.table[r, 2 * col + 2] + f * cm.table[r, 2 * col + 3]
            exact_d = np.exp(-0.05 / gate.time_constant(V)) if hasattr(gate, "time_constant") else 0.0
            np.testing.assert_allclose(d, exact_d, atol=tol, err_msg=f"{name} {gate_name} decay")
            np.testing.assert_allclose(A, ss(V) * (1 - exact_d), atol=tol, err_msg=f"{name} {gate_name} A")


def test_exp_nonpositive_matches_libm():
    from numba import njit

    from dic_sbi.core.kernels import exp_nonpositive

    @njit
    def run(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = exp_nonpositive(x[i])
        return out

    x = -np.concatenate([np.random.default_rng(0).random(20000) * 700, np.linspace(0, 3, 3001), [0.0, 1e-12]])
    np.testing.assert_allclose(run(x), np.exp(x), rtol=5e-16, atol=0)


# -- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(conductances=np.ones((2, 5))), "conductances: expected shape"),
        (dict(conductances=np.ones((2, 8, 1))), "conductances: expected shape"),
        (dict(conductances=np.zeros((0, 8))), "conductances: empty"),
        (dict(conductances=np.where(np.eye(8)[2] > 0, np.nan, STG_VECTOR)), r"conductances: .*1 NaN/inf.*CaT"),
        (dict(conductances=np.where(np.eye(8)[1] > 0, -1.0, STG_VECTOR)), r"conductances: .*negative.*Kd"),
        (dict(conductances=[["a"] * 8]), "conductances: could not be read"),
        (dict(dt=0.0), "dt: must be"),
        (dict(dt=-0.1), "dt: must be"),
        (dict(dt=float("nan")), "dt: must be"),
        (dict(dt=0.07), "dt: duration .* not a whole number"),
        (dict(dt=0.03, duration=300.0, noise_std=1.0, seed=1, record_voltage=True, sampling_interval=0.05),
         "sampling_interval: must be a whole multiple"),
        (dict(duration=100.0, transient=100.0), "transient: must be shorter"),
        (dict(duration=100.0, transient=200.0), "transient: must be shorter"),
        (dict(transient=-1.0), "transient: must be"),
        (dict(duration="long"), "duration: expected a number"),
        (dict(i_app=[1.0, 2.0]), "i_app: expected"),
        (dict(i_app=np.inf), "i_app: expected"),
        (dict(noise_std=-1.0), "noise_std: must be"),
        (dict(noise_std=1.0, dt=0.5, duration=1000.0), "dt: .* too coarse"),
        (dict(noise_std=1.0, seed=-3), "seed: expected"),
        (dict(record_voltage=True, sampling_interval=0.07), "sampling_interval: must be a whole multiple"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(n_threads=0), "n_threads: expected None or an int >= 1"),
        (dict(fine_substeps=0), "fine_substeps: expected an int >= 1"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = dict(conductances=STG_VECTOR, duration=200.0, transient=100.0)
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        simulate("stg", **args)


def test_unknown_model():
    with pytest.raises(UnknownModelError, match="unknown model 'ca1'.*da, pospischil, .*, stg"):
        simulate("ca1", STG_VECTOR)
    with pytest.raises(InvalidInputError, match="model: expected a model name"):
        simulate(3, STG_VECTOR)


def test_zero_conductances_do_not_crash():
    res = simulate("stg", np.zeros(8), duration=200.0, transient=100.0, i_app=0.0, record_voltage=True)
    assert res.spike_counts[0] == 0
    np.testing.assert_allclose(res.voltage, -70.0)


def test_closed_form_2x2_exponential_matches_scipy():
    import scipy.linalg

    from dic_sbi.core.tables import expm_2x2

    A = np.random.default_rng(0).normal(scale=3.0, size=(500, 2, 2))  # real, complex and near-equal eigenvalues
    A[0] = [[-1.0, 1.0], [0.0, -1.0]]  # defective (confluent)
    np.testing.assert_allclose(expm_2x2(A, 0.3), scipy.linalg.expm(A * 0.3), atol=1e-12)
    erg = dic_sbi.get_model("da").gates()["erg"]
    G, _ = erg.generator(np.linspace(-150.0, 100.0, 501))  # stiff at depolarised V
    np.testing.assert_allclose(expm_2x2(G, 0.1), scipy.linalg.expm(G * 0.1), atol=1e-12)


def test_spike_substeps_follow_the_protocol():
    """A step is split only above ``fine_above`` while V moves at least ``fine_min_slope`` mV/ms: an unreachable
    slope gives exactly the plain fixed-step scheme, a zero slope the voltage-only rule, and both differ from the
    default."""
    import dataclasses

    model = dic_sbi.get_model("stg")
    g = np.stack([STG_VECTOR, STG_VECTOR * np.array([1, 1, 1, 1, 1, 1, 1.2, 1])])

    def with_slope(slope):
        return dataclasses.replace(model, protocol=dataclasses.replace(model.protocol, fine_min_slope=slope))

    plain = simulate(model, g, **SHORT, fine_substeps=1)
    never = simulate(with_slope(1e12), g, **SHORT)
    np.testing.assert_array_equal(never.times, plain.times)
    default = simulate(model, g, **SHORT)
    always = simulate(with_slope(0.0), g, **SHORT)
    assert not np.array_equal(default.times, plain.times) and not np.array_equal(always.times, default.times)
    # the rate-table grid is the protocol's: a finer grid moves spikes by far less than the 1 % accuracy bar
    fine_grid = dataclasses.replace(model, protocol=dataclasses.replace(model.protocol, table_step=0.02))
    finer = simulate(fine_grid, g, **SHORT)
    assert not np.array_equal(finer.times, default.times)
    np.testing.assert_array_equal(finer.spike_counts, default.spike_counts)
    np.testing.assert_allclose(finer.times, default.times, rtol=3e-4)  # a drift of 1e-4 of the elapsed time
    for bad in (dict(fine_min_slope=-1.0), dict(fine_min_slope=np.nan), dict(fine_substeps=0), dict(dt=0.0),
                dict(transient=7000.0), dict(table_step=0.0), dict(table_step=5.0)):  # fmt: skip
        with pytest.raises(InvalidInputError, match="Protocol"):
            dataclasses.replace(model.protocol, **bad)
