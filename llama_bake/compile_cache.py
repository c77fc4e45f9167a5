"""The compile cache: a compiled catalog is kept per content, so an unchanged catalog is not loaded, planned
or rendered again (a no-op ``generate`` or ``build`` then imports neither pydantic's catalog models nor Jinja).

The key covers every input of a compile: the catalog's files, the templates the project and llama-bake
provide, llama-bake's own code (size and time of each module, so an edited checkout compiles again) and the
paths. A cache that cannot be read or written is skipped: the compile runs as if there were none.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path

from llama_bake.render.locations import BAKE_TEMPLATE, PACKAGED_TEMPLATES

FORMAT = 1
KEEP = 64  # entries; the oldest are removed


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llama-bake" / "compiled"


def _templates(directory: Path) -> list[Path]:
    found = [directory / BAKE_TEMPLATE] if (directory / BAKE_TEMPLATE).is_file() else []
    templates = directory / "templates"
    return found + (sorted(templates.glob("*.j2")) if templates.is_dir() else [])


def compile_key(catalog: Path, project: Path, output: Path) -> str:
    digest = hashlib.sha256(f"{FORMAT}\0{catalog}\0{project}\0{output}\0".encode())
    for module in sorted(Path(__file__).parent.rglob("*.py")):
        stat = module.stat()
        digest.update(f"{module.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    files = sorted(p for p in catalog.rglob("*") if p.is_file()) if catalog.is_dir() else []
    for root, paths in (
        ("catalog", files),
        ("project", _templates(project)),
        ("packaged", _templates(PACKAGED_TEMPLATES)),
    ):
        for path in paths:
            digest.update(f"{root}\0{path.as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def enabled() -> bool:
    """LLAMA_BAKE_COMPILE_CACHE=0 turns the cache off (every run compiles; the benchmarks measure that)."""
    return os.environ.get("LLAMA_BAKE_COMPILE_CACHE", "1") != "0"


def load(key: str) -> object | None:
    """The entry of ``key`` (the user's own cache, written by ``store``), or None."""
    if not enabled():
        return None
    try:
        with (cache_dir() / f"{key}.pickle").open("rb") as handle:
            value: object = pickle.load(handle)  # noqa: S301 - only this user's own cache entries, written by `store` and keyed by content
    except Exception:  # noqa: BLE001 - a missing, partial or outdated entry, whatever unpickling raises: compile again
        return None
    return value


def store(key: str, value: object) -> None:
    if not enabled():
        return
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", dir=directory)
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
        Path(tmp).replace(directory / f"{key}.pickle")
        entries = sorted(directory.glob("*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:
        return
