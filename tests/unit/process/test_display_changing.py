"""The display pipeline when the setting changes from one tile to the next (a viewer's sliders).

Every tile may bring a new CNT, GAM, MINMAX, CMP or INV; the float32 path (process/transfer.py)
must stay within 1 grey level of the float64 formulas for each, including where the formulas jump
or saturate (NaN, inf, MINMAX equal, GAM at the ends of its range, INV, every colour map), and a
tile's pixels must not depend on the tiles drawn before it.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pyiip.model import Display
from pyiip.process import colormaps, transfer
from pyiip.process.display import apply_display
from pyiip.process.transfer import Transfer

CMAPS = (None, *colormaps.NAMES)


def tile(channels: int = 1, seed: int = 3) -> np.ndarray:
    """A 64 x 64 float32 sky with the awkward samples: NaN, +-inf, min and max themselves, just around them."""
    rng = np.random.default_rng(seed)
    data = rng.normal(100.0, 5.0, (64, 64, channels)).astype(np.float32)
    data[::7, ::5] += rng.pareto(1.5, data[::7, ::5].shape).astype(np.float32) * 500
    special = [
        np.nan,
        np.inf,
        -np.inf,
        95.0,
        400.0,
        np.nextafter(np.float32(400), np.float32(1e9)),
        94.99999,
        -1e30,
        1e30,
    ]
    data[0, : len(special), :] = np.array(special, np.float32)[:, None]
    return data


def assert_close(data: np.ndarray, minmax: np.ndarray, display: Display) -> np.ndarray:
    fast = apply_display(data, minmax, display)
    exact = apply_display(data, minmax, display, exact=True)
    assert fast.shape == exact.shape and fast.flags.c_contiguous
    worst = np.abs(fast.astype(int) - exact.astype(int)).max(initial=0)
    assert worst <= 1, (display, worst)
    return fast


# The viewer's sliders: contrast 0-10, gamma 0.5-5 (GAM = 1/gamma, 0.2-2), and the IIP extremes.
SETTINGS = [
    Display(minmax=((0, lo, hi),), gamma=g, contrast=c, colormap=cmap, invert=inv)
    for (lo, hi), g, c, cmap, inv in itertools.product(
        [(95.0, 400.0), (90.0, 2000.0), (-50.0, 96.0), (400.0, 95.0)],
        [1.0, 0.4545, 0.2, 2.0],
        [1.0, 0.05, 10.0],
        CMAPS,
        [False, True],
    )
]


def test_every_setting_in_turn_within_one_level():
    data, minmax = tile(), np.array([[95.0, 400.0]])
    for display in SETTINGS:
        assert_close(data, minmax, display)


def test_a_tile_does_not_depend_on_the_tiles_before_it():
    data, minmax = tile(), np.array([[95.0, 400.0]])
    chosen = SETTINGS[::37]
    forward = [apply_display(data, minmax, d) for d in chosen]
    backward = [apply_display(data, minmax, d) for d in reversed(chosen)][::-1]
    for d, a, b in zip(chosen, forward, backward, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=str(d))


@pytest.mark.parametrize("colormap", CMAPS)
@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("gamma", [1.0, 0.4545, 1e-3, 1e3, 1e-4, 5e-324, 0.0])
def test_minmax_equal_and_gamma_extremes(colormap, invert, gamma):
    data = tile()
    for lo, hi in [(100.0, 100.0), (100.0, 100.0 + 1e-31), (95.0, 400.0)]:
        assert_close(data, np.array([[lo, hi]]), Display(gamma=gamma, colormap=colormap, invert=invert))


@pytest.mark.parametrize("colormap", CMAPS)
@pytest.mark.parametrize("invert", [False, True])
def test_non_finite_samples_are_background_with_every_colormap(colormap, invert):
    data = np.array([[np.nan, np.inf, -np.inf, 95.0]], np.float32).reshape(1, 4, 1)
    for gamma, contrast in [(1.0, 1.0), (0.3, 7.5), (2.0, 0.05)]:
        d = Display(gamma=gamma, contrast=contrast, colormap=colormap, invert=invert)
        out = assert_close(data, np.array([[95.0, 400.0]]), d)
        assert (out[0, :3] == out[0, 3]).all()  # NaN and inf look like min (astro: background)


def test_nan_from_a_ctw_mix_is_black_in_every_channel():
    # inf - inf inside a CTW mix: the 1e30 rule sends the two channels to +inf and -inf, in float64 too.
    data = np.array([[[1e300, 1e300, 0.5]]], np.float64)
    minmax = np.array([[0.0, 0.0], [2e300, 2e300], [0.0, 1.0]])
    for colormap, invert in itertools.product(CMAPS, [False, True]):
        d = Display(twist=((1.0, 1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, 1.0)), colormap=colormap, invert=invert)
        out = assert_close(data, minmax, d)
        assert (out[0, 0, 0 if colormap is None else slice(None)] == 0).all()


def test_three_channel_ctw_with_changing_settings():
    data = tile(3)
    minmax = np.array([[95.0, 400.0]] * 3)
    rng = np.random.default_rng(5)
    for _ in range(40):
        saturation = rng.uniform(0, 3)
        twist = tuple(tuple(float(rng.uniform(-0.2, 1.0) * saturation) for _ in range(3)) for _ in range(3))
        d = Display(
            minmax=((int(rng.integers(0, 3)), float(rng.uniform(80, 100)), float(rng.uniform(200, 3000))),),
            gamma=float(1 / rng.uniform(0.5, 5)),
            contrast=float(rng.uniform(0.05, 10)),
            invert=bool(rng.integers(0, 2)),
            twist=twist,
        )
        assert_close(data, minmax, d)
    permutation = Display(gamma=0.4545, twist=((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)))
    assert assert_close(data, minmax, permutation).shape == (64, 64, 3)


def test_the_viewers_ranges_take_the_float32_path():
    # The exact float64 path is the slow one: no slider position may fall back to it.
    for contrast, gamma, colormap, invert in itertools.product(
        np.arange(0.05, 10.01, 0.05), [0.2, 0.5, 1.0, 2.0], CMAPS, [False, True]
    ):
        assert Transfer(gamma, invert, colormap, float(contrast)).fast, (contrast, gamma, colormap)


def largest_fast_contrast(gamma: float, colormap: str | None) -> float:
    """The largest contrast the float32 path takes at this gamma: where its error bound is tightest."""
    low, high = 1.0, 1e3
    for _ in range(60):
        middle = math.sqrt(low * high)
        low, high = (middle, high) if Transfer(gamma, True, colormap, middle).fast else (low, middle)
    return low


@pytest.mark.parametrize("colormap", CMAPS)
@pytest.mark.parametrize("gamma", [0.05, 1.0, 4.0])
def test_within_one_level_at_the_edge_of_the_float32_range(colormap, gamma):
    contrast = largest_fast_contrast(gamma, colormap)
    assert contrast > 10  # well beyond the viewer's slider
    values = np.concatenate([np.linspace(-0.1, 1.1, 40001), 1 - np.geomspace(1e-9, 1e-2, 2001)])
    data = values.astype(np.float32).reshape(1, -1, 1)
    for invert in (False, True):
        assert_close(
            data, np.array([[0.0, 1.0]]), Display(gamma=gamma, contrast=contrast, colormap=colormap, invert=invert)
        )


@pytest.mark.parametrize("colormap", colormaps.NAMES)
@pytest.mark.parametrize("contrast", [0.05, 1.0, 3.0, 10.0])
def test_colour_tables_and_drawn_tiles_agree_with_the_formulas(colormap, contrast):
    # A 256 x 256 tile takes the colour map's table while it is at most half a tile, else draws it.
    values = np.concatenate([np.linspace(-0.3, 1.3, 65536 - 6), [0.0, -1e-9, 1.0, 1 + 1e-7, np.inf, -np.inf]])
    data = values.astype(np.float32).reshape(256, 256, 1)
    k = 255.0 * contrast
    if colormap == "jet":  # both ways are taken
        assert (transfer._table_size(colormap, k) <= data.size // 2) == (contrast <= 3.0)
    for gamma, invert in [(1.0, False), (0.4545, False), (1.0, True), (2.0, True)]:
        assert_close(
            data, np.array([[0.0, 1.0]]), Display(gamma=gamma, contrast=contrast, colormap=colormap, invert=invert)
        )
    # Drawn directly, the same values and setting give the same result within a level of the table's.
    with np.errstate(all="ignore"):
        tabled = Transfer(1.0, False, colormap, contrast).colour(data[:, :, 0].copy(), mixed=False)
        drawn = np.empty_like(tabled)
        transfer._draw_colour(colormap, data[:, :, 0].copy(), k, drawn, False, colormap == "jet")
    assert np.abs(tabled.astype(int) - drawn.astype(int)).max() <= 1
