"""The disk pre-flight: a build planned over its disk budget is refused before any step, per target, with the fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llama_bake.buildx import daemon
from llama_bake.buildx.diskcheck import budget
from llama_bake.buildx.options import BuildOptions
from llama_bake.buildx.pinned import PinnedBase
from llama_bake.buildx.run import dry_run, run_build
from llama_bake.cli import main
from llama_bake.errors import DiskBudgetError
from llama_bake.plan.disk import BASE_DISK
from llama_bake.project import Paths
from tests.conftest import BASE, SHA_A, WriteCatalog
from tests.fakes import FakeBaker

GB = 1000**3
CPU = {"backend": "cpu", "llama_cpp": BASE["llama_cpp"]}
IMAGE = "127.0.0.1:5000/lb/cpu@sha256:" + "e" * 64


def models(**sizes: int | None) -> dict[str, Any]:
    found = {}
    for name, size in sizes.items():
        weights: dict[str, Any] = {"url": f"https://h/{name}.gguf", "sha256": SHA_A}
        if size is not None:
            weights["size"] = size
        found[name] = {"weights": weights}
    return found


def test_a_build_over_its_budget_is_refused_before_any_step_naming_each_target(write_catalog: WriteCatalog) -> None:
    paths = Paths.from_options(write_catalog(bases={"cpu": CPU}, models=models(a=GB, b=2 * GB)), None)
    runner = FakeBaker()
    options = BuildOptions(builder="b", targets=("a", "b"), disk_budget=10 * GB)
    with pytest.raises(DiskBudgetError) as caught:
        run_build(paths, options, runner)
    assert runner.calls == []
    assert caught.value.exit_code == 11
    message = str(caught.value)
    assert "this build plans 13.0 GB of builder disk, over the 10.0 GB it has (--disk-budget)" in message
    assert "  a    3.0 GB built\n  b    6.0 GB built\n  cpu  4.0 GB built\n" in message
    assert "--bases-from" in message
    with pytest.raises(DiskBudgetError):
        dry_run(paths, options, runner)
    run_build(paths, BuildOptions(builder="b", targets=("a", "b"), disk_budget=13 * GB), runner)
    assert len(runner.calls) == 1, "at the budget: built"


def test_a_base_given_by_digest_costs_its_pull_not_its_build(write_catalog: WriteCatalog) -> None:
    paths = Paths.from_options(write_catalog(bases={"cpu": CPU}, models=models(a=GB)), None)
    runner = FakeBaker()
    given = (PinnedBase("cpu", IMAGE, "--base-image"),)
    pulled = BASE_DISK["cpu"].pulled
    with pytest.raises(DiskBudgetError, match=r"  cpu  1.0 GB base image pulled"):
        run_build(paths, BuildOptions(builder="b", base_images=given, disk_budget=3 * GB), runner)
    run_build(paths, BuildOptions(builder="b", base_images=given, disk_budget=3 * GB + pulled), runner)
    assert [c.targets for c in runner.calls] == [("a",)]


def test_an_unknown_size_counts_nothing_and_is_named(write_catalog: WriteCatalog) -> None:
    paths = Paths.from_options(write_catalog(bases={"cpu": CPU}, models=models(a=GB, u=None)), None)
    with pytest.raises(DiskBudgetError, match=r"  u    \? \(no weights size recorded\)"):
        run_build(paths, BuildOptions(builder="b", targets=("a", "u"), disk_budget=GB), FakeBaker())


def test_the_cli_parses_the_budget_as_max_layer_size_is(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(bases={"cpu": CPU}, models=models(a=GB))
    result = CliRunner().invoke(main, ["build", "-c", str(catalog), "--disk-budget", "plenty", "--dry-run"])
    assert result.exit_code == 2
    assert "is not a size" in result.output
    result = CliRunner().invoke(
        main, ["build", "-c", str(catalog), "--disk-budget", "5GiB", "--builder", "b", "--dry-run"]
    )
    assert result.exit_code == 11
    assert "over the 5.4 GB it has" in result.output


def test_the_free_disk_of_an_empty_builder_up_builder_is_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_BAKE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LLAMA_BAKE_BUILDER", "ours")
    root = tmp_path / "buildkitd"
    snapshots = root / "data" / "runc-overlayfs" / "snapshots" / "snapshots"
    snapshots.mkdir(parents=True)
    assert budget(BuildOptions(builder="ours")) is None, "no buildkitd of ours runs"
    (root / "buildkitd.pid").write_text(f"{os.getpid()}\n")  # a process that runs
    measured = budget(BuildOptions(builder="ours"))
    assert measured is not None
    assert measured[1] == f"free on the disk of the builder's state directory {root}"
    assert daemon.fresh_free_disk("another") is None
    assert budget(BuildOptions(builder="ours", disk_budget=GB)) == (GB, "--disk-budget")
    (snapshots / "1").mkdir()
    assert budget(BuildOptions(builder="ours")) is None, "a warm builder may hold what the build needs"
