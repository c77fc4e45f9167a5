"""``ci merge``: the parts of a base built one platform per build (their summaries) -> one index per base under its
tags, and the summary ``--bases-from`` takes. ``create`` is a fake here; the real merge runs in
tests/integration/test_ci_fan_out.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llama_bake.buildx.merge import merge
from llama_bake.buildx.pinned import read_bases_from
from llama_bake.buildx.progress import Progress
from llama_bake.buildx.summary import summarize
from llama_bake.cli import main
from llama_bake.project import Paths, compile_catalog
from tests.conftest import BASE, WriteCatalog

REPO = "127.0.0.1:5000/lb/cuda"
TAGS = [f"{REPO}:latest", f"{REPO}:sha-0123456"]
INDEX = "sha256:" + "1" * 64


def _digest(arch: str) -> str:
    return "sha256:" + ("a" if arch == "amd64" else "b") * 64


def _part(tmp_path: Path, arch: str, *, status: str = "built", pushed: bool = True) -> Path:
    """What `llama-bake build cuda --platform linux/ARCH --push --summary-json FILE` writes (the fields read)."""
    target = {
        "name": "cuda",
        "image": REPO,
        "digest": _digest(arch),
        "status": status,
        "platforms": [f"linux/{arch}"],
        "merge_tags": TAGS,
        "merge_platforms": ["linux/amd64", "linux/arm64"],
    }
    path = tmp_path / f"{arch}.json"
    path.write_text(json.dumps({"pushed": pushed, "targets": [target]}), encoding="utf-8")
    return path


def test_the_parts_become_one_index_under_every_tag_and_models_build_on_it(tmp_path: Path) -> None:
    made: list[tuple[list[str], list[str]]] = []

    def create(sources: list[str], tags: list[str]) -> str:
        made.append((sources, tags))
        return INDEX

    summary, problems = merge([_part(tmp_path, "arm64"), _part(tmp_path, "amd64")], create, "b")
    assert problems == []
    assert made == [([f"{REPO}@{_digest('amd64')}", f"{REPO}@{_digest('arm64')}"], TAGS)], "in the catalog's order"
    [row] = summary.targets
    assert (row.name, row.digest, row.platforms, row.image) == ("cuda", INDEX, ("linux/amd64", "linux/arm64"), TAGS[0])
    merged = tmp_path / "merged.json"
    merged.write_text(summary.to_json(), encoding="utf-8")
    [pinned] = read_bases_from(merged)
    assert (pinned.image, pinned.problem) == (f"{REPO}@{INDEX}", "")
    [part] = read_bases_from(tmp_path / "arm64.json")
    assert "merge its platforms first" in part.problem, "a part alone is not the base"


@pytest.mark.parametrize(
    ("parts", "problem"),
    [
        ((("amd64", "built"),), "cuda: no summary has its linux/arm64 part"),
        ((("amd64", "built"), ("arm64", "failed")), "cuda: its linux/arm64 part did not finish (status failed"),
    ],
)
def test_a_platform_missing_or_unfinished_is_named_and_nothing_is_made(
    tmp_path: Path, parts: tuple[tuple[str, str], ...], problem: str
) -> None:
    def create(sources: list[str], tags: list[str]) -> str:
        msg = "no index of some platforms only"
        raise AssertionError(msg)

    summary, problems = merge([_part(tmp_path, arch, status=status) for arch, status in parts], create, "b")
    assert any(p.startswith(problem) for p in problems), problems
    assert [(t.name, t.status, t.digest) for t in summary.targets] == [("cuda", "failed", "")]


def test_ci_merge_with_nothing_pushed_by_digest_merges_nothing(tmp_path: Path) -> None:
    """A pull request's base jobs push nothing (their summaries record no part): nothing to merge, and it says so."""
    summary = tmp_path / "amd64.json"
    summary.write_text(json.dumps({"pushed": False, "targets": [{"name": "cuda", "status": "built"}]}))
    done = CliRunner().invoke(main, ["ci", "merge", str(summary), "--summary-json", str(tmp_path / "m.json")])
    assert done.exit_code == 0, done.output
    assert "nothing to merge" in done.output
    assert json.loads((tmp_path / "m.json").read_text())["targets"] == []


def test_a_failed_part_fails_the_merge_with_exit_6(tmp_path: Path) -> None:
    files = [str(_part(tmp_path, "amd64")), str(_part(tmp_path, "arm64", status="failed"))]
    done = CliRunner().invoke(main, ["ci", "merge", *files, "--summary-json", str(tmp_path / "m.json")])
    assert done.exit_code == 6, done.output
    assert "cuda: its linux/arm64 part did not finish" in done.output


def test_a_part_records_its_platform_and_the_index_it_belongs_to(write_catalog: WriteCatalog) -> None:
    """The summary of `build --platform linux/arm64 --push` of a base of two platforms: that platform alone, and
    the tags (as bake resolves them) and platforms of the index to merge; a build of one platform that pushes
    nothing, or of every platform, records no part."""
    base = {**BASE, "gpu_families": ["hopper"], "platforms": ["linux/amd64", "linux/arm64"]}
    plan = compile_catalog(Paths.from_options(write_catalog(bases={"cuda": base}), None)).plan
    metadata = {"cuda": {"containerimage.digest": _digest("arm64"), "image.name": REPO}}
    values = {"REGISTRY": "127.0.0.1:5000/lb"}

    def row(**kwargs: Any) -> Any:
        [target] = summarize(plan, ["cuda"], Progress({}), metadata, 1.0, "b", tag_values=values, **kwargs).targets
        return target

    part = row(pushed=True, platform="linux/arm64")
    assert (part.image, part.platforms) == (REPO, ("linux/arm64",))
    assert part.merge_tags[0] == f"{REPO}:latest"
    assert part.merge_platforms == ("linux/amd64", "linux/arm64")
    assert row(pushed=False, platform="linux/arm64").merge_tags == ()
    assert row(pushed=True).merge_tags == ()
