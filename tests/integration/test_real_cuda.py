"""The CUDA path of the packaged templates, compiled for real: a `backend: cuda` base (CUDA 13.0, one GPU family)
built by `llama-bake build` with a real nvcc, a tiny model on it, and the images checked and run without a GPU.

- NVIDIA's images are replaced by stand-ins (tests/cuda_standins.py: the Debian stand-in plus NVIDIA's CUDA 13.0
  wheels from PyPI) through the catalog's `image_overrides`, and ubuntu:24.04 by the Debian stand-in (the slim
  CUDA runtime, the default, starts from the OS image); nothing else is replaced.
- The compile is trimmed through the base's `cmake_options` to what two cores build in minutes: one GPU family
  (ada, 89-real), one CPU variant, the FlashAttention kernels compiled out (GGML_CUDA_FA=OFF: with it on,
  their template instances are most of a CUDA compile), and the CUDA sources compiled without optimisation:
  device code by nvcc's front end (CMAKE_CUDA_FLAGS=-Xcicc=-O0, which cut the CPU time of the heaviest
  instances, mmq and mmvq, by a third) and their host side without -O3 (CMAKE_CUDA_FLAGS_RELEASE=-DNDEBUG);
  the C and C++ sources without -O3 too (CMAKE_C_FLAGS_RELEASE, CMAKE_CXX_FLAGS_RELEASE=-DNDEBUG), about half
  their compile time.
  Every CUDA source is still compiled and linked, by nvcc, to sm_89 machine code (what the first test reads
  from the fatbin); unoptimised kernels are only slower on a GPU, which the test never has. The CUDA CMake
  line, launcher, libraries and runtime image are the ones every catalog gets.
- The base's build cache is exported to the test cache, so a second run compiles nothing.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llama_bake.buildx.progress import Progress
from tests.conftest import executed, write_yaml
from tests.cuda_standins import CUDA_VERSION, image_overrides
from tests.early import Build, Chain, EarlyBuild, Setup
from tests.images import OciArchive, compiled_again, complete, run_checked, wait_healthy
from tests.standins import CUDA_BAKE_CACHE, CUDA_TIER_BASE, cache_dir, llama_cpp_tree
from tests.tinymodel import write_tiny_gguf

pytestmark = [pytest.mark.buildkit, pytest.mark.slow]

LLAMA_REF = "pypi-0.3.36"
BASE = CUDA_TIER_BASE
FAMILY = "ada"
ARCH = 89
START_PERIOD_S = 60
# The driver's library: the NVIDIA container runtime brings it; no image may (the stub only links).
DRIVER = "libcuda.so.1"
# What libggml-cuda.so loads from the toolkit (cuBLAS loads cuBLASLt): all the slim runtime holds of it.
CUDA_LIBRARIES = ("libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13")


@dataclass(frozen=True)
class Built:
    project: Path
    model: OciArchive
    app: dict[str, bytes]  # the files under /app, read once (the archive's layers hold cuBLAS: 600 MB)


def base_catalog() -> dict[str, Any]:
    """The base's catalog file (bench/cuda_runtime.py builds it too, on this tier's build cache)."""
    return {
        "backend": "cuda",
        "cuda": CUDA_VERSION,
        "gpu_families": [FAMILY],
        "llama_cpp": {"path": str(llama_cpp_tree()), "ref": LLAMA_REF},
        "build_jobs": 2,
        # What the test trims (and why) is in the module's docstring and the README.
        "cmake_options": {
            "GGML_CPU_ALL_VARIANTS": "OFF",
            "GGML_CUDA_FA": "OFF",
            "CMAKE_CUDA_FLAGS": "-Xcicc=-O0",
            "CMAKE_CUDA_FLAGS_RELEASE": "-DNDEBUG",
            "CMAKE_C_FLAGS_RELEASE": "-DNDEBUG",
            "CMAKE_CXX_FLAGS_RELEASE": "-DNDEBUG",
        },
    }


def _cache() -> str:
    return f"local={cache_dir() / CUDA_BAKE_CACHE}"


def _prepare(setup: Setup) -> tuple[Build, Callable[[], Built]]:
    project = setup.project
    write_yaml(
        project / "catalog" / "project.yaml",
        {"registry": "localhost:5000/real-cuda", "image_overrides": image_overrides()},
    )
    write_yaml(project / "catalog" / "bases" / f"{BASE}.yaml", base_catalog())
    (project / "weights").mkdir()
    sha = write_tiny_gguf(project / "weights" / "tiny.gguf", seed=3)
    health = {"start_period": f"{START_PERIOD_S}s", "interval": "5s", "timeout": "3s", "retries": 3}
    write_yaml(
        project / "catalog" / "models" / "tiny-cuda.yaml",
        {
            "weights": {"path": "weights/tiny.gguf", "sha256": sha},
            "server": {"ctx_size": 512, "jinja": False, "n_gpu_layers": 999},
            "health": health,
        },
    )
    out = project / "out"
    argv = [
        "llama-bake",
        "build",
        "--progress",
        "plain",
        "--cache",
        _cache(),
        "--output",
        f"type=oci,dest={out}/{{target}}.tar",
        "tiny-cuda",
    ]

    def read() -> Built:
        model = OciArchive(out / "tiny-cuda.tar")
        return Built(project, model, {name: data for name, data in model.layer_files() if name.startswith("app/")})

    return Build(argv, project, project / "build.log"), read


# The build starts with the session (tests/early.py), first of the compile tiers: its compiler cache starts theirs.
EARLY_BUILD = EarlyBuild("cuda", 0, _prepare)


@pytest.fixture(scope="module")
def built(embedded_builder: str, early_builds: Chain | None) -> Built:
    assert early_builds is not None, "the session starts this tier's build"
    return early_builds.wait(EARLY_BUILD)


# --- what nvcc put into libggml-cuda.so ----------------------------------------------------------------

FATBIN_MAGIC = 0xBA55ED50


def elf_section(data: bytes, name: str) -> bytes:
    """The bytes of the section ``name`` of a 64-bit little-endian ELF file."""
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(index: int) -> tuple[int, int, int]:
        at = shoff + index * shentsize
        (sh_name,) = struct.unpack_from("<I", data, at)
        offset, size = struct.unpack_from("<QQ", data, at + 0x18)
        return sh_name, offset, size

    _, names_at, _ = header(shstrndx)
    for index in range(shnum):
        sh_name, offset, size = header(index)
        end = data.index(b"\0", names_at + sh_name)
        if data[names_at + sh_name : end].decode() == name:
            return data[offset : offset + size]
    msg = f"no section {name}"
    raise AssertionError(msg)


def fatbin_images(section: bytes) -> list[tuple[str, int]]:
    """(kind, sm) of every device image in an ``.nv_fatbin`` section: kind ``cubin`` (machine code for that
    sm) or ``ptx`` (JIT-compiled by the driver). A section is one fatbin per translation unit, each a 16-byte
    header (magic, version, header size, size) and entries with a 64-byte header: kind at 0 (1 PTX, 2 ELF),
    its header size at 4, its payload size at 8, the sm at 28."""
    images = []
    at = 0
    while at + 16 <= len(section):
        magic, _, header_size, size = struct.unpack_from("<IHHQ", section, at)
        if magic != FATBIN_MAGIC:
            at += 8  # alignment padding between fatbins
            continue
        entry = at + header_size
        while entry < at + header_size + size:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", section, entry)
            (sm,) = struct.unpack_from("<I", section, entry + 28)
            images.append(({1: "ptx", 2: "cubin"}.get(kind, f"kind {kind}"), sm))
            entry += entry_header + payload
        at += header_size + size
    return images


def dynamic_needs(data: bytes) -> list[str]:
    """DT_NEEDED of a 64-bit ELF shared object."""
    dynamic = elf_section(data, ".dynamic")
    strings = elf_section(data, ".dynstr")
    needed = []
    for at in range(0, len(dynamic), 16):
        tag, value = struct.unpack_from("<qQ", dynamic, at)
        if tag == 1:  # DT_NEEDED
            needed.append(strings[value : strings.index(b"\0", value)].decode())
    return needed


# --- the tests -------------------------------------------------------------------------------------------


def test_nvcc_compiled_device_code_for_the_catalogs_architecture_only(built: Built) -> None:
    library = built.app["app/libggml-cuda.so"]
    images = fatbin_images(elf_section(library, ".nv_fatbin"))
    # Hundreds of kernels (mmq, mmvq, softmax, ...): every one compiled to sm_89 machine code, and no PTX
    # (the family's "89-real" asks for none).
    assert len(images) > 50
    assert set(images) == {("cubin", ARCH)}
    assert {"libcudart.so.13", "libcublas.so.13", DRIVER} <= set(dynamic_needs(library))
    labels = built.model.config()["config"]["Labels"]
    assert labels["io.llama-bake.cuda"] == CUDA_VERSION
    assert labels["io.llama-bake.cuda-architectures"] == f"{ARCH}-real"


def test_the_slim_runtime_holds_just_the_cuda_libraries_the_build_loads_and_each_resolves(
    built: Built, run_image: Any
) -> None:
    container = run_image(built.model.path)
    wait_healthy(container, START_PERIOD_S)
    listed = container.exec("sh", "-c", 'for f in /app/llama-server /app/*.so; do echo "== $f"; ldd "$f"; done')
    # ldd's own status is that of the last file; what counts is that each file was listed.
    for listed_file in ("/app/llama-server", "/app/libggml-cuda.so", "/app/libggml-cpu.so"):
        assert f"== {listed_file}\n" in listed.stdout, listed
    assert "libllama.so" in listed.stdout
    missing: dict[str, set[str]] = {}
    current = ""
    for line in listed.stdout.splitlines():
        if line.startswith("== "):
            current = line[3:]
        elif "=> not found" in line:
            missing.setdefault(current, set()).add(line.split("=>")[0].strip())
    assert missing == {"/app/libggml-cuda.so": {DRIVER}}
    # cudart and cuBLAS are where the devel image's toolkit has them (the stand-in's /usr/local/cuda-13.0/lib64),
    # a layer of their own that a llama.cpp update leaves as it is, not copied into /app.
    resolved = container.exec("ldd", "/app/libggml-cuda.so").stdout
    for name in CUDA_LIBRARIES:
        assert re.search(rf"{re.escape(name)} => /usr/local/cuda-13\.0/lib64/{re.escape(name)} ", resolved), resolved
    assert not [name for name in built.app if name.startswith(("app/libcudart", "app/libcublas", "app/libcuda."))]
    # They are all the image holds of the toolkit: the stand-in's nvcc, cicc, headers and driver stub stay out.
    found = container.exec("find", "/usr/local", "-path", "*cuda*", "!", "-type", "d").stdout.split()
    assert sorted(found) == sorted(f"/usr/local/cuda-13.0/lib64/{name}" for name in CUDA_LIBRARIES), found
    conf = container.exec("cat", "/etc/ld.so.conf.d/llama-bake-cuda.conf").stdout
    assert conf == "/usr/local/cuda-13.0/lib64\n"


def test_without_a_gpu_the_server_runs_skips_cuda_and_serves_on_the_cpu(built: Built, run_image: Any) -> None:
    container = run_image(built.model.path)
    wait_healthy(container, START_PERIOD_S)
    answer = complete(container, "hello llama")
    assert answer["tokens_predicted"] > 0
    assert answer["content"]
    log = container.log.read_text(errors="replace")
    # The model asks for GPU layers; with no driver the CUDA backend does not load, and llama-server says so.
    assert "no usable GPU found" in log
    assert "CUDA0" not in log
    version = container.exec("/app/llama-server", "--version")
    assert version.returncode == 0, version.stderr
    assert "version: " in version.stdout + version.stderr
    devices = container.exec("/app/llama-server", "--list-devices")
    assert devices.returncode == 0, devices.stderr
    assert "CUDA" not in devices.stdout + devices.stderr
    assert container.process.poll() is None


def test_the_runtime_image_keeps_nvidias_environment(built: Built) -> None:
    env = dict(e.split("=", 1) for e in built.model.config()["config"]["Env"])
    # /app first, then NVIDIA's driver directories, which some hosts mount libcuda.so.1 into.
    assert env["LD_LIBRARY_PATH"] == "/app:/usr/local/nvidia/lib:/usr/local/nvidia/lib64"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    # No driver ranges for NVIDIA's forward-compatibility libcuda, which the slim runtime does not carry.
    assert env["NVIDIA_REQUIRE_CUDA"] == "cuda>=13.0"
    assert env["CUDA_VERSION"] == CUDA_VERSION
    assert env["PATH"].startswith("/usr/local/nvidia/bin:")
    assert env["LLAMA_ARG_N_GPU_LAYERS"] == "999"


def test_a_second_build_compiles_nothing(built: Built) -> None:
    progress = Progress()
    result = run_checked(
        ["llama-bake", "build", "--progress", "rawjson", "--cache", _cache(), "tiny-cuda"], cwd=built.project
    )
    for line in result.stderr.splitlines():
        progress.feed(line)
    assert compiled_again(executed(progress)) == []
    cached = [v.step for v in progress.vertices.values() if v.is_step and v.cached]
    assert any("cmake" in step for step in cached)
