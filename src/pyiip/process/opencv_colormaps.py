"""The colour maps VisiOmatic v3 applies to 8-bit levels (OpenCV's JET, COOL and HOT), as 256-entry RGB tables.

Each map is piecewise linear in x = level / 255, each colour a ramp clipped
to 0..1 between knots: JET's trapezoids at eighths (blue from 0.5 at 0, red
down to 0.5 at 1), COOL from cyan to magenta, HOT with red, green and blue
rising over 0-0.4, 0.4-0.8 and 0.8-1; OpenCV samples HOT at 64 points and
interpolates between them, which rounds its corners, and so does this table.
Written from those knots, not copied from OpenCV;
tests/system/test_visiomatic_v3.py checks every entry against OpenCV itself
(within one level of rounding). The v3 server's "cold" is COOL; its "grey"
applies no map.
"""

from __future__ import annotations

import numpy as np

_X = np.arange(256) / 255.0


def _ramp(values: np.ndarray) -> np.ndarray:
    return np.clip(values, 0.0, 1.0)


def _table(red: np.ndarray, green: np.ndarray, blue: np.ndarray) -> np.ndarray:
    rgb = np.stack([red, green, blue], axis=1).astype(np.float32)
    table = np.rint(rgb * np.float32(255.0)).astype(np.uint8)
    table.flags.writeable = False
    return table


_JET = _table(
    _ramp(np.minimum(4 * _X - 1.5, 4.5 - 4 * _X)),
    _ramp(np.minimum(4 * _X - 0.5, 3.5 - 4 * _X)),
    _ramp(np.minimum(4 * _X + 0.5, 2.5 - 4 * _X)),
)
_COOL = _table(_X, 1.0 - _X, np.ones_like(_X))
_SAMPLES = np.linspace(0.0, 1.0, 64)  # where OpenCV evaluates HOT before interpolating
_HOT = _table(
    *(
        np.interp(_X, _SAMPLES, colour)
        for colour in (_ramp(_SAMPLES / 0.4), _ramp((_SAMPLES - 0.4) / 0.4), _ramp((_SAMPLES - 0.8) / 0.2))
    )
)

TABLES: dict[str, np.ndarray] = {"jet": _JET, "cool": _COOL, "cold": _COOL, "hot": _HOT}
