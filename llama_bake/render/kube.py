"""``Catalog`` + ``BakePlan`` (+ the digests a build reported) -> Kubernetes manifests: a kustomize directory with a
file per model (its Deployment, Service, and for ``delivery: fetch`` the claim its cache lives on). Pure.

Each pod passes the ``restricted`` Pod Security Standard: the image's non-root user, no privilege escalation, every
capability dropped, the runtime's default seccomp profile, a read-only root filesystem (the cache and /tmp are
volumes). A model with an API key reads it from a Secret the team creates (never written here). A CUDA model asks
for ``nvidia.com/gpu`` and runs only on nodes whose GPU (as NVIDIA's GPU feature discovery labels it) has a compute
capability its base was compiled for. A Vulkan model asks for the GPU of its families' device plugin (AMD's
``amd.com/gpu``, Intel's ``gpu.intel.com/i915`` or ``xe``); its shaders run on any card of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from llama_bake.catalog.bases import Base
from llama_bake.catalog.checks import Catalog
from llama_bake.catalog.gpus import GPU_FAMILIES, VULKAN_FAMILIES
from llama_bake.catalog.models import Model
from llama_bake.errors import CatalogError
from llama_bake.plan.ir import DEFAULT_LLAMA_CACHE, SERVER_UID, BakePlan, Target

KUSTOMIZATION = "kustomization.yaml"
SECRET_KEY = "api-key"  # the key of the Secret's data that holds the API key
SHARED_SECRET = "llama-api-key"  # the Secret of every model that takes the project's `api_key`
KEY_DIR = "/run/secrets/llama-bake"
# GPU feature discovery's labels (NVIDIA's k8s-device-plugin): the compute capability of the node's GPUs.
GPU_MAJOR = "nvidia.com/gpu.compute.major"
GPU_MINOR = "nvidia.com/gpu.compute.minor"
GPU_RESOURCE = "nvidia.com/gpu"
# The startup probe's budget: the catalog's start period, or longer when the weights need it. Reading weights at
# start (page cache cold, network storage) at 100 MB/s, and fetching them (`delivery: fetch`) at 20 MB/s, are
# conservative: a pod killed in the middle of a long load starts it again.
LOAD_BYTES_PER_SECOND = 100_000_000
FETCH_BYTES_PER_SECOND = 20_000_000
PROBE_PERIOD = 10
# The memory a pod asks for: its weights (memory-mapped: the pages it reads count against it), the context's KV
# cache at 128 KiB per token (a budget for mid-size models in f16; raise it in an overlay for large ones) and 1 GiB
# for llama-server itself. A context the catalog leaves to the model counts as 4096 tokens.
KV_BYTES_PER_TOKEN = 128 * 1024
SERVER_BYTES = 1 << 30
DEFAULT_CTX = 4096
GIB = 1 << 30


def _seconds(duration: str) -> int:
    """A catalog duration (``10m``, ``30s``, ``500ms``) in whole seconds, at least 1."""
    for unit, factor in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if duration.endswith(unit) and duration[: -len(unit)].isdigit():
            return max(1, math.ceil(int(duration[: -len(unit)]) * factor))
    msg = f"not a duration: {duration!r}"
    raise ValueError(msg)


def _mebibytes(size: int) -> str:
    return f"{math.ceil(size / (1 << 20))}Mi"


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/component": "llama-server"}


def secret_name(model: Model) -> str:
    """The Secret that holds a model's API key: one for every model on the project's key, else its own."""
    return f"{model.name}-api-key" if model.api_key is not None else SHARED_SECRET


def startup_seconds(target: Target, model: Model) -> int:
    """How long the startup probe waits for /health: the start period, or what loading the weights may take."""
    size = target.weight_size or 0
    needed = math.ceil(size / LOAD_BYTES_PER_SECOND)
    if model.delivery == "fetch":
        needed += math.ceil(size / FETCH_BYTES_PER_SECOND)
    return max(_seconds(model.health.start_period), needed)


def memory_request(target: Target, model: Model) -> int:
    ctx = model.server.ctx_size or DEFAULT_CTX
    return (target.weight_size or 0) + ctx * KV_BYTES_PER_TOKEN + SERVER_BYTES


def _gpu_count(model: Model) -> int:
    gpus = model.compose.gpus
    if isinstance(gpus, tuple):
        return len(gpus)
    return 1 if gpus == "all" else gpus


def gpu_resources(base: Base) -> list[str]:
    """The extended resources a pod of ``base`` may ask for its GPU: NVIDIA's, or its families' device plugins'
    (none for a cpu base, or a vulkan base that names no family)."""
    if base.engine.devices == "nvidia":
        return [GPU_RESOURCE]
    return sorted({VULKAN_FAMILIES[f].kube_resource for f in base.gpu_families if f in VULKAN_FAMILIES})


def resource_problems(base: Base) -> list[str]:
    """Why a pod of ``base`` cannot say which GPU it asks for: one device plugin's resource per pod."""
    if not base.engine.devices:
        return []
    found = gpu_resources(base)
    if not found:
        return [
            f"base {base.name}: a {base.backend} base without gpu_families does not say which device plugin's GPU "
            "its pods ask for (AMD: amd.com/gpu; Intel: gpu.intel.com/i915 or xe): name its families"
        ]
    if len(found) > 1:
        return [
            f"base {base.name}: its families are served by {len(found)} device plugins ({', '.join(found)}) and a "
            "pod asks for one: put the families of each in a base of their own"
        ]
    return []


