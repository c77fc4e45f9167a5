"""The compiler cache travels with the base's build cache: exported after a compile, imported on an emptied
builder, so a one-file change compiles one translation unit.

The real base template (``backend: cpu``) compiles a small CMake tree standing in for llama.cpp (a local source
path), so each build takes seconds of compile instead of minutes. Where a test speaks of an emptied builder, it is
emptied with ``docker buildx prune --all`` (cache mounts included). A test's first build compiles cold on a builder
whose cache mounts alone were emptied, with a tree no other test built (``tree_id``); the stand-in and the apt
steps that earlier tests left stay cached. Only the test that reads the image writes one (the others build the
same target with ``type=cacheonly``).

The stand-in for ubuntu:24.04 is the Debian one with the template's build packages already installed
(``debian_toolchain_layout``, built once and kept in the test cache): the template's apt step still runs after
every emptying, and finds nothing to install. What this tier proves is about the compile and its cache, which
that step does not touch; installing the toolchain anew on every emptied builder was most of its time. The
test that reads the image's layers keeps the plain stand-in for the runtime image, which must not hold the ccache
package (its build stage is on the toolchain stand-in, under a name of its own); the slow tier's real images
install the toolchain from nothing.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import prune_builder, write_yaml
from tests.images import plain_tar
from tests.standins import debian_layout, debian_toolchain_layout

pytestmark = [pytest.mark.buildkit, pytest.mark.slow]

BASE = "tiny-cpu"
UNITS = 6  # u0.c .. u5.c, and main.c


def write_tree(root: Path, changes: dict[int, str] | None = None, *, tree_id: str = "") -> None:
    """A CMake project with the target llama-server (in build/bin, where llama.cpp puts it) of UNITS + 1 files;
    ``changes`` replaces the body of some units. ``tree_id``, a comment in CMakeLists.txt, makes the tree (the
    compile step's input) differ from another test's without changing what any unit compiles to."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "CMakeLists.txt").write_text(
        f"# {tree_id}\ncmake_minimum_required(VERSION 3.16)\nproject(tiny C)\n"
        "set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)\n"
        f"add_executable(llama-server main.c {' '.join(f'u{i}.c' for i in range(UNITS))})\n",
        encoding="utf-8",
    )
    calls = " + ".join(f"u{i}()" for i in range(UNITS))
    (root / "main.c").write_text(
        "".join(f"int u{i}(void);\n" for i in range(UNITS)) + f"int main(void) {{ return ({calls}) > 1000; }}\n",
        encoding="utf-8",
    )
    for i in range(UNITS):
        body = (changes or {}).get(i, f"return {i};")
        (root / f"u{i}.c").write_text(f"int u{i}(void) {{ {body} }}\n", encoding="utf-8")


@dataclass
class Result:
    returncode: int
    output: str
    summary: dict[str, Any]

    @property
    def base(self) -> dict[str, Any]:
        row: dict[str, Any] = next(t for t in self.summary["targets"] if t["name"] == BASE)
        return row


