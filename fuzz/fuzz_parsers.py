"""Coverage-guided fuzzing of every request parser (IIP, IIIF, DeepZoom, Zoomify) through the WSGI app.

An input is an HTTP request head as text: ``METHOD target`` then optional
``Name: value`` header lines. Whatever it is, the reply must be well formed
(a status line, headers without line breaks, a Content-Length that matches)
and never a 500; error texts never name the image root.

    .venv/bin/python fuzz/fuzz_parsers.py -max_total_time=60 fuzz/corpus/parsers
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import seeds

_STATE: dict = {}


def setup(instrument: bool = False) -> None:
    """Build the application over a generated image root; instrument pyiip's code for atheris if asked."""
    import numpy  # noqa: F401 - imported (uninstrumented) before pyiip
    import pyvips  # noqa: F401
    import tifffile  # noqa: F401

    config, app_module = seeds.import_pyiip(instrument, "pyiip.config", "pyiip.respond.app")
    root = seeds.image_root()
    settings = config.load(
        {"FILESYSTEM_PREFIX": f"{root}/", "VERBOSITY": "0", "MAX_REQUEST_MEMORY": "64", "MAX_IMAGE_CACHE_SIZE": "1"}
    )
    _STATE.update(app=app_module.Application(settings), root=str(root))


def environ_of(data: bytes) -> dict:
    text = data.decode("latin-1")
    line, _, rest = text.partition("\n")
    method, _, target = line.strip("\r").partition(" ")
    environ = {
        "REQUEST_METHOD": method or "GET",
        "REQUEST_URI": target,
        "QUERY_STRING": target.partition("?")[2],
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
    }
    for header in rest.split("\n"):
        name, colon, value = header.partition(":")
        if colon and name.strip():
            environ["HTTP_" + name.strip().upper().replace("-", "_")] = value.strip()
    return environ


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris and libFuzzer use
    app = _STATE["app"]
    environ = environ_of(data)
    replies: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(app(environ, lambda status, headers: replies.append((status, headers))))
    status, headers = replies[0]
    code = int(status[:3])
    if not (100 <= code < 600 and status[3] == " "):
        raise AssertionError(f"malformed status line {status!r}")
    if code == 500:
        raise AssertionError(f"500 for {data!r}")
    for name, value in headers:
        if any(c in name + value for c in "\r\n\0"):
            raise AssertionError(f"line break in header {name!r}: {value!r}")
    length = next((v for k, v in headers if k == "Content-Length"), None)
    head = environ["REQUEST_METHOD"].upper() == "HEAD"  # the app reads methods case-insensitively
    if length is not None and not head and int(length) != len(body):
        raise AssertionError("Content-Length does not match the body")
    if code >= 400 and _STATE["root"].encode() in body:
        raise AssertionError(f"error reply names the image root: {body[:200]!r}")


def write_seeds(directory: Path) -> None:
    seeds.write_corpus(directory, {f"{i:02d}": r.encode("latin-1") for i, r in enumerate(seeds.SEED_REQUESTS)})


if __name__ == "__main__":
    seeds.fuzz(setup, write_seeds, TestOneInput)
