"""The file types pyiip serves, by name suffix and by first bytes: what the index lists.

open_source (read/image.py) picks a reader by a file's first bytes; the index cannot open every
file of a large image root, so it lists by suffix, and by first bytes only the files without
one. Each reader registers the types it serves here when its module is imported (the Service
imports every reader before the first request): a new reader shows in the index by
registering, with no change to the index.
"""

from __future__ import annotations

from dataclasses import dataclass

MAGIC_BYTES = 12  # read from an extension-less file to recognise it
# FITS, which ``pyiip convert`` turns into a served cube: the index names such files while no reader
# registers them, and ``pyiip pyramid`` (libvips) sends them to convert.
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.fz", ".fit.fz")


@dataclass(frozen=True, slots=True)
class FileType:
    """One servable type: its name suffixes (lower case, with the dot) and its first bytes."""

    name: str
    suffixes: tuple[str, ...]
    magic: tuple[bytes, ...] = ()  # each at most MAGIC_BYTES long


_TYPES: dict[str, FileType] = {}


def register(kind: FileType) -> None:
    """Declare ``kind`` served (again under the same name: replaced)."""
    if any(len(m) > MAGIC_BYTES for m in kind.magic) or any(s != s.lower() for s in kind.suffixes):
        raise ValueError(f"{kind.name}: suffixes must be lower case and magic at most {MAGIC_BYTES} bytes")
    _TYPES[kind.name] = kind


def suffixes() -> tuple[str, ...]:
    """Every served suffix."""
    return tuple(s for kind in _TYPES.values() for s in kind.suffixes)


def magic() -> tuple[bytes, ...]:
    """The first bytes of every served type that has them."""
    return tuple(m for kind in _TYPES.values() for m in kind.magic)


def names() -> list[str]:
    """The served types' names, as registered."""
    return list(_TYPES)
