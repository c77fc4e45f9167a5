"""Shared fixtures: small catalogs written to a temporary project, and the real buildx."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHA_A = "a" * 64
SHA_B = "b" * 64
REV = "1" * 40

BASE: dict[str, Any] = {
    "llama_cpp": {"git": "https://github.com/ggml-org/llama.cpp.git", "ref": "b6500"},
    "cuda": "12.8.1",
    "gpu_families": ["ada", "blackwell-consumer"],
}
MODEL: dict[str, Any] = {
    "weights": {"hf": "owner/repo-GGUF", "file": "model-Q4_K_M.gguf", "revision": REV, "sha256": SHA_A},
}

WriteCatalog = Callable[..., Path]


def write_yaml(path: Path, data: Any) -> Path:
    # Escaped output: PyYAML's dumper writes some characters raw (NEL) that its loader reads differently.
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=False)
    assert yaml.safe_load(text) == data, "the test's YAML writer must round-trip exactly"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def write_catalog(tmp_path: Path) -> WriteCatalog:
    """Write a catalog under ``tmp_path/catalog``: ``write_catalog(bases={...}, models={...}, project={...})``."""

    def write(
        bases: dict[str, Any] | None = None,
        models: dict[str, Any] | None = None,
        project: dict[str, Any] | None = None,
    ) -> Path:
        catalog = tmp_path / "catalog"
        for name, data in (bases if bases is not None else {"llama-cpp-cuda": BASE}).items():
            write_yaml(catalog / "bases" / f"{name}.yaml", data)
        for name, data in (models if models is not None else {"model-a": MODEL}).items():
            write_yaml(catalog / "models" / f"{name}.yaml", data)
        if project is not None:
            write_yaml(catalog / "project.yaml", project)
        catalog.mkdir(exist_ok=True)
        return catalog

    return write


def _buildx_available() -> str | None:
    if shutil.which("docker") is None:
        return "the docker client is not on PATH"
    probe = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return "the buildx plugin is missing: run .ci/install-tools.sh"
    return None


@pytest.fixture(scope="session")
def buildx() -> None:
    """Real buildx. A missing tool fails the test: nothing is skipped for it."""
    problem = _buildx_available()
    if problem:
        pytest.fail(f"{problem} (tests marked `bake` and `buildkit` need real buildx)")
