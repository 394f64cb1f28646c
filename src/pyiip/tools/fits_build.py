"""The FITS cache's builder: one FITS file to its cube, run as a child process by resolve/fits_cache.py.

A process of its own, so that a build (astropy, a full read of the data) neither blocks a
server process nor grows it, and can be bounded: an address-space limit, a wall-time alarm,
and sizes checked from the header before any data are read (a hostile header cannot make it
allocate or write more than the limits). It holds the cube's lock, inherited from the server
process, until it exits. Usage (not for people)::

    python -m pyiip.tools.fits_build FITS BASE TIMEOUT MAX_REQUEST_MB CACHE_BYTES
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import resource
import signal
import sys
import time
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

from pyiip.tools.convert import ConvertError, convert

TILE = 256
# Uncompressed: a tile is then one pread, ~35x less CPU than inflating it, for ~1.4x the disk (docs/fits.md).
COMPRESSION = "none"
# A strip of TILE rows is held about this many times over during a build (the strip, its flipped
# channels, the 2x2 averages, the strip read ahead, tifffile's buffer): measured peak below 6x.
STRIP_COPIES = 8
ADDRESS_SPACE_EXTRA = 1024  # MB on top of MAX_REQUEST_MEMORY: Python, numpy, astropy and thread arenas
MAX_COMPRESSED_TILE = 1 << 24  # pixels of one tile of a tile-compressed HDU, decompressed whole
STALE_TEMP = 24 * 3600.0  # seconds: a temporary file this old is debris of a killed builder
LOW_WATER = 0.9  # eviction brings the total down to this fraction of FITS_CACHE_SIZE


class BuildRefused(Exception):
    """A FITS file the limits do not let us build; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 413) -> None:
        super().__init__(message)
        self.status = status


TIMEOUT_MESSAGE = "the FITS file takes longer than FITS_BUILD_TIMEOUT to prepare; convert it with pyiip convert"
_timed_out = False  # set by the alarm: whatever the exception became on its way up (astropy wraps some), it says why


def _timeout(_signum: int, _frame: FrameType | None) -> None:
    global _timed_out
    _timed_out = True
    raise BuildRefused(TIMEOUT_MESSAGE)


def choose_inputs(path: Path) -> tuple[list[tuple[Path, int]], list[int], str]:
    """The HDUs that make the cube, the first one's axes, and a note when image HDUs are left out.

    A cube (NAXIS3 > 1) is served alone; 2-D image HDUs of one size are one channel each;
    image HDUs of different sizes give the first one only. Only headers are read.
    """
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
                images = [(i, _axes(h.header)) for i, h in enumerate(hdul) if h.is_image and h.header.get("NAXIS")]
                tiles = [tuple(h.tile_shape) for h in hdul if isinstance(h, fits.CompImageHDU)]
        except BuildRefused:
            raise
        except Exception as exc:
            reason = str(exc).split(". ")[0].strip() or type(exc).__name__
            raise BuildRefused(f"not a readable FITS file ({reason})", 404) from None
    if not images:
        raise BuildRefused("no image data in this FITS file", 404)
    for shape in tiles:
        if math.prod(int(n) for n in shape) > MAX_COMPRESSED_TILE:
            raise BuildRefused(f"compression tiles of {' x '.join(map(str, shape))} pixels are too large")
    first, dims = images[0]
    if math.prod(dims[2:]) > 1 or len(images) == 1:
        return [(path, first)], dims, ""
    if all(axes == dims for _, axes in images):
        return [(path, i) for i, _ in images], dims, ""
    return [(path, first)], dims, f"image HDUs of different sizes: HDU {first} served alone"


def _axes(header: Any) -> list[int]:
    """NAXIS1.. of a header, checked to be sizes (an HDU of fewer than 2 axes is refused by convert)."""
    naxis = header.get("NAXIS", 0)
    if not isinstance(naxis, int) or not 0 <= naxis <= 999:
        raise BuildRefused("NAXIS is not a number of axes", 404)
    dims = [header.get(f"NAXIS{n}", 0) for n in range(1, naxis + 1)]
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        raise BuildRefused("an NAXISn is not a size", 404)
    return dims


