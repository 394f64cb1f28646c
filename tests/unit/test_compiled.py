"""The compiled request path (mypyc) and its pure-Python twin: which form runs, PYIIP_PURE=1, and a build
that fails leaving plain Python. Each form is looked at in a fresh interpreter (the import decides)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from setuptools import Distribution, Extension

from pyiip import compiled

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
BUILD = ROOT / "scripts" / "mypyc_build.py"


def _helper():
    spec = importlib.util.spec_from_file_location("pyiip_mypyc_build", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mypyc_build = _helper()

PROBE = """
import json
from pyiip import compiled
import pyiip.server.fastcgi, pyiip.cache.lru, pyiip.model
files = {name: __import__(name, fromlist=["x"]).__file__ for name in (*compiled.COMPILED, "pyiip.model")}
print(json.dumps({"files": files, "describe": compiled.describe()}))
"""


def probe(src: Path = SRC, **env: str) -> dict:
    environ = {"PATH": os.environ["PATH"], "PYTHONPATH": str(src), **env}
    done = subprocess.run([sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def built(name: str) -> bool:
    """Whether the install compiled ``name``: an extension module next to its source."""
    source = SRC / Path(*name.split(".")).with_suffix(".py")
    return any(source.parent.glob(source.stem + ".*.so"))


def test_pure_runs_every_compiled_module_from_its_source():
    found = probe(PYIIP_PURE="1")
    assert all(found["files"][name].endswith(".py") for name in compiled.COMPILED), found
    assert found["describe"] == "pure-Python request path (PYIIP_PURE is set)"


def test_without_pure_a_compiled_module_is_the_one_imported_and_the_log_line_says_so():
    found = probe()
    runs = [name for name in compiled.COMPILED if not found["files"][name].endswith(".py")]
    assert runs == [name for name in compiled.COMPILED if built(name)]  # every module built, and only those
    assert found["files"]["pyiip.model"].endswith(".py")  # the rest stays Python
    if runs:
        assert found["describe"] == f"compiled request path (mypyc): {', '.join(runs)}"
    else:
        assert found["describe"].startswith("pure-Python request path (not compiled at install")


def test_a_module_edited_since_it_was_compiled_runs_from_its_source(tmp_path):
    source, extension = tmp_path / "m.py", tmp_path / "m.so"
    source.write_text("")
    extension.write_text("")
    os.utime(extension, (1000.0, 1000.0))
    os.utime(source, (1000.0 + compiled.STALE_AFTER / 2, 1000.0 + compiled.STALE_AFTER / 2))
    assert not compiled.stale(str(source), str(extension))  # one install writes both
    os.utime(source, (1000.0 + 2 * compiled.STALE_AFTER, 1000.0 + 2 * compiled.STALE_AFTER))
    assert compiled.stale(str(source), str(extension))
    # The whole import, in a copy of the tree whose fastcgi.py changed after the build:
    copy = tmp_path / "src"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "static"))
    edited = copy / "pyiip" / "server" / "fastcgi.py"
    built_at = max((so.stat().st_mtime for so in edited.parent.glob("fastcgi.*.so")), default=0.0)
    later = max(built_at, edited.stat().st_mtime) + 2 * compiled.STALE_AFTER
    os.utime(edited, (later, later))
    found = probe(copy)
    assert found["files"]["pyiip.server.fastcgi"] == str(edited)
    others = [name for name in compiled.COMPILED if name != "pyiip.server.fastcgi"]
    assert [n for n in others if not found["files"][n].endswith(".py")] == [n for n in others if built(n)]


def test_the_build_compiles_the_files_of_the_listed_modules(monkeypatch):
    monkeypatch.chdir(ROOT)
    files = mypyc_build.modules(ROOT)
    assert files == [f"src/{name.replace('.', '/')}.py" for name in compiled.COMPILED]
    assert all((ROOT / f).is_file() for f in files)


@pytest.mark.parametrize(("env", "says"), [({"PYIIP_PURE": "1"}, "PYIIP_PURE"), ({"CC": "/nonexistent/cc"}, "no C")])
def test_no_compiler_or_pure_installs_plain_python(monkeypatch, capsys, env, says):
    monkeypatch.delenv("PYIIP_PURE", raising=False)  # make test's second pass sets it
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert mypyc_build.extensions(ROOT) == []
    assert says in capsys.readouterr().err


def test_a_failed_compile_leaves_a_working_install_and_no_part_built(tmp_path, monkeypatch, capsys):
    (tmp_path / "good.c").write_text(
        '#include <Python.h>\nstatic struct PyModuleDef m = {PyModuleDef_HEAD_INIT, "good"};\n'
        "PyMODINIT_FUNC PyInit_good(void) { return PyModule_Create(&m); }\n"
    )
    (tmp_path / "bad.c").write_text("this is not C\n")
    monkeypatch.chdir(tmp_path)
    extensions = [Extension("good", ["good.c"]), Extension("bad", ["bad.c"])]
    dist = Distribution({"name": "t", "ext_modules": extensions})
    command = mypyc_build.OptionalBuildExt(dist)
    command.inplace = True
    command.ensure_finalized()
    command.run()  # no exception: the install goes on
    assert "compiling the request path failed" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.so"))  # good.so was built first, then removed with the rest
