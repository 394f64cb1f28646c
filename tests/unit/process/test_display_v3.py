"""VisiOmatic v3's display formulas (pyiip.process.display_v3) against a plain per-pixel transcription of
its server's tiled.py (convert_tile), in float64: within one grey level (the module works in float32,
as the v3 server does). The v3 server's own code is compared in tests/system/test_visiomatic_v3.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pyiip.model import VisiomaticDisplay
from pyiip.process import display_v3
from pyiip.process.opencv_colormaps import TABLES


def reference_level(v: float, display: VisiomaticDisplay) -> int:
    v = min(1.0, max(0.0, v))
    level = int(255.49 * v ** (1.0 / display.gamma))
    return 255 - level if display.invert else level


def scaled(sample: float, low: float, high: float, display: VisiomaticDisplay, mono: bool) -> float:
    """(sample - min) * contrast / (max - min) + 0.01 * contrast * brightness; sample - min is 0 when NaN,
    the largest float32 when infinite (numpy's nan_to_num, as the v3 server)."""
    shifted = sample - low
    if math.isnan(shifted):
        shifted = 0.0
    elif math.isinf(shifted):
        shifted = math.copysign(float(np.finfo(np.float32).max), shifted)
    diff = high - low
    if diff > 0:
        factor = display.contrast / diff
    else:
        factor = display_v3.MAXFAC if mono else display.contrast / display_v3.MAXFAC
    return shifted * factor + 0.01 * display.contrast * display.brightness


def reference(data: np.ndarray, cuts: np.ndarray, display: VisiomaticDisplay) -> np.ndarray:
    h, w, n = data.shape
    lohi = [tuple(cuts[c]) for c in range(n)]
    for c, lo, hi in display.minmax:
        lohi[c] = (lo, hi)
    if display.channel is not None:
        c = display.channel
        out = np.array(
            [
                [reference_level(scaled(float(data[y, x, c]), *lohi[c], display, True), display) for x in range(w)]
                for y in range(h)
            ]
        )
        table = TABLES.get(display.colormap)
        return out[:, :, None] if table is None else table[out]
    mix = np.array(display.mix, dtype=np.float64)
    out = np.zeros((h, w, 3), np.int64)
    for y in range(h):
        for x in range(w):
            v = [scaled(float(data[y, x, c]), *lohi[c], display, False) for c in range(n)]
            for k in range(3):
                out[y, x, k] = reference_level(float(np.dot(mix[k], v)), display)
    return out


@pytest.fixture(scope="module")
def cube() -> np.ndarray:
    rng = np.random.default_rng(21)
    data = rng.normal(100.0, 20.0, (24, 20, 3)).astype(np.float32)
    data[0, 0, :] = np.nan
    data[1, 1, 0] = np.inf
    data[1, 2, 1] = -np.inf
    data[2, :, 2] = 5000.0
    return data


CUTS = np.array([[80.0, 160.0], [70.0, 130.0], [90.0, 90.0]])  # channel 3 degenerate


@pytest.mark.parametrize(
    "display",
    [
        VisiomaticDisplay(channel=0),
        VisiomaticDisplay(channel=1, minmax=((1, 60.0, 200.0),), brightness=-20, contrast=3.5, gamma=1.0),
        VisiomaticDisplay(channel=0, gamma=0.2, invert=True),
        VisiomaticDisplay(channel=0, gamma=5.0, brightness=15),
        VisiomaticDisplay(channel=2),  # max <= min: factor 1e30
        VisiomaticDisplay(channel=0, colormap="jet"),
        VisiomaticDisplay(channel=1, colormap="cool", invert=True),
        VisiomaticDisplay(channel=0, colormap="hot", contrast=0.0),
        VisiomaticDisplay(mix=display_v3.mix_matrix(3, ()), contrast=0.4),
        VisiomaticDisplay(mix=display_v3.mix_matrix(3, ((1, 0, 0, 1), (2, 0, 1, 0), (3, 1, 0, 0))), gamma=2.2),
        VisiomaticDisplay(
            mix=display_v3.mix_matrix(3, ((1, 0.2, 0.5, 1.5), (3, 1.2, 0.1, -0.3))),
            invert=True,
            minmax=((0, 50.0, 300.0), (2, 0.0, 6000.0)),
            brightness=30,
        ),
    ],
)
def test_within_one_level_of_the_formula(cube: np.ndarray, display: VisiomaticDisplay) -> None:
    out = display_v3.apply(cube, CUTS, display)
    expected = reference(cube, CUTS, display)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    assert out.shape == expected.shape
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_brightness_offsets_after_contrast_and_before_gamma() -> None:
    """A sample at min shows the offset alone: 0.01 * CNT * BRT, raised to 1/GAM."""
    data = np.full((1, 1, 1), 10.0, np.float32)
    out = display_v3.apply(
        data, np.array([[10.0, 20.0]]), VisiomaticDisplay(channel=0, brightness=20, contrast=2, gamma=2)
    )
    assert out[0, 0, 0] == int(255.49 * 0.4**0.5)


def test_mix_matrix_interpolates_over_channels() -> None:
    red, green, blue = display_v3.mix_matrix(5, ((1, 1.0, 0.0, 0.0), (5, 0.0, 0.0, 1.0)))
    assert red == pytest.approx([0.6, 0.45, 0.3, 0.15, 0.0])
    assert blue == pytest.approx([0.0, 0.15, 0.3, 0.45, 0.6])
    assert green == (0.0,) * 5
    assert display_v3.mix_matrix(2, ()) == ((1.0, 1.0),) * 3


def test_colormap_tables() -> None:
    for table in TABLES.values():
        assert table.shape == (256, 3) and table.dtype == np.uint8
    assert TABLES["cool"][0].tolist() == [0, 255, 255] and TABLES["cool"][255].tolist() == [255, 0, 255]
    assert TABLES["hot"][0].tolist()[1:] == [0, 0] and TABLES["hot"][255].tolist() == [255, 255, 255]
    jet = TABLES["jet"].astype(int)
    assert jet[0, 2] >= 128 and jet[0, :2].tolist() == [0, 0]  # dark blue
    assert jet[255, 0] >= 128 and jet[255, 1:].tolist() == [0, 0]  # dark red
    assert TABLES["cold"] is TABLES["cool"]
