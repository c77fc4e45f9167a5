"""Pushing to registries that are stricter than the tests' docker-registry: one that refuses any blob over a size
limit (as ghcr.io refuses layers over 10 GB) and one that demands a login through a token service (as ghcr.io and
Docker Hub do). Both are a small proxy on 127.0.0.1 in front of the real registry (tests/registry_proxy.py); the
builds are real (buildx bake on the tests' buildkitd), with the real model template and a busybox stand-in base.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from llama_bake.cli import main
from llama_bake.companions import ci_options
from llama_bake.project import Paths, plan_catalog
from llama_bake.render.ci import job_plan
from tests.ci_pipeline import job_shell
from tests.conftest import FIXTURE_TEMPLATES, WeightsServer, write_yaml
from tests.images import plain_tar
from tests.registry_proxy import RegistryProxy

pytestmark = pytest.mark.buildkit

DEVEL = "nvidia/cuda:12.8.1-devel-ubuntu24.04"
# What a cuda base's runtime stage starts from: the OS image (the slim CUDA runtime, the default).
RUNTIME = "ubuntu:24.04"
MIB = 1 << 20


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedded_builder: str) -> Path:
    """A docker config of the test's own (its logins), that still finds buildx and the session's builder."""
    home = Path.home() / ".docker"
    config = tmp_path / "docker-config"
    config.mkdir()
    plugin = Path(shutil.which("docker-buildx") or home / "cli-plugins" / "docker-buildx")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-buildx").symlink_to(plugin.resolve())
    (config / "buildx").symlink_to(home / "buildx")
    (config / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    return config


def login(config: Path, registry: str, user: str, password: str) -> None:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))


@pytest.fixture
def project(tmp_path: Path, stand_in_image: str) -> Path:
    """The fixture base (a cheap stand-in for the compile) and the real model template: one ADD per weights file."""
    (tmp_path / "templates").mkdir()
    shutil.copy(FIXTURE_TEMPLATES / "base.Dockerfile.j2", tmp_path / "templates")
    (tmp_path / "src" / "llama.cpp").mkdir(parents=True)
    (tmp_path / "src" / "llama.cpp" / "VERSION").write_text("fixture source\n")
    catalog = tmp_path / "catalog"
    write_yaml(
        catalog / "bases" / "base.yaml", {"llama_cpp": {"path": "src/llama.cpp", "ref": "b1"}, "gpu_families": ["ada"]}
    )
    write_yaml(catalog / "project.yaml", {"image_overrides": {DEVEL: stand_in_image, RUNTIME: stand_in_image}})
    return catalog


@pytest.fixture
def server() -> Iterator[WeightsServer]:
    served = WeightsServer()
    yield served
    served.close()


def build(catalog: Path, registry: str, *targets: str) -> Result:
    argv = ["build", "-c", str(catalog), "--progress", "plain", "--push", "--var", f"REGISTRY={registry}/lb"]
    return CliRunner().invoke(main, [*argv, *targets])


def _skopeo_raw(reference: str) -> dict[str, Any]:
    done = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{reference}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    manifest: dict[str, Any] = json.loads(done.stdout)
    return manifest


def layers(repository: str, tag: str = "latest") -> list[dict[str, Any]]:
    """The layers of the image pushed to ``repository`` (the platform's image, when the tag is an index)."""
    manifest = _skopeo_raw(f"{repository}:{tag}")
    if "manifests" in manifest:
        digest = next(m["digest"] for m in manifest["manifests"] if m.get("platform", {}).get("os") == "linux")
        manifest = _skopeo_raw(f"{repository}@{digest}")
    return list(manifest["layers"])


def layer_files(repository: str, workdir: Path) -> list[tuple[str, list[str]]]:
    """Each layer of the pushed image (pulled with skopeo): its digest and the files it holds."""
    layout = workdir / f"pulled-{len(list(workdir.glob('pulled-*')))}"
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{repository}:latest", f"oci:{layout}:x"],
        check=True,
    )
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_text())
    out = []
    for layer in manifest["layers"]:
        blob = (layout / "blobs" / "sha256" / layer["digest"][7:]).read_bytes()
        with tarfile.open(fileobj=io.BytesIO(plain_tar(blob, layer["mediaType"]))) as tar:
            out.append((layer["digest"], sorted(m.name for m in tar.getmembers() if m.isfile())))
    return out


