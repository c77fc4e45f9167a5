"""Catalog files -> ``Catalog``.

Reads ``project.yaml``, ``bases/*.yaml`` and ``models/*.yaml`` under a catalog directory. Every problem,
YAML syntax or validation, is collected (not just the first) and reported as one ``CatalogError`` whose
lines read ``file:line: field.path: message``.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from llama_bake.catalog.bases import Base, GitSource, LocalSource
from llama_bake.catalog.checks import Catalog, Problem, cross_check
from llama_bake.catalog.models import FileWeights, HfWeights, Model, UrlWeights
from llama_bake.catalog.project import Project
from llama_bake.errors import CatalogError, did_you_mean

# libyaml is several times faster on large catalogs; the pure-Python loader is the fallback.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc]
    """YAML 1.2's booleans: only true and false. YAML 1.1 also reads on/off/yes/no as booleans, so
    `flash_attn: on` or `provenance: off` would arrive as True and False instead of the word the user wrote."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != _BOOL]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

SUFFIXES = (".yaml", ".yml")
# Fields whose loc in a pydantic error is followed by the union member's tag (``weights.hf.sha256``).
_TAGGED_UNIONS = {"weights", "mmproj", "llama_cpp"}
_TAGS = {"hf": HfWeights, "url": UrlWeights, "local": FileWeights, "git": GitSource, "path": LocalSource}


@dataclass(frozen=True)
class _Entry:
    path: Path
    data: Any


def load_catalog(catalog_dir: Path) -> Catalog:
    """Read and validate every file of the catalog; raise ``CatalogError`` listing all problems."""
    if not catalog_dir.is_dir():
        msg = f"{catalog_dir}: no catalog directory here; create it (see the README) or pass --catalog DIR"
        raise CatalogError([msg])
    problems: list[str] = []
    project_file = next((catalog_dir / f"project{s}" for s in SUFFIXES if (catalog_dir / f"project{s}").exists()), None)
    base_entries = _read_dir(catalog_dir / "bases", problems)
    model_entries = _read_dir(catalog_dir / "models", problems)

    project: Project | None = Project()
    if project_file is not None:
        data = _read_yaml(project_file, problems)
        project = _validate(Project, data, project_file, problems) if data is not _BROKEN else None

    bases = [_validate_named(Base, e, problems) for e in base_entries]
    models = [_validate_named(Model, e, problems) for e in model_entries]

    if not base_entries and not model_entries and project_file is None and not problems:
        msg = f"{catalog_dir}: the catalog is empty; add bases/<name>.yaml and models/<name>.yaml (see the README)"
        raise CatalogError([msg])

    entries = {"bases": base_entries, "models": model_entries}
    for problem in cross_check(bases, models, project):
        problems.append(_format_cross(problem, entries, catalog_dir))

    if problems or project is None:
        raise CatalogError(problems)
    return Catalog(
        project=project,
        bases=tuple(b for b in bases if b is not None),
        models=tuple(m for m in models if m is not None),
    )


_BROKEN = object()


def _read_dir(directory: Path, problems: list[str]) -> list[_Entry]:
    if not directory.is_dir():
        return []
    files = sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file())
    return [_Entry(p, _read_yaml(p, problems)) for p in files]


