"""Access is explicit: local (127.0.0.1) by default, and a model reachable from the network has an API key source
(a variable or a file, never the key itself); `validate` names the file, the line, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_bake.catalog.loader import load_catalog
from llama_bake.errors import CatalogError
from llama_bake.project import Paths, plan_catalog
from tests.conftest import MODEL, WriteCatalog


def problems_of(catalog: Path) -> list[str]:
    with pytest.raises(CatalogError) as exc:
        load_catalog(catalog)
    return exc.value.problems


def test_a_model_is_local_by_default_and_has_no_key(write_catalog: WriteCatalog) -> None:
    catalog = load_catalog(write_catalog())
    model = catalog.models[0]
    assert catalog.access_of(model) == "local"
    assert catalog.api_key_of(model) is None


def test_a_network_model_without_a_key_source_is_refused_with_file_line_field_and_fix(
    write_catalog: WriteCatalog,
) -> None:
    catalog = write_catalog(models={"m": {**MODEL, "access": "network"}})
    [problem] = problems_of(catalog)
    path = catalog / "models" / "m.yaml"
    line = path.read_text().splitlines().index("access: network") + 1
    assert problem.startswith(f"{path}:{line}: access: the model is reachable from the network without an API key")
    assert "add `api_key: {env: LLAMA_API_KEY}`" in problem
    assert "`access: local`" in problem


def test_the_project_default_network_without_a_key_is_refused_for_each_model(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(project={"access": "network"})
    [problem] = problems_of(catalog)
    assert problem.startswith(f"{catalog / 'models' / 'model-a.yaml'}:1: access: ")
    assert "(project.yaml's `access: network`)" in problem


def test_the_project_key_source_covers_its_models_and_a_model_may_name_its_own(write_catalog: WriteCatalog) -> None:
    catalog = load_catalog(
        write_catalog(
            models={"a": MODEL, "b": {**MODEL, "api_key": {"file": "secrets/b.key"}, "access": "local"}},
            project={"access": "network", "api_key": {"env": "TEAM_KEY"}},
        )
    )
    a, b = catalog.models
    assert (catalog.access_of(a), catalog.api_key_of(a).pair) == ("network", ("env", "TEAM_KEY"))  # type: ignore[union-attr]
    assert (catalog.access_of(b), catalog.api_key_of(b).pair) == ("local", ("file", "secrets/b.key"))  # type: ignore[union-attr]


def test_the_key_itself_is_refused_in_the_catalog(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(models={"m": {**MODEL, "access": "network", "api_key": "sk-secret"}})
    problems = problems_of(catalog)
    assert any("api_key: the key itself never goes in the catalog" in p for p in problems)


@pytest.mark.parametrize("source", [{}, {"env": "A", "file": "b"}])
def test_a_key_source_is_one_variable_or_one_file(source: dict[str, str], write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(models={"m": {**MODEL, "api_key": source}})
    assert any("api_key: give one of `env: NAME` or `file: PATH`" in p for p in problems_of(catalog))


def test_the_plan_carries_access_and_a_key_file_relative_to_the_bake_file(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(models={"m": {**MODEL, "access": "network", "api_key": {"file": "secrets/m.key"}}})
    target = plan_catalog(Paths.from_options(catalog, catalog.parent / "out" / "docker-bake.hcl"))[1].target("m")
    assert (target.access, target.api_key) == ("network", ("file", "../secrets/m.key"))
