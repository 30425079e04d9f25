"""The head-to-head harness (dic_sbi.comparison) end to end at a tiny budget, through the API and the CLI.

Tiny budgets, a 1.5 s protocol and 5 epochs: the numbers mean nothing here, the test checks the plumbing (every
method × budget × observation set row, finite intervals where defined, outputs written atomically)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from dic_sbi import get_model
from dic_sbi.cli import main
from dic_sbi.comparison import METHODS, OBSERVATION_SETS, compare, draw_observations, paired_differences
from dic_sbi.errors import InvalidInputError
from dic_sbi.sbi import ConductancePrior
from dic_sbi.sbi.priors import dic_image_box

torch.set_num_threads(1)

TINY = dict(num_posterior_samples=20, calibration_simulations=10, duration=1500.0, transient=500.0,
            training=dict(max_num_epochs=5), n_bootstrap=200)  # fmt: skip
ALWAYS_DEFINED = ("fidelity", "same_class", "validity", "dic_mae_g_s", "dic_mae_g_u", "sampling_seconds")
OUTPUTS = ("comparison.csv", "comparison.md", "per_observation.csv", "reference.csv", "paired.csv", "config.json",
           "metrics.png", "cost.png")


def test_compare_api_end_to_end(tmp_path, capsys):
    out = tmp_path / "cmp"
    result = compare("stg", (200,), 3, seed=0, out=out, **TINY)
    shown = capsys.readouterr().out  # training reports progress by default, as sbi's does
    assert all(f"compare: stg budget 200 {m}: simulated" in shown for m in METHODS)
    assert len(result.rows) == len(METHODS) * len(OBSERVATION_SETS)
    for method in METHODS:
        for s in OBSERVATION_SETS:
            row = result.row(method, 200, s)
            for name in ALWAYS_DEFINED:
                m, lo, hi = row[name], row[f"{name}_lo"], row[f"{name}_hi"]
                assert all(math.isfinite(v) for v in (m, lo, hi)), (method, s, name, m, lo, hi)
                assert lo - 1e-12 <= m <= hi + 1e-12
            for name in ("fidelity", "same_class", "validity"):
                assert 0.0 <= row[name] <= 1.0
            assert row["fidelity"] <= row["same_class"] + 1e-12
            # Coverage is defined only with faithful samples; where a mean exists it is finite and >= 0.
            for name in ("coverage_log_std", "coverage_logdet"):
                assert math.isnan(row[name]) or math.isfinite(row[name])
            assert row["coverage_log_std"] != row["coverage_log_std"] or row["coverage_log_std"] >= 0
            for name in ("sbc_ks_pval_min", "tarp_atc", "tarp_ks_pval", "simulation_seconds", "training_seconds"):
                assert math.isfinite(row[name]), (method, s, name)
    assert len(result.per_observation) == len(METHODS) * len(OBSERVATION_SETS) * 3
    assert result.config["training_batch_size"] == "max(200, budget // 100)"
    # The reference rows: each observation's true DIC population, simulated like the posterior samples.
    assert [r["observation_set"] for r in result.reference] == list(OBSERVATION_SETS)
    for r in result.reference:
        assert 0.0 <= r["fidelity"] <= r["same_class"] <= 1.0 and 0.0 <= r["validity"] <= 1.0
    dic_set = result.reference[0]
    if dic_set["n_unreachable"] == 0:  # cells drawn at the exact DICs: no DIC error
        assert dic_set["dic_mae_g_s"] < 1e-6 and dic_set["dic_mae_g_u"] < 1e-6
    assert "true DIC population" in result.markdown()
    # Paired against linear-box NPE: the mean difference is the difference of the rows' means (every observation
    # has both values), and the interval holds it.
    paired = [r for r in result.paired() if r["class"] == "all"]
    assert {(r["method"], r["observation_set"]) for r in paired} == {
        (m, s) for m in METHODS if m != "conductance_linear" for s in OBSERVATION_SETS
    }
    for r in paired:
        a, b = result.row(r["method"], 200, r["observation_set"]), result.row("conductance_linear", 200, r["observation_set"])
        assert r["n_observations"] == 3 and r["difference"] == pytest.approx(a["fidelity"] - b["fidelity"], abs=1e-12)
        assert r["difference_lo"] - 1e-12 <= r["difference"] <= r["difference_hi"] + 1e-12
    assert "Paired differences in fidelity against `conductance_linear`" in result.markdown()
    # draw_observations gives the observations behind the per-observation rows, in their order.
    drawn = draw_observations("stg", 3, seed=0, duration=1500.0, transient=500.0)
    for s in OBSERVATION_SETS:
        rows_s = [r for r in result.per_observation if r["method"] == "dic" and r["observation_set"] == s]
        assert [r["observed_class"] for r in sorted(rows_s, key=lambda r: r["observation"])] == drawn[s]["classes"]
        assert drawn[s]["g"].shape == (3, get_model("stg").n_conductances)
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with open(out / "comparison.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["method"], r["budget"], r["observation_set"]) for r in rows} == {
        (m, "200", s) for m in METHODS for s in OBSERVATION_SETS
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def _obs_rows(method, values, classes, budget=100, set_name="dic_population"):
    return [{"method": method, "budget": budget, "observation_set": set_name, "observation": i, "observed_class": c,
             "fidelity": v} for i, (v, c) in enumerate(zip(values, classes))]  # fmt: skip


def test_paired_differences_pair_observations_and_screens():
    """The paired difference is the mean of per-observation differences (not of the rows' means when a value is
    missing), per class too; its interval shrinks to the difference when that is constant; screened methods are
    paired with the baseline and with the baseline under the same screen; mismatched observations are refused."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.8, 40)
    classes = ["spiking"] * 30 + ["bursting"] * 10
    rows = _obs_rows("conductance_linear", base, classes) + _obs_rows("dic_learned", base + 0.1, classes)
    rows += _obs_rows("conductance_linear_screened", base + 0.15, classes)
    rows += _obs_rows("dic_learned_screened", [float("nan")] + list(base[1:] + 0.2), classes)
    out = paired_differences(rows, n_bootstrap=300)
    got = {(r["method"], r["baseline"], r["class"]): r for r in out}
    assert set(got) == {(m, b, c) for m, b in [("dic_learned", "conductance_linear"),
                                               ("dic_learned_screened", "conductance_linear"),
                                               ("dic_learned_screened", "conductance_linear_screened")]
                        for c in ("all", "bursting", "spiking")}  # fmt: skip
    for (m, b, c), r in got.items():
        shift = {"dic_learned": 0.1, "conductance_linear": 0.2, "conductance_linear_screened": 0.05}[
            b if m.endswith("screened") else m]
        assert r["difference"] == pytest.approx(shift) and r["difference_lo"] == pytest.approx(shift)
        assert r["difference_hi"] == pytest.approx(shift)
        assert r["n_observations"] == {"all": 40, "spiking": 30, "bursting": 10}[c] - (m.endswith("screened") and c != "bursting")
    # Differences that vary get an interval around their mean.
    noisy = _obs_rows("conductance_linear", base, classes) + _obs_rows("dic_learned", base + rng.normal(0, 0.1, 40), classes)
    r = paired_differences(noisy, n_bootstrap=500)[0]
    assert r["difference_lo"] < r["difference"] < r["difference_hi"] and r["difference_hi"] - r["difference_lo"] < 0.15
    assert paired_differences(rows, "conductance_log") == []
    with pytest.raises(InvalidInputError, match="not the same observations"):
        paired_differences(_obs_rows("conductance_linear", base, classes)
                           + _obs_rows("dic", base, classes[::-1]))  # fmt: skip
    with pytest.raises(InvalidInputError, match="twice"):
        paired_differences(rows + _obs_rows("dic", base[:2], classes[:2]) * 2)
    with pytest.raises(InvalidInputError, match="metric"):
        paired_differences(rows, metric="speed")


