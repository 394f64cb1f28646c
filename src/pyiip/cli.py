"""The ``pyiip`` command: serve, fcgi, render, warm; demo-data, convert and pyramid come from tools.commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pyiip.server import options
from pyiip.tools.commands import add_parsers


def _root(directory: str | None) -> None:
    """--root is FILESYSTEM_PREFIX, given as a directory."""
    if directory:
        os.environ["FILESYSTEM_PREFIX"] = os.path.abspath(directory) + os.sep


def _serve(args: argparse.Namespace) -> int:
    from pyiip.server import serve

    _root(args.root)
    try:
        return serve.run(args.host, args.port, args.workers)
    except options.StartError as exc:
        return exc.report("pyiip serve")


def _fcgi(args: argparse.Namespace) -> int:
    from pyiip.server import fcgi

    _root(args.root)
    try:
        return fcgi.run(args.bind, args.backlog, args.mode, args.workers)
    except options.StartError as exc:
        return exc.report("pyiip fcgi")


def _render(args: argparse.Namespace) -> int:
    """iipsrv's debug mode as a command: one query in, the reply body out."""
    from pyiip import config
    from pyiip.http import Request
    from pyiip.respond.app import Application

    _root(args.root)
    app = Application(config.load())
    path, _, query = args.request.partition("?") if args.request.startswith("/") else ("/", "", args.request)
    response = app.respond(Request("GET", path, query))
    print(f"{response.status} {response.content_type} {len(response.body)} bytes", file=sys.stderr)
    if args.output:
        Path(args.output).write_bytes(response.body)
    else:
        sys.stdout.buffer.write(response.body)
    return 0 if response.status < 400 else 1


def _warm(args: argparse.Namespace) -> int:
    """Pre-render tiles into memcached (see warm.py)."""
    from pyiip import config
    from pyiip.errors import HTTPError
    from pyiip.tools.warm import WarmError, warm

    _root(args.root)
    try:
        settings = config.load()
        failed = 0
        for image in args.images:
            report = warm(settings, image, args.levels, progress=not args.quiet)
            print(f"{image}: {report}", file=sys.stderr)
            failed += report.failed
    except (config.ConfigError, WarmError, HTTPError) as exc:
        print(f"pyiip warm: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    """The ``pyiip`` command line: one subcommand each."""
    parser = options.Parser(
        prog="pyiip", description="IIP and IIIF image server for very large images (settings: iipsrv's variables)"
    )
    options.version(parser)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="HTTP server: one single-threaded process per core")
    options.serve_arguments(p)
    p.set_defaults(run=_serve)

    p = commands.add_parser("fcgi", help="FastCGI responder (fd 0, --bind, or systemd socket)")
    options.fcgi_arguments(p)
    options.root(p)
    p.set_defaults(run=_fcgi)

    add_parsers(commands)  # demo-data, convert, pyramid

    p = commands.add_parser("render", help="answer one request offline (debugging, profiling)")
    p.add_argument("request", help="an IIP query (FIF=...&JTL=...) or a path such as /iiif/3/id/full/max/0/default.jpg")
    p.add_argument("-o", "--output", help="write the body here (default: stdout)")
    p.add_argument("--root", help="image directory (sets FILESYSTEM_PREFIX)")
    p.set_defaults(run=_render)

    p = commands.add_parser("warm", help="pre-render the tiles of chosen levels into memcached")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="identifier, as in FIF= (under FILESYSTEM_PREFIX)")
    p.add_argument("--levels", help="IIP resolutions, 0 = smallest: e.g. 0-4 or 0,1,2 (default: all)")
    p.add_argument("--root", help="image directory (sets FILESYSTEM_PREFIX)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_warm)

    return parser


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    sys.exit(args.run(args))
