"""The slim CUDA runtime against NVIDIA's full one: what the CUDA tier's base image weighs each way.

    python bench/cuda_runtime.py   # after tests/integration/test_real_cuda.py has run (its build cache makes the
                                   # compile a hit): about 5 minutes on 2 cores; writes its section of RESULTS.md

The CUDA tier's base (CUDA 13.0.2, ``ada``, the tier's trimmed CMake options) on its stand-ins, built on a private
builder that imports a copy of the tier's build cache, three ways:

1. ``cuda_runtime: slim`` (the default): the Debian stand-in for ubuntu:24.04 plus the CUDA libraries the build
   loads;
2. ``cuda_runtime: full`` on the tier's runtime stand-in, which holds cudart and cuBLAS only;
3. ``cuda_runtime: full`` on that stand-in plus the rest of the CUDA 13.0 runtime libraries NVIDIA's ``-runtime-``
   image installs (``RUNTIME_WHEELS``, NVIDIA's wheels on PyPI, as the tier's stand-ins are made): the realistic
   full image.

Each is exported as an OCI layout with gzip layers (the exporter's default); its size is what a registry stores and
a GPU host pulls (config and layer blobs) and what the host unpacks (the layers' files).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import ccache
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.cuda_standins import _PLATFORMS, CUDA_VERSION, cuda_layouts, image_overrides  # noqa: E402
from tests.integration.test_real_cuda import BASE, base_catalog  # noqa: E402
from tests.standins import CUDA_BAKE_CACHE, DEBIAN_SUITE, _publish, cache_dir  # noqa: E402

SECTION = "## The slim CUDA runtime"
# What NVIDIA's 13.0 runtime image installs beyond cudart and cuBLAS (cuda-libraries-13-0, libnpp, libcusparse,
# cuda-nvtx, libnccl2), as the 13.0 wheels on PyPI ship them. Not here: what no wheel ships, the
# forward-compatibility driver (cuda-compat) among it, which NVIDIA's image also has.
RUNTIME_WHEELS = (
    "nvidia-cufft==12.0.0.61",
    "nvidia-curand==10.4.0.35",
    "nvidia-cusolver==12.0.4.66",
    "nvidia-cusparse==12.6.3.3",
    "nvidia-npp==13.0.1.2",
    "nvidia-nvjitlink==13.0.88",
    "nvidia-cuda-nvrtc==13.0.88",
    "nvidia-nvjpeg==13.0.1.86",
    "nvidia-nvtx==13.0.85",
    "nvidia-nccl-cu13==2.28.3",
)
WAYS = (
    ("slim", "`cuda_runtime: slim` (Debian stand-in + the CUDA libraries the build loads)"),
    ("full-standin", "`cuda_runtime: full` on the tier's runtime stand-in (cudart and cuBLAS only)"),
    ("full", "`cuda_runtime: full` on a stand-in with CUDA 13.0's runtime libraries"),
)


def runtime_wheels() -> list[Path]:
    folder = Path.home() / ".cache" / "llama-bake" / "cuda-runtime-wheels"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [spec.split("==") for spec in RUNTIME_WHEELS]
    if not all(list(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl")) for name, version in wanted):
        platforms = [arg for tag in (*_PLATFORMS, "manylinux_2_18_x86_64") for arg in ("--platform", tag)]
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", *platforms]
        subprocess.run([*pip, "--python-version", "3.12", "--dest", str(folder), *RUNTIME_WHEELS], check=True)
    return [w for name, version in wanted for w in sorted(folder.glob(f"{name.replace('-', '_')}-{version}-*.whl"))]


def full_runtime_layout() -> Path:
    """The tier's runtime stand-in plus ``RUNTIME_WHEELS``' libraries where NVIDIA's packages put them (the CUDA
    libraries beside cudart, NCCL in the system's library directory), built once into the test cache."""
    final = cache_dir() / f"nvidia-cuda-{CUDA_VERSION}-runtime-libraries-{DEBIAN_SUITE}-oci"
    if (final / "index.json").exists():
        return final
    work = cache_dir() / f".cuda-runtime-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    layout = work / "oci"
    shutil.copytree(cuda_layouts()["runtime"], layout, symlinks=True)
    image = f"{layout}:latest"
    subprocess.run(["umoci", "unpack", "--image", image, str(work / "bundle")], check=True, stdout=subprocess.DEVNULL)
    rootfs = work / "bundle" / "rootfs"
    into = {
        "cu13": rootfs / "usr/local/cuda-13.0/targets/x86_64-linux/lib",
        "nccl": rootfs / "usr/lib/x86_64-linux-gnu",
    }
    for wheel in runtime_wheels():
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                parts = member.filename.split("/")
                if len(parts) == 4 and parts[0] == "nvidia" and parts[2] == "lib" and ".so" in parts[3]:
                    (into[parts[1]] / parts[3]).write_bytes(archive.read(member))
    subprocess.run(["ldconfig", "-r", str(rootfs)], check=True)
    subprocess.run(["umoci", "repack", "--image", image, str(work / "bundle")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["umoci", "gc", "--layout", str(layout)], check=True)
    _publish(layout, final)
    shutil.rmtree(work, ignore_errors=True)
    return final


def sizes(layout: Path) -> tuple[int, int]:
    """(bytes a registry stores and a pull moves: config and layer blobs; bytes of the layers' files) of the
    image for linux/amd64 in an OCI layout."""

    def blob(digest: str) -> Path:
        return layout / "blobs" / digest.replace(":", "/")

    manifest = json.loads(blob(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]).read_text())
    if "manifests" in manifest:  # an index: the image, beside its attestations
        [image] = [m for m in manifest["manifests"] if m.get("platform", {}).get("architecture") == "amd64"]
        manifest = json.loads(blob(image["digest"]).read_text())
    stored = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    unpacked = 0
    for layer in manifest["layers"]:
        with tarfile.open(blob(layer["digest"]), mode="r|*") as tar:
            unpacked += sum(member.size for member in tar if member.isfile())
    return stored, unpacked


