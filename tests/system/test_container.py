"""deploy/Containerfile's command lines, run outside a container.

The image cannot be built here: no container engine runs on this machine (the docker client has
no daemon; podman would need the debian base image, and no image registry is reachable). So the
runtime stage's environment, CMD and HEALTHCHECK are read from the file and run as they are,
with the image's paths swapped for the test's: HTTP on PYIIP_PORT (8000 in the image), a worker
per core, /livez and /readyz, the health check passing and then failing when the images cannot be
read, `docker stop`'s SIGTERM; and the FastCGI variant its comment gives, probed as the health
check probes it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from pyiip.server import fcgi_client
from pyiip.server.options import cores
from tests.support.deploy import DEPLOY, descendants, wait_for
from tests.support.imaging import rgb_pattern, write_vips_pyramid
from tests.support.servers import VENV_BIN, free_port, get, stop, wait_for_port

TEXT = (DEPLOY / "Containerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the runtime stage (after the last FROM), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", TEXT)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    found = [tuple(line.split(None, 1)) for line in lines]
    last_from = max(i for i, (name, _) in enumerate(found) if name == "FROM")
    return [(name, rest) for name, rest in found[last_from + 1 :]]  # type: ignore[misc]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for name, rest in instructions():
        if name == "ENV":
            env.update(word.split("=", 1) for word in shlex.split(rest))
    return env


def exec_form(name: str) -> list[str]:
    rest = next(rest for found, rest in instructions() if found == name)
    return json.loads(rest[rest.index("CMD") + 3 :] if name == "HEALTHCHECK" else rest)


@pytest.fixture
def outside(tmp_path) -> dict[str, str]:
    """The image's environment with the test's paths: the venv for /opt/pyiip/venv, a root for /images."""
    root = tmp_path / "images"
    root.mkdir()
    write_vips_pyramid(root / "rgb.tif", rgb_pattern(600, 400, seed=2))
    env = image_env()
    assert env["PYIIP_PORT"] == "8000" and env["FILESYSTEM_PREFIX"] == "/images/"
    env["PATH"] = env["PATH"].replace("/opt/pyiip/venv/bin", str(VENV_BIN)).replace("$PATH", os.environ["PATH"])
    return {**os.environ, **env, "FILESYSTEM_PREFIX": f"{root}/", "PYIIP_PORT": str(free_port())}


def health_check(env: dict[str, str]) -> int:
    return subprocess.run(exec_form("HEALTHCHECK"), env=env, timeout=30).returncode


def test_http_on_8000_by_default_with_probes_and_a_health_check(outside):
    assert re.search(r"^EXPOSE 8000$", TEXT, re.M)
    port = int(outside["PYIIP_PORT"])
    process = subprocess.Popen(exec_form("CMD"), env=outside, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, process=process)
        assert wait_for(lambda: len(descendants(process.pid, b"pyiip")) == cores())
        base = f"http://127.0.0.1:{port}"
        assert get(f"{base}/livez")[:3:2] == (200, b"ok\n")
        assert get(f"{base}/readyz")[:3:2] == (200, b"ready\n")
        assert get(f"{base}/iiif/3/rgb.tif/full/max/0/default.jpg")[0] == 200
        assert health_check(outside) == 0
        root = Path(outside["FILESYSTEM_PREFIX"])
        root.rename(root.with_name("unmounted"))  # the volume gone: not ready, still alive
        assert wait_for(lambda: get(f"{base}/readyz")[0] == 503, timeout=10)
        assert get(f"{base}/livez")[0] == 200
        assert health_check(outside) != 0
        process.send_signal(signal.SIGTERM)  # docker stop
        assert process.wait(30) == 0
    finally:
        stop(process, signal.SIGKILL)
    assert process.stderr is not None
    assert "Traceback" not in process.stderr.read()


def test_fastcgi_is_one_command_away(outside):
    documented = re.search(r"^#\s+docker run .* pyiip (pyiip fcgi --bind 0\.0\.0\.0:9000 .*)$", TEXT, re.M)
    assert documented, "the FastCGI variant's command line"
    port = free_port()
    command = shlex.split(documented.group(1).replace("0.0.0.0:9000", f"127.0.0.1:{port}"))
    process = subprocess.Popen(command, env=outside, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process=process)
        assert fcgi_client.request(f"127.0.0.1:{port}", "/readyz", timeout=10).status == 200
        probe = exec_form("HEALTHCHECK")[-1].replace("127.0.0.1:9000", f"127.0.0.1:{port}")  # the check's FastCGI half
        assert "fcgi_client" in probe and subprocess.run(["sh", "-c", probe], env=outside, timeout=30).returncode == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        stop(process, signal.SIGKILL)
