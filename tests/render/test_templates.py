"""The HCL quoting filter and the Jinja environment (no subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_bake.errors import TemplateError
from llama_bake.plan.ir import BakePlan, Interp, Shape, Var
from llama_bake.render.templates import Header, hcl, hcl_string, render_bake, render_dockerfile
from tests.conftest import WriteCatalog


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("a\nb\r\tc", '"a\\nb\\r\\tc"'),
        ("${x}", '"$${x}"'),
        ("%{if}", '"%%{if}"'),
        ("$${x}", '"$$${x}"'),
        ("$x and {y}", '"$x and {y}"'),
        ("\x00\x1b\x7f\x85", '"\\u0000\\u001B\\u007F\\u0085"'),
        ("ünïcödé ✓ 🦙", '"ünïcödé ✓ 🦙"'),
        ("{#", '"{#"'),
    ],
)
def test_hcl_string_uses_only_the_escapes_hcl_accepts(value: str, expected: str) -> None:
    assert hcl_string(value) == expected


def test_hcl_string_normalises_to_nfc_like_hcl_does() -> None:
    assert hcl_string("e\u0301") == '"\u00e9"'


def test_lone_surrogates_are_refused_with_a_clear_error() -> None:
    with pytest.raises(TemplateError, match="surrogate"):
        hcl_string("\ud800")


def test_hcl_filter_writes_lists_numbers_and_interpolations() -> None:
    assert hcl(["a", "b$"]) == '["a", "b$"]'
    assert hcl(3) == "3"
    assert hcl(True) == "true"
    assert hcl(Interp((Var("REGISTRY"), "/m:${x}", Var("TAG")))) == '"${REGISTRY}/m:$${x}${TAG}"'


def test_a_template_using_a_value_the_plan_lacks_is_a_template_error_naming_the_file(tmp_path: Path) -> None:
    """StrictUndefined: a typo in a project's template stops the render with our error, never renders as ''."""
    (tmp_path / "docker-bake.hcl.j2").write_text("{{ nothing.here }}", encoding="utf-8")
    plan = BakePlan(variables=(), shapes=(), targets=(), groups=())
    with pytest.raises(TemplateError, match=r"docker-bake\.hcl\.j2: 'nothing' is undefined \(a template uses a value"):
        render_bake(plan, Header("t", "c"), tmp_path)


def test_project_templates_override_packaged_ones(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "model.Dockerfile.j2").write_text("FROM base\n# custom {{ shape.delivery }}\n", encoding="utf-8")
    text = render_dockerfile(Shape(kind="model", delivery="baked"), tmp_path)
    assert text == "FROM base\n# custom baked\n"


def test_packaged_templates_are_used_outside_the_repository(tmp_path: Path) -> None:
    text = render_dockerfile(Shape(kind="base", backend="cpu"), tmp_path)
    assert "FROM ${BUILD_IMAGE} AS build" in text
    assert "build-essential" in text


@pytest.mark.parametrize("source", ["url", "path"])
def test_a_re_split_holds_no_stage_of_the_whole_file(source: str, write_catalog: WriteCatalog, tmp_path: Path) -> None:
    """The whole weights file is one copy fewer on the builder's disk: a remote one is downloaded, checked and
    deleted inside the re-split step; a local one is read from its named context."""
    from llama_bake.project import Paths, compile_catalog

    (tmp_path / "big.gguf").write_bytes(b"")
    where = {"url": "https://example.invalid/big.gguf"} if source == "url" else {"path": str(tmp_path / "big.gguf")}
    model = {"weights": {**where, "sha256": "a" * 64, "size": 3_000_000_000}}
    catalog = write_catalog(models={"big": model}, project={"max_layer_size": "1GB"})
    plan = compile_catalog(Paths.from_options(catalog, None)).plan
    text = render_dockerfile(plan.target("big").shape, tmp_path)
    assert "FROM gguf-split AS resplit" in text
    assert "weights-whole" not in text
    assert text.count("\nFROM ") == 3, "gguf-split, resplit and the image: no stage of its own for the file"
    if source == "url":
        assert "ADD " not in text
        assert text.index('curl -fsSL --retry 3 -o "$whole"') < text.index("llama-gguf-split --split")
        assert text.index("llama-gguf-split --split") < text.index("rm -rf /download")
    else:
        assert "RUN --mount=type=bind,from=weights-file,target=/in" in text
        assert "/download" not in text
