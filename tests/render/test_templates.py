"""The HCL quoting filter and the Jinja environment (no subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_bake.errors import TemplateError
from llama_bake.plan.ir import BakePlan, Interp, Shape, Var
from llama_bake.render.templates import Header, hcl, hcl_string, render_bake, render_dockerfile


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
