"""The CI pipelines' shape: a plan job, a job per base and platform, a job per model, a summary job (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from llama_bake.companions import ci_options
from llama_bake.plan.ir import BakePlan
from llama_bake.project import Paths, plan_catalog
from llama_bake.render.ci import job_plan
from llama_bake.render.ci_github import github_workflow
from llama_bake.render.ci_gitlab import gitlab_pipeline
from tests.conftest import BASE, MODEL, WriteCatalog


@pytest.fixture
def two_platforms(write_catalog: WriteCatalog) -> tuple[Paths, BakePlan]:
    """A base for amd64 and arm64 with two models, a CPU base (amd64) and a GB10 base (arm64) with one each."""
    cpu = {"backend": "cpu", "llama_cpp": BASE["llama_cpp"]}
    cuda = {**BASE, "gpu_families": ["hopper"], "platforms": ["linux/amd64", "linux/arm64"]}
    spark = {**BASE, "cuda": "12.9.1", "gpu_families": ["gb10"]}
    catalog = write_catalog(
        bases={"cuda": cuda, "cpu": cpu, "spark": spark},
        models={
            "a": {**MODEL, "base": "cuda"},
            "b": {**MODEL, "base": "cuda"},
            "c": {**MODEL, "base": "cpu"},
            "d": {**MODEL, "base": "spark"},
        },
        project={"registry": "registry.example.com/team"},
    )
    paths = Paths.from_options(catalog, None)
    return paths, plan_catalog(paths)[1]


def test_the_github_workflow_takes_its_matrices_from_the_plan_job(two_platforms: tuple[Paths, BakePlan]) -> None:
    paths, plan = two_platforms
    jobs = github_workflow(plan, ci_options(paths, "github"))["jobs"]
    assert list(jobs) == ["plan", "base", "merge", "models", "summary"]
    plan_steps = [s.get("run", "") for s in jobs["plan"]["steps"]]
    assert any(r.startswith("llama-bake generate --check") for r in plan_steps)
    assert any(r.startswith("llama-bake ci plan") and '>> "$GITHUB_OUTPUT"' in r for r in plan_steps)
    for name, output in (("base", "bases"), ("models", "models")):
        strategy = jobs[name]["strategy"]
        assert strategy == {
            "fail-fast": False,
            "matrix": {"include": f"${{{{ fromJSON(needs.plan.outputs.{output}) }}}}"},
        }
    assert jobs["merge"]["needs"] == ["plan", "base"]
    assert jobs["merge"]["if"] == "${{ needs.plan.outputs.merges != '[]' }}", "only for a base of several platforms"
    assert jobs["models"]["needs"] == ["plan", "base", "merge"]
    assert jobs["models"]["if"] == "${{ !cancelled() && !failure() }}", "a merge job skipped is as good as done"
    assert jobs["models"]["env"]["DISK_BUDGET"] == "${{ needs.plan.outputs.runner_disk }}"
    assert jobs["summary"]["if"] == "${{ always() && needs.plan.result == 'success' }}"
    assert jobs["summary"]["needs"] == ["plan", "base", "merge", "models"]


def test_github_arm64_bases_run_on_the_native_arm64_runner_else_on_qemu(two_platforms: tuple[Paths, BakePlan]) -> None:
    paths, plan = two_platforms
    native = github_workflow(plan, ci_options(paths, "github"))["jobs"]["base"]
    assert native["runs-on"] == ("${{ matrix.platform == 'linux/arm64' && 'ubuntu-24.04-arm' || 'ubuntu-latest' }}")
    assert not [s for s in native["steps"] if "setup-qemu" in s.get("uses", "")], "every platform runs natively"
    emulated = github_workflow(plan, ci_options(paths, "github", arm64_runs_on=""))["jobs"]["base"]
    assert emulated["runs-on"] == "ubuntu-latest"
    [qemu] = [s for s in emulated["steps"] if "setup-qemu" in s.get("uses", "")]
    assert qemu["if"] == "matrix.platform == 'linux/arm64'"


def test_a_base_for_several_platforms_is_a_job_per_platform_then_a_merge(
    two_platforms: tuple[Paths, BakePlan],
) -> None:
    """Each platform on its own runner, pushed by digest (`build --platform`), then one index of them."""
    paths, plan = two_platforms
    planned = job_plan(plan, ci_options(paths, "github"))
    assert [(j["job"], j["platform"], j["planned_disk"]) for j in planned["bases"]] == [
        ("base-cpu-amd64", "linux/amd64", 4 * 10**9),
        ("base-cuda-amd64", "linux/amd64", 32 * 10**9),
        ("base-cuda-arm64", "linux/arm64", 32 * 10**9),
        ("base-spark-arm64", "linux/arm64", 32 * 10**9),
    ]
    assert planned["merges"] == [
        {
            "job": "merge-cuda",
            "base": "cuda",
            "platforms": ["linux/amd64", "linux/arm64"],
            "needs": ["base-cuda-amd64", "base-cuda-arm64"],
        }
    ]
    gitlab = gitlab_pipeline(plan, ci_options(paths, "gitlab", runner_disk="50GB"))
    assert gitlab["merge-cuda"]["needs"] == ["base-cuda-amd64", "base-cuda-arm64"]
    assert gitlab["merge-cuda"]["stage"] == "bases"
    assert _script(gitlab["merge-cuda"]) == (
        "llama-bake ci merge llama-bake-summary-base-cuda-amd64.json llama-bake-summary-base-cuda-arm64.json "
        '--summary-json "llama-bake-summary-$JOB.json"'
    )
    assert gitlab["models-a"]["needs"] == gitlab["models-b"]["needs"] == ["merge-cuda"], "built on the merged index"
    assert '--platform "$PLATFORM"' in _script(gitlab["base-cuda-arm64"])


def test_github_artifacts_expire_and_a_pull_request_cancels_its_older_run(
    two_platforms: tuple[Paths, BakePlan],
) -> None:
    paths, plan = two_platforms
    workflow = github_workflow(plan, ci_options(paths, "github"))
    uploads = [
        s for job in workflow["jobs"].values() for s in job["steps"] if s.get("uses", "").startswith("actions/upload")
    ]
    assert len(uploads) == 4
    assert all(s["with"]["retention-days"] == 7 for s in uploads)
    assert workflow["concurrency"] == {
        "group": "llama-bake-${{ github.ref }}",
        "cancel-in-progress": "${{ github.event_name == 'pull_request' }}",
    }


def _script(job: dict[str, Any]) -> str:
    return "\n".join(job["script"])


def test_gitlab_jobs_are_the_plans_each_model_needing_only_its_bases(two_platforms: tuple[Paths, BakePlan]) -> None:
    paths, plan = two_platforms
    options = ci_options(paths, "gitlab", runner_disk="60GB")
    pipeline = gitlab_pipeline(plan, options)
    jobs = job_plan(plan, options)
    assert pipeline["stages"] == ["plan", "bases", "models", "summary"]
    names = [name for name in pipeline if name not in ("stages", ".llama-bake-build")]
    bases = [j["job"] for j in jobs["bases"] + jobs["merges"]]
    assert names == ["plan", *bases, *(j["job"] for j in jobs["models"]), "summary"]
    assert "--runner-disk 60GB" in _script(pipeline["plan"])
    by_base = {entry["job"]: entry for entry in jobs["bases"] + jobs["merges"]}
    for entry in jobs["models"]:
        job = pipeline[entry["job"]]
        assert job["variables"]["TARGETS"] == " ".join(entry["targets"])
        assert job["variables"]["DISK_BUDGET"] == str(jobs["runner_disk"])
        assert {by_base[name]["base"] for name in job["needs"]} == set(entry["bases"])
        for name in job["needs"]:
            assert '--bases-from "$summary"' in _script(job)
            assert f"llama-bake-summary-{name}.json" in _script(job)
    assert pipeline["summary"]["when"] == "always"
    assert "needs" not in pipeline["summary"], "the last stage takes every job's artifacts"


def test_gitlab_arm64_bases_use_the_arm64_runner_tags_else_register_qemu(
    two_platforms: tuple[Paths, BakePlan],
) -> None:
    paths, plan = two_platforms
    emulated = gitlab_pipeline(plan, ci_options(paths, "gitlab", runner_disk="50GB"))
    assert "binfmt" in _script(emulated["base-spark-arm64"])
    assert "binfmt" in _script(emulated["base-cuda-arm64"])
    assert "binfmt" not in _script(emulated["base-cpu-amd64"])
    assert "binfmt" not in _script(emulated["base-cuda-amd64"])
    tags = ("saas-linux-small-arm64",)
    native = gitlab_pipeline(plan, ci_options(paths, "gitlab", runner_disk="50GB", arm64_runner_tags=tags))
    assert native["base-spark-arm64"]["tags"] == ["saas-linux-small-arm64"]
    assert "binfmt" not in _script(native["base-spark-arm64"])
    assert native["base-cuda-arm64"]["tags"] == ["saas-linux-small-arm64"]
    assert "binfmt" not in _script(native["base-cuda-arm64"])
    assert "tags" not in native["base-cuda-amd64"]


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_only_the_default_branch_pushes_and_every_build_writes_its_jobs_summary(
    two_platforms: tuple[Paths, BakePlan], provider: str
) -> None:
    paths, plan = two_platforms
    options = ci_options(paths, provider, runner_disk="50GB")  # type: ignore[arg-type]
    if provider == "github":
        jobs = github_workflow(plan, options)["jobs"]
        scripts = [
            s["run"]
            for name in ("base", "models")
            for s in jobs[name]["steps"]
            if "llama-bake build" in s.get("run", "")
        ]
        pushes = '[ "$PUBLISH" = true ]'
    else:
        pipeline = gitlab_pipeline(plan, options)
        scripts = [_script(job) for name, job in pipeline.items() if name.startswith(("base-", "models-"))]
        pushes = '[ "$CI_COMMIT_BRANCH" = main ]'
    assert len(scripts) == (2 if provider == "github" else 4 + 4)
    for script in scripts:
        assert f"if {pushes}; then" in script
        assert "set -- --push" in script
        assert "set -- --no-cache-export" in script, "elsewhere: import the caches, push and export nothing"
        assert '--summary-json "llama-bake-summary-$JOB.json"' in script


def test_gitlab_jobs_that_push_run_to_their_end(two_platforms: tuple[Paths, BakePlan]) -> None:
    """A newer pipeline cancels a job that pushes nothing; one on the default branch or a tag runs to its end."""
    paths, plan = two_platforms
    pipeline = gitlab_pipeline(plan, ci_options(paths, "gitlab", runner_disk="50GB", branch="release"))
    template = pipeline[".llama-bake-build"]
    assert template["interruptible"] is True
    assert template["rules"] == [
        {"if": '$CI_COMMIT_BRANCH == "release"', "interruptible": False},
        {"when": "on_success"},
    ]
    assert all(pipeline[name]["interruptible"] is True for name in ("plan", "summary")), "they push nothing"
