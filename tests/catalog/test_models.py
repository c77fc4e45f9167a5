"""A model: its weights (pins, URLs, split parts, local files), server settings, and its frozen value."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from llama_bake.catalog.models import Model
from tests.catalog.entries import error_text, split
from tests.conftest import MODEL, SHA_A


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


def test_models_are_frozen() -> None:
    m = Model.model_validate({"name": "m", **MODEL})
    with pytest.raises(ValidationError):
        m.name = "other"  # type: ignore[misc]


def test_a_local_file_cannot_be_fetched_at_start() -> None:
    with pytest.raises(ValidationError, match="local file, which a container cannot fetch"):
        Model.model_validate({"name": "m", "weights": {"path": "w/m.gguf", "sha256": "a" * 64}, "delivery": "fetch"})
