"""Campaigns: determinism per chunk, resumption after SIGKILL, dask.distributed, damaged stores, CLI, training."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dic_sbi.campaign import (
    FIELDS,
    CampaignSpec,
    CampaignStore,
    CorruptStoreError,
    StoreDataset,
    compute_chunk,
    run_campaign,
    train_npe_from_store,
)
from dic_sbi import get_model
from dic_sbi.cli import main
from dic_sbi.errors import DicSbiError, InvalidInputError

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = dict(duration=300.0, transient=100.0)  # tiny protocol: the store logic is what is tested
SPEC = CampaignSpec("stg", "dic", num=1500, chunk_size=50, seed=11, **PROTOCOL)
ALL = FIELDS


def _content(path: Path, fields=ALL) -> dict[str, np.ndarray]:
    return CampaignStore.open(path).read(fields)


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted local run of SPEC."""
    path = tmp_path_factory.mktemp("ref") / "store"
    report = run_campaign(SPEC, path, progress=False)
    assert report.computed == list(range(SPEC.n_chunks)) and report.skipped == []
    return path


def test_reference_store_is_complete_and_valid(reference):
    st = CampaignStore.open(reference)
    assert st.is_complete and st.n_complete_rows() == SPEC.num
    d = st.read(ALL)
    np.testing.assert_array_equal(d["rows"], np.arange(SPEC.num))  # every simulation once, in order
    assert d["theta"].shape == (SPEC.num, 2) and d["x"].shape == (SPEC.num, 17)
    assert np.all(np.isfinite(d["x"])) and np.all(np.isfinite(d["conductances"]))
    assert len(np.unique(d["theta"], axis=0)) == SPEC.num  # no chunk drew the same θ as another
    assert st.config["x_names"][0] == "log10_rate_hz" and st.config["theta_names"] == ["g_s", "g_u"]


def test_chunk_depends_only_on_seed_and_index(reference):
    st = CampaignStore.open(reference)
    for k in (0, 17, SPEC.n_chunks - 1):
        fresh = compute_chunk(SPEC, k, n_threads=1)
        stored = st.read_chunk(k)
        for name in ALL:
            np.testing.assert_array_equal(fresh[name], getattr(stored, name), err_msg=f"chunk {k} {name}")
    other = compute_chunk(CampaignSpec("stg", "dic", num=1500, chunk_size=50, seed=12, **PROTOCOL), 0)
    assert not np.array_equal(other["theta"], st.read_chunk(0).theta)


