"""The HTML pages: the viewer with the index of served images, and iipsrv's banner."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from pyiip import __version__
from pyiip.http import Request, Response
from pyiip.read.image import SUFFIXES as IMAGE_SUFFIXES
from pyiip.resolve.local import Resolver
from pyiip.respond import static_files
from pyiip.service import Service

IIP_ENDPOINT = "/fcgi-bin/iipsrv.fcgi"
LEAFLET_JS = "vendor/leaflet/leaflet.js"
LEAFLET_CSS = "vendor/leaflet/leaflet.css"
MISSING_LEAFLET = '<p class="error">The viewer\'s Leaflet is not built: run <code>make install</code>.</p>'
PAGE_SIZE = 1000  # images linked per page: the page stays small whatever the image root holds
MAX_PAGE = 10**7  # beyond any page: the last one is shown
# A directory changed this recently is read again: on coarse timestamps (1 s, 2 s on FAT) a later
# change within the same tick would keep the mtime the listing was read with.
SETTLED_NS = 2_000_000_000
LISTINGS = 8  # (root, prefix, suffix) listings kept: one per settings in practice
_MAGIC = (
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00",
    b"MM\x00+",
    b"\xff\xd8\xff",
    b"\x89PNG",
    b"\x00\x00\x00\x0cjP",
    b"\xff\x4f\xff\x51",
)
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


def _starts_like_an_image(path: str) -> bool:
    """An extension-less file that is an image by its first bytes (IIIF ids are often bare names).

    Opened without blocking and without following a link, then checked to be
    a regular file before any read: a FIFO or device swapped in since the
    listing looked is never waited on.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, 6).startswith(_MAGIC)
    except OSError:
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class _Directory:
    """What one directory holds, as of its mtime: the identifiers of its images, and sub-directories to descend."""

    mtime_ns: int
    identifiers: tuple[str, ...]
    subdirs: tuple[str, ...]


class Listing:
    """The identifiers of the image files under the image root, for the index page.

    Each directory is read with ``lstat`` semantics (``os.scandir`` entries,
    links not followed): regular files only; a symbolic link is resolved and
    must lie inside the root and name a regular file before anything opens
    it; symlinked directories are not descended; extension-less files are
    opened (non-blocking) only once they are known to be regular and inside.
    A directory's entries are kept with its mtime, which any entry added,
    removed or renamed changes: a later listing costs one ``stat`` per
    directory, not one read of each (a file that becomes an image by its
    bytes alone shows once its directory changes). A directory changed in
    the last SETTLED_NS is read every time until it settles.
    """

    def __init__(self, resolver: Resolver, suffixes: tuple[str, ...]) -> None:
        prefix = resolver.prefix or resolver.root + os.sep
        self.base = os.path.abspath(prefix) + (os.sep if prefix.endswith(os.sep) else "")
        self.inside = resolver._inside  # the resolver's own containment rule
        self.suffix = resolver.suffix
        self.suffixes = suffixes
        self._directories: dict[str, _Directory] = {}

    def identifiers(self) -> list[str]:
        """Every listed identifier: sorted directories, sorted files, as ``os.walk`` would give them."""
        found: list[str] = []
        seen: dict[str, _Directory] = {}
        pending = [os.path.dirname(self.base)]
        while pending:
            path = pending.pop()
            directory = self._directory(path)
            if directory is None:
                continue
            seen[path] = directory
            found += directory.identifiers
            pending += (os.path.join(path, name) for name in reversed(directory.subdirs))
        self._directories = seen  # directories gone since are forgotten
        return found

    def _directory(self, path: str) -> _Directory | None:
        try:
            mtime_ns = os.stat(path).st_mtime_ns
        except OSError:
            return None
        known = self._directories.get(path)
        if known is not None and known.mtime_ns == mtime_ns and time.time_ns() - mtime_ns > SETTLED_NS:
            return known
        try:
            return self._read(path, mtime_ns)
        except OSError:
            return None

    def _read(self, path: str, mtime_ns: int) -> _Directory:
        files: list[str] = []
        subdirs: list[str] = []
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith("."):
                        subdirs.append(entry.name)
                elif entry.path.startswith(self.base) and self._is_image(entry):
                    files.append(entry.name)
        identifiers = (self._identifier(os.path.join(path, name)) for name in sorted(files))
        return _Directory(mtime_ns, tuple(i for i in identifiers if i is not None), tuple(sorted(subdirs)))

    def _is_image(self, entry: os.DirEntry[str]) -> bool:
        """A regular file (or a link to one inside the root) with an image suffix or image bytes."""
        target = entry.path
        if entry.is_symlink():
            target = os.path.realpath(target)
            if not self.inside(target):
                return False
            try:
                if not stat.S_ISREG(os.stat(target).st_mode):
                    return False
            except OSError:
                return False
        elif not entry.is_file(follow_symlinks=False):
            return False  # FIFOs, sockets, devices
        name = entry.name
        if name.lower().endswith(self.suffixes):
            return True
        return "." not in name and _starts_like_an_image(target)

    def _identifier(self, full: str) -> str | None:
        """What, put between prefix and suffix, names the file; None when the suffix does not fit."""
        identifier = full[len(self.base) :]
        if not self.suffix:
            return identifier
        return identifier[: -len(self.suffix)] if identifier.endswith(self.suffix) else None


