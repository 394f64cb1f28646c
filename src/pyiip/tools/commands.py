"""The offline image commands of ``pyiip``: demo-data, convert and pyramid, their options and exit statuses.

Exit status 2 and one line naming the option for a mistake on the command line (a bad value,
a missing input, an output that cannot be one); 1 and one line when the input cannot be
converted; 0 on success. A progress bar shows only on a terminal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from pyiip.tools import options
from pyiip.tools.options import OptionError
from pyiip.tools.progress import wanted
from pyiip.tools.pyramid import COMPRESSIONS, DEFAULT_QUALITY, PyramidError, make_pyramid

TIFF_SUFFIXES = (".tif", ".tiff")
CONVERT_COMPRESSIONS = ("deflate", "zstd", "lzw", "none")
DEMO_SIZE, DEMO_SIZE_MIN, DEMO_SIZE_MAX = 6144, 64, 65536


def _failed(command: str, message: object, status: int) -> int:
    print(f"pyiip {command}: {message}", file=sys.stderr)
    return status


def _demo(args: argparse.Namespace) -> int:
    from pyiip.tools.convert import ConvertError
    from pyiip.tools.demo import write_demo_data

    try:
        size = options.integer("--size", args.size, DEMO_SIZE_MIN, DEMO_SIZE_MAX)
    except OptionError as exc:
        return _failed("demo-data", exc, 2)
    try:
        paths = write_demo_data(Path(args.directory), size=size, progress=wanted(args.quiet))
    except ConvertError as exc:
        return _failed("demo-data", exc, 1)
    except OSError as exc:
        return _failed("demo-data", f"cannot write {exc.filename or args.directory}: {exc.strerror or exc}", 1)
    for path in paths:
        print(path)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from pyiip.tools.convert import ConvertError, convert

    output = Path(args.output)
    try:
        if not output.name.lower().endswith(TIFF_SUFFIXES):
            raise OptionError(f"{output}: the output is a pyramidal TIFF, its name must end in .tif or .tiff")
        tile = options.tile(args.tile)
        compression = options.choice("--compression", args.compression, CONVERT_COMPRESSIONS)
    except OptionError as exc:
        return _failed("convert", exc, 2)
    try:
        convert([Path(p) for p in args.inputs], output, tile=tile, compression=compression,
                progress=wanted(args.quiet))  # fmt: skip
    except ConvertError as exc:
        return _failed("convert", exc, 1)
    return 0


def _pyramid(args: argparse.Namespace) -> int:
    try:
        make_pyramid(Path(args.input), Path(args.output), tile=args.tile, compression=args.compression,
                     quality=args.quality, progress=wanted(args.quiet))  # fmt: skip
    except OptionError as exc:
        return _failed("pyramid", exc, 2)
    except PyramidError as exc:
        return _failed("pyramid", exc, 1)
    return 0


def _command(commands: argparse._SubParsersAction, name: str, run: Callable[[argparse.Namespace], int],
             text: str) -> argparse.ArgumentParser:  # fmt: skip
    parser = commands.add_parser(name, help=text, description=text)
    parser.add_argument("--quiet", action="store_true", help="no progress bar (none is shown unless on a terminal)")
    parser.set_defaults(run=run)
    return parser


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Add demo-data, convert and pyramid to ``pyiip``'s subcommands.

    Values are taken as text and checked by tools.options, so every mistake gets the same one
    line and exit status 2 whatever argparse would have printed.
    """
    p = _command(commands, "demo-data", _demo, "write the demo astronomy cube, RGB pyramid and FITS example")
    p.add_argument("directory", help="where to write them (made if missing)")
    p.add_argument("--size", default=str(DEMO_SIZE), help=f"image edge in pixels (default: {DEMO_SIZE})")

    p = _command(commands, "convert", _convert, "FITS image(s) to a tiled pyramidal float32 BigTIFF cube")
    p.add_argument("inputs", nargs="+", metavar="IN.fits", help="2-D images (one channel each) or a 3-D cube")
    p.add_argument("output", metavar="OUT.tif", help="the cube to write (.tif or .tiff)")
    p.add_argument("--tile", default="256", help="tile edge, 16 to 4096, a multiple of 16 (default: 256)")
    p.add_argument("--compression", default="deflate",
                   help=f"{', '.join(CONVERT_COMPRESSIONS)} (default: deflate)")  # fmt: skip

    p = _command(commands, "pyramid", _pyramid, "any image libvips reads to a tiled pyramidal TIFF")
    p.add_argument("input", help="a JPEG, PNG, TIFF, WebP... image")
    p.add_argument("output", help="the pyramidal TIFF to write")
    p.add_argument("--tile", default="256", help="tile edge, 16 to 4096, a multiple of 16 (default: 256)")
    p.add_argument("--compression", help=f"{', '.join(COMPRESSIONS)} (default: jpeg for 8-bit images, deflate "
                   "for deeper or transparent ones, whose bits or alpha JPEG would lose)")  # fmt: skip
    p.add_argument("--quality", default=str(DEFAULT_QUALITY),
                   help=f"JPEG and WebP quality, 1 to 100 (default: {DEFAULT_QUALITY})")  # fmt: skip
