"""The modules pip compiles with mypyc, and PYIIP_PURE=1, which runs them from their Python source.

The Python files are the one source of truth: setup.py compiles the modules
named here when a C compiler is there (scripts/mypyc_build.py), and an
extension module sits next to its ``.py``, which Python prefers. Without a
compiler, or with PYIIP_PURE=1 (``make test`` runs the unit tests so too),
the same code runs as plain Python; ``describe()`` is the start-up log line
that says which. Only the standard library here: setup.py reads ``COMPILED``
before pyiip is installed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

# What the profile of the bench's scenarios names (docs/performance.md, "Compiled request path"):
# FastCGI records and name-value pairs, the CGI head and header lookups, the byte-budgeted LRU
# with its footprint, the kept replies, and the IIIF parse of a tile to its request.
COMPILED = (
    "pyiip.server.fastcgi",
    "pyiip.http",
    "pyiip.cache.lru",
    "pyiip.cache.replies",
    "pyiip.parse.iiif",
)
PURE = "PYIIP_PURE"


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds pyiip's modules as Python source only, so a compiled one next to it is passed over."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in COMPILED or path is None:
            return None
        loaders = [(importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)]
        for entry in path:
            spec = importlib.machinery.FileFinder(entry, *loaders).find_spec(fullname, target)
            if spec is not None:
                return spec
        return None


def use_sources() -> None:
    """Import the compiled modules from their ``.py`` from now on (before any of them is imported)."""
    if not any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())


def is_compiled(module: ModuleType) -> bool:
    return (module.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def compiled_modules() -> list[str]:
    """The modules of ``COMPILED`` this process runs compiled (importing them if needed)."""
    return [name for name in COMPILED if is_compiled(importlib.import_module(name))]


def describe() -> str:
    """One line for the start-up log: which form of the request path this process runs."""
    names = compiled_modules()
    if names:
        return f"compiled request path (mypyc): {', '.join(names)}"
    if os.environ.get(PURE):
        return f"pure-Python request path ({PURE} is set)"
    return "pure-Python request path (not compiled at install: no C compiler, or the build failed)"
