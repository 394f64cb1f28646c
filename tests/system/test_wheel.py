"""The packages carry the viewer's Leaflet: an sdist and a wheel built from sources without it, the build's
refusal without npm, and the wheel installed in a fresh venv serving a viewer that Chromium shows with tiles.

The sources are copied without src/pyiip/static/vendor/, so setup.py's hook must run `npm ci` (npm's
cache, or the npm registry) for Leaflet to be there; `python -m build` makes the sdist, then the wheel from
the unpacked sdist, as a user's `make wheel` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from pyiip.respond.index import MISSING_LEAFLET
from tests.support.browser import chromium, missing, wait_for
from tests.support.servers import free_port, get, running

REPO = Path(__file__).resolve().parents[2]
SOURCES = [
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "LICENSE",
    "src",
    "scripts/build-viewer.sh",
    "scripts/mypyc_build.py",
    "viewer/package.json",
    "viewer/package-lock.json",
]
LEAFLET = "pyiip/static/vendor/leaflet/"
# Not this tree's code: a process started from the built venv must import the installed package.
CLEAN = {"PYTHONPATH": ""}


def copy_sources(destination: Path) -> Path:
    """The files a release is built from, without the built Leaflet or any build debris."""
    ignore = shutil.ignore_patterns("vendor", "__pycache__", "*.egg-info", "*.pyc")
    for name in SOURCES:
        source, target = REPO / name, destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    assert not (destination / "src" / LEAFLET).exists()
    return destination


def build(source: Path, out: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **CLEAN}
    if path is not None:
        env["PATH"] = path
    command = [sys.executable, "-m", "build", "--outdir", str(out), *args, str(source)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = copy_sources(tmp_path_factory.mktemp("sources"))
    out = tmp_path_factory.mktemp("dist")
    result = build(source, out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def test_the_sdist_carries_the_hook_and_the_wheel_carries_leaflet(dist: Path) -> None:
    (sdist,) = dist.glob("pyiip-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"setup.py", "scripts/build-viewer.sh", "scripts/mypyc_build.py", "viewer/package.json"} <= names
    assert not any("node_modules" in name for name in names)
    (wheel,) = dist.glob("pyiip-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        script = archive.read(LEAFLET + "leaflet.js")
    for name in ("leaflet.js", "leaflet.css", "LICENSE.txt", "images/layers.png", "images/marker-icon.png"):
        assert LEAFLET + name in names, name
    assert b"Leaflet 1.9.4" in script[:300]  # the version viewer/package-lock.json pins
    assert {"pyiip/static/viewer.js", "pyiip/static/iip.js", "pyiip/static/wcs.js"} <= names
    # A C compiler is here: the request path is compiled (mypyc), next to its Python source.
    assert f"-cp{sys.version_info.major}{sys.version_info.minor}-" in wheel.name  # a platform wheel
    compiled = {name for name in names if name.endswith(".so")}
    assert any(name.startswith("pyiip/server/fastcgi.") for name in compiled), compiled
    assert "pyiip/server/fastcgi.py" in names


def test_without_npm_the_build_stops_and_says_why(tmp_path: Path) -> None:
    source = copy_sources(tmp_path / "sources")
    # No npm on PATH: only this interpreter's directory (python, pip), as on a machine without Node.js.
    result = build(source, tmp_path / "out", "--wheel", path=str(Path(sys.executable).parent))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "the viewer's Leaflet (src/pyiip/static/vendor/leaflet/) is not built and npm is not installed" in output
    assert not list((tmp_path / "out").glob("*.whl"))


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; its dependencies are the test venv's own packages.

    pip resolves the wheel's requirements against them (`pip check`), so a missing or wrong
    dependency fails here; downloading numpy, astropy, pyvips and imagecodecs again would add
    about a minute and test the registry, not pyiip. The test venv's site-packages comes after the
    fresh venv's own, by a path line in a .pth file, which does not run that directory's own .pth
    files: the test venv's editable pyiip stays invisible.
    """
    (wheel,) = dist.glob("pyiip-*.whl")
    target = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120)
    python = target / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True
        ).strip()
    )
    (site / "test-venv-packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    env = {**os.environ, **CLEAN}
    subprocess.run([*pip, "install", "-q", "--no-deps", str(wheel)], check=True, env=env, timeout=300)
    check = subprocess.run([*pip, "check"], env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    return target


def test_the_installed_wheel_serves_the_viewer_with_leaflet(venv: Path, images) -> None:
    reason = missing()
    if reason:
        pytest.fail(reason)
    python = venv / "bin" / "python"
    env = {**os.environ, **CLEAN}
    installed = subprocess.check_output([python, "-c", "import pyiip; print(pyiip.__file__)"], env=env, text=True)
    package = Path(installed.strip()).parent
    assert package.is_relative_to(venv), package  # the wheel's copy, not this tree's
    port = free_port()
    command = [str(venv / "bin" / "pyiip"), "serve", "--port", str(port), "--workers", "1", "--root", str(images.root)]
    base = f"http://127.0.0.1:{port}"
    with running(command, port, {**CLEAN, "VERBOSITY": "0"}, cwd=venv), chromium(800, 600) as driver:
        driver.get(f"{base}/viewer.html?image=rgb.tif")
        assert driver.execute_script("return typeof window.L === 'object' && typeof L.map === 'function'")
        wait_for(lambda: driver.execute_script("return !!(window.pyiipViewer && pyiipViewer.settled())"), 60, "tiles")
        urls = driver.execute_script("return pyiipViewer.tileUrls()")
        assert urls and driver.execute_script("return pyiipViewer.errors") == 0
        assert get(urls[0])[0] == 200
        assert MISSING_LEAFLET.encode() not in get(f"{base}/")[2]
        # Leaflet gone from the installed package: the page tells what to do, instead of an empty map.
        (package / "static" / "vendor" / "leaflet" / "leaflet.js").unlink()
        page = get(f"{base}/")[2]
        assert MISSING_LEAFLET.encode() in page and b"make install" in page and b"make wheel" in page
