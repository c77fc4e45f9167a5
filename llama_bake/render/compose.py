"""``Catalog`` + ``BakePlan`` -> a Compose file that runs every model on the images of the local build. Pure.

Each model is a service on its catalog image, with a build section equal to its bake target (same
Dockerfile, args, labels and contexts; ``target:`` contexts become ``service:`` ones), so
``docker compose up --build`` builds locally instead of pulling. Bases are services too, with ``scale: 0``,
so they are built for their models but never started.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from llama_bake.catalog.backends import Backend
from llama_bake.catalog.checks import Catalog
from llama_bake.catalog.models import Model
from llama_bake.errors import CatalogError
from llama_bake.plan.ir import DEFAULT_LLAMA_CACHE, REGENERATE, BakePlan, Interp, Shape, Target

CACHE_VOLUME = "llama-cache"
SECRET = "hf_token"
LOOPBACK = "127.0.0.1"
SECRETS_DIR = "/run/secrets"  # where Compose mounts a service's secrets


def api_key_secret(model: str) -> str:
    """The Compose secret that holds a model's API key (target names are valid secret names)."""
    return f"{model}-api-key"


def _literal(text: str) -> str:
    """Compose interpolates ``$``; a literal one is written ``$$``."""
    return text.replace("$", "$$")


def _image(plan: BakePlan, value: Interp) -> str:
    """``value`` with compose's own ``${VAR:-default}`` for each bake variable. Callers pass no git-conditional
    value (``Target.image`` has none, ``_values`` leaves them out): compose cannot compute them."""
    defaults = {v.name: v.default for v in plan.variables}
    return "".join(
        _literal(p) if isinstance(p, str) else f"${{{p.name}:-{_literal(defaults[p.name])}}}" for p in value.parts
    )


def _values(plan: BakePlan, items: tuple[tuple[str, str | Interp], ...]) -> dict[str, str]:
    """Build args or labels for compose; the git-conditional ones (set by CI through bake) are left out."""
    return {
        k: _literal(v) if isinstance(v, str) else _image(plan, v)
        for k, v in items
        if isinstance(v, str) or not v.conditions
    }


_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:")


def _context(value: str, bake_dir: Path, compose_dir: Path) -> str:
    if value.startswith("target:"):
        return "service:" + value.removeprefix("target:")
    if _SCHEME.match(value) or value.startswith("git@"):
        return value  # docker-image://, oci-layout://, https://...git#ref
    # A local path, relative to the bake file: make it relative to the compose file.
    return Path(os.path.relpath(bake_dir / value, compose_dir)).as_posix()


def _build(plan: BakePlan, target: Target, bake_dir: Path, compose_dir: Path) -> dict[str, Any]:
    build: dict[str, Any] = {
        "context": Path(os.path.relpath(bake_dir, compose_dir)).as_posix(),
        "dockerfile": target.dockerfile,  # the file `generate` writes, relative to the context
        "platforms": list(target.platforms),
        "args": _values(plan, target.args),
        "labels": _values(plan, target.labels),
    }
    if target.contexts:
        build["additional_contexts"] = {k: _context(v, bake_dir, compose_dir) for k, v in target.contexts}
    if target.secrets:
        build["secrets"] = [SECRET]
    return build


def _gpus(model: Model) -> dict[str, Any]:
    device: dict[str, Any] = {"driver": "nvidia"}
    gpus = model.compose.gpus
    if isinstance(gpus, tuple):
        device["device_ids"] = list(gpus)
    else:
        device["count"] = gpus
    device["capabilities"] = ["gpu"]
    return {"resources": {"reservations": {"devices": [device]}}}


# The host's render group, by number: the image runs as a non-root user, the host's render nodes are root:render
# 0660, and Docker resolves a group name against the image's /etc/group, which has no `render`.
RENDER_GID = (
    "${LLAMA_BAKE_RENDER_GID:?set LLAMA_BAKE_RENDER_GID to the host's render group id (stat -c %g "
    "/dev/dri/renderD128) for the services on a vulkan base; any number with compose.cpu.yaml}"
)


def _device_nodes(backend: Backend) -> dict[str, Any]:
    """A service on a backend whose GPUs are device nodes: the nodes, and the group that may open them."""
    return {"devices": [f"{node}:{node}" for node in backend.device_nodes], "group_add": [RENDER_GID]}


def _health(shape: Shape, port: int) -> dict[str, Any]:
    start, interval, timeout, retries = shape.health
    return {
        "test": ["CMD-SHELL", f"curl -fsS http://127.0.0.1:{port}/health >/dev/null || exit 1"],
        "interval": interval,
        "timeout": timeout,
        "retries": retries,
        "start_period": start,
    }


