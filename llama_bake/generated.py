"""The generated set (the bake file and its Dockerfiles) on disk: written, checked against the catalog, or shown
as a diff; Dockerfiles of removed targets (orphans) removed; the Compose and CI files written beside it found by
their header, for ``generate`` to write them again."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from llama_bake.errors import StaleError
from llama_bake.files import read_existing, unified_diff, write_atomic
from llama_bake.plan.ir import GENERATED, REGENERATE
from llama_bake.project import Compiled, Paths, compile_catalog


def orphans(paths: Paths, keep: Iterable[Path]) -> list[Path]:
    """Dockerfiles an earlier ``generate`` wrote for this bake file whose target is gone. A file it did not
    write (no header naming this bake file) is never one."""
    directory = paths.bake_dir / paths.dockerfiles
    if not directory.is_dir():
        return []
    kept = set(keep)
    found = []
    for path in sorted(directory.glob("*.Dockerfile")):
        if path in kept:
            continue
        with path.open(encoding="utf-8", errors="replace") as handle:
            head = [handle.readline() for _ in range(4)]
        if any(line.startswith(f"# {GENERATED} {paths.output.name} ") for line in head):
            found.append(path)
    return found


@dataclass(frozen=True)
class Written:
    """What ``generate`` did to each file of the set."""

    wrote: tuple[Path, ...]
    unchanged: tuple[Path, ...]
    removed: tuple[Path, ...]
    warnings: tuple[str, ...] = ()


def write_compiled(paths: Paths, compiled: Compiled) -> Written:
    """Write the generated set (each file atomically; the catalog was fully checked before) and remove the
    orphans."""
    files = compiled.files(paths)
    changed = {path: write_atomic(path, text) for path, text in files.items()}
    stale = orphans(paths, files)
    for path in stale:
        path.unlink()
    return Written(
        tuple(p for p, c in changed.items() if c), tuple(p for p, c in changed.items() if not c), tuple(stale)
    )


def generate_set(paths: Paths, compiled: Compiled, *, check: bool) -> Written:
    """The bake file and its Dockerfiles: written, or checked."""
    if not check:
        return write_compiled(paths, compiled)
    files = compiled.files(paths)
    stale = [path for path, text in files.items() if read_existing(path) != text] + orphans(paths, files)
    if stale:
        names = ", ".join(os.path.relpath(path, paths.bake_dir) for path in stale)
        msg = f"stale: {names}; run `{paths.regenerate_command()}` and commit the result.\n" + preview_diff(
            paths, compiled
        )
        raise StaleError(msg)
    return Written((), tuple(files), ())


def preview_diff(paths: Paths, compiled: Compiled | None = None) -> str:
    """What ``generate`` would change: a diff per file, and a line per orphan it would remove."""
    compiled = compiled or compile_catalog(paths)
    files = compiled.files(paths)
    parts = [unified_diff(path, read_existing(path), text) for path, text in files.items()]
    parts += [f"{path}: no target uses it any more; generate removes it\n" for path in orphans(paths, files)]
    return "".join(parts)


def preview_text(paths: Paths) -> str:
    """The bake file, then each Dockerfile under a ``# ==> path <==`` line."""
    compiled = compile_catalog(paths)
    parts = [compiled.text]
    parts += [f"\n# ==> {name} <==\n{text}" for name, text in compiled.dockerfiles.items()]
    return "".join(parts)


def unpinned_warnings(compiled: Compiled) -> tuple[str, ...]:
    """A line per target whose pins are placeholders (build refuses it until then)."""
    return tuple(t.unpinned for t in compiled.plan.targets if t.unpinned)


COMPANION_FILES = ("compose.yaml", ".github/workflows/llama-bake.yml", ".gitlab-ci.yml", "kube/kustomization.yaml")


def find_companions(paths: Paths) -> list[tuple[Path, list[str]]]:
    """The Compose and CI files at their default places beside the bake file, each with the command line its
    header says wrote it (the words after ``llama-bake``); the CLI parses them with the command's own options."""
    found = []
    for name in COMPANION_FILES:
        path = paths.bake_dir / name
        head = (read_existing(path) or "").splitlines()[:3]
        line = next((x for x in head if x.startswith(f"{REGENERATE}llama-bake ")), None)
        if line is not None:
            found.append((path, shlex.split(line.removeprefix(f"{REGENERATE}llama-bake "))))
    return found


# Writes (or checks) one Compose or CI file by its header's command: (path, changed), or None when not ours.
Regenerate = Callable[[Path, list[str]], "tuple[Path, bool] | None"]


def generate(paths: Paths, regenerate: Regenerate, *, check: bool) -> Written:
    """The bake file, the Dockerfiles, and the Compose, CI and Kubernetes files an earlier command wrote at their
    default places (each by ``regenerate``, which parses its header's command). With ``check``, write nothing and raise
    ``StaleError`` naming every stale file, not only the first."""
    compiled = compile_catalog(paths)
    companions = find_companions(paths)
    stale: list[str] = []
    written = Written((), (), ())
    try:
        written = generate_set(paths, compiled, check=check)
    except StaleError as exc:
        stale.append(str(exc))
    wrote, unchanged = list(written.wrote), list(written.unchanged)
    for path, words in companions:
        try:
            result = regenerate(path, words)
        except StaleError as exc:
            stale.append(str(exc))
            continue
        if result is not None:
            (wrote if result[1] else unchanged).append(result[0])
    if stale:
        raise StaleError("\n".join(stale))
    return Written(tuple(wrote), tuple(unchanged), written.removed, unpinned_warnings(compiled))