def _read_yaml(path: Path, problems: list[str]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read: {exc}")
        return _BROKEN
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        reason = getattr(exc, "problem", None) or str(exc)
        problems.append(f"{where}: YAML syntax error: {reason} (check indentation and quoting)")
        return _BROKEN
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{path}:1: expected a mapping of keys to values, found {type(data).__name__}")
        return _BROKEN
    return data


def _validate_named(cls: type[Base] | type[Model], entry: _Entry, problems: list[str]) -> Any:
    if entry.data is _BROKEN:
        return None
    data = dict(entry.data)
    data.setdefault("name", entry.path.stem)
    return _validate(cls, data, entry.path, problems, name_from_file="name" not in entry.data)


def _validate(cls: type[BaseModel], data: Any, path: Path, problems: list[str], *, name_from_file: bool = False) -> Any:
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problems.append(_format_error(cls, error, path, name_from_file))
        return None


def _format_error(cls: type[BaseModel], error: Any, path: Path, name_from_file: bool) -> str:
    loc = _clean_loc(tuple(error["loc"]))
    kind = error["type"]
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind == "extra_forbidden":
        allowed = sorted(_fields_at(cls, loc[:-1]))
        hint = did_you_mean(str(loc[-1]), allowed)
        message = f"unknown key `{loc[-1]}`; " + (hint if hint else "allowed: " + ", ".join(allowed))
    elif kind == "missing":
        message = f"required key `{loc[-1]}` is missing"
    elif kind == "string_type" and type(error.get("input")) in (int, float):
        message = f"YAML read this value as a number ({error['input']!r}); put it in quotes to keep it a string"
    if kind == "missing" and loc == ("name",):
        message += f" (the file name `{path.stem}` is used when `name` is absent)"
    if loc == ("name",) and name_from_file:
        # The name came from the file: the fix is the file's name (or a `name:` key), not a line in it.
        fixed = re.sub(r"[^a-zA-Z0-9_-]", "-", path.stem)
        message = (
            f"the file name `{path.name}` is the target name, and bake allows letters, digits, '-' and '_' only; "
            f"rename the file (e.g. `{fixed}{path.suffix}`) or set `name: {fixed}` in it"
        )
        return f"{path}: {message}"
    return f"{path}:{_line_of(path, loc)}: {_dotted(loc)}: {message}"


def _format_cross(problem: Problem, entries: dict[str, list[_Entry]], catalog_dir: Path) -> str:
    section, *rest = problem.loc
    if not rest:
        return f"{catalog_dir / str(section)}: {problem.message}"
    entry = entries[str(section)][int(rest[0])]
    field = tuple(rest[1:])
    return f"{entry.path}:{_line_of(entry.path, field)}: {_dotted(field)}: {problem.message}"


def _clean_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    out: list[str | int] = []
    skip_tag = False
    for item in loc:
        if skip_tag and item in _TAGS:
            skip_tag = False
            continue
        skip_tag = item in _TAGGED_UNIONS
        if item == "[key]":
            continue
        out.append(item)
    return tuple(out)


def _dotted(loc: tuple[str | int, ...]) -> str:
    text = ""
    for item in loc:
        text += f"[{item}]" if isinstance(item, int) else (f".{item}" if text else str(item))
    return text or "(file)"


def _line_of(path: Path, loc: tuple[str | int, ...]) -> int:
    """Line of the deepest part of ``loc`` that exists in the file (1 when nothing matches)."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, yaml.YAMLError):
        return 1
    line = 1 if node is None else node.start_mark.line + 1
    for item in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == item), None)
            if match is None:
                break
            key_node = next(k for k, v in node.value if k.value == item)
            line = key_node.start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(item, int) and item < len(node.value):
            node = node.value[item]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _fields_at(cls: type[BaseModel], loc: tuple[str | int, ...]) -> set[str]:
    """Field names (with aliases) of every model that can stand at ``loc`` below ``cls``."""
    models: list[type[BaseModel]] = [cls]
    for item in loc:
        nxt: list[type[BaseModel]] = []
        for model in models:
            field = model.model_fields.get(str(item))
            if field is not None:
                nxt.extend(_models_in(field.annotation))
        if isinstance(item, str) and item in _TAGS:
            continue
        models = nxt or models
    names: set[str] = set()
    for model in models:
        for name, field in model.model_fields.items():
            names.add(field.alias or name)
    return names


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(tp)[0])
    if origin in (Union, types.UnionType, tuple, list):
        return [m for arg in typing.get_args(tp) for m in _models_in(arg)]
    return []
