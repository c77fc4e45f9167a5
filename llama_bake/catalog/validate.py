"""``llama-bake validate``: every problem of a catalog at once, and the warnings that do not stop a build."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_bake.catalog.checks import Catalog
from llama_bake.catalog.constants import unpinned
from llama_bake.catalog.fields import format_size
from llama_bake.catalog.layers import resplit
from llama_bake.catalog.loader import load_catalog
from llama_bake.catalog.models import HfWeights
from llama_bake.errors import CatalogError


@dataclass(frozen=True)
class Validation:
    catalog: Path
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        valid = not self.problems
        return {"catalog": str(self.catalog), "valid": valid, "problems": self.problems, "warnings": self.warnings}

    def raise_if_invalid(self) -> None:
        if self.problems:
            raise CatalogError(list(self.problems))


def validate(catalog_dir: Path, *, strict: bool = False) -> Validation:
    """Every problem of the catalog and the warnings that do not stop a build; with ``strict`` (for CI), the
    warnings are problems too."""
    try:
        warnings = catalog_warnings(load_catalog(catalog_dir))
    except CatalogError as exc:
        return Validation(catalog_dir, tuple(exc.problems), ())
    if strict:
        return Validation(catalog_dir, tuple(f"{w} (--strict)" for w in warnings), ())
    return Validation(catalog_dir, (), tuple(warnings))


def catalog_warnings(catalog: Catalog) -> list[str]:
    warnings: list[str] = []
    if not catalog.models:
        warnings.append("the catalog has no model yet: add one with `llama-bake add OWNER/REPO:QUANT`")
    warnings += [unpinned(model.name, model.placeholders) for model in catalog.models if model.placeholders]
    return warnings + license_warnings(catalog) + size_warnings(catalog)


def license_warnings(catalog: Catalog) -> list[str]:
    """Models whose weights' license is unknown: their image says nothing of it (never the project's license)."""
    warnings = []
    for model in catalog.models:
        if model.license or "org.opencontainers.image.licenses" in model.labels:
            continue
        hub = isinstance(model.weights, HfWeights)
        fix = f"`llama-bake pin {model.name}` reads it from the Hub's model card, or set" if hub else "set"
        warnings.append(
            f"model {model.name}: the weights' license is unknown, so its image's org.opencontainers.image.licenses "
            f"is NOASSERTION; {fix} `license:` in models/{model.name}.yaml (e.g. apache-2.0)"
        )
    return warnings


def size_warnings(catalog: Catalog) -> list[str]:
    """Weights files over the registry's layer limit that the build does not re-split: the push would fail
    after the whole build."""
    limit = catalog.project.max_layer_size
    warnings = []
    for model in catalog.models:
        if model.delivery != "baked" or resplit(model, limit) is not None:
            continue
        for field, weights in (("weights", model.weights), ("mmproj", model.mmproj)):
            if weights is None:
                continue
            for item in weights.files:
                if item.size is not None and item.size > limit:
                    warnings.append(
                        f"model {model.name}: {field} {item.filename} is {format_size(item.size)}, one image layer "
                        f"over max_layer_size ({format_size(limit)}), which llama-bake re-splits only for a single "
                        "ungated weights file: registries such as ghcr.io refuse it at push; pick a split "
                        "quantisation of it (`llama-bake add OWNER/REPO:QUANT` pins every part), or raise "
                        "max_layer_size in project.yaml if your registry takes it"
                    )
    return warnings