def test_a_split_model_over_the_layer_limit_pushes_one_layer_per_part_and_an_unsplit_one_is_refused(
    project: Path, registry: str, server: WeightsServer, docker_config: Path
) -> None:
    proxy = RegistryProxy(registry, max_blob=3 * MIB)
    try:
        parts = []
        for number in (1, 2, 3):
            url, sha = server.add(f"big-{number:05d}-of-00003.gguf", size=2 * MIB)
            parts.append({"url": url, "sha256": sha, "size": 2 * MIB})
        url, sha = server.add("huge.gguf", size=5 * MIB)
        write_yaml(project / "models" / "split.yaml", {"weights": {"parts": parts}})
        # Its size not recorded, so nothing before the push can know it is over the limit.
        write_yaml(project / "models" / "huge.yaml", {"weights": {"url": url, "sha256": sha}})
        project_file = project / "project.yaml"
        write_yaml(project_file, {**_yaml(project_file), "max_layer_size": 3 * MIB})
        listed = {
            r["target"]: r for r in json.loads(CliRunner().invoke(main, ["list", "-c", str(project), "--json"]).stdout)
        }
        assert (listed["split"]["weight_size"], listed["split"]["weight_layers"]) == (6 * MIB, 3)
        assert listed["huge"]["weight_size"] is None

        pushed = build(project, proxy.address, "split")
        assert pushed.exit_code == 0, pushed.output
        sizes = [layer["size"] for layer in layers(f"{proxy.address}/lb/split")]
        assert all(size <= 3 * MIB for size in sizes)
        assert len([s for s in sizes if s > 2 * MIB - 4096]) == 3, f"one layer per part: {sizes}"
        assert proxy.refused == []

        refused = build(project, proxy.address, "huge")
        assert refused.exit_code == 6, refused.output
        assert proxy.refused, "the proxy refused the 5 MiB layer, as ghcr.io refuses one over its limit"
    finally:
        proxy.close()