def build(proj: ccache.Bench, way: str, cache: Path, out: Path) -> tuple[int, int]:
    overrides = image_overrides()
    if way == "full":
        overrides[f"nvidia/cuda:{CUDA_VERSION}-runtime-ubuntu24.04"] = f"oci-layout://{full_runtime_layout()}:latest"
    catalog = proj.root / "catalog"
    (catalog / "project.yaml").write_text(yaml.safe_dump({"image_overrides": overrides}), encoding="utf-8")
    base = {**base_catalog(), "cuda_runtime": "slim" if way == "slim" else "full"}
    (catalog / "bases" / f"{BASE}.yaml").write_text(yaml.safe_dump(base), encoding="utf-8")
    dest = out / way
    shutil.rmtree(dest, ignore_errors=True)
    output = f"type=oci,dest={dest},tar=false,compression=gzip"
    proj.run(
        [*ccache.LLAMA_BAKE, "build", BASE, "--progress", "plain", "--cache", f"local={cache}", "--output", output]
    )
    found = sizes(dest)
    print(f"  {way}: {found[0] / 1e6:.0f} MB stored, {found[1] / 1e6:.0f} MB unpacked", file=sys.stderr)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    tier_cache = cache_dir() / CUDA_BAKE_CACHE
    if not tier_cache.is_dir():
        print(f"no {tier_cache}: run tests/integration/test_real_cuda.py first (its compile takes ~20 min)")
        return 1
    results: dict[str, tuple[int, int]] = {}
    with ccache.bench(None, None) as proj:
        # A copy: the builds export their cache as they import it, and the tier's own must stay as it was.
        cache = proj.root / "cache"
        shutil.copytree(tier_cache, cache, symlinks=True)
        for index, (way, _) in enumerate(WAYS, 1):
            print(f"{index}/{len(WAYS)} {way}", file=sys.stderr)
            results[way] = build(proj, way, cache, proj.root / "out")
        versions = proj.run(["docker", "buildx", "version"]).stdout.strip()
    text = report(results, versions)
    existing = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    args.output.write_text(ccache.replace_section(existing, text, SECTION), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def report(results: dict[str, tuple[int, int]], versions: str) -> str:
    slim = results["slim"]
    rows = [
        f"| {label} | {results[way][0] / 1e6:,.0f} | {results[way][0] / slim[0]:.2f}x | "
        f"{results[way][1] / 1e6:,.0f} | {results[way][1] / slim[1]:.2f}x |"
        for way, label in WAYS
    ]
    wheels = ", ".join(f"`{spec}`" for spec in RUNTIME_WHEELS)
    return "\n".join(
        [
            SECTION,
            "",
            f"Run {dt.date.today().isoformat()} with `python bench/cuda_runtime.py` ({versions}). The CUDA tier's base "
            "(CUDA 13.0.2, `ada`, the tier's CMake options; its compile a cache hit) on the stand-ins, exported as "
            "an OCI layout with gzip layers: stored is what a registry keeps and a GPU host pulls (config and "
            "layers), unpacked the layers' files. The realistic full runtime is the tier's runtime stand-in plus "
            f"the rest of CUDA 13.0's runtime libraries from NVIDIA's wheels ({wheels}); NVIDIA's image also has "
            "more (its forward-compatibility driver, cuda-compat, among them), so it is larger still.",
            "",
            "| runtime | stored (MB) | vs slim | unpacked (MB) | vs slim |",
            "| --- | ---: | ---: | ---: | ---: |",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
