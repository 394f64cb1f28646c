"""Shared fixtures: one image root with pyramids of every supported layout, an application built
from settings, and each test's tier (unit, integration, system) marked from its folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pyiip import config
from pyiip.http import Request, Response
from pyiip.respond.app import Application
from tests.support.imaging import rgb_pattern, write_tifffile_pyramid, write_vips_pyramid

TIERS = ("unit", "integration", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier from the folder it is in (tests/<tier>/...), so that
    `pytest -m unit` selects the fast tests without anyone having to remember a decorator."""
    top = Path(__file__).parent
    for item in items:
        tier = item.path.relative_to(top).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


FITS_HEADER = "".join(
    card.ljust(80)
    for card in (
        "SIMPLE  =                    T",
        "NAXIS   =                    2",
        "NAXIS1  =                  700",
        "NAXIS2  =                  500",
        "CTYPE1  = 'RA---TAN'",
        "CTYPE2  = 'DEC--TAN'",
        "CRPIX1  =                350.5",
        "CRPIX2  =                250.5",
        "CRVAL1  =                150.1",
        "CRVAL2  =                  2.2",
        "CD1_1   =          -0.00005556",
        "CD1_2   =                  0.0",
        "CD2_1   =                  0.0",
        "CD2_2   =           0.00005556",
        "CHAN0001= 'g'",
        "CHAN0002= 'r'",
        "CHAN0003= 'i'",
    )
)


@dataclass
class ImageRoot:
    """The served directory and the pixel arrays its files were made from."""

    root: Path
    outside: Path
    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> ImageRoot:
    base = tmp_path_factory.mktemp("images")
    root, outside = base / "root", base / "outside"
    (root / "nested" / "deeper").mkdir(parents=True)
    outside.mkdir()
    rgb = rgb_pattern(1100, 900)
    found = ImageRoot(root, outside)
    write_vips_pyramid(root / "rgb.tif", rgb, compression="jpeg", quality=85)
    write_vips_pyramid(root / "rgb_subifd.tif", rgb, compression="deflate", subifd=True)
    found.arrays["rgb"] = [rgb]
    found.arrays["rgb_deflate"] = write_tifffile_pyramid(root / "rgb_deflate.tif", rgb, compression="zlib")
    grey16 = (np.linspace(0, 65535, 600 * 520).reshape(520, 600)).astype(np.uint16)[:, :, None]
    found.arrays["grey16"] = write_tifffile_pyramid(root / "grey16.tif", grey16, compression="zlib")
    rng = np.random.default_rng(7)
    cube = rng.normal(100, 5, (500, 700, 3)).astype(np.float32)
    cube[100:110, 200:210] = 5000.0
    cube[0, 0, :] = np.nan
    found.arrays["float"] = write_tifffile_pyramid(
        root / "float.tif",
        cube,
        smin=[90.0, 91.0, 92.0],
        smax=[130.0, 131.5, 0.1],
        description=FITS_HEADER,
    )
    found.arrays["float_notags"] = write_tifffile_pyramid(
        root / "nested" / "deeper" / "float_notags.tif", cube[:, :, :1]
    )
    (outside / "secret.tif").write_bytes((root / "rgb.tif").read_bytes())
    (outside / "passwd").write_text("root:x:0:0\n")
    os.symlink(outside / "secret.tif", root / "link_out.tif")
    os.symlink(outside, root / "dir_out")
    os.symlink(root / "rgb.tif", root / "link_in.tif")
    (root / "not_an_image.tif").write_bytes(b"II*\x00garbage" * 10)
    return found


@pytest.fixture(scope="session")
def settings(images: ImageRoot) -> config.Settings:
    return config.load({"FILESYSTEM_PREFIX": str(images.root) + "/", "VERBOSITY": "0"})


@pytest.fixture(scope="session")
def app(settings: config.Settings) -> Application:
    return Application(settings)


MakeApp = Callable[..., Application]


@pytest.fixture(scope="session")
def make_app(request: pytest.FixtureRequest) -> MakeApp:
    """The one way the tests build an application: settings as the environment would give them,
    over `root` (the shared image root when none is given), quiet unless VERBOSITY says otherwise.
    Session-scoped so fixtures of any scope can build their own application."""

    def build(root: Path | str | None = None, **env: str) -> Application:
        if root is None:
            root = request.getfixturevalue("images").root
        return Application(config.load({"FILESYSTEM_PREFIX": f"{root}/", "VERBOSITY": "0", **env}))

    return build


@pytest.fixture
def iip(app: Application):
    """Answer an IIP query in-process, the way the web server would ask."""

    def ask(query: str, method: str = "GET", headers: dict[str, str] | None = None) -> Response:
        return app.respond(Request(method, "/fcgi-bin/iipsrv.fcgi", query, headers=headers or {}))

    return ask
