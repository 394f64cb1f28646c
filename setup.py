"""The build hook that puts the viewer's Leaflet into every wheel and install (metadata: pyproject.toml).

Leaflet is not kept in git: ``scripts/build-viewer.sh`` installs it with
``npm ci`` from ``viewer/package-lock.json`` and copies it into
``src/pyiip/static/vendor/leaflet/``. ``make install`` runs it first; ``pip
install .``, ``pip wheel .`` and ``python -m build`` come here, and build_py
runs it when the files are missing. Without npm the build fails and says
what to do: a wheel without Leaflet would install a viewer that shows nothing.
An sdist made from a tree with Leaflet built carries the files (package data)
and builds without npm.

It also compiles the hot request-path modules with mypyc when a C compiler
is there (scripts/mypyc_build.py; plain Python otherwise, never a failed install).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "scripts"))

from mypyc_build import OptionalBuildExt, extensions  # noqa: E402

LEAFLET = HERE / "src" / "pyiip" / "static" / "vendor" / "leaflet" / "leaflet.js"
SCRIPT = HERE / "scripts" / "build-viewer.sh"
NO_NPM = (
    "pyiip: the viewer's Leaflet (src/pyiip/static/vendor/leaflet/) is not built and npm is not installed. "
    "Install npm (Debian/Ubuntu: apt-get install npm; it fetches Leaflet from the npm registry, "
    "pinned by viewer/package-lock.json) and build again, or build from a git checkout with `make wheel`."
)


def build_leaflet() -> None:
    """Run scripts/build-viewer.sh unless Leaflet is there; a clear failure when it cannot run."""
    if LEAFLET.is_file():
        return
    if shutil.which("npm") is None:
        sys.exit(NO_NPM)
    if subprocess.run(["bash", str(SCRIPT)], cwd=HERE).returncode != 0 or not LEAFLET.is_file():
        sys.exit("pyiip: scripts/build-viewer.sh failed (npm's messages above): the viewer's Leaflet is not built")


class BuildPyWithViewer(build_py):
    """build_py, with Leaflet built before the package data is listed and copied."""

    def run(self) -> None:
        build_leaflet()
        self.__dict__.pop("data_files", None)  # listed lazily; drop any list made before the files existed
        super().run()


setup(cmdclass={"build_py": BuildPyWithViewer, "build_ext": OptionalBuildExt}, ext_modules=extensions(HERE))
