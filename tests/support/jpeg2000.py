"""JPEG 2000 and HTJ2K files for the tests, written by imagecodecs (OpenJPEG, OpenJPH) and glymur (OpenJPEG).

JPH files (the HTJ2K file format) are OpenJPH's codestream in JP2-style boxes
built here; hostile variants patch a real file's header.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import glymur
import imagecodecs
import numpy as np

SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def jp2_bytes(
    data: np.ndarray,
    *,
    lossless: bool = True,
    tile: int | None = None,
    resolutions: int | None = None,
    container: bool = True,
) -> bytes:
    """A JPEG 2000 file (JP2 boxes, else a bare J2K codestream) of ``data`` (h, w) or (h, w, c).

    Untiled files come from imagecodecs; tiled ones from glymur (imagecodecs writes no tiles), both OpenJPEG.
    """
    if tile is not None:
        return _glymur(data, lossless=lossless, tile=tile, resolutions=resolutions, container=container)
    options: dict[str, object] = {"codecformat": "jp2" if container else "j2k", "reversible": lossless}
    if not lossless:
        options["level"] = 40  # PSNR target in dB
    if resolutions is not None:
        options["resolutions"] = resolutions
    return bytes(imagecodecs.jpeg2k_encode(data, **options))


def _glymur(data: np.ndarray, *, lossless: bool, tile: int, resolutions: int | None, container: bool) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / ("image.jp2" if container else "image.j2k")
        options: dict[str, object] = {"tilesize": (tile, tile), "irreversible": not lossless}
        if not lossless:
            options["psnr"] = [40]
        if resolutions is not None:
            options["numres"] = resolutions
        glymur.Jp2k(str(path), data=data, **options)
        return path.read_bytes()


def htj2k_codestream(
    data: np.ndarray, *, lossless: bool = True, tile: int | None = None, resolutions: int | None = None
) -> bytes:
    """A bare HTJ2K codestream (a .jhc file)."""
    options: dict[str, object] = {"reversible": lossless}
    if not lossless:
        options["level"] = 0.01  # OpenJPH's quantisation step: about 40 dB PSNR, as the JPEG 2000 files
    if tile is not None:
        options["tile"] = (tile, tile)
    if resolutions is not None:
        options["resolutions"] = resolutions
    return bytes(imagecodecs.htj2k_encode(data, **options))


def _box(kind: bytes, content: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(content), kind) + content


def jph_bytes(data: np.ndarray, **options: object) -> bytes:
    """A JPH file: the HTJ2K codestream in the boxes of ISO/IEC 15444-15 Annex D (brand 'jph ')."""
    codestream = htj2k_codestream(data, **options)  # type: ignore[arg-type]
    height, width = data.shape[:2]
    channels = 1 if data.ndim == 2 else data.shape[2]
    bits = data.dtype.itemsize * 8
    ihdr = struct.pack(">IIHBBBB", height, width, channels, bits - 1, 7, 0, 0)
    colr = struct.pack(">BBBI", 1, 0, 0, 17 if channels == 1 else 16)
    header = _box(b"ihdr", ihdr) + _box(b"colr", colr)
    ftyp = _box(b"ftyp", b"jph \x00\x00\x00\x00jph ")
    return SIGNATURE + ftyp + _box(b"jp2h", header) + _box(b"jp2c", codestream)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _siz_at(raw: bytes) -> int:
    """Where the SIZ marker's Rsiz field is (after SOC, SIZ and Lsiz)."""
    at = raw.index(b"\xff\x4f\xff\x51")
    return at + 6


def lying_siz(raw: bytes, *, size: tuple[int, int] | None = None, tile: tuple[int, int] | None = None) -> bytes:
    """``raw`` with SIZ declaring another image size and/or tile size (the coded data unchanged)."""
    edited = bytearray(raw)
    at = _siz_at(raw)
    if size is not None:
        struct.pack_into(">II", edited, at + 2, *size)
    if tile is not None:
        struct.pack_into(">II", edited, at + 18, *tile)
    return bytes(edited)


def truncated(raw: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` of a file: its header whole, part of its tile data."""
    return raw[: int(len(raw) * keep)]
