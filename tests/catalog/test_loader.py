"""The loader names the file, the line and the field of every problem, and reports them all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_bake.catalog.loader import load_catalog
from llama_bake.errors import CatalogError
from tests.conftest import BASE, MODEL, WriteCatalog, write_yaml


def problems_of(catalog: Path) -> list[str]:
    with pytest.raises(CatalogError) as exc:
        load_catalog(catalog)
    return exc.value.problems


def test_valid_catalog_loads_with_names_from_file_names(write_catalog: WriteCatalog) -> None:
    catalog = load_catalog(write_catalog())
    assert [b.name for b in catalog.bases] == ["llama-cpp-cuda"]
    assert [m.name for m in catalog.models] == ["model-a"]
    assert catalog.base_of(catalog.models[0]).name == "llama-cpp-cuda"


def test_unknown_key_names_file_line_field_and_suggestion(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(models={"m": {**MODEL, "server": {"port": 8080, "ctx_sise": 4096}}})
    [problem] = problems_of(catalog)
    path = catalog / "models" / "m.yaml"
    line = path.read_text().splitlines().index("  ctx_sise: 4096") + 1
    assert problem.startswith(f"{path}:{line}: server.ctx_sise: unknown key `ctx_sise`")
    assert "did you mean `ctx_size`?" in problem


def test_unknown_key_inside_weights_is_matched_against_both_weight_kinds(write_catalog: WriteCatalog) -> None:
    weights = {**MODEL["weights"], "revison": "x"}
    catalog = write_catalog(models={"m": {"weights": weights}})
    problems = problems_of(catalog)
    assert any("weights.revison: unknown key `revison`; did you mean `revision`?" in p for p in problems)


def test_wrong_type_names_the_field(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(models={"m": {**MODEL, "server": {"port": "eighty"}}})
    [problem] = problems_of(catalog)
    assert ": server.port: " in problem
    assert "integer" in problem


def test_yaml_syntax_error_names_the_line(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog()
    broken = catalog / "models" / "broken.yaml"
    broken.write_text("weights:\n  hf: a/b\n   file: [unclosed\n", encoding="utf-8")
    [problem] = problems_of(catalog)
    assert problem.startswith(f"{broken}:3: YAML syntax error")


def test_every_problem_is_reported_at_once(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(
        bases={"base": BASE, "broken": {**BASE, "cmake_options": {"GGML_FLASH_ATTN": "ON"}}},
        models={
            "bad-sha": {"base": "base", "weights": {**MODEL["weights"], "sha256": "nope"}},
            "bad-base": {**MODEL, "base": "nowhere"},
            "llama-3.1": {**MODEL, "base": "base"},
        },
    )
    problems = problems_of(catalog)
    assert len(problems) == 4
    joined = "\n".join(problems)
    assert "bases/broken.yaml" in joined
    assert "cmake_options" in joined
    assert "GGML_FLASH_ATTN" in joined
    assert "models/bad-sha.yaml" in joined
    assert "weights.sha256" in joined
    assert "models/bad-base.yaml" in joined
    assert "unknown base `nowhere`" in joined
    assert "models/llama-3.1.yaml" in joined
    assert "rename the file (e.g. `llama-3-1.yaml`) or set `name: llama-3-1`" in joined


def test_duplicate_model_names_name_both_entries(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(models={"a": {**MODEL, "name": "same"}, "b": {**MODEL, "name": "same"}})
    [problem] = problems_of(catalog)
    assert problem.startswith(f"{catalog / 'models' / 'b.yaml'}:")
    assert "`same` is already used by models[0]" in problem


def test_family_needing_newer_cuda_is_located_in_the_base_file(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(bases={"old": {**BASE, "cuda": "12.4.1"}})
    [problem] = problems_of(catalog)
    assert problem.startswith(f"{catalog / 'bases' / 'old.yaml'}:")
    assert "needs CUDA >= 12.8" in problem


def test_empty_catalog_says_what_to_add(tmp_path: Path) -> None:
    (tmp_path / "catalog").mkdir()
    [problem] = problems_of(tmp_path / "catalog")
    assert "empty" in problem
    assert "models/<name>.yaml" in problem


def test_missing_catalog_directory_names_it(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in problem
    assert "--catalog" in problem


def test_a_catalog_without_models_is_valid_as_llama_bake_init_writes_it(write_catalog: WriteCatalog) -> None:
    catalog = load_catalog(write_catalog(models={}))
    assert catalog.models == ()


def test_a_file_that_is_not_a_mapping_is_an_error(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog()
    (catalog / "models" / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    [problem] = problems_of(catalog)
    assert "list.yaml:1: expected a mapping" in problem


def test_project_file_problems_are_reported(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(project={"registry": "UPPER/case"})
    [problem] = problems_of(catalog)
    assert problem.startswith(f"{catalog / 'project.yaml'}:1: registry:")


def test_yml_suffix_is_read_too(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog()
    write_yaml(catalog / "models" / "other.yml", MODEL)
    assert sorted(m.name for m in load_catalog(catalog).models) == ["model-a", "other"]


def test_a_checksum_yaml_reads_as_a_number_says_to_quote_it(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog()
    path = catalog / "models" / "digits.yaml"
    path.write_text(
        "weights:\n  url: https://h/m.gguf\n  sha256: " + "1" * 64 + "\n",
        encoding="utf-8",
    )
    [problem] = problems_of(catalog)
    assert problem.startswith(f"{path}:3: weights.sha256: YAML read this value as a number")
    assert "put it in quotes" in problem


def test_problems_in_local_weights_and_git_sources_name_the_field_not_the_union_tag(
    write_catalog: WriteCatalog,
) -> None:
    base = {**BASE, "llama_cpp": {"git": "https://github.com/ggml-org/llama.cpp.git", "ref": "main"}}
    local = {"path": "w/x.gguf", "sha256": "nope", "filenam": "y.gguf"}
    catalog = write_catalog(bases={"b": base}, models={"m": {"weights": local}})
    problems = problems_of(catalog)
    assert any(": llama_cpp.ref: `main` moves" in p for p in problems), problems
    assert any(": weights.sha256: 'nope' is not a sha256" in p for p in problems), problems
    assert any(": weights.filenam: unknown key `filenam`; did you mean `filename`?" in p for p in problems), problems


def test_a_base_on_another_cuda_than_the_stack_is_an_error_at_its_cuda_line(write_catalog: WriteCatalog) -> None:
    project = {"stack": {"fine-tuning": {"image": "pytorch/pytorch:2.7.0-cuda12.8-cudnn9-devel"}}}
    catalog = write_catalog(bases={"b": {**BASE, "cuda": "12.9.1"}}, project=project)
    [problem] = problems_of(catalog)
    path = catalog / "bases" / "b.yaml"
    line = path.read_text().splitlines().index("cuda: 12.9.1") + 1
    assert problem.startswith(f"{path}:{line}: cuda: CUDA 12.9.1 does not match the stack: service `fine-tuning`")
    assert "is on CUDA 12.8; set `cuda: 12.8.x`" in problem
    assert load_catalog(write_catalog(bases={"b": {**BASE, "cuda": "12.8.0"}}, project=project))


def test_a_stack_service_must_say_its_cuda_version(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(project={"stack": {"web": {"image": "nginx:1.27"}}})
    [problem] = problems_of(catalog)
    assert "stack.web: cannot read a CUDA version from 'nginx:1.27'; add `cuda: X.Y`" in problem
    project = {"stack": {"web": {"image": "nginx:1.27", "cuda": "12.8"}}}
    assert load_catalog(write_catalog(project=project))


def test_yaml_1_1_words_stay_words(write_catalog: WriteCatalog) -> None:
    """YAML 1.1 reads on/off/yes/no as booleans; the catalog reads them as the word the user wrote."""
    catalog = write_catalog(project={"provenance": "off"})
    (catalog / "models" / "model-a.yaml").write_text(
        (catalog / "models" / "model-a.yaml").read_text() + "server:\n  flash_attn: on\n  jinja: false\n"
    )
    (catalog / "project.yaml").write_text("provenance: off\n")
    loaded = load_catalog(catalog)
    assert loaded.models[0].server.flash_attn == "on"
    assert loaded.models[0].server.jinja is False
    assert loaded.project.provenance == "off"


def test_an_upper_case_checksum_is_accepted_and_normalised(write_catalog: WriteCatalog) -> None:
    upper = "ABCDEF0123456789" * 4
    model = {"weights": {**MODEL["weights"], "sha256": upper}}
    loaded = load_catalog(write_catalog(models={"model-a": model}))
    assert loaded.models[0].weights.sha256 == upper.lower()


def test_every_bad_gpu_family_is_reported_with_the_family_it_stands_for(write_catalog: WriteCatalog) -> None:
    base = {**BASE, "gpu_families": ["sm_86", 89, "8.9a", "rtx4090", "RTX PRO 6000", "adda", "volta"]}
    message = "\n".join(problems_of(write_catalog(bases={"llama-cpp-cuda": base})))
    assert "6 unknown GPU families" in message
    assert "`sm_86`: compute capability 86 is the family `ampere`" in message
    assert "`89`: compute capability 89 is the family `ada`" in message
    assert "`rtx4090`: rtx4090 is in the family `ada`" in message
    assert "write `blackwell-consumer`" in message
    assert "`adda`: did you mean `ada`?" in message


def test_a_file_name_that_is_no_target_name_says_to_rename_the_file(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog()
    write_yaml(catalog / "models" / "qwen3.5-9b.yaml", MODEL)
    message = "\n".join(problems_of(write_catalog()))
    line = next(x for x in message.splitlines() if "qwen3.5-9b.yaml" in x)
    assert line.startswith(f"{catalog / 'models' / 'qwen3.5-9b.yaml'}: the file name")
    assert "rename the file (e.g. `qwen3-5-9b.yaml`) or set `name: qwen3-5-9b`" in line


def test_git_tag_placeholders_need_a_tag_that_is_always_written_and_rewrite_needs_an_epoch(
    write_catalog: WriteCatalog,
) -> None:
    ok = write_catalog(project={"tag_scheme": ["{tag}", "sha-{git_sha}", "{git_branch}", "{git_version}"]})
    assert load_catalog(ok).project.uses_git
    with pytest.raises(CatalogError, match=r"every tag depends on git.*\{tag\}"):
        load_catalog(write_catalog(project={"tag_scheme": ["sha-{git_sha}"]}))
    with pytest.raises(CatalogError, match="rewrite_timestamps needs source_date_epoch"):
        load_catalog(write_catalog(project={"rewrite_timestamps": True}))
