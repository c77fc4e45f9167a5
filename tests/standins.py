"""Local stand-ins for what this machine cannot download at build time: a busybox image (for nvidia/cuda in
the quick tiers and the benchmarks), a Debian root filesystem as an OCI image (for ubuntu:24.04) and the
llama.cpp source tree (from the PyPI sdist of llama-cpp-python).

The last two are cached under ``$LLAMA_BAKE_TEST_CACHE`` (default ``~/.cache/llama-bake/test``), so a second run of the
slow tier starts from them in seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

from llama_bake.buildx import ccache
from llama_bake.buildx.options import CachePreset
from llama_bake.catalog.backends import BACKENDS

# Debian's stable release, the stand-in for ubuntu:24.04 in every tier that builds on it: trixie, whose compiler
# (GCC 14) and glibc (2.41) are as near Ubuntu 24.04's (GCC 13, 2.39) as Debian gets, and whose Vulkan headers
# (1.4.309), glslc (2025.2) and Mesa (25.0, lavapipe) are new enough for llama.cpp's Vulkan backend (bookworm's
# headers, 1.3.239, lack VK_EXT_layer_settings, which it uses unguarded). One suite for the CPU, CUDA and Vulkan
# tiers means one compiler: the C and C++ sources they share compile once, in whichever tier runs first, and hit
# that tier's compiler cache in the others (``share_compiler_cache``).
DEBIAN_SUITE = "trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# The sdist that vendors llama.cpp; pinned so the compiled source, and so the BuildKit cache, stay put.
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"


def cache_dir() -> Path:
    root = os.environ.get("LLAMA_BAKE_TEST_CACHE") or Path.home() / ".cache" / "llama-bake" / "test"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


# The slow tiers' build caches in the test cache: BuildKit's per target, each base's compiler cache beside it
# (DIR/<base>.ccache, an OCI layout).
CPU_BAKE_CACHE = "bake-cache"
CUDA_BAKE_CACHE = "bake-cache-cuda"
VULKAN_BAKE_CACHE = "bake-cache-vulkan"
# The CUDA tier's base (tests/integration/test_real_cuda.py): its compiler cache starts the CPU and Vulkan tiers'.
CUDA_TIER_BASE = "llama-cuda"


def compiler_cache(cache: Path, base: str) -> Path:
    """Where ``llama-bake build --cache local=CACHE`` keeps ``base``'s compiler cache (llama-bake's own rule)."""
    found = ccache.store(CachePreset("local", str(cache)), base)
    assert found is not None, "a local preset always has a store"
    return Path(found.location)


def share_compiler_cache(cache: Path, base: str) -> None:
    """Start ``base``'s compiler cache (in the build cache ``cache``) as a copy of the CUDA tier's, when it has none
    yet: the C and C++ sources the two bases compile with the same flags then hit, and only what differs compiles
    (everything, when the CUDA tier has not run)."""
    into = compiler_cache(cache, base)
    source = compiler_cache(cache_dir() / CUDA_BAKE_CACHE, CUDA_TIER_BASE)
    if into.exists() or not (source / "index.json").exists():
        return
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = into.with_name(f".{into.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    _publish(tmp, into)


def _publish(tmp: Path, final: Path) -> Path:
    """Move a finished ``tmp`` into place; a concurrent or interrupted run never leaves half a result."""
    if final.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(final)
    return final


def _native_busybox() -> Path:
    busybox = shutil.which("busybox")
    if busybox is None:
        msg = "busybox is not installed: run .ci/install-tools.sh (Debian's busybox-static)"
        raise RuntimeError(msg)
    return Path(busybox)


def _rootfs(busybox: Path, root: Path) -> None:
    """A root filesystem of ``busybox`` and a link per applet (listed by this machine's own busybox)."""
    (root / "bin").mkdir(parents=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    listed = subprocess.run([_native_busybox(), "--list"], capture_output=True, text=True, check=True).stdout
    for applet in listed.split():
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")


def _bake_layout(builder: str, root: Path, attributes: str) -> str:
    """Build the target ``stand-in`` (``attributes`` are its HCL lines) into an OCI layout under ``root``."""
    layout = root / "layout"
    bake = root / "stand-in.hcl"
    bake.write_text(
        f'target "stand-in" {{\n{attributes}  output = ["type=oci,dest={layout},tar=false,name=stand-in:latest"]\n}}\n',
        encoding="utf-8",
    )
    command = ["docker", "buildx", "bake", "--builder", builder, "--file", str(bake)]
    subprocess.run([*command, "--allow", f"fs.write={root}", "--progress", "quiet", "stand-in"], cwd=root, check=True)
    return f"oci-layout://{layout}:latest"


def busybox_layout(builder: str, root: Path) -> str:
    """A 2 MB busybox image as an OCI layout under ``root``, built by ``builder``; returns its named-context source.
    (A plain directory as a FROM stand-in would defeat BuildKit's cache; an OCI layout is content-addressed.)"""
    _rootfs(_native_busybox(), root / "rootfs")
    return _bake_layout(builder, root, '  context = "rootfs"\n  dockerfile-inline = "FROM scratch\\nCOPY . /\\n"\n')


def arm64_busybox() -> Path:
    """A static arm64 busybox (Debian's busybox-static:arm64, which .ci/install-tools.sh unpacks)."""
    tools = Path(os.environ.get("LLAMA_BAKE_TOOLS") or Path.home() / ".cache" / "llama-bake" / "tools")
    binary = tools / "busybox-arm64"
    if not binary.is_file():
        msg = f"{binary} is missing: run .ci/install-tools.sh (Debian's busybox-static:arm64)"
        raise RuntimeError(msg)
    return binary


def two_platform_busybox_layout(builder: str, root: Path) -> str:
    """An image index of two busybox images, linux/amd64 and linux/arm64 (each its own architecture's
    binary), as an OCI layout: stands in for the multi-platform nvidia/cuda images."""
    _rootfs(_native_busybox(), root / "amd64")
    _rootfs(arm64_busybox(), root / "arm64")
    (root / "Dockerfile").write_text(
        "FROM scratch AS amd64\nCOPY amd64/ /\nFROM scratch AS arm64\nCOPY arm64/ /\nFROM ${TARGETARCH}\n",
        encoding="utf-8",
    )
    return _bake_layout(builder, root, '  platforms = ["linux/amd64", "linux/arm64"]\n')


def debian_layout(suite: str = DEBIAN_SUITE) -> Path:
    """An OCI image layout (tag ``latest``) holding a minimal Debian ``suite`` made by debootstrap."""
    return _debootstrap_layout(suite, (), f"debian-{suite}-oci")


def _debootstrap_layout(suite: str, include: Sequence[str], name: str) -> Path:
    """debootstrap's minimal ``suite`` (with the packages ``include``, their dependencies too, not their
    recommendations) as an OCI layout in the test cache under ``name``."""
    final = cache_dir() / name
    if (final / "index.json").exists():
        return final
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    umoci = shutil.which("umoci")
    if not Path(debootstrap).exists() or umoci is None:
        msg = "debootstrap and umoci are needed for the Debian stand-in: run .ci/install-tools.sh"
        raise RuntimeError(msg)
    work = cache_dir() / f".{name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    rootfs = work / "rootfs"
    options = [f"--include={','.join(include)}"] if include else []
    subprocess.run(
        [debootstrap, "--variant=minbase", *options, suite, str(rootfs), DEBIAN_MIRROR],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    if include:  # what debootstrap downloaded stays out of the image (apt-get clean in a Dockerfile)
        for archive in (rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            archive.unlink()
    layout = work / "oci"
    bundle = work / "bundle"
    subprocess.run([umoci, "init", "--layout", str(layout)], check=True)
    subprocess.run([umoci, "new", "--image", f"{layout}:latest"], check=True)
    subprocess.run([umoci, "unpack", "--image", f"{layout}:latest", str(bundle)], check=True)
    shutil.rmtree(bundle / "rootfs")
    rootfs.rename(bundle / "rootfs")
    subprocess.run([umoci, "repack", "--image", f"{layout}:latest", str(bundle)], check=True)
    subprocess.run(
        [
            umoci,
            "config",
            "--image",
            f"{layout}:latest",
            "--config.env",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ],
        check=True,
    )
    subprocess.run([umoci, "gc", "--layout", str(layout)], check=True)
    _publish(layout, final)
    shutil.rmtree(work, ignore_errors=True)
    return final


# The build stage's packages, as the packaged base template installs them (its first apt-get install line).
BASE_TEMPLATE = Path(__file__).parent.parent / "templates" / "base.Dockerfile.j2"


def build_packages() -> list[str]:
    """The packages the base template's build stage installs (``build-essential cmake git ccache ...``)."""
    found = re.search(r"apt-get install -y --no-install-recommends ([a-z0-9 .+-]+)", BASE_TEMPLATE.read_text())
    if found is None:
        msg = f"no apt-get install line in {BASE_TEMPLATE}"
        raise RuntimeError(msg)
    return found.group(1).split()


def debian_toolchain_layout() -> Path:
    """The Debian stand-in with the base template's build packages and the OS packages every backend adds to them
    (Vulkan's headers, loader and glslc) already installed: an OCI layout, tag ``latest``, made by debootstrap
    (no builder needed, so ``tests/prepare.py`` makes it beside the tool builds) and cached. The template's apt
    steps still run on it, and find the build packages installed. It stands in for ubuntu:24.04 in the Vulkan
    tier, and in the compiler cache tier, whose claim is about the compile, not apt, on builders it empties often."""
    packages = [*build_packages(), *(p for backend in BACKENDS.values() for p in backend.build_packages)]
    # Named by its package list: a template that installs something else gets a layout of its own.
    digest = hashlib.sha256(" ".join(packages).encode()).hexdigest()[:12]
    return _debootstrap_layout(DEBIAN_SUITE, packages, f"debian-{DEBIAN_SUITE}-toolchain-{digest}-oci")


def llama_cpp_tree(requirement: str = LLAMA_CPP_PYTHON) -> Path:
    """The llama.cpp source tree vendored in the llama-cpp-python sdist from PyPI (``requirement``: another
    pinned version, for the compiler cache benchmark's second release)."""
    version = requirement.partition("==")[2]
    final = cache_dir() / ("llama.cpp" if requirement == LLAMA_CPP_PYTHON else f"llama.cpp-{version}")
    if (final / "CMakeLists.txt").exists():
        return final
    work = cache_dir() / f".sdist-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            str(work),
            requirement,
        ],
        check=True,
    )
    (sdist,) = work.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "x", filter="tar")
    (vendored,) = (work / "x").glob("*/vendor/llama.cpp")
    _publish(vendored, final)
    shutil.rmtree(work, ignore_errors=True)
    return final
