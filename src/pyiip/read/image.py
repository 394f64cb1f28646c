"""Open one image by its magic bytes: a TIFF pyramid or a JPEG 2000 file (local or remote bytes), or a flat
image through libvips."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from pyiip.errors import SourceError
from pyiip.read import formats, jp2
from pyiip.read.byte_source import ByteSource
from pyiip.read.jp2_header import CODESTREAM_SIGNATURE, JP2_SIGNATURE
from pyiip.read.resolved import Resolved
from pyiip.read.source import ImageInfo, ImageSource
from pyiip.read.tiff import TiffSource, TileStore, UnsupportedCodec
from pyiip.read.vips import VipsSource, with_reduced_levels

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
formats.register(formats.FileType("TIFF", (".tif", ".tiff", ".ptif", ".btf", ".tf8"), _TIFF_MAGIC))
formats.register(formats.FileType("JPEG 2000", jp2.SUFFIXES, (JP2_SIGNATURE, CODESTREAM_SIGNATURE)))


def _is_jpeg2000(magic: bytes) -> bool:
    return magic == JP2_SIGNATURE or magic.startswith(CODESTREAM_SIGNATURE)


@dataclass(slots=True)
class OpenImage:
    """A resolved file with its open source and display defaults."""

    resolved: Resolved
    source: ImageSource
    minmax: np.ndarray  # (channels, 2) default display range

    @property
    def info(self) -> ImageInfo:
        return self.source.info


def open_source(
    path: str | ByteSource, tiles: TileStore | None = None, identity: Hashable | None = None
) -> ImageSource:
    """Open a file by its magic bytes, as iipsrv does, not by its extension.

    A ByteSource (a remote object) must be a TIFF or a JPEG 2000 file: it is read by ranges, never copied whole.
    TIFF readers keep decoded tiles in ``tiles`` when given, a ByteSource's under ``identity``
    (a local file's identity comes from its descriptor); flat images read by libvips do not.
    """
    if not isinstance(path, str):
        return _open_bytes(path, tiles, identity)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(12)
    except OSError as exc:
        raise SourceError("image cannot be read") from exc
    if _is_jpeg2000(magic):
        return jp2.Jp2Source(path)
    tiff_error: SourceError | None = None
    if magic[:4] in _TIFF_MAGIC:
        try:
            return with_reduced_levels(TiffSource(path, tiles), path)
        except UnsupportedCodec:
            raise
        except SourceError as exc:
            tiff_error = exc
    try:
        source = VipsSource(path)
        if tiff_error is not None:
            try:
                source.read(0, 0, 0, 1, 1)  # libvips opens lazily: make sure it can decode this TIFF
            except SourceError:
                source.close()
                raise
        return source
    except SourceError:
        if tiff_error is not None:
            raise tiff_error from None  # a broken TIFF: say what the TIFF reader found wrong
        raise


def _open_bytes(data: ByteSource, tiles: TileStore | None, identity: Hashable | None) -> ImageSource:
    """A TIFF or JPEG 2000 file over a ByteSource; a read that failed on the way fails the open with its own error.

    tifffile catches some read errors and carries on with fewer pages: a
    parse that saw a failed read is never trusted (nor kept in any cache).
    """
    try:
        magic = data.pread(12, 0)
        if magic[:4] not in _TIFF_MAGIC and not _is_jpeg2000(magic):
            raise SourceError("remote images must be pyramidal TIFF or JPEG 2000")
        try:
            source: ImageSource = jp2.Jp2Source(data) if _is_jpeg2000(magic) else TiffSource(data, tiles, identity)
        except SourceError:
            failure = getattr(data, "failure", None)
            if failure is not None:
                raise failure from None
            raise
        failure = getattr(data, "failure", None)
        if failure is not None:
            source.close()
            raise failure
        return source
    except BaseException:
        data.close()
        raise
