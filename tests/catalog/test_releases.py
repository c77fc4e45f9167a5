"""``llama-bake pin BASE``: a base's llama.cpp ref moved to a release tag, asked of git itself.

The remote is a local bare repository with release tags; the base names GitHub's URL, and a git config
(``url.<bare>.insteadOf``) points git at the bare repository, as a user's mirror would.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llama_bake.catalog.releases import Refs
from llama_bake.cli import main

UPSTREAM = "https://github.com/ggml-org/llama.cpp.git"
TAGS = ("b99", "b100", "b999", "b1000", "b1001-rc1", "v0.0.1-beta")
BASE_TEXT = """\
# The CUDA base: keep this comment.
backend: cuda
llama_cpp:
  git: https://github.com/ggml-org/llama.cpp.git
  ref: "b99"  # pinned by hand, quoted
cuda: 12.8.1
gpu_families: [ada]  # RTX 40
"""


# The repository's own identity: a new machine has no global git user, and an annotated tag needs a tagger.
IDENTITY = {
    f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER") for what, value in (("NAME", "t"), ("EMAIL", "t@t"))
}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **IDENTITY})


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bare = tmp_path / "llama.cpp.git"
    work = tmp_path / "work"
    work.mkdir()
    git("init", "--bare", "-q", str(bare), cwd=tmp_path)
    git("init", "-q", "-b", "master", cwd=work)
    for tag in TAGS:
        (work / "VERSION").write_text(tag)
        git("add", "VERSION", cwd=work)
        git("commit", "-q", "-m", tag, cwd=work)
        git("tag", "-a", "-m", tag, tag, cwd=work)  # annotated: ls-remote lists them peeled too
    git("push", "-q", "--tags", str(bare), "master", cwd=work)
    config = tmp_path / "gitconfig"
    config.write_text(f'[url "{bare.as_uri()}"]\n\tinsteadOf = {UPSTREAM}\n', encoding="utf-8")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return bare


@pytest.fixture
def base_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog" / "bases" / "llama-cpp-cuda.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(BASE_TEXT, encoding="utf-8")
    (tmp_path / "catalog" / "models").mkdir()
    return path


def pin(catalog: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["pin", "--catalog", str(catalog), *args])


def test_newest_release_is_numeric_and_skips_pre_releases() -> None:
    listing = "".join(f"{'0' * 40}\trefs/tags/{t}\n{'1' * 40}\trefs/tags/{t}^{{}}\n" for t in TAGS)
    refs = Refs.parse(listing + f"{'2' * 40}\trefs/heads/master\n")
    assert refs.newest_release() == "b1000"
    assert refs.branches == {"master"}


@pytest.mark.tools
def test_update_moves_to_the_newest_release_and_keeps_comments(remote: Path, base_file: Path) -> None:
    result = pin(base_file.parent.parent, "llama-cpp-cuda", "--update")
    assert result.exit_code == 0, result.output
    assert base_file.read_text(encoding="utf-8") == BASE_TEXT.replace('"b99"', '"b1000"')
    assert '-  ref: "b99"  # pinned by hand, quoted' in result.output
    assert '+  ref: "b1000"  # pinned by hand, quoted' in result.output
    assert "llama-cpp-cuda: llama.cpp b99 -> b1000" in result.output


@pytest.mark.tools
def test_a_given_tag_is_honoured(remote: Path, base_file: Path) -> None:
    result = pin(base_file.parent.parent, "llama-cpp-cuda", "--ref", "b100")
    assert result.exit_code == 0, result.output
    assert base_file.read_text(encoding="utf-8") == BASE_TEXT.replace('"b99"', '"b100"')


@pytest.mark.tools
@pytest.mark.parametrize(("ref", "says"), [("master", "is a branch"), ("b12345", "has no tag")])
def test_a_moving_or_unknown_ref_is_refused_and_nothing_changes(
    remote: Path, base_file: Path, ref: str, says: str
) -> None:
    result = pin(base_file.parent.parent, "llama-cpp-cuda", "--ref", ref)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert base_file.read_text(encoding="utf-8") == BASE_TEXT


@pytest.mark.tools
def test_without_update_it_says_a_newer_release_exists_and_changes_nothing(remote: Path, base_file: Path) -> None:
    result = pin(base_file.parent.parent, "llama-cpp-cuda")
    assert result.exit_code == 0, result.output
    assert "a newer release exists: b1000" in result.output
    assert base_file.read_text(encoding="utf-8") == BASE_TEXT


@pytest.mark.tools
def test_an_unreachable_remote_exits_9(tmp_path: Path, base_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gitconfig"
    config.write_text(f'[url "{(tmp_path / "missing.git").as_uri()}"]\n\tinsteadOf = {UPSTREAM}\n', encoding="utf-8")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    result = pin(base_file.parent.parent, "llama-cpp-cuda", "--update")
    assert result.exit_code == 9, result.output
    assert "git ls-remote" in result.output
    assert base_file.read_text(encoding="utf-8") == BASE_TEXT
