"""The real templates, end to end: a `cpu` base compiled from llama.cpp's source, model images on it, and a
container run from the result.

- The OS image (ubuntu:24.04) is replaced by a Debian root filesystem made with debootstrap (an image override);
  llama.cpp comes from a local directory, the tree vendored in llama-cpp-python's sdist from PyPI.
- Three models cover the three weights sources: a local file, a URL on 127.0.0.1, and a gated Hugging Face repo
  served by a stand-in Hub on 127.0.0.1 (``hf_endpoint``) that demands the token; that model is added with
  `llama-bake add`, which pins it through the Hub's API.
- Images are exported as OCI archives, unpacked with umoci and run with runc.

The base's build cache is exported to (and imported from) a local directory in the test cache, so a second run
compiles nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_bake.buildx.progress import Progress
from llama_bake.plan.ir import SERVER_UID
from tests.conftest import executed, free_port, write_yaml
from tests.early import Build, Chain, EarlyBuild, Setup
from tests.engine import Engine, missing_engine_tools, running_engine
from tests.hub import StandInHub
from tests.images import OciArchive, compiled_again, complete, plain_tar, run_checked, wait_healthy
from tests.standins import (
    CPU_BAKE_CACHE,
    cache_dir,
    debian_layout,
    llama_cpp_tree,
    share_compiler_cache,
)
from tests.tinymodel import write_tiny_gguf, write_tiny_split_gguf

pytestmark = [pytest.mark.buildkit, pytest.mark.slow]

TOKEN = "hf_llamaBakeDummyToken0123456789secret"
REVISION = "0123456789abcdef0123456789abcdef01234567"
LLAMA_REF = "pypi-0.3.36"
START_PERIOD_S = 60
MAX_LAYER_SIZE = 2_500_000  # bytes: the tiny models fit, tiny-big (3.4 MB) is re-split into parts of 1 MB


@dataclass(frozen=True)
class Built:
    project: Path
    out: Path
    hub_requests: list[tuple[str, str | None]]
    shas: dict[str, str]
    summary: dict[str, Any]


def _prepare(setup: Setup) -> tuple[Build, Callable[[], Built]]:
    project = setup.project
    (project / "weights").mkdir()
    # The served models are new every run, so their downloads (and the token check on them) always happen:
    # with the same bytes, BuildKit would answer both from the build cache without asking the server.
    fresh = int.from_bytes(os.urandom(4), "big")
    scratch = project / "scratch"
    scratch.mkdir()
    shas = {
        "tiny-file": write_tiny_gguf(project / "weights" / "tiny.gguf", seed=1),
        "tiny-url": write_tiny_gguf(scratch / "tiny-url.gguf", seed=fresh),
        "tiny-gated": write_tiny_gguf(scratch / "tiny.gguf", seed=fresh + 1),
    }
    # A stand-in Hub: the URL model is a plain download from it; the gated one is added with `llama-bake add`,
    # which pins its commit and sha256 through the Hub's API (with the token), as a user would.
    hub = StandInHub(token=TOKEN)
    setup.closing.callback(hub.close)  # the fetch-delivery model reads its parts from it when a test runs the image
    url_commit = hub.commit("acme/tiny-url", {"tiny-url.gguf": (scratch / "tiny-url.gguf").read_bytes()})
    hub.commit("acme/tiny-gated", {"tiny.gguf": (scratch / "tiny.gguf").read_bytes()}, gated=True)
    # A split model (three parts, as llama.cpp's tools name them): from local files, baked; and from the Hub,
    # fetched by the container at start.
    local_parts = write_tiny_split_gguf(project / "weights" / "tiny-split.gguf", seed=2)
    hub_parts = write_tiny_split_gguf(scratch / "tiny-split.gguf", seed=fresh + 2)
    split_commit = hub.commit("acme/tiny-split", {p.name: p.read_bytes() for p, _ in hub_parts})
    # The baked parts' checksums (the Hub's parts have the same names and other bytes: the catalog holds theirs).
    shas |= {p.name: sha for p, sha in local_parts}
    hub_sizes = {p.name: p.stat().st_size for p, _ in hub_parts}
    # A larger model, over the project's (tiny) layer limit: re-split in the build by the real llama-gguf-split.
    shas["tiny-big"] = write_tiny_gguf(project / "weights" / "tiny-big.gguf", seed=3, n_ff=2048)
    shutil.rmtree(scratch)
    endpoint = hub.endpoint

    write_yaml(
        project / "catalog" / "project.yaml",
        {
            "registry": "localhost:5000/real",
            "hf_endpoint": endpoint,
            "image_overrides": {"ubuntu:24.04": f"oci-layout://{debian_layout()}:latest"},
            "max_layer_size": MAX_LAYER_SIZE,
            "split_tool": {"path": str(llama_cpp_tree()), "ref": LLAMA_REF},
        },
    )
    write_yaml(
        project / "catalog" / "bases" / "llama-cpu.yaml",
        {
            "backend": "cpu",
            "llama_cpp": {"path": str(llama_cpp_tree()), "ref": LLAMA_REF},
            "build_jobs": 2,
            # One CPU variant instead of every x86 one: minutes instead of most of an hour on two cores. And no
            # -O3 (Release's flags cut to -DNDEBUG), which halves the compile: the tests serve a tiny model on
            # the CPU, where unoptimised code is fast enough; the template's CMake line is otherwise the same.
            # The same options as the CUDA tier's base, whose compiler cache starts this one's (below).
            "cmake_options": {
                "GGML_CPU_ALL_VARIANTS": "OFF",
                "CMAKE_C_FLAGS_RELEASE": "-DNDEBUG",
                "CMAKE_CXX_FLAGS_RELEASE": "-DNDEBUG",
            },
        },
    )
    health = {"start_period": f"{START_PERIOD_S}s", "interval": "5s", "timeout": "3s", "retries": 3}
    url = f"{endpoint}/acme/tiny-url/resolve/{url_commit}/tiny-url.gguf"
    models: dict[str, dict[str, Any]] = {
        "tiny-file": {"weights": {"path": "weights/tiny.gguf", "sha256": shas["tiny-file"]}},
        "tiny-url": {"weights": {"url": url, "sha256": shas["tiny-url"]}},
        "tiny-big": {
            "weights": {
                "path": "weights/tiny-big.gguf",
                "sha256": shas["tiny-big"],
                "size": (project / "weights" / "tiny-big.gguf").stat().st_size,
            },
        },
        "tiny-split": {
            "weights": {"parts": [{"path": f"weights/{p.name}", "sha256": sha} for p, sha in local_parts]},
        },
        "tiny-split-fetch": {
            "weights": {
                "hf": "acme/tiny-split",
                "revision": split_commit,
                "parts": [{"file": p.name, "sha256": sha, "size": hub_sizes[p.name]} for p, sha in hub_parts],
            },
            "delivery": "fetch",
        },
    }
    for name, data in models.items():
        write_yaml(
            project / "catalog" / "models" / f"{name}.yaml",
            {**data, "server": {"ctx_size": 512, "jinja": False}, "health": health},
        )
    run_checked(
        ["llama-bake", "add", "hf://acme/tiny-gated/tiny.gguf", "--name", "tiny-gated"],
        project,
        {"HF_TOKEN": TOKEN},
        base_env=setup.env,
    )
    added = project / "catalog" / "models" / "tiny-gated.yaml"
    pinned = yaml.safe_load(added.read_text(encoding="utf-8"))
    assert pinned["weights"]["sha256"] == shas["tiny-gated"]
    assert pinned["weights"]["gated"] is True
    write_yaml(added, {**pinned, "server": {"ctx_size": 512, "jinja": False}, "health": health})

    out = project / "out"
    cache = cache_dir() / CPU_BAKE_CACHE
    # The CUDA tier (run before this one) compiled llama.cpp's C and C++ sources with these flags: its compiler
    # cache starts this base's, so that only the files a CPU build alone has compile here (all do when this
    # tier runs alone). The compile is still the template's, in this base's own cache mount.
    share_compiler_cache(cache, "llama-cpu")
    argv = ["llama-bake", "build", "--progress", "plain", "--cache", f"local={cache}"]
    argv += ["--output", f"type=oci,dest={out}/{{target}}.tar", "--summary-json", str(project / "summary.json")]

    def read() -> Built:
        summary = json.loads((project / "summary.json").read_text(encoding="utf-8"))
        return Built(project, out, hub.requests, shas, summary)

    return Build(argv, project, project / "build.log", {"HF_TOKEN": TOKEN}), read


# The build starts with the session (tests/early.py), after the CUDA tier's, whose compiler cache starts this one's.
EARLY_BUILD = EarlyBuild("cpu", 1, _prepare)


@pytest.fixture(scope="module")
def built(embedded_builder: str, early_builds: Chain | None) -> Built:
    assert early_builds is not None, "the session starts this tier's build"
    return early_builds.wait(EARLY_BUILD)


# --- the tests ----------------------------------------------------------------------------------


def test_image_serves_health_and_completions_within_the_start_period(built: Built, run_image: Any) -> None:
    container = run_image(built.out / "tiny-file.tar")
    took = wait_healthy(container, START_PERIOD_S)
    assert took < START_PERIOD_S
    # The image's own health check, run inside the container, agrees.
    check = container.exec(
        "sh", "-c", OciArchive(built.out / "tiny-file.tar").config()["config"]["Healthcheck"]["Test"][1]
    )
    assert check.returncode == 0, check.stderr
    answer = complete(container, "hello llama")
    assert answer["tokens_predicted"] > 0
    assert answer["content"]
    # The catalog's server settings reached llama-server through LLAMA_ARG_*: ctx_size 512, where the model's
    # own context is 1024.
    with urllib.request.urlopen(container.url("/props"), timeout=10) as response:
        props = json.loads(response.read())
    assert props["default_generation_settings"]["n_ctx"] == 512


def test_the_image_serves_as_its_non_root_user_on_a_read_only_root_filesystem(built: Built, run_image: Any) -> None:
    """llama-server runs as the fixed non-root user, on a read-only root filesystem with tmpfs on /tmp and the
    cache (as Compose and Kubernetes run it; every image the tests run with runc runs so, a fetched model too)."""
    assert OciArchive(built.out / "tiny-file.tar").config()["config"]["User"] == f"{SERVER_UID}:{SERVER_UID}"
    container = run_image(built.out / "tiny-file.tar")
    wait_healthy(container, START_PERIOD_S)
    status = container.exec("cat", "/proc/1/status", "/proc/1/comm", "/proc/1/mountinfo").stdout.splitlines()
    uids = next(line.split()[1:] for line in status if line.startswith("Uid:"))
    assert uids == [str(SERVER_UID)] * 4, "real, effective, saved and filesystem UID"
    assert "llama-server" in status  # the entrypoint exec'd it: PID 1 is the server
    root = next(line.split() for line in status if len(line.split()) > 5 and line.split()[4] == "/")
    assert "ro" in root[5].split(","), root
    refused = container.exec("sh", "-c", "touch /models/x")
    assert refused.returncode != 0
    assert "Read-only file system" in refused.stderr
    assert complete(container, "hello llama")["tokens_predicted"] > 0


@pytest.mark.parametrize("model", ["tiny-split", "tiny-split-fetch"])
def test_a_split_model_is_served_from_its_first_part(built: Built, run_image: Any, model: str) -> None:
    """Baked: each part is a layer of its own, verified, side by side in /models; fetched: every part is
    downloaded and verified at start. llama-server loads the first part and finds the others."""
    archive = OciArchive(built.out / f"{model}.tar")
    names = [f"tiny-split-{n:05d}-of-00003.gguf" for n in (1, 2, 3)]
    if model == "tiny-split":
        per_layer = [[n for n, _ in _files_of(archive, layer)] for layer in archive.manifest()["layers"]]
        assert all([f"models/{n}"] in per_layer for n in names), f"each part alone in a layer: {per_layer}"
        files = dict(archive.layer_files())
        assert [hashlib.sha256(files[f"models/{n}"]).hexdigest() for n in names] == [built.shas[n] for n in names]
    env = dict(e.split("=", 1) for e in archive.config()["config"]["Env"])
    assert env.get("LLAMA_ARG_MODEL", f"/models/{names[0]}") == f"/models/{names[0]}"
    container = run_image(built.out / f"{model}.tar")
    wait_healthy(container, START_PERIOD_S)
    assert complete(container, "hello llama")["tokens_predicted"] > 0
    if model == "tiny-split-fetch":
        fetched = [p for p, auth in built.hub_requests if "/acme/tiny-split/" in p]
        assert sorted(p.rsplit("/", 1)[1] for p in fetched) == names, "each part fetched once, at start"


def test_a_file_over_the_layer_limit_is_re_split_by_llama_gguf_split_and_served(built: Built, run_image: Any) -> None:
    archive = OciArchive(built.out / "tiny-big.tar")
    per_layer = [[n for n, _ in _files_of(archive, layer)] for layer in archive.manifest()["layers"]]
    parts = [files for files in per_layer if any(f.startswith("models/") for f in files)]
    count = len(parts)
    assert count > 1
    assert parts == [[f"models/tiny-big-{n:05d}-of-{count:05d}.gguf"] for n in range(1, count + 1)], per_layer
    layers = archive.manifest()["layers"]
    sizes = [layer["size"] for layer, files in zip(layers, per_layer, strict=True) if files in parts]
    assert all(size <= MAX_LAYER_SIZE for size in sizes), sizes
    env = dict(e.split("=", 1) for e in archive.config()["config"]["Env"])
    assert env["LLAMA_ARG_MODEL"] == "/models/tiny-big-00001-of-*.gguf"
    container = run_image(built.out / "tiny-big.tar")
    wait_healthy(container, START_PERIOD_S)
    assert complete(container, "hello llama")["tokens_predicted"] > 0


def test_the_re_split_run_again_without_the_cache_gives_the_same_weight_layers(
    built: Built, embedded_builder: str, tmp_path: Path
) -> None:
    """llama-gguf-split run twice more, for real: its stage excluded from the cache (bake's `no-cache-filter`, in
    a second bake file: buildx 0.36.1 drops it from `--set`). Each run's weight layers have the digests of the
    first build's. Only the model's own exported cache is imported, so the tool is not compiled again; the base
    is another image (the Debian stand-in): the weight layers do not depend on it."""
    expected = _weight_layers(OciArchive(built.out / "tiny-big.tar"))
    assert len(expected) > 1
    cache = cache_dir() / CPU_BAKE_CACHE
    override = tmp_path / "no-cache.json"
    override.write_text(json.dumps({"target": {"tiny-big": {"no-cache-filter": ["resplit"]}}}))
    layers = []
    for run in (1, 2):
        out = tmp_path / f"run-{run}"
        out.mkdir()
        # fmt: off
        command = [
            "docker", "buildx", "bake", "--builder", embedded_builder, "--progress", "rawjson",
            "--file", "docker-bake.hcl", "--file", str(override),
            "--set", f"tiny-big.contexts.base=oci-layout://{debian_layout()}:latest",
            "--set", f"tiny-big.cache-from=type=local,src={cache / 'tiny-big'}", "--allow", f"fs.read={cache}",
            "--set", f"tiny-big.output=type=oci,dest={out / 'tiny-big.tar'}", "--allow", f"fs.write={out}",
            "tiny-big",
        ]
        # fmt: on
        result = run_checked(command, cwd=built.project)
        progress = Progress()
        progress.sole = "tiny-big"
        for line in result.stderr.splitlines():
            progress.feed(line)
        resplit = [v for v in progress.vertices.values() if v.name.startswith("[tiny-big resplit ")]
        assert resplit, progress.executed_steps()
        assert not any(v.cached for v in resplit), f"run {run}: the re-split came from the cache"
        assert any("-of-" in line for v in resplit for line in v.log), f"run {run}: llama-gguf-split wrote no part"
        ran = executed(progress)
        assert not any("cmake" in step for step in ran), f"run {run}: nothing was compiled: {ran}"
        archive = OciArchive(out / "tiny-big.tar")
        assert _weight_layers(archive) == expected, f"run {run}: the weight layers of the first build"
        layers.append([layer["digest"] for layer in archive.manifest()["layers"]])
    assert layers[1] == layers[0], "two uncached re-splits give the same image layers"


def _weight_layers(archive: OciArchive) -> list[str]:
    """The digests of the layers that hold a part of the weights, in order."""
    return [
        layer["digest"]
        for layer in archive.manifest()["layers"]
        if any(name.startswith("models/") for name, _ in _files_of(archive, layer))
    ]


def _files_of(archive: OciArchive, layer: dict[str, Any]) -> list[tuple[str, bytes]]:
    data = plain_tar(archive.blob(layer["digest"]), layer["mediaType"])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, b"") for m in tar.getmembers() if m.isfile()]


def test_image_config_has_entrypoint_health_check_labels_and_env(built: Built) -> None:
    config = OciArchive(built.out / "tiny-file.tar").config()["config"]
    assert config["Entrypoint"] == ["llama-bake-serve"]
    health = config["Healthcheck"]
    assert health["Test"][0] == "CMD-SHELL"
    assert "/health" in health["Test"][1]
    assert health["StartPeriod"] == START_PERIOD_S * 10**9
    assert health["Interval"] == 5 * 10**9
    assert health["Retries"] == 3
    labels = config["Labels"]
    # The model inherits the base's labels: which llama.cpp it runs is on the image users pull.
    assert labels["io.llama-bake.llama-cpp.ref"] == LLAMA_REF
    assert labels["io.llama-bake.backend"] == "cpu"
    assert labels["io.llama-bake.base"] == "llama-cpu"
    assert labels["io.llama-bake.model.sha256"] == built.shas["tiny-file"]
    # The weights' license: unknown for a local file; the stand-in Hub's model card names the gated one's.
    assert labels["org.opencontainers.image.licenses"] == "NOASSERTION"
    gated = OciArchive(built.out / "tiny-gated.tar").config()["config"]["Labels"]
    assert gated["org.opencontainers.image.licenses"] == "apache-2.0"
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["LLAMA_ARG_MODEL"] == "/models/tiny.gguf"
    assert env["LLAMA_ARG_CTX_SIZE"] == "512"
    assert env["LLAMA_ARG_JINJA"] == "false"
    assert env["LLAMA_BAKE_LLAMA_CPP_REF"] == LLAMA_REF


@pytest.mark.parametrize("model", ["tiny-file", "tiny-url", "tiny-gated"])
def test_weights_in_the_image_match_the_catalog_checksum(built: Built, model: str) -> None:
    files = dict(OciArchive(built.out / f"{model}.tar").layer_files())
    name = "models/tiny-url.gguf" if model == "tiny-url" else "models/tiny.gguf"
    assert hashlib.sha256(files[name]).hexdigest() == built.shas[model]
    if model == "tiny-file":
        assert files["models/SHA256SUMS"].decode() == f"{built.shas[model]}  /models/tiny.gguf\n"


def test_the_token_reaches_only_the_gated_download(built: Built) -> None:
    gated = [auth for path, auth in built.hub_requests if "/acme/tiny-gated/" in path]
    others = [auth for path, auth in built.hub_requests if "/acme/tiny-gated/" not in path]
    assert gated
    assert set(gated) == {f"Bearer {TOKEN}"}
    assert others
    assert set(others) == {None}


def test_the_token_is_in_no_layer_config_or_generated_file(built: Built) -> None:
    token = TOKEN.encode()
    for model in ("tiny-file", "tiny-url", "tiny-gated"):
        archive = OciArchive(built.out / f"{model}.tar")
        for name, data in archive.files.items():
            assert token not in data, f"{model}: {name}"
        for name, data in archive.layer_files():
            assert token not in data, f"{model}: layer file {name}"
    for path in built.project.rglob("*"):
        if path.is_file() and "out" not in path.relative_to(built.project).parts:
            assert token not in path.read_bytes(), path


def test_a_local_file_with_the_wrong_checksum_fails_the_build_clearly(built: Built, tmp_path: Path) -> None:
    project = tmp_path / "p"
    shutil.copytree(built.project / "catalog", project / "catalog")
    shutil.copytree(built.project / "weights", project / "weights")
    for model in ("tiny-url", "tiny-gated"):
        (project / "catalog" / "models" / f"{model}.yaml").unlink()
    model_file = project / "catalog" / "models" / "tiny-file.yaml"
    model_file.write_text(model_file.read_text().replace(built.shas["tiny-file"], "f" * 64))
    result = subprocess.run(
        # The fixture's per-target caches, imported only: a builder reuses no step it only imported in another build.
        [
            "llama-bake",
            "build",
            "--progress",
            "plain",
            "--cache",
            f"local={cache_dir() / CPU_BAKE_CACHE}",
            "--no-cache-export",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 6, result.stderr
    assert "tiny-file" in result.stderr
    assert f"checksum mismatch for tiny.gguf: expected {'f' * 64}, got {built.shas['tiny-file']}" in result.stderr


def test_a_second_build_compiles_nothing(built: Built) -> None:
    """The same command again: every step comes from the cache (the base's compile and the models' downloads),
    except that BuildKit checks an http(s) ADD source again on every build (a request to the server; with
    --checksum the layer stays the same)."""
    progress = Progress()
    command = ["llama-bake", "build", "--progress", "rawjson", "--cache", f"local={cache_dir() / CPU_BAKE_CACHE}"]
    result = run_checked(command, cwd=built.project, env={"HF_TOKEN": TOKEN})
    for line in result.stderr.splitlines():
        progress.feed(line)
    ran = compiled_again(executed(progress))
    assert all(step.startswith("ADD --link") and "http://127.0.0.1" in step for step in ran), ran
    cached = [v.step for v in progress.vertices.values() if v.is_step and v.cached]
    assert any("cmake" in step for step in cached)


@pytest.mark.parametrize("subdir", [None, "pkg-1.0/vendor/llama.cpp"])
def test_llama_cpp_from_a_source_archive(embedded_builder: str, tmp_path: Path, subdir: str | None) -> None:
    """An archive source, unpacked by the real base template: its only top-level directory, or `subdir`.
    The tree is a stand-in whose `llama-server` is a shell script, so this takes seconds."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.14)\nproject(fake NONE)\n"
        "add_custom_target(llama-server ALL COMMAND ${CMAKE_COMMAND} -E make_directory bin COMMAND "
        "${CMAKE_COMMAND} -E copy ${CMAKE_SOURCE_DIR}/server.sh bin/llama-server)\n",
        encoding="utf-8",
    )
    (tree / "server.sh").write_text("#!/bin/sh\necho fake llama-server\n", encoding="utf-8")
    project = tmp_path / "project"
    (project / "vendor").mkdir(parents=True)
    with tarfile.open(project / "vendor" / "llama-src.tar.gz", "w:gz") as archive:
        archive.add(tree, arcname=subdir or "llama.cpp-fake")
        if subdir:
            archive.addfile(tarfile.TarInfo("pkg-1.0/README"), io.BytesIO(b""))
    write_yaml(
        project / "catalog" / "project.yaml",
        {"image_overrides": {"ubuntu:24.04": f"oci-layout://{debian_layout()}:latest"}},
    )
    source: dict[str, Any] = {"path": "vendor/llama-src.tar.gz", "ref": "fake-1"}
    if subdir:
        source["subdir"] = subdir
    write_yaml(project / "catalog" / "bases" / "fake.yaml", {"backend": "cpu", "llama_cpp": source})
    write_yaml(
        project / "catalog" / "models" / "m.yaml",
        {"weights": {"url": "https://models.invalid/m.gguf", "sha256": "0" * 64}},
    )
    out = tmp_path / "fake.tar"
    run_checked(
        ["llama-bake", "build", "--progress", "plain", "--output", f"type=oci,dest={out}", "fake"],
        cwd=project,
    )
    files = dict(OciArchive(out).layer_files())
    assert files["app/llama-server"] == b"#!/bin/sh\necho fake llama-server\n"