def test_replicates_retrain_on_the_same_observations(tmp_path):
    """replicate=R draws every method's simulations and training from other seeds while the observations (and
    their true DIC populations) stay the same; replicate 0 is the default run; replicates keep their own
    checkpoint folders."""
    small = dict(TINY, calibration_simulations=0, num_posterior_samples=10)
    methods = ("conductance_linear",)
    ck = tmp_path / "ck"
    base = compare("stg", (100,), 3, seed=2, methods=methods, checkpoint=ck, **small)
    zero = compare("stg", (100,), 3, seed=2, methods=methods, replicate=0, **small)
    one = compare("stg", (100,), 3, seed=2, methods=methods, replicate=1, **small)
    assert "replicate" not in base.config and one.config["replicate"] == 1
    for s in OBSERVATION_SETS:  # equal up to float rounding (first and later runs of a process differ there)
        a, b = base.row("conductance_linear", 100, s), zero.row("conductance_linear", 100, s)
        assert all(math.isclose(a[k], b[k], rel_tol=1e-6) or (a[k] != a[k] and b[k] != b[k])
                   for k in a if isinstance(a[k], float) and k not in SECONDS), s
    for a, b in zip(base.reference, one.reference, strict=True):  # the same observations
        assert _same(a, b)
    key = lambda r: (r["observation_set"], r["observation"], r["observed_class"])  # noqa: E731
    assert [key(r) for r in base.per_observation] == [key(r) for r in one.per_observation]
    assert [r["dic_mae_g_s"] for r in base.per_observation] != [r["dic_mae_g_s"] for r in one.per_observation]
    with pytest.raises(InvalidInputError, match="replicate"):
        compare("stg", (100,), 3, seed=2, methods=methods, replicate=1, checkpoint=ck, **small)
    with pytest.raises(InvalidInputError, match="replicate"):
        compare("stg", (100,), 3, methods=methods, replicate=-1, **small)


