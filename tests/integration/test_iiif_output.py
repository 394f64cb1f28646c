"""AVIF and 16-bit output through IIIF and IIP, and the info.json keys that announce them."""

from __future__ import annotations

import io
import json

import imagecodecs
import numpy as np
import pytest
import tifffile

from pyiip.http import Request, Response

EXTRA = '"rights": "http://creativecommons.org/licenses/by/4.0/", "service": [{"id": "https://x.example/s"}]'


@pytest.fixture(scope="module")
def ask(images, make_app):
    plain = make_app(images.root)
    tuned = make_app(images.root, PREFERRED_FORMATS="webp,png", IIIF_EXTRA_INFO=EXTRA, AVIF_QUALITY="-1")

    def get(path: str, query: str = "", accept: str = "", tuned_app: bool = False) -> Response:
        app = tuned if tuned_app else plain
        return app.respond(Request("GET", path, query, host="testhost", headers={"accept": accept} if accept else {}))

    return get


def _json(response: Response) -> dict:
    assert response.status == 200, response.body
    return json.loads(response.body)


def test_info_v3_formats_and_qualities(ask) -> None:
    doc = _json(ask("/iiif/3/rgb.tif/info.json"))
    assert "preferredFormats" not in doc and "rights" not in doc
    assert "bits16" not in doc["extraQualities"]  # 8 bits: nothing deeper to send
    for deep in ("grey16.tif", "float.tif"):
        assert _json(ask(f"/iiif/3/{deep}/info.json"))["extraQualities"][-1] == "bits16"


def test_preferred_formats_and_extra_info(ask) -> None:
    doc = _json(ask("/iiif/3/rgb.tif/info.json", tuned_app=True))
    assert doc["preferredFormats"] == ["webp", "png"]
    assert doc["rights"] == "http://creativecommons.org/licenses/by/4.0/"
    assert doc["service"] == [{"id": "https://x.example/s"}]
    v2 = _json(ask("/iiif/2/rgb.tif/info.json", tuned_app=True))
    assert "preferredFormats" not in v2 and v2["service"] == [{"id": "https://x.example/s"}]


def test_info_accept_q_values(ask) -> None:
    assert ask("/iiif/3/rgb.tif/info.json", accept="application/ld+json;q=0").content_type == "application/json"
    assert ask("/iiif/3/rgb.tif/info.json", accept="application/ld+json;q=1, application/json;q=0.5").content_type == (
        'application/ld+json;profile="http://iiif.io/api/image/3/context.json"'
    )


def test_bits16_png_is_the_stored_16_bit_samples(ask, images) -> None:
    response = ask("/iiif/3/grey16.tif/full/max/0/bits16.png")
    assert response.status == 200 and response.content_type == "image/png"
    decoded = imagecodecs.png_decode(response.body)
    assert decoded.dtype == np.uint16
    assert np.array_equal(decoded, images.arrays["grey16"][0][:, :, 0])
    canonical = next(v for k, v in response.headers if k == "Link")
    assert "/full/max/0/bits16.png>" in canonical


def test_bits16_tif_of_a_float_cube_is_minmax_normalised(ask, images) -> None:
    cube = images.arrays["float"][0].astype(np.float64)
    for query, low, high in (("", 90.0, 130.0), ("MINMAX=1:100,110", 100.0, 110.0)):
        response = ask("/iiif/3/float.tif/full/max/0/bits16.tif", query)
        assert response.status == 200 and response.content_type == "image/tiff"
        with tifffile.TiffFile(io.BytesIO(response.body)) as tif:
            data = tif.pages[0].asarray()
        assert data.dtype == np.uint16 and data.shape == cube.shape
        expected = np.rint(np.clip(np.nan_to_num((cube[:, :, 0] - low) / (high - low) * 65535), 0, 65535))
        assert np.abs(data[:, :, 0].astype(int) - expected).max() <= 1


def test_bits16_rotated_keeps_16_bits(ask) -> None:
    decoded = imagecodecs.png_decode(ask("/iiif/3/grey16.tif/0,0,100,50/max/30/bits16.png").body)
    assert decoded.dtype == np.uint16 and decoded.shape[2] == 2  # grey and alpha, as the 8-bit output
    assert decoded[:, :, 1].max() == 65535 and decoded[0, 0, 1] == 0  # opaque inside, transparent corners


@pytest.mark.parametrize(
    ("path", "query", "message"),
    [
        ("/iiif/3/grey16.tif/full/max/0/bits16.jpg", "", b"png or tif"),
        ("/iiif/3/rgb.tif/full/max/0/bits16.png", "", b"more than 8 bits"),
        ("/iiif/3/float.tif/full/max/0/bits16.png", "CMP=jet", b"MINMAX only"),
        ("/iiif/3/grey16.tif/full/max/0/bits17.png", "", b"unsupported quality"),
    ],
)
def test_bits16_refusals(ask, path: str, query: str, message: bytes) -> None:
    response = ask(path, query)
    assert response.status == 400 and message in response.body


def test_avif(ask, images) -> None:
    response = ask("/iiif/3/rgb_deflate.tif/0,0,256,128/max/0/default.avif")
    assert response.status == 200 and response.content_type == "image/avif"
    source = images.arrays["rgb_deflate"][0][:128, :256]
    lossy = imagecodecs.avif_decode(response.body)
    assert lossy.shape == source.shape and np.abs(lossy.astype(int) - source).mean() < 8
    lossless = ask("/iiif/3/rgb_deflate.tif/0,0,256,128/max/0/default.avif", tuned_app=True)  # AVIF_QUALITY=-1
    assert np.array_equal(imagecodecs.avif_decode(lossless.body), source)
    assert len(lossless.body) > len(response.body)


def test_iip_cvt_avif_and_bit16(ask, images) -> None:
    response = ask("/fcgi-bin/iipsrv.fcgi", "FIF=rgb.tif&WID=200&CVT=avif")
    assert response.status == 200 and response.content_type == "image/avif"
    assert imagecodecs.avif_decode(response.body).shape == (164, 200, 3)
    deep = ask("/fcgi-bin/iipsrv.fcgi", "FIF=grey16.tif&BIT=16&CVT=png")
    assert np.array_equal(imagecodecs.png_decode(deep.body), images.arrays["grey16"][0][:, :, 0])
    tiff = ask("/fcgi-bin/iipsrv.fcgi", "FIF=grey16.tif&BIT=16&CVT=tiff")
    with tifffile.TiffFile(io.BytesIO(tiff.body)) as tif:
        assert tif.pages[0].bitspersample == 16
    assert (
        ask("/fcgi-bin/iipsrv.fcgi", "FIF=grey16.tif&BIT=8&CVT=png").body
        == ask("/fcgi-bin/iipsrv.fcgi", "FIF=grey16.tif&CVT=png").body
    )
    assert ask("/fcgi-bin/iipsrv.fcgi", "FIF=grey16.tif&BIT=16&CVT=jpeg").status == 400
    assert ask("/fcgi-bin/iipsrv.fcgi", "FIF=grey16.tif&BIT=12&CVT=png").status == 400
