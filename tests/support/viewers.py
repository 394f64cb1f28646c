"""Third-party IIIF viewers (OpenSeadragon, Leaflet-IIIF) in a page of their own, for the browser tests.

Their code comes from npm (tests/support/viewers/package-lock.json), installed
on first use with ``npm ci``; the page is a local file that loads them and
points them at a pyiip server's info.json (CORS=* lets a file:// page read it).
Each viewer reports every tile it loaded or failed, and the page lists the
HTTP status of every request it made (Resource Timing's responseStatus, which
a cross-origin image shows only when fetched in CORS mode: both viewers are
told to).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).with_name("viewers")
MODULES = PACKAGE / "node_modules"
SCRIPTS = {
    "openseadragon": [MODULES / "openseadragon/build/openseadragon/openseadragon.min.js"],
    "leaflet-iiif": [MODULES / "leaflet/dist/leaflet.js", MODULES / "leaflet-iiif/leaflet-iiif.js"],
}
STYLES = {"leaflet-iiif": [MODULES / "leaflet/dist/leaflet.css"]}

_OPENSEADRAGON = """
const viewer = OpenSeadragon({id: "view", tileSources: INFO, prefixUrl: "", showNavigationControl: false,
                              immediateRender: true, animationTime: 0, crossOriginPolicy: "Anonymous"});
viewer.addHandler("tile-loaded", (e) => report.loaded.push(e.tile.getUrl()));
viewer.addHandler("tile-load-failed", (e) => report.failed.push(e.tile.getUrl()));
window.zoomTo = (zoom) => viewer.viewport.zoomTo(viewer.viewport.imageToViewportZoom(zoom), null, true);
"""
_LEAFLET_IIIF = """
const map = L.map("view", {center: [0, 0], crs: L.CRS.Simple, zoom: 0, zoomAnimation: false, fadeAnimation: false});
const layer = L.tileLayer.iiif(INFO, {fitBounds: true, setMaxBounds: true, crossOrigin: "anonymous"}).addTo(map);
layer.on("tileload", (e) => report.loaded.push(e.tile.src));
layer.on("tileerror", (e) => report.failed.push(e.tile.src));
window.zoomTo = (zoom) => map.setZoom(map.getMaxZoom() + Math.log2(zoom), {animate: false});
"""


def install() -> str | None:
    """Install the viewers when missing; why they cannot be, or None."""
    if all(path.exists() for paths in SCRIPTS.values() for path in paths):
        return None
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed: run `make test` (scripts/system-packages.sh test)"
    command = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    done = subprocess.run(command, cwd=PACKAGE, capture_output=True, text=True, timeout=300, check=False)
    return None if done.returncode == 0 else f"npm ci in {PACKAGE} failed: {done.stderr[-2000:]}"


def page(directory: Path, viewer: str, info_url: str) -> Path:
    """An HTML file showing ``info_url`` in ``viewer``; ``window.report`` collects its tiles."""
    scripts = "".join(f'<script src="{path.as_uri()}"></script>' for path in SCRIPTS[viewer])
    styles = "".join(f'<link rel="stylesheet" href="{path.as_uri()}">' for path in STYLES.get(viewer, []))
    code = (_OPENSEADRAGON if viewer == "openseadragon" else _LEAFLET_IIIF).replace("INFO", json.dumps(info_url))
    html = (
        f"<!doctype html><html><head>{styles}{scripts}</head>"
        '<body style="margin:0"><div id="view" style="width:800px;height:600px"></div>'
        "<script>window.report = {loaded: [], failed: []};"
        "window.statuses = () => performance.getEntriesByType('resource')"
        ".filter((e) => e.name.startsWith('http')).map((e) => [e.name, e.responseStatus]);"
        f"{code}</script></body></html>"
    )
    path = directory / f"{viewer}.html"
    path.write_text(html)
    return path
