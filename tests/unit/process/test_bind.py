"""process.bind: a request bound to a pyramid (tile grids, regions, sizes, limits, the level it reads)."""

from __future__ import annotations

import numpy as np
import pytest

from pyiip import config
from pyiip.errors import BadRequest, NotFound, NotImplementedFeature
from pyiip.model import ImageRequest, Region
from pyiip.parse.iiif import RegionSpec, SizeSpec
from pyiip.process.bind import (
    Bound,
    Limits,
    Plan,
    bind,
    fitted_region,
    grid_region,
    output_size,
    plan,
    region_rect,
    resolution_level,
    scale_factors,
    tile_region,
    tile_request_region,
)
from pyiip.read.source import ImageInfo, LevelInfo

NONE = Limits(None, None, None)


def pyramid(width: int, height: int, tile: int = 256, levels: int = 4) -> ImageInfo:
    """A pyramid as TIFFs store it: each level floor(W / 2^k), down to ``levels`` levels."""
    sizes = [(max(1, width >> k), max(1, height >> k)) for k in range(levels)]
    return ImageInfo(tuple(LevelInfo(w, h, tile, tile) for w, h in sizes), 3, np.dtype(np.uint8), 8, "rgb")


INFO = pyramid(1100, 900)  # levels 1100x900, 550x450, 275x225, 137x112


def test_plan_reads_the_coarsest_level_that_still_holds_the_output():
    assert plan(INFO, Region(0, 0, 1100, 900), (275, 225)) == Plan(2, 0, 0, 275, 225)
    assert plan(INFO, Region(0, 0, 1100, 900), (276, 226)) == Plan(1, 0, 0, 550, 450)
    assert plan(INFO, Region(0, 0, 1100, 900), (100, 80)) == Plan(3, 0, 0, 137, 112)
    assert plan(INFO, Region(0, 0, 1100, 900), (2000, 1600)) == Plan(0, 0, 0, 1100, 900)  # upscaled from full size


def test_plan_starts_from_the_region_level_of_a_tile_request():
    assert plan(INFO, Region(256, 0, 256, 194, 1), (256, 194)) == Plan(1, 256, 0, 256, 194)
    assert plan(INFO, Region(256, 0, 256, 194, 1), (128, 97)) == Plan(2, 128, 0, 128, 97)


def test_plan_covers_a_region_off_the_level_grid_with_the_pixels_around_it():
    chosen = plan(INFO, Region(101, 51, 301, 203), (70, 47))
    assert chosen.level == 2
    x, y = 101 / 4, 51 / 4
    assert chosen.x <= x and chosen.y <= y
    assert chosen.x + chosen.w >= x + 301 / 4 and chosen.y + chosen.h >= y + 203 / 4


@pytest.mark.parametrize(
    ("region", "message"),
    [
        (Region(0, 0, 10, 10, 4), "resolution out of range"),
        (Region(0, 0, 0, 10), "empty region"),
        (Region(-1, 0, 10, 10), "empty region"),
        (Region(1000, 0, 101, 10), "region outside the image"),
    ],
)
def test_plan_refuses_what_the_pyramid_does_not_hold(region, message):
    with pytest.raises(BadRequest, match=message):
        plan(INFO, region, (10, 10))


def test_bind_carries_the_request_and_the_level_it_reads():
    request = ImageRequest(Region(0, 0, 1100, 900), (275, 225), format="png")
    bound = bind(INFO, request)
    assert bound == Bound(request, Plan(2, 0, 0, 275, 225))
    assert bound.request is request


def test_renderer_executes_the_bound_plan_without_choosing_again(app):
    """A Bound whose plan reads the top-left quarter draws that quarter, whatever the request's region says."""
    image = app.service.image("rgb.tif")
    quarter = ImageRequest(Region(0, 0, 550, 450), (275, 225), format="png")
    whole = ImageRequest(Region(0, 0, 1100, 900), (275, 225), format="png")
    drawn = app.service.renderer.draw(image, Bound(whole, bind(image.info, quarter).plan))
    assert drawn.body == app.service.renderer.draw(image, bind(image.info, quarter)).body
    assert drawn.body != app.service.renderer.draw(image, bind(image.info, whole)).body


def test_iip_resolution_numbers_count_from_the_smallest_level():
    assert [resolution_level(INFO, res) for res in range(4)] == [3, 2, 1, 0]
    with pytest.raises(BadRequest, match="resolution 4 out of range 0-3"):
        resolution_level(INFO, 4)


