"""Mistakes on the command lines of ``pyiip serve``, ``pyiip fcgi`` and ``pyiip.fcgi`` (issue 17).

Each one ends with exit status 2 and one line on stderr naming the option and the problem:
no usage block, no traceback. Run as a user runs them, as processes.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from pyiip import __version__, cli
from pyiip.server import options
from tests.support.deploy import REPO
from tests.support.servers import VENV_BIN, free_port
from tests.system.test_http_mode import make_run_command

PYIIP = str(VENV_BIN / "pyiip")
FCGI = str(VENV_BIN / "pyiip.fcgi")


def refused(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """The one line a refused command printed (exit status 2 checked, nothing else on stderr or stdout)."""
    environ = {**os.environ, **(env or {})}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=cwd, env=environ
    )
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stdout == "", result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def busy_port():
    """A port something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--port", "70000"], "pyiip serve: error: argument --port: not a port number (1-65535): '70000'"),
        (["--port", "http"], "pyiip serve: error: argument --port: not a port number (1-65535): 'http'"),
        (["--workers", "-1"], "pyiip serve: error: argument --workers: not a number of processes"),
        (["--root", "/nonexistent"], "pyiip serve: error: argument --root: no such directory: '/nonexistent'"),
        (["--root", "/etc/hostname"], "pyiip serve: error: argument --root: not a directory: '/etc/hostname'"),
    ],
)
def test_serve_argument_mistakes(arguments, expected):
    line = refused([PYIIP, "serve", *arguments])
    assert line.startswith(expected) and line.endswith("(see pyiip serve --help)"), line


def test_serve_port_in_use(busy_port, images):
    line = refused([PYIIP, "serve", "--port", str(busy_port), "--root", str(images.root)])
    why = "address already in use (another server listens there: choose another port)"
    assert line == f"pyiip serve: error: --port {busy_port}: {why}"


def test_make_run_port_in_use(busy_port, images):
    """The command `make run` runs, on a port in use."""
    settings, command = make_run_command(images.root, busy_port)
    line = refused(command, cwd=REPO, env=settings)
    assert line.startswith(f"pyiip serve: error: --port {busy_port}: address already in use"), line


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("192.0.2.1", "error: --host 192.0.2.1: not an address of this machine"),  # TEST-NET-1: bound, never reached
        ("no such host", "error: argument --host: not an IP address or a host name: 'no such host'"),
        ("300.1.2.3:80", "error: argument --host: not an IP address or a host name: '300.1.2.3:80'"),
    ],
)
def test_serve_bad_host(host, expected, images):
    """No host name the test gives is looked up: the machine's resolver is no target of the tests."""
    line = refused([PYIIP, "serve", "--host", host, "--port", str(free_port()), "--root", str(images.root)])
    assert line.startswith(f"pyiip serve: {expected}"), line


@pytest.mark.parametrize("program", [[PYIIP, "fcgi"], [FCGI]], ids=["pyiip fcgi", "pyiip.fcgi"])
@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--bind", "127.0.0.1:99999"], "argument --bind: not a port number (1-65535): '99999' in '127.0.0.1:99999'"),
        (["--bind", "127.0.0.1"], "argument --bind: neither HOST:PORT nor a socket path: '127.0.0.1'"),
        (["--bind", "/nonexistent/dir/pyiip.sock"], "argument --bind: no directory '/nonexistent/dir' for the socket"),
        (
            ["--bind", "/tmp/x.sock", "--mode", "abc"],
            "argument --mode: not an octal permission mode such as 660: 'abc'",
        ),
        (["--mode", "999"], "argument --mode: not an octal permission mode such as 660: '999'"),
        (["--workers", "-1"], "argument --workers: not a number of processes"),
        (["--backlog", "0"], "argument --backlog: not a positive whole number: '0'"),
    ],
)
def test_fcgi_argument_mistakes(program, arguments, expected):
    line = refused([*program, *arguments])
    prog = " ".join(Path(part).name for part in program)
    assert line.startswith(f"{prog}: error: {expected}") and line.endswith(f"(see {prog} --help)"), line


@pytest.mark.parametrize("program", [[PYIIP, "fcgi"], [FCGI]], ids=["pyiip fcgi", "pyiip.fcgi"])
def test_fcgi_bind_in_use(program, busy_port, tmp_path):
    prog = " ".join(Path(part).name for part in program)
    line = refused([*program, "--bind", f"127.0.0.1:{busy_port}"])
    assert line.startswith(f"{prog}: error: --bind 127.0.0.1:{busy_port}: address already in use"), line
    taken = tmp_path / "file.sock"
    taken.write_text("not a socket")
    assert refused([*program, "--bind", str(taken)]) == f"{prog}: error: --bind {taken}: exists and is not a socket"
    assert taken.read_text() == "not a socket"  # left alone


def test_mode_abc_alone_and_unknown_subcommand():
    assert refused([PYIIP, "fcgi", "--mode", "abc"]).startswith("pyiip fcgi: error: argument --mode:")
    assert refused([PYIIP, "srve"]).startswith("pyiip: error: argument command: invalid choice: 'srve'")


@pytest.mark.parametrize(("program", "name"), [([PYIIP], "pyiip"), ([FCGI], "pyiip.fcgi")])
def test_version(program, name):
    result = subprocess.run([*program, "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout == f"{name} {__version__}\n"


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")]


def _subparser(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


def test_every_option_has_help_and_shows_its_default():
    fcgi = options.Parser(prog="pyiip.fcgi")
    options.fcgi_arguments(fcgi)
    for parser in (_subparser("serve"), _subparser("fcgi"), fcgi):
        text = re.sub(r"\s+", " ", parser.format_help())
        for action in _options(parser):
            assert action.help, (parser.prog, action.dest)
            if action.default is not None:
                assert f"(default: {action.default})" in text, (parser.prog, action.dest)
    assert "--port PORT TCP port (default: 8000)" in re.sub(r"\s+", " ", _subparser("serve").format_help())