def test_observations_are_seeded_and_fire():
    import numpy as np

    from dic_sbi.comparison import _draw_firing
    from dic_sbi.sbi import ConductancePrior, DICPrior, DICSimulator

    proto = dict(duration=1500.0, transient=500.0, dt=0.05, noise_std=0.0)
    sim = DICSimulator("stg", duration=1500.0, transient=500.0)
    for prior, simulator in ((DICPrior("stg"), sim), (ConductancePrior("stg", "linear"), None)):
        a, b = (_draw_firing(sim.model, 4, np.random.default_rng(5), prior, simulator, proto) for _ in range(2))
        np.testing.assert_array_equal(a["g"], b["g"])
        assert torch.equal(a["x"], b["x"]) and a["x"].shape == (4, 17)
        assert "silent" not in a["classes"] and a["dics"].shape == (4, 2) and np.isfinite(a["dics"]).all()


def test_compare_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli_out"
    rc = main(["compare", "--model", "stg", "--budgets", "100", "--observations", "2", "--samples", "10",
               "--calibration-simulations", "0", "--duration", "1500", "--transient", "500", "--max-epochs", "5",
               "--quiet", "--out", str(out)])  # fmt: skip
    assert rc == 0
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    with open(out / "comparison.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(METHODS) * len(OBSERVATION_SETS)
    assert all(r["sbc_ks_pval_min"] == "nan" for r in rows)  # calibration skipped (0 pairs)
    assert "| set | budget | method |" in capsys.readouterr().out


def test_compare_bad_input(tmp_path, capsys):
    with pytest.raises(InvalidInputError, match="budgets"):
        compare("stg", (), 3)
    with pytest.raises(InvalidInputError, match="n_observations"):
        compare("stg", (100,), 0)
    out = tmp_path / "bad"
    assert main(["compare", "--model", "stg", "--budgets", "10,x", "--observations", "2", "--out", str(out)]) == 2
    assert main(["compare", "--model", "stg", "--budgets", "1", "--observations", "2", "--out", str(out)]) == 2
    assert "error" in capsys.readouterr().err
    assert not out.exists()


SECONDS = ("simulation_seconds", "training_seconds", "sampling_seconds", "sampling_seconds_lo", "sampling_seconds_hi")


def _same(a: dict, b: dict, skip=SECONDS) -> bool:
    keys = [k for k in a if k not in skip]
    assert set(a) == set(b)
    return all((a[k] == b[k]) or (a[k] != a[k] and b[k] != b[k]) for k in keys)  # NaN == NaN here


def test_checkpoint_resumes_and_budgets_are_independent(tmp_path, monkeypatch):
    import dic_sbi.sbi as dsbi

    small = dict(TINY, calibration_simulations=0, num_posterior_samples=10)
    ck = tmp_path / "ck"
    first = compare("stg", (60,), 2, seed=3, checkpoint=ck, **small)
    assert (ck / "settings.json").is_file() and len(list(ck.glob("budget60_*.json"))) == len(METHODS)

    # A second run with more budgets recomputes only the new one; the checkpointed rows come back unchanged.
    both = compare("stg", (40, 60), 2, seed=3, checkpoint=ck, **small)
    for m in METHODS:
        for s in OBSERVATION_SETS:
            assert _same(both.row(m, 60, s), first.row(m, 60, s), skip=())  # read back exactly, timings too

    # Resuming trains nothing.
    def boom(*a, **k):
        raise AssertionError("trained although checkpointed")

    monkeypatch.setattr(dsbi, "train_dic_posterior", boom)
    monkeypatch.setattr(dsbi, "train_conductance_posterior", boom)
    again = compare("stg", (40, 60), 2, seed=3, checkpoint=ck, **small)
    assert len(again.rows) == len(both.rows) and all(_same(a, b, skip=()) for a, b in zip(again.rows, both.rows))
    assert (ck / "reference.json").is_file()  # the reference rows are kept too, not recomputed on resume
    assert all(_same(a, b, skip=()) for a, b in zip(again.reference, both.reference))
    monkeypatch.undo()

    # A budget's numbers do not depend on the other budgets run beside it (seeded from seed, budget, method).
    alone = compare("stg", (40,), 2, seed=3, **small)
    for m in METHODS:
        for s in OBSERVATION_SETS:
            assert _same(alone.row(m, 40, s), both.row(m, 40, s)), (m, s)

    # Other settings in the same folder: refused, naming what differs; a damaged file names itself.
    with pytest.raises(InvalidInputError, match="seed"):
        compare("stg", (60,), 2, seed=4, checkpoint=ck, **small)
    (ck / "budget60_dic.json").write_text("{not json")
    with pytest.raises(InvalidInputError, match="budget60_dic.json"):
        compare("stg", (60,), 2, seed=3, checkpoint=ck, **small)


def test_wide_seed_law_method_runs_beside_the_others_without_changing_them(tmp_path, monkeypatch):
    """dic_learned_wide runs on request; the other methods' numbers do not depend on whether it runs (seeds per
    method), and its cells keep their DICs while spanning the widened law."""
    small = dict(TINY, calibration_simulations=0, num_posterior_samples=10)
    both = compare("stg", (60,), 2, seed=5, methods=("dic_learned", "dic_learned_wide"), seed_law_widening=3.0, **small)
    alone = compare("stg", (60,), 2, seed=5, methods=("dic_learned",), **small)
    for s in OBSERVATION_SETS:
        a, b = both.row("dic_learned", 60, s), alone.row("dic_learned", 60, s)
        # Equal up to float rounding (the DIC errors differ in the 8th digit between processes' first and later runs).
        assert all(math.isclose(a[k], b[k], rel_tol=1e-6) or (a[k] != a[k] and b[k] != b[k])
                   for k in a if isinstance(a[k], float) and k not in SECONDS), s
        assert all(a[k] == b[k] for k in a if not isinstance(a[k], float)), s
        row = both.row("dic_learned_wide", 60, s)
        assert 0.0 <= row["fidelity"] <= row["same_class"] <= 1.0
        assert row["dic_mae_g_s"] >= 0 and math.isfinite(row["dic_mae_g_u"])
    assert both.config["methods"] == ["dic_learned", "dic_learned_wide"] and both.config["seed_law_widening"] == 3.0
    assert both.config["wide_seed_law"]["leak_range"][0] < 0.007  # STG seed leak range (0.007, 0.014), widened
    assert "seed_law_widening" not in alone.config  # default runs keep their checkpoint settings
    wide_box = compare("stg", (60,), 1, seed=5, methods=("dic_learned_wide",), wide_dic_box="conductance", **small)
    assert wide_box.config["wide_dic_box"] == [list(r) for r in dic_image_box("stg")]
    assert "wide_dic_box" not in both.config
    # The weighted DIC prior (following the box cells' DICs) is the one the method simulates from and trains on.
    import dic_sbi.sbi as dsbi

    priors = []
    real = dsbi.train_dic_posterior
    monkeypatch.setattr(dsbi, "train_dic_posterior", lambda *a, **k: priors.append(k["prior"]) or real(*a, **k))
    dense = compare("stg", (60,), 1, seed=5, methods=("dic_learned_wide",), wide_dic_box="conductance",
                    wide_dic_density="conductance", **small)  # fmt: skip
    monkeypatch.undo()
    assert len(priors) == 1 and priors[0].weights is not None and priors[0].box == wide_box_box(wide_box)
    assert dense.config["wide_dic_density"] == "conductance" and "wide_dic_density" not in wide_box.config
    # A seed law with a tail (a mixture of the × 2 and × 4 ranges) is the one the method simulates from.
    monkeypatch.setattr(dsbi, "train_dic_posterior", lambda *a, **k: priors.append(k["prior"]) or real(*a, **k))
    tailed = compare("stg", (60,), 1, seed=5, methods=("dic_learned_wide",), seed_law_widening=2.0,
                     seed_law_tail=(4.0, 0.5), **small)  # fmt: skip
    monkeypatch.undo()
    assert priors[-1].model.name == "stg-wide2-tail4w0.5" and priors[-1].model.seed_population.tail_weight == 0.5
    assert tailed.config["seed_law_tail"] == [4.0, 0.5] and tailed.config["wide_seed_law"]["tail_weight"] == 0.5
    assert "seed_law_tail" not in both.config and "tail_ranges" not in both.config["wide_seed_law"]
    with pytest.raises(InvalidInputError, match="tail"):
        compare("stg", (60,), 1, methods=("dic_learned_wide",), seed_law_widening=4.0, seed_law_tail=(2.0, 0.5), **small)
    from dic_sbi.cli import main

    for bad in ("16", "16,1.5", "x,0.5"):
        assert main(["compare", "--model", "stg", "--budgets", "60", "--observations", "1", "--methods",
                     "dic_learned_wide", "--seed-law-tail", bad, "--out", str(tmp_path / "o")]) == 2  # fmt: skip
    assert 0.0 <= dense.row("dic_learned_wide", 60, "dic_population")["fidelity"] <= 1.0
    with pytest.raises(InvalidInputError, match="wide_dic_density"):
        compare("stg", (60,), 1, methods=("dic_learned_wide",), wide_dic_density="nope", **small)
    with pytest.raises(InvalidInputError, match="box"):
        compare("stg", (60,), 1, methods=("dic_learned_wide",), wide_dic_box="nope", **small)
    with pytest.raises(InvalidInputError, match="methods"):
        compare("stg", (60,), 2, methods=("dic", "nope"))
    with pytest.raises(InvalidInputError, match="methods"):
        compare("stg", (60,), 2, methods=())


def wide_box_box(result):
    return tuple(tuple(r) for r in result.config["wide_dic_box"])


def test_checkpoint_takes_other_methods_and_keeps_the_wide_law_fixed(tmp_path, monkeypatch):
    """A folder resumes with another set of methods (entries are per method, seeded per method): it trains only
    the new ones and its settings then name them all; the widened law, once held, must match."""
    import json

    import dic_sbi.sbi as dsbi

    small = dict(TINY, calibration_simulations=0, num_posterior_samples=6)
    ck = tmp_path / "ck"
    wide = compare("stg", (60,), 1, seed=8, methods=("dic_learned_wide",), checkpoint=ck, **small)
    trained = []
    real = dsbi.train_conductance_posterior
    monkeypatch.setattr(dsbi, "train_conductance_posterior", lambda *a, **k: trained.append(1) or real(*a, **k))
    monkeypatch.setattr(dsbi, "train_dic_posterior", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    both = compare("stg", (60,), 1, seed=8, methods=("conductance_linear", "dic_learned_wide"), checkpoint=ck, **small)
    assert trained == [1]  # only the new method
    for s in OBSERVATION_SETS:
        assert _same(both.row("dic_learned_wide", 60, s), wide.row("dic_learned_wide", 60, s), skip=())
    held = json.loads((ck / "settings.json").read_text())
    assert held["methods"] == ["dic_learned_wide", "conductance_linear"] and held["seed_law_widening"] == 4.0
    compare("stg", (60,), 1, seed=8, methods=("conductance_linear",), checkpoint=ck, **small)  # wide law not run
    assert trained == [1]  # from the checkpoint
    monkeypatch.undo()
    with pytest.raises(InvalidInputError, match="seed_law_widening"):
        compare("stg", (60,), 1, seed=8, methods=("dic_learned_wide",), seed_law_widening=2.0, checkpoint=ck, **small)
    with pytest.raises(InvalidInputError, match="wide_dic_box"):
        compare("stg", (60,), 1, seed=8, methods=("dic_learned_wide",), wide_dic_box="conductance", checkpoint=ck,
                **small)  # fmt: skip

    # A folder made without the wide law takes it from the first run that brings it.
    ck2 = tmp_path / "ck2"
    compare("stg", (60,), 1, seed=8, methods=("conductance_linear",), checkpoint=ck2, **small)
    assert "seed_law_widening" not in json.loads((ck2 / "settings.json").read_text())
    compare("stg", (60,), 1, seed=8, methods=("dic_learned_wide",), seed_law_widening=2.0, checkpoint=ck2, **small)
    assert json.loads((ck2 / "settings.json").read_text())["seed_law_widening"] == 2.0
    with pytest.raises(InvalidInputError, match="seed_law_widening"):
        compare("stg", (60,), 1, seed=8, methods=("dic_learned_wide",), checkpoint=ck2, **small)


def test_screen_adds_screened_rows_without_changing_the_methods_and_resumes(tmp_path, monkeypatch):
    """screen=K adds a <method>_screened row per method (emulator from the method's own simulations); the
    unscreened rows are those of a run without a screen, and a checkpoint without a screen resumes into one
    without training again (the posteriors are kept beside their entries), to what a fresh run gives."""
    import dic_sbi.sbi as dsbi
    import dic_sbi.sbi.emulator as emulator_module

    small = dict(TINY, calibration_simulations=0, num_posterior_samples=8)
    methods = ("conductance_linear", "dic_learned")
    ck = tmp_path / "ck"
    plain = compare("stg", (200,), 2, seed=6, methods=methods, checkpoint=ck, **small)
    assert len(list(ck.glob("budget200_*.posterior.pt"))) == 2
    ranked = []
    real = emulator_module.select_faithful
    monkeypatch.setattr(emulator_module, "select_faithful", lambda g, *a, **k: ranked.append(len(g)) or real(g, *a, **k))

    def boom(*a, **k):
        raise AssertionError("trained although the posterior was checkpointed")

    for name in ("train_dic_posterior", "train_conductance_posterior", "train_free_conductances"):
        monkeypatch.setattr(dsbi, name, boom)
    out = tmp_path / "out"
    screened = compare("stg", (200,), 2, seed=6, methods=methods, checkpoint=ck, screen=3, out=out, **small)
    assert ranked == [24] * 8  # 3 x 8 candidates per observation, 2 observations x 2 sets x 2 methods
    monkeypatch.undo()
    fresh = compare("stg", (200,), 2, seed=6, methods=methods, screen=3, **small)
    for s in OBSERVATION_SETS:
        assert _same(screened.row("conductance_linear_screened", 200, s), fresh.row("conductance_linear_screened", 200, s))
        # The learned law's cells differ between any two runs in the last bits (threaded float sums), which can
        # flip a borderline cell's class in these 1.5-s trains; the DIC errors show the same posterior.
        a, b = screened.row("dic_learned_screened", 200, s), fresh.row("dic_learned_screened", 200, s)
        assert a["dic_mae_g_s"] == pytest.approx(b["dic_mae_g_s"], rel=1e-6)
    assert screened.config["screen"] == 3 and "screen" not in plain.config
    for m in methods:
        for s in OBSERVATION_SETS:
            assert _same(screened.row(m, 200, s), plain.row(m, 200, s), skip=())  # from the checkpoint
            row = screened.row(f"{m}_screened", 200, s)
            assert row["screen"] == 3 and 0.0 <= row["fidelity"] <= row["same_class"] <= 1.0
            assert math.isnan(row["sbc_ks_pval_min"])  # a screen is no posterior: no SBC
    assert len(list(ck.glob("budget200_*_screened3.json"))) == 2
    with open(out / "comparison.csv") as fh:
        assert {r["method"] for r in csv.DictReader(fh)} == {*methods, *(f"{m}_screened" for m in methods)}
    with pytest.raises(InvalidInputError, match="screen"):
        compare("stg", (60,), 2, methods=("conductance_linear",), screen=0, **small)
    with pytest.raises(InvalidInputError, match="emulator"):
        compare("stg", (60,), 1, methods=("conductance_linear",), screen=2, **small)
    (ck / "budget200_dic_learned.posterior.pt").write_bytes(b"not a pickle")
    (ck / "budget200_dic_learned_screened3.json").unlink()
    with pytest.raises(InvalidInputError, match="damaged"):
        compare("stg", (200,), 2, seed=6, methods=methods, checkpoint=ck, screen=3, **small)


def test_dic_image_box_holds_the_conductance_boxs_cells():
    """The box holds ~99 % of fresh conductance-box cells per DIC, and far more than the published DIC box."""
    from dic_sbi.core import dics

    m = get_model("stg")
    (s_lo, s_hi), (u_lo, u_hi) = dic_image_box(m, n=20_000, seed=1)
    d = dics(m, ConductancePrior(m, "linear").sample((20_000,), seed=2).to(torch.float64).numpy())[:, 1:]
    inside = (d[:, 0] >= s_lo) & (d[:, 0] <= s_hi) & (d[:, 1] >= u_lo) & (d[:, 1] <= u_hi)
    assert 0.97 < inside.mean() < 0.995
    (ps_lo, ps_hi), (pu_lo, pu_hi) = m.dic_box
    published = (d[:, 0] >= ps_lo) & (d[:, 0] <= ps_hi) & (d[:, 1] >= pu_lo) & (d[:, 1] <= pu_hi)
    assert published.mean() < 0.3  # why the option exists: most box cells lie outside the published DIC box
    with pytest.raises(InvalidInputError, match="coverage"):
        dic_image_box(m, coverage=0.0)


def test_members_make_every_method_an_ensemble(tmp_path):
    """members=K: every method (NPE's network, the DIC-space method's posterior and its learned law) is a mixture
    of K networks trained on the same simulations, saved as such in the checkpoint; the setting is recorded and a
    checkpoint of another K is refused."""
    from dic_sbi.sbi import DICPosterior, MixtureEstimator

    small = dict(TINY, num_posterior_samples=10)
    methods = ("conductance_linear", "dic_learned_wide")
    ck = tmp_path / "ck"
    two = compare("stg", (100,), 2, seed=2, methods=methods, members=2, checkpoint=ck, **small)
    assert two.config["members"] == 2
    for m in methods:
        for s in OBSERVATION_SETS:
            assert 0 <= two.row(m, 100, s)["fidelity"] <= 1
    assert math.isfinite(two.row("dic_learned_wide", 100, OBSERVATION_SETS[0])["sbc_ks_pval_min"])
    npe = torch.load(ck / "budget100_conductance_linear.posterior.pt", weights_only=False)["posterior"]
    assert isinstance(npe.posterior_estimator, MixtureEstimator) and len(npe.posterior_estimator.members) == 2
    dic = torch.load(ck / "budget100_dic_learned_wide.posterior.pt", weights_only=False)["posterior"]
    assert isinstance(dic, DICPosterior) and isinstance(dic.posterior.posterior_estimator, MixtureEstimator)
    assert isinstance(dic.free_conductances.net, MixtureEstimator) and dic.free_conductances.settings["members"] == 2
    a, b = (dict(m.named_parameters()) for m in dic.free_conductances.net.members)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # two trainings, not one network twice
    # The kept posteriors calibrated again on other pairs, as the harness calibrates them.
    from dic_sbi.comparison import checkpoint_calibration

    npe_cal = checkpoint_calibration(ck, "conductance_linear", 100, n_pairs=12, seed=1)
    assert npe_cal["parameters"] == list(get_model("stg").conductance_names) and len(npe_cal["sbc_ks_pvals"]) == 8
    assert npe_cal["n_pairs"] == 12 and min(npe_cal["sbc_ks_pvals"]) == npe_cal["sbc_ks_pval_min"]
    assert checkpoint_calibration(ck, "conductance_linear", 100, n_pairs=12, seed=1)["sbc_ks_pvals"] == npe_cal["sbc_ks_pvals"]
    wide_cal = checkpoint_calibration(ck, "dic_learned_wide", 100, n_pairs=12, seed=1, num_posterior_samples=8)
    assert len(wide_cal["sbc_ks_pvals"]) == 8 and 0 <= wide_cal["sbc_ks_pval_min"] <= 1
    mixed = checkpoint_calibration([ck, ck], "conductance_linear", 100, n_pairs=12, seed=1)  # a mixture of folders
    assert len(mixed["sbc_ks_pvals"]) == 8 and 0 <= mixed["sbc_ks_pval_min"] <= 1
    with pytest.raises(InvalidInputError, match="at least one"):
        checkpoint_calibration([], "conductance_linear", 100, n_pairs=12, seed=1)
    with pytest.raises(InvalidInputError, match="not in"):
        checkpoint_calibration(ck, "dic", 100, n_pairs=12, seed=1)
    with pytest.raises(InvalidInputError, match="no trained posterior"):
        checkpoint_calibration(ck, "conductance_linear", 200, n_pairs=12, seed=1)
    with pytest.raises(InvalidInputError, match="no dic-sbi compare checkpoint"):
        checkpoint_calibration(tmp_path, "conductance_linear", 100, n_pairs=12, seed=1)
    one = compare("stg", (100,), 2, seed=2, methods=methods, **small)
    assert "members" not in one.config
    with pytest.raises(InvalidInputError, match="members"):
        compare("stg", (100,), 2, seed=2, methods=methods, checkpoint=ck, **small)
    with pytest.raises(InvalidInputError, match="members"):
        compare("stg", (100,), 2, methods=methods, members=0, **small)
    assert main(["compare", "--model", "stg", "--budgets", "100", "--out", str(tmp_path / "o"), "--members", "0"]) == 2
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("method", ["dic_box", "dic_box_npe"])
def test_dic_box_runs_on_the_box_cells(tmp_path, method):
    """dic_box: the DIC-space posterior trained on the conductance box's own cells (dic_sbi.sbi.box_dic), and
    dic_box_npe, whose fiber law is the NPE density trained on the same simulations restricted to the fiber: methods
    of the harness like the others: rows on both observation sets, conductance-space SBC / TARP on box pairs, kept
    in the checkpoint and calibrated again from it."""
    from dic_sbi.comparison import checkpoint_calibration
    from dic_sbi.sbi.box_dic import BoxDICPosterior

    ck = tmp_path / "ck"
    r = compare("da", (150,), 2, seed=1, methods=(method,), checkpoint=ck, **TINY)
    for s in OBSERVATION_SETS:
        row = r.row(method, 150, s)
        assert 0 <= row["fidelity"] <= 1 and 0 <= row["sbc_ks_pval_min"] <= 1 and math.isfinite(row["dic_mae_g_s"])
    post = torch.load(ck / f"budget150_{method}.posterior.pt", weights_only=False)["posterior"]
    assert isinstance(post, BoxDICPosterior) and post.pair == ("ERG", "CaL")
    assert (post.fiber_density is not None) == (method == "dic_box_npe")
    cal = checkpoint_calibration(ck, method, 150, n_pairs=12, seed=1, num_posterior_samples=8)
    assert cal["parameters"] == list(get_model("da").conductance_names) and len(cal["sbc_ks_pvals"]) == 7
