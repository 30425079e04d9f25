"""Driving the app as a person does: the ``dic-sbi app`` command in its own process, a headless Chromium
(Debian's ``chromium`` and ``chromium-driver``, through Selenium) clicking in the page. Used by the end-to-end
test, the timing benchmark and the README's screenshots.

Panel draws each widget inside a shadow DOM, which CSS selectors do not cross: :func:`find_all` searches every
shadow root.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["AppProcess", "chromium_paths", "chromium", "find_all", "text_of", "wait_for", "wait_for_image", "click", "type_into", "free_port"]

_DEEP_QUERY = """
const [selector, text] = arguments;
const out = [];
const walk = (root) => {
  root.querySelectorAll(selector).forEach((e) => out.push(e));
  root.querySelectorAll('*').forEach((e) => { if (e.shadowRoot) walk(e.shadowRoot); });
};
walk(document);
const textOf = (e) => ['STYLE', 'SCRIPT', 'LINK'].includes(e.tagName) ? '' : (e.innerText || e.value || '')
  + (e.shadowRoot ? Array.from(e.shadowRoot.children).map(textOf).join(' ') : '')
  + Array.from(e.children || []).filter((c) => c.shadowRoot).map(textOf).join(' ');
if (text === '') return out.map(textOf);
return text === null ? out : out.filter((e) => textOf(e).includes(text));
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """``dic-sbi app --no-browser`` in a new process group; :attr:`served_after` is how long the page took to
    answer (s, from the process start)."""

    def __init__(self, port: int | None = None, *, timeout: float = 60.0, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "dic_sbi.cli", "app", "--no-browser", "--port", str(self.port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})  # fmt: skip
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dic-sbi app exited with {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200 and b"bokeh" in r.read().lower():
                        break
            except OSError:
                pass
            if time.perf_counter() - t0 > timeout:
                self.stop()
                raise TimeoutError(f"dic-sbi app did not serve {self.url} within {timeout} s")
            time.sleep(0.1)
        self.served_after = time.perf_counter() - t0

    def stop(self) -> str:
        """End the server (its whole process group) and return what it printed."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)
        return self.proc.stdout.read() if self.proc.stdout else ""

    def __enter__(self) -> "AppProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def chromium_paths() -> tuple[str, str] | None:
    """``(browser, driver)`` of the system's Chromium, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def chromium(downloads: str | os.PathLike | None = None, *, width: int = 1280, height: int = 1000) -> Any:
    """A headless Chromium driven by Selenium (the system's driver: Selenium fetches nothing); files it
    downloads go to ``downloads``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(arg)
    if downloads is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})  # fmt: skip
    driver = webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)
    if downloads is not None:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


def find_all(driver: Any, selector: str, text: str | None = None) -> list[Any]:
    """Elements matching ``selector`` anywhere in the page, shadow roots included (containing ``text``)."""
    return driver.execute_script(_DEEP_QUERY, selector, text)


def text_of(driver: Any, selector: str) -> str:
    """The text shown by the elements matching ``selector``, their shadow roots included."""
    return " ".join(driver.execute_script(_DEEP_QUERY, selector, ""))


def wait_for(driver: Any, selector: str, text: str | None = None, *, timeout: float = 30.0,
             visible: bool = True) -> Any:  # fmt: skip
    """The first element matching, once there (and displayed); TimeoutError after ``timeout`` s."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        found = [e for e in find_all(driver, selector, text) if not visible or e.is_displayed()]
        if found:
            return found[0]
        time.sleep(0.1)
    raise TimeoutError(f"no {selector!r}{f' with {text!r}' if text else ''} in the page after {timeout} s")


def wait_for_image(driver: Any, selector: str, *, timeout: float = 30.0) -> int:
    """Wait until the picture pane matching ``selector`` shows a loaded image; its width in pixels."""
    t0 = time.perf_counter()
    script = ("const r = arguments[0].shadowRoot || arguments[0]; const i = r.querySelector('img');"
              "return i && i.complete ? i.naturalWidth : 0;")  # fmt: skip
    while time.perf_counter() - t0 < timeout:
        for host in find_all(driver, selector):
            width = driver.execute_script(script, host)
            if width:
                return int(width)
        time.sleep(0.1)
    raise TimeoutError(f"no image in {selector!r} after {timeout} s")


def click(driver: Any, text: str, *, timeout: float = 30.0) -> None:
    """Click the enabled button whose label contains ``text``."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        buttons = [b for b in find_all(driver, "button", text) if b.is_displayed() and b.is_enabled()]
        if buttons:
            buttons[0].click()
            return
        time.sleep(0.1)
    raise TimeoutError(f"no enabled button {text!r} after {timeout} s")


def type_into(driver: Any, label: str, value: str, *, timeout: float = 30.0) -> None:
    """Replace the text of the input labelled ``label`` and press Enter (Panel then sends the value)."""
    from selenium.webdriver.common.keys import Keys

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        for widget in find_all(driver, ".bk-input-group", label):
            inputs = driver.execute_script(
                "return arguments[0].querySelectorAll('input:not([type=file]), textarea')", widget)
            if inputs:
                box = inputs[0]
                box.clear()
                box.send_keys(value, Keys.ENTER)
                return
        time.sleep(0.1)
    raise LookupError(f"no input labelled {label!r} in the page after {timeout} s")


def save_screenshot(driver: Any, path: str | os.PathLike, *, height: int | None = None) -> Path:
    """A PNG of the page (resized to ``height`` px of page first, so long pages fit)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if height is not None:
        size = driver.get_window_size()
        driver.set_window_size(size["width"], height)
    driver.save_screenshot(str(path))
    return path