def _yaml(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_push_without_a_login_fails_in_seconds_before_any_step(
    project: Path, registry: str, server: WeightsServer, docker_config: Path
) -> None:
    proxy = RegistryProxy(registry, auth=True, users={"ci": ("secret", frozenset({"lb/base", "lb/m"}))})
    try:
        url, sha = server.add("m.gguf")
        write_yaml(project / "models" / "m.yaml", {"weights": {"url": url, "sha256": sha}})
        write_yaml(project / "models" / "other.yaml", {"weights": {"url": url, "sha256": sha}})

        started = time.monotonic()
        refused = build(project, proxy.address)
        elapsed = time.monotonic() - started
        assert refused.exit_code == 10, refused.output
        assert f"needs a login to push and the docker config has none for it: run `docker login {proxy.address}`" in (
            refused.output
        )
        assert elapsed < 15, f"refused in {elapsed:.1f} s"
        assert server.gets == {}, "no step ran: nothing was downloaded"
        assert proxy.uploads == {}, "nothing was pushed"

        login(docker_config, proxy.address, "ci", "wrong")
        assert "refuses the docker config's login (user `ci`)" in build(project, proxy.address).output

        login(docker_config, proxy.address, "ci", "secret")
        scoped = build(project, proxy.address)
        assert scoped.exit_code == 10, scoped.output
        assert f"cannot push to {proxy.address}/lb/other (missing scope: repository:lb/other:push)" in scoped.output
        assert server.gets == {}

        pushed = build(project, proxy.address, "m")
        assert pushed.exit_code == 0, pushed.output
        assert proxy.uploads, "with the login, buildx pushed through the token service"
    finally:
        proxy.close()


FAKE_SPLIT = """#!/bin/sh
# A stand-in for llama-gguf-split --split --split-max-size NM IN OUT: parts of N MB, named as llama.cpp does.
set -eu
max=${3%M}; in=$4; out=$5
size=$(wc -c < "$in"); n=$(( (size + max * 1000000 - 1) / (max * 1000000) ))
i=1
while [ "$i" -le "$n" ]; do
    part=$(printf '%s-%05d-of-%05d.gguf' "$out" "$i" "$n")
    dd if="$in" of="$part" bs=1000000 skip=$(( (i - 1) * max )) count="$max" 2>/dev/null
    i=$((i + 1))
done
"""
FAKE_SPLIT_TEMPLATE = """# Fixture: llama-gguf-split is a shell script (the real template compiles it).
FROM ${SPLIT_IMAGE} AS gguf-split
ARG SPLIT_TOOL_REF
COPY --chmod=755 --from=gguf-split-src llama-gguf-split /usr/local/bin/llama-gguf-split
"""


def test_a_file_over_the_limit_is_re_split_and_a_new_llama_cpp_re_pushes_no_weight_layer(
    project: Path, registry: str, server: WeightsServer, docker_config: Path, stand_in_image: str
) -> None:
    """The re-split stages do not start from the base: a changed llama.cpp ref rebuilds the base and the
    model's last stage, and the registry is sent no weights blob (counted at the proxy)."""
    (project.parent / "templates" / "gguf-split.Dockerfile.j2").write_text(FAKE_SPLIT_TEMPLATE)
    tool = project.parent / "src" / "gguf-split"
    tool.mkdir(parents=True)
    (tool / "llama-gguf-split").write_text(FAKE_SPLIT)
    limit = 2_500_000
    proxy = RegistryProxy(registry, max_blob=limit)
    try:
        url, sha = server.add("big.gguf", size=3_500_000)
        big = {"weights": {"url": url, "sha256": sha, "size": 3_500_000}, "license": "mit"}
        write_yaml(project / "models" / "big.yaml", big)
        project_file = project / "project.yaml"
        settings = _yaml(project_file)
        settings["image_overrides"]["ubuntu:24.04"] = stand_in_image
        write_yaml(
            project_file,
            {**settings, "max_layer_size": limit, "split_tool": {"path": "src/gguf-split", "ref": "fake-1"}},
        )
        assert CliRunner().invoke(main, ["validate", "-c", str(project), "--strict"]).exit_code == 0

        first = build(project, proxy.address, "big")
        assert first.exit_code == 0, first.output
        assert proxy.refused == []
        before = layer_files(f"{proxy.address}/lb/big", project.parent)
        parts = [(digest, files) for digest, files in before if any(f.startswith("models/") for f in files)]
        assert [files for _, files in parts] == [[f"models/big-0000{n}-of-00004.gguf"] for n in (1, 2, 3, 4)], (
            "3.5 MB in parts of 1 MB, one layer each"
        )
        assert all(layer["size"] <= limit for layer in layers(f"{proxy.address}/lb/big"))
        sent = set(proxy.uploaded_sizes)

        base = _yaml(project / "bases" / "base.yaml")
        write_yaml(project / "bases" / "base.yaml", {**base, "llama_cpp": {"path": "src/llama.cpp", "ref": "b2"}})
        second = build(project, proxy.address, "big")
        assert second.exit_code == 0, second.output
        after = layer_files(f"{proxy.address}/lb/big", project.parent)
        assert [layer for layer in after if any(f.startswith("models/") for f in layer[1])] == parts, "same layers"
        assert after != before, "the base changed"
        again = {d: size for d, size in proxy.uploaded_sizes.items() if d not in sent}
        assert again, "the new base's layers and the image were pushed"
        assert max(again.values()) < 500_000, f"no weights blob was pushed again: {again}"

    finally:
        proxy.close()


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_the_generated_ci_files_build_step_fails_in_seconds_without_a_login(
    project: Path, registry: str, server: WeightsServer, docker_config: Path, provider: str
) -> None:
    """What `llama-bake ci` writes runs `llama-bake build --push` with a per-target cache in each job: the push
    pre-flight runs there too, so a registry that demands a login the job does not have stops the first job that
    pushes (the base's) before any step, with the fix, and so does a login without the push scope (ghcr.io's
    GITHUB_TOKEN without write access to the package)."""
    proxy = RegistryProxy(registry, auth=True, users={"ci": ("secret", frozenset({"lb/base", "lb/m"}))})
    try:
        url, sha = server.add("m.gguf")
        write_yaml(project / "models" / "m.yaml", {"weights": {"url": url, "sha256": sha}})
        project_file = project / "project.yaml"
        write_yaml(project_file, {**_yaml(project_file), "registry": f"{proxy.address}/lb"})
        root = project.parent
        # The caches in the registry on both (GitHub's own cache service is not here); a runner that fits the
        # fixture's cuda base on GitLab (its standard one does not).
        ci = ["ci", provider, "-c", str(project), "--cache", f"registry={proxy.address}/lb/cache"]
        if provider == "gitlab":
            ci += ["--runner-disk", "40GB"]
        for argv in (["generate", "-c", str(project)], ci):
            done = CliRunner().invoke(main, argv)
            assert done.exit_code == 0, done.output
        written = root / (".github/workflows/llama-bake.yml" if provider == "github" else ".gitlab-ci.yml")
        # The base job, the first to push.
        paths = Paths.from_options(project, None)
        planned = job_plan(plan_catalog(paths)[1], ci_options(paths, provider, runner_disk="40GB"))  # type: ignore[arg-type]
        [entry] = planned["bases"]
        outputs = {"runner_disk": str(planned["runner_disk"])}
        job = "base" if provider == "github" else entry["job"]
        shell, job_env = job_shell(provider, yaml.safe_load(written.read_text()), job, entry, outputs)
        script = "set -eu\n" + shell
        assert "set -- --push" in script
        # A push to the default branch: what GitHub makes of the job's PUBLISH expression, GitLab's variables.
        provided = {"PUBLISH": "true"} if provider == "github" else {"CI_COMMIT_BRANCH": "main"}
        env = {**os.environ, **job_env, **provided, "CI_REGISTRY_IMAGE": f"{proxy.address}/lb"}

        def run_file() -> tuple[subprocess.CompletedProcess[str], float]:
            started = time.monotonic()
            done = subprocess.run(
                ["bash", "-c", script], cwd=root, env=env, capture_output=True, text=True, check=False
            )
            return done, time.monotonic() - started

        refused, elapsed = run_file()
        assert refused.returncode == 10, refused.stdout + refused.stderr
        assert f"needs a login to push and the docker config has none for it: run `docker login {proxy.address}`" in (
            refused.stderr
        )
        assert elapsed < 15, f"refused in {elapsed:.1f} s"

        login(docker_config, proxy.address, "ci", "secret")
        scoped, elapsed = run_file()
        assert scoped.returncode == 10, scoped.stdout + scoped.stderr
        assert f"cannot push to {proxy.address}/lb/cache/" in scoped.stderr, "the cache's repositories are checked"
        assert elapsed < 15, f"refused in {elapsed:.1f} s"
        assert server.gets == {}, "no step ran: nothing was downloaded"
        assert proxy.uploads == {}, "nothing was pushed"
    finally:
        proxy.close()


GZIP_TYPES = ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip")
LAYER_TYPES = {
    "zstd": ("application/vnd.oci.image.layer.v1.tar+zstd",),
    "gzip": GZIP_TYPES,
    "uncompressed": ("application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar"),
}


@pytest.mark.parametrize("compression", ["zstd (default)", "gzip", "uncompressed"])
def test_the_pushed_weights_layer_has_the_catalogs_compression(
    project: Path, registry: str, server: WeightsServer, docker_config: Path, compression: str
) -> None:
    """Read from the registry (skopeo inspect --raw): the weights layer has the media type of the catalog's
    compression. With gzip every layer is gzip: the base's layers, which the session's builder already holds
    compressed as an earlier build left them, are compressed again (force-compression); with zstd or
    uncompressed they are pushed as they are."""
    codec = compression.split()[0]
    url, sha = server.add("m.gguf", size=2 * MIB)
    write_yaml(project / "models" / "m.yaml", {"weights": {"url": url, "sha256": sha}})
    if codec != "zstd":
        write_yaml(project / "project.yaml", {**_yaml(project / "project.yaml"), "compression": codec})
    pushed = build(project, f"{registry}/{codec}", "m")
    assert pushed.exit_code == 0, pushed.output
    found = layers(f"{registry}/{codec}/lb/m")
    weights = max(found, key=lambda layer: int(layer["size"]))
    assert weights["mediaType"] in LAYER_TYPES[codec], found
    assert 2 * MIB <= weights["size"] < 2 * MIB + 64 * 1024, "random bytes: stored, not shrunk"
    if codec == "gzip":
        assert all(layer["mediaType"] in GZIP_TYPES for layer in found), found


def test_a_plain_bake_push_of_the_generated_file_pushes_the_catalogs_compression(
    project: Path, registry: str, server: WeightsServer, docker_config: Path, embedded_builder: str
) -> None:
    """The bake file's image output carries the compression, and bake's --push sets push=true on it: a plain
    `docker buildx bake --push`, without llama-bake, pushes the weights as zstd."""
    url, sha = server.add("plain.gguf", size=2 * MIB)
    write_yaml(project / "models" / "plain.yaml", {"weights": {"url": url, "sha256": sha}})
    generated = CliRunner().invoke(main, ["generate", "-c", str(project)])
    assert generated.exit_code == 0, generated.output
    done = subprocess.run(
        ["docker", "buildx", "bake", "--builder", embedded_builder, "--push", "--progress", "plain", "plain"],
        cwd=project.parent,
        env={**os.environ, "REGISTRY": f"{registry}/plain-bake"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    weights = max(layers(f"{registry}/plain-bake/plain"), key=lambda layer: int(layer["size"]))
    assert weights["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
