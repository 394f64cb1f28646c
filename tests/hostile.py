"""Hostile and extreme files, small in bytes: scroll images, deep and shallow pyramids, broken TIFFs and FITS.

Large images are sparse (every tile stored with zero bytes, which readers
show as empty), so a 65536 x 65536 pyramid takes about a megabyte and a
second to write.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile


def _empty_tiles(count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield b""


def sparse_tiff(
    path: Path,
    width: int,
    height: int,
    *,
    dtype: type = np.uint8,
    tile: tuple[int, int] = (256, 256),
    levels: bool = True,
    min_size: int = 1,
) -> Path:
    """A tiled (pyramidal unless ``levels`` is False) TIFF whose tiles are all empty.

    Levels halve (floor, at least 1 pixel) until both sides are at most ``min_size``.
    ``tile`` is (height, width), as tifffile takes it.
    """
    th, tw = tile
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        first = True
        while True:
            count = -(-width // tw) * -(-height // th)
            tif.write(
                _empty_tiles(count),
                shape=(height, width),
                dtype=dtype,
                tile=(th, tw),
                compression="zlib",
                photometric="minisblack",
                subfiletype=0 if first else 1,
                metadata=None,
            )
            first = False
            if not levels or (width <= min_size and height <= min_size):
                break
            width, height = max(1, width // 2), max(1, height // 2)
    return path


def scroll_tiff(path: Path, width: int, height: int) -> Path:
    """A real (not sparse) uint8 scroll image, 1 x N or N x 1, deflated, with floor-halved levels down to 256."""
    data = (np.arange(max(width, height), dtype=np.uint32) % 251).astype(np.uint8).reshape(height, width)
    tile = (256, 16) if width < height else (16, 256)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        level, first = data, True
        while True:
            tif.write(level, tile=tile, compression="zlib", subfiletype=0 if first else 1, metadata=None)
            first = False
            if max(level.shape) <= 256:
                break
            level = level[::2, ::2] if min(level.shape) > 1 else (level[:, ::2] if width > height else level[::2, :])
    return path


def big_tile_tiff(path: Path, side: int = 8192) -> Path:
    """One real deflated tile of side x side: a 1-pixel request still decodes all of it."""
    tifffile.imwrite(path, np.zeros((side, side), np.uint8), tile=(side, side), compression="zlib", metadata=None)
    return path


# ---------------------------------------------------------------- malformed TIFFs


def _small_tiled(path: Path, compression: str | None = "zlib", **kw) -> bytes:
    data = (np.arange(64 * 64, dtype=np.uint16) % 255).astype(np.uint8).reshape(64, 64)
    tifffile.imwrite(path, data, tile=(32, 32), compression=compression, metadata=None, **kw)
    return path.read_bytes()


def _tags(raw: bytes) -> dict[int, tuple[int, int, int, int]]:
    """Classic little-endian TIFF: tag -> (entry offset, type, count, value or offset) of IFD0."""
    (ifd,) = struct.unpack_from("<I", raw, 4)
    (count,) = struct.unpack_from("<H", raw, ifd)
    found = {}
    for i in range(count):
        at = ifd + 2 + 12 * i
        tag, kind, n, value = struct.unpack_from("<HHII", raw, at)
        found[tag] = (at, kind, n, value)
    return found


def _set_tag(raw: bytearray, tag: int, value: int) -> None:
    at, kind, _n, _v = _tags(bytes(raw))[tag]
    if kind == 3:  # SHORT, left-justified in the value field
        struct.pack_into("<HH", raw, at + 8, value, 0)
    else:
        struct.pack_into("<I", raw, at + 8, value)


def _drop_tag(raw: bytearray, tag: int) -> None:
    """Remove an IFD entry by shifting the later ones down (the count shrinks by one)."""
    (ifd,) = struct.unpack_from("<I", raw, 4)
    (count,) = struct.unpack_from("<H", raw, ifd)
    at = _tags(bytes(raw))[tag][0]
    end = ifd + 2 + 12 * count
    raw[at : end - 12] = raw[at + 12 : end]
    raw[end - 12 : end] = b"\0" * 12
    struct.pack_into("<H", raw, ifd, count - 1)
    struct.pack_into("<I", raw, end - 12, 0)  # the next-IFD offset moves up with the entries


def malformed_tiffs(directory: Path) -> dict[str, Path]:
    """Broken TIFFs, each named for what is wrong with it; the reader must refuse or survive every one."""
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / "_good.tif"
    good = _small_tiled(base)
    out: dict[str, bytes] = {}
    out["empty"] = b""
    out["magic_only"] = b"II*\x00"
    out["bad_ifd_offset"] = good[:4] + struct.pack("<I", 0xFFFFFF00) + good[8:]
    out["ifd_offset_zero"] = good[:4] + b"\0\0\0\0" + good[8:]
    out["truncated_header"] = good[:12]
    out["truncated_half"] = good[: len(good) // 2]
    out["truncated_tiles"] = good[: _tags(good)[324][3] + 8]  # IFD kept, tile data cut off
    raw = bytearray(good)
    offsets_at = _tags(good)[324][3]
    struct.pack_into("<4I", raw, offsets_at, *([len(good) * 10] * 4))
    out["tile_offsets_past_end"] = bytes(raw)
    raw = bytearray(good)
    struct.pack_into("<4I", raw, offsets_at, *([8] * 4))
    out["tile_offsets_into_header"] = bytes(raw)
    raw = bytearray(good)
    counts_at = _tags(good)[325][3]
    struct.pack_into("<4I", raw, counts_at, 0, 0, 0, 0)
    out["zero_size_tiles"] = bytes(raw)
    raw = bytearray(good)
    struct.pack_into("<4I", raw, counts_at, *([0x7FFFFFFF] * 4))
    out["absurd_tile_counts"] = bytes(raw)
    for tag, value, name in (
        (256, 0, "zero_width"),
        (257, 0, "zero_height"),
        (256, 0xFFFFFFFF, "absurd_width"),
        (257, 0xFFFFFFFF, "absurd_height"),
        (322, 0, "zero_tile_width"),
        (322, 24, "tile_width_not_multiple_of_16"),
        (322, 1 << 20, "absurd_tile_width"),
        (258, 13, "odd_bits_per_sample"),
        (258, 0, "zero_bits_per_sample"),
        (277, 0, "zero_samples_per_pixel"),
        (277, 60000, "absurd_samples_per_pixel"),
        (259, 34999, "unknown_codec"),
        (259, 34712, "jpeg2000_codec_on_deflate_data"),
        (259, 7, "jpeg_codec_on_deflate_data"),
        (284, 7, "bad_planar_config"),
        (339, 9, "bad_sample_format"),
    ):
        raw = bytearray(good)
        try:
            _set_tag(raw, tag, value)
        except KeyError:
            continue
        out[name] = bytes(raw)
    for tag, name in ((324, "missing_tile_offsets"), (325, "missing_tile_counts"), (322, "missing_tile_width")):
        raw = bytearray(good)
        _drop_tag(raw, tag)
        out[name] = bytes(raw)
    raw = bytearray(good)
    _set_tag(raw, 324, 0xFFFFFF00)  # the offsets array itself lies outside the file
    out["tile_offset_table_past_end"] = bytes(raw)
    raw = bytearray(good)
    (ifd,) = struct.unpack_from("<I", raw, 4)
    (count,) = struct.unpack_from("<H", raw, ifd)
    struct.pack_into("<I", raw, ifd + 2 + 12 * count, ifd)  # next IFD is itself: a loop
    out["ifd_loop"] = bytes(raw)
    raw = bytearray(good)
    struct.pack_into("<H", raw, ifd, 0xFFFF)  # more entries than the file holds
    out["absurd_entry_count"] = bytes(raw)
    stripped = directory / "_stripped.tif"
    tifffile.imwrite(stripped, np.zeros((64, 64), np.uint8), rowsperstrip=8, metadata=None)
    out["stripped_not_tiled_tiny"] = stripped.read_bytes()
    stripped.unlink()
    out["garbage_after_magic"] = b"II*\x00" + bytes(range(256)) * 4
    out["big_endian_garbage"] = b"MM\x00*" + b"\xff" * 64
    out["bigtiff_garbage"] = b"II+\x00\x08\x00\x00\x00" + b"\xff" * 64
    base.unlink()
    paths = {}
    for name, data in out.items():
        path = directory / f"{name}.tif"
        path.write_bytes(data)
        paths[name] = path
    return paths


# ---------------------------------------------------------------- malformed FITS


def _card(text: str) -> bytes:
    return text.ljust(80).encode("ascii")


def fits_bytes(cards: list[str], data: bytes = b"", pad: bool = True) -> bytes:
    header = b"".join(_card(c) for c in [*cards, "END"])
    header += b" " * (-len(header) % 2880)
    body = data + (b"\0" * (-len(data) % 2880) if pad else b"")
    return header + body


def malformed_fits(directory: Path) -> dict[str, Path]:
    """Broken FITS files, each named for what is wrong; ``pyiip convert`` must give a clear error for each."""
    directory.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((8, 8), ">f4").tobytes()

    def kv(key: str, value: object) -> str:
        return f"{key:<8}= {value!s:>20}"

    good = [kv("SIMPLE", "T"), kv("BITPIX", -32), kv("NAXIS", 2), kv("NAXIS1", 8), kv("NAXIS2", 8)]
    four = [kv("NAXIS", 4), *(kv(f"NAXIS{i}", 2) for i in range(1, 5))]
    out = {
        "empty": b"",
        "not_fits": b"hello, this is not FITS\n" * 200,
        "header_without_end": b"".join(_card(c) for c in good) + b" " * 2480,
        "no_data_hdu": fits_bytes([kv("SIMPLE", "T"), kv("BITPIX", 8), kv("NAXIS", 0)]),
        "one_axis": fits_bytes([*good[:2], kv("NAXIS", 1), kv("NAXIS1", 8)], np.zeros(8, ">f4").tobytes()),
        "zero_axis": fits_bytes([*good[:3], kv("NAXIS1", 0), kv("NAXIS2", 8)]),
        "four_axes": fits_bytes([*good[:2], *four], np.zeros(16, ">f4").tobytes()),
        "bad_bitpix": fits_bytes([good[0], kv("BITPIX", 12), *good[2:]], pixels),
        "truncated_data": fits_bytes(good, pixels[:100], pad=False),
        "absurd_size_tiny_file": fits_bytes([*good[:3], kv("NAXIS1", 2000000000), kv("NAXIS2", 2000000000)]),
        "negative_axis": fits_bytes([*good[:3], kv("NAXIS1", -8), kv("NAXIS2", 8)]),
        "garbage_header": b"SIMPLE  = " + bytes(range(256)) * 11 + b" " * 2880,
        "text_naxis": fits_bytes([*good[:3], "NAXIS1  = 'eight'", kv("NAXIS2", 8)], pixels),
    }
    from astropy.io import fits

    compressed = directory / "_compressed.fits"
    hdu = fits.CompImageHDU(np.arange(64 * 64, dtype=np.float32).reshape(64, 64))
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(compressed, overwrite=True)
    whole = compressed.read_bytes()
    compressed.unlink()
    out["compressed_truncated"] = whole[: len(whole) - 2880]
    out["compressed_garbled"] = whole[: len(whole) // 2] + b"\xff" * (len(whole) - len(whole) // 2)
    paths = {}
    for name, data in out.items():
        path = directory / f"{name}.fits"
        path.write_bytes(data)
        paths[name] = path
    return paths
