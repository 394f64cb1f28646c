"""VisiOmatic v3 (PyPI ``visiomatic``, its own FastAPI server and its built client) in a virtualenv of its own.

It pins numpy < 2, which pyiip's environment does not, so it lives apart: made once by pip from the
package registry under a stable path (``PYIIP_VISIOMATIC_VENV``, else the user's cache directory), so
the suite installs it only the first time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tests.support.servers import free_port, running

VERSION = "3.0.7"
REQUIREMENTS = (f"visiomatic=={VERSION}", "numpy<2")


def venv_path() -> Path:
    configured = os.environ.get("PYIIP_VISIOMATIC_VENV")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pyiip" / f"visiomatic-{VERSION}"


def ensure_venv() -> Path:
    """The venv's directory, made (python -m venv, pip install) when it is not complete yet.

    A venv's scripts name its directory, so it is built where it lives; ``.complete`` marks a finished
    install, and a lock keeps two test runs from building it at once.
    """
    target = venv_path()
    marker = target / ".complete"
    if marker.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            shutil.rmtree(target, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
            pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*pip, *REQUIREMENTS], check=True, timeout=1800)
            marker.touch()
    return target


def python(venv: Path, script: str, *args: str) -> str:
    """Run a Python script in the venv; its standard output."""
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script, *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def client_dir(venv: Path) -> Path:
    """The built client the wheel ships (dist/visiomatic.js, its CSS and images)."""
    found = sorted(venv.glob("lib/python*/site-packages/visiomatic/client"))
    assert found, "the visiomatic wheel ships no client directory"
    return found[0]


@contextlib.contextmanager
def server(venv: Path, data_dir: Path, work: Path) -> Iterator[str]:
    """The v3 server (one uvicorn worker) over ``data_dir``, its config and cache under ``work``; its base URL."""
    port = free_port()
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}
    command = [
        str(venv / "bin" / "visiomatic"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no_browser",
        "--data_dir",
        str(data_dir),
        "--cache_dir",
        str(work / "cache"),
    ]
    with running(command, port, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        yield f"http://127.0.0.1:{port}"


def sky(width: int, height: int, channels: int) -> np.ndarray:
    """Float32 planes in FITS order (channel, y, x): noise, a slight gradient, 60 stars, a few NaNs."""
    rng = np.random.default_rng(18)
    planes = rng.normal(100.0, 4.0, (channels, height, width)).astype(np.float32)
    planes += np.linspace(0, 2, width, dtype=np.float32)[None, None, :]
    planes += 5 * np.arange(channels, dtype=np.float32)[:, None, None]
    yy, xx = np.mgrid[0:height, 0:width]
    for x0, y0, flux in zip(
        rng.uniform(0, width, 60), rng.uniform(0, height, 60), rng.uniform(50, 3000, 60), strict=True
    ):
        planes += (flux * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / 8.0)).astype(np.float32)[None]
    planes[min(1, channels - 1), 100:103, 200:204] = np.nan
    return planes


def write_cube(planes: np.ndarray, fits_path: Path, cube_path: Path, **cards: object) -> dict[str, object]:
    """``planes`` as a FITS file with a TAN WCS centred on the image (plus ``cards``), and the cube
    pyiip convert makes of it; the header cards written."""
    from astropy.io import fits

    from pyiip.tools.convert import convert

    _channels, height, width = planes.shape
    header: dict[str, object] = {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": (width + 1) / 2,
                                 "CRPIX2": (height + 1) / 2, "CRVAL1": 150.1, "CRVAL2": 2.2, "CD1_1": -5e-5,
                                 "CD1_2": 0.0, "CD2_1": 0.0, "CD2_2": 5e-5, **cards}  # fmt: skip
    fits.PrimaryHDU(planes, fits.Header(header)).writeto(fits_path)
    convert([fits_path], cube_path, compression="none", progress=False)
    return header