# --- on a real Docker Engine: smoke and Compose ---------------------------------------------------------


@pytest.fixture(scope="module")
def engine_with_image(built: Built) -> Iterator[Engine]:
    """A Docker Engine (classic image store: what most installs have) holding the real tiny-file image, under
    the name the catalog gives it."""
    missing = missing_engine_tools()
    if missing:
        pytest.fail(f"the engine tests need {', '.join(missing)}: run .ci/install-tools.sh")
    with running_engine("classic") as engine, tempfile.TemporaryDirectory() as tmp:
        # The classic store loads docker archives only: skopeo converts the build's OCI archive, naming the image.
        # A docker archive cannot list zstd layers (the default compression): they become gzip on the way.
        image = "localhost:5000/real/tiny-file:latest"
        archive = Path(tmp) / "tiny-file.docker.tar"
        gzipped = Path(tmp) / "gzip-layout"
        gzip_copy = ["skopeo", "copy", "--quiet", "--dest-compress", "--dest-compress-format", "gzip"]
        run_checked([*gzip_copy, f"oci-archive:{built.out / 'tiny-file.tar'}", f"oci:{gzipped}:image"], built.project)
        run_checked(
            ["skopeo", "copy", "--quiet", f"oci:{gzipped}:image", f"docker-archive:{archive}:{image}"], built.project
        )
        engine.docker("load", "--input", str(archive))
        yield engine