_LISTINGS: dict[tuple[str, str, str], Listing] = {}


def listing(resolver: Resolver) -> Listing:
    """The listing of this resolver's root, prefix and suffix, kept between requests."""
    key = (resolver.root, resolver.prefix, resolver.suffix)
    found = _LISTINGS.get(key)
    if found is None:
        if len(_LISTINGS) >= LISTINGS:
            _LISTINGS.clear()
        found = _LISTINGS[key] = Listing(resolver, IMAGE_SUFFIXES)
    return found


def images(service: Service) -> list[str]:
    """Identifiers of the servable images; none for images in object storage (not listed)."""
    if service.resolver.remote is not None:
        return []
    return listing(service.resolver).identifiers()


def _row(identifier: str) -> str:
    """One image: its viewer link, IIP and IIIF links.

    A name that is not valid UTF-8 (kept by the filesystem as bytes, here as
    surrogates) is shown with its odd bytes as ``\\xNN`` and not linked to
    the viewer, which works on text; its IIP and IIIF links carry the bytes
    percent-encoded, which both protocols decode back to the file's name.
    """
    raw = identifier.encode("utf-8", "surrogateescape")
    shown = escape(raw.decode("utf-8", "backslashreplace"))
    fif = quote(raw, safe="/")
    iiif = quote(raw, safe="")
    text = raw.decode("utf-8", "replace") == identifier  # valid UTF-8: no surrogate stood for a byte
    name = f'<a class="image" href="/viewer.html?image={iiif}">{shown}</a>' if text else shown
    return (
        f"<li>{name}"
        f' <a href="{IIP_ENDPOINT}?FIF={fif}&amp;OBJ=IIP,1.0&amp;OBJ=Max-size&amp;OBJ=Tile-size'
        f'&amp;OBJ=Resolution-number">IIP</a>'
        f' <a href="/iiif/3/{iiif}/info.json">IIIF 3</a>'
        f' <a href="/iiif/2/{iiif}/info.json">IIIF 2</a></li>'
    )


def page_number(query: str) -> int:
    """``page=N`` (1-based) from the query, bounded before conversion; anything else is the first page."""
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "page" and value.isascii() and value.isdigit():
            return max(1, int(value) if len(value) <= 7 else MAX_PAGE)
    return 1


def _pager(path: str, number: int, pages: int) -> str:
    """Links to the previous and next pages, when there are several."""
    if pages <= 1:
        return ""
    links = [f'<a href="{path}?page={number - 1}">previous</a>'] if number > 1 else []
    links.append(f"page {number} of {pages}")
    if number < pages:
        links.append(f'<a href="{path}?page={number + 1}">next</a>')
    return '<p class="pages">' + " · ".join(links) + "</p>"


def page(service: Service, request: Request) -> Response:
    """The viewer: the servable images linked by their identifiers (PAGE_SIZE a page), and a deep-zoom view of one."""
    found = images(service)
    pages = max(1, -(-len(found) // PAGE_SIZE))
    number = min(page_number(request.query), pages)
    shown = found[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    rows = "\n".join(_row(identifier) for identifier in shown) or "<li>No images under the image root.</li>"
    pager = _pager(request.path, number, pages)
    missing = "" if static_files.available(LEAFLET_JS) else MISSING_LEAFLET
    static = static_files.url
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>pyiip viewer</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="{static(LEAFLET_CSS)}"><link rel="stylesheet" href="{static("viewer.css")}">
</head>
<body data-iip="{IIP_ENDPOINT}" data-version="{__version__}">
<div id="app">
<aside id="panel">
<header><h1>pyiip <small>{__version__}</small></h1>
<button id="panel-toggle" type="button" aria-controls="panel-body" aria-expanded="true">Hide</button></header>
<div id="panel-body">
<section><h2>{len(found)} image(s)</h2>
<ul id="images">
{rows}
</ul>{pager}
<p class="note">IIP at <code>{IIP_ENDPOINT}?FIF=&lt;identifier&gt;</code>,
IIIF at <code>/iiif/3/&lt;identifier&gt;/info.json</code> and <code>/iiif/2/...</code>.</p></section>
<section id="info"></section>
<section id="controls"></section>
<section id="header"></section>
</div>
</aside>
<main id="map" aria-label="image view">{missing}</main>
</div>
<script src="{static(LEAFLET_JS)}" defer></script>
<script src="{static("wcs.js")}" defer></script><script src="{static("iip.js")}" defer></script>
<script src="{static("viewer.js")}" defer></script>
</body></html>
"""
    return Response(200, html.encode(), "text/html; charset=utf-8", cacheable=False)


def banner() -> Response:
    """What iipsrv answers to an empty query."""
    html = (
        "<!doctype html><html><head><title>pyiip</title></head><body>"
        f"<h1>pyiip {__version__}</h1><p>An IIP and IIIF image server. "
        f"Request images with <code>?FIF=&lt;image&gt;&amp;JTL=&lt;res&gt;,&lt;tile&gt;</code>.</p>"
        '<p><a href="/">Served images</a></p></body></html>'
    )
    return Response(200, html.encode(), "text/html; charset=utf-8", cacheable=False)
