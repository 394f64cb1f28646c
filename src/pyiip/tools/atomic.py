"""Write a file whole or not at all: readers (and the server) never see a half-written image."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A hidden path next to ``target`` to write; renamed over ``target`` if the block succeeds, removed if not.

    Next to it so the rename stays on one filesystem (atomic); hidden and with the process id so
    the index lists nothing half-written and two writers of one name do not share a file.
    """
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
