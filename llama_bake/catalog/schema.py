"""The JSON Schema of the catalog's files (``llama-bake schema``), from the catalog's models."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from llama_bake.catalog.bases import Base
from llama_bake.catalog.constants import CATALOG_KINDS
from llama_bake.catalog.models import Model
from llama_bake.catalog.project import Project

KINDS: dict[str, type[BaseModel]] = dict(zip(CATALOG_KINDS, (Base, Model, Project), strict=True))
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema(kind: str | None) -> dict[str, Any]:
    """The JSON Schema of one kind of catalog file, or of any of them (a valid schema whose ``anyOf`` names
    the three kinds, for editors that map one schema to every file of ``catalog/``)."""
    kinds = KINDS
    if kind is not None:
        return {"$schema": JSON_SCHEMA_DIALECT, **kinds[kind].model_json_schema(by_alias=True)}
    defs: dict[str, Any] = {}
    for cls in kinds.values():
        own = cls.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
        defs |= own.pop("$defs", {})
        defs[cls.__name__] = own
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "llama-bake catalog file",
        "anyOf": [{"$ref": f"#/$defs/{cls.__name__}"} for cls in kinds.values()],
        "$defs": dict(sorted(defs.items())),
    }


def schema_text(kind: str | None) -> str:
    return json.dumps(schema(kind), indent=2, sort_keys=True) + "\n"
