"""``pyiip pyramid``: any image libvips reads to a tiled pyramidal BigTIFF, its bit depth kept.

8-bit images get JPEG tiles by default (what IIIF clients fetch, sent without re-encoding);
deeper ones (16-bit, float) and those with an alpha channel get deflate, which is lossless and
keeps everything: JPEG and WebP hold 8-bit samples only, and JPEG no alpha, so asking for them
on such data is refused instead of silently dropping the low bits or the transparency.
Every problem is one line naming the file and the reason, never libvips' raw error dump.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from pyiip.read.formats import FITS_SUFFIXES
from pyiip.tools import atomic, options
from pyiip.tools.options import OptionError
from pyiip.tools.progress import vips_bar

if TYPE_CHECKING:  # imported lazily: the command line starts without libvips
    import pyvips

__all__ = ["COMPRESSIONS", "PyramidError", "make_pyramid"]

COMPRESSIONS = ("jpeg", "webp", "deflate", "lzw", "none")  # pyvips-binary's libtiff has no zstd
LOSSY = ("jpeg", "webp")  # 8-bit samples only; --quality is theirs
DEFAULT_QUALITY = 90
_DEPTHS = {"char": "signed 8-bit", "ushort": "16-bit", "short": "signed 16-bit", "uint": "32-bit",
           "int": "signed 32-bit", "float": "32-bit float", "double": "64-bit float"}  # fmt: skip
# What starts libvips' error lines: the reporting part's name ("VipsJpeg: ", "vips2tiff: ", a file name).
_SOURCE = re.compile(r"^[^ :]+: ")
_SYSTEM = "system error: "


class PyramidError(Exception):
    """The input cannot be read or the output written; the message is meant for the user."""


def make_pyramid(
    source: Path,
    target: Path,
    *,
    tile: int | str = 256,
    compression: str | None = None,
    quality: int | str = DEFAULT_QUALITY,
    progress: bool = False,
) -> str:
    """Write ``target`` from ``source``, whole or not at all; return the compression used.

    ``compression`` None picks by bit depth (above). Raises OptionError for a mistake in the
    arguments (exit status 2 on the command line), PyramidError when libvips fails.
    """
    import pyvips

    tile, quality = options.tile(tile), options.quality(quality)
    if compression is not None:
        compression = options.choice("--compression", compression, COMPRESSIONS)
    _check_paths(source, target)
    if source.name.lower().endswith(FITS_SUFFIXES):
        raise OptionError(f"{source}: FITS images become a pyramidal cube with pyiip convert, not pyramid")
    try:
        # fail_on: a truncated or corrupt input fails, instead of a pyramid with grey where data was missing.
        image = pyvips.Image.new_from_file(str(source), access="sequential", fail_on="truncated")
    except pyvips.Error as exc:
        raise PyramidError(f"cannot read {source}: {reason(exc)}") from None
    deep, alpha = image.format != "uchar", image.hasalpha()
    chosen = compression or ("deflate" if deep or alpha else "jpeg")
    if deep and chosen in LOSSY:
        raise OptionError(
            f"--compression {chosen} stores 8-bit samples and {source} has {_DEPTHS.get(image.format, image.format)}"
            " samples: use deflate or lzw (lossless; deflate is the default for such images)"
        )
    if alpha and chosen == "jpeg":
        raise OptionError(
            f"--compression jpeg has no alpha channel and {source} has one: use webp, or deflate or lzw (lossless;"
            " deflate is the default for such images)"
        )
    extra = {"Q": quality} if chosen in LOSSY else {}
    try:
        with atomic.replacing(target) as partial, vips_bar(image, target.name, progress):
            image.tiffsave(str(partial), tile=True, pyramid=True, tile_width=tile, tile_height=tile,
                           compression=chosen, bigtiff=True, **extra)  # fmt: skip
    except pyvips.Error as exc:
        raise PyramidError(f"cannot convert {source} to {target}: {reason(exc)}") from None
    except OSError as exc:  # the final rename
        raise PyramidError(f"cannot write {target}: {exc.strerror or exc}") from None
    return chosen


def _check_paths(source: Path, target: Path) -> None:
    """What libvips would otherwise find out late, with a traceback or a half-written file."""
    if not source.exists():
        raise OptionError(f"{source}: no such file")
    if not source.is_file():
        raise OptionError(f"{source}: not a file")
    if target.is_dir():
        raise OptionError(f"{target} is a directory: name the output file, e.g. {target / source.stem}.tif")
    directory = target.parent
    if not directory.is_dir():
        raise OptionError(f"{directory}: output directory does not exist")
    if target.exists() and target.resolve() == source.resolve():
        raise OptionError(f"{target}: the output would overwrite the input")


def reason(exc: pyvips.Error) -> str:
    """libvips' error as one line: its first reported problem, and the system's reason when it gave one.

    ``str(exc)`` is "unable to call tiffsave" followed by every line libvips logged (the same
    failure repeated per thread, the file name as a Python bytes literal).
    """
    lines = [line.strip() for line in (exc.detail or "").splitlines() if line.strip()]
    problems = [_SOURCE.sub("", line) for line in lines if not line.startswith(_SYSTEM)]
    if not problems:
        return re.sub(r"b'(.*?)'", r"\1", exc.message or "libvips failed").strip()
    system = next((line.removeprefix(_SYSTEM) for line in lines if line.startswith(_SYSTEM)), "")
    system = "" if system.startswith("Unknown error") else system  # libtiff's -1: no reason given
    return f"{problems[0]} ({system})" if system else problems[0]
