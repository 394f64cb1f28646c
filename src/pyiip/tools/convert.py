"""FITS image(s) or a FITS cube to a tiled pyramidal float32 BigTIFF, laid out as STIFF writes it.

VisiOmatic (through iipsrv-astro) expects what STIFF produces (reference §9.3): a plain IFD
chain, level 0 first, each level floor(prev/2) by 2x2 averaging; raw float32 values with
contiguous channels; per-channel display cuts in SMinSampleValue/SMaxSampleValue; the FITS
header as 80-character cards in ImageDescription, with CDi_j WCS and CHAN0001... labels; and
TIFF row 0 = FITS row NAXIS2 (a vertical flip, CRPIX2 unchanged).

Memory stays bounded whatever the input size: FITS rows are read one strip of tiles at a time
with positioned reads (pages of a memory map would stay resident and count in RSS), and each
level is written from strips while its 2x2 averages stream into a raw temporary file next to
the output, which is the source of the next level.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import re
import secrets
import sys
import threading
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pyiip.read.fits_header import without_implied_poles

if TYPE_CHECKING:  # imported lazily by the functions that use it
    from astropy.io import fits

__all__ = ["ConvertError", "convert"]

# TIFF codes: Adobe deflate is what libtiff (hence iipsrv) writes for "deflate".
_COMPRESSION = {"none": 1, "deflate": 8, "lzw": 5, "zstd": 50000}
_CODEC = {8: "DEFLATE", 5: "LZW", 50000: "ZSTD"}
_SMIN, _SMAX = 340, 341
# STIFF's defaults: MIN_TYPE GREYLEVEL 0.001 (sky at grey level 0.001), MAX_TYPE QUANTILE 0.999.
_MIN_GREY = 0.001
_MAX_QUANTILE = 0.999
_SAMPLE_ROWS = 1024  # rows read for the cuts
_SAMPLE_PIXELS = 1_000_000  # per channel: quantiles to ~1e-3 need no more
_RAW_DTYPES: dict[int, np.dtype] = {8: np.dtype("u1"), 16: np.dtype(">i2"), 32: np.dtype(">i4"), 64: np.dtype(">i8"),
                                    -32: np.dtype(">f4"), -64: np.dtype(">f8")}  # fmt: skip
# Keywords that describe the FITS data layout rather than the sky: rewritten for the float raster.
_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|EXTEND|PCOUNT|GCOUNT|BSCALE|BZERO|BLANK|CHECKSUM|DATASUM|"
    r"CHAN\d{4}|END)$"
)
_LINEAR = re.compile(r"^(CDELT[12]|CROTA[12]|PC[12]_[12]|PC00[12]00[12]|CD[12]_[12])$")
# Third and later axes of a cube do not exist in the 2-D raster.
_EXTRA_AXIS = re.compile(
    r"^((CTYPE|CRVAL|CRPIX|CDELT|CUNIT|CROTA|CNAME|CRDER|CSYER)[3-9]|(PC|CD)([3-9]_\d|\d_[3-9])|P[VS][3-9]_\d+)$"
)


class ConvertError(Exception):
    """Bad input or output for ``convert``; the message is meant for the user."""


@dataclass(slots=True)
class _Input:
    """One FITS image HDU, read by rows: raw positioned reads, or astropy's section if compressed."""

    path: Path
    header: fits.Header
    width: int
    height: int
    planes: int
    raw_dtype: np.dtype | None = None  # None: compressed, read through ``section``
    offset: int = 0
    bscale: float = 1.0
    bzero: float = 0.0
    blank: int | None = None
    file: Any = None  # an open binary file (raw) or the compressed HDU
    hdul: fits.HDUList | None = None

    def rows(self, plane: int, start: int, stop: int) -> np.ndarray:
        """FITS rows [start, stop) of one plane as float32, bad values as NaN."""
        try:
            if self.raw_dtype is None:
                ndim = len(self.file.shape)  # degenerate NAXIS4... come first in numpy order
                lead = (0,) * (ndim - 3) + (plane,) if ndim >= 3 else ()
                data = self.file.section[(*lead, slice(start, stop))]
                return np.asarray(data, dtype=np.float32).reshape(stop - start, self.width)
            count = (stop - start) * self.width
            first = self.offset + ((plane * self.height + start) * self.width) * self.raw_dtype.itemsize
            raw = np.empty(count, self.raw_dtype)
            view = raw.data.cast("B")
            self.file.seek(first)
            done = 0
            while done < len(view):
                got = self.file.readinto(view[done:])
                if not got:
                    raise ConvertError(f"{self.path}: FITS data are truncated")
                done += got
        except ConvertError:
            raise
        except Exception as exc:
            raise ConvertError(f"{self.path}: cannot read the image data ({exc})") from exc
        return self._physical(raw).reshape(stop - start, self.width)

    def _physical(self, raw: np.ndarray) -> np.ndarray:
        """Apply BLANK, BSCALE and BZERO; float32 has room for 16-bit integers exactly."""
        scaled = self.bscale != 1.0 or self.bzero != 0.0
        if raw.dtype.kind == "f":
            data: np.ndarray[Any, np.dtype[np.floating]] = raw.astype(np.float64 if scaled else np.float32)
        else:
            data = raw.astype(np.float32 if raw.dtype.itemsize <= 2 else np.float64)
        if scaled:
            data *= self.bscale
            data += self.bzero
        if self.blank is not None and raw.dtype.kind != "f":
            data[raw == self.blank] = np.nan
        return data.astype(np.float32, copy=False)

    def close(self) -> None:
        for thing in (self.file, self.hdul):
            if thing is not None and hasattr(thing, "close"):
                with contextlib.suppress(Exception):
                    thing.close()
        self.file = self.hdul = None


