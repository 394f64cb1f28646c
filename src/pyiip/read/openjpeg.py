"""OpenJPEG (libopenjp2, 2.5 or later) through ctypes: one window of one resolution of a JPEG 2000 image.

imagecodecs' jpeg2k_decode takes the whole file as bytes and decodes every
pixel at full resolution; libopenjp2 itself can decode a reduced resolution
(``opj_set_decoded_resolution_factor``) and only the code-blocks a window
needs (``opj_set_decode_area``), reading the file through callbacks. Here
they read a ByteSource: a local file by pread, an object in object storage
by ranges. docs/jpeg2000.md has the figures that chose this over
imagecodecs and glymur (which opens files by name only). Classic and HTJ2K
(Part 15) code-blocks both decode, since OpenJPEG 2.5.0.

The library is the one imagecodecs' wheel ships (OpenJPEG 2.5.4, a release
build) when there is one, else the system's: Debian 12's 2.5.0 keeps its
assert()s, and a corrupt HTJ2K code-block aborts the process in it
(fuzz/fuzz_jp2.py found one in minutes).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Iterator
from ctypes import POINTER, c_char_p, c_int, c_int32, c_int64, c_size_t, c_uint16, c_uint32, c_uint64, c_void_p
from pathlib import Path

import imagecodecs
import numpy as np

from pyiip.errors import SourceError
from pyiip.read.byte_source import ByteSource
from pyiip.read.jp2_header import JP2_SIGNATURE

CODEC_J2K, CODEC_JP2 = 0, 2
# OpenJPEG reads headers through a buffer of this size (one tile-part header per fill while it looks for the
# tiles a window needs); tile data, larger, goes straight to its own memory.
_STREAM_BUFFER = 4096
_PARAMETERS_BYTES = 1 << 16  # room for opj_dparameters_t (about 18 KB in 2.5), filled by the library itself
_FAILED_READ = c_size_t(-1).value


class _Component(ctypes.Structure):
    _fields_ = [
        ("dx", c_uint32),
        ("dy", c_uint32),
        ("w", c_uint32),
        ("h", c_uint32),
        ("x0", c_uint32),
        ("y0", c_uint32),
        ("prec", c_uint32),
        ("bpp", c_uint32),  # deprecated in 2.5, still in the structure
        ("sgnd", c_uint32),
        ("resno_decoded", c_uint32),
        ("factor", c_uint32),
        ("data", POINTER(c_int32)),
        ("alpha", c_uint16),
    ]


class _Image(ctypes.Structure):
    _fields_ = [
        ("x0", c_uint32),
        ("y0", c_uint32),
        ("x1", c_uint32),
        ("y1", c_uint32),
        ("numcomps", c_uint32),
        ("color_space", c_int),
        ("comps", POINTER(_Component)),
        ("icc_profile_buf", c_void_p),
        ("icc_profile_len", c_uint32),
    ]


_MESSAGE = ctypes.CFUNCTYPE(None, c_char_p, c_void_p)
_READ = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_size_t, c_void_p)
_SKIP = ctypes.CFUNCTYPE(c_int64, c_int64, c_void_p)
_SEEK = ctypes.CFUNCTYPE(c_int, c_int64, c_void_p)
_SIGNATURES = {
    "opj_version": (c_char_p, []),
    "opj_create_decompress": (c_void_p, [c_int]),
    "opj_set_default_decoder_parameters": (None, [c_void_p]),
    "opj_setup_decoder": (c_int, [c_void_p, c_void_p]),
    "opj_decoder_set_strict_mode": (c_int, [c_void_p, c_int]),
    "opj_set_error_handler": (c_int, [c_void_p, _MESSAGE, c_void_p]),
    "opj_stream_create": (c_void_p, [c_size_t, c_int]),
    "opj_stream_set_read_function": (None, [c_void_p, _READ]),
    "opj_stream_set_skip_function": (None, [c_void_p, _SKIP]),
    "opj_stream_set_seek_function": (None, [c_void_p, _SEEK]),
    "opj_stream_set_user_data_length": (None, [c_void_p, c_uint64]),
    "opj_stream_destroy": (None, [c_void_p]),
    "opj_read_header": (c_int, [c_void_p, c_void_p, POINTER(POINTER(_Image))]),
    "opj_set_decoded_resolution_factor": (c_int, [c_void_p, c_uint32]),
    "opj_set_decode_area": (c_int, [c_void_p, POINTER(_Image), c_int32, c_int32, c_int32, c_int32]),
    "opj_decode": (c_int, [c_void_p, c_void_p, POINTER(_Image)]),
    "opj_end_decompress": (c_int, [c_void_p, c_void_p]),
    "opj_destroy_codec": (None, [c_void_p]),
    "opj_image_destroy": (None, [POINTER(_Image)]),
}


def _candidates() -> Iterator[str]:
    """The libopenjp2 imagecodecs' wheel ships (a release build of a recent OpenJPEG), then the system's."""
    libs = Path(imagecodecs.__file__).parent.parent / "imagecodecs.libs"
    yield from (str(path) for path in sorted(libs.glob("libopenjp2*.so*")))
    yield "libopenjp2.so.7"
    found = ctypes.util.find_library("openjp2")  # runs ldconfig: only when the others are missing
    if found:
        yield found


@functools.cache
def library() -> ctypes.CDLL:
    """libopenjp2, loaded once: imagecodecs' own, else the system's; SourceError when neither is 2.5 or later."""
    for name in _candidates():
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        if not hasattr(lib, "opj_decoder_set_strict_mode"):
            continue  # before 2.5.0: no HTJ2K, no strict mode
        for function, (result, arguments) in _SIGNATURES.items():
            getattr(lib, function).restype = result
            getattr(lib, function).argtypes = arguments
        return lib
    raise SourceError("JPEG 2000 needs libopenjp2 2.5 or later (imagecodecs' wheel, or Debian's libopenjp2-7)")


class _Stream:
    """An OpenJPEG input stream over ``length`` bytes of a ByteSource from ``offset``.

    The callbacks must not raise into C: a failed read ends the stream and is raised after the decode.
    """

    def __init__(self, lib: ctypes.CDLL, data: ByteSource, offset: int, length: int) -> None:
        self._data, self._offset, self._length = data, offset, length
        self.position = 0
        self.failure: BaseException | None = None
        # The ctypes callbacks live as long as this object: the stream calls them until destroyed.
        self._callbacks = (_READ(self._read), _SKIP(self._skip), _SEEK(self._seek))
        self.handle = lib.opj_stream_create(_STREAM_BUFFER, 1)
        if not self.handle:
            raise MemoryError("opj_stream_create failed")
        lib.opj_stream_set_read_function(self.handle, self._callbacks[0])
        lib.opj_stream_set_skip_function(self.handle, self._callbacks[1])
        lib.opj_stream_set_seek_function(self.handle, self._callbacks[2])
        lib.opj_stream_set_user_data_length(self.handle, length)

    def _read(self, buffer: int, count: int, _user: int) -> int:
        wanted = min(count, self._length - self.position)
        if wanted <= 0:
            return _FAILED_READ
        try:
            chunk = self._data.pread(wanted, self._offset + self.position)
        except BaseException as exc:
            self.failure = self.failure or exc
            return _FAILED_READ
        if not chunk:
            return _FAILED_READ
        ctypes.memmove(buffer, chunk, len(chunk))
        self.position += len(chunk)
        return len(chunk)

    def _skip(self, count: int, _user: int) -> int:
        if self.position + count < 0:
            return -1
        self.position += count
        return count

    def _seek(self, position: int, _user: int) -> int:
        if position < 0:
            return 0
        self.position = position
        return 1


class _Memory:
    """A ByteSource over bytes in memory (a TIFF tile's stream)."""

    name = "<memory>"

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.size = len(data)

    def pread(self, count: int, offset: int) -> bytes:
        return self._data[offset : offset + count]

    def close(self) -> None:
        pass


def decode_stream(stream: bytes, dtype: np.dtype) -> np.ndarray:
    """A whole JPEG 2000 stream in memory (a JP2 file or a bare codestream), at full resolution."""
    container = stream.startswith(JP2_SIGNATURE)
    return decode(_Memory(stream), 0, len(stream), container=container, reduce=0, area=None, dtype=dtype)


def decode(
    data: ByteSource,
    offset: int,
    length: int,
    *,
    container: bool,
    reduce: int,
    area: tuple[int, int, int, int] | None,
    dtype: np.dtype,
) -> np.ndarray:
    """The window ``area`` (x0, y0, x1, y1 on the full-resolution reference grid; None: all of it) at
    ``reduce`` halvings, as an (h, w, components) array of ``dtype``."""
    lib = library()
    messages: list[bytes] = []
    on_error = _MESSAGE(lambda text, _user: messages.append(text or b""))
    stream = _Stream(lib, data, offset, length)
    codec = lib.opj_create_decompress(CODEC_JP2 if container else CODEC_J2K)
    image = POINTER(_Image)()
    try:
        parameters = ctypes.create_string_buffer(_PARAMETERS_BYTES)
        lib.opj_set_default_decoder_parameters(parameters)
        lib.opj_set_error_handler(codec, on_error, None)
        ok = (
            lib.opj_setup_decoder(codec, parameters)
            and lib.opj_decoder_set_strict_mode(codec, 1)  # a truncated file is an error, not a partial image
            and lib.opj_read_header(stream.handle, codec, ctypes.byref(image))
            and lib.opj_set_decoded_resolution_factor(codec, reduce)
            and (area is None or lib.opj_set_decode_area(codec, image, *area))
            and lib.opj_decode(codec, stream.handle, image)
            and lib.opj_end_decompress(codec, stream.handle)
        )
        if stream.failure is not None:
            raise stream.failure
        if not ok:
            detail = messages[0].decode("ascii", "replace").strip() if messages else "unknown error"
            raise SourceError(f"JPEG 2000 codestream cannot be decoded: {detail}")
        return _pixels(image.contents, dtype)
    finally:
        if image:
            lib.opj_image_destroy(image)
        lib.opj_destroy_codec(codec)
        lib.opj_stream_destroy(stream.handle)


def _pixels(image: _Image, dtype: np.dtype) -> np.ndarray:
    """OpenJPEG's int32 planes, interleaved into one array of the image's type."""
    count = image.numcomps
    first = image.comps[0]
    height, width = first.h, first.w
    out = np.empty((height, width, count), dtype=dtype)
    for index in range(count):
        component = image.comps[index]
        if (component.w, component.h) != (width, height) or not component.data:
            raise SourceError("JPEG 2000 components were not decoded to one size")
        out[:, :, index] = np.ctypeslib.as_array(component.data, shape=(height, width))
    return out
