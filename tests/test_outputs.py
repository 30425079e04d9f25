"""Outputs never destroy what dic_sbi did not write: the current, home or root folder, the recording and its
folder, foreign files in --out; a previous output only with --overwrite; concurrent runs refused; a killed run's
staging folder removed by the next run; --model always explicit."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from dic_sbi.cli import main, write_spikes_csv
from dic_sbi.io.outputs import MARKER, OutputError, check_output, reserve_output, safe_output, staging_path

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    """A user's folder: a recording (Spike2Pop CSV) and an unrelated file; cwd is set to it, HOME elsewhere."""
    folder = tmp_path / "user"
    folder.mkdir()
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(90.0, 110.0, 30))
    write_spikes_csv(folder / "cell.csv", [times])
    (folder / "notes.txt").write_text("my lab notes")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(folder)
    return folder


def _infer(*args: str) -> list[str]:
    return ["infer", "cell.csv", "--model", "stg", "-n", "5", "--no-plots", "--quiet", *args]


@pytest.mark.parametrize(
    "argv, message",
    [
        (_infer("--out", "."), "is the current folder"),
        (_infer("--out", ".."), "holds the current folder"),
        (_infer("--out", "/"), "root folder"),
        (_infer("--out", "~"), "is your home folder"),
        (["demo", "--out", ".", "--quiet"], "is the current folder"),
        (["demo", "--model", "stg", "--out", "..", "--quiet"], "holds the current folder"),
        (["population", "--model", "stg", "--g-s", "0", "--g-u", "5", "-n", "3", "--out", "cell.csv"], "already exists"),
        (["population", "--model", "stg", "--g-s", "0", "--g-u", "5", "-n", "3", "--out", "."], "current folder"),
        (["simulate", "cell.csv", "--model", "stg", "--out", "cell.csv", "--overwrite"], "would replace cell.csv"),
        (["simulate", "cell.csv", "--model", "stg", "--out", "a.csv", "--nix", "a.csv"], "same file"),
        (["compare", "--model", "stg", "--budgets", "10", "--observations", "2", "--out", "."], "current folder"),
        (["train", "--model", "stg", "--out", "notes", "--work", "w"], None),  # placeholder, see below
    ],
)
def test_refused_places_leave_every_file_as_it_was(workdir, capsys, argv, message):
    if argv[0] == "train":  # OUT.json exists (not written by dic-sbi): refused before any simulation
        (workdir / "notes.json").write_text("{}")
        message = "notes.json already exists"
    before = _snapshot(workdir)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"dic-sbi {argv[0]}: error:") and message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert _snapshot(workdir) == before
    assert not (workdir / "w").exists()


def test_out_equal_to_the_recordings_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    write_spikes_csv(folder / "cell.csv", [np.arange(10.0, 3000.0, 100.0)])
    (folder / "other.dat").write_bytes(b"\x00\x01")
    before = _snapshot(folder)
    for out in (folder, folder / "cell.csv"):
        assert main(["infer", str(folder / "cell.csv"), "--model", "stg", "-n", "5", "--out", str(out), "--quiet",
                     "--no-plots", "--overwrite"]) == 2  # fmt: skip
        assert "would replace" in capsys.readouterr().err
    assert _snapshot(folder) == before


def test_existing_folders_new_empty_previous_and_foreign(workdir, capsys):
    out = workdir / "results"
    # a folder holding files dic-sbi did not write: refused, even with --overwrite
    out.mkdir()
    (out / "precious.txt").write_text("data")
    for extra in ([], ["--overwrite"]):
        assert main(_infer("--out", str(out), *extra)) == 2
        assert "did not write" in capsys.readouterr().err
    assert _snapshot(out) == {"precious.txt": b"data"}
    (out / "precious.txt").unlink()
    # an empty folder is used
    assert main(_infer("--out", str(out))) == 0
    capsys.readouterr()
    marker = json.loads((out / MARKER).read_text())
    assert marker["written_by"] == "dic_sbi" and "population.csv" in marker["files"]
    first = (out / "population.csv").read_text()
    # a previous output: refused without --overwrite, replaced with it
    assert main(_infer("--out", str(out), "--seed", "5")) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "population.csv").read_text() == first
    assert main(_infer("--out", str(out), "--seed", "5", "--overwrite")) == 0
    assert (out / "population.csv").read_text() != first
    # a file a user added to a previous output: refused, nothing lost
    (out / "my_analysis.py").write_text("print(1)")
    before = _snapshot(out)
    assert main(_infer("--out", str(out), "--overwrite")) == 2
    assert "my_analysis.py" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert not staging_path(out).exists()
    assert sorted(p.name for p in workdir.iterdir()) == ["cell.csv", "notes.txt", "results"]