def check_sizes(dims: list[int], inputs: int, max_request_bytes: int, cache_bytes: int) -> None:
    """Refuse before reading data: a build's memory and its cube's size follow from the header."""
    width, height = dims[0], dims[1] if len(dims) > 1 else 1
    channels = math.prod(dims[2:]) * inputs
    strip = TILE * width * channels * 4 * STRIP_COPIES
    if strip > max_request_bytes:
        raise BuildRefused(f"rows of {width} pixels x {channels} channels need more than MAX_REQUEST_MEMORY to build")
    padded = -(-width // TILE) * TILE * -(-height // TILE) * TILE  # whole tiles
    cube = padded * channels * 4 * 4 // 3  # float32, uncompressed, and its levels
    if cube > cache_bytes:
        raise BuildRefused(f"its cube ({cube >> 20} MB uncompressed) would not fit in FITS_CACHE_SIZE")


def trim(directory: str, max_bytes: int, keep: str) -> None:
    """Evict least recently used cubes (not ``keep``) past ``max_bytes``; remove old debris."""
    now = time.time()
    entries: list[tuple[float, int, str]] = []
    total = 0
    with os.scandir(directory) as listing:
        for entry in listing:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.name.startswith(".") or entry.name.endswith((".lock", ".error")):
                if now - st.st_mtime > STALE_TEMP:
                    _forget(entry.path)
            elif entry.name.endswith(".tif"):
                total += st.st_size
                if entry.path != keep:
                    entries.append((st.st_mtime, st.st_size, entry.path))
    entries.sort()
    for _mtime, size, path in entries:
        if total <= max_bytes * LOW_WATER:
            break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a process with it open keeps reading it; the next lookup rebuilds
        total -= size


def _forget(path: str) -> None:
    """Remove debris, a day-old error, or the lock of a day-old version with no cube and no build running."""
    if path.endswith(".lock"):
        if os.path.exists(path.removesuffix(".lock") + ".tif"):
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(path)  # held: a builder opening it meanwhile is refused the lock, or locks a new file
        except OSError:
            return
        finally:
            os.close(fd)
        return
    with contextlib.suppress(OSError):
        os.unlink(path)


def build(fits_path: Path, base: str, max_request_mb: int, cache_bytes: int) -> None:
    """Build ``base``.tif from the FITS file, or leave ``base``.error saying why not; then trim the cache."""
    try:
        inputs, dims, note = choose_inputs(fits_path)
        if note:
            print(f"pyiip: {fits_path.name}: {note}", file=sys.stderr)
        check_sizes(dims, len(inputs), max_request_mb << 20, cache_bytes)
        convert(inputs, Path(base + ".tif"), tile=TILE, compression=COMPRESSION, progress=False)
    except BuildRefused as exc:
        _failed(base, exc.status, str(exc), fits_path)
    except ConvertError as exc:
        _failed(base, 404, str(exc), fits_path)
    except MemoryError:
        _failed(base, 413, "the FITS file needs more memory than MAX_REQUEST_MEMORY allows to prepare", fits_path)
    except Exception as exc:  # anything else still answers, instead of a build started again per request
        _failed(base, 404, f"the FITS file cannot be prepared ({type(exc).__name__})", fits_path)
    trim(os.path.dirname(base), cache_bytes, base + ".tif")


def _failed(base: str, status: int, message: str, fits_path: Path) -> None:
    """The error a failed build leaves: a timeout says so, whatever exception it surfaced as."""
    if _timed_out:
        status, message = 413, TIMEOUT_MESSAGE
    _error(base, status, message, fits_path)


def _error(base: str, status: int, message: str, fits_path: Path) -> None:
    """Write ``base``.error atomically; the message names the file, never its directory."""
    message = message.replace(str(fits_path), fits_path.name).replace(os.path.dirname(base) + os.sep, "")
    temp = f"{os.path.dirname(base)}/.{os.path.basename(base)}.{os.getpid()}.error"
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump({"status": status, "message": f"{fits_path.name}: {message.removeprefix(fits_path.name + ': ')}"},
                  handle)  # fmt: skip
    os.replace(temp, base + ".error")


def main(argv: list[str]) -> int:
    """Build under the limits: address space, and a FITS_BUILD_TIMEOUT alarm that fails the build."""
    fits_path, base, timeout, max_request_mb, cache_bytes = argv
    limit = (int(max_request_mb) + ADDRESS_SPACE_EXTRA) << 20
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)  # the server's MAX_PROCESS_MEMORY is a soft limit
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(max(1, math.ceil(float(timeout))))
    build(Path(fits_path), base, int(max_request_mb), int(cache_bytes))
    signal.alarm(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
