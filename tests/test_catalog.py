"""Unit tests of the catalog's models and rules (no files, no subprocesses)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from llama_bake.catalog.bases import Base, LocalSource
from llama_bake.catalog.checks import cross_check
from llama_bake.catalog.gpus import GPU_FAMILIES
from llama_bake.catalog.models import Model
from llama_bake.catalog.project import Project
from tests.conftest import BASE, MODEL, SHA_A


def base(**changes: Any) -> dict[str, Any]:
    return {"name": "b", **BASE, **changes}


def error_text(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return "\n".join(str(e["msg"]) for e in exc.value.errors())


def test_valid_base_maps_families_to_sorted_architectures() -> None:
    parsed = Base.model_validate(base(gpu_families=["blackwell-consumer", "ada", "hopper"]))
    assert parsed.cuda_architectures == "89-real;90-real;120a-real"


@pytest.mark.parametrize(
    ("family", "cuda", "needed"),
    [("blackwell-consumer", "12.4.1", "12.8"), ("gb10", "12.8.1", "12.9"), ("blackwell-datacenter", "12.6.3", "12.8")],
)
def test_family_the_cuda_version_cannot_build_names_the_version_needed(family: str, cuda: str, needed: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(base(cuda=cuda, gpu_families=[family]))
    text = error_text(exc)
    assert f"needs CUDA >= {needed}" in text
    assert f"cuda: {needed}.0" in text


def test_volta_is_rejected_on_cuda_13() -> None:
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(base(cuda="13.0.1", gpu_families=["volta"]))
    assert "not supported after CUDA 12.9" in error_text(exc)


def test_unknown_family_suggests_the_close_one() -> None:
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(base(gpu_families=["hoper"]))
    assert "did you mean `hopper`?" in error_text(exc)


@pytest.mark.parametrize(
    ("option", "replacement"),
    [
        ("GGML_FLASH_ATTN", "server.flash_attn"),
        ("GGML_CUDA_F16", "removed"),
        ("LLAMA_CURL", "ignored"),
        ("LLAMA_CUBLAS", "backend: cuda"),
    ],
)
def test_obsolete_cmake_options_are_rejected_with_their_replacement(option: str, replacement: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(base(cmake_options={option: "ON"}))
    text = error_text(exc)
    assert option in text
    assert replacement in text


def test_managed_cmake_options_point_at_the_catalog_field() -> None:
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(base(cmake_options={"CMAKE_CUDA_ARCHITECTURES": "90"}))
    assert "gpu_families" in error_text(exc)


def test_cmake_values_with_spaces_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Base.model_validate(base(cmake_options={"GGML_CUDA_FA": "ON OFF"}))


def test_moving_llama_cpp_refs_are_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(base(llama_cpp={"git": "https://github.com/ggml-org/llama.cpp.git", "ref": "master"}))
    assert "moves" in error_text(exc)


def test_cpu_base_needs_no_families_and_rejects_them() -> None:
    assert Base.model_validate(base(backend="cpu", gpu_families=[])).backend == "cpu"
    with pytest.raises(ValidationError):
        Base.model_validate(base(backend="cpu"))


def test_cuda_base_without_families_lists_them() -> None:
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(base(gpu_families=[]))
    assert "blackwell-consumer" in error_text(exc)


def test_every_family_compiles_on_its_own_minimum_cuda() -> None:
    for family in GPU_FAMILIES.values():
        cuda = f"{family.min_cuda[0]}.{family.min_cuda[1]}.0"
        assert Base.model_validate(base(cuda=cuda, gpu_families=[family.name])).cuda == cuda


@pytest.mark.parametrize("name", ["llama-3.1", "has space", "", "a/b"])
def test_invalid_target_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Model.model_validate({"name": name, **MODEL})
    assert "bake target name" in error_text(exc)


def test_malformed_sha256_is_rejected() -> None:
    weights = {**MODEL["weights"], "sha256": "ABC"}
    with pytest.raises(ValidationError) as exc:
        Model.model_validate({"name": "m", "weights": weights})
    assert "sha256" in error_text(exc)


def test_branch_revision_is_rejected() -> None:
    weights = {**MODEL["weights"], "revision": "main"}
    with pytest.raises(ValidationError) as exc:
        Model.model_validate({"name": "m", "weights": weights})
    assert "40-hex" in error_text(exc)


def test_url_weights_take_their_file_name_from_the_url() -> None:
    parsed = Model.model_validate({"name": "m", "weights": {"url": "https://h/x/tiny.gguf?dl=1", "sha256": SHA_A}})
    assert parsed.weights.filename == "tiny.gguf"


def test_weights_without_a_source_say_what_to_give() -> None:
    with pytest.raises(ValidationError) as exc:
        Model.model_validate({"name": "m", "weights": {"sha256": SHA_A}})
    assert "give either `hf`" in error_text(exc)


def split(stem: str, count: int, key: str = "url", prefix: str = "https://h/") -> list[dict[str, Any]]:
    return [{key: f"{prefix}{stem}-{n:05d}-of-{count:05d}.gguf", "sha256": SHA_A} for n in range(1, count + 1)]


@pytest.mark.parametrize(
    "weights",
    [
        {"url": None, "parts": split("m", 3)},
        {"path": None, "parts": split("m", 3, "path", "models/")},
        {"hf": "o/r", "revision": "a" * 40, "parts": split("sub/m", 3, "file", "")},
    ],
    ids=["url", "path", "hf"],
)
def test_a_split_model_lists_its_parts_and_loads_the_first(weights: dict[str, Any]) -> None:
    weights = {k: v for k, v in weights.items() if v is not None}
    parsed = Model.model_validate({"name": "m", "weights": weights})
    assert [f.filename for f in parsed.weights.files] == [f"m-0000{n}-of-00003.gguf" for n in (1, 2, 3)]
    assert parsed.weights.filename == "m-00001-of-00003.gguf"


@pytest.mark.parametrize(
    ("parts", "said"),
    [
        (split("m", 3)[::-1], "part 1 is 'm-00003-of-00003.gguf'"),
        (split("m", 3)[:2], "part 1 of 2 must end in `-00001-of-00002.gguf`"),
        (split("m", 2)[:1] + split("n", 2)[1:], "share one name"),
        (split("m", 1), "two or more"),
        ([{"url": "https://h/m.gguf", "sha256": SHA_A}, *split("m", 2)[1:]], "part 1 is 'm.gguf'"),
    ],
)
def test_split_parts_must_be_every_part_in_order(parts: list[dict[str, Any]], said: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Model.model_validate({"name": "m", "weights": {"parts": parts}})
    assert said in error_text(exc)


def test_a_split_model_keeps_its_files_under_parts() -> None:
    with pytest.raises(ValidationError) as exc:
        Model.model_validate(
            {"name": "m", "weights": {"url": "https://h/m.gguf", "sha256": SHA_A, "parts": split("m", 2)}}
        )
    assert "move `url`, `sha256` into them" in error_text(exc)


def test_server_env_cannot_override_managed_settings() -> None:
    with pytest.raises(ValidationError) as exc:
        Model.model_validate({"name": "m", **MODEL, "server": {"env": {"LLAMA_ARG_PORT": "1"}}})
    assert "set from the model's own fields" in error_text(exc)


def test_extra_args_must_be_single_lines() -> None:
    with pytest.raises(ValidationError):
        Model.model_validate({"name": "m", **MODEL, "server": {"extra_args": ["--a\n--b"]}})


def test_tag_scheme_rejects_unknown_placeholders() -> None:
    with pytest.raises(ValidationError) as exc:
        Project.model_validate({"tag_scheme": ["{tag}-{cudaa}"]})
    assert "did you mean `cuda`?" in error_text(exc)


def test_cross_check_finds_duplicates_reserved_names_and_unknown_bases() -> None:
    b = Base.model_validate(base(name="base"))
    m1 = Model.model_validate({"name": "dup", **MODEL})
    m2 = Model.model_validate({"name": "dup", **MODEL})
    m3 = Model.model_validate({"name": "models", **MODEL})
    m4 = Model.model_validate({"name": "m4", "base": "bsae", **MODEL})
    messages = [(p.loc, p.message) for p in cross_check([b], [m1, m2, m3, m4])]
    assert (("models", 1, "name"), "`dup` is already used by models[0]") in messages
    assert any(loc == ("models", 2, "name") and "reserved" in msg for loc, msg in messages)
    assert any(loc == ("models", 3, "base") and "did you mean `base`?" in msg for loc, msg in messages)


def test_cross_check_requires_a_base_name_when_there_are_several() -> None:
    b1 = Base.model_validate(base(name="one"))
    b2 = Base.model_validate(base(name="two"))
    m = Model.model_validate({"name": "m", **MODEL})
    problems = cross_check([b1, b2], [m])
    assert [p.loc for p in problems] == [("models", 0, "base")]


def test_models_are_frozen() -> None:
    m = Model.model_validate({"name": "m", **MODEL})
    with pytest.raises(ValidationError):
        m.name = "other"  # type: ignore[misc]


def test_a_local_file_cannot_be_fetched_at_start() -> None:
    with pytest.raises(ValidationError, match="local file, which a container cannot fetch"):
        Model.model_validate({"name": "m", "weights": {"path": "w/m.gguf", "sha256": "a" * 64}, "delivery": "fetch"})


def test_subdir_only_applies_to_an_archive() -> None:
    with pytest.raises(ValidationError, match="`subdir` only applies to an archive"):
        Base.model_validate({"name": "b", "backend": "cpu", "llama_cpp": {"path": "src/llama.cpp", "subdir": "x"}})
    base = Base.model_validate(
        {"name": "b", "backend": "cpu", "llama_cpp": {"path": "src/llama.tar.xz", "subdir": "llama.cpp-b1"}}
    )
    assert isinstance(base.llama_cpp, LocalSource)
    assert base.llama_cpp.subdir == "llama.cpp-b1"


def test_hf_endpoint_must_be_a_url_without_a_trailing_slash() -> None:
    assert Project.model_validate({"hf_endpoint": "https://hf-mirror.example/hub"}).hf_endpoint.endswith("/hub")
    with pytest.raises(ValidationError, match="no trailing /"):
        Project.model_validate({"hf_endpoint": "https://hf-mirror.example/"})


@pytest.mark.parametrize(
    ("written", "size"),
    [("9GB", 9_000_000_000), ("9500MB", 9_500_000_000), ("10GiB", 10 * 1024**3), (12_000_000_000, 12_000_000_000)],
)
def test_max_layer_size_takes_bytes_or_a_unit(written: object, size: int) -> None:
    assert Project.model_validate({"max_layer_size": written}).max_layer_size == size
    assert Project().max_layer_size == 9_000_000_000, "below ghcr.io's 10 GB and ECR Public's 10,000 MiB"


def test_max_layer_size_refuses_what_is_not_a_size() -> None:
    with pytest.raises(ValidationError) as exc:
        Project.model_validate({"max_layer_size": "9 gigs"})
    assert "write bytes, or a number with GB, MB, GiB or MiB" in error_text(exc)
