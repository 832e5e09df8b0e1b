"""The Kubernetes manifests validate against the API schemas and follow the deployment rules.

No cluster is available in CI, so the manifests are checked offline: every resource against the
Kubernetes OpenAPI schema (kubernetes-validate, strict: unknown fields fail), the overlays after
applying their patches the way kustomize's strategic merge does for these simple cases, and the
operational rules (gRPC probes, resources, non-root, read-only artifacts, HPA targets, GPU).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
K8S_VERSION = "1.33.0"
WORKLOADS = ("Deployment", "StatefulSet")
SERVICES = {"gateway": 50051, "feature": 50052, "retrieval": 50053, "ranking": 50054,
            "uservalue": 50055}  # fmt: skip

Resource = dict[str, Any]


def _load(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomization(directory: Path) -> Resource:
    return _load(directory / "kustomization.yaml")[0]


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge for what our patches use: maps merge, lists of named maps merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(x, dict) and "name" in x for x in [*base, *patch])
    ):
        out = [copy.deepcopy(x) for x in base]
        index = {x["name"]: i for i, x in enumerate(out)}
        for item in patch:
            if item["name"] in index:
                out[index[item["name"]]] = _merge(out[index[item["name"]]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def _key(resource: Resource) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


def render(directory: Path) -> list[Resource]:
    """Resources of a kustomization: its resources (files or bases) with its patches applied."""
    kust = _kustomization(directory)
    resources: list[Resource] = []
    for entry in kust.get("resources", []):
        target = (directory / entry).resolve()
        resources.extend(render(target) if target.is_dir() else _load(target))
    for patch_entry in kust.get("patches", []):
        for patch in _load(directory / patch_entry["path"]):
            key = (patch["kind"], patch["metadata"]["name"])
            matches = [i for i, r in enumerate(resources) if _key(r) == key]
            assert len(matches) == 1, f"{patch_entry['path']} matches {len(matches)} resources"
            resources[matches[0]] = _merge(resources[matches[0]], patch)
    return resources


KUSTOMIZATIONS = [K8S / "base", *sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())]


def _by_kind(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def _workloads(resources: list[Resource]) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] in WORKLOADS}


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_rendered_resource_validates_against_the_kubernetes_schema(directory: Path) -> None:
    resources = render(directory)
    assert resources
    for resource in resources:
        kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_kustomization_files_exist(directory: Path) -> None:
    kust = _kustomization(directory)
    for entry in kust.get("resources", []):
        assert (directory / entry).exists(), entry
    for patch in kust.get("patches", []):
        assert (directory / patch["path"]).is_file(), patch
    for generator in kust.get("secretGenerator", []):
        for env_file in generator.get("envs", []):
            assert (directory / f"{env_file}.example").is_file(), f"{env_file}.example"


def test_base_has_a_workload_and_services_per_recserve_service() -> None:
    resources = render(K8S / "base")
    workloads, services = _workloads(resources), _by_kind(resources, "Service")
    for name, port in SERVICES.items():
        assert name in workloads
        for svc_name in (name, f"{name}-headless"):
            svc = services[svc_name]
            assert svc["spec"]["selector"] == {"app.kubernetes.io/name": name}
            assert [p["port"] for p in svc["spec"]["ports"]] == [port]
        assert services[f"{name}-headless"]["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_recserve_workloads_follow_the_deployment_rules(directory: Path) -> None:
    for name, workload in _workloads(render(directory)).items():
        if name not in SERVICES:
            continue
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        (container,) = pod["containers"]
        port = SERVICES[name]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, (name, probe)
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, kind)
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["artifacts"]["readOnly"] is True
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["artifacts"]["persistentVolumeClaim"]["readOnly"] is True
        env_from = {next(iter(e.values()))["name"] for e in container["envFrom"]}
        assert env_from == {"recserve-config", "recserve-api-keys"}


def test_hpas_scale_existing_deployments() -> None:
    resources = render(K8S / "base")
    deployments = _by_kind(resources, "Deployment")
    hpas = _by_kind(resources, "HorizontalPodAutoscaler")
    assert {"gateway", "retrieval", "ranking"} <= set(hpas)
    for hpa in hpas.values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_gateway_backend_addresses_use_the_headless_services() -> None:
    resources = render(K8S / "base")
    config = _by_kind(resources, "ConfigMap")["recserve-config"]["data"]
    services = _by_kind(resources, "Service")
    for name, port in SERVICES.items():
        if name == "gateway":
            continue
        address = config[f"RECSERVE_{name.upper()}_ADDR"]
        assert address == f"dns:///{name}-headless:{port}"
        assert f"{name}-headless" in services


def test_retrieval_pods_can_sync_added_items_from_the_feature_service() -> None:
    """services.retrieval reads RECSERVE_FEATURE_ADDR / RECSERVE_ITEM_SYNC_S from the shared
    ConfigMap: a restarted pod re-indexes the items added at runtime."""
    resources = render(K8S / "base")
    config = _by_kind(resources, "ConfigMap")["recserve-config"]["data"]
    assert config["RECSERVE_FEATURE_ADDR"] == "dns:///feature-headless:50052"
    assert float(config["RECSERVE_ITEM_SYNC_S"]) > 0
    pod = _by_kind(resources, "Deployment")["retrieval"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    refs = [e.get("configMapRef", {}).get("name") for e in container["envFrom"]]
    assert "recserve-config" in refs


def test_gpu_overlay_puts_ranking_on_a_gpu_node() -> None:
    ranking = _workloads(render(K8S / "overlays" / "gpu"))["ranking"]
    pod = ranking["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    (container,) = pod["containers"]
    assert container["image"] == "recserve:gpu"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RECSERVE_RANKING_DEVICE"] == "cuda"
    assert env["RECSERVE_RANKING_PORT"] == "50054"  # the patch merged, not replaced, env


def test_redis_overlay_shares_feature_state_through_a_durable_redis() -> None:
    resources = render(K8S / "overlays" / "redis")
    workloads = _workloads(resources)
    feature = workloads["feature"]
    assert feature["spec"]["replicas"] > 1
    (container,) = feature["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RECSERVE_FEATURE_BACKEND"] == "redis"
    assert env["RECSERVE_REDIS_URL"].startswith("redis://redis:6379")
    (redis,) = workloads["redis"]["spec"]["template"]["spec"]["containers"]
    args = redis["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "always"
    assert "redis" in _by_kind(resources, "Service")
