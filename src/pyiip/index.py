"""The HTML pages: the index of served images and iipsrv's banner."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from . import __version__
from .http import Request, Response
from .service import Service

IMAGE_SUFFIXES = (".tif", ".tiff", ".ptif", ".btf", ".jpg", ".jpeg", ".png", ".jp2", ".webp")
IIP_ENDPOINT = "/fcgi-bin/iipsrv.fcgi"


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
    """Every servable image, linked by its identifier."""
    images = service.resolver.images(IMAGE_SUFFIXES)
    rows = "\n".join(_row(identifier) for identifier in images) or "<li>No images under the image root.</li>"
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>pyiip images</title></head>
<body><h1>pyiip {__version__}</h1>
<p>{len(images)} image(s). IIP at <code>{IIP_ENDPOINT}?FIF=&lt;identifier&gt;</code>,
IIIF at <code>/iiif/3/&lt;identifier&gt;/info.json</code> and <code>/iiif/2/...</code>.</p>
<ul id="images">
{rows}
</ul></body></html>
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
