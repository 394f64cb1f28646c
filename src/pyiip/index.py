"""The HTML pages: the viewer with the index of served images, and iipsrv's banner."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from . import __version__, static_files
from .http import Request, Response
from .service import Service

IMAGE_SUFFIXES = (".tif", ".tiff", ".ptif", ".btf", ".jpg", ".jpeg", ".png", ".jp2", ".webp")
IIP_ENDPOINT = "/fcgi-bin/iipsrv.fcgi"
LEAFLET_JS = "vendor/leaflet/leaflet.js"
LEAFLET_CSS = "vendor/leaflet/leaflet.css"
MISSING_LEAFLET = '<p class="error">The viewer\'s Leaflet is not built: run <code>make install</code>.</p>'


def _row(identifier: str) -> str:
    ident = escape(identifier)
    fif = quote(identifier, safe="/")
    iiif = quote(identifier, safe="")
    return (
        f'<li><a class="image" href="/viewer.html?image={quote(identifier, safe="")}">{ident}</a>'
        f' <a href="{IIP_ENDPOINT}?FIF={fif}&amp;OBJ=IIP,1.0&amp;OBJ=Max-size&amp;OBJ=Tile-size'
        f'&amp;OBJ=Resolution-number">IIP</a>'
        f' <a href="/iiif/3/{iiif}/info.json">IIIF 3</a>'
        f' <a href="/iiif/2/{iiif}/info.json">IIIF 2</a></li>'
    )


def page(service: Service, request: Request) -> Response:
    """The viewer: every servable image linked by its identifier, and a deep-zoom view of one."""
    images = service.resolver.images(IMAGE_SUFFIXES)
    rows = "\n".join(_row(identifier) for identifier in images) or "<li>No images under the image root.</li>"
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
<section><h2>{len(images)} image(s)</h2>
<ul id="images">
{rows}
</ul>
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
