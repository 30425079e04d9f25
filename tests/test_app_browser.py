"""The app end to end, as a person uses it: ``dic-sbi app`` in its own process, a real headless Chromium clicking
in the page (Debian's ``chromium`` and ``chromium-driver``, which ``.ci/run`` installs). Skipped only on a
developer's machine without them; in CI (``CI`` set) a missing browser fails the test."""

from __future__ import annotations

import os
import re
import time
import urllib.request
import zipfile

import pytest

from dic_sbi.app.testing import (AppProcess, chromium, chromium_paths, click, text_of, type_into, wait_for,
                                 wait_for_image)  # fmt: skip

if chromium_paths() is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI: chromium and chromedriver must be installed for the app's browser test (.ci/run does it)")
    pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)  # fmt: skip


def _message(driver) -> str:
    return text_of(driver, ".dic-message")


def _wait_message(driver, text: str, timeout: float = 30.0) -> str:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if text in _message(driver):
            return _message(driver)
        time.sleep(0.1)
    raise AssertionError(f"no message with {text!r} in the page; it shows {_message(driver)!r}")


def test_the_example_to_a_population_and_its_download_in_a_browser(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    bad = tmp_path / "broken.nix"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"not a recording" * 50)
    with AppProcess() as app:
        assert app.served_after < 30  # the acceptance's 10 s is measured by benchmarks/app_timing.py
        # works with no network: every script and style sheet comes from the app itself
        html = urllib.request.urlopen(app.url).read().decode()
        assert "bokeh" in html and not re.findall(r'(?:src|href)="https?://(?!127\.0\.0\.1)', html)
        driver = chromium(downloads)
        try:
            driver.get(app.url)
            # bad input first: a corrupt file, then a threshold above every spike; messages, never a traceback
            type_into(driver, "path of a recording", str(bad))
            click(driver, "Read path")
            assert "corrupt" in _wait_message(driver, "corrupt") and "Traceback" not in _message(driver)
            click(driver, "Use example")
            wait_for(driver, ".dic-spike-count", "48 spikes")
            assert wait_for_image(driver, ".dic-preview-figure") > 300
            type_into(driver, "Threshold", "80")
            _wait_message(driver, "no spikes")
            type_into(driver, "Threshold", "10")
            wait_for(driver, ".dic-spike-count", "48 spikes")
            # a run that is cancelled says so
            type_into(driver, "Population size", "4000")
            click(driver, "Run")
            wait_for(driver, ".dic-status", "simulate", timeout=60)
            click(driver, "Cancel")
            _wait_message(driver, "Cancelled", timeout=30)
            # a small population: raster on screen, then the archive
            type_into(driver, "Population size", "60")
            click(driver, "Run")
            assert wait_for_image(driver, ".dic-raster", timeout=120) > 300
            wait_for(driver, ".dic-status", "Population ready")
            click(driver, "Download population", timeout=120)
            t0 = time.perf_counter()
            while not list(downloads.glob("*.zip")) and time.perf_counter() - t0 < 30:
                time.sleep(0.2)
            (archive,) = downloads.glob("*.zip")
            with zipfile.ZipFile(archive) as zf:
                assert zf.testzip() is None
                assert "dic_sbi_population/population.csv" in zf.namelist()
                rows = zf.read("dic_sbi_population/population.csv").decode().splitlines()
            assert len(rows) == 61  # header and 60 cells
            assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        finally:
            driver.quit()
    output = app.stop()
    assert "Traceback" not in output, output
    with pytest.raises(ProcessLookupError):  # the server's whole process group has ended: no orphan
        os.killpg(app.proc.pid, 0)
