"""The wheel carries the templates, so llama-bake works installed outside this repository."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.tools
def test_wheel_contains_the_repository_templates(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("llama_bake-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = {
            "docker-bake.hcl.j2": archive.read("llama_bake/_templates/docker-bake.hcl.j2"),
            "templates/base.Dockerfile.j2": archive.read("llama_bake/_templates/templates/base.Dockerfile.j2"),
            "templates/model.Dockerfile.j2": archive.read("llama_bake/_templates/templates/model.Dockerfile.j2"),
        }
    for name, content in packaged.items():
        assert content == (REPO / name).read_bytes(), name
