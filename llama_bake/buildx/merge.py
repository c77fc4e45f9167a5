"""``ci merge``: a target of several platforms built in parts, one platform each (``build --platform PLATFORM
--push``: one CI job per platform, each on its own runner, each part pushed by digest with no tag) -> one image
index per target, written under every tag a build of all its platforms writes, and a summary that
``build --bases-from`` takes (the index's digest), so that models build on the exact index.

Reads the parts' ``--summary-json`` files; the index is made by ``docker buildx imagetools create`` (``Create``),
which copies no layer: the index only names each platform's manifest, as pushed.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_bake.buildx.pinned import DONE_STATUSES, read_summary_file, repository_of
from llama_bake.buildx.summary import Summary, TargetSummary
from llama_bake.errors import DockerError

# (the sources, REPO@sha256:..., and the tags) -> the digest of the index written under every tag
Create = Callable[[list[str], list[str]], str]


@dataclass(frozen=True)
class Part:
    """One platform of a target, as the summary of the build that pushed it says."""

    file: str
    name: str
    platform: str
    source: str  # REPO@sha256:..., "" when that build pushed nothing usable
    status: str
    tags: tuple[str, ...]
    platforms: tuple[str, ...]  # every platform the target's index is to have


def read_parts(files: Sequence[Path]) -> list[Part]:
    """Every target a summary file records as one platform's part (``merge_tags``), in file order."""
    parts = []
    for path in files:
        targets, pushed = read_summary_file(path, str(path))
        for item in targets:
            if isinstance(item, dict) and item.get("merge_tags") and isinstance(item.get("name"), str):
                parts.append(_part(str(path), item, pushed=pushed))
    return parts


def _part(file: str, item: dict[str, Any], *, pushed: bool) -> Part:
    image, digest = str(item.get("image") or ""), str(item.get("digest") or "")
    platforms = [str(p) for p in item.get("platforms") or ()]
    return Part(
        file=file,
        name=item["name"],
        platform=platforms[0] if len(platforms) == 1 else ",".join(platforms),
        source=f"{repository_of(image)}@{digest}" if pushed and image and digest.startswith("sha256:") else "",
        status=str(item.get("status") or "none"),
        tags=tuple(map(str, item["merge_tags"])),
        platforms=tuple(map(str, item.get("merge_platforms") or ())),
    )


def _problems(name: str, parts: dict[str, Part]) -> list[str]:
    first = next(iter(parts.values()))
    problems = [
        f"{name}: its {p.platform} part did not finish (status {p.status}, in {p.file})"
        for p in parts.values()
        if p.status not in DONE_STATUSES or not p.source
    ]
    problems += [
        f"{name}: no summary has its {platform} part (that platform's build did not run, or wrote no summary)"
        for platform in first.platforms
        if platform not in parts
    ]
    problems += [
        f"{name}: {p.file} has a {p.platform} part, not a platform of its index ({', '.join(first.platforms)})"
        for p in parts.values()
        if p.platform not in first.platforms
    ]
    return problems


def merge(files: Sequence[Path], create: Create, builder: str) -> tuple[Summary, list[str]]:
    """Each target's parts -> its index (``create``); the summary of what was merged, and what could not be
    (a part missing or unfinished: that target is ``failed``, the others are merged all the same)."""
    started = time.monotonic()
    grouped: dict[str, dict[str, Part]] = {}
    for part in read_parts(files):
        grouped.setdefault(part.name, {})[part.platform] = part
    rows, problems = [], []
    for name, parts in grouped.items():
        first = next(iter(parts.values()))
        found = _problems(name, parts)
        digest = ""
        if not found:
            try:
                digest = create([parts[p].source for p in first.platforms], list(first.tags))
            except DockerError as exc:
                found.append(f"{name}: {exc}")
        problems += found
        status = "failed" if found else "built" if any(p.status == "built" for p in parts.values()) else "cached"
        rows.append(TargetSummary(name, first.tags[0], digest, status, 0.0, 0, 0, platforms=first.platforms))  # type: ignore[arg-type]
    summary = Summary(tuple(rows), time.monotonic() - started, builder, phases=0, pushed=True)
    return summary, problems


def imagetools_create(builder: str | None) -> Create:
    """``Create`` through ``docker buildx imagetools create`` (``builder``'s registry settings), the digest read
    from its metadata file (the index's descriptor)."""
    from llama_bake.buildx.client import imagetools

    def create(sources: list[str], tags: list[str]) -> str:
        with tempfile.TemporaryDirectory(prefix="llama-bake-") as tmp:
            metadata = Path(tmp) / "metadata.json"
            flags = [arg for tag in tags for arg in ("--tag", tag)]
            imagetools(["create", "--progress", "plain", "--metadata-file", str(metadata), *flags, *sources], builder)
            try:
                digest = str(json.loads(metadata.read_text(encoding="utf-8"))["containerimage.descriptor"]["digest"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                msg = f"docker buildx imagetools create wrote no digest for {tags[0]}: {exc}"
                raise DockerError(msg) from exc
        return digest

    return create
