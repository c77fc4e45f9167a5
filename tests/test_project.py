"""The project: its paths and the git values of its checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from llama_bake.project import Paths, compile_catalog, git_environment
from tests.conftest import WriteCatalog


@pytest.mark.tools
def test_a_local_build_reads_the_git_values_from_the_checkout_unless_the_environment_sets_them(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    import subprocess

    catalog = write_catalog(project={"tag_scheme": ["{tag}", "sha-{git_sha}", "{git_version}"]})
    plan = compile_catalog(Paths.from_options(catalog, None)).plan
    assert git_environment(plan, tmp_path, {}) == {}, "not a checkout: nothing"

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "-q", "-b", "release/1.x")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "c")
    git("tag", "v1.4.0")
    sha = git("rev-parse", "HEAD")
    assert git_environment(plan, tmp_path, {}) == {"GIT_SHA": sha, "GIT_BRANCH": "release/1.x", "GIT_VERSION": "v1.4.0"}
    assert git_environment(plan, tmp_path, {"GIT_SHA": "ci", "GIT_BRANCH": ""}) == {"GIT_VERSION": "v1.4.0"}
    plain = compile_catalog(Paths.from_options(write_catalog(project={}), None)).plan
    assert git_environment(plain, tmp_path, {}) == {}, "no git placeholder: git is not even run"
