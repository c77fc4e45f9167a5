"""Stand-ins for ``nvidia/cuda:13.0.2-devel-ubuntu24.04`` and ``-runtime-ubuntu24.04``, which cannot be pulled
here: the Debian root filesystem of the slow tier (``debian_layout``) plus a CUDA 13.0 toolkit made from NVIDIA's
wheels on PyPI, each an OCI layout (tag ``latest``) cached in the test cache.

PyPI's CUDA 12 wheels carry no ``nvcc``; the 13.0 ones do. Laid out as ``/usr/local/cuda``, they are what CMake's
FindCUDAToolkit and ``nvcc.profile`` expect of NVIDIA's images:

- devel: the whole toolkit (nvcc, cicc, headers, CCCL, cudart, cuBLAS) and the driver stub
  ``lib64/stubs/libcuda.so`` that links like NVIDIA's (no wheel ships one: it is compiled here from ``cuda.h``,
  every driver function returning CUDA_ERROR_STUB_LIBRARY);
- runtime: what NVIDIA's runtime image has that llama.cpp uses, cudart and cuBLAS, and no stub: ``libcuda.so.1``
  comes from the host's driver (the NVIDIA container runtime mounts it).

Both set the environment NVIDIA's images set (PATH, LD_LIBRARY_PATH to /usr/local/nvidia, NVIDIA_* for the container
runtime) and register the libraries with ldconfig as NVIDIA's packages do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.standins import DEBIAN_SUITE, _publish, cache_dir, debian_layout

# The image tag these stand in for, and the wheels (the newest of the 13.0 line on PyPI) that make its toolkit.
CUDA_VERSION = "13.0.2"
CUDA_WHEELS = (
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cccl==13.0.85",
    "nvidia-cublas==13.0.2.14",
)
# pip download needs platform tags for wheels that do not fit the running interpreter's own.
_PLATFORMS = ("manylinux_2_27_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64")
_RUNTIME_LIBS = ("libcudart.so", "libcublas.so", "libcublasLt.so")
_PATH = "/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def wheels_dir() -> Path:
    """Where the wheels are kept (525 MB): beside the test cache, outside any checkout."""
    root = os.environ.get("LLAMA_BAKE_CUDA_WHEELS") or Path.home() / ".cache" / "llama-bake" / "cuda-wheels"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cuda_wheels() -> list[Path]:
    """The six wheels, downloaded from PyPI once."""
    folder = wheels_dir()

    def present() -> list[Path]:
        found = []
        for spec in CUDA_WHEELS:
            name, version = spec.split("==")
            found += sorted(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
        return found

    if len(present()) < len(CUDA_WHEELS):
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        platforms = [arg for tag in _PLATFORMS for arg in ("--platform", tag)]
        subprocess.run([*pip, *platforms, "--python-version", "3.12", "--dest", str(folder), *CUDA_WHEELS], check=True)
    wheels = present()
    if len(wheels) != len(CUDA_WHEELS):
        msg = f"expected {len(CUDA_WHEELS)} CUDA wheels in {folder}, found {[w.name for w in wheels]}"
        raise RuntimeError(msg)
    return wheels


def _stub_symbols(include: Path) -> list[str]:
    """Every driver API name ``cuda.h`` declares: the versioned names its macros expand to (``cuMemAlloc_v2``,
    and with per-thread streams ``_ptsz``/``_ptds``) and the plain names written after ``CUDAAPI``."""
    names: set[str] = set()
    header = include / "cuda.h"
    for defines in ([], ["-DCUDA_API_PER_THREAD_DEFAULT_STREAM"]):
        expanded = subprocess.run(
            ["gcc", "-E", "-P", *defines, "-I", str(include), "-x", "c", str(header)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        names.update(re.findall(r"\b(cu[A-Za-z0-9_]+)\s*\(", expanded))
    names.update(re.findall(r"\bCUDAAPI\s+(cu[A-Za-z0-9_]+)\s*\(", header.read_text(encoding="utf-8")))
    return sorted(names)


def _driver_stub(toolkit: Path) -> None:
    """``lib64/stubs/libcuda.so`` (soname ``libcuda.so.1``): every driver function returns 34, the driver API's
    CUDA_ERROR_STUB_LIBRARY, so cudart reports "CUDA driver is a stub library" as with NVIDIA's stub."""
    if shutil.which("gcc") is None:
        msg = "gcc is needed to build the CUDA driver stub: run .ci/install-tools.sh"
        raise RuntimeError(msg)
    stubs = toolkit / "lib64" / "stubs"
    stubs.mkdir()
    source = stubs / "libcuda.c"
    source.write_text(
        "".join(f"int {name}(void) {{ return 34; }}\n" for name in _stub_symbols(toolkit / "include")),
        encoding="utf-8",
    )
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O0", "-Wl,-soname,libcuda.so.1", "-o", str(stubs / "libcuda.so"), str(source)],
        check=True,
    )
    source.unlink()