def test_sigkill_at_random_point_then_resume(reference, tmp_path):
    """Kill the CLI campaign with SIGKILL at a random chunk, resume: same store, every simulation exactly once."""
    path = tmp_path / "store"
    cmd = [sys.executable, "-m", "dic_sbi.cli", "simulate", "--model", "stg", "--prior", "dic", "--num", str(SPEC.num),
           "--chunk-size", str(SPEC.chunk_size), "--seed", str(SPEC.seed), "--duration", "300", "--transient", "100",
           "--store", str(path), "--quiet"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rnd = random.Random()
    target = rnd.randint(1, SPEC.n_chunks // 2)  # complete chunks before the kill ...
    extra = rnd.uniform(0.0, 0.05)  # ... then a random moment inside the next one (often mid-write)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    markers = path / "_complete"
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 180:  # generous: a cold start compiles the kernels
            if markers.is_dir() and len(list(markers.glob("*.json"))) >= target:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.002)
        time.sleep(extra)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    st = CampaignStore.open(path)
    before = st.complete_chunks()
    print(f"killed after {len(before)} complete chunks (target {target}, +{extra * 1000:.0f} ms)")
    assert target <= len(before) < SPEC.n_chunks, "the kill must land inside the campaign"
    # What the reader sees now is exactly the completed prefix of the reference, never a half-written chunk.
    partial = st.read(ALL)
    ref = _content(reference)
    np.testing.assert_array_equal(partial["theta"], ref["theta"][partial["rows"]])
    np.testing.assert_array_equal(partial["x"], ref["x"][partial["rows"]])

    report = run_campaign(SPEC, path, progress=False)
    assert report.skipped == before  # finished chunks are not recomputed ...
    assert sorted(report.computed + report.skipped) == list(range(SPEC.n_chunks))  # ... the others exactly once
    _same(_content(path), ref)
    assert not list(path.parent.glob(".store.*"))  # no staging directory left behind


def test_half_written_chunk_is_never_read_and_is_recomputed(reference, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(reference, path)
    st = CampaignStore.open(path)
    # Chunk 3 "killed mid-write": marker gone, some of its data overwritten with garbage; plus a stray temp marker.
    st.invalidate(3)
    import zarr

    zarr.open_group(str(path), mode="r+")["x"][150:175] = np.float32(1234.5)
    (path / "_complete" / ".00000003.json.tmp").write_text('{"chunk": 3, "rows": [150')
    assert 3 not in st.complete_chunks()
    assert 3 not in [c.index for c in st.iter_chunks()]
    with pytest.raises(CorruptStoreError, match="not complete"):
        st.read_chunk(3)
    report = run_campaign(SPEC, path, progress=False)
    assert report.computed == [3]
    _same(_content(path), _content(reference))


def test_two_worker_local_cluster_matches_local_run(reference, tmp_path):
    """A 2-worker LocalCluster (worker processes) writes the same store as the local run."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            # half the chunks through a Client object, the rest through the scheduler's address (as --scheduler)
            path = tmp_path / "store"
            r1 = run_campaign(SPEC, path, scheduler=client, max_chunks=SPEC.n_chunks // 2, progress=False)
            r2 = run_campaign(SPEC, path, scheduler=cluster.scheduler_address, progress=False)
    assert len(r1.computed) == SPEC.n_chunks // 2 and r2.skipped == r1.computed
    assert sorted(r1.computed + r2.computed) == list(range(SPEC.n_chunks))
    _same(_content(path), _content(reference))


def test_conductance_prior_with_spike_times(tmp_path):
    from dic_sbi import simulate

    spec = CampaignSpec("stg", "conductance", num=70, chunk_size=32, seed=2, scale="log", spike_times=True, **PROTOCOL)
    run_campaign(spec, tmp_path / "s", progress=False)
    st = CampaignStore.open(tmp_path / "s")
    assert st.n_chunks == 3 and st.rows(2) == (64, 70)
    for c in st.iter_chunks(ALL + ("spike_times",)):
        np.testing.assert_array_equal(c.conductances, c.theta.astype(np.float64))
        res = simulate("stg", c.conductances, progress=False, **PROTOCOL)
        np.testing.assert_array_equal(c.spike_counts, res.spike_counts)
        np.testing.assert_array_equal(c.spike_times, res.times)


def test_damaged_stores_raise_named_errors(reference, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(reference, path)
    st = CampaignStore.open(path)
    # a complete chunk whose data file is truncated, and one whose bytes were changed: detected, not returned
    x_files = sorted(p for p in (path / "x").rglob("*") if p.is_file() and p.name != "zarr.json")
    assert len(x_files) == SPEC.n_chunks
    x_files[0].write_bytes(x_files[0].read_bytes()[:10])
    t = path / "theta"
    t_file = sorted(p for p in t.rglob("*") if p.is_file() and p.name != "zarr.json")[1]
    t_file.write_bytes(t_file.read_bytes()[:-1] + bytes([t_file.read_bytes()[-1] ^ 0xFF]))
    with pytest.raises(CorruptStoreError, match="chunk 0"):
        st.read_chunk(0)
    with pytest.raises(CorruptStoreError, match="chunk 1"):
        st.read_chunk(1, ("theta",))
    with pytest.raises(CorruptStoreError):
        list(st.iter_chunks())
    assert st.read_chunk(2).x.shape == (50, 17)  # the other chunks stay readable
    # a garbled marker means "not complete": resuming recomputes that chunk
    (path / "_complete" / "00000004.json").write_text("{garbage")
    assert 4 not in st.complete_chunks()
    # invalidating the damaged chunks and resuming repairs the store
    st.invalidate(0)
    st.invalidate(1)
    assert run_campaign(SPEC, path, progress=False).computed == [0, 1, 4]
    _same(_content(path), _content(reference))
    # not a store at all
    (tmp_path / "empty").mkdir()
    with pytest.raises(DicSbiError):
        CampaignStore.open(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "zarr.json").write_text("{not json")
    with pytest.raises(CorruptStoreError):
        CampaignStore.open(tmp_path / "bad")
    with pytest.raises(InvalidInputError, match="store"):
        CampaignStore.open(tmp_path / "nowhere")


def test_bad_campaign_input():
    with pytest.raises(InvalidInputError, match="prior"):
        CampaignSpec("stg", "box", num=10)
    with pytest.raises(InvalidInputError, match="num"):
        CampaignSpec("stg", "dic", num=0)
    with pytest.raises(InvalidInputError, match="chunk_size"):
        CampaignSpec("stg", "dic", num=10, chunk_size=2.5)
    with pytest.raises(InvalidInputError, match="seed"):
        CampaignSpec("stg", "dic", num=10, seed=-1)
    with pytest.raises(DicSbiError):
        CampaignSpec("nope", "dic", num=10)


def test_dic_campaign_on_a_box_draws_its_targets_there(tmp_path, capsys):
    """``box``: DIC targets uniform on the given box (not the model's), stored in the config, kept on resume."""
    box = ((-5.0, 0.0), (2.0, 6.0))
    spec = CampaignSpec("stg", "dic", num=60, chunk_size=30, seed=3, box=[list(r) for r in box], **PROTOCOL)
    assert spec.box == box  # lists normalised to a hashable tuple
    run_campaign(spec, tmp_path / "s", progress=False)
    store = CampaignStore.open(tmp_path / "s")
    theta = store.read(("theta",))["theta"]
    assert theta.shape == (60, 2)
    assert (theta[:, 0] >= -5).all() and (theta[:, 0] <= 0).all() and (theta[:, 1] >= 2).all() and (theta[:, 1] <= 6).all()
    assert store.config["box"] == [[-5.0, 0.0], [2.0, 6.0]]
    assert CampaignSpec.from_config(store.config).box == box
    with pytest.raises(InvalidInputError, match="box: stored"):  # the same store with the model's box is another campaign
        run_campaign(CampaignSpec("stg", "dic", num=60, chunk_size=30, seed=3, **PROTOCOL), tmp_path / "s", progress=False)
    with pytest.raises(InvalidInputError, match="only a DIC-prior"):
        CampaignSpec("stg", "conductance", num=10, box=box)
    with pytest.raises(InvalidInputError, match="box"):
        CampaignSpec("stg", "dic", num=10, box=((0, 1),))
    assert main(["simulate", "--model", "stg", "--prior", "dic", "--num", "5", "--box", "1,2,3",
                 "--store", str(tmp_path / "v")]) == 2  # fmt: skip
    assert "GS_MIN,GS_MAX,GU_MIN,GU_MAX" in capsys.readouterr().err and not (tmp_path / "v").exists()


def test_resume_with_other_settings_is_refused(reference, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(reference, path)
    other = CampaignSpec("stg", "dic", num=1500, chunk_size=50, seed=99, **PROTOCOL)
    with pytest.raises(InvalidInputError, match="seed"):
        run_campaign(other, path, progress=False)
    # a store simulated with other numerics (here: an older, finer rate table) is not resumed either
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    assert doc["attributes"]["campaign"]["rate_table_step_mV"] == get_model("stg").protocol.table_step == 0.2
    doc["attributes"]["campaign"]["rate_table_step_mV"] = 0.02
    meta.write_text(json.dumps(doc))
    with pytest.raises(InvalidInputError, match="rate_table_step_mV: stored 0.02"):
        run_campaign(SPEC, path, progress=False)


def test_a_larger_num_grows_the_store_and_keeps_its_chunks(reference, tmp_path):
    """Asking more simulations of the same campaign extends it; the result equals one run at the larger num."""
    path = tmp_path / "store"
    small = CampaignSpec("stg", "dic", num=1020, chunk_size=50, seed=11, **PROTOCOL)  # 20 full chunks + 20 rows
    run_campaign(small, path, progress=False)
    report = run_campaign(SPEC, path, progress=False)
    assert report.skipped == list(range(20))  # the full chunks are kept, the partial one is recomputed whole
    assert report.computed == list(range(20, SPEC.n_chunks))
    _same(_content(path), _content(reference))
    assert CampaignStore.open(path).num == SPEC.num
    _same(_content(path), _content(reference))


def test_a_smaller_num_is_served_by_the_first_chunks_of_a_grown_store(reference, tmp_path, capsys):
    """A store grown beyond a campaign still serves it (the shipped commands stay reproducible from a grown store):
    a whole number of chunks is read from its start, equal to a fresh run at that num; it never shrinks."""
    path = tmp_path / "store"
    shutil.copytree(reference, path)
    small = CampaignSpec("stg", "dic", num=1000, chunk_size=50, seed=11, **PROTOCOL)
    fresh = tmp_path / "fresh"
    run_campaign(small, fresh, progress=False)
    report = run_campaign(small, path, progress=False)
    assert report.computed == [] and report.skipped == list(range(20))
    got, want = CampaignStore.open(path).read(ALL, num=1000), CampaignStore.open(fresh).read(ALL)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert CampaignStore.open(path).num == SPEC.num  # nothing dropped
    _same(_content(path), _content(reference))
    # chunks of the prefix that are missing are computed, and only those
    CampaignStore.open(path).invalidate(3)
    CampaignStore.open(path).invalidate(25)
    report = run_campaign(small, path, progress=False)
    assert report.computed == [3] and 25 in CampaignStore.open(path).pending_chunks()
    with pytest.raises(InvalidInputError, match="multiple of 50"):  # a partial last chunk would differ
        run_campaign(CampaignSpec("stg", "dic", num=1020, chunk_size=50, seed=11, **PROTOCOL), path, progress=False)
    with pytest.raises(InvalidInputError, match="num: expected a multiple"):
        CampaignStore.open(path).read(("theta",), num=1020)
    first = [CampaignStore.open(q).read(("theta", "x"), num=1000) for q in (path, reference)]
    _same(*first)  # chunk 3 recomputed the same
    assert main(["simulate", "--model", "stg", "--prior", "dic", "--num", "1000", "--chunk-size", "50", "--seed", "11",
                 "--duration", "300", "--transient", "100", "--store", str(path), "--quiet"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert (out["num"], out["store_num"], out["chunks"], out["complete_chunks"], out["computed_now"]) == (1000, 1500, 20, 20, 0)


def test_cli_campaign_and_resume(tmp_path, capsys):
    args = ["simulate", "--model", "stg", "--prior", "conductance", "--num", "90", "--chunk-size", "40",
            "--duration", "300", "--transient", "100", "--store", str(tmp_path / "s"), "--quiet"]  # fmt: skip
    assert main([*args, "--max-chunks", "1"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["complete_chunks"] == 1 and first["chunks"] == 3
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["computed_now"] == 2 and second["found_complete"] == 1
    assert main(["simulate", "--model", "stg", "--prior", "dic", "--num", "5"]) == 2  # campaign options without --store
    assert "need --store" in capsys.readouterr().err
    assert main(["simulate", "--model", "stg", "x.csv", "--store", str(tmp_path / "t"), "--prior", "dic", "--num", "5"]) == 2
    assert main(["simulate", "--model", "stg", "--store", str(tmp_path / "u")]) == 2  # no prior / num
    assert not (tmp_path / "u").exists() and not (tmp_path / "t").exists()


def test_store_dataset_streams_every_valid_row_once(reference):
    ds = StoreDataset(reference, batch_size=128, shuffle_chunks=3, seed=1)
    seen = [t for t, _ in ds]
    theta = torch.cat(seen).numpy()
    assert theta.shape[0] == SPEC.num and max(len(t) for t in seen) <= 128
    ref = CampaignStore.open(reference).read(("theta",))["theta"]
    assert not np.array_equal(theta, ref)  # shuffled ...
    np.testing.assert_array_equal(np.unique(theta, axis=0), np.unique(ref, axis=0))  # ... same rows, once each
    ds.epoch = 1
    assert not torch.equal(next(iter(ds))[0], seen[0])  # a new order every epoch
    with pytest.raises(InvalidInputError, match="chunks"):
        StoreDataset(reference, chunks=[999])


def test_train_npe_from_store(reference):
    run = train_npe_from_store(reference, hidden_features=16, num_transforms=2, max_epochs=3, validation_chunks=3,
                               progress=False, seed=0)  # fmt: skip
    assert run.epochs == 3 and len(run.validation_chunks) == 3
    assert set(run.train_chunks).isdisjoint(run.validation_chunks)
    assert run.validation_losses[-1] < run.validation_losses[0]
    x = torch.as_tensor(CampaignStore.open(reference).read_chunk(0).x[0])
    dics = run.posterior.posterior.sample((50,), x=x, show_progress_bars=False)
    assert dics.shape == (50, 2) and torch.isfinite(dics).all()
