"""PYIIP_HOOKS in-process: authorize, resolve, extra_info and probe_service, and every cache that could leak."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import PIL.Image
import pytest

from pyiip import config
from pyiip.config import ConfigError
from pyiip.hooks import ALLOW, Decision, Deny, HookImage, HookRequest, MaxSize
from pyiip.respond.app import Application

SPEC = "tests.integration.test_hooks:HOOK"
PROBE = {"id": "https://auth.example.org/probe/x", "type": "AuthProbeService2", "service": []}


@dataclass
class Recorder:
    """A hook whose decision each test sets; it notes every request it is asked about."""

    decision: Decision = ALLOW
    asked: list[HookRequest] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    probe: dict | None = None

    def authorize(self, request: HookRequest) -> Decision:
        self.asked.append(request)
        return self.decision

    def resolve(self, identifier: str) -> str:
        return self.aliases.get(identifier, identifier)

    def extra_info(self, image: HookImage) -> dict:
        return {"rights": "http://creativecommons.org/licenses/by/4.0/", "label": {"en": [image.identifier]}}

    def probe_service(self, image: HookImage) -> dict | None:
        return self.probe


HOOK = Recorder()
NOT_A_HOOK = object()


@pytest.fixture
def hook() -> Recorder:
    HOOK.__init__()  # type: ignore[misc]
    return HOOK


@pytest.fixture
def app(images, make_app, hook) -> Application:
    return make_app(images.root, PYIIP_HOOKS=SPEC)


def call(app: Application, uri: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    query = uri.partition("?")[2]
    environ = {"REQUEST_URI": uri, "QUERY_STRING": query, "REQUEST_METHOD": "GET", "REMOTE_ADDR": "192.0.2.7"}
    environ |= {"HTTP_" + name.upper(): value for name, value in headers.items()}
    status, head, body = app.handle(environ)
    return int(status[:3]), dict(head), body


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_here:HOOK", "cannot import 'no_such_module_here'"),
        ("tests.integration.test_hooks:MISSING", "has no 'MISSING'"),
        ("tests.integration.test_hooks:NOT_A_HOOK", "has none of the hook methods"),
    ],
)
def test_a_hook_that_cannot_serve_stops_the_start(spec, message):
    with pytest.raises(ConfigError, match=message):
        config.load({"PYIIP_HOOKS": spec})


def test_the_hook_sees_identifier_kind_credentials_and_client(app, hook):
    assert call(app, "/iiif/3/rgb.tif/info.json", AUTHORIZATION="Bearer t", COOKIE="s=1")[0] == 200
    assert call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=1,0")[0] == 200
    first, second = hook.asked
    assert first == HookRequest("rgb.tif", "iiif_info", "Bearer t", "s=1", "192.0.2.7")
    assert (second.identifier, second.kind, second.authorization) == ("rgb.tif", "iip_tile", "")


@pytest.mark.parametrize(
    "uri",
    [
        "/iiif/3/rgb.tif/info.json",
        "/iiif/3/rgb.tif/full/100,/0/default.jpg",
        "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=1,0",
        "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&WID=100&CVT=jpeg",
        "/deepzoom/rgb.tif.dzi",
        "/zoomify/rgb.tif/ImageProperties.xml",
    ],
)
def test_denied_in_every_protocol_even_after_every_cache_was_filled(app, hook, uri):
    for _ in range(3):  # allowed: rendered, kept, then answered from the kept replies
        assert call(app, uri)[0] == 200
    hook.decision = Deny(401, "a token is needed", (("WWW-Authenticate", 'Bearer realm="images"'),))
    status, headers, body = call(app, uri)
    assert status == 401 and body == b"a token is needed\n"
    assert headers["WWW-Authenticate"] == 'Bearer realm="images"' and headers["Cache-Control"] == "no-cache"
    hook.decision = ALLOW
    assert call(app, uri)[0] == 200


def test_the_index_page_asks_the_hook(app, hook):
    assert call(app, "/")[0] == 200 and hook.asked[-1] == HookRequest("", "index", "", "", "192.0.2.7")
    hook.decision = MaxSize(300)  # a list has no size: shown
    assert call(app, "/")[0] == 200
    hook.decision = Deny(401)
    status, _, body = call(app, "/")
    assert status == 401 and b"rgb.tif" not in body


def test_a_rendering_cached_for_one_caller_is_not_served_to_a_denied_one(app, hook):
    """The same pixels through IIIF, then IIP: the second is a render-cache hit, denied before the lookup."""
    assert call(app, "/iiif/3/rgb_deflate.tif/0,0,512,512/256,/0/default.jpg")[0] == 200
    hook.decision = Deny(403)
    assert call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb_deflate.tif&JTL=1,0")[0] == 403


def test_kept_replies_key_on_the_decision(app, hook):
    uri = "/iiif/3/rgb.tif/full/max/0/default.jpg"
    hook.decision = MaxSize(300)
    small = [call(app, uri) for _ in range(3)]  # the third from the kept replies
    hook.decision = ALLOW
    large = call(app, uri)
    assert small[0][2] == small[2][2] and large[2] != small[0][2]
    assert app.service.cache.replies.hits == 1  # the size-limited reply was never given to the full-access caller
    assert small[0][1]["Vary"].endswith("Authorization, Cookie")  # a shared cache in front keys on them


def test_max_size_caps_info_json_iiif_max_and_every_protocol(app, hook):
    hook.decision = MaxSize(300)  # rgb.tif is 1100 x 900 in tiles of 256: levels 1100, 550, 275...
    info = json.loads(call(app, "/iiif/3/rgb.tif/info.json")[2])
    assert (info["maxWidth"], info["maxHeight"]) == (300, 246)
    assert all(size["width"] <= 300 for size in info["sizes"])
    assert info["tiles"][0]["scaleFactors"] == [4, 8]
    v2 = json.loads(call(app, "/iiif/2/rgb.tif/info.json")[2])
    assert v2["profile"][1]["maxWidth"] == 300
    status, _, body = call(app, "/iiif/3/rgb.tif/full/max/0/default.jpg")
    assert status == 200 and PIL.Image.open(io.BytesIO(body)).size[0] == 300
    # A full-resolution tile: beyond this region's limits, a 400 as for any size over maxWidth.
    assert call(app, "/iiif/3/rgb.tif/0,0,256,256/256,/0/default.jpg")[0] == 400
    assert call(app, "/iiif/3/rgb.tif/0,0,1024,1024/256,/0/default.jpg")[0] == 200  # scale factor 4
    assert call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=3,0")[0] == 403  # stored JPEG tile: passthrough
    assert call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=1,0")[0] == 200
    status, headers, body = call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&WID=1000&CVT=jpeg")  # capped, as by MAX_CVT
    assert status == 200 and PIL.Image.open(io.BytesIO(body)).size == (300, 245)
    assert headers["Content-Disposition"] == 'inline;filename="rgb_300x245.jpg"'
    assert call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&WID=300&CVT=jpeg")[0] == 200
    assert call(app, "/deepzoom/rgb.tif_files/11/0_0.jpg")[0] == 403
    assert call(app, "/deepzoom/rgb.tif_files/8/0_0.jpg")[0] == 200
    assert call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&PFL=3:0,10-500,10")[0] == 403  # full-resolution values
    assert call(app, "/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&PFL=1:0,10-200,10")[0] == 200
    hook.decision = ALLOW
    info = json.loads(call(app, "/iiif/3/rgb.tif/info.json")[2])
    assert info.get("maxWidth", 5000) == 5000 and info["tiles"][0]["scaleFactors"][0] == 1


def test_resolve_maps_identifiers_and_stays_inside_the_root(app, hook):
    hook.aliases = {"alias": "rgb.tif", "escape": "../outside/secret.tif"}
    status, _, body = call(app, "/iiif/3/alias/info.json")
    assert status == 200 and json.loads(body)["label"] == {"en": ["alias"]}
    assert hook.asked[-1].identifier == "alias"  # authorized as asked, opened as resolved
    assert call(app, "/iiif/3/escape/info.json")[0] == 403


def test_extra_info_and_probe_service_in_info_json(app, hook):
    hook.probe = PROBE
    info = json.loads(call(app, "/iiif/3/rgb.tif/info.json")[2])
    assert info["rights"] == "http://creativecommons.org/licenses/by/4.0/"
    assert info["service"] == [PROBE]


def test_a_hook_answering_nonsense_is_an_internal_error(app, hook):
    hook.decision = "yes"  # type: ignore[assignment]
    assert call(app, "/iiif/3/rgb.tif/info.json")[0] == 500
    hook.decision = ALLOW
    hook.probe = {"type": "SomethingElse"}
    assert call(app, "/iiif/3/rgb_deflate.tif/info.json")[0] == 500


def test_deny_statuses_and_sizes_are_checked():
    with pytest.raises(ValueError, match="401, 403 or 404"):
        Deny(500)
    with pytest.raises(ValueError, match="at least 1"):
        MaxSize(0)


def test_without_a_hook_nothing_varies_on_credentials(images, make_app):
    app = make_app(images.root)
    assert app.service.hooks is None
    status, headers, _ = call(app, "/iiif/3/rgb.tif/full/100,/0/default.jpg", AUTHORIZATION="Bearer x")
    assert status == 200 and "Authorization" not in headers.get("Vary", "")
