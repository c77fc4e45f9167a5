"""``llama-bake smoke``: each built model image, run on the Docker Engine -> a ``SmokeResult`` (time to healthy,
tokens per second, or what went wrong). The container is started with the GPU when the engine can give one (or on
the CPU when asked), ``/health`` is polled until it answers 200, one completion is asked for, and the container is
removed whatever happened. Containers are reached through the ``Containers`` protocol; HTTP goes to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Protocol

from llama_bake.buildx.dri import render_gid as engine_render_gid
from llama_bake.buildx.driver import EngineInfo
from llama_bake.buildx.invocation import expand_targets
from llama_bake.buildx.launch import Launch
from llama_bake.buildx.summary import image_of
from llama_bake.catalog.backends import BACKENDS
from llama_bake.errors import DockerError, UsageError
from llama_bake.plan.ir import BakePlan, Target

GpuMode = Literal["auto", "gpu", "cpu"]
PROMPT = "The capital of France is"
TOKENS = 8


class Containers(Protocol):
    def start(self, launch: Launch) -> str:
        """Start the container detached; its ID."""
        ...

    def exited(self, container: str) -> int | None:
        """Its exit code once it has stopped, else None."""
        ...

    def logs(self, container: str) -> str: ...

    def remove_container(self, container: str) -> None: ...


class Engine(Containers, Protocol):
    def engine(self) -> EngineInfo | None:
        """The Docker Engine that runs the containers; None when none answers."""


@dataclass(frozen=True)
class SmokeResult:
    model: str
    image: str
    ok: bool
    on: str  # "GPU (...)" or "CPU"
    seconds_to_healthy: float | None = None
    tokens: int = 0
    tokens_per_second: float | None = None
    detail: str = ""


class Get(Protocol):
    def __call__(
        self, url: str, body: bytes | None, timeout: float, headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]: ...


def http(url: str, body: bytes | None, timeout: float, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """GET (or POST ``body`` as JSON): the status and the body; 0 when nothing answers yet."""
    sent = dict(headers or {}) | ({"Content-Type": "application/json"} if body else {})
    request = urllib.request.Request(url, data=body, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, b""


def smoke_one(  # noqa: PLR0913 - the engine, the launch and how long to wait; the clock and HTTP are seams for tests
    containers: Containers,
    model: str,
    launch: Launch,
    timeout: float,
    get: Get = http,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> SmokeResult:
    on = "CPU" if not launch.gpu else f"GPU ({'nvidia runtime' if launch.gpu == 'runtime' else launch.gpu})"
    if launch.devices:
        on = f"GPU ({', '.join(launch.devices)}, group {', '.join(launch.groups)})"
    result = SmokeResult(model, launch.image, False, on)
    container = containers.start(launch)
    try:
        started = clock()
        base = f"http://127.0.0.1:{launch.host_port}"
        while True:
            status, _ = get(f"{base}/health", None, 5.0)
            if status == 200:
                break
            code = containers.exited(container)
            if code is not None:
                tail = "\n".join(containers.logs(container).splitlines()[-15:])
                return _with(result, detail=f"the container exited with {code} before it was healthy:\n{tail}")
            if clock() - started > timeout:
                tail = "\n".join(containers.logs(container).splitlines()[-15:])
                said = f"HTTP {status}" if status else "no answer"
                return _with(result, detail=f"/health not 200 within {timeout:.0f}s (last: {said}):\n{tail}")
            sleep(0.5)
        return _complete(get, base, launch, _with(result, seconds_to_healthy=clock() - started))
    finally:
        containers.remove_container(container)


def _complete(get: Get, base: str, launch: Launch, result: SmokeResult) -> SmokeResult:
    """One completion from a healthy server (with its API key when it has one: refused without it first)."""
    body = json.dumps({"prompt": PROMPT, "n_predict": TOKENS, "temperature": 0}).encode()
    headers = {}
    if launch.api_key:
        # The key must be what lets a request in: without it the server refuses before it generates.
        status, _ = get(f"{base}/completion", body, 30.0)
        if status != 401:
            return _with(result, detail=f"/completion without the API key answered HTTP {status}, not 401")
        headers = {"Authorization": f"Bearer {launch.api_key}"}
    status, answer = get(f"{base}/completion", body, 300.0, headers)
    if status != 200:
        return _with(result, detail=f"/completion answered HTTP {status}")
    try:
        data = json.loads(answer)
    except json.JSONDecodeError:
        return _with(result, detail="/completion did not answer JSON")
    tokens = int(data.get("tokens_predicted") or 0)
    rate = (data.get("timings") or {}).get("predicted_per_second")
    if tokens <= 0:
        return _with(result, detail="/completion returned no token")
    return _with(
        result,
        ok=True,
        tokens=tokens,
        tokens_per_second=float(rate) if isinstance(rate, int | float) else None,
        detail=str(data.get("content") or "").strip()[:80],
    )


def _with(result: SmokeResult, **changes: object) -> SmokeResult:
    return replace(result, **changes)  # type: ignore[arg-type]


def result_line(result: SmokeResult) -> str:
    if not result.ok:
        return f"FAIL {result.model} ({result.image}, {result.on}): {result.detail}"
    rate = f", {result.tokens_per_second:.1f} tokens/s" if result.tokens_per_second is not None else ""
    return (
        f"ok   {result.model} ({result.image}, {result.on}): healthy in {result.seconds_to_healthy:.1f}s, "
        f"{result.tokens} tokens{rate}: {result.detail!r}"
    )


NO_NVIDIA = (
    "the engine cannot give a container a GPU (no nvidia runtime, no CDI device): install the NVIDIA "
    "Container Toolkit (nvidia-ctk runtime configure --runtime=docker, then restart dockerd; Docker "
    "Desktop on Windows: WSL 2 with a current NVIDIA driver), or smoke on the CPU with --cpu"
)
NO_RENDER_NODE = (
    "a vulkan image needs the engine host's GPU render node, and none can be given: the engine is not this "
    "machine (or is Docker Desktop, whose VM has no /dev/dri), or this machine has no /dev/dri/renderD* (load the "
    "GPU's amdgpu, i915 or xe driver); smoke on the engine's host, or on the CPU with --cpu"
)


def launch_for(  # noqa: PLR0913 - a pure function of the facts a container's launch depends on
    target_args: Mapping[str, str],
    image: str,
    backend: str,
    mode: GpuMode,
    engine_gpu: str,
    host_port: int,
    host_network: bool,
    render_gid: int | None = None,
) -> Launch:
    """How to start one model: with its backend's GPU when the engine can give one (``auto``), always (``gpu``:
    refused without one) or never (``cpu``: no layer offloaded). A cuda base's GPU comes through NVIDIA's runtime
    or CDI (``engine_gpu``); a vulkan base's as the host's render nodes with their group (``render_gid``)."""
    port = int(target_args.get("ENV_LLAMA_ARG_PORT") or 8080)
    env: dict[str, str] = {}
    entry = BACKENDS[backend]
    nodes = entry.devices == "nodes"
    if mode == "gpu" and nodes and render_gid is None:
        raise DockerError(NO_RENDER_NODE)
    if mode == "gpu" and not nodes and not engine_gpu:
        raise DockerError(NO_NVIDIA)
    gpu = ""
    devices: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    if mode != "cpu" and entry.devices == "nvidia" and engine_gpu:
        gpu = "runtime" if engine_gpu == "the nvidia runtime" else "nvidia.com/gpu=all"
    if mode != "cpu" and nodes and render_gid is not None:
        devices, groups = entry.device_nodes, (str(render_gid),)
    if not gpu and not devices:
        env["LLAMA_ARG_N_GPU_LAYERS"] = "0"
    if host_network:
        # The container shares the host's network: its server listens on 127.0.0.1 only, on a free port.
        env |= {"LLAMA_ARG_HOST": "127.0.0.1", "LLAMA_ARG_PORT": str(host_port)}
        port = host_port
    return Launch(image, env, host_port, port, host_network, gpu, devices=devices, groups=groups)


def api_key_of(target: Target, bake_dir: Path, environ: Mapping[str, str]) -> str:
    """The model's API key from where the catalog says it is read (its first key line, as llama-server reads a
    key file); '' when it has none. Raises ``UsageError`` naming the variable or file when it is not there."""
    if not target.api_key:
        return ""
    kind, value = target.api_key
    if kind == "env":
        key = environ.get(value, "").strip()
        where = f"the environment variable {value}, which is not set"
    else:
        path = bake_dir / value
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            lines = []
            where = f"{path}, which cannot be read ({exc.strerror})"
        else:
            where = f"{path}, which holds no key"
        key = next((line for line in lines if line and not line.startswith("#")), "")
    if not key:
        msg = f"model {target.name}: its API key (api_key in the catalog) is read from {where}"
        raise UsageError(msg)
    return key


def smoke(  # noqa: PLR0913 - the plan, the engine and the command's options
    plan: BakePlan,
    runner: Engine,
    models: tuple[str, ...],
    variables: tuple[str, ...],
    mode: GpuMode,
    *,
    host_network: bool,
    timeout: float,
    bake_dir: Path = Path(),
    environ: Mapping[str, str] = os.environ,
    render_gid: Callable[[EngineInfo], int | None] = engine_render_gid,
) -> list[SmokeResult]:
    """Run each model image (default: every model) on the Docker Engine, one after another: healthy, one
    completion, removed. The images are the ones a build names (``--var`` as for build)."""
    names = [n for n in expand_targets(plan, models or ("default",)) if plan.target(n).kind == "model"]
    if not names:
        msg = "nothing to smoke: name a model (see `llama-bake list`)"
        raise UsageError(msg)
    keys = {name: api_key_of(plan.target(name), bake_dir, environ) for name in names}  # all found before any run
    engine = runner.engine()
    if engine is None:
        msg = (
            "no Docker Engine answers: smoke runs the images on it (start Docker Desktop or dockerd; DOCKER_HOST "
            "or `docker context use` picks another)"
        )
        raise DockerError(msg)
    gid = render_gid(engine)
    results = []
    for name in names:
        target = plan.target(name)
        base = plan.target(target.base) if target.base else target
        args = {key: value for key, value in target.args if isinstance(value, str)}
        image = image_of(plan, name, variables)
        launch = launch_for(args, image, base.shape.backend, mode, engine.gpu, free_port(), host_network, gid)
        launch = replace(launch, api_key=keys[name])
        results.append(smoke_one(runner, name, launch, timeout))
    return results


def free_port() -> int:
    """A port free on 127.0.0.1 now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