@dataclass
class Project:
    root: Path
    builder: str
    tree_id: str

    @property
    def tree(self) -> Path:
        return self.root / "llama.cpp"

    def write(self, changes: dict[int, str] | None = None) -> None:
        write_tree(self.tree, changes, tree_id=self.tree_id)

    def build(self, cache: str, *extra: str, image: bool = False) -> Result:
        """``llama-bake build`` of the base; with ``image``, its image is written to ``out/<base>.tar`` (the
        tests that only count compiles keep none: ``type=cacheonly``, the target built all the same)."""
        summary = self.root / "summary.json"
        summary.unlink(missing_ok=True)
        output = f"type=oci,dest={self.root / 'out'}/{{target}}.tar" if image else "type=cacheonly"
        done = subprocess.run(
            [
                "llama-bake",
                "build",
                BASE,
                "--progress",
                "plain",
                "--cache",
                cache,
                "--output",
                output,
                "--summary-json",
                str(summary),
                *extra,
            ],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        data = json.loads(summary.read_text(encoding="utf-8")) if summary.exists() else {"targets": []}
        return Result(done.returncode, done.stdout + done.stderr, data)

    def empty_builder(self) -> None:
        prune_builder(self.builder)

    def empty_cache_mounts(self) -> None:
        """Only the builder's cache mounts, the compiler cache's among them; its build cache stays."""
        prune = ["docker", "buildx", "prune", "--force", "--all", "--builder", self.builder]
        subprocess.run(
            [*prune, "--filter", "type=exec.cachemount"],
            check=True,
            capture_output=True,
        )

    def stand_in(self, layout: Path) -> None:
        """``layout`` stands in for ubuntu:24.04, the build stage's image and the runtime image's."""
        write_yaml(
            self.root / "catalog" / "project.yaml",
            {"registry": "localhost:5000/ccache", "image_overrides": {"ubuntu:24.04": f"oci-layout://{layout}:latest"}},
        )


@pytest.fixture
def project(embedded_builder: str, tmp_path: Path, request: pytest.FixtureRequest) -> Project:
    """A project whose first build compiles cold: its tree is its own (no compile step another test ran is in
    the builder's cache) and the builder's cache mounts, the compiler cache's among them, are emptied. The rest
    of the builder's cache stays, so a test's first build does not load the stand-in and run the apt step again;
    every "emptied builder" a test speaks of is emptied whole (``Project.empty_builder``)."""
    root = tmp_path / "project"
    write_yaml(
        root / "catalog" / "bases" / f"{BASE}.yaml",
        {"backend": "cpu", "llama_cpp": {"path": "llama.cpp", "ref": "tiny-1"}, "build_jobs": 2},
    )
    (root / "catalog" / "models").mkdir()
    created = Project(root, embedded_builder, f"{request.node.name} {tmp_path.name}")
    created.stand_in(debian_toolchain_layout())
    created.write()
    created.empty_cache_mounts()
    return created


def ok(result: Result) -> Result:
    assert result.returncode == 0, result.output[-6000:]
    return result


def compiled_units(result: Result) -> tuple[int, int]:
    """(hits, misses) of the base's compile, from the summary (the compile's own ccache statistics)."""
    base = result.base
    assert base["ccache_misses"] is not None, "the base's compile did not run:\n" + result.output[-3000:]
    return base["ccache_hits"], base["ccache_misses"]


def registry_digest(registry: str, repository: str, tag: str) -> str | None:
    accept = ", ".join(
        f"application/vnd.{kind}"
        for kind in (
            "oci.image.index.v1+json",
            "oci.image.manifest.v1+json",
            "docker.distribution.manifest.list.v2+json",
            "docker.distribution.manifest.v2+json",
        )
    )
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}", method="HEAD", headers={"Accept": accept}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return str(response.headers["Docker-Content-Digest"])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def layout_digest(layout: Path) -> str | None:
    index = layout / "index.json"
    return json.loads(index.read_text())["manifests"][0]["digest"] if index.exists() else None


def image_paths(archive: Path) -> list[str]:
    """Every path in every layer of the OCI archive's (single-platform) image."""
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]

    def blob(digest: str) -> bytes:
        return files["blobs/" + digest.replace(":", "/")]

    manifest = json.loads(blob(json.loads(files["index.json"])["manifests"][0]["digest"]))
    if "manifests" in manifest:
        manifest = json.loads(blob(next(m["digest"] for m in manifest["manifests"] if "platform" in m)))
    paths = []
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=io.BytesIO(plain_tar(blob(layer["digest"]), layer["mediaType"]))) as tar:
            paths += [m.name for m in tar.getmembers()]
    return paths


def test_registry_a_one_file_change_on_an_emptied_builder_compiles_one_unit(project: Project, registry: str) -> None:
    cache = f"registry={registry}/cache"
    first = ok(project.build(cache))
    assert compiled_units(first)[1] >= UNITS + 1, "a cold compile misses every unit"
    exported = registry_digest(registry, f"cache/{BASE}", "ccache")
    assert exported, "the compiler cache was exported as <REF>/<base>:ccache"

    project.empty_builder()
    project.write({3: "return 33;"})
    second = ok(project.build(cache))
    hits, misses = compiled_units(second)
    assert misses == 1, f"only u3.c compiles after the import ({hits} hits, {misses} misses)"
    assert hits >= UNITS
    assert second.base["ccache_hit_rate"] == pytest.approx(hits / (hits + misses), abs=1e-3)
    assert f"{BASE}: compiler cache" in second.output, "the summary shows the hit rate"
    assert registry_digest(registry, f"cache/{BASE}", "ccache") != exported, "the new compile was exported"

    # The source is unchanged and the imported compiler cache is new: the compile comes from the build cache.
    project.empty_builder()
    third = ok(project.build(cache))
    assert third.base["ccache_misses"] is None, "an unchanged source compiled again:\n" + third.output[-3000:]
    assert "Building C object" not in third.output, "only the import step runs again"


