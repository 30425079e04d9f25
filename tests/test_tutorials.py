"""Every tutorial runs end to end (with the short settings its ``QUICK`` switch selects) and saves its figures."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("*.py"))


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_and_saves_every_figure(path, monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    monkeypatch.setenv("DIC_SBI_TUTORIAL_QUICK", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)  # as `python tutorials/NN_....py` run from a working folder
    plt.close("all")
    try:
        runpy.run_path(str(path), run_name="__main__")
        # every figure the tutorial drew is in ./tutorial_figures as a PNG, named after the tutorial
        saved = sorted((tmp_path / "tutorial_figures").glob("*.png"))
        assert saved and len(saved) == len(plt.get_fignums())
        assert all(p.name.startswith(path.stem[:3]) and p.stat().st_size > 5000 for p in saved)
    finally:
        plt.close("all")


def test_there_are_tutorials():
    assert TUTORIALS, "tutorials/ holds no tutorial"