def test_smoke_runs_the_image_on_the_engine_and_reports_tokens_per_second(
    built: Built, engine_with_image: Engine
) -> None:
    env = {**engine_with_image.env, "LLAMA_BAKE_BUILDER": "none"}
    done = _run_code(
        ["llama-bake", "smoke", "--cpu", "--host-network", "--timeout", "120", "tiny-file"], built.project, env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.strip()
    assert line.startswith("ok   tiny-file (localhost:5000/real/tiny-file:latest, CPU): healthy in "), line
    assert re.search(r"\d+ tokens, [\d.]+ tokens/s", line), line
    leftovers = engine_with_image.docker("ps", "-aq", "--filter", "label=io.llama-bake.smoke").stdout
    assert leftovers.strip() == "", "smoke removes its containers"


def test_smoke_gives_the_model_its_api_key_and_checks_that_the_key_is_required(
    built: Built, engine_with_image: Engine
) -> None:
    """A model whose key is read from a variable: smoke starts it with the key (LLAMA_API_KEY, through an env file),
    sees a completion refused without it (401) and answered with it; without the variable it refuses to start."""
    model = built.project / "catalog" / "models" / "tiny-file.yaml"
    original = model.read_text()
    write_yaml(model, {**yaml.safe_load(original), "api_key": {"env": "LLAMA_BAKE_TEST_API_KEY"}})
    try:
        env = {**engine_with_image.env, "LLAMA_BAKE_BUILDER": "none", "LLAMA_BAKE_TEST_API_KEY": API_KEY}
        argv = ["llama-bake", "smoke", "--cpu", "--host-network", "--timeout", "120", "tiny-file"]
        done = _run_code(argv, built.project, env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("ok   tiny-file"), done.stdout
        inspect = engine_with_image.docker("ps", "-aq", "--filter", "label=io.llama-bake.smoke").stdout
        assert inspect.strip() == ""
        env.pop("LLAMA_BAKE_TEST_API_KEY")
        unset = _run_code(argv, built.project, env)
        assert unset.returncode == 2, unset.stdout + unset.stderr
        assert "the environment variable LLAMA_BAKE_TEST_API_KEY, which is not set" in unset.stderr
    finally:
        model.write_text(original)


def test_smoke_fails_with_a_non_zero_exit_when_the_image_does_not_serve(
    built: Built, engine_with_image: Engine
) -> None:
    """An image whose server cannot start (its weights replaced by a file that is not a GGUF)."""
    broken = built.project / "broken"
    broken.mkdir(exist_ok=True)
    (broken / "Dockerfile").write_text(
        "FROM localhost:5000/real/tiny-file:latest\nUSER root\nRUN echo not-a-gguf > /models/tiny.gguf\n"
        f"USER {SERVER_UID}:{SERVER_UID}\n",
        encoding="utf-8",
    )
    engine_with_image.docker(
        "buildx", "build", "--network", "host", "--tag", "localhost:5000/real/tiny-file:broken", str(broken)
    )
    env = {**engine_with_image.env, "LLAMA_BAKE_BUILDER": "none"}
    argv = ["llama-bake", "smoke", "--cpu", "--host-network", "--timeout", "60", "--var", "TAG=broken", "tiny-file"]
    done = _run_code(argv, built.project, env)
    assert done.returncode == 7, done.stdout + done.stderr
    assert done.stdout.startswith("FAIL tiny-file (localhost:5000/real/tiny-file:broken, CPU): the container exited")
    assert "1 of 1 image(s) failed: tiny-file" in done.stderr


def test_compose_up_of_a_network_model_refuses_a_completion_without_its_key_and_answers_with_it(
    built: Built, engine_with_image: Engine
) -> None:
    """`docker compose up` of what `llama-bake compose` wrote, on the image the build made, for a model exposed to
    the network with a key file: its port on every interface (the others on 127.0.0.1), the key a Compose secret
    (a bind mount, which the read-only container takes) that llama-server reads; without the key a completion is
    refused (401), with it answered. The container runs as the non-root user on a read-only root filesystem and
    writes to its cache volume. The test's own override puts the service on the host network (this engine has no
    bridge) on a free port of 127.0.0.1."""
    models = built.project / "catalog" / "models"
    others = sorted(path.stem for path in models.glob("*.yaml") if path.stem != "tiny-file")
    originals = {name: (models / f"{name}.yaml").read_text() for name in ("tiny-file", *others)}
    for offset, name in enumerate(others, start=1):  # several models on port 8080: Compose needs distinct host ports
        data = yaml.safe_load(originals[name])
        write_yaml(models / f"{name}.yaml", {**data, "compose": {"host_port": 18080 + offset}})
    tiny = yaml.safe_load(originals["tiny-file"])
    write_yaml(models / "tiny-file.yaml", {**tiny, "access": "network", "api_key": {"file": "secrets/tiny.key"}})
    (built.project / "secrets").mkdir(exist_ok=True)
    key_file = built.project / "secrets" / "tiny.key"
    key_file.write_text(f"# the test's key\n{API_KEY}\n", encoding="utf-8")
    key_file.chmod(0o644)  # the container's user reads the bind mount
    try:
        run_checked(["llama-bake", "compose"], built.project)
    finally:
        for name, text in originals.items():
            (models / f"{name}.yaml").write_text(text)
    written = yaml.safe_load((built.project / "compose.yaml").read_text())
    assert written["services"]["tiny-file"]["ports"] == ["8080:8080"]
    assert all(written["services"][name]["ports"][0].startswith("127.0.0.1:") for name in others)
    assert API_KEY not in (built.project / "compose.yaml").read_text()
    port = free_port()
    override = built.project / "compose.test.yaml"
    services: dict[str, dict[str, Any]] = {
        name: {"network_mode": "host", "ports": [], "pull_policy": "never"}
        for name in ("llama-cpu", "tiny-file", *others)
    }
    services["tiny-file"]["environment"] = {"LLAMA_ARG_HOST": "127.0.0.1", "LLAMA_ARG_PORT": str(port)}
    override.write_text(yaml.safe_dump({"services": services}).replace("ports: []", "ports: !reset []"))
    compose = ["docker", "compose", "-f", "compose.yaml", "-f", override.name, "--project-name", "lbtest"]
    env = engine_with_image.env
    try:
        up = _run_code([*compose, "up", "--detach", "--no-build", "tiny-file"], built.project, env)
        assert up.returncode == 0, up.stdout + up.stderr
        deadline = time.monotonic() + START_PERIOD_S
        while _status(f"http://127.0.0.1:{port}/health") != 200:  # /health needs no key
            if time.monotonic() > deadline:
                logs = _run_code([*compose, "logs"], built.project, env).stdout
                pytest.fail(f"/health not 200 within {START_PERIOD_S}s:\n{logs[-3000:]}")
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/completion"
        assert _status(url, {}) == 401
        assert _status(url, {"Authorization": "Bearer not-the-key"}) == 401
        assert _status(url, {"Authorization": f"Bearer {API_KEY}"}) == 200
        probe = "id -u; touch /var/cache/llama/written && echo cache-writable; touch /app/x"
        inside = _run_code([*compose, "exec", "-T", "tiny-file", "sh", "-c", probe], built.project, env)
        assert inside.stdout.split() == [str(SERVER_UID), "cache-writable"], inside.stdout + inside.stderr
        assert "Read-only file system" in inside.stderr
    finally:
        _run_code([*compose, "down", "--volumes"], built.project, env)


API_KEY = "llama-bake-test-key-0123456789"


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a GET (``headers`` given: a POST of a short completion); 0 when nothing answers."""
    body = None if headers is None else json.dumps({"prompt": "Hello", "n_predict": 4}).encode()
    request = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def _run_code(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, env={**os.environ, **env})
