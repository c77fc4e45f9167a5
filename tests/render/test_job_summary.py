"""``ci summary``: one job's summary as before, several jobs' as one table, and exit 6 naming what did not build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from llama_bake.cli import main

DIGEST = "sha256:" + "d" * 64


def target(name: str, status: str, base_digest: str = "") -> dict[str, Any]:
    return {"name": name, "status": status, "image": f"r/{name}:v1", "digest": DIGEST, "base_digest": base_digest}


def write(path: Path, *targets: dict[str, Any], run: int = 1) -> Path:
    path.write_text(json.dumps({"pushed": True, "steps_executed": run, "steps_cached": 2, "targets": list(targets)}))
    return path


PLAN = {
    "runner_disk": 1,
    "bases": [{"job": "base-base-amd64", "base": "base", "platform": "linux/amd64"}],
    "models": [
        {"job": "models-a-b", "targets": ["a", "b"], "bases": ["base"], "planned_disk": 1},
        {"job": "models-c", "targets": ["c"], "bases": ["base"], "planned_disk": 1},
    ],
}


def ci_summary(*args: str) -> Any:
    return CliRunner().invoke(main, ["ci", "summary", *args])


def test_one_file_prints_the_table_it_always_printed(tmp_path: Path) -> None:
    result = ci_summary(str(write(tmp_path / "s.json", target("base", "built"), target("a", "cached", DIGEST))))
    assert result.exit_code == 0
    assert result.stdout == (
        "### llama-bake images\n\n1 steps run, 2 from the cache.\n\n"
        "| target | status | image | digest | on base |\n| --- | --- | --- | --- | --- |\n"
        f"| base | built | `r/base:v1` | `{DIGEST}` | `` |\n"
        f"| a | cached | `r/a:v1` | `{DIGEST}` | `{DIGEST}` |\n"
    )


def test_several_jobs_make_one_table_and_all_built_exits_0(tmp_path: Path) -> None:
    files = [
        write(tmp_path / "base.json", target("base", "built"), run=5),
        write(tmp_path / "models-a-b.json", target("a", "built", DIGEST), target("b", "cached", DIGEST)),
        write(tmp_path / "models-c.json", target("c", "built", DIGEST)),
    ]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    result = ci_summary(*map(str, files), "--plan", str(plan))
    assert result.exit_code == 0, result.output
    assert "7 steps run, 6 from the cache, in 3 jobs." in result.stdout
    assert f"| b | cached | `r/b:v1` | `{DIGEST}` | `{DIGEST}` | {tmp_path}/models-a-b.json |" in result.stdout
    assert result.stdout.count("| target |") == 1, "one table"


def test_a_failed_model_and_a_job_that_wrote_nothing_exit_6_naming_them(tmp_path: Path) -> None:
    files = [
        write(tmp_path / "base.json", target("base", "built")),
        write(tmp_path / "models-a-b.json", target("a", "failed"), target("b", "built", DIGEST)),
        tmp_path / "models-c.json",  # the job died before writing its summary
    ]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    result = ci_summary(*map(str, files), "--plan", str(plan))
    assert result.exit_code == 6
    assert "| a | failed |" in result.stdout, "the table is printed first"
    assert f"No summary from: {tmp_path}/models-c.json" in result.stdout
    assert f"  a (failed, in {tmp_path}/models-a-b.json)\n" in result.stderr
    assert "  c (no result in any summary: its job stopped before writing one)\n" in result.stderr
    assert "  b " not in result.stderr
    without_plan = ci_summary(*map(str, files[:2]))
    assert without_plan.exit_code == 0, "without --fail or --plan, a table only (as before)"
    assert ci_summary(*map(str, files[:2]), "--fail").exit_code == 6


def test_a_skipped_model_fails_and_a_base_built_in_one_job_counts_once(tmp_path: Path) -> None:
    files = [
        write(tmp_path / "one.json", target("base", "failed"), target("a", "skipped")),
        write(tmp_path / "two.json", target("base", "built")),
    ]
    result = ci_summary(*map(str, files), "--fail")
    assert result.exit_code == 6
    assert "a (skipped" in result.stderr
    assert "base (" not in result.stderr, "built in the second job"


def test_a_base_built_per_platform_has_a_row_per_part_and_one_for_the_merged_index(tmp_path: Path) -> None:
    """Its platforms' jobs and the merge job each name the base; a part that failed is named."""
    amd64 = {**target("base", "built"), "platforms": ["linux/amd64"]}
    arm64 = {**target("base", "failed"), "platforms": ["linux/arm64"]}
    merged = {**target("base", "failed"), "platforms": ["linux/amd64", "linux/arm64"], "digest": ""}
    files = [
        write(tmp_path / "llama-bake-summary-base-base-amd64.json", amd64),
        write(tmp_path / "llama-bake-summary-base-base-arm64.json", arm64),
        write(tmp_path / "llama-bake-summary-merge.json", merged, run=0),
    ]
    result = ci_summary("--fail", *map(str, files))
    assert result.exit_code == 6, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| base |")]
    assert len(rows) == 3, result.output
    assert "  base (failed, in " in result.output
