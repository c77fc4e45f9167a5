"""``llama-bake doctor``: the docker client, buildx, the builder and its driver, each platform the catalog builds,
the engine's GPU, (where `nvidia-smi` exists) the NVIDIA driver against each CUDA base and, for a catalog with
vulkan bases, the engine host's render node; each problem with its fix."""

from __future__ import annotations

import re
import shutil

from llama_bake.buildx import dri, nvidia
from llama_bake.buildx.checks import Check
from llama_bake.buildx.client import BuilderInfo, Builders
from llama_bake.buildx.driver import (
    CONTAINERD_STORE_FIX,
    Capabilities,
    Demands,
    EngineInfo,
    capabilities,
    refusals,
)
from llama_bake.buildx.invocation import demands, phases
from llama_bake.buildx.options import BuildOptions
from llama_bake.buildx.probe import INSTALL_BUILDX, builder_name
from llama_bake.catalog.backends import BACKENDS
from llama_bake.errors import CatalogError, DockerError, UsageError
from llama_bake.plan.ir import BakePlan
from llama_bake.project import Paths, compile_catalog

MIN_BUILDX = (0, 20, 0)  # variable validation blocks, user functions, --allow fs entitlements


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def _fmt(version: tuple[int, int, int]) -> str:
    return "v" + ".".join(map(str, version))


def doctor(
    runner: Builders,
    builder: str | None,
    platforms: tuple[str, ...] = (),
    asked: Demands | None = None,
    compression: str | None = None,
    nvidia_gpu: bool = True,
) -> list[Check]:
    """Each check with its fix; stops at the first missing piece that later checks need. ``platforms``: what
    the catalog builds, each said to be built on a node of its own, by emulation, or not at all; ``asked``: what
    a plain build of the catalog asks of the builder; ``compression``: how the catalog's layers are pushed;
    ``nvidia_gpu``: whether to say if the engine can give a container an NVIDIA GPU."""
    checks: list[Check] = []
    docker = shutil.which("docker")
    if docker is None:
        fix = "install the docker CLI (Debian: docker.io or docker-ce-cli); no engine is needed"
        return [Check("docker client", False, "not found on PATH", fix)]
    checks.append(Check("docker client", True, docker))
    try:
        version_text = runner.version()
    except DockerError as exc:
        fix = f"install the buildx plugin: {INSTALL_BUILDX}"
        checks.append(Check("buildx", False, str(exc), fix))
        return checks
    version = parse_version(version_text)
    if version is None:
        checks.append(
            Check("buildx", False, f"unknown version in {version_text!r}", "install a released buildx (>= v0.20)")
        )
    elif version < MIN_BUILDX:
        fix = f"upgrade buildx to {_fmt(MIN_BUILDX)} or newer (the generated file uses variable validation)"
        checks.append(Check("buildx", False, f"{_fmt(version)} is too old", fix))
    else:
        checks.append(Check("buildx", True, _fmt(version)))
    name = builder or (builder_name() if builder_name() in runner.builders() else None)
    try:
        info = runner.inspect(name, bootstrap=True)
    except DockerError as exc:
        fix = "run `llama-bake builder up` to start a local buildkitd, or pass --builder NAME"
        checks.append(Check("builder", False, str(exc).splitlines()[0], fix))
        return checks
    if info.status != "running":
        fix = "run `llama-bake builder up`, or pass --builder NAME of a running builder"
        checks.append(Check("builder", False, f"`{info.name}` ({info.driver}) is {info.status}", fix))
        return checks
    checks.append(Check("builder", True, f"`{info.name}` ({info.driver}, {info.endpoint})"))
    buildkit = parse_version(info.buildkit_version)
    if buildkit is None:
        checks.append(Check("BuildKit", True, f"version {info.buildkit_version or 'unknown'} (not checked)"))
    else:
        checks.append(Check("BuildKit", True, _fmt(buildkit)))
    engine = runner.engine()
    caps = capabilities(info.driver, engine if info.driver == "docker" else None)
    checks.append(driver_check(caps, asked or Demands()))
    checks += [platform_check(info, platform) for platform in platforms]
    if compression is not None:
        checks.append(compression_check(engine, caps, compression))
    if nvidia_gpu:
        checks.append(gpu_check(engine))
    return checks


ZSTD_ENGINE = (23, 0, 0)  # the first Docker Engine that pulls zstd layers
COMPRESSION_FIX = (
    "upgrade the engine to Docker 23 or newer, or set `compression: gzip` in catalog/project.yaml (every engine "
    "pulls gzip; its pushes of weights take 2-3x as long)"
)


def compression_check(engine: EngineInfo | None, caps: Capabilities, compression: str) -> Check:
    """Whether the engine in use can pull what the catalog pushes (Docker Engine < 23 cannot pull zstd), and
    whether the builder pushes with the catalog's compression at all."""
    name = "layer compression"
    if caps.driver == "docker" and caps.image_store == "classic" and compression != "gzip":
        detail = (
            f"{compression} asked, but the docker driver with the classic image store pushes through the engine, "
            "which compresses every layer with gzip"
        )
        return Check(name, True, detail, CONTAINERD_STORE_FIX, warning=True)
    if compression != "zstd":
        return Check(name, True, f"{compression}: every Docker Engine pulls it")
    if engine is None:
        return Check(name, True, "zstd: pulled by Docker Engine 23 and newer (no engine answers here to check)")
    version = parse_version(engine.version)
    if version is None:
        detail = f"zstd: Docker Engine {engine.version!r} is no version this check can read (23 and newer pull it)"
        return Check(name, True, detail, COMPRESSION_FIX, warning=True)
    if version < ZSTD_ENGINE:
        detail = f"zstd: Docker Engine {engine.version} cannot pull the images the catalog pushes (23 and newer can)"
        return Check(name, True, detail, COMPRESSION_FIX, warning=True)
    return Check(name, True, f"zstd: Docker Engine {engine.version} pulls it")


