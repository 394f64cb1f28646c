"""The viewer's static files (``/static/...``), never anything outside ``pyiip/static``.

Only regular files with a known suffix are served, looked up after
percent-decoding; dot segments, hidden names, backslashes and NULs are
refused before the filesystem is touched, and the resolved path (symbolic
links followed) must still lie inside the static directory. Text files are
gzipped for clients that accept it.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

from pyiip.http import Request, Response, text

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"  # pyiip/static, beside the packages
PREFIX = "/static/"
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = (".js", ".css", ".html", ".json", ".map", ".svg", ".txt")
MAX_PATH = 512


def resolve(relative: str, root: Path = STATIC_DIR) -> Path | None:
    """The file a decoded relative path names under ``root``, or None if it is not a servable file."""
    if not relative or len(relative) > MAX_PATH or "\x00" in relative or "\\" in relative:
        return None
    parts = relative.split("/")
    if any(not part or part.startswith(".") for part in parts):
        return None
    if Path(parts[-1]).suffix.lower() not in TYPES:
        return None
    try:
        path = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        return None
    return path


@lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int, size: int) -> tuple[bytes, bytes]:
    """The file's bytes and their gzip encoding, cached per version of the file."""
    data = path.read_bytes()
    packed = gzip.compress(data, 6, mtime=0) if path.suffix.lower() in COMPRESSIBLE else data
    return data, packed


def serve(request: Request) -> Response:
    """Answer ``/static/<path>``: 404 for anything that is not a servable file."""
    raw = request.path[len(PREFIX) :] if request.path.startswith(PREFIX) else ""
    try:
        path = resolve(unquote(raw, errors="strict"))
    except UnicodeDecodeError:
        path = None
    if path is None:
        return text(404, "not found")
    stat = path.stat()
    data, packed = _load(path, stat.st_mtime_ns, stat.st_size)
    headers = [("Vary", "Accept-Encoding")] if packed is not data else []
    if packed is not data and "gzip" in request.header("accept-encoding").lower() and len(packed) < len(data):
        headers.append(("Content-Encoding", "gzip"))
        data = packed
    return Response(200, data, TYPES[path.suffix.lower()], headers=headers, mtime=stat.st_mtime)


def available(relative: str) -> bool:
    """True when a static file exists (the vendored Leaflet is built at install time)."""
    return resolve(relative) is not None


def url(relative: str) -> str:
    """The file's URL, versioned by its modification time so that cached copies never go stale."""
    path = resolve(relative)
    return PREFIX + relative + (f"?v={int(path.stat().st_mtime)}" if path is not None else "")
