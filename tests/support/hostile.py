"""Hostile and extreme files, small in bytes: scroll images, deep and shallow pyramids, broken TIFFs and FITS.

Large images are sparse (every tile stored with zero bytes, which readers
show as empty), so a 65536 x 65536 pyramid takes about a megabyte and a
second to write.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

from tests.support.imaging import rgb_pattern, write_tifffile_pyramid


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
    scratch = directory / "_scratch.tif"
    for name, make in (
        ("jpeg_tile_declares_30000", lambda: jpeg_bomb_tiff(scratch)),
        ("webp_tile_declares_10000", lambda: webp_bomb_tiff(scratch)),
        ("ifd_chain_of_5000", lambda: ifd_chain_tiff(scratch, 5000)),
        ("cmyk", lambda: cmyk_tiff(scratch)),
        ("palette", lambda: palette_tiff(scratch)),
    ):
        make()
        out[name] = scratch.read_bytes()
    scratch.unlink()
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


# ---------------------------------------------------------------- decode and open-time bombs


def encoded_tiff(path: Path, tiles: list[bytes], shape: tuple[int, ...], compression: str, photometric: str) -> Path:
    """A one-level TIFF of 256-pixel tiles stored as given (already encoded)."""
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            iter(tiles),
            shape=shape,
            dtype=np.uint8,
            tile=(256, 256),
            compression=compression,
            photometric=photometric,
            metadata=None,
        )
    return path


def jpeg_bomb_tiff(path: Path, declared: tuple[int, int] = (30000, 30000), channels: int = 1) -> Path:
    """One 256 x 256 JPEG tile whose frame header (SOF) declares ``declared`` (width, height)."""
    import simplejpeg

    pixels = np.full((256, 256, channels), 128, np.uint8)
    stream = bytearray(simplejpeg.encode_jpeg(pixels, colorspace="GRAY" if channels == 1 else "RGB"))
    sof = stream.index(b"\xff\xc0")
    struct.pack_into(">HH", stream, sof + 5, declared[1], declared[0])
    shape = (256, 256) if channels == 1 else (256, 256, channels)
    return encoded_tiff(path, [bytes(stream)], shape, "jpeg", "minisblack" if channels == 1 else "rgb")


def webp_bomb_tiff(path: Path, declared: tuple[int, int] = (10000, 10000)) -> Path:
    """One lossless WebP (VP8L) tile of a 256 x 256 TIFF whose header declares ``declared`` (width, height).

    It encodes one pixel: its Huffman codes have one symbol each, zero bits a pixel, so it decodes at any size.
    """
    import imagecodecs

    stream = bytearray(imagecodecs.webp_encode(np.full((1, 1, 3), 7, np.uint8), lossless=True))
    at = stream.index(b"VP8L") + 8
    assert stream[at] == 0x2F  # the VP8L signature byte, then 14 bits of width - 1 and 14 of height - 1
    (bits,) = struct.unpack_from("<I", stream, at + 1)
    bits = (bits & ~((1 << 28) - 1)) | (declared[0] - 1) | ((declared[1] - 1) << 14)
    struct.pack_into("<I", stream, at + 1, bits)
    return encoded_tiff(path, [bytes(stream)], (256, 256, 3), "webp", "rgb")


def _bigtiff_ifd(entries: list[tuple[int, int, int, int]], next_ifd: int) -> bytes:
    """A little-endian BigTIFF IFD from (tag, type, count, value or offset) entries."""
    body = b"".join(struct.pack("<HHQQ", *entry) for entry in sorted(entries))
    return struct.pack("<Q", len(entries)) + body + struct.pack("<Q", next_ifd)


def tables_bigtiff(path: Path, side: int, levels: int, *, filled: bool = False, tile: int = 256) -> Path:
    """A sparse file (holes, a few KB on disk) holding a ``levels``-level deflated BigTIFF pyramid of side^2.

    Its tile tables are holes (every tile missing) unless ``filled``: then they hold distinct offsets and
    byte counts, as a real pyramid's do (the tiles themselves stay holes: this measures open costs).
    """
    sides = [max(1, side >> level) for level in range(levels)]
    counts = [(-(-s // tile)) ** 2 for s in sides]
    ifd_size = 8 + 11 * 20 + 8
    position = 16 + ifd_size * levels
    position += -position % 4096
    tables: list[tuple[int, int]] = []  # (offsets at, counts at) per level
    for count in counts:
        tables.append((position, position + 8 * count))
        position += 16 * count
    data_at = position
    with open(path, "wb") as handle:
        handle.write(b"II+\x00" + struct.pack("<HHQ", 8, 0, 16))
        for level, (s, count) in enumerate(zip(sides, counts, strict=True)):
            entries = [
                (254, 4, 1, 0 if level == 0 else 1),
                (256, 4, 1, s),
                (257, 4, 1, s),
                (258, 3, 1, 8),
                (259, 3, 1, 8),
                (262, 3, 1, 1),
                (277, 3, 1, 1),
                (322, 3, 1, tile),
                (323, 3, 1, tile),
                (324, 16, count, tables[level][0]),
                (325, 16, count, tables[level][1]),
            ]
            next_ifd = 16 + ifd_size * (level + 1) if level + 1 < levels else 0
            handle.write(_bigtiff_ifd(entries, next_ifd))
        if filled:
            for count, (offsets_at, counts_at) in zip(counts, tables, strict=True):
                sizes = 9000 + (np.arange(count, dtype=np.uint64) * 7919) % 4000
                offsets = data_at + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.uint64)
                handle.seek(offsets_at)
                handle.write(offsets.astype("<u8").tobytes())
                handle.seek(counts_at)
                handle.write(sizes.astype("<u8").tobytes())
                data_at = int(offsets[-1] + sizes[-1])
        handle.truncate(max(data_at, position))
    return path


def ifd_chain_tiff(path: Path, count: int = 2_000_000) -> Path:
    """A real 256 x 256 tiled page followed by a chain of ``count`` minimal IFDs (one entry each)."""
    first = path.with_suffix(".first.tif")
    tifffile.imwrite(first, np.full((256, 256), 9, np.uint8), tile=(256, 256), metadata=None)
    raw = bytearray(first.read_bytes())
    first.unlink()
    raw += b"\0" * (len(raw) % 2)
    start = len(raw)
    (ifd,) = struct.unpack_from("<I", raw, 4)
    (entries,) = struct.unpack_from("<H", raw, ifd)
    struct.pack_into("<I", raw, ifd + 2 + 12 * entries, start)  # the real page's next IFD: the chain
    chain = np.zeros(
        count,
        dtype=[("n", "<u2"), ("tag", "<u2"), ("type", "<u2"), ("count", "<u4"), ("value", "<u4"), ("next", "<u4")],
    )
    chain["n"], chain["tag"], chain["type"], chain["count"], chain["value"] = 1, 254, 4, 1, 1
    chain["next"] = start + 18 * np.arange(1, count + 1, dtype=np.uint64)
    chain["next"][-1] = 0
    path.write_bytes(bytes(raw) + chain.tobytes())
    return path


def cmyk_tiff(path: Path) -> tuple[Path, np.ndarray]:
    """A tiled 64 x 64 CMYK (photometric separated) TIFF of distinct inks; returns it and its pixels."""
    y, x = np.mgrid[0:64, 0:64]
    cmyk = np.stack([x * 4, y * 4, (x + y) * 2, (x * y) % 97], axis=2).astype(np.uint8)
    tifffile.imwrite(path, cmyk, photometric="separated", tile=(32, 32), compression="zlib", metadata=None)
    return path, cmyk


def palette_tiff(path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A tiled 64 x 64 palette TIFF; returns it, its indices and its (3, 256) uint16 colormap."""
    indices = (np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)
    levels = np.arange(256, dtype=np.uint16)
    colormap = np.stack([levels * 257, (255 - levels) * 257, (levels * 7 % 256) * 257]).astype(np.uint16)
    tifffile.imwrite(
        path, indices, photometric="palette", colormap=colormap, tile=(32, 32), compression="zlib", metadata=None
    )
    return path, indices, colormap


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _zeros_zlib(total: int, block: int = 1 << 20) -> bytes:
    """A zlib stream of ``total`` zero bytes, ~1 KB per MB, made in a blink.

    Blocks are compressed with a full flush after each, which resets the
    compressor: every block then compresses to the same bytes, so the stream
    is one block repeated, and only its Adler-32 needs all the data.
    """
    zeros = b"\0" * block
    compressor = zlib.compressobj(9)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    count, rest = divmod(total, block)
    tail = compressor.compress(zeros[:rest]) + compressor.flush()
    adler = 1
    for _ in range(count):
        adler = zlib.adler32(zeros, adler)
    adler = zlib.adler32(zeros[:rest], adler)
    return first + again * (count - 1) + tail[:-4] + struct.pack(">I", adler)


