"""The Vulkan path of the packaged templates, compiled and executed for real: a `backend: vulkan` base built by
`llama-bake build` (llama.cpp's Vulkan backend, its shaders compiled to SPIR-V by glslc), a tiny model on it, and
the image run with Mesa's lavapipe as its Vulkan device. lavapipe is a conformant Vulkan implementation that runs on
the CPU: every layer offloaded to it runs through the real backend, shaders and all, with no GPU on the machine.

- ubuntu:24.04 is replaced (the catalog's `image_overrides`) by the Debian stand-in (trixie) with the build packages
  installed (tests/standins.py). Both stages start from it and the template's apt steps still run: the runtime
  stage's installs the Vulkan loader and Mesa's drivers.
- The compile is trimmed as the CPU tier's is (one CPU variant, no -O3); every shader is still compiled. The CUDA
  tier (run before this one, on the same Debian and compiler) compiled the C and C++ sources the two share with
  these flags: its compiler cache starts this base's, so what compiles here is the Vulkan backend and its shaders
  (and everything, when this tier runs alone).
- lavapipe is a CPU-type Vulkan device, which llama.cpp skips unless ``GGML_VK_VISIBLE_DEVICES`` names it. Run with
  it, the image serves on the Vulkan device; run without, as on a host without a GPU, llama.cpp finds no usable
  Vulkan device and serves on the CPU, and the log says so.
- The image is unpacked once and run with runc by tests/images.py, each run with its own environment.
- The base's build cache and compiler cache live in the test cache (``VULKAN_BAKE_CACHE``): a second run compiles
  nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llama_bake.buildx.progress import Progress
from tests.conftest import executed, write_yaml
from tests.early import Build, Chain, EarlyBuild, Setup
from tests.images import Container, Runner, Unpacked, compiled_again, run_checked, unpack, wait_healthy
from tests.standins import (
    VULKAN_BAKE_CACHE,
    cache_dir,
    debian_toolchain_layout,
    llama_cpp_tree,
    share_compiler_cache,
)
from tests.tinymodel import N_LAYER, write_tiny_gguf

pytestmark = [pytest.mark.buildkit, pytest.mark.slow]

LLAMA_REF = "pypi-0.3.36"
BASE = "llama-vulkan"
MODEL = "tiny-vulkan"
# A limit, not a wait: lavapipe compiles the backend's pipelines (LLVM) as the server warms up and on the first
# completion, a minute or two on a busy machine when Mesa's shader cache is empty; a second once it holds them.
START_PERIOD_S = 300
# Mesa's shader cache, kept in the test cache as a volume would keep it, so that a second run of the tier starts
# lavapipe in a second; Mesa keys it by driver build and shader, so a new Mesa or llama.cpp only misses.
MESA_SHADER_CACHE = "mesa-shader-cache-vulkan"
# llama.cpp logs what it does with the devices (the device list, "offloaded N/N layers") at verbosity 4 ("trace");
# llama-server's default is 3.
TRACE = {"LLAMA_ARG_LOG_VERBOSITY": "4"}
# lavapipe is Vulkan device 0 (the only one) and a CPU-type device: llama.cpp uses it only when it is named.
LAVAPIPE = {**TRACE, "GGML_VK_VISIBLE_DEVICES": "0"}


@dataclass(frozen=True)
class Built:
    project: Path
    archive: Path


def _cache() -> str:
    return f"local={cache_dir() / VULKAN_BAKE_CACHE}"


def _prepare(setup: Setup) -> tuple[Build, Callable[[], Built]]:
    project = setup.project
    toolchain = debian_toolchain_layout()
    write_yaml(
        project / "catalog" / "project.yaml",
        {
            "registry": "localhost:5000/real-vulkan",
            "image_overrides": {"ubuntu:24.04": f"oci-layout://{toolchain}:latest"},
        },
    )
    write_yaml(
        project / "catalog" / "bases" / f"{BASE}.yaml",
        {
            "backend": "vulkan",
            "llama_cpp": {"path": str(llama_cpp_tree()), "ref": LLAMA_REF},
            "build_jobs": 2,
            # As the CPU tier's base: one CPU variant and no -O3 (tests/integration/test_real_image.py says why).
            "cmake_options": {
                "GGML_CPU_ALL_VARIANTS": "OFF",
                "CMAKE_C_FLAGS_RELEASE": "-DNDEBUG",
                "CMAKE_CXX_FLAGS_RELEASE": "-DNDEBUG",
            },
        },
    )
    (project / "weights").mkdir()
    sha = write_tiny_gguf(project / "weights" / "tiny.gguf", seed=4)
    write_yaml(
        project / "catalog" / "models" / f"{MODEL}.yaml",
        {
            "weights": {"path": "weights/tiny.gguf", "sha256": sha},
            "server": {"ctx_size": 512, "jinja": False, "n_gpu_layers": 999},
        },
    )
    out = project / "out"
    # The CUDA tier's compiler cache starts this base's (see the module's docstring); the compile is still the
    # template's, in this base's own cache mount.
    share_compiler_cache(cache_dir() / VULKAN_BAKE_CACHE, BASE)
    argv = ["llama-bake", "build", "--progress", "plain", "--cache", _cache()]
    argv += ["--output", f"type=oci,dest={out}/{{target}}.tar", MODEL]
    return Build(argv, project, project / "build.log"), lambda: Built(project, out / f"{MODEL}.tar")


# The build starts with the session (tests/early.py), last: after the CUDA tier's, whose compiler cache starts this
# one's, and the CPU tier's, whose tests run beside it.
EARLY_BUILD = EarlyBuild("vulkan", 2, _prepare)


@pytest.fixture(scope="module")
def built(embedded_builder: str, early_builds: Chain | None) -> Built:
    assert early_builds is not None, "the session starts this tier's build"
    return early_builds.wait(EARLY_BUILD)


# --- running the image: unpacked once, each run with runc and its own environment ------------------------------


@pytest.fixture(scope="module")
def unpacked(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Unpacked:
    return unpack(built.archive, tmp_path_factory.mktemp("vulkan-image"))


Start = Callable[[dict[str, str]], Container]


@pytest.fixture
def start(unpacked: Unpacked, tmp_path: Path) -> Iterator[Start]:
    """``start(env)`` runs the image as tests/images.py runs images (read-only, tmpfs on /tmp and the cache, the
    host's network on 127.0.0.1) with ``env`` added to its environment and Mesa's shader cache on a volume; every
    container is stopped and deleted after the test."""
    runner = Runner(tmp_path)
    shaders = cache_dir() / MESA_SHADER_CACHE
    shaders.mkdir(exist_ok=True)
    user = unpacked.spec["process"]["user"]
    os.chown(shaders, user["uid"], user["gid"])
    volume = {"destination": "/var/cache/mesa", "type": "bind", "source": str(shaders), "options": ["rbind", "rw"]}

    def run(env: dict[str, str]) -> Container:
        return runner.start(unpacked, {"MESA_SHADER_CACHE_DIR": "/var/cache/mesa", **env}, (volume,))

    yield run
    runner.stop()


def serve(start: Start, env: dict[str, str]) -> tuple[Container, dict[str, Any], str]:
    """The container, its answer to a short completion (greedy, four tokens) and its log up to that answer."""
    container = start(env)
    wait_healthy(container, START_PERIOD_S)
    request = urllib.request.Request(
        container.url("/completion"),
        data=json.dumps({"prompt": "hello llama", "n_predict": 4, "temperature": 0}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=START_PERIOD_S) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return container, answer, container.log.read_text(errors="replace")


# --- the tests ---------------------------------------------------------------------------------------------------


def test_the_image_serves_on_lavapipe_with_every_layer_offloaded_to_it(start: Start) -> None:
    container, answer, log = serve(start, LAVAPIPE)
    assert answer["tokens_predicted"] > 0, answer
    tail = log[-4000:]
    # The Vulkan backend found lavapipe, Mesa's Vulkan device on the CPU (it calls itself llvmpipe), and the model
    # was put on it ...
    assert re.search(r"- Vulkan0 *: llvmpipe \(LLVM [\d.]+, \d+ bits\)", log), tail
    assert "using device Vulkan0 (llvmpipe" in log, tail
    # ... every layer of it: the model's blocks and its output layer, weights, KV cache and compute buffers.
    assert f"offloaded {N_LAYER + 1}/{N_LAYER + 1} layers to GPU" in log, tail
    for buffer in ("Vulkan0 model buffer size", "Vulkan0 KV buffer size", "Vulkan0 compute buffer size"):
        assert buffer in log, tail
    assert "no usable GPU found" not in log
    assert container.process.poll() is None


def test_without_a_usable_vulkan_device_the_server_falls_back_to_the_cpu_and_says_so(start: Start) -> None:
    """Without GGML_VK_VISIBLE_DEVICES, as on a host without a GPU (lavapipe, a CPU-type device, is skipped): the
    entrypoint says that no render node was passed, llama.cpp that it found no usable GPU, and the model is
    served on the CPU."""
    _, answer, log = serve(start, TRACE)
    assert answer["tokens_predicted"] > 0, answer
    tail = log[-4000:]
    assert "llama-bake: no GPU render node (/dev/dri): llama.cpp will run on the CPU; pass /dev/dri" in log, tail
    assert "warning: no usable GPU found, --gpu-layers option will be ignored" in log, tail
    assert "CPU_Mapped model buffer size" in log, tail
    assert "Vulkan0" not in log, tail
    assert "layers to GPU" not in log, tail


def test_the_runtime_stage_holds_the_vulkan_loader_and_lavapipe(unpacked: Unpacked) -> None:
    """What the runtime stage installs for the backend: the Vulkan loader, which libggml-vulkan.so resolves in the
    image, and Mesa's drivers, lavapipe's among them, each found by the loader through its manifest."""
    rootfs = unpacked.rootfs
    linked = subprocess.run(
        ["chroot", str(rootfs), "env", "LD_LIBRARY_PATH=/app", "ldd", "/app/libggml-vulkan.so"],
        capture_output=True,
        text=True,
        check=False,
    )
    loader = re.search(r"libvulkan\.so\.1 => (\S+) ", linked.stdout)
    assert loader is not None, linked
    assert (rootfs / loader.group(1).lstrip("/")).exists(), loader.group(1)
    assert "not found" not in linked.stdout, linked.stdout
    manifests = {path.name: json.loads(path.read_text()) for path in (rootfs / "usr/share/vulkan/icd.d").glob("*.json")}
    # lavapipe (the device these tests run on), RADV (AMD) and ANV (Intel): the drivers the base is for.
    assert {"lvp_icd.json", "radeon_icd.json", "intel_icd.json"} <= set(manifests), sorted(manifests)
    for name in ("lvp_icd.json", "radeon_icd.json", "intel_icd.json"):
        # A path, or (Debian's manifests) a file name the loader finds in the library directories.
        library = manifests[name]["ICD"]["library_path"]
        found = [rootfs / library.lstrip("/")] if "/" in library else list(rootfs.glob(f"usr/lib/*/{library}"))
        assert found, f"{name}: {library}"
        assert all(path.is_file() for path in found), f"{name}: {found}"


def test_a_second_build_compiles_nothing(built: Built) -> None:
    progress = Progress()
    result = run_checked(
        ["llama-bake", "build", "--progress", "rawjson", "--cache", _cache(), MODEL], cwd=built.project
    )
    for line in result.stderr.splitlines():
        progress.feed(line)
    assert compiled_again(executed(progress)) == []
    cached = [v.step for v in progress.vertices.values() if v.is_step and v.cached]
    assert any("cmake" in step for step in cached)
