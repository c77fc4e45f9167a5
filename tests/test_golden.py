"""Golden tests: the rendered HCL equals a reviewed file. Regenerate after a deliberate change with
``LLAMA_BAKE_UPDATE_GOLDEN=1 pytest tests/test_golden.py`` and review the diff."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from llama_bake import pipeline
from tests.conftest import REPO

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "catalog").is_dir())


def render_case(case: str, tmp_path: Path) -> str:
    shutil.copytree(GOLDEN / case / "catalog", tmp_path / "catalog")
    paths = pipeline.Paths.from_options(tmp_path / "catalog", None)
    return pipeline.compile_catalog(paths).text


@pytest.mark.parametrize("case", CASES)
def test_rendered_hcl_equals_the_reviewed_file(case: str, tmp_path: Path) -> None:
    text = render_case(case, tmp_path)
    expected = GOLDEN / case / "docker-bake.hcl"
    if os.environ.get("LLAMA_BAKE_UPDATE_GOLDEN") == "1":
        expected.write_text(text, encoding="utf-8")
    assert text == expected.read_text(encoding="utf-8")


def test_the_repository_bake_file_is_fresh() -> None:
    """The committed docker-bake.hcl is what the shipped catalog gives (`llama-bake generate --check`)."""
    paths = pipeline.Paths.from_options(REPO / "catalog", REPO / "docker-bake.hcl")
    pipeline.generate(paths, check=True)


def test_families_case_has_the_cmake_architectures_of_each_family(tmp_path: Path) -> None:
    text = render_case("families", tmp_path)
    for arch in (
        "70-real",
        "75-real",
        "80-real",
        "86-real",
        "89-real",
        "90-real",
        "100-real",
        "120a-real",
        "121a-real",
    ):
        assert f"-DCMAKE_CUDA_ARCHITECTURES={arch} " in text