def _open_input(path: Path, hdu: int | None = None) -> _Input:
    """The first image HDU of a FITS file (or HDU number ``hdu``), checked; the data are not read."""
    from astropy.io import fits

    if not path.is_file():
        raise ConvertError(f"{path}: no such file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy warns about what we report as errors anyway
        try:
            hdul = fits.open(path, memmap=False, lazy_load_hdus=True)
            found = None
            for index, unit in enumerate(hdul):
                if hdu in (None, index) and unit.is_image and int(unit.header.get("NAXIS", 0)) > 0:
                    found = index, unit
                    break
        except Exception as exc:
            reason = str(exc).split(". ")[0].strip() or type(exc).__name__
            raise ConvertError(f"{path}: not a readable FITS file ({reason})") from exc
        if found is None:
            hdul.close()
            raise ConvertError(f"{path}: no image data in this FITS file")
        index, unit = found
        try:
            return _describe(path, hdul, index, unit)
        except BaseException:
            hdul.close()
            raise


def _describe(
    path: Path, hdul: fits.HDUList, index: int, hdu: fits.ImageHDU | fits.PrimaryHDU | fits.CompImageHDU
) -> _Input:
    from astropy.io import fits

    header = hdu.header
    naxis = int(header["NAXIS"])
    dims = [int(header.get(f"NAXIS{i}", 0)) for i in range(1, naxis + 1)]
    if naxis < 2:
        raise ConvertError(f"{path}: the image is {naxis}-D; an image needs 2 axes")
    if any(d <= 0 for d in dims):
        raise ConvertError(f"{path}: the image is empty ({' x '.join(map(str, dims))})")
    if any(d != 1 for d in dims[3:]):
        raise ConvertError(f"{path}: {naxis}-D data; only 2-D images and 3-D cubes are supported")
    width, height = dims[0], dims[1]
    planes = dims[2] if naxis >= 3 else 1
    item = _Input(path, header.copy(), width, height, planes)
    if isinstance(hdu, fits.CompImageHDU):
        item.file, item.hdul = hdu, hdul
        return item
    bitpix = int(header.get("BITPIX", 0))
    if bitpix not in _RAW_DTYPES:
        raise ConvertError(f"{path}: unsupported BITPIX {bitpix}")
    info = hdul.fileinfo(index)
    item.raw_dtype = _RAW_DTYPES[bitpix]
    item.offset = int(info["datLoc"])
    item.bscale = float(header.get("BSCALE", 1.0))
    item.bzero = float(header.get("BZERO", 0.0))
    blank = header.get("BLANK")
    item.blank = int(blank) if isinstance(blank, int) and bitpix > 0 else None
    needed = item.offset + width * height * planes * item.raw_dtype.itemsize
    if path.stat().st_size < needed:
        raise ConvertError(f"{path}: FITS data are truncated ({path.stat().st_size} bytes, {needed} needed)")
    hdul.close()
    item.file = open(path, "rb")  # noqa: SIM115 - closed by _Input.close
    return item


@dataclass(frozen=True, slots=True)
class _Channel:
    source: _Input
    plane: int
    label: str


def _channels(inputs: list[_Input]) -> list[_Channel]:
    """One channel per 2-D file, or per plane of a cube; labels as STIFF's CHANNELTAG (FILTER)."""
    channels = []
    for item in inputs:
        header = item.header
        base = str(header.get("FILTER", "")).strip() or str(header.get("EXTNAME", "")).strip() or item.path.stem
        for plane in range(item.planes):
            if item.planes == 1:
                label = base
            else:
                label = str(header.get(f"CHAN{plane + 1:04d}", "")).strip() or f"{base} {plane + 1}"
            label = "".join(ch if " " <= ch <= "~" else "?" for ch in label)  # FITS strings are ASCII
            channels.append(_Channel(item, plane, label))
    return channels


# --- Header ---------------------------------------------------------------------------------


def _cd_matrix(header: fits.Header) -> np.ndarray | None:
    """CDi_j equivalent of CDELT/PC/CROTA (VisiOmatic reads only CD), or None when not needed.

    Same rules as wcslib: CD = diag(CDELT) PC, with PC from CROTA2 (AIPS convention) when the
    header has no PC matrix; a header that already has CD keeps it.
    """
    keys = {k for k in header if _LINEAR.match(k)}
    if not keys or any(k.startswith("CD") and "_" in k for k in keys):
        return None

    def number(key: str, default: float) -> float:
        value = header.get(key, default)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default

    cdelt = np.array([number("CDELT1", 1.0), number("CDELT2", 1.0)])
    if any(k.startswith("PC") for k in keys):
        pc = np.array([[number(f"PC{i}_{j}", number(f"PC00{i}00{j}", float(i == j))) for j in (1, 2)] for i in (1, 2)])
    else:
        rho = math.radians(number("CROTA2", number("CROTA1", 0.0)))
        ratio = cdelt[1] / cdelt[0] if cdelt[0] else 1.0
        pc = np.array([[math.cos(rho), -math.sin(rho) * ratio], [math.sin(rho) / ratio, math.cos(rho)]])
    return cdelt[:, None] * pc


def _header(first: _Input, width: int, height: int, labels: list[str]) -> fits.Header:
    """Full-resolution header for IFD0: structure rewritten, CD matrix, CHAN labels."""
    from astropy.io import fits

    source = first.header
    cd = _cd_matrix(source)
    cards = [
        fits.Card("SIMPLE", True, "conforms to FITS standard"),
        fits.Card("BITPIX", -32, "IEEE single precision floating point"),
        fits.Card("NAXIS", 2, "number of data axes"),
        fits.Card("NAXIS1", width, "length of data axis 1"),
        fits.Card("NAXIS2", height, "length of data axis 2"),
    ]
    placed = False
    for card in source.cards:
        key = card.keyword
        if _STRUCTURAL.match(key) or _EXTRA_AXIS.match(key):
            continue
        if cd is not None and _LINEAR.match(key):
            if not placed:
                cards += [fits.Card(f"CD{i + 1}_{j + 1}", float(cd[i, j]), "linear WCS matrix")
                          for i in range(2) for j in range(2)]  # fmt: skip
                placed = True
            continue
        if key == "WCSAXES":
            cards.append(fits.Card("WCSAXES", 2, card.comment))
            continue
        cards.append(card)
    cards += [fits.Card(f"CHAN{i + 1:04d}", label, f"channel {i + 1}") for i, label in enumerate(labels)]
    return fits.Header(cards)


def _level_header(header: fits.Header, width: int, height: int, steps: list[tuple[int, int]]) -> fits.Header:
    """STIFF rewrites each level's header for its own pixel grid (iipsrv-astro shows IFD0's)."""
    header = header.copy()
    header["NAXIS1"], header["NAXIS2"] = width, height
    for old_h, new_h in steps:
        if "CRPIX1" in header:
            header["CRPIX1"] = (float(header["CRPIX1"]) - 0.5) / 2 + 0.5
        if "CRPIX2" in header:  # the dropped odd row is FITS row 1, at the bottom
            header["CRPIX2"] = (float(header["CRPIX2"]) - 0.5 - (old_h - 2 * new_h)) / 2 + 0.5
    scale = 2 ** len(steps)
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2", "CDELT1", "CDELT2"):
        if key in header:
            header[key] = float(header[key]) * scale
    return header


def _cards(header: fits.Header) -> str:
    """80-character cards, concatenated, no END (what STIFF puts in ImageDescription)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = "".join(card.image for card in header.cards)
    return without_implied_poles(text.encode("ascii", "replace").decode("ascii"))  # VisiOmatic v2 fails on LATPOLE


# --- Display cuts ---------------------------------------------------------------------------


def _cuts(values: np.ndarray) -> tuple[float, float]:
    """STIFF's default cuts: max = 0.999 quantile; min puts the sky at grey level 0.001."""
    values = values[np.isfinite(values)].astype(np.float64, copy=False)
    if not values.size:
        return 0.0, 1.0
    high = float(np.quantile(values, _MAX_QUANTILE))
    back = _background(values)
    low = (high * _MIN_GREY - back) / (_MIN_GREY - 1.0)
    if not (math.isfinite(low) and low < high):
        low = float(values.min())
    if not low < high:
        high = low + 1.0
    return float(np.float32(low)), float(np.float32(high))


def _background(values: np.ndarray) -> float:
    """Sky level: mode of the 3-sigma-clipped histogram (the SExtractor/STIFF estimator)."""
    v = values[:: max(1, values.size // 250_000)]  # plenty for a mode; medians are the cost
    for _ in range(10):
        med, std = float(np.median(v)), float(v.std())
        if std == 0:
            return med
        keep = np.abs(v - med) < 3 * std
        if keep.all():
            break
        v = v[keep]
    mean, med, std = float(v.mean()), float(np.median(v)), float(v.std())
    if std > 0 and abs(mean - med) / std < 0.3:
        return 2.5 * med - 1.5 * mean
    return med


def _sample_cuts(channels: list[_Channel], width: int, height: int) -> list[tuple[float, float]]:
    """Cuts from a row/column subsample, so they are known before the tags are written."""
    rows = np.unique(np.linspace(0, height - 1, min(height, _SAMPLE_ROWS)).round().astype(int))
    step = max(1, math.ceil(width * len(rows) / _SAMPLE_PIXELS))
    result = []
    for channel in channels:
        values = np.concatenate([channel.source.rows(channel.plane, r, r + 1)[0, ::step] for r in rows])
        result.append(_cuts(values))
    return result


# --- Pyramid --------------------------------------------------------------------------------


def _level_sizes(width: int, height: int, min_size: int) -> list[tuple[int, int]]:
    """STIFF's rule: floor halving, keeping levels while w >= minsize or h >= minsize."""
    sizes = [(width, height)]
    while True:
        w, h = sizes[-1][0] // 2, sizes[-1][1] // 2
        if w < 1 or h < 1 or not (w >= min_size or h >= min_size):
            return sizes
        sizes.append((w, h))


def _halve(block: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """2x2 average ignoring non-finite pixels (all four bad gives NaN)."""
    q = (block[0 : 2 * rows : 2, 0 : 2 * cols : 2], block[0 : 2 * rows : 2, 1 : 2 * cols : 2],
         block[1 : 2 * rows : 2, 0 : 2 * cols : 2], block[1 : 2 * rows : 2, 1 : 2 * cols : 2])  # fmt: skip
    total = q[0] + q[1]
    total += q[2]
    total += q[3]
    if np.isfinite(total).all():
        total *= 0.25
        return total
    good = [np.isfinite(x) for x in q]
    count = sum(g.astype(np.float32) for g in good)
    total = sum(np.where(g, x, 0) for g, x in zip(good, q, strict=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (total / count).astype(np.float32)


class _RawRows:
    """A (height, width, channels) float32 raster kept in a raw file, read by strips."""

    def __init__(self, path: Path, width: int, height: int, channels: int) -> None:
        self.path, self.width, self.height, self.channels = path, width, height, channels
        self.file = open(path, "w+b")  # noqa: SIM115 - closed by close()

    def append(self, rows: np.ndarray) -> None:
        self.file.seek(0, os.SEEK_END)
        self.file.write(np.ascontiguousarray(rows, dtype=np.float32).data)

    def rows(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.width, self.channels), np.float32)
        view = out.data.cast("B")
        self.file.flush()
        self.file.seek(start * self.width * self.channels * 4)
        done = 0
        while done < len(view):
            got = self.file.readinto(view[done:])
            if not got:
                raise ConvertError(f"temporary file {self.path} is short")
            done += got
        return out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _fits_rows(channels: list[_Channel], height: int, width: int) -> Callable[[int, int], np.ndarray]:
    """Level-0 TIFF rows [start, stop): FITS rows read bottom-up, so TIFF row 0 = FITS row NAXIS2."""

    def rows(start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, width, len(channels)), np.float32)
        for c, channel in enumerate(channels):
            out[:, :, c] = channel.source.rows(channel.plane, height - stop, height - start)[::-1]
        return out

    return rows


def _level_strips(
    rows: Callable[[int, int], np.ndarray], height: int, tile: int, below: _RawRows | None
) -> Iterator[np.ndarray]:
    """Strips of tile rows of one level; each strip's 2x2 averages go to the next level first."""
    for start in range(0, height, tile):
        stop = min(start + tile, height)
        strip = rows(start, stop)
        if below is not None:
            pairs = (min(stop, 2 * below.height) - start) // 2
            if pairs > 0:
                below.append(_halve(strip, pairs, below.width))
        strip[~np.isfinite(strip)] = 0  # STIFF's BADPIXEL_REPLACEMENT default
        yield strip


def _ahead(items: Iterator[np.ndarray]) -> Generator[np.ndarray, None, None]:
    """Make the next strip in a thread while tifffile's workers compress the current one."""
    slot: queue.Queue[tuple[np.ndarray | None, BaseException | None]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: tuple[np.ndarray | None, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                slot.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((None, None))  # the end
        except BaseException as exc:  # handed to the consumer, raised there
            put((None, exc))

    worker = threading.Thread(target=produce, name="pyiip-convert-strips", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = slot.get()
            if item is None:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        worker.join()


def _level_tiles(
    strips: Iterator[np.ndarray], width: int, tile: int, advance: Callable[[int], None]
) -> Iterator[np.ndarray]:
    """Row-major tiles, cut from the strips (tifffile pads the edge tiles)."""
    for strip in strips:
        advance(strip.shape[0])
        for x in range(0, width, tile):
            yield strip[:, x : x + tile]


# --- Entry point ----------------------------------------------------------------------------


def _compression(name: str) -> tuple[int, dict, int | None]:
    """TIFF compression code, encoder arguments and predictor for a user's name."""
    key = name.lower().strip()
    if key not in _COMPRESSION:
        raise ConvertError(f"unknown compression {name!r} (choose from {', '.join(_COMPRESSION)})")
    code = _COMPRESSION[key]
    if code == 1:
        return 1, {}, None
    import imagecodecs

    codec = getattr(imagecodecs, _CODEC[code], None)
    if codec is None or not codec.available:
        raise ConvertError(f"compression {name!r} is not available in this imagecodecs build")
    # Float noise barely compresses harder at higher levels; the floating-point predictor
    # (libtiff's PREDICTOR_FLOATINGPOINT) gains more, for little time.
    args = {"level": 1} if code == 8 else {}
    return code, args, 3


def _temp_path(directory: Path, name: str, suffix: str) -> Path:
    """A new hidden file next to the output (same filesystem, so the final rename is atomic)."""
    for _ in range(100):
        path = directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise ConvertError(f"cannot create a temporary file in {directory}")


def convert(
    inputs: Sequence[Path | tuple[Path, int]],
    output: Path,
    *,
    tile: int = 256,
    compression: str = "deflate",
    min_size: int = 256,
    progress: bool = True,
) -> None:
    """Write ``output`` as a VisiOmatic-ready float32 pyramidal BigTIFF cube from FITS ``inputs``.

    Each 2-D input is one channel (all the same size); a 3-D input gives one channel per
    plane. An input is a file (its first image HDU) or a (file, HDU number) pair. The
    header of the first input is the one copied. ``compression`` is "deflate", "lzw",
    "zstd" or "none". Raises ``ConvertError`` on bad input; no partial output is left.
    """
    sources = [(Path(p[0]), p[1]) if isinstance(p, tuple) else (Path(p), None) for p in inputs]
    paths = [path for path, _ in sources]
    output = Path(output)
    if not paths:
        raise ConvertError("no input FITS file given")
    if tile < 16 or tile % 16:
        raise ConvertError(f"tile size must be a positive multiple of 16, not {tile}")
    if min_size < 1:
        raise ConvertError(f"min_size must be at least 1, not {min_size}")
    code, codec_args, predictor = _compression(compression)
    directory = output.parent if str(output.parent) else Path(".")
    if not directory.is_dir():
        raise ConvertError(f"{directory}: output directory does not exist")
    if output.exists() and any(output.resolve() == p.resolve() for p in paths if p.exists()):
        raise ConvertError(f"{output}: the output would overwrite an input")

    opened: list[_Input] = []
    temps: list[Path] = []
    raws: list[_RawRows] = []
    try:
        for path, hdu in sources:
            opened.append(_open_input(path, hdu))
        width, height = opened[0].width, opened[0].height
        for item in opened[1:]:
            if (item.width, item.height) != (width, height):
                raise ConvertError(
                    f"{item.path}: image is {item.width} x {item.height}, "
                    f"but {opened[0].path} is {width} x {height}; all inputs must be the same size"
                )
        channels = _channels(opened)
        nchan = len(channels)
        cuts = _sample_cuts(channels, width, height)
        header = _header(opened[0], width, height, [c.label for c in channels])
        sizes = _level_sizes(width, height, min_size)

        partial = _temp_path(directory, output.name, ".partial")
        temps.append(partial)

        def make_raw(w: int, h: int) -> _RawRows:
            path = _temp_path(directory, output.name, ".level.tmp")
            temps.append(path)
            raws.append(_RawRows(path, w, h, nchan))
            return raws[-1]

        _write(partial, output.name, channels, sizes, header, cuts, make_raw,
               tile=tile, code=code, codec_args=codec_args, predictor=predictor, progress=progress)  # fmt: skip
        os.replace(partial, output)
        temps.remove(partial)
    except ConvertError:
        raise
    except OSError as exc:
        raise ConvertError(f"cannot write {output}: {exc.strerror or exc}") from exc
    finally:
        for raw in raws:
            raw.close()
        for path in temps:
            with contextlib.suppress(OSError):
                path.unlink()
        for item in opened:
            item.close()


def _write(
    path: Path,
    name: str,
    channels: list[_Channel],
    sizes: list[tuple[int, int]],
    header: fits.Header,
    cuts: list[tuple[float, float]],
    make_raw: Callable[[int, int], _RawRows],
    *,
    tile: int,
    code: int,
    codec_args: dict,
    predictor: int | None,
    progress: bool,
) -> None:
    """All levels into one BigTIFF; level k+1 is read back from the averages level k wrote."""
    import tifffile
    from tqdm import tqdm

    nchan = len(channels)
    width, height = sizes[0]
    extratags = [
        (_SMIN, "d", nchan, [lo for lo, _ in cuts], False),
        (_SMAX, "d", nchan, [hi for _, hi in cuts], False),
    ]
    options: dict[str, Any] = dict(
        dtype=np.float32,
        tile=(tile, tile),
        photometric="minisblack",
        planarconfig="contig",
        extrasamples=["unspecified"] * (nchan - 1) if nchan > 1 else None,
        compression=code if code != 1 else None,
        compressionargs=codec_args or None,
        predictor=predictor,
        metadata=None,
        software="pyiip",
        extratags=extratags,
        maxworkers=max(1, min(os.cpu_count() or 1, 8)),
        buffersize=max(1 << 24, tile * tile * nchan * 4 * 16),
    )
    total = sum(h for _, h in sizes)
    with (
        tqdm(total=total, unit="row", desc=name, file=sys.stderr, disable=not progress) as bar,
        tifffile.TiffWriter(path, bigtiff=True) as tif,
    ):
        rows = _fits_rows(channels, height, width)
        source: _RawRows | None = None
        steps: list[tuple[int, int]] = []
        for level, size in enumerate(sizes):
            below = make_raw(*sizes[level + 1]) if level + 1 < len(sizes) else None
            strips = _ahead(_level_strips(rows, size[1], tile, below))
            tiles = _level_tiles(strips, size[0], tile, bar.update)
            if nchan == 1:
                tiles = (t[:, :, 0] for t in tiles)
            shape = (size[1], size[0], nchan) if nchan > 1 else (size[1], size[0])
            description = _cards(header if level == 0 else _level_header(header, size[0], size[1], steps))
            try:
                tif.write(tiles, shape=shape, description=description, subfiletype=1 if level else 0, **options)
            finally:
                strips.close()  # stops the producer thread, also when tifffile failed
            if source is not None:
                source.close()  # its level is written: free the disk space now
            if below is not None:
                steps.append((size[1], below.height))
                rows = below.rows
            source = below
