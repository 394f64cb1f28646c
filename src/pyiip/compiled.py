"""The modules pip compiles with mypyc, and PYIIP_PURE=1, which runs them from their Python source.

The Python files are the one source of truth: setup.py compiles the modules
named here when a C compiler is there (scripts/mypyc_build.py), and an
extension module sits next to its ``.py``, which Python prefers. Without a
compiler, or with PYIIP_PURE=1 (``make test`` runs the unit tests so too),
the same code runs as plain Python; so does a module whose source changed
after it was compiled (an editable install, edited: ``make install`` compiles
it again). ``describe()`` is the start-up log line that says which. Only the
standard library here: setup.py reads ``COMPILED`` before pyiip is installed.
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
# with its footprint, the kept replies (in the process and in memcached), the IIIF parse of a tile
# to its request with the bounded numbers of every parser, the binding onto the pyramid's levels,
# the IIIF responder, and the application layer every request crosses (routing to a handler,
# finishing the reply, its id, counters and log line).
COMPILED = (
    "pyiip.server.fastcgi",
    "pyiip.http",
    "pyiip.cache.lru",
    "pyiip.cache.replies",
    "pyiip.cache.shared_replies",
    "pyiip.cache.tier",
    "pyiip.parse.iiif",
    "pyiip.parse.numbers",
    "pyiip.process.bind",
    "pyiip.respond.iiif",
    "pyiip.respond.app",
    "pyiip.respond.ops",
    "pyiip.respond.request_ids",
    "pyiip.respond.metrics",
)
PURE = "PYIIP_PURE"


# A compiled module older than its source by more than this was built before the source changed
# (an editable install edited since): the source runs. Less is one install writing both files.
STALE_AFTER = 60.0


def stale(source: str, extension: str) -> bool:
    """Whether the compiled ``extension`` predates the last change of ``source``."""
    return os.stat(source).st_mtime - os.stat(extension).st_mtime > STALE_AFTER


def _find(entry: str, fullname: str, kind: tuple[type, list[str]]) -> ModuleSpec | None:
    return importlib.machinery.FileFinder(entry, kind).find_spec(fullname)


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the modules of ``COMPILED`` as Python source when PYIIP_PURE is set (``always``) or
    when their compiled form is stale; otherwise leaves them to the usual finders (compiled first)."""

    def __init__(self, always: bool) -> None:
        self.always = always

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in COMPILED or path is None:
            return None
        sources = (importlib.machinery.SourceFileLoader, importlib.machinery.SOURCE_SUFFIXES)
        extensions = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
        for entry in path:
            source = _find(entry, fullname, sources)
            if source is None or source.origin is None:
                continue
            if self.always:
                return source
            compiled = _find(entry, fullname, extensions)
            if compiled is not None and compiled.origin is not None and stale(source.origin, compiled.origin):
                return source
            return None
        return None


def use_sources(always: bool) -> None:
    """Import the compiled modules from their ``.py`` from now on, always or when stale (at start-up,
    before any of them is imported: a few stat calls per module, once)."""
    if not any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst(always))


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
    return "pure-Python request path (not compiled at install: no C compiler, or the build failed; or stale)"
