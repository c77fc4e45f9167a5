"""The engine host's GPU render nodes (``/dev/dri/renderD*``), which a Vulkan image opens: whether the engine is
this machine (only then can its nodes be seen), the group that may open them, and ``doctor``'s check of them.

The images run as a non-root user; a render node is ``root:render`` with mode 0660 on the host, so a container
needs the node and the host's render group, by number: Docker resolves a group name against the image's
/etc/group, which has no ``render``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from llama_bake.buildx.checks import Check
from llama_bake.buildx.driver import EngineInfo

DRI = Path("/dev/dri")
GID_VARIABLE = "LLAMA_BAKE_RENDER_GID"  # what the Compose file reads the render group's id from
GID_COMMAND = "stat -c %g /dev/dri/renderD128"  # the host's render group id (getent group render: its name's)


@dataclass(frozen=True)
class RenderNode:
    path: str
    gid: int


def render_nodes(dri: Path = DRI) -> list[RenderNode]:
    """This machine's render nodes and their groups, sorted ([] without /dev/dri)."""
    try:
        found = sorted(dri.glob("renderD*"))
    except OSError:
        return []
    nodes = []
    for path in found:
        try:
            nodes.append(RenderNode(str(path), path.stat().st_gid))
        except OSError:
            continue
    return nodes


def is_desktop(engine: EngineInfo) -> bool:
    return "docker desktop" in engine.operating_system.lower()


def is_local(engine: EngineInfo, host_name: Callable[[], str] = socket.gethostname) -> bool:
    """The engine runs on this machine (docker info's Name is this host's name): its /dev/dri is ours."""
    return bool(engine.host_name) and engine.host_name == host_name() and not is_desktop(engine)


def render_gid(engine: EngineInfo, nodes: Callable[[], list[RenderNode]] = render_nodes) -> int | None:
    """The group of the engine host's first render node; None when it has none or it is not this machine."""
    if not is_local(engine):
        return None
    found = nodes()
    return found[0].gid if found else None


DESKTOP = (
    "Docker Desktop runs containers in a VM that has no /dev/dri render node (on Windows, WSL 2 hands containers "
    "/dev/dxg, DirectX, which llama.cpp's Vulkan backend does not drive; on macOS no GPU at all): the vulkan images "
    "run on the CPU there"
)
DESKTOP_FIX = "run the vulkan images on a Linux host's Docker Engine (with the GPU's amdgpu, i915 or xe driver)"
NO_NODE_FIX = (
    "load the GPU's kernel driver (AMD: amdgpu; Intel: i915 or xe) so that /dev/dri/renderD* exists; without it the "
    "vulkan images run on the CPU"
)


def render_check(
    engine: EngineInfo | None, nodes: list[RenderNode], local: bool, environ: Mapping[str, str] = os.environ
) -> Check:
    """Whether the engine's host has a render node a vulkan image can be given, and the group it needs."""
    name = "render node"
    if engine is None:
        return Check(name, True, "no Docker Engine answers (builds do not need one)", warning=True)
    if is_desktop(engine):
        return Check(name, True, DESKTOP, DESKTOP_FIX, warning=True)
    if not local:
        detail = f"the engine runs on {engine.host_name or 'another host'}, whose /dev/dri cannot be seen from here"
        fix = f"on that host, `ls -l /dev/dri` must list renderD*; its group's id is {GID_VARIABLE} (`{GID_COMMAND}`)"
        return Check(name, True, detail, fix, warning=True)
    if not nodes:
        return Check(name, True, "this host has no /dev/dri/renderD*", NO_NODE_FIX, warning=True)
    shown = ", ".join(f"{n.path} (group {n.gid})" for n in nodes)
    gid = str(nodes[0].gid)
    given = environ.get(GID_VARIABLE)
    if given is not None and given != gid:
        fix = f"set {GID_VARIABLE}={gid} (Compose adds that group to the vulkan services)"
        return Check(name, True, f"{shown}; {GID_VARIABLE} is {given}, not the nodes' group", fix, warning=True)
    return Check(name, True, f"{shown}: Compose's vulkan services need {GID_VARIABLE}={gid}")
