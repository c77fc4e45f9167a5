"""What ``smoke`` asks the engine to start: one container's image, environment, port and GPU devices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Launch:
    """One container to start: its image, extra environment, the host port its server answers on, and how."""

    image: str
    env: Mapping[str, str]
    host_port: int
    container_port: int
    host_network: bool  # no published port: the server listens on the host's 127.0.0.1 itself
    gpu: str  # "" (none), "runtime" (--gpus all) or a CDI device name (--device nvidia.com/gpu=all)
    api_key: str = field(default="", repr=False)
    devices: tuple[str, ...] = ()  # device nodes passed as they are (--device /dev/dri)
    groups: tuple[str, ...] = ()  # groups added to the container's user (--group-add: the render group's id)
