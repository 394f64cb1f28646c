"""Nothing outside FILESYSTEM_PREFIX is readable, whatever the encoding tricks."""

import os

import pytest

from pyiip.config import load
from pyiip.errors import BadRequest, Forbidden, NotFound
from pyiip.read import formats
from pyiip.resolve.local import Resolver
from pyiip.respond.index import Listing

TRAVERSALS = [
    "../outside/passwd",
    "../outside/secret.tif",
    "%2e%2e/outside/secret.tif",
    "%2E%2E%2Foutside%2Fsecret.tif",
    "..%2foutside%2fsecret.tif",
    "nested/../../outside/secret.tif",
    "nested/deeper/../../../outside/secret.tif",
    "./../outside/secret.tif",
    "link_out.tif",
    "dir_out/secret.tif",
    "dir_out/passwd",
    "nested/%2e%2e/%2e%2e/outside/passwd",
    "....//....//outside/passwd",
]


@pytest.fixture
def resolver(images):
    return Resolver(load({"FILESYSTEM_PREFIX": str(images.root) + "/"}))


@pytest.mark.parametrize("identifier", TRAVERSALS)
def test_traversals_are_refused_through_iip(iip, identifier, images):
    for query in (f"FIF={identifier}&JTL=0,0", f"FIF={identifier}&OBJ=Max-size"):
        reply = iip(query)
        assert reply.status in (400, 403, 404), query
        assert str(images.root) not in reply.body.decode("latin-1")
        assert str(images.outside) not in reply.body.decode("latin-1")
        assert not reply.content_type.startswith("image/")


def test_absolute_paths_stay_under_the_root(resolver, images):
    # prefix + "/etc/passwd" is a path inside the root, which does not exist
    with pytest.raises(NotFound):
        resolver.resolve(str(images.outside / "passwd"))
    with pytest.raises(NotFound):
        resolver.resolve("/etc/passwd")


def test_nul_is_refused(resolver, iip):
    with pytest.raises(BadRequest):
        resolver.resolve("rgb.tif\x00.png")
    assert iip("FIF=rgb.tif%00.png&OBJ=Max-size").status == 400


def test_symlink_inside_the_root_is_followed(resolver, images):
    assert resolver.resolve("link_in.tif").path == os.path.realpath(images.root / "rgb.tif")


def test_symlink_out_is_forbidden(resolver):
    with pytest.raises(Forbidden):
        resolver.resolve("link_out.tif")


def test_directory_and_missing_file_are_404(resolver):
    for identifier in ("nested", "nested/", "missing.tif"):
        with pytest.raises(NotFound):
            resolver.resolve(identifier)


def test_very_long_name(resolver):
    with pytest.raises(BadRequest):
        resolver.resolve("a" * 5000)


def test_prefix_without_slash_cannot_reach_a_sibling(images):
    # iipsrv's concatenation lets prefix "/x/root" + "_evil/..." reach "/x/root_evil"; here the
    # root is the prefix's directory, so only names inside it are reachable.
    sibling = images.root.parent / "root_evil"
    sibling.mkdir(exist_ok=True)
    (sibling / "f.tif").write_bytes(b"x")
    resolver = Resolver(load({"FILESYSTEM_PREFIX": str(images.root / "rgb")}))
    assert resolver.resolve(".tif").path.endswith("/root/rgb.tif")
    with pytest.raises(Forbidden):
        resolver.resolve("/../../root_evil/f.tif")


def test_suffix(images):
    resolver = Resolver(load({"FILESYSTEM_PREFIX": str(images.root) + "/", "FILESYSTEM_SUFFIX": ".tif"}))
    assert resolver.resolve("rgb").path.endswith("rgb.tif")
    assert "rgb" in Listing(resolver, (".tif",)).identifiers()


def test_index_lists_identifiers(resolver):
    found = Listing(resolver, (".tif",)).identifiers()
    assert "rgb.tif" in found
    assert "nested/deeper/float_notags.tif" in found
    assert "link_out.tif" not in found
    assert not any(name.startswith("dir_out") for name in found)


def test_index_lists_extensionless_images_by_their_bytes(tmp_path, images):
    (tmp_path / "67352ccc-d1b0-11e1-89ae-279075081939").write_bytes((images.root / "rgb.tif").read_bytes())
    (tmp_path / "README").write_text("not an image\n")
    (tmp_path / "notes.txt").write_bytes(b"II*\x00 looks like a TIFF but has an extension")
    resolver = Resolver(load({"FILESYSTEM_PREFIX": f"{tmp_path}/"}))
    assert Listing(resolver, (".tif",), formats.magic()).identifiers() == ["67352ccc-d1b0-11e1-89ae-279075081939"]
    assert Listing(resolver, (".tif",)).identifiers() == []  # no first bytes given: suffixes only
