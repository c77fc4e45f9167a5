"""project.yaml: tags, the Hub's address, the layer limit."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llama_bake.catalog.project import Project
from tests.catalog.entries import error_text


def test_tag_scheme_rejects_unknown_placeholders() -> None:
    with pytest.raises(ValidationError) as exc:
        Project.model_validate({"tag_scheme": ["{tag}-{cudaa}"]})
    assert "did you mean `cuda`?" in error_text(exc)


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


def test_layers_are_pushed_zstd_by_default_and_the_level_must_fit_the_codec() -> None:
    assert (Project().compression, Project().compression_level) == ("zstd", None)
    assert Project.model_validate({"compression": "gzip", "compression_level": 9}).compression_level == 9
    assert Project.model_validate({"compression": "zstd", "compression_level": 19}).compression_level == 19
    with pytest.raises(ValidationError) as exc:
        Project.model_validate({"compression": "gzip", "compression_level": 12})
    assert "compression_level 12 is not a gzip level; write 0-9" in error_text(exc)
    with pytest.raises(ValidationError) as exc:
        Project.model_validate({"compression": "uncompressed", "compression_level": 3})
    assert "no meaning with `compression: uncompressed`; remove it" in error_text(exc)
    with pytest.raises(ValidationError) as exc:
        Project.model_validate({"compression": "estargz"})
    assert "'zstd', 'gzip' or 'uncompressed'" in error_text(exc)