def _with_key(
    service: dict[str, Any], target: Target, bake_dir: Path, compose_dir: Path, secrets: dict[str, dict[str, str]]
) -> None:
    """The model's API key, never written here: a key file is a Compose secret (a read-only bind mount) that
    llama-server reads with --api-key-file; a variable is read by Compose when it starts the service (which it
    refuses while the variable is unset) into llama-server's LLAMA_API_KEY. Compose cannot copy a variable's
    secret into a read-only container. /health stays open for the health check."""
    kind, value = target.api_key or ("", "")
    if kind == "env":
        why = f"{value} must hold the API key of {target.name} (api_key in the catalog)"
        service["environment"] = {"LLAMA_API_KEY": f"${{{value}:?{_literal(why)}}}"}
        return
    secret = api_key_secret(target.name)
    service["secrets"] = [secret]
    service["command"] = ["--api-key-file", f"{SECRETS_DIR}/{secret}"]
    secrets[secret] = {"file": Path(os.path.relpath(bake_dir / value, compose_dir)).as_posix()}


def compose_document(catalog: Catalog, plan: BakePlan, bake_dir: Path, compose_dir: Path) -> dict[str, Any]:
    services: dict[str, Any] = {}
    ports: dict[int, str] = {}
    problems: list[str] = []
    key_secrets: dict[str, dict[str, str]] = {}
    for target in plan.targets:
        service: dict[str, Any] = {"image": _image(plan, target.image)}
        service["build"] = _build(plan, target, bake_dir, compose_dir)
        if target.kind == "base":
            # Built for its models (a `service:` context), never started. Not a profile: Compose refuses a
            # `service:` context on a service whose profile is not active.
            service["scale"] = 0
            services[target.name] = service
            continue
        model = next(m for m in catalog.models if m.name == target.name)
        base = catalog.base_of(model)
        host_port = model.compose.host_port or model.server.port
        if host_port in ports:
            problems.append(
                f"models {ports[host_port]} and {model.name} both publish host port {host_port}; "
                f"set `compose.host_port` in models/{model.name}.yaml"
            )
        ports[host_port] = model.name
        cache = dict(base.runtime_env).get("LLAMA_CACHE", DEFAULT_LLAMA_CACHE)
        # `local`: the host's loopback only; `network`: every interface, and then the catalog demands a key.
        bind = f"{LOOPBACK}:" if target.access == "local" else ""
        service["ports"] = [f"{bind}{host_port}:{model.server.port}"]
        service["volumes"] = [f"{CACHE_VOLUME}:{cache}"]
        # The image runs as its non-root user and writes only to the cache volume (and /tmp).
        service["read_only"] = True
        service["tmpfs"] = ["/tmp"]
        if target.api_key:
            _with_key(service, target, bake_dir, compose_dir, key_secrets)
        service["healthcheck"] = _health(target.shape, model.server.port)
        service["restart"] = "unless-stopped"
        if base.engine.devices == "nvidia":
            service["deploy"] = _gpus(model)
        elif base.engine.devices == "nodes":
            service |= _device_nodes(base.engine)
        services[target.name] = service
    if problems:
        raise CatalogError(problems)
    document: dict[str, Any] = {"services": services, "volumes": {CACHE_VOLUME: {}}}
    secrets = dict(key_secrets)
    if any(t.secrets for t in plan.targets):
        # Read from the environment at build time, like `llama-bake build`: never written to a file.
        secrets[SECRET] = {"environment": "HF_TOKEN"}
    if secrets:
        document["secrets"] = dict(sorted(secrets.items()))
    return document


def cpu_override(document: dict[str, Any], title: str, command: str) -> str:
    """A Compose override for hosts without the GPUs: each service's GPU reservation (or device nodes and their
    group) removed (Compose's ``!reset``, 2.24+) and no layer offloaded. ``docker compose -f compose.yaml -f
    compose.cpu.yaml up``. Service names are target names (``[A-Za-z0-9_-]``), safe to write as they are."""
    lines = [f"# {title}", f"{REGENERATE}{command}", "services:"]
    for name, service in document["services"].items():
        if "deploy" in service:
            lines += [f"  {name}:", "    deploy: !reset null", "    environment:", '      LLAMA_ARG_N_GPU_LAYERS: "0"']
        elif "devices" in service:
            lines += [f"  {name}:", "    devices: !reset []", "    group_add: !reset []", "    environment:"]
            lines += ['      LLAMA_ARG_N_GPU_LAYERS: "0"']
    return "\n".join(lines) + "\n"


def cpu_override_path(compose_file: Path) -> Path:
    """``compose.yaml`` -> ``compose.cpu.yaml`` beside it."""
    return compose_file.with_name(f"{compose_file.stem}.cpu{compose_file.suffix or '.yaml'}")
