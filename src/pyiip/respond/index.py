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
from pyiip.read import formats
from pyiip.resolve.local import Resolver
from pyiip.respond import static_files
from pyiip.service import Service

SHOWN_UNSERVED = 5  # FITS files no reader serves: their names shown on the page, the rest counted
IIP_ENDPOINT = "/fcgi-bin/iipsrv.fcgi"
LEAFLET_JS = "vendor/leaflet/leaflet.js"
LEAFLET_CSS = "vendor/leaflet/leaflet.css"
MISSING_LEAFLET = (
    '<p class="error">The viewer\'s Leaflet is missing from this installation. From a git checkout: run'
    " <code>make install</code> (or <code>make viewer</code>). Installed with pip: install npm, then reinstall"
    " pyiip from its source (<code>pip install --force-reinstall --no-deps .</code>) or from a wheel made by"
    " <code>make wheel</code>: the build puts Leaflet in, and stops when npm is missing.</p>"
)
PAGE_SIZE = 1000  # images linked per page: the page stays small whatever the image root holds
MAX_PAGE = 10**7  # beyond any page: the last one is shown
# A directory changed this recently is read again: on coarse timestamps (1 s, 2 s on FAT) a later
# change within the same tick would keep the mtime the listing was read with.
SETTLED_NS = 2_000_000_000
LISTINGS = 8  # (root, prefix, suffix) listings kept: one per settings in practice
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


def _starts_like(path: str, magic: tuple[bytes, ...]) -> bool:
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
        return stat.S_ISREG(os.fstat(fd).st_mode) and os.read(fd, formats.MAGIC_BYTES).startswith(magic)
    except OSError:
        return False
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class _Directory:
    """What one directory holds, as of its mtime: the identifiers of its images and of its FITS files, and
    sub-directories to descend."""

    mtime_ns: int
    identifiers: tuple[str, ...]
    unserved: tuple[str, ...]
    subdirs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Found:
    """A listing's result: the servable images, and the FITS files pyiip does not serve (yet)."""

    images: list[str]
    unserved: list[str]


class Listing:
    """The identifiers of the image files under the image root, for the index page.

    An image is a file with a served suffix (``suffixes``), or without a suffix and
    starting with a served type's first bytes (``magic``): what read/formats.py holds.
    FITS files that are not served are collected apart, for the page to say what to do.

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

    def __init__(self, resolver: Resolver, suffixes: tuple[str, ...], magic: tuple[bytes, ...] = ()) -> None:
        prefix = resolver.prefix or resolver.root + os.sep
        self.base = os.path.abspath(prefix) + (os.sep if prefix.endswith(os.sep) else "")
        self.inside = resolver._inside  # the resolver's own containment rule
        self.suffix = resolver.suffix
        self.suffixes = suffixes
        self.magic = magic
        self.unserved_suffixes = tuple(s for s in formats.FITS_SUFFIXES if not s.endswith(suffixes))
        self._directories: dict[str, _Directory] = {}

    def identifiers(self) -> list[str]:
        """Every listed identifier, folders first as file managers list them: a directory's
        subdirectories (sorted, each with its whole tree), then its files (sorted). So `make run`'s
        viewer opens on demo/cube.tif, ahead of the validator's image at the root."""
        return self.scan().images

    def scan(self) -> Found:
        """The images and the unserved FITS files, both in ``identifiers``' order (a stack, not
        recursion: a deep tree of directories cannot exhaust Python's stack)."""
        found = Found([], [])
        seen: dict[str, _Directory] = {}
        pending: list[tuple[str, _Directory | None]] = [(os.path.dirname(self.base), None)]
        while pending:
            path, listed = pending.pop()
            if listed is not None:  # its subdirectories are done: now its own files
                found.images.extend(listed.identifiers)
                found.unserved.extend(listed.unserved)
                continue
            directory = self._directory(path)
            if directory is None:
                continue
            seen[path] = directory
            pending.append((path, directory))
            pending += ((os.path.join(path, name), None) for name in reversed(directory.subdirs))
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
        unserved: list[str] = []
        subdirs: list[str] = []
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith("."):
                        subdirs.append(entry.name)
                    continue
                target = self._target(entry) if entry.path.startswith(self.base) else None
                if target is None:
                    continue
                if self._is_image(entry.name, target):
                    files.append(entry.name)
                elif entry.name.lower().endswith(self.unserved_suffixes):
                    unserved.append(entry.name)

        def identifiers(names: list[str]) -> tuple[str, ...]:
            found = (self._identifier(os.path.join(path, name)) for name in sorted(names))
            return tuple(i for i in found if i is not None)

        return _Directory(mtime_ns, identifiers(files), identifiers(unserved), tuple(sorted(subdirs)))

    def _target(self, entry: os.DirEntry[str]) -> str | None:
        """The path of a regular file, or of the regular file inside the root a link names; else None."""
        if not entry.is_symlink():
            return entry.path if entry.is_file(follow_symlinks=False) else None  # not FIFOs, sockets, devices
        target = os.path.realpath(entry.path)
        try:
            return target if self.inside(target) and stat.S_ISREG(os.stat(target).st_mode) else None
        except OSError:
            return None

    def _is_image(self, name: str, target: str) -> bool:
        """A served suffix, or no suffix and a served type's first bytes."""
        if name.lower().endswith(self.suffixes):
            return True
        return "." not in name and bool(self.magic) and _starts_like(target, self.magic)

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
        found = _LISTINGS[key] = Listing(resolver, formats.suffixes(), formats.magic())
    return found


def images(service: Service) -> Found:
    """The servable images and unserved FITS files; none in object storage (not listed)."""
    if service.resolver.remote is not None:
        return Found([], [])
    return listing(service.resolver).scan()


def _readable(identifier: str) -> str:
    """A name as text, odd bytes (kept by the filesystem, here as surrogates) shown as ``\\xNN``."""
    return identifier.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _row(identifier: str) -> str:
    """One image: its viewer link, IIP and IIIF links.

    A name that is not valid UTF-8 (kept by the filesystem as bytes, here as
    surrogates) is shown with its odd bytes as ``\\xNN`` and not linked to
    the viewer, which works on text; its IIP and IIIF links carry the bytes
    percent-encoded, which both protocols decode back to the file's name.
    """
    raw = identifier.encode("utf-8", "surrogateescape")
    shown = escape(_readable(identifier))
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


def _unserved(names: list[str]) -> str:
    """The FITS files under the root, which are not served: what to do with them."""
    if not names:
        return ""
    shown = ", ".join(f"<code>{escape(_readable(name))}</code>" for name in names[:SHOWN_UNSERVED])
    more = f" and {len(names) - SHOWN_UNSERVED} more" if len(names) > SHOWN_UNSERVED else ""
    return (
        f'<p class="note" id="unserved">FITS is not served directly: convert with <code>pyiip convert '
        f"IN.fits OUT.tif</code> (one cube from a cube or from one file per channel) into the image root. "
        f"Not listed: {shown}{more}.</p>"
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
    listed = images(service)
    found = listed.images
    pages = max(1, -(-len(found) // PAGE_SIZE))
    number = min(page_number(request.query), pages)
    shown = found[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]
    rows = "\n".join(_row(identifier) for identifier in shown) or "<li>No images under the image root.</li>"
    pager = _pager(request.path, number, pages)
    unserved = _unserved(listed.unserved)
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
IIIF at <code>/iiif/3/&lt;identifier&gt;/info.json</code> and <code>/iiif/2/...</code>.</p>{unserved}</section>
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
