"""The README's screenshots of the app, taken in headless Chromium: the example recording read, its validated
1 000-cell population, and the result tabs.

    python docs/make_screenshots.py            # writes docs/screenshots/*.png
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from PIL import Image

from dic_sbi.app.testing import AppProcess, chromium, click, find_all, wait_for, wait_for_image

OUT = Path(__file__).parent / "screenshots"


def shot(driver, selector: str, name: str, text: str | None = None, height: int = 820) -> None:
    """Scroll the element to the top of the window and save the window as a small PNG (a palette of colours)."""
    element = wait_for(driver, selector, text)
    driver.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -10);", element)
    time.sleep(0.8)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image = image.crop((0, 0, image.width, min(height, image.height)))
    image = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    image.save(OUT / f"{name}.png", optimize=True)
    print(f"{name}.png: {(OUT / f'{name}.png').stat().st_size // 1024} kB")


def tab(driver, label: str) -> None:
    (header,) = [e for e in find_all(driver, ".bk-tab", label) if e.is_displayed()][:1]
    header.click()
    time.sleep(0.5)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with AppProcess() as app:
        driver = chromium(width=1200, height=900)
        try:
            driver.get(app.url)
            click(driver, "Use example")
            wait_for_image(driver, ".dic-preview-figure")
            shot(driver, "h2", "1_recording", "1. Recording")
            click(driver, "Run")
            wait_for_image(driver, ".dic-raster", timeout=300)
            wait_for(driver, ".dic-download-status", "Archive ready", timeout=300)
            shot(driver, "h2", "2_population_raster", "2. Population", height=900)
            for label, selector, name in (("DIC posterior", ".dic-posterior", "3_dic_posterior"),
                                          ("Traces", ".dic-traces", "4_traces"),
                                          ("Conductances", ".dic-distributions", "5_conductances"),
                                          ("Fidelity", ".dic-fidelity", "6_fidelity")):  # fmt: skip
                tab(driver, label)
                wait_for(driver, selector)
                shot(driver, "h2", name, "3. Results")
            tab(driver, "Simulate again")
            click(driver, "Simulate")
            wait_for_image(driver, ".dic-resimulation-figure", timeout=120)
            shot(driver, "h2", "7_simulate_again", "3. Results", height=900)
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