def _toolkit(wheels: list[Path], root: Path) -> Path:
    """The wheels unpacked into ``root`` as NVIDIA's /usr/local/cuda-13.0 is laid out."""
    unpacked = root / "unpacked"
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(unpacked)
    toolkit = unpacked / "nvidia" / "cu13"
    shutil.rmtree(toolkit / ".metadata", ignore_errors=True)
    # Zip extraction drops the executable bits.
    for program in [*(p for p in (toolkit / "bin").iterdir() if p.is_file()), toolkit / "nvvm" / "bin" / "cicc"]:
        if program.name != "nvcc.profile":
            program.chmod(0o755)
    (toolkit / "lib").rename(toolkit / "lib64")
    (toolkit / "lib").symlink_to("lib64")
    lib64 = toolkit / "lib64"
    for versioned in sorted(lib64.glob("lib*.so.*")):
        plain = lib64 / versioned.name.split(".so.")[0]
        link = plain.with_name(plain.name + ".so")
        if not link.exists():
            link.symlink_to(versioned.name)
    (toolkit / "nvvm" / "lib64").mkdir()
    for name in ("libnvvm.so", "libnvvm.so.4"):
        (toolkit / "nvvm" / "lib64" / name).symlink_to(f"../../lib64/{name}")
    targets = toolkit / "targets" / "x86_64-linux"
    targets.mkdir(parents=True)
    (targets / "include").symlink_to("../../include")
    (targets / "lib").symlink_to("../../lib64")
    _driver_stub(toolkit)
    final = root / "cuda"
    toolkit.rename(final)
    shutil.rmtree(unpacked)
    return final


def _image(kind: str, toolkit: Path, work: Path) -> Path:
    """The Debian stand-in with ``toolkit`` (or, for the runtime, its cudart and cuBLAS) as /usr/local/cuda-13.0."""
    umoci = shutil.which("umoci")
    if umoci is None:
        msg = "umoci is needed for the CUDA stand-ins: run .ci/install-tools.sh"
        raise RuntimeError(msg)
    layout = work / f"{kind}-oci"
    shutil.copytree(debian_layout(), layout, symlinks=True)
    bundle = work / f"{kind}-bundle"
    image = f"{layout}:latest"
    subprocess.run([umoci, "unpack", "--image", image, str(bundle)], check=True, stdout=subprocess.DEVNULL)
    rootfs = bundle / "rootfs"
    home = rootfs / "usr" / "local" / "cuda-13.0"
    if kind == "devel":
        shutil.copytree(toolkit, home, symlinks=True)
    else:
        lib = home / "targets" / "x86_64-linux" / "lib"
        lib.mkdir(parents=True)
        for stem in _RUNTIME_LIBS:
            for path in sorted((toolkit / "lib64").glob(f"{stem}.*")):
                shutil.copy2(path, lib / path.name, follow_symlinks=False)
        (home / "lib64").symlink_to("targets/x86_64-linux/lib")
    (rootfs / "usr" / "local" / "cuda").symlink_to("cuda-13.0")
    (rootfs / "usr" / "local" / "cuda-13").symlink_to("cuda-13.0")
    (rootfs / "etc" / "ld.so.conf.d" / "000_cuda.conf").write_text(
        "/usr/local/cuda/targets/x86_64-linux/lib\n", encoding="utf-8"
    )
    subprocess.run(["ldconfig", "-r", str(rootfs)], check=True)
    subprocess.run([umoci, "repack", "--image", image, str(bundle)], check=True, stdout=subprocess.DEVNULL)
    env = {
        "PATH": _PATH,
        "LD_LIBRARY_PATH": "/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
        "CUDA_VERSION": CUDA_VERSION,
        "NVIDIA_VISIBLE_DEVICES": "all",
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
        "NVIDIA_REQUIRE_CUDA": "cuda>=13.0",
    }
    if kind == "devel":
        env["LIBRARY_PATH"] = "/usr/local/cuda/lib64/stubs"
    settings = [arg for key, value in env.items() for arg in ("--config.env", f"{key}={value}")]
    subprocess.run([umoci, "config", "--image", image, *settings], check=True)
    subprocess.run([umoci, "gc", "--layout", str(layout)], check=True)
    shutil.rmtree(bundle)
    return layout


def cuda_layouts() -> dict[str, Path]:
    """``{"devel": LAYOUT, "runtime": LAYOUT}``, each an OCI layout with the tag ``latest``, built once."""
    # Named by the Debian suite under the toolkit too: a stand-in on another suite is another image.
    finals = {
        kind: cache_dir() / f"nvidia-cuda-{CUDA_VERSION}-{kind}-{DEBIAN_SUITE}-oci" for kind in ("devel", "runtime")
    }
    if all((final / "index.json").exists() for final in finals.values()):
        return finals
    work = cache_dir() / f".cuda-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    toolkit = _toolkit(cuda_wheels(), work)
    for kind, final in finals.items():
        if not (final / "index.json").exists():
            _publish(_image(kind, toolkit, work), final)
    shutil.rmtree(work, ignore_errors=True)
    return finals


def image_overrides(os_flavour: str = "ubuntu24.04") -> dict[str, str]:
    """The catalog's ``image_overrides`` that put the stand-ins in place of NVIDIA's images, and the Debian one in
    place of the OS image (what the slim CUDA runtime starts from)."""
    layouts = cuda_layouts()
    return {
        **{
            f"nvidia/cuda:{CUDA_VERSION}-{kind}-{os_flavour}": f"oci-layout://{layout}:latest"
            for kind, layout in layouts.items()
        },
        f"ubuntu:{os_flavour.removeprefix('ubuntu')}": f"oci-layout://{debian_layout()}:latest",
    }
