"""Bases built elsewhere: ``--base-image BASE=IMAGE@sha256:DIGEST`` and ``--bases-from SUMMARY.json`` (a base
build's ``--summary-json``) -> ``PinnedBase`` values. A build's models then build on those exact images, as the
second of two phases does, and the bases themselves are not built (a CI base job, then model jobs on other
runners). Reads the summary files; nothing else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_bake.errors import UsageError, did_you_mean
from llama_bake.plan.ir import BakePlan

PINNED_IMAGE = re.compile(r"[^\s@=]+@sha256:[0-9a-f]{64}")
DONE_STATUSES = ("built", "cached")  # summary.DONE, as the summary file spells it


def repository_of(image: str) -> str:
    """``host:port/name:tag`` -> ``host:port/name``."""
    head, _, last = image.rpartition("/")
    return (f"{head}/" if head else "") + last.split(":", 1)[0].split("@", 1)[0]


@dataclass(frozen=True)
class PinnedBase:
    """A base built elsewhere: its models build on ``image`` (``REPO@sha256:...``) and the base is not built.
    ``problem`` says why a summary file gave no usable image for it (the base failed, or its build pushed
    nothing): a build that needs that base is refused before any step."""

    name: str
    image: str
    origin: str  # where it was given: `--base-image`, or the summary file's path
    problem: str = ""

    @classmethod
    def parse(cls, spec: str) -> PinnedBase:
        """``--base-image BASE=IMAGE@sha256:DIGEST``."""
        name, sep, image = spec.partition("=")
        if not sep or not name or PINNED_IMAGE.fullmatch(image) is None:
            msg = (
                f"--base-image {spec!r}: write BASE=IMAGE@sha256:DIGEST (a pushed image pinned by its digest, "
                "e.g. llama-cpp-cuda=ghcr.io/acme/llama-cpp-cuda@sha256:0123...)"
            )
            raise UsageError(msg)
        return cls(name, image, "--base-image")

    @property
    def digest(self) -> str:
        return self.image.rpartition("@")[2]

    @property
    def source(self) -> str:
        """As the named-context source of its models' ``base`` context."""
        return f"docker-image://{self.image}"


def read_summary_file(path: Path, where: str) -> tuple[list[Any], bool]:
    """The ``targets`` of a ``build --summary-json`` file and whether that build pushed; a file that is not one is
    a usage error that starts with ``where`` (the option or the file that named it)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{where}: cannot read a build summary: {exc}"
        raise UsageError(msg) from exc
    targets = data.get("targets") if isinstance(data, dict) else None
    if not isinstance(targets, list):
        msg = f"{where}: not a `llama-bake build --summary-json` file (it has no `targets` list)"
        raise UsageError(msg)
    return targets, data.get("pushed") is True


def read_bases_from(path: Path) -> list[PinnedBase]:
    """Every target of a ``build --summary-json`` file as a ``PinnedBase`` (a build keeps those that are bases of
    its catalog): its image by digest when that build pushed it and it finished, else the problem."""
    targets, pushed = read_summary_file(path, f"--bases-from {path}")
    found = []
    for item in targets:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        status, digest, image = (str(item.get(key) or "") for key in ("status", "digest", "image"))
        pinned = f"{repository_of(image)}@{digest}" if image and digest else ""
        problem = ""
        if item.get("merge_tags"):
            platforms = ", ".join(map(str, item.get("platforms") or ()))
            problem = (
                f"that build pushed its {platforms} image alone, by digest: merge its platforms first "
                "(`llama-bake ci merge SUMMARY...`) and give the merge's summary"
            )
        elif status not in DONE_STATUSES:
            problem = f"it did not build there (status: {status or 'none'})"
        elif not pushed:
            problem = "that build pushed nothing (build the base with --push)"
        elif PINNED_IMAGE.fullmatch(pinned) is None:
            problem = "it records no digest for it"
        found.append(PinnedBase(item["name"], "" if problem else pinned, str(path), problem))
    return found


def pinned_bases(specs: Iterable[str], files: Iterable[Path]) -> tuple[PinnedBase, ...]:
    """``--bases-from`` files in order, then the ``--base-image`` values, which win over a file for one base."""
    found: dict[str, PinnedBase] = {}
    for path in files:
        for pinned in read_bases_from(path):
            if pinned.name not in found or not pinned.problem:  # a base another file gave stays given
                found[pinned.name] = pinned
    for spec in specs:
        pinned = PinnedBase.parse(spec)
        found[pinned.name] = pinned
    return tuple(found.values())


def given_bases(base_images: Iterable[PinnedBase], plan: BakePlan) -> dict[str, PinnedBase]:
    """The bases given as built elsewhere that ``plan`` has; a ``--base-image`` naming no base of it is a usage
    error (a summary file lists its models too: those are left out)."""
    bases = [t.name for t in plan.targets if t.kind == "base"]
    found = {}
    for pinned in base_images:
        if pinned.name in bases:
            found[pinned.name] = pinned
        elif pinned.origin == "--base-image":
            hint = did_you_mean(pinned.name, bases)
            msg = f"--base-image {pinned.name}=...: the catalog has no base `{pinned.name}`" + (
                f"; {hint}" if hint else f" (its bases: {', '.join(bases) or 'none'})"
            )
            raise UsageError(msg)
    return found


def refuse_unusable(given: dict[str, PinnedBase], plan: BakePlan, targets: list[str], phases: str) -> None:
    """Before any step: a base given as built elsewhere that the build of ``targets`` (with their bases) needs
    must come with a pushed image, and there must be something left to build."""
    needed = {name: pinned for name, pinned in given.items() if name in targets}
    if not needed:
        return
    if phases == "one":
        msg = "--phases one builds the bases with their models; with --base-image or --bases-from leave it out"
        raise UsageError(msg)
    unusable = [f"`{name}` (from {p.origin}): {p.problem}" for name, p in needed.items() if p.problem]
    if unusable:
        msg = (
            "cannot build on a base that no finished build pushed: "
            + "; ".join(unusable)
            + ". Build and push the base first (`llama-bake build BASE --push --summary-json FILE`), or give its "
            "image with --base-image BASE=IMAGE@sha256:DIGEST"
        )
        raise UsageError(msg)
    if all(plan.target(t).kind == "base" and t in needed for t in targets):
        msg = f"nothing to build: {', '.join(needed)} given as built elsewhere, and no model of it asked for"
        raise UsageError(msg)