def _adam7_bytes(side: int) -> int:
    """Filtered bytes of an 8-bit grey side x side image in its seven Adam7 passes."""
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    total = 0
    for x0, y0, dx, dy in passes:
        width, height = -(-(side - x0) // dx), -(-(side - y0) // dy)
        total += height * (1 + width) if width and height else 0
    return total


def png_bomb(path: Path, side: int, interlaced: bool = False) -> Path:
    """A black 8-bit grey PNG of side x side pixels, about 1 KB per million pixels."""
    filtered = _adam7_bytes(side) if interlaced else side * (1 + side)  # a filter byte before every row
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, int(interlaced))
    chunks = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", _zeros_zlib(filtered)) + _png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def decoder_bombs(root: Path) -> Path:
    """Files whose codec streams or tables declare far more than they hold (the TIFF reader's
    hostile-input tests, in-process and in a fresh process, share them)."""
    tifffile.imwrite(root / "warm.tif", np.zeros((64, 64), np.uint8), tile=(32, 32), metadata=None)
    jpeg_bomb_tiff(root / "jpeg_grey.tif", (30000, 30000))
    jpeg_bomb_tiff(root / "jpeg_rgb.tif", (20000, 20000), channels=3)
    jpeg_bomb_tiff(root / "jpeg_max.tif", (65500, 65500), channels=3)
    webp_bomb_tiff(root / "webp_lossless.tif", (10000, 10000))
    tables_bigtiff(root / "sparse.tif", 1048576, 3)
    return root


def extreme_images(root: Path) -> Path:
    """Scrolls, sparse pyramids of 65536^2, a single level of 65536^2, a tile of 8192^2, and an RGB
    pyramid and a float cube for comparison: the limits' tests, in-process and in fresh processes."""
    scroll_tiff(root / "tall.tif", 1, 200000)
    scroll_tiff(root / "wide.tif", 200000, 1)
    sparse_tiff(root / "deep.tif", 65536, 65536)
    sparse_tiff(root / "deep_float.tif", 16384, 16384, dtype=np.float32)
    sparse_tiff(root / "shallow.tif", 65536, 65536, levels=False)
    sparse_tiff(root / "shallow_float.tif", 30000, 30000, dtype=np.float32, levels=False)
    big_tile_tiff(root / "bigtile.tif")
    write_tifffile_pyramid(root / "rgb.tif", rgb_pattern(2000, 1500), compression="jpeg")
    cube = np.random.default_rng(3).normal(100, 5, (1200, 1600, 3)).astype(np.float32)
    write_tifffile_pyramid(root / "cube.tif", cube, smin=[90.0] * 3, smax=[130.0] * 3)
    return root
