"""deploy/kubernetes/pyiip.yaml's container run outside a cluster: its command line and environment as the
kubelet would give them, with the test's places swapped in (the image root for S3, two memcached daemons on
free ports for the StatefulSet's pods, a free loopback port for 8000), probed as the kubelet probes it."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from pyiip.respond import ops
from tests.support.deploy import descendants, wait_for
from tests.support.mcserver import memcached
from tests.support.servers import VENV_BIN, free_port, get, running

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "pyiip.yaml"
HAVE_PROBES = hasattr(ops, "READY_PATH")  # /livez and /readyz are written alongside (server/ops work)
S3_SETTINGS = ("S3_BUCKET", "S3_PREFIX", "AWS_REGION")


def pod() -> dict[str, Any]:
    (deployment,) = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and d["kind"] == "Deployment"]
    (found,) = deployment["spec"]["template"]["spec"]["containers"]
    return found


def cpus(quantity: str) -> int:
    """requests.cpu with divisor 1, as the downward API gives it: rounded up."""
    return math.ceil(int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity))


def kubelet_args(args: list[str], env: dict[str, str]) -> list[str]:
    """$(VAR) in the container's args, expanded from its environment as the kubelet does."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in args]


def test_the_deployments_container_serves_with_its_command_line_and_settings(images, tmp_path: Path) -> None:
    container = pod()
    env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    env["PYIIP_WORKERS"] = str(cpus(container["resources"]["requests"]["cpu"]))
    shutil.copy(images.root / "rgb_deflate.tif", tmp_path / "rgb.tif")  # tiles that are rendered, then cached
    with memcached() as first, memcached() as second:
        names = env["MEMCACHED_SERVERS"].split(",")
        assert len(names) == 2
        env["MEMCACHED_SERVERS"] = f"{first.address},{second.address}"
        for name in S3_SETTINGS:
            del env[name]
        env["FILESYSTEM_PREFIX"] = f"{tmp_path}/"
        env["BLOCK_CACHE_DIR"] = str(tmp_path / "blocks")
        port = free_port()
        args = kubelet_args(container["args"], env)
        args[args.index("--host") + 1] = "127.0.0.1"
        args[args.index("--port") + 1] = str(port)
        command = [str(VENV_BIN / container["command"][0]), *container["command"][1:], *args]
        base = f"http://127.0.0.1:{port}"
        with running(command, port, env) as server:
            assert wait_for(lambda: len(descendants(server.pid, b"pyiip")) == int(env["PYIIP_WORKERS"]))
            for probe in ("readinessProbe", "livenessProbe"):
                status = get(f"{base}{container[probe]['httpGet']['path']}")[0]
                assert status == 200 or (not HAVE_PROBES and status == 404), (probe, status)
            for tile in range(4):
                assert get(f"{base}/fcgi-bin/iipsrv.fcgi?FIF=rgb.tif&JTL=3,{tile}")[0] == 200
            assert first.stats()["curr_items"] + second.stats()["curr_items"] >= 4
