"""deploy/kubernetes/: each object valid against the Kubernetes schemas (kubernetes-validate, offline and strict),
and the objects wired to each other and to pyiip as docs/deployment.md says."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pyiip import config
from pyiip.cache.memcached import parse_servers

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# The oldest Kubernetes release still in the main clouds' extended support, and the newest one bundled.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def find(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (found,) = workload["spec"]["template"]["spec"]["containers"]
    return found


def env(workload: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(workload)["env"]}


def test_every_object_is_valid_against_the_schemas() -> None:
    kinds = sorted(d["kind"] for d in documents())
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "Service", "Service", "ServiceAccount", "StatefulSet"]
    for version in VERSIONS:
        for document in documents():
            kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("misspelt field", lambda d: container(d).__setitem__("readinesProbe", {})),
        ("wrong type", lambda d: container(d)["ports"][0].__setitem__("containerPort", "8000")),
        ("missing field", lambda d: d["spec"].pop("selector")),
    ],
)
def test_the_validator_refuses_a_broken_deployment(where: str, change: Any) -> None:
    broken = copy.deepcopy(find("Deployment", "pyiip"))
    change(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def test_the_service_and_the_autoscaler_reach_the_deployment() -> None:
    deployment = find("Deployment", "pyiip")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = find("Service", "pyiip")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == container(deployment)["ports"][0]["name"]
    hpa = find("HorizontalPodAutoscaler", "pyiip")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "pyiip"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    assert (
        deployment["spec"]["template"]["spec"]["serviceAccountName"]
        == find("ServiceAccount", "pyiip")["metadata"]["name"]
    )


def test_pyiip_serves_http_on_8000_one_worker_per_cpu_requested_with_both_probes() -> None:
    pod = container(find("Deployment", "pyiip"))
    assert pod["command"] == ["pyiip", "serve"]
    args = pod["args"]
    assert args[args.index("--port") + 1] == "8000" and pod["ports"] == [{"name": "http", "containerPort": 8000}]
    assert args[args.index("--workers") + 1] == "$(PYIIP_WORKERS)"
    workers = env(find("Deployment", "pyiip"))["PYIIP_WORKERS"]["resourceFieldRef"]
    assert workers == {"containerName": pod["name"], "resource": "requests.cpu", "divisor": "1"}
    assert pod["resources"]["requests"]["cpu"]
    assert pod["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert pod["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}


def test_the_pods_are_confined() -> None:
    for workload in (find("Deployment", "pyiip"), find("StatefulSet", "memcached")):
        spec = workload["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
        assert spec["automountServiceAccountToken"] is False
        security = container(workload)["securityContext"]
        assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
    deployment = find("Deployment", "pyiip")
    (mount,) = container(deployment)["volumeMounts"]
    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    assert mount == {"name": volume["name"], "mountPath": "/tmp"} and "emptyDir" in volume
    assert env(deployment)["BLOCK_CACHE_DIR"].startswith("/tmp/")  # the only writable place


def test_memcached_servers_name_every_statefulset_pod_through_the_headless_service() -> None:
    statefulset = find("StatefulSet", "memcached")
    headless = find("Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= statefulset["spec"]["template"]["metadata"]["labels"].items()
    port = container(statefulset)["ports"][0]["containerPort"]
    pods = [f"{statefulset['metadata']['name']}-{i}" for i in range(statefulset["spec"]["replicas"])]
    expected = {f"{pod}.{headless['metadata']['name']}:{port}" for pod in pods}
    servers = env(find("Deployment", "pyiip"))["MEMCACHED_SERVERS"]
    assert set(servers.split(",")) == expected
    assert len(parse_servers(servers)) == len(pods)  # as pyiip reads it


def test_the_settings_are_ones_pyiip_accepts() -> None:
    values = {name: value for name, value in env(find("Deployment", "pyiip")).items() if isinstance(value, str)}
    settings = config.load(values)
    assert settings.s3_bucket and settings.block_cache_dir == values["BLOCK_CACHE_DIR"]
    assert settings.memcached_servers == values["MEMCACHED_SERVERS"]
