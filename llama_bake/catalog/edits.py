"""Changes to the user's catalog files: a new model from the Hub (``add``), pins filled in or moved (``pin``),
a new catalog (``init``). An edit changes only the lines it must: comments, order and quoting stay as written.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_bake.catalog.backends import BACKENDS
from llama_bake.catalog.constants import (
    COMMIT_PATTERN,
    LLAMA_CPP_GIT,
    PLACEHOLDER_REVISION,
    PLACEHOLDER_SHA256,
    SHA256_PATTERN,
)
from llama_bake.catalog.gpus import DEVICE_PLUGIN_NAMES, GPU_FAMILIES, PCI_VENDORS, VULKAN_FAMILIES, family_of
from llama_bake.catalog.hub import HubFile, HubRepo
from llama_bake.errors import CatalogError, UsageError

COMMIT = re.compile(COMMIT_PATTERN)
SHA256 = re.compile(SHA256_PATTERN)


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
    return "\n".join(lines + _settings_lines(repo, settings)) + "\n"


def _settings_lines(repo: HubRepo, settings: dict[str, Any]) -> list[str]:
    lines = []
    if repo.license:
        lines.append(f"license: {json.dumps(repo.license)}  # the Hub's model card")
    if settings.get("delivery"):
        lines.append(f"delivery: {settings['delivery']}")
    if settings.get("ctx_size") is not None:
        lines += ["server:", f"  ctx_size: {settings['ctx_size']}"]
    return lines


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
    def split(self) -> bool:
        return self.files[0].keys.startswith("parts.")

    @property
    def complete(self) -> bool:
        """Commit, checksums and sizes are all written."""
        return self.pinned and all(
            SHA256.fullmatch(f.sha256) and f.sha256 != PLACEHOLDER_SHA256 and f.size.isdigit() for f in self.files
        )

    def revision_to_pin(self, update: bool, branch: str) -> str | None:
        """The revision to look up, or None when nothing needs doing."""
        if update:
            return branch
        if self.complete:
            return None
        if self.pinned:
            return self.revision  # the commit is right; a file's sha256 or size is missing
        return branch if self.revision in ("", PLACEHOLDER_REVISION) else self.revision


def round_trip_yaml() -> Any:
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
        data = round_trip_yaml().load(path.read_text(encoding="utf-8"))
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
    if key == "file" and re.fullmatch(r"\w[\w./-]*\.gguf", value):
        return value  # as `add` writes it
    return value if value in ("true", "false") or key == "size" else _quoted(value)


Edit = tuple[int, bool | None, int, str]  # (line, a new line under it? None: drop it, column, value)


def pin_text(text: str, updates: dict[str, dict[str, str]], counts: Mapping[str, int] | None = None) -> str:
    """``text`` with ``updates`` (field -> key -> new value; a part's key is ``parts.N.sha256``) written in place:
    each changed value is replaced on its own line (keeping its quotes), a missing key is added under the entry's
    last line; every other byte stays. ``counts`` (field -> number of parts) gives a split model another number
    of parts: the parts past it are removed, and new ones are added after the last, written as it is."""
    data = round_trip_yaml().load(text)
    lines = text.splitlines(keepends=True)
    edits: list[Edit] = []
    for field, count in (counts or {}).items():
        edits += _part_count_edits(data[field]["parts"], lines, count, updates[field])
    for field, values in updates.items():
        edits += _value_edits(data[field], values)
    order = sorted(range(len(edits)), key=lambda i: _edit_order(edits[i], i), reverse=True)
    for line, insert, column, value in (edits[i] for i in order):
        if insert is None:
            del lines[line]
        elif insert:
            if not lines[line].endswith("\n"):
                lines[line] += "\n"
            lines.insert(line + 1, " " * column + value + "\n")
        else:
            lines[line] = _replaced(lines[line], column, value)
    return "".join(lines)


def _edit_order(edit: Edit, index: int) -> tuple[int, int, int, int]:
    """Edits are made from the bottom up, so that earlier lines keep their numbers. Under one line, lines are added
    before it is dropped (a key added after a part that goes ends up after the last part that stays), and the
    added lines keep their order, the more indented first (a nested mapping's new key comes before the key that
    ends it)."""
    line, insert, column, _ = edit
    return (line, 1, -column, index) if insert else (line, 0, 0, index)


def _value_edits(entry: Any, values: Mapping[str, str]) -> list[Edit]:
    """Each value replaced where it is written, or added under the last line of its mapping."""
    edits: list[Edit] = []
    for dotted, value in values.items():
        *path, key = dotted.split(".")
        if path[:1] == ["parts"] and int(path[1]) >= len(entry["parts"]):
            continue  # a new part: ``_part_count_edits`` writes it
        node = entry
        for step in path:
            node = node[int(step) if step.isdigit() else step]
        if key in node:
            line, column = node.lc.value(key)
            edits.append((line, False, column, _scalar(key, value)))
        else:  # after the mapping's last line (a nested list's too), indented as its keys
            edits.append((_last_line(node), True, node.lc.key(next(iter(node)))[1], f"{key}: {_scalar(key, value)}"))
    return edits


def _last_line(node: Any) -> int:
    """The last line a mapping or list takes, what is nested in it included (ruamel gives where values start)."""
    lines = [-1]
    if hasattr(node, "items"):
        lines += [max(node.lc.value(k)[0], _last_line(v)) for k, v in node.items()]
    elif isinstance(node, list):
        lines += [max(node.lc.item(i)[0], _last_line(v)) for i, v in enumerate(node)]  # type: ignore[attr-defined]
    return int(max(lines))


def _part_count_edits(parts: Any, lines: list[str], count: int, values: Mapping[str, str]) -> list[Edit]:
    """A split model's parts cut to ``count``, or new ones (from ``values``) after the last, written as it is."""
    edits: list[Edit] = []
    end = max(parts[-1].lc.value(k)[0] for k in parts[-1])  # the last part's last line
    if count < len(parts):
        edits += [(line, None, 0, "") for line in range(parts.lc.item(count)[0], end + 1)]
    line, column = parts.lc.item(len(parts) - 1)
    flow = lines[line][column] == "{"
    dash = " " * lines[line].rindex("-", 0, column)
    for i in range(len(parts), count):
        keys = [f"{k}: {_scalar(k, values[f'parts.{i}.{k}'])}" for k in ("file", "sha256", "size")]
        if flow:
            item = f"- {{{', '.join(keys)}}}"
        else:
            item = f"\n{' ' * column}".join(["-".ljust(column - len(dash)) + keys[0], *keys[1:]])
        edits.append((end, True, len(dash), item))  # at the dash's column: after the last part's own new keys
    return edits


def _replaced(current: str, column: int, value: str) -> str:
    """``current`` with the scalar at ``column`` replaced by ``value``, keeping its quotes."""
    plain = r"[^\s#,}]+" if "{" in current[:column] else r"[^\s#]+"  # in a flow mapping, `,` and `}` end it
    token = re.match(rf'"[^"]*"|\'[^\']*\'|{plain}', current[column:])
    old = token.group(0) if token else ""
    bare = value.strip('"')
    new = f"{old[0]}{bare}{old[0]}" if old[:1] in ('"', "'") and value.startswith('"') else value
    return current[:column] + new + current[column + len(old) :]


# The nvidia/cuda tag `init` writes for the newest CUDA line its families need: 12.8 (the official llama.cpp
# image's) unless a family needs more (gb10: 12.9).
_INIT_CUDA = {(12, 8): "12.8.1", (12, 9): "12.9.1", (13, 0): "13.0.2"}


def _init_cuda(families: list[str]) -> str:
    # An unknown name is left to the catalog's check, which says what it is.
    needed = max([(12, 8)] + [GPU_FAMILIES[f].min_cuda for f in families if f in GPU_FAMILIES])
    return _INIT_CUDA[needed]


@dataclass(frozen=True)
class InitBase:
    backend: str
    families: list[str]
    plugin: str = ""  # a Vulkan base of one device plugin's cards, among others: its resource


def init_bases(families: Mapping[str, list[str]]) -> dict[str, InitBase]:
    """The bases of a new catalog: one per backend of ``families`` (backend -> its families), named
    ``llama-cpp-BACKEND``; Vulkan cards of several device plugins (AMD's, Intel's i915 and xe) get a base per
    plugin (``llama-cpp-vulkan-amd``, ...), since a pod asks for one plugin's GPU (the image is the same: a family
    changes no compile, so a builder runs the bases' identical steps once)."""
    bases: dict[str, InitBase] = {}
    for backend, chosen in families.items():
        plugins: dict[str, list[str]] = {}
        for family in chosen:
            vulkan = VULKAN_FAMILIES.get(family)
            plugins.setdefault(vulkan.kube_resource if vulkan else "", []).append(family)
        if len(plugins) == 1:
            bases[f"llama-cpp-{backend}"] = InitBase(backend, chosen)
            continue
        for plugin, grouped in plugins.items():
            bases[f"llama-cpp-{backend}-{DEVICE_PLUGIN_NAMES[plugin]}"] = InitBase(backend, grouped, plugin)
    return bases


def init_files(bases: Mapping[str, InitBase]) -> dict[str, str]:
    """The files of a new catalog: project settings and ``bases`` (see init_bases: a cuda base compiles for its
    own families, a vulkan base names the cards it is for); no model yet."""
    project = (
        "# Settings shared by every image; REGISTRY and TAG are overridden at build time:\n"
        "#   REGISTRY=ghcr.io/acme TAG=v1 llama-bake build\n"
        "registry: localhost:5000/llama-bake\n"
        "tag: latest\n"
    )
    files = {"project.yaml": project}
    source = f"llama_cpp:\n  git: {LLAMA_CPP_GIT}\n  ref: b6500  # pin a release tag or a commit\n"
    for name, base in bases.items():
        if BACKENDS[base.backend].cuda:
            head = "# llama.cpp compiled with CUDA for the cards this catalog serves.\nbackend: cuda\n"
            tail = f"cuda: {_init_cuda(base.families)}\n"
        else:
            label = base.backend.capitalize()
            if base.plugin:
                head = (
                    f"# llama.cpp compiled with {label} for the cards of the device plugin {base.plugin} this catalog\n"
                    "# serves: a Kubernetes pod asks for one plugin's GPU, so each has a base (the image is the\n"
                    f"# same as the other {label} bases': a builder compiles their identical steps once).\n"
                )
            else:
                head = (
                    f"# llama.cpp compiled with {label} for the AMD and Intel cards this catalog serves\n"
                    "# (its shaders run on any of them; the families say which cards it is for).\n"
                )
            head += f"backend: {base.backend}\n"
            tail = ""
        text = head + source + tail + f"gpu_families: [{', '.join(base.families)}]\n"
        files[f"bases/{name}.yaml"] = text
    several = len(bases) > 1
    add = "`llama-bake add OWNER/REPO:QUANT" + (" --base BASE`" if several else "`")
    readme = f"Models: {add} writes one file here per model.\n"
    if several:
        readme += "With several bases, each model names the one it is built on (`base:` in its file).\n"
    files["models/README.md"] = readme
    return files


def detect_families(run: Callable[[list[str]], str] | None = None) -> list[str]:
    """The GPU families of this machine's cards, from ``nvidia-smi``'s compute capabilities ([] without it)."""
    if run is None:
        if shutil.which("nvidia-smi") is None:
            return []

        def run(argv: list[str]) -> str:
            done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
            return done.stdout if done.returncode == 0 else ""

    out = run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"])
    found: list[str] = []
    for line in out.splitlines():
        if not re.fullmatch(r"\s*\d+\.\d\s*", line):
            continue
        family = family_of(line.strip())
        if family is None:
            msg = f"nvidia-smi reports compute capability {line.strip()}, which no GPU family has; pass --gpu"
            raise UsageError(msg)
        if family not in found:
            found.append(family)
    return found


DRM = Path("/sys/class/drm")


def render_vendors(drm: Path = DRM) -> list[str]:
    """The makers of this machine's GPUs that have a render node (AMD, Intel, NVIDIA), from the kernel's PCI vendor
    ids, in the order of their nodes and once each; [] without any. No family: a PCI device id does not say one."""
    found: list[str] = []
    try:
        nodes = sorted(drm.glob("renderD*"))
    except OSError:
        return []
    for node in nodes:
        try:
            vendor = PCI_VENDORS.get(int((node / "device" / "vendor").read_text(encoding="ascii").strip(), 16))
        except (OSError, ValueError):
            continue
        if vendor is not None and vendor not in found:
            found.append(vendor)
    return found
