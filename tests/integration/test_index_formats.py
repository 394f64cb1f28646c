"""The index lists what the readers serve (read/formats.py), and says what to do with FITS files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pyiip.http import Request
from pyiip.read import formats
from pyiip.respond import index


@pytest.fixture(autouse=True)
def served(monkeypatch) -> None:
    """The types served today, TIFF and PNG kept: other readers registering theirs change no result here."""
    monkeypatch.setattr(formats, "_TYPES", {name: formats._TYPES[name] for name in ("TIFF", "PNG")})
    index._LISTINGS.clear()  # a listing is kept per root with the registry it was made with
    yield
    index._LISTINGS.clear()


@pytest.fixture
def root(tmp_path: Path, images) -> Path:
    """One served TIFF and PNG beside files no reader serves today."""
    shutil.copy(images.root / "rgb.tif", tmp_path / "a.tif")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # listed by its suffix, as before
    (tmp_path / "c.jp2").write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n")
    (tmp_path / "sky").mkdir()
    (tmp_path / "sky" / "g.fits").write_bytes(b"SIMPLE  =                    T")
    (tmp_path / "sky" / "r.fits.fz").write_bytes(b"SIMPLE  =                    T")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def page(make_app, root: Path) -> str:
    response = make_app(root).respond(Request("GET", "/", ""))
    assert response.status == 200
    return response.body.decode()


def test_the_readers_register_their_types(monkeypatch) -> None:
    monkeypatch.undo()  # the real registry
    assert {"TIFF", "JPEG", "PNG", "WebP"} <= set(formats.names())
    assert {".tif", ".tiff", ".jpg", ".jpeg", ".png", ".webp"} <= set(formats.suffixes())
    assert b"II*\x00" in formats.magic() and b"\xff\xd8\xff" in formats.magic()


def test_page_lists_served_files_only_and_explains_fits(make_app, root: Path) -> None:
    html = page(make_app, root)
    assert "<h2>2 image(s)</h2>" in html
    assert 'href="/viewer.html?image=a.tif"' in html and 'href="/viewer.html?image=b.png"' in html
    assert "c.jp2" not in html and "notes.txt" not in html
    note = html.split('<p class="note" id="unserved">', 1)[1].split("</p>", 1)[0]
    assert "FITS is not served directly: convert with <code>pyiip convert IN.fits OUT.tif</code>" in note
    assert "<code>sky/g.fits</code>, <code>sky/r.fits.fz</code>." in note
    assert "viewer.html?image=sky" not in html


def test_no_fits_note_without_fits_files(make_app, root: Path) -> None:
    shutil.rmtree(root / "sky")
    assert 'id="unserved"' not in page(make_app, root)


def test_many_fits_files_are_counted(make_app, root: Path) -> None:
    for n in range(7):
        (root / "sky" / f"x{n}.fit").write_bytes(b"SIMPLE")
    note = page(make_app, root).split('id="unserved">', 1)[1].split("</p>", 1)[0]
    assert note.count("<code>sky/") == index.SHOWN_UNSERVED and " and 4 more." in note


def test_a_registered_reader_is_listed_with_no_change_to_the_index(make_app, root: Path, monkeypatch) -> None:
    """What the JPEG 2000 and FITS readers do: register, and their files are images, FITS no longer in the note."""
    monkeypatch.setitem(formats._TYPES, "JPEG 2000", formats.FileType("JPEG 2000", (".jp2",), (b"\x00\x00\x00\x0cjP",)))
    monkeypatch.setitem(formats._TYPES, "FITS", formats.FileType("FITS", (".fits",), (b"SIMPLE  =",)))
    (root / "d").write_bytes((root / "c.jp2").read_bytes())  # no suffix: known by its first bytes
    html = page(make_app, root)
    assert "<h2>5 image(s)</h2>" in html
    for name in ("c.jp2", "d", "sky/g.fits"):
        assert f'href="/viewer.html?image={name.replace("/", "%2F")}"' in html, name
    assert "<code>sky/r.fits.fz</code>." in html  # a suffix no reader registered stays in the note


def test_register_checks_its_input() -> None:
    with pytest.raises(ValueError, match="lower case"):
        formats.register(formats.FileType("X", (".TIF",)))
    with pytest.raises(ValueError, match="12 bytes"):
        formats.register(formats.FileType("X", (".x",), (b"0123456789abc",)))
    assert "X" not in formats.names()