def test_registry_a_failed_compile_leaves_the_exported_cache_as_it_was(project: Project, registry: str) -> None:
    cache = f"registry={registry}/poison"
    assert compiled_units(ok(project.build(cache)))[1] >= UNITS + 1, "a cold compile misses every unit"
    exported = registry_digest(registry, f"poison/{BASE}", "ccache")
    assert exported

    project.write({4: "return"})  # a syntax error: the compile fails
    failed = project.build(cache)
    assert failed.returncode == 6, failed.output[-3000:]
    assert registry_digest(registry, f"poison/{BASE}", "ccache") == exported, "a failed compile exported nothing"

    project.empty_builder()
    project.write({4: "return 44;"})
    hits, misses = compiled_units(ok(project.build(cache)))
    assert misses == 1, f"the last good export still serves every other unit ({hits} hits, {misses} misses)"


def test_local_a_one_file_change_on_an_emptied_builder_compiles_one_unit(project: Project, tmp_path: Path) -> None:
    directory = tmp_path / "cache"
    cache = f"local={directory}"
    layout = directory / f"{BASE}.ccache"
    assert compiled_units(ok(project.build(cache)))[1] >= UNITS + 1, "a cold compile misses every unit"
    exported = layout_digest(layout)
    assert exported, "the compiler cache was exported as an OCI layout <DIR>/<base>.ccache"

    project.empty_builder()
    project.write({3: "return 33;"})
    second = ok(project.build(cache))
    hits, misses = compiled_units(second)
    assert misses == 1, f"only u3.c compiles after the import ({hits} hits, {misses} misses)"
    assert layout_digest(layout) not in (None, exported)

    # A failed compile: the layout stays as it was, and still serves the next build.
    kept = layout_digest(layout)
    project.write({3: "return 33;", 4: "return"})
    assert project.build(cache).returncode == 6
    assert layout_digest(layout) == kept
    assert not (directory / f"{BASE}.ccache.new").exists()
    project.empty_builder()
    project.write({3: "return 33;", 4: "return 44;"})
    assert compiled_units(ok(project.build(cache)))[1] == 1


def layout_paths(layout: Path) -> list[str]:
    """Every path in the layers of an OCI layout's image (the exported compiler cache)."""
    archive = layout.parent / (layout.name + ".tar")
    with tarfile.open(archive, "w") as tar:
        for child in layout.iterdir():
            tar.add(child, arcname=child.name)
    return image_paths(archive)


def test_the_compiler_cache_is_in_no_image_layer(project: Project, tmp_path: Path) -> None:
    # The layers read here include the runtime image's: on the plain Debian stand-in, which has no ccache
    # package, as ubuntu:24.04 has none. The build stage, whose layers no image holds, keeps the toolchain
    # stand-in under a name of its own (its ccache package is not what this test looks for).
    project.stand_in(debian_layout())
    toolchain = "llama-bake-test/toolchain:stand-in"  # not :latest, which BuildKit drops from a context name
    layout = debian_toolchain_layout()
    build_stage = ["--set", f"{BASE}.args.BUILD_IMAGE={toolchain}"]
    build_stage += ["--set", f"{BASE}.contexts.{toolchain}=oci-layout://{layout}:latest"]
    ok(project.build(f"local={tmp_path / 'cache'}", *build_stage))
    project.empty_builder()
    project.write({0: "return 100;"})
    second = ok(project.build(f"local={tmp_path / 'cache'}", *build_stage, image=True))
    assert compiled_units(second)[1] == 1, "the build imported the compiler cache it reads"
    entries = {Path(p).name for p in layout_paths(tmp_path / "cache" / f"{BASE}.ccache")}
    entries = {name for name in entries if len(name) > 20}  # ccache's result and manifest files (hash names)
    assert entries, "the exported compiler cache holds ccache entries"
    paths = image_paths(project.root / "out" / f"{BASE}.tar")
    assert any(p.endswith("app/llama-server") for p in paths)
    leaked = [p for p in paths if "ccache" in p or ".cache/" in p or Path(p).name in entries]
    assert not leaked, leaked


def test_plain_bake_of_the_generated_file_compiles_with_a_cold_cache(project: Project) -> None:
    ok(project.build(f"local={project.root / 'cache'}"))
    # The compiler cache that build left in the builder's cache mount is gone; its export is beside the project.
    project.empty_cache_mounts()
    project.write({5: "return 55;"})
    done = subprocess.run(
        ["docker", "buildx", "bake", "--builder", project.builder, "--progress", "plain", BASE],
        cwd=project.root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "llama-bake: ccache: 0 hits" in done.stderr, "no compiler cache is imported without llama-bake build"
