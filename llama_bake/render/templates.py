"""``BakePlan`` -> text: the one Jinja environment, the HCL quoting filter and the templates.

Templates are looked up first in the project directory (``docker-bake.hcl.j2``, ``templates/``), then in
the copies packaged with llama-bake, so a project can override any of them and an installed wheel works
outside this repository.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

from llama_bake.errors import TemplateError
from llama_bake.plan.ir import (
    CACHE_TYPES,
    GENERATED,
    NETWORKS,
    REGENERATE,
    SEMVER_PATTERN,
    SERVER_UID,
    BakePlan,
    Fn,
    Interp,
    Shape,
    Var,
    cache_spec,
)
from llama_bake.render.locations import BAKE_TEMPLATE, DOCKERFILE_TEMPLATES, PACKAGED_TEMPLATES

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def hcl_string(text: str) -> str:
    """``text`` as an HCL quoted string that bake reads back unchanged.

    HCL accepts only the escapes below (so ``json.dumps`` is not valid HCL), treats ``${`` and ``%{`` as
    template syntax, and normalises strings to NFC; other control characters are written as ``\\uNNNN``.
    """
    out = ['"']
    previous = ""
    for char in unicodedata.normalize("NFC", text):
        code = ord(char)
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char == "{" and previous in ("$", "%"):
            # ``${`` -> ``$${``, ``%{`` -> ``%%{``: the doubled marker is HCL's escape for a literal one.
            out[-1] = previous + previous
            out.append("{")
        elif code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\u{code:04X}")
        elif 0xD800 <= code <= 0xDFFF:
            msg = f"cannot write a lone surrogate (U+{code:04X}) to HCL; fix the value in the catalog"
            raise TemplateError(msg)
        else:
            out.append(char)
        previous = char if char not in _ESCAPES else ""
    out.append('"')
    return "".join(out)


def hcl(value: object) -> str:  # noqa: PLR0911 - one return per kind of value HCL spells differently
    """The one filter through which every value reaches HCL."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return hcl_string(value)
    if isinstance(value, Interp):
        return _interp(value, "null")
    if isinstance(value, Var):
        return value.name
    if isinstance(value, Iterable):
        items = list(value)
        if any(isinstance(item, Interp) and item.conditions for item in items):
            # A tag whose git value is empty is left out: "" in the list, then compact().
            return "compact([" + ", ".join(_interp(i, '""') if isinstance(i, Interp) else hcl(i) for i in items) + "])"
        return "[" + ", ".join(hcl(item) for item in items) + "]"
    msg = f"cannot write {type(value).__name__} to HCL"
    raise TemplateError(msg)


def _interp(value: Interp, fallback: str) -> str:
    """An interpolated HCL string; when it needs a git value, ``fallback`` (null or "") when that is empty."""
    literal = "".join(
        hcl_string(p)[1:-1] if isinstance(p, str) else f"${{{p.name}()}}" if isinstance(p, Fn) else f"${{{p.name}}}"
        for p in value.parts
    )
    if not value.conditions:
        return f'"{literal}"'
    calls = list(dict.fromkeys(f"{c.name}()" for c in value.conditions))
    test = f'{calls[0]} == ""' if len(calls) == 1 else f'contains([{", ".join(calls)}], "")'
    return f'{test} ? {fallback} : "{literal}"'


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates are kept between runs (keyed on their source), which halves a small generate's time."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llama-bake" / "jinja"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(root))


def environment(project_dir: Path) -> jinja2.Environment:
    """The Jinja environment for a project: its own templates first, then the packaged ones. One per compile
    (not kept between compiles: a template the project adds later must be found)."""
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(str(project_dir)), jinja2.FileSystemLoader(str(PACKAGED_TEMPLATES))]
    )
    env = jinja2.Environment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=False,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["hcl"] = hcl
    return env


@dataclass(frozen=True)
class Header:
    title: str
    command: str


def _template(env: jinja2.Environment, name: str) -> jinja2.Template:
    try:
        return env.get_template(name)
    except jinja2.TemplateNotFound as exc:
        msg = f"template {name} not found in the project or in llama-bake's packaged templates"
        raise TemplateError(msg) from exc
    except jinja2.TemplateSyntaxError as exc:
        msg = f"{exc.filename or name}:{exc.lineno}: template syntax error: {exc.message}"
        raise TemplateError(msg) from exc


def _render(template: jinja2.Template, **context: object) -> str:
    try:
        return template.render(**context)
    except jinja2.UndefinedError as exc:
        msg = f"{template.filename}: {exc.message} (a template uses a value the plan does not have)"
        raise TemplateError(msg) from exc
    except jinja2.TemplateError as exc:
        msg = f"{template.filename}: {exc}"
        raise TemplateError(msg) from exc


def render_dockerfile(shape: Shape, project_dir: Path, env: jinja2.Environment | None = None) -> str:
    env = env or environment(project_dir)
    return _render(_template(env, DOCKERFILE_TEMPLATES[shape.kind]), shape=shape, server_uid=SERVER_UID)


def render_bake(plan: BakePlan, header: Header, project_dir: Path, env: jinja2.Environment | None = None) -> str:
    env = env or environment(project_dir)
    text = _render(
        _template(env, BAKE_TEMPLATE),
        plan=plan,
        header=header,
        cache_types=CACHE_TYPES,
        cache_spec=cache_spec,
        networks=NETWORKS,
        semver=SEMVER_PATTERN,
    )
    return text if text.endswith("\n") else text + "\n"


_DIRECTIVE = re.compile(r"#\s*(syntax|check|escape)\s*=", re.IGNORECASE)


def dockerfile_header(bake_file: str, target: str, kind: str) -> str:
    """The first comment of a generated Dockerfile; ``GENERATED`` + the bake file's name marks the files
    ``generate`` may remove once their target is gone."""
    return f"# {GENERATED} {bake_file} (target {target}) from {DOCKERFILE_TEMPLATES[kind]}.\n"


def render_dockerfiles(
    plan: BakePlan, header: Header, bake_file: str, project_dir: Path, env: jinja2.Environment | None = None
) -> dict[str, str]:
    """Each target's Dockerfile, by its path relative to the bake file. Parser directives (``# check=``)
    stay on the first lines, where BuildKit reads them; the header follows them."""
    env = env or environment(project_dir)
    texts = {shape: render_dockerfile(shape, project_dir, env) for shape in plan.shapes}
    files = {}
    for target in plan.targets:
        lines = texts[target.shape].splitlines(keepends=True)
        directives = 0
        while directives < len(lines) and _DIRECTIVE.match(lines[directives]):
            directives += 1
        head = dockerfile_header(bake_file, target.name, target.kind)
        head += f"# Edits here are lost. Regenerate with: {header.command}\n"
        text = "".join([*lines[:directives], head, *lines[directives:]])
        files[target.dockerfile] = text if text.endswith("\n") else text + "\n"
    return files


class _YamlDumper(yaml.SafeDumper):
    """Block style for multi-line strings (readable Dockerfiles), escaped everything else, no anchors."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and value == value.strip(" ") and "\t" not in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_YamlDumper.add_representer(str, _represent_str)


def render_yaml(data: object, header: Header) -> str:
    """``data`` as a YAML document that loads back equal, after a header saying how to regenerate it."""
    body = yaml.dump(data, Dumper=_YamlDumper, sort_keys=False, allow_unicode=False, width=1000)
    if yaml.safe_load(body) != data:
        msg = "internal error: the YAML writer did not round-trip; please report this with the catalog"
        raise TemplateError(msg)
    return f"# {header.title}\n{REGENERATE}{header.command}\n{body}"
