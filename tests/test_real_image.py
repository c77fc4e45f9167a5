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
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_bake.progress import Progress
from tests.conftest import executed, write_yaml
from tests.hub import StandInHub
from tests.images import OciArchive, complete, run_checked, wait_healthy
from tests.standins import cache_dir, debian_layout, llama_cpp_tree
from tests.tinymodel import write_tiny_gguf

pytestmark = [pytest.mark.buildkit, pytest.mark.slow]

TOKEN = "hf_llamaBakeDummyToken0123456789secret"
REVISION = "0123456789abcdef0123456789abcdef01234567"
LLAMA_REF = "pypi-0.3.36"
START_PERIOD_S = 60


@dataclass(frozen=True)
class Built:
    project: Path
    out: Path
    hub_requests: list[tuple[str, str | None]]
    shas: dict[str, str]
    summary: dict[str, Any]


@pytest.fixture(scope="module")
def built(embedded_builder: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    project = tmp_path_factory.mktemp("real")
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
    url_commit = hub.commit("acme/tiny-url", {"tiny-url.gguf": (scratch / "tiny-url.gguf").read_bytes()})
    hub.commit("acme/tiny-gated", {"tiny.gguf": (scratch / "tiny.gguf").read_bytes()}, gated=True)
    shutil.rmtree(scratch)
    endpoint = hub.endpoint

    write_yaml(
        project / "catalog" / "project.yaml",
        {
            "registry": "localhost:5000/real",
            "hf_endpoint": endpoint,
            "image_overrides": {"ubuntu:24.04": f"oci-layout://{debian_layout()}:latest"},
        },
    )
    write_yaml(
        project / "catalog" / "bases" / "llama-cpu.yaml",
        {
            "backend": "cpu",
            "llama_cpp": {"path": str(llama_cpp_tree()), "ref": LLAMA_REF},
            "build_jobs": 2,
            # One CPU variant instead of every x86 one: minutes instead of most of an hour on two cores.
            "cmake_options": {"GGML_CPU_ALL_VARIANTS": "OFF", "GGML_BACKEND_DL": "OFF"},
        },
    )
    health = {"start_period": f"{START_PERIOD_S}s", "interval": "5s", "timeout": "3s", "retries": 3}
    url = f"{endpoint}/acme/tiny-url/resolve/{url_commit}/tiny-url.gguf"
    models: dict[str, dict[str, Any]] = {
        "tiny-file": {"weights": {"path": "weights/tiny.gguf", "sha256": shas["tiny-file"]}},
        "tiny-url": {"weights": {"url": url, "sha256": shas["tiny-url"]}},
    }
    for name, data in models.items():
        write_yaml(
            project / "catalog" / "models" / f"{name}.yaml",
            {**data, "server": {"ctx_size": 512, "jinja": False}, "health": health},
        )
    run_checked(
        ["llama-bake", "add", "hf://acme/tiny-gated/tiny.gguf", "--name", "tiny-gated"], project, {"HF_TOKEN": TOKEN}
    )
    added = project / "catalog" / "models" / "tiny-gated.yaml"
    pinned = yaml.safe_load(added.read_text(encoding="utf-8"))
    assert pinned["weights"]["sha256"] == shas["tiny-gated"]
    assert pinned["weights"]["gated"] is True
    write_yaml(added, {**pinned, "server": {"ctx_size": 512, "jinja": False}, "health": health})

    out = project / "out"
    cache = cache_dir() / "bake-cache"
    run_checked(
        [
            "llama-bake",
            "build",
            "--progress",
            "plain",
            "--cache",
            f"local={cache}",
            "--output",
            f"type=oci,dest={out}/{{target}}.tar",
            "--summary-json",
            str(project / "summary.json"),
        ],
        cwd=project,
        env={"HF_TOKEN": TOKEN},
    )
    summary = json.loads((project / "summary.json").read_text(encoding="utf-8"))
    yield Built(project, out, hub.requests, shas, summary)
    hub.close()


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
        ["llama-bake", "build", "--progress", "plain", "--cache-from", f"type=local,src={cache_dir() / 'bake-cache'}"],
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
    command = ["llama-bake", "build", "--progress", "rawjson", "--cache", f"local={cache_dir() / 'bake-cache'}"]
    result = run_checked(command, cwd=built.project, env={"HF_TOKEN": TOKEN})
    for line in result.stderr.splitlines():
        progress.feed(line)
    ran = executed(progress)
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
