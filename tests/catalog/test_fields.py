"""The catalog's field types: target names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llama_bake.catalog.models import Model
from tests.catalog.entries import error_text
from tests.conftest import MODEL


@pytest.mark.parametrize("name", ["llama-3.1", "has space", "", "a/b"])
def test_invalid_target_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Model.model_validate({"name": name, **MODEL})
    assert "bake target name" in error_text(exc)
