"""Changes to the user's catalog files: a new model from the Hub (``add``), pins filled in or moved (``pin``),
a new catalog (``init``). An edit changes only the lines it must: comments, order and quoting stay as written.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_bake.catalog import PLACEHOLDER_REVISION, PLACEHOLDER_SHA256
from llama_bake.errors import CatalogError, UsageError
from llama_bake.hub import HubFile, HubRepo

Fetch = Callable[[str, str], HubRepo]  # (repo, revision) -> the repo at that revision
COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")


def _quoted(value: str) -> str:
    return f'"{value}"'


def model_text(
    spec: str,
    repo: HubRepo,
    weights: tuple[HubFile, ...],
    mmproj: HubFile | None,
    settings: dict[str, Any],
) -> str:
    """A new model file: its pins from the Hub, then the settings given (base, delivery, server)."""
    lines = [
        f"# {spec}, pinned by `llama-bake add` to commit {repo.commit[:12]}.",
        "# `llama-bake pin NAME --update` moves it to the repository's newest commit.",
    ]
    if settings.get("name"):
        lines.append(f"name: {settings['name']}")
    if settings.get("base"):
        lines.append(f"base: {settings['base']}")
    for key, files in (("weights", weights), ("mmproj", (mmproj,) if mmproj else ())):
        if not files:
            continue
        lines += [f"{key}:", f"  hf: {repo.repo}"]
        if len(files) == 1:
            lines += [f"  file: {files[0].path}", f"  revision: {_quoted(repo.commit)}"]
            lines += [f"  sha256: {_quoted(files[0].sha256)}", f"  size: {files[0].size}"]
        else:  # a split GGUF: llama-server loads the first part and finds the others beside it
            lines += [f"  revision: {_quoted(repo.commit)}", "  parts:"]
            for item in files:
                lines += [
                    f"    - file: {item.path}",
                    f"      sha256: {_quoted(item.sha256)}",
                    f"      size: {item.size}",
                ]
        if repo.gated:
            lines.append("  gated: true")
    if settings.get("delivery"):
        lines.append(f"delivery: {settings['delivery']}")
    if settings.get("ctx_size") is not None:
        lines += ["server:", f"  ctx_size: {settings['ctx_size']}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PinnedFile:
    """One file of a weights entry as written: where its keys are (``""`` for the entry itself, ``parts.N.`` for
    a part of a split model), its path in the repository, checksum and size."""

    keys: str
    file: str
    sha256: str
    size: str


@dataclass(frozen=True)
class Pin:
    """One weights entry of one model file, and what ``pin`` makes of it."""

    path: Path
    field: str  # weights or mmproj
    repo: str
    files: tuple[PinnedFile, ...]  # one, or every part of a split model
    revision: str  # as written: a commit, a branch, a tag or the placeholder

    @property
    def pinned(self) -> bool:
        return bool(COMMIT.fullmatch(self.revision)) and self.revision != PLACEHOLDER_REVISION

    @property
    def complete(self) -> bool:
        """Commit, checksums and sizes are all written."""
        return self.pinned and all(
            SHA256.fullmatch(f.sha256) and f.sha256 != PLACEHOLDER_SHA256 and f.size.isdigit() for f in self.files
        )

    def to_resolve(self, update: bool, branch: str) -> str | None:
        """The revision to look up, or None when nothing needs doing."""
        if update:
            return branch
        if self.complete:
            return None
        if self.pinned:
            return self.revision  # the commit is right; a file's sha256 or size is missing
        return branch if self.revision in ("", PLACEHOLDER_REVISION) else self.revision


def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.version = (1, 2)  # as the loader reads the catalog
    return yaml


def _pinned_file(keys: str, node: Any) -> PinnedFile | None:
    if not isinstance(node, dict) or "file" not in node:
        return None
    return PinnedFile(keys, str(node["file"]), str(node.get("sha256", "") or ""), str(node.get("size", "") or ""))


def read_pins(path: Path) -> list[Pin]:
    """The Hugging Face weights of a model file, read as written (a branch name is fine here)."""
    try:
        data = _yaml().load(path.read_text(encoding="utf-8"))
    except Exception as exc:  # ruamel's parser errors
        msg = f"{path}: not readable YAML: {exc}"
        raise CatalogError([msg]) from exc
    pins = []
    for field in ("weights", "mmproj"):
        node = data.get(field) if isinstance(data, dict) else None
        if not isinstance(node, dict) or "hf" not in node:
            continue
        parts = node.get("parts")
        if isinstance(parts, list):
            found = [_pinned_file(f"parts.{i}.", part) for i, part in enumerate(parts)]
        else:
            found = [_pinned_file("", node)]
        files = tuple(f for f in found if f is not None)
        if files:
            pins.append(Pin(path, field, str(node["hf"]), files, str(node.get("revision", "") or "")))
    return pins


def _scalar(key: str, value: str) -> str:
    """A value as written into a model file: booleans and sizes plain, hex pins quoted (all digits would read as
    a number)."""
    return value if value in ("true", "false") or key == "size" else _quoted(value)


def pin_text(text: str, updates: dict[str, dict[str, str]]) -> str:
    """``text`` with ``updates`` (field -> key -> new value; a part's key is ``parts.N.sha256``) written in place:
    each changed value is replaced on its own line (keeping its quotes), a missing key is added under the entry's
    last line; every other byte stays."""
    data = _yaml().load(text)
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, bool, int, str]] = []  # (line, a new line under it?, column, value or new line)
    for field, values in updates.items():
        for dotted, value in values.items():
            *path, key = dotted.split(".")
            node = data[field]
            for step in path:
                node = node[int(step) if step.isdigit() else step]
            if key in node:
                line, column = node.lc.value(key)
                edits.append((line, False, column, _scalar(key, value)))
            else:  # indented as the entry's keys
                last = max(node.lc.value(k)[0] for k in node)
                edits.append((last, True, node.lc.key(next(iter(node)))[1], f"{key}: {_scalar(key, value)}"))
    # From the bottom up, so that earlier lines keep their numbers; lines added under one line keep their order.
    order = sorted(range(len(edits)), key=lambda i: (edits[i][0], i), reverse=True)
    for line, insert, column, value in (edits[i] for i in order):
        if insert:
            if not lines[line].endswith("\n"):
                lines[line] += "\n"
            lines.insert(line + 1, " " * column + value + "\n")
            continue
        current = lines[line]
        token = re.match(r'"[^"]*"|\'[^\']*\'|[^\s#]+', current[column:])
        old = token.group(0) if token else ""
        bare = value.strip('"')
        new = f"{old[0]}{bare}{old[0]}" if old[:1] in ('"', "'") and value.startswith('"') else value
        lines[line] = current[:column] + new + current[column + len(old) :]
    return "".join(lines)


# The nvidia/cuda tag `init` writes for the newest CUDA line its families need: 12.8 (the official llama.cpp
# image's) unless a family needs more (gb10: 12.9).
_INIT_CUDA = {(12, 8): "12.8.1", (12, 9): "12.9.1", (13, 0): "13.0.2"}


def _init_cuda(families: list[str]) -> str:
    from llama_bake.catalog import GPU_FAMILIES

    # An unknown name is left to the catalog's check, which says what it is.
    needed = max([(12, 8)] + [GPU_FAMILIES[f].min_cuda for f in families if f in GPU_FAMILIES])
    return _INIT_CUDA[needed]


def init_files(families: list[str]) -> dict[str, str]:
    """The files of a new catalog: project settings and one CUDA base for ``families``; no model yet."""
    project = (
        "# Settings shared by every image; REGISTRY and TAG are overridden at build time:\n"
        "#   REGISTRY=ghcr.io/acme TAG=v1 llama-bake build\n"
        "registry: localhost:5000/llama-bake\n"
        "tag: latest\n"
    )
    base = (
        "# llama.cpp compiled with CUDA for the cards this catalog serves.\n"
        "backend: cuda\n"
        "llama_cpp:\n"
        "  git: https://github.com/ggml-org/llama.cpp.git\n"
        "  ref: b6500  # pin a release tag or a commit\n"
        f"cuda: {_init_cuda(families)}\n"
        f"gpu_families: [{', '.join(families)}]\n"
    )
    readme = "Models: `llama-bake add OWNER/REPO:QUANT` writes one file here per model.\n"
    return {"project.yaml": project, "bases/llama-cpp-cuda.yaml": base, "models/README.md": readme}


def detect_families(run: Callable[[list[str]], str] | None = None) -> list[str]:
    """The GPU families of this machine's cards, from ``nvidia-smi``'s compute capabilities ([] without it)."""
    from llama_bake.catalog import GPU_FAMILIES

    if run is None:
        if shutil.which("nvidia-smi") is None:
            return []

        def run(argv: list[str]) -> str:
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
            return done.stdout if done.returncode == 0 else ""

    out = run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"])
    found: list[str] = []
    for line in out.splitlines():
        match = re.fullmatch(r"\s*(\d+)\.(\d)\s*", line)
        if not match:
            continue
        capability = int(match.group(1) + match.group(2))
        family = next((f.name for f in GPU_FAMILIES.values() if f.compute_capability == capability), None)
        if family is None:
            msg = f"nvidia-smi reports compute capability {line.strip()}, which no GPU family has; pass --gpu"
            raise UsageError(msg)
        if family not in found:
            found.append(family)
    return found
