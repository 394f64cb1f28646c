"""setup.py's mypyc part: the hot request-path modules compiled to C when it can, never a failed install.

``pyiip.compiled.COMPILED`` names the modules (read from the source file: pyiip
is not installed yet). Without a C compiler, without mypy (a build
requirement, so only when building without isolation), with PYIIP_PURE=1, or
when mypyc or the compiler fails, the package installs as plain Python and
says so here and in its start-up log line.
"""

from __future__ import annotations

import os
import runpy
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools.command.build_ext import build_ext


def say(message: str) -> None:
    print(f"pyiip: {message}", file=sys.stderr, flush=True)


def modules(root: Path) -> list[str]:
    """The files of the modules to compile, as mypyc takes them (src/pyiip/http.py is pyiip.http)."""
    names = runpy.run_path(str(root / "src" / "pyiip" / "compiled.py"))["COMPILED"]
    return [os.path.relpath(root / "src" / Path(*name.split(".")).with_suffix(".py")) for name in names]


def c_compiler() -> str | None:
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(compiler)


def extensions(root: Path) -> list[Any]:
    """The extension modules for setup(), or none (plain Python) with the reason on stderr."""
    if os.environ.get("PYIIP_PURE"):
        say("PYIIP_PURE is set: installing the request path as plain Python")
        return []
    if c_compiler() is None:
        say("no C compiler: installing the request path as plain Python (slower; apt-get install gcc)")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        say("mypy (mypyc) is not installed: installing the request path as plain Python")
        return []
    try:  # mypy type-checks first, with the project's settings
        # An isolated build (pip, python -m build) has none of the runtime dependencies the compiled
        # modules import (numpy, tifffile...): mypy then takes them as Any, as mypyc compiles them
        # (calls on Python objects), and `type: ignore`s meant for their types are left unused.
        # `make lint` checks the types with them installed.
        config = [
            "--config-file",
            os.path.relpath(root / "pyproject.toml"),
            "--ignore-missing-imports",
            "--no-warn-unused-ignores",
        ]
        return list(mypycify([*config, *modules(root)], opt_level="3", debug_level="0"))
    except (Exception, SystemExit) as exc:  # mypy's errors exit
        say(f"mypyc failed ({exc!r}): installing the request path as plain Python")
        return []


class OptionalBuildExt(build_ext):
    """build_ext whose failure leaves a working pure-Python install instead of a failed one.

    The compiled modules share one runtime library: if any part fails, every
    part built is removed, so no module is left compiled against a missing one.
    """

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # the compiler's own messages are above
            say(f"compiling the request path failed ({exc}): it runs as plain Python")
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