def test_iip_tile_index_runs_row_by_row_and_is_cropped_at_the_edges():
    assert tile_region(INFO, 3, 0) == Region(0, 0, 256, 256, 0)
    assert tile_region(INFO, 3, 4) == Region(1024, 0, 76, 256, 0)  # 5 tiles across: the last is 76 wide
    assert tile_region(INFO, 3, 19) == Region(1024, 768, 76, 132, 0)
    assert tile_region(INFO, 2, 4) == Region(256, 256, 256, 194, 1)  # 3 tiles across at 550 wide
    with pytest.raises(NotFound):
        tile_region(INFO, 3, 20)


def test_cvt_fits_wid_hei_within_the_region_then_caps_by_max_cvt_and_upscaling():
    settings = config.load({})
    assert fitted_region(INFO, None, 0, 0, settings) == (Region(0, 0, 1100, 900), (1100, 900))
    assert fitted_region(INFO, None, 550, 0, settings) == (Region(0, 0, 1100, 900), (550, 450))
    assert fitted_region(INFO, (0.5, 0.5, 0.5, 0.5), 100, 100, settings) == (Region(550, 450, 550, 450), (100, 82))
    assert fitted_region(INFO, None, 3300, 0, settings)[1] == (3300, 2700)
    no_up = config.load({"ALLOW_UPSCALING": "0"})
    assert fitted_region(INFO, None, 3300, 0, no_up)[1] == (1100, 900)
    capped = config.load({"MAX_CVT": "500"})
    assert fitted_region(INFO, None, 0, 0, capped)[1] == (500, 409)


def test_iiif_region_in_pixels_is_cropped_at_the_image_edges():
    assert region_rect(RegionSpec("full"), 1100, 900) == (0, 0, 1100, 900)
    assert region_rect(RegionSpec("square"), 1100, 900) == (100, 0, 900, 900)
    assert region_rect(RegionSpec("px", (1000, 800, 500, 500)), 1100, 900) == (1000, 800, 100, 100)
    assert region_rect(RegionSpec("pct", (50, 50, 50, 50)), 1100, 900) == (550, 450, 550, 450)
    with pytest.raises(BadRequest):
        region_rect(RegionSpec("px", (1100, 0, 10, 10)), 1100, 900)


def test_iiif_output_size_under_the_limits_and_upscaling_rules():
    assert output_size(SizeSpec("max"), 1100, 900, Limits(550, 550, None), 3, True) == (550, 450)
    assert output_size(SizeSpec("w", width=550), 1100, 900, NONE, 3, True) == (550, 450)
    with pytest.raises(BadRequest, match="exceeds the server limits"):
        output_size(SizeSpec("wh", width=600, height=600), 1100, 900, Limits(500, 500, None), 3, True)
    with pytest.raises(NotImplementedFeature):
        output_size(SizeSpec("w", width=2200, upscale=True), 1100, 900, NONE, 3, allow_upscaling=False)


def test_limits_follow_max_cvt_and_the_memory_budget():
    assert Limits.from_settings(config.load({"MAX_CVT": "800"}), 10**7) == Limits(800, 800, 640000)
    assert Limits.from_settings(config.load({"MAX_CVT": "800"}), 500000) == Limits(800, 800, 500000)
    assert Limits.from_settings(config.load({"MAX_CVT": "-1"}), 1234) == Limits(None, None, 1234)


def test_tile_grids_map_onto_the_stored_levels_they_coincide_with():
    assert scale_factors(INFO) == [1, 2, 4, 8]
    # DeepZoom's ideal level of scale 4 is 275x225, which the pyramid stores: its tiles are read there.
    assert tile_request_region(INFO, 4, 256, 1, 0) == (Region(256, 0, 19, 225, 2), (19, 225))
    # At scale 8 the ideal (ceil) level is 138x113, one more than the stored 137x112: full-size coordinates.
    assert tile_request_region(INFO, 8, 256, 0, 0) == (Region(0, 0, 1100, 900, 0), (138, 113))
    assert tile_request_region(INFO, 8, 256, 1, 0) is None
    assert grid_region(INFO, 512, 0, 512, 512, 256, 256) == Region(256, 0, 256, 256, 1)
    assert grid_region(INFO, 511, 0, 512, 512, 256, 256) == Region(511, 0, 512, 512, 0)


def test_level_scales_are_kept_per_info_and_never_taken_from_another() -> None:
    """The scales are kept by id(): an info made after another was freed may reuse its id, and must
    get its own scales (a 1100 px pyramid's scale 2 level is no scale 2 level of a 4400 px one)."""
    for _ in range(50):
        small, large = pyramid(1100, 900), pyramid(4400, 3600, levels=3)
        assert grid_region(small, 0, 0, 512, 512, 256, 256) == Region(0, 0, 256, 256, 1)
        assert grid_region(large, 0, 0, 1024, 1024, 256, 256) == Region(0, 0, 256, 256, 2)
        assert scale_factors(small) == [1, 2, 4, 8] and scale_factors(large) == [1, 2, 4]
        del small, large