def _affinity(families: tuple[str, ...]) -> dict[str, Any]:
    """Nodes whose GPU has one of the compute capabilities the base was compiled for (one term each: ORed)."""
    capabilities = sorted({GPU_FAMILIES[f].compute_capability for f in families})
    terms = [
        {
            "matchExpressions": [
                {"key": GPU_MAJOR, "operator": "In", "values": [str(cc // 10)]},
                {"key": GPU_MINOR, "operator": "In", "values": [str(cc % 10)]},
            ]
        }
        for cc in capabilities
    ]
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}


def _probe(path_seconds: tuple[int, int, int]) -> dict[str, Any]:
    period, timeout, failures = path_seconds
    return {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _container(catalog: Catalog, model: Model, target: Target, image: str, cache: str) -> dict[str, Any]:
    base = catalog.base_of(model)
    health = model.health
    interval, timeout = _seconds(health.interval), _seconds(health.timeout)
    resources: dict[str, Any] = {
        "requests": {"cpu": base.engine.kube_cpu, "memory": _mebibytes(memory_request(target, model))}
    }
    gpu = gpu_resources(base)
    if gpu:
        resources["limits"] = {gpu[0]: _gpu_count(model)}
    mounts: list[dict[str, Any]] = [{"name": "cache", "mountPath": cache}, {"name": "tmp", "mountPath": "/tmp"}]
    container: dict[str, Any] = {"name": "llama-server", "image": image}
    if catalog.api_key_of(model) is not None:
        container["args"] = ["--api-key-file", f"{KEY_DIR}/{SECRET_KEY}"]
        mounts.append({"name": "api-key", "mountPath": KEY_DIR, "readOnly": True})
    container |= {
        "ports": [{"name": "http", "containerPort": model.server.port, "protocol": "TCP"}],
        "resources": resources,
        "startupProbe": _probe((PROBE_PERIOD, timeout, math.ceil(startup_seconds(target, model) / PROBE_PERIOD))),
        "readinessProbe": _probe((interval, timeout, health.retries)),
        "livenessProbe": _probe((interval, timeout, health.retries)),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    return container


def _volumes(catalog: Catalog, model: Model) -> list[dict[str, Any]]:
    if model.delivery == "fetch":
        cache: dict[str, Any] = {"persistentVolumeClaim": {"claimName": f"{model.name}-cache"}}
    else:
        cache = {"emptyDir": {"sizeLimit": "1Gi"}}
    volumes = [{"name": "cache", **cache}, {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    if catalog.api_key_of(model) is not None:
        secret = {"secretName": secret_name(model), "items": [{"key": SECRET_KEY, "path": SECRET_KEY}]}
        volumes.append({"name": "api-key", "secret": {**secret, "defaultMode": 0o440}})
    return volumes


def pod_spec(catalog: Catalog, model: Model, target: Target, image: str) -> dict[str, Any]:
    base = catalog.base_of(model)
    cache = dict(base.runtime_env).get("LLAMA_CACHE", DEFAULT_LLAMA_CACHE)
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SERVER_UID,
            "runAsGroup": SERVER_UID,
            "fsGroup": SERVER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if len(target.platforms) == 1:
        spec["nodeSelector"] = {"kubernetes.io/arch": target.platforms[0].removeprefix("linux/")}
    if base.engine.cuda:
        spec["affinity"] = _affinity(base.gpu_families)
    gpu = gpu_resources(base)
    if gpu:
        spec["tolerations"] = [{"key": gpu[0], "operator": "Exists", "effect": "NoSchedule"}]
    spec["containers"] = [_container(catalog, model, target, image, cache)]
    spec["volumes"] = _volumes(catalog, model)
    return spec


def model_documents(catalog: Catalog, model: Model, target: Target, image: str) -> list[dict[str, Any]]:
    """A model's Deployment and Service (and, for ``delivery: fetch``, the claim its cache lives on)."""
    labels = _labels(model.name)
    meta = {"name": model.name, "labels": labels}
    documents: list[dict[str, Any]] = []
    if model.delivery == "fetch":
        size = max(GIB, math.ceil((target.weight_size or 10 * GIB) * 1.1))
        claim = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{math.ceil(size / GIB)}Gi"}}}
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": f"{model.name}-cache", "labels": labels},
                "spec": claim,
            }
        )
    documents.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                # One GPU (and a ReadWriteOnce cache) at a time: the old pod goes before the new one starts.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": model.name}},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec(catalog, model, target, image)},
            },
        }
    )
    documents.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "type": "ClusterIP",
                "selector": {"app.kubernetes.io/name": model.name},
                "ports": [{"name": "http", "port": model.server.port, "targetPort": "http", "protocol": "TCP"}],
            },
        }
    )
    return documents