def test_file_outputs_need_overwrite(workdir, capsys):
    argv = ["population", "--model", "stg", "--g-s", "0", "--g-u", "5", "--out", "pop.csv", "--quiet"]
    assert main([*argv, "-n", "3"]) == 0
    first = (workdir / "pop.csv").read_text()
    assert main([*argv, "-n", "4"]) == 2
    assert "already exists" in capsys.readouterr().err and (workdir / "pop.csv").read_text() == first
    assert main([*argv, "-n", "4", "--overwrite"]) == 0
    assert len((workdir / "pop.csv").read_text().splitlines()) == 5
    assert not [p for p in workdir.iterdir() if p.name.startswith(".")]


def _hold(path: str, ready, release) -> None:
    with reserve_output(path):
        ready.set()
        release.wait(30)


def test_a_second_run_to_the_same_out_is_refused(workdir, capsys):
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(workdir / "results"), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        assert main(_infer("--out", "results")) == 2
        assert "another dic-sbi run is writing" in capsys.readouterr().err
        assert not (workdir / "results").exists()
    finally:
        release.set()
        holder.join(30)
    assert main(_infer("--out", "results")) == 0  # free again once the first run is over
    assert not staging_path(workdir / "results").exists()


def _killed_while_writing(path: str) -> None:
    with safe_output(path) as staging:
        (staging / "half.csv").write_text("partial")
        os._exit(9)  # no cleanup at all, as with SIGKILL


def test_a_killed_run_leaves_only_its_staging_folder_which_the_next_run_removes(workdir, capsys):
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_killed_while_writing, args=(str(workdir / "results"),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    hidden = [p.name for p in workdir.iterdir() if p.name.startswith(".")]
    assert hidden == [staging_path(workdir / "results").name]
    assert not (workdir / "results").exists()
    assert main(_infer("--out", "results")) == 0
    assert sorted(p.name for p in workdir.iterdir()) == ["cell.csv", "notes.txt", "results"]
    assert "half.csv" not in os.listdir(workdir / "results")


def test_python_api_refuses_like_the_cli(workdir):
    import dic_sbi

    result = dic_sbi.infer("cell.csv", "stg", n=5, seed=0)
    with pytest.raises(OutputError, match="current folder"):
        result.write(".")
    with pytest.raises(OutputError, match="would replace"):
        result.write(workdir / "cell.csv")
    result.write("out", plots=False)
    with pytest.raises(OutputError, match="overwrite=True"):
        result.write("out", plots=False)
    result.write("out", plots=False, overwrite=True)
    with pytest.raises(TypeError):
        dic_sbi.infer("cell.csv", n=5)  # the model is never implied
    assert (workdir / "notes.txt").read_text() == "my lab notes"


def test_an_error_while_writing_leaves_the_previous_output(workdir):
    safe = workdir / "results"
    with safe_output(safe) as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with safe_output(safe, overwrite=True) as staging:
            (staging / "a.txt").write_text("second")
            raise RuntimeError("disk full")
    assert (safe / "a.txt").read_text() == "first"
    assert not staging_path(safe).exists()


def test_campaign_store_never_deletes_a_foreign_folder(workdir, capsys):
    folder = workdir / "data"
    folder.mkdir()
    (folder / "raw.abf").write_bytes(b"abf")
    argv = ["simulate", "--model", "stg", "--prior", "dic", "--num", "4", "--chunk-size", "2", "--duration", "200",
            "--transient", "100", "--store", str(folder), "--quiet"]  # fmt: skip
    for extra in ([], ["--overwrite"]):
        assert main([*argv, *extra]) == 2
        assert "not a campaign store" in capsys.readouterr().err
    assert _snapshot(folder) == {"raw.abf": b"abf"}
    assert main([*argv[:-3], "--store", ".", "--quiet"]) == 2
    assert "current folder" in capsys.readouterr().err


def test_model_is_required_everywhere(workdir, capsys):
    for argv in (["infer", "cell.csv", "--out", "o"], ["population", "--g-s", "0", "--g-u", "5", "--out", "p.csv"],
                 ["simulate", "cell.csv", "--out", "s.csv"], ["train", "--out", "t", "--work", "w"],
                 ["compare", "--out", "c"]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "required: --model" in err and len(err.strip().splitlines()) == 1, err
    assert main(["infer", "cell.csv", "--model", "hh", "--out", "o"]) == 2
    assert "unknown model 'hh'" in capsys.readouterr().err
    assert sorted(p.name for p in workdir.iterdir()) == ["cell.csv", "notes.txt"]


def test_check_output_unit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_output(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_output(tmp_path / "f.txt")
    (tmp_path / "sub").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path / "sub", kind="file")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "new")
    with pytest.raises(OutputError, match="symbolic link"):
        check_output(link)
    if sys.platform.startswith("linux") and os.geteuid() != 0:  # root may write anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(OutputError, match="no write permission"):
            check_output(ro / "x")
