#!/usr/bin/env python3
"""Screenshots of the viewer for the README: `pyiip serve` over demo data, headless Chromium.

Usage: .venv/bin/python scripts/screenshots.py [--root DIR] [--out docs]
Without --root, a 2048-pixel demo (``pyiip demo-data``) is made in a temporary directory.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the repository, for tests.support

from tests.support.browser import chromium, missing, wait_for  # noqa: E402
from tests.support.servers import http_server  # noqa: E402

CUBE = "demo/cube.tif"
JET = "const e = document.getElementById('cmap'); e.value = 'jet'; e.dispatchEvent(new Event('change'));"


def settled(driver, contains: str = "") -> None:
    """Wait for the shown tiles (all of them containing `contains`) to be in and faded in."""

    def ready() -> bool:
        if not driver.execute_script("return !!(window.pyiipViewer && pyiipViewer.settled())"):
            return False
        return all(contains in url for url in driver.execute_script("return pyiipViewer.tileUrls()"))

    wait_for(ready, 60, "tiles")
    time.sleep(0.3)


def save(driver, path: Path) -> None:
    """A screenshot, written as a compact 256-colour PNG (the sky noise makes full colour PNGs large)."""
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)
    print(path, f"{path.stat().st_size // 1024} KB")


def point(driver, fraction_x: float, fraction_y: float) -> None:
    """Move the pointer over the map, at fractions of its size from the top-left corner."""
    from selenium.webdriver.common.action_chains import ActionChains

    element = driver.find_element("id", "map")
    size = element.size
    dx, dy = round((fraction_x - 0.5) * size["width"]), round((fraction_y - 0.5) * size["height"])
    ActionChains(driver).move_to_element_with_offset(element, dx, dy).perform()


def shoot(base: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with chromium(1280, 800) as desktop:
        desktop.get(f"{base}/viewer.html?image={CUBE}")
        settled(desktop, "JTL=")
        desktop.execute_script("pyiipViewer.map.setZoom(pyiipViewer.map.getZoom() + 0.5, {animate: false})")
        settled(desktop, "JTL=")
        point(desktop, 0.47, 0.44)
        save(desktop, out / "viewer-cube.png")

    with chromium(390, 760, mobile=True) as phone:
        phone.get(f"{base}/")
        settled(phone, "JTL=")
        phone.execute_script(JET)
        settled(phone, "CMP=jet")
        save(phone, out / "viewer-phone.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="image root holding demo/cube.tif and demo/rgb.tif")
    parser.add_argument("--out", type=Path, default=HERE.parent / "docs")
    parser.add_argument("--size", type=int, default=2048, help="demo size when --root is not given")
    args = parser.parse_args()
    reason = missing()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="pyiip-shots-") as scratch:
        root = args.root
        if root is None:
            from pyiip.tools.demo import write_demo_data

            root = Path(scratch)
            write_demo_data(root / "demo", size=args.size, progress=False)
        port, context = http_server(root, {"JPEG_QUALITY": "90"})
        with context:
            shoot(f"http://127.0.0.1:{port}", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
