"""pyiip warm's level list, parsed alone."""

from __future__ import annotations

import pytest

from pyiip.tools.warm import WarmError, parse_levels


def test_parse_levels():
    assert parse_levels("0-2,5, 4", 6) == [0, 1, 2, 4, 5]
    assert parse_levels("3", 4) == [3]
    for bad in ("", "x", "0-9", "4", "2-1", "-1"):
        with pytest.raises(WarmError):
            parse_levels(bad, 4)
