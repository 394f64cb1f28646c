"""Colour pixels as packed RGBX uint32: one table lookup gives a whole pixel, one copy unpacks them.

Unpacking to a C-contiguous (h, w, 3) array is one overlapping strided copy (each pixel's
4th byte is overwritten by the next one), which is much faster than any numpy operation
whose innermost axis has length 3.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pack_rgbx", "unpack_rgbx"]


def pack_rgbx(levels: np.ndarray) -> np.ndarray:
    """(n, 3) uint8 -> (n,) uint32 whose native bytes are R, G, B, 0."""
    rgbx = np.zeros((levels.shape[0], 4), np.uint8)
    rgbx[:, :3] = levels
    return rgbx.view(np.uint32).ravel()


def _overlap_copy_works() -> bool:
    """Check once that a sequential strided uint32 copy can lay RGBX pixels 3 bytes apart."""
    n = 4099
    packed = np.arange(n * 4, dtype=np.uint8).reshape(n, 4) % 251
    packed[:, 3] = 255
    raw = np.zeros(3 * n + 1, np.uint8)
    dst = np.ndarray((n,), dtype=np.uint32, buffer=raw, strides=(3,))
    np.copyto(dst, packed.view(np.uint32).ravel())
    return bool(np.array_equal(raw[: 3 * n].reshape(n, 3), packed[:, :3]))


_OVERLAP_COPY = _overlap_copy_works()


def unpack_rgbx(packed: np.ndarray) -> np.ndarray:
    """(h, w) packed RGBX uint32 -> C-contiguous (h, w, 3) uint8."""
    h, w = packed.shape
    n = h * w
    raw = np.empty(3 * n + 1, np.uint8)
    if _OVERLAP_COPY:
        dst = np.ndarray((n,), dtype=np.uint32, buffer=raw, strides=(3,))
        np.copyto(dst, packed.reshape(-1))  # each write's 4th byte is overwritten by the next pixel
    else:  # pragma: no cover - fallback for a numpy that copies out of order
        raw[: 3 * n].reshape(n, 3)[:] = packed.reshape(-1).view(np.uint8).reshape(n, 4)[:, :3]
    return raw[: 3 * n].reshape(h, w, 3)
