"""Catalog entries as plain data for the catalog's tests, and the text of a validation error."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import BASE, SHA_A


def base(**changes: Any) -> dict[str, Any]:
    return {"name": "b", **BASE, **changes}


def error_text(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return "\n".join(str(e["msg"]) for e in exc.value.errors())


def split(stem: str, count: int, key: str = "url", prefix: str = "https://h/") -> list[dict[str, Any]]:
    return [{key: f"{prefix}{stem}-{n:05d}-of-{count:05d}.gguf", "sha256": SHA_A} for n in range(1, count + 1)]
