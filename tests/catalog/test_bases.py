"""A llama.cpp base: GPU families and the CUDA that builds them, CMake options, its llama.cpp source."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llama_bake.catalog.bases import Base, LocalSource
from llama_bake.catalog.gpus import GPU_FAMILIES
from tests.catalog.entries import base, error_text


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


def test_subdir_only_applies_to_an_archive() -> None:
    with pytest.raises(ValidationError, match="`subdir` only applies to an archive"):
        Base.model_validate({"name": "b", "backend": "cpu", "llama_cpp": {"path": "src/llama.cpp", "subdir": "x"}})
    base = Base.model_validate(
        {"name": "b", "backend": "cpu", "llama_cpp": {"path": "src/llama.tar.xz", "subdir": "llama.cpp-b1"}}
    )
    assert isinstance(base.llama_cpp, LocalSource)
    assert base.llama_cpp.subdir == "llama.cpp-b1"


@pytest.mark.parametrize(
    ("word", "family"),
    [
        ("ada", "ada"),
        ("RTX 4090", "ada"),
        ("NVIDIA GeForce RTX 4070 Ti SUPER", "ada"),
        ("L40S", "ada"),
        ("rtx-5090", "blackwell-consumer"),
        ("RTX PRO 6000 Blackwell", "blackwell-consumer"),
        ("H100", "hopper"),
        ("GB200", "blackwell-datacenter"),
        ("DGX Spark", "gb10"),
        ("8.9", "ada"),
        ("sm_120a", "blackwell-consumer"),
        ("compute_86", "ampere"),
        ("Radeon RX 7900 XTX", "rdna3"),
        ("Voodoo 5", None),
        ("9.9", None),
    ],
)
def test_a_card_name_or_compute_capability_names_its_family(word: str, family: str | None) -> None:
    from llama_bake.catalog.gpus import family_of

    assert family_of(word) == family


def test_a_cuda_base_runs_on_the_slim_cuda_runtime_unless_it_asks_for_the_full_one() -> None:
    assert Base.model_validate(base()).cuda_runtime == "slim"
    assert Base.model_validate(base(cuda_runtime="full")).cuda_runtime == "full"
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(base(cuda_runtime="fat"))
    assert "'slim' or 'full'" in error_text(exc)


def test_cuda_runtime_on_a_cpu_base_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(base(backend="cpu", gpu_families=[], cuda_runtime="slim"))
    assert "cuda_runtime only applies to `backend: cuda`" in error_text(exc)
