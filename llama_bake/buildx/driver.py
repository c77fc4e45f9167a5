"""What the builder in use can do, and whether a build asks for more: the builder's driver and (for the ``docker``
driver) the engine's image store -> ``Capabilities``; ``Capabilities`` + the plan + the build options -> the
problems that would fail the build, each with its fix, found before any step runs. Pure.

Docker Desktop's and Docker Engine's default builder is the ``docker`` driver: BuildKit inside the engine, writing
straight into the engine's image store. On the classic store (overlay2: most existing installs) it cannot attach
attestations, export a cache, write an OCI layout or build several platforms; on the containerd image store it can.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

ImageStore = Literal["classic", "containerd", ""]

CONTAINERD_STORE_FIX = (
    "turn on the containerd image store: Docker Desktop: Settings > General > 'Use containerd for pulling and "
    'storing images\'; Docker Engine: {"features": {"containerd-snapshotter": true}} in /etc/docker/daemon.json, '
    "then restart dockerd (images in the classic store must be pulled or built again); or build on a builder that "
    "can: `docker buildx create --use --driver docker-container` (BuildKit in a container on this engine) or "
    "`llama-bake builder up` (a local buildkitd), and pass --load to put the images in the engine"
)


@dataclass(frozen=True)
class EngineInfo:
    """The parts of ``docker info`` that a build and ``doctor`` need."""

    version: str
    image_store: ImageStore
    storage_driver: str
    runtimes: tuple[str, ...] = ()
    default_runtime: str = ""
    cdi_devices: tuple[str, ...] = ()  # CDI device names the engine discovered (e.g. nvidia.com/gpu=all)
    host_name: str = ""  # the engine's host (docker info's Name): this machine's name when the engine is local
    operating_system: str = ""  # e.g. "Docker Desktop", "Ubuntu 24.04.1 LTS"

    @property
    def gpu(self) -> str:
        """How the engine can give a container an NVIDIA GPU: '' when it cannot."""
        if "nvidia" in self.runtimes:
            return "the nvidia runtime"
        nvidia = [d for d in self.cdi_devices if d.startswith("nvidia.com/")]
        return f"CDI devices ({', '.join(nvidia)})" if nvidia else ""


def image_store_of(driver_status: Iterable[tuple[str, str]], storage_driver: str) -> ImageStore:
    """``docker info``'s DriverStatus says ``driver-type io.containerd.snapshotter.v1`` on the containerd store."""
    if any(key == "driver-type" and "containerd.snapshotter" in value for key, value in driver_status):
        return "containerd"
    return "classic" if storage_driver else ""


@dataclass(frozen=True)
class Capabilities:
    driver: str
    image_store: ImageStore = ""
    attestations: bool = True
    cache_export: bool = True
    oci_export: bool = True
    multi_platform: bool = True

    @property
    def into_engine(self) -> bool:
        """The docker driver's images land in the engine's store without ``--load``."""
        return self.driver == "docker"

    @property
    def label(self) -> str:
        store = f", {self.image_store} image store" if self.image_store else ""
        return f"the {self.driver} driver{store}"

    def missing(self) -> list[str]:
        named = {
            "attestations": self.attestations,
            "cache export": self.cache_export,
            "OCI export": self.oci_export,
            "several platforms": self.multi_platform,
        }
        return [name for name, can in named.items() if not can]


def capabilities(driver: str, engine: EngineInfo | None) -> Capabilities:
    """Every driver but ``docker`` runs a BuildKit of its own and can do all of it; the docker driver can when the
    engine stores images in containerd."""
    if driver != "docker":
        return Capabilities(driver)
    store: ImageStore = engine.image_store if engine is not None else ""
    able = store == "containerd"
    return Capabilities(driver, store, able, able, able, able)


@dataclass(frozen=True)
class Demands:
    """What a build asks of the builder (from the plan and the options, before anything runs)."""

    attestations: tuple[str, ...] = ()  # targets with an explicit provenance attestation
    cache_export: tuple[str, ...] = ()  # cache destinations
    oci_outputs: tuple[str, ...] = ()  # --output specs of type oci
    multi_platform: tuple[str, ...] = ()  # targets with several platforms


def refusals(caps: Capabilities, demands: Demands) -> list[str]:
    """Each thing the build asks for that the builder cannot do, with the fix; [] when the build can run."""
    problems = []
    where = caps.label
    if demands.attestations and not caps.attestations:
        problems.append(
            f"{where} cannot attach provenance attestations (`provenance` in catalog/project.yaml asks for them on "
            f"{', '.join(demands.attestations)}): set `provenance: auto` (attestations where the builder supports "
            f"them) or `off`; or {CONTAINERD_STORE_FIX}"
        )
    if demands.cache_export and not caps.cache_export:
        problems.append(
            f"{where} cannot export a build cache ({', '.join(demands.cache_export)}): build with --no-cache-export "
            f"(import only) or without a cache; or {CONTAINERD_STORE_FIX}"
        )
    if demands.oci_outputs and not caps.oci_export:
        problems.append(
            f"{where} cannot write OCI layouts ({', '.join(demands.oci_outputs)}): use --output type=docker, "
            f"--load or --push; or {CONTAINERD_STORE_FIX}"
        )
    if demands.multi_platform and not caps.multi_platform:
        problems.append(
            f"{where} cannot build several platforms at once ({', '.join(demands.multi_platform)}): build one "
            f"platform (`platforms` in the base's file), or {CONTAINERD_STORE_FIX}"
        )
    return problems
