"""``add``, ``pin`` and ``init``: a model added from the Hub with its pins, pins filled in or moved, a new catalog.
Each writes the user's files through ``edits`` (comments and layout kept) and leaves nothing behind that would not
load."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llama_bake.catalog import hub
from llama_bake.catalog.constants import HF_ENDPOINT, HUB_BRANCH
from llama_bake.catalog.edits import (
    InitBase,
    detect_families,
    init_bases,
    init_files,
    model_text,
    pin_text,
    read_pins,
    render_vendors,
)
from llama_bake.catalog.gpus import VENDOR_EXAMPLES, card_of, family_hint, known_families
from llama_bake.catalog.loader import load_catalog
from llama_bake.errors import CatalogError, UsageError
from llama_bake.files import unified_diff, write_atomic


def _hf_endpoint(catalog: Path) -> str:
    """``project.hf_endpoint``, read as written (pin runs on catalogs that do not validate yet)."""
    for name in ("project.yaml", "project.yml"):
        path = catalog / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError:
                break
            if isinstance(data, dict) and isinstance(data.get("hf_endpoint"), str):
                return str(data["hf_endpoint"]).rstrip("/")
    return HF_ENDPOINT


@dataclass(frozen=True)
class Added:
    path: Path
    name: str
    commit: str
    weights: tuple[str, ...]  # a split model's parts in order
    mmproj: str | None


def add_model(catalog: Path, text: str, settings: dict[str, Any]) -> Added:
    """``llama-bake add``: resolve ``text`` on the Hub and write ``catalog/models/NAME.yaml`` with its pins;
    an existing file is never overwritten, and a file that would not validate is not left behind."""

    spec = hub.Spec.parse(text)
    repo = hub.fetch(spec.repo, settings.get("revision") or HUB_BRANCH, _hf_endpoint(catalog))
    weights = hub.choose(repo, spec)
    mmproj = None if settings.get("no_mmproj") else hub.choose_mmproj(repo, settings.get("mmproj"))
    name = settings.get("name") or hub.model_name(spec.repo)
    target = catalog / "models" / f"{name}.yaml"
    if target.exists():
        msg = f"{target} exists; pass --name for another model, or `llama-bake pin {name} --update` to move its pins"
        raise UsageError(msg)
    written = model_text(text, repo, weights, mmproj, {**settings, "name": settings.get("name")})
    write_atomic(target, written)
    try:
        load_catalog(catalog)
    except CatalogError:
        target.unlink()
        raise
    return Added(target, name, repo.commit, tuple(w.path for w in weights), mmproj.path if mmproj else None)


@dataclass(frozen=True)
class Pinned:
    path: Path
    diff: str
    notes: tuple[str, ...] = ()  # what the diff does not say at a glance (a split model's new number of parts)


def pin_models(catalog: Path, names: Sequence[str], *, update: bool, branch: str) -> list[Pinned]:
    """``llama-bake pin``: fill in (or with ``update`` move) the revision and sha256 of each named model's
    Hugging Face files (every model when none is named); each file keeps its comments and layout."""
    models_dir = catalog / "models"
    files = sorted(p for p in models_dir.glob("*.y*ml")) if models_dir.is_dir() else []
    if names:
        by_name = {p.stem: p for p in files}
        missing = [n for n in names if n not in by_name]
        if missing:
            msg = f"no model file for {', '.join(missing)} in {models_dir}"
            raise UsageError(msg)
        files = [by_name[n] for n in names]
    endpoint = _hf_endpoint(catalog)
    looked_up: dict[tuple[str, str], hub.HubRepo] = {}

    def fetch(repo: str, revision: str) -> hub.HubRepo:
        if (repo, revision) not in looked_up:
            looked_up[repo, revision] = hub.fetch(repo, revision, endpoint)
        return looked_up[repo, revision]

    results = []
    for path in files:
        pinned = _pin_file(path, fetch, update=update, branch=branch)
        if pinned is not None:
            results.append(pinned)
    return results


def _pin_file(path: Path, fetch: Callable[[str, str], hub.HubRepo], *, update: bool, branch: str) -> Pinned | None:
    """One model file's pins filled in or moved; None when nothing changed."""
    updates: dict[str, dict[str, str]] = {}
    counts: dict[str, int] = {}  # field -> its new number of parts
    notes: list[str] = []
    weights_at: tuple[str, str] | None = None  # where the model card that names the license is
    for entry in read_pins(path):
        revision = entry.revision_to_pin(update, branch)
        if entry.field == "weights":
            weights_at = (entry.repo, entry.revision)
        if revision is None:
            continue
        repo = fetch(entry.repo, revision)
        if entry.field == "weights":
            weights_at = (entry.repo, repo.commit)
        keys = [item.keys for item in entry.files]
        present = {f.path for f in repo.files}
        if entry.split and any(item.file not in present for item in entry.files):
            # The same quantisation, cut into another number of parts at this revision.
            found = hub.split_set(repo, entry.files[0].file)
            keys = [f"parts.{i}." for i in range(len(found))]
            counts[entry.field] = len(found)
            notes.append(
                f"{path.stem}: {entry.field}: {entry.repo} at {repo.commit[:12]} has "
                f"{hub.SPLIT.sub('', found[0].path)} in {len(found)} parts, was {len(entry.files)}"
            )
        else:
            found = tuple(repo.file(item.file) for item in entry.files)
        values = {"revision": repo.commit} | ({"gated": "true"} if repo.gated else {})
        for prefix, item in zip(keys, found, strict=True):
            values |= {f"{prefix}file": item.path, f"{prefix}sha256": item.sha256, f"{prefix}size": str(item.size)}
        written: dict[str, str | None] = {"revision": entry.revision}
        for pin in entry.files:
            written |= {f"{pin.keys}file": pin.file, f"{pin.keys}sha256": pin.sha256, f"{pin.keys}size": pin.size}
        changed = {k: v for k, v in values.items() if written.get(k) != v}
        if changed:
            updates[entry.field] = changed
    old = path.read_text(encoding="utf-8")
    new = pin_text(old, updates, counts) if updates else old
    new += _license_line(old, weights_at, fetch)
    if new == old:
        return None
    diff = unified_diff(path, old, new)
    write_atomic(path, new)
    return Pinned(path, diff, tuple(notes))