def driver_check(caps: Capabilities, asked: Demands) -> Check:
    """The builder's driver (and image store), what it cannot do, and whether the catalog's build needs it."""
    missing = caps.missing()
    problems = refusals(caps, asked)
    if problems:
        return Check("driver", False, f"{caps.label}: a build of this catalog asks for what it cannot do", problems[0])
    if not missing:
        where = "; images land in the engine" if caps.into_engine else ""
        return Check("driver", True, f"{caps.label}: attestations, cache export, OCI export, several platforms{where}")
    detail = f"{caps.label}: cannot do {', '.join(missing)} (the catalog's plain build needs none of them)"
    return Check("driver", True, detail, refusals(caps, Demands(cache_export=("--cache",)))[0], warning=True)


GPU_FIX = (
    "install the NVIDIA Container Toolkit and run `nvidia-ctk runtime configure --runtime=docker`, then restart "
    "dockerd (Docker Desktop on Windows: WSL 2 with a current NVIDIA driver); without a GPU, run the images on the "
    "CPU: `llama-bake smoke --cpu`, or Compose with the override `llama-bake compose` writes: "
    "`docker compose -f compose.yaml -f compose.cpu.yaml up`"
)


def gpu_check(engine: EngineInfo | None) -> Check:
    """Whether the engine can give a container an NVIDIA GPU (the images' run time, not their build)."""
    if engine is None:
        return Check("engine GPU", True, "no Docker Engine answers (builds do not need one)", warning=True)
    if engine.gpu:
        return Check("engine GPU", True, f"Docker Engine {engine.version} gives containers a GPU through {engine.gpu}")
    detail = f"Docker Engine {engine.version} has no NVIDIA runtime and no CDI GPU device"
    return Check("engine GPU", True, detail, GPU_FIX, warning=True)


EMULATION_FIX = (
    "register its emulator (Debian: apt-get install qemu-user-static, which registers with binfmt_misc; "
    "elsewhere: docker run --privileged --rm tonistiigi/binfmt --install arm64) and restart the builder "
    "(`llama-bake builder down`, `up`); or give it a node of that platform: `llama-bake builder up --platform "
    "PLATFORM`, or `docker buildx create --append --name BUILDER --platform PLATFORM ENDPOINT` for a machine of it"
)


def platform_check(info: BuilderInfo, platform: str) -> Check:
    """Whether the builder builds ``platform``: on a node that is (or declares) it, by emulation, or not."""
    name = f"platform {platform}"
    own = next((n for n in info.nodes if n.platforms[:1] == (platform,)), None)
    if own is not None:
        return Check(name, True, f"node {own.name} builds it as its own platform")
    emulated = next((n for n in info.nodes if platform in n.platforms), None)
    if emulated is not None:
        detail = f"node {emulated.name} emulates it: fine for small steps, hours for a CUDA compile"
        return Check(name, True, detail)
    nodes = ", ".join(f"{n.name}: {', '.join(n.platforms) or 'none'}" for n in info.nodes) or "no node"
    return Check(name, False, f"the builder cannot build it ({nodes})", EMULATION_FIX.replace("PLATFORM", platform))


def project_checks(runner: Builders, builder: str | None, paths: Paths | None = None) -> list[Check]:
    """``doctor``, and (when ``paths`` has a catalog that compiles) each platform it builds, what a plain build
    of it asks of the builder, and the NVIDIA driver against each of its CUDA bases."""
    platforms: tuple[str, ...] = ()
    asked = None
    plan = None
    compression = None
    if paths is not None and paths.catalog.is_dir():
        try:
            plan = compile_catalog(paths).plan
        except (CatalogError, UsageError):
            plan = None
        if plan is not None:
            platforms = tuple(sorted({p for t in plan.targets for p in t.platforms}))
            compression = plan.compression
            if any(t.kind == "model" for t in plan.targets):
                plain = BuildOptions()
                asked = demands(plain, plan, phases(plain, plan))
    # A catalog whose GPU bases all reach their GPUs as device nodes (vulkan) needs no NVIDIA runtime.
    access = (
        {BACKENDS[t.shape.backend].devices for t in plan.targets if t.kind == "base"} if plan is not None else set()
    )
    nvidia_gpu = "nvidia" in access or "nodes" not in access
    checks = doctor(runner, builder, platforms, asked, compression, nvidia_gpu)
    return checks + nvidia.checks(plan) + device_checks(runner, plan)


def device_checks(runner: Builders, plan: BakePlan | None) -> list[Check]:
    """For a catalog whose bases reach their GPUs as device nodes (vulkan): the engine host's render node."""
    backends = {t.shape.backend for t in plan.targets if t.kind == "base"} if plan is not None else set()
    if not any(BACKENDS[b].devices == "nodes" for b in backends):
        return []
    engine = runner.engine()
    local = engine is not None and dri.is_local(engine)
    return [dri.render_check(engine, dri.render_nodes() if local else [], local)]