def _repository(image: str) -> str:
    """``registry:5000/team/model:tag`` -> ``registry:5000/team/model``."""
    head, _, tail = image.rpartition(":")
    return head if head and "/" not in tail else image


def manifests(
    catalog: Catalog, plan: BakePlan, built: Mapping[str, tuple[str, str]]
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """Each model's file (``NAME.yaml``: its documents) and the kustomization that lists them. ``built``: per model,
    the image a build pushed and its digest, which the kustomization pins (kustomize's ``images``)."""
    models = [m for m in catalog.models if any(t.name == m.name for t in plan.targets)]
    problems = [p for b in catalog.bases if any(catalog.base_of(m) is b for m in models) for p in resource_problems(b)]
    if problems:
        raise CatalogError(problems)
    files: dict[str, list[dict[str, Any]]] = {}
    images = []
    for target in (t for t in plan.targets if t.kind == "model"):
        model = next(m for m in catalog.models if m.name == target.name)
        image = plan.value_of(target.image)
        files[f"{model.name}.yaml"] = model_documents(catalog, model, target, image)
        if target.name in built:
            pushed, digest = built[target.name]
            entry = {"name": _repository(image)}
            if _repository(pushed) != entry["name"]:
                entry["newName"] = _repository(pushed)
            images.append(entry | {"digest": digest})
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    if images:
        kustomization["images"] = images
    return files, kustomization