def _license_line(text: str, weights_at: tuple[str, str] | None, fetch: Callable[[str, str], hub.HubRepo]) -> str:
    """``license: ...`` from the model card of the weights' repository, for a model file that names none."""
    data = yaml.safe_load(text) or {}
    if weights_at is None or not isinstance(data, dict) or "license" in data:
        return ""
    found = fetch(*weights_at).license
    if not found:
        return ""
    return ("" if text.endswith("\n") else "\n") + f"license: {json.dumps(found)}  # the Hub's model card\n"


def chosen_families(words: Sequence[str]) -> dict[str, list[str]]:
    """``init --gpu``'s words (families, card names as people type them, compute capabilities) -> each backend's
    families, backends in the order of their first card, families in order and once each; a word that names none
    is refused with what can be written."""
    chosen: dict[str, list[str]] = {}
    for word in words:
        found = card_of(word)
        if found is None:
            msg = f"--gpu {word!r}: {family_hint(word)}. Known: {known_families()}"
            raise UsageError(msg)
        backend, family = found
        if family not in chosen.setdefault(backend, []):
            chosen[backend].append(family)
    return chosen


@dataclass(frozen=True)
class Initialised:
    written: list[Path]
    # each base written -> its backend and the families it is for, from --gpu's words or this machine's cards
    bases: dict[str, InitBase]


NO_GPU = (
    "no NVIDIA GPU found here (no nvidia-smi): name the cards with --gpu, e.g. "
    + ", ".join(f"--gpu '{card}'" for card in VENDOR_EXAMPLES.values())
    + " or a family (--gpu ada)"
)


def no_gpu_message(vendors: Sequence[str]) -> str:
    """Why init found no family here, with the GPUs' makers the kernel shows (``render_vendors``): it sees an AMD or
    Intel card (or an NVIDIA one without nvidia-smi) but not its family, which the user names."""
    if not vendors:
        return NO_GPU
    seen = " and ".join(f"an {v} GPU" for v in vendors)
    examples = ", ".join(f"--gpu '{VENDOR_EXAMPLES[v]}'" for v in vendors)
    if list(vendors) == ["NVIDIA"]:
        why = "no nvidia-smi reads its compute capability"
    else:
        why = "their families are not read from here" if len(vendors) > 1 else "its family is not read from here"
    return (
        f"this machine has {seen} (a render node in /dev/dri), but {why}: name the cards with --gpu, "
        f"e.g. {examples}, or a family (an unknown name lists them)"
    )


def init_catalog(
    directory: Path, words: Sequence[str], vendors: Callable[[], list[str]] = render_vendors
) -> Initialised:
    """``llama-bake init``: a new catalog in ``directory/catalog`` with a base per backend of the cards named
    (NVIDIA cards: a cuda base; AMD and Intel cards: a vulkan base), or of this machine's NVIDIA cards."""

    catalog = directory / "catalog"
    if catalog.exists():
        msg = f"{catalog} exists; `llama-bake add` adds models to it"
        raise UsageError(msg)
    chosen = chosen_families(words)
    if not chosen:
        detected = detect_families()
        chosen = {"cuda": detected} if detected else {}
    if not chosen:
        raise UsageError(no_gpu_message(vendors()))
    bases = init_bases(chosen)
    written = []
    for name, text in init_files(bases).items():
        write_atomic(catalog / name, text)
        written.append(catalog / name)

    try:
        load_catalog(catalog)
    except CatalogError:
        shutil.rmtree(catalog)
        raise
    return Initialised(written, bases)
