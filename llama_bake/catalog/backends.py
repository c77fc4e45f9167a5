"""Each llama.cpp backend a base can be built with, in one entry: the CMake switch it sets, the options and catalog
fields that belong to it alone, its GPU families, the images and packages of its two stages, the environment its
image gets, how a container reaches its GPUs (Compose, ``smoke``, Kubernetes, ``doctor`` read it) and the builder
disk its base plans for. Pure data.

The modules that differ by backend ask the entry; a new backend (ROCm, SYCL) is an entry here and, where its image
needs steps of its own, a branch of ``templates/base.Dockerfile.j2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from llama_bake.catalog.gpus import GPU_FAMILIES, VULKAN_FAMILIES

GB = 1000**3


@dataclass(frozen=True)
class BaseDisk:
    """A base's planned builder disk. Planned from the images' published sizes, not measured."""

    built: int  # building it: the build image (blobs + unpacked), the compile, the compiler cache, the runtime image
    pulled: int  # a model built on its pushed image (a model job): the runtime image's blobs and snapshots


# How a container reaches the backend's GPUs: not at all; through NVIDIA's container runtime or CDI devices (Compose
# `deploy.resources`, `docker run --gpus`, `nvidia.com/gpu`); or as device nodes it is given with the group that may
# open them (`devices` + `group_add`, `docker run --device --group-add`, the vendor's device plugin).
DeviceAccess = Literal["", "nvidia", "nodes"]


@dataclass(frozen=True)
class Backend:
    name: str
    runs_on: str  # what its images run on, for the schema and `list`
    cmake_option: str  # the switch llama-bake sets ON ("" for none)
    # CMake options that configure this backend alone (refused on a base of another backend)
    option_prefixes: tuple[str, ...] = ()
    families: tuple[str, ...] = ()
    families_required: bool = False
    cuda: bool = False  # the CUDA toolkit: `cuda`, `cuda_runtime`, architectures from the families
    # The build and runtime images, with {os} (ubuntu24.04), {release} (24.04) and {cuda} filled in;
    # `cuda_runtime: full` runs on full_runtime_image.
    build_image: str = "ubuntu:{release}"
    runtime_image: str = "ubuntu:{release}"
    full_runtime_image: str = ""
    # Debian/Ubuntu packages beside the ones every base installs in its build and runtime stages
    build_packages: tuple[str, ...] = ()
    runtime_packages: tuple[str, ...] = ()
    image_env: dict[str, str] = field(default_factory=dict)  # in the base image's environment
    devices: DeviceAccess = ""
    device_nodes: tuple[str, ...] = ()  # devices: nodes: what a container is given
    # OS flavours its packages cannot build on, with why and the fix
    os_refused: dict[str, str] = field(default_factory=dict)
    fields: tuple[str, ...] = ()  # catalog fields that configure this backend alone
    # Fields of another backend that a base of this one refuses
    refused_fields: tuple[str, ...] = ()
    kube_cpu: str = "1"  # the CPU a pod asks for: the model runs on the GPU, or (cpu) on these cores
    disk: BaseDisk = BaseDisk(built=4 * GB, pulled=1 * GB)

    def images(self, os_flavour: str, cuda: str, cuda_runtime: str) -> tuple[str, str]:
        """The build stage's image and the runtime stage's."""
        values = {"os": os_flavour, "release": os_flavour.removeprefix("ubuntu"), "cuda": cuda}
        runtime = self.full_runtime_image if cuda_runtime == "full" and self.full_runtime_image else self.runtime_image
        return (self.build_image.format(**values), runtime.format(**values))

    def owns_option(self, option: str) -> bool:
        return any(option == p or option.startswith(f"{p}_") for p in self.option_prefixes)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "cuda",
            "NVIDIA GPUs",
            "GGML_CUDA",
            option_prefixes=("GGML_CUDA", "CMAKE_CUDA"),
            families=tuple(GPU_FAMILIES),
            families_required=True,
            cuda=True,
            fields=("cuda", "cuda_runtime"),
            # The slim runtime starts from the OS image, as a cpu base's does, and takes the CUDA libraries its
            # binaries load from the build stage.
            build_image="nvidia/cuda:{cuda}-devel-{os}",
            full_runtime_image="nvidia/cuda:{cuda}-runtime-{os}",
            devices="nvidia",
            # nvidia/cuda devel (~4.5 GB of blobs, ~9 GB unpacked), the build packages and llama.cpp's build tree
            # (~2.5 GB), the compiler cache at its default ccache_max_size of 2G five times over (the imported
            # export, blob and snapshot; the cache mount; the new export, snapshot and blob: ~10 GB), the runtime
            # image (~1.5 GB of blobs, ~3.5 GB unpacked) and the base's own layers (~0.5 GB).
            disk=BaseDisk(built=32 * GB, pulled=6 * GB),
        ),
        Backend(
            "vulkan",
            "AMD and Intel GPUs",
            "GGML_VULKAN",
            option_prefixes=("GGML_VULKAN",),
            families=tuple(VULKAN_FAMILIES),
            refused_fields=("cuda", "cuda_runtime"),
            os_refused={
                "ubuntu22.04": (
                    "Ubuntu 22.04's Vulkan headers (1.3.204) are older than llama.cpp's Vulkan backend needs "
                    "(1.3.272, VK_EXT_layer_settings); set `os: ubuntu24.04`"
                )
            },
            # The Vulkan headers and loader, glslc (the shaders are compiled to SPIR-V in the build) and the SPIR-V
            # headers llama.cpp's CMake asks for; at run time the loader and Mesa's drivers (RADV for AMD, ANV for
            # Intel, lavapipe on the CPU).
            build_packages=("libvulkan-dev", "glslc", "spirv-headers"),
            runtime_packages=("libvulkan1", "mesa-vulkan-drivers"),
            image_env={"LLAMA_BAKE_BACKEND": "vulkan"},
            devices="nodes",
            device_nodes=("/dev/dri",),
            # ubuntu with build-essential, cmake and the Vulkan SDK packages (~1 GB), llama.cpp's build tree with
            # its compiled shaders (~2 GB), the compiler cache (~3 GB over its copies) and a runtime image of
            # ~0.6 GB (Mesa's drivers bring LLVM).
            disk=BaseDisk(built=8 * GB, pulled=2 * GB),
        ),
        # ubuntu, build-essential, cmake and a CPU build with its compiler cache; a runtime image of a few hundred MB.
        # A cpu base takes `cuda:` and ignores it: catalogs wrote it before any backend refused it.
        Backend("cpu", "the CPU", "", refused_fields=("cuda_runtime",), kube_cpu="2"),
    )
}
