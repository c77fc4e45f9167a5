"""Backends: each one's entry, the Vulkan families and the cards people name, and the refusals (with their fixes)
of another backend's fields, families and CMake options."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from llama_bake.catalog.backends import BACKENDS
from llama_bake.catalog.bases import Base
from llama_bake.catalog.gpus import FAMILY_BACKEND, VULKAN_FAMILIES, card_of, family_hint
from llama_bake.plan.environment import base_env, cmake_args
from tests.catalog.entries import error_text

SOURCE = {"git": "https://github.com/ggml-org/llama.cpp.git", "ref": "b6500"}


def vulkan(**changes: Any) -> dict[str, Any]:
    return {"name": "v", "backend": "vulkan", "llama_cpp": SOURCE, **changes}


def test_every_backend_the_schema_allows_has_an_entry() -> None:
    allowed = Base.model_json_schema()["properties"]["backend"]["enum"]
    assert sorted(allowed) == sorted(BACKENDS)


def test_every_family_belongs_to_one_backend_whose_entry_lists_it() -> None:
    for family, backend in FAMILY_BACKEND.items():
        assert family in BACKENDS[backend].families
    assert set(BACKENDS["vulkan"].families) == set(VULKAN_FAMILIES)


@pytest.mark.parametrize(
    ("card", "backend", "family"),
    [
        ("RTX 4090", "cuda", "ada"),
        ("Radeon RX 7900 XTX", "vulkan", "rdna3"),
        ("AMD Radeon RX 7800 XT", "vulkan", "rdna3"),
        ("Radeon 7900", "vulkan", "rdna3"),
        ("Radeon 780M", "vulkan", "rdna3"),
        ("RX 6800 XT", "vulkan", "rdna2"),
        ("RX 5700 XT", "vulkan", "rdna1"),
        ("Ryzen AI Max+ 395", "vulkan", "rdna3.5"),
        ("AMD Ryzen AI MAX 390", "vulkan", "rdna3.5"),
        ("Radeon 8060S", "vulkan", "rdna3.5"),
        ("Radeon 890M", "vulkan", "rdna3.5"),
        ("Strix Halo", "vulkan", "rdna3.5"),
        ("Radeon RX 9070 XT", "vulkan", "rdna4"),
        ("Radeon AI PRO R9700", "vulkan", "rdna4"),
        ("Arc A770", "vulkan", "intel-arc-alchemist"),
        ("Intel Arc A380", "vulkan", "intel-arc-alchemist"),
        ("Arc Pro A60", "vulkan", "intel-arc-alchemist"),
        ("Arc B580", "vulkan", "intel-arc-battlemage"),
        ("Iris Xe", "vulkan", "intel-xe-igpu"),
        ("rdna3.5", "vulkan", "rdna3.5"),
    ],
)
def test_a_card_resolves_to_its_backend_and_family(card: str, backend: str, family: str) -> None:
    assert card_of(card) == (backend, family)


def test_nvidia_cards_named_like_intel_ones_stay_nvidias() -> None:
    assert card_of("A40") == ("cuda", "ampere")
    assert card_of("A100") == ("cuda", "ampere-datacenter")
    assert card_of("RTX A6000") == ("cuda", "ampere")


def test_a_card_written_as_a_family_says_which_family_to_write() -> None:
    hint = "Arc A770 is in the family `intel-arc-alchemist` (Arc A310-A770, Arc Pro A40-A60)"
    assert family_hint("Arc A770") == f"{hint}: write `intel-arc-alchemist`"
    assert "did you mean `rdna3`?" in family_hint("rdan3")


def test_a_vulkan_base_compiles_ggml_vulkan_on_ubuntu_and_says_its_backend() -> None:
    parsed = Base.model_validate(vulkan(gpu_families=["rdna3", "intel-arc-alchemist"]))
    assert cmake_args(parsed).startswith("-DGGML_NATIVE=OFF -DGGML_VULKAN=ON -DGGML_BACKEND_DL=ON ")
    assert "CUDA" not in cmake_args(parsed)
    assert base_env(parsed)["LLAMA_BAKE_BACKEND"] == "vulkan"
    assert parsed.engine.images(parsed.os, parsed.cuda, parsed.cuda_runtime) == ("ubuntu:24.04", "ubuntu:24.04")
    assert parsed.target_platforms == ("linux/amd64",)


def test_a_vulkan_base_without_families_is_for_any_vulkan_gpu() -> None:
    assert Base.model_validate(vulkan()).gpu_families == ()


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"cuda": "12.8.1"}, "cuda only applies to `backend: cuda`; remove it for a vulkan base"),
        ({"cuda_runtime": "full"}, "cuda_runtime only applies to `backend: cuda`; remove it for a vulkan base"),
        (
            {"gpu_families": ["ada"]},
            "`ada` (RTX 40, L4, L40S, RTX 6000 Ada) run on a `backend: cuda` base, not on this vulkan base: move them "
            "to one (a base each); a vulkan base's families: rdna1",
        ),
        (
            {"cmake_options": {"GGML_CUDA_FA": "ON"}},
            "GGML_CUDA_FA configures llama.cpp's cuda backend, which a vulkan base does not compile; remove it, or "
            "move it to a `backend: cuda` base",
        ),
        ({"cmake_options": {"GGML_CUDA": "ON"}}, "GGML_CUDA is managed by llama-bake: set by `backend: cuda`"),
        ({"cmake_options": {"GGML_VULKAN": "ON"}}, "GGML_VULKAN is managed by llama-bake: set by `backend: vulkan`"),
        ({"os": "ubuntu22.04"}, "Vulkan headers (1.3.204) are older than llama.cpp's Vulkan backend needs"),
    ],
)
def test_cuda_settings_on_a_vulkan_base_are_refused_with_the_fix(settings: dict[str, Any], said: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(vulkan(**settings))
    assert said in error_text(exc)


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        (
            {"gpu_families": ["ada", "rdna3"]},
            "`rdna3` (Radeon RX 7600-7900 XTX, PRO W7800/W7900, Radeon 780M/760M) run on a `backend: vulkan` base, "
            "not on this cuda base",
        ),
        (
            {"cmake_options": {"GGML_VULKAN_VALIDATE": "ON"}},
            "GGML_VULKAN_VALIDATE configures llama.cpp's vulkan backend, which a cuda base does not compile",
        ),
    ],
)
def test_vulkan_settings_on_a_cuda_base_are_refused_with_the_fix(settings: dict[str, Any], said: str) -> None:
    cuda = {"name": "c", "llama_cpp": SOURCE, "gpu_families": ["ada"]} | settings
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(cuda)
    assert said in error_text(exc)


def test_families_on_a_cpu_base_are_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        Base.model_validate({"name": "c", "backend": "cpu", "llama_cpp": SOURCE, "gpu_families": ["rdna3"]})
    assert "not on this cpu base: move them to one (a base each); a cpu base has none" in error_text(exc)


def test_validate_says_which_family_a_card_written_in_a_vulkan_base_is() -> None:
    with pytest.raises(ValidationError) as exc:
        Base.model_validate(vulkan(gpu_families=["Radeon 8060S"]))
    assert "Radeon 8060S is in the family `rdna3.5`" in error_text(exc)
    assert "write `rdna3.5`" in error_text(exc)


def test_compose_gpus_on_a_model_of_a_vulkan_base_is_refused_with_the_fix() -> None:
    from llama_bake.catalog.checks import cross_check
    from llama_bake.catalog.models import Model
    from tests.conftest import MODEL

    bases: list[Base | None] = [Base.model_validate(vulkan())]
    picked = Model.model_validate({"name": "m", **MODEL, "compose": {"gpus": ["0"]}})
    (problem,) = cross_check(bases, [picked])
    assert problem.loc == ("models", 0, "compose", "gpus")
    assert "set GGML_VK_VISIBLE_DEVICES in server.env" in problem.message
    assert cross_check(bases, [Model.model_validate({"name": "m", **MODEL})]) == []
