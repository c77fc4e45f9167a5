"""The GitHub Actions workflow that fans the build out (the shape: ``render/ci.py``). Pure.

The plan job runs ``llama-bake ci plan`` and hands its jobs to the base and model matrices as job outputs
(``fromJSON``), so the matrices follow the catalog with no file to keep in step. The base jobs hand their
``--summary-json`` (the pushed digests) to the model jobs as artifacts, through the merge job when a base has
several platforms (it runs only then); every job's summary reaches the summary job the same way.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from llama_bake.render.ci import (
    ARTIFACT_DAYS,
    FREE_DISK,
    PLAN_FILE,
    SUMMARY_FILE,
    base_script,
    caches,
    default_install,
    files_flags,
    merge_script,
    model_script,
    plan_command,
    registry_host,
    summary_command,
)

if TYPE_CHECKING:
    from llama_bake.plan.ir import BakePlan
    from llama_bake.render.ci_options import CiOptions

# The git values of the tag scheme, as docker/metadata-action reads them.
GITHUB_GIT = {
    "GIT_SHA": "${{ github.sha }}",
    "GIT_BRANCH": "${{ github.ref_type == 'branch' && github.ref_name || '' }}",
    "GIT_VERSION": "${{ github.ref_type == 'tag' && github.ref_name || '' }}",
}
PUBLISHING = '[ "$PUBLISH" = true ]'
JOB_SUMMARY = SUMMARY_FILE.format(job="${{ matrix.job }}")
# A base job's artifact: its summary, which names the pushed digest; the merge job's is one of them. The model
# jobs take every one (a base of several platforms: its parts, which --bases-from refuses, and the merged index).
BASE_ARTIFACTS = "summary-base-*"
MERGE_JOB = "merge"
MERGE_SUMMARY = SUMMARY_FILE.format(job=MERGE_JOB)
QEMU = {"name": "Emulate arm64", "uses": "docker/setup-qemu-action@v3"}


def _literal(text: str) -> str:
    """A string literal inside a ``${{ }}`` expression."""
    return "'" + text.replace("'", "''") + "'"


def _publish_expression(options: CiOptions, plan: BakePlan) -> str:
    on_branch = f"github.ref == 'refs/heads/{options.branch}'"
    if plan.uses_git:  # version tags are released: built, pushed and tagged {git_version}
        on_branch = f"({on_branch} || startsWith(github.ref, 'refs/tags/v'))"
    return f"${{{{ github.event_name != 'pull_request' && {on_branch} }}}}"


def _login(plan: BakePlan) -> dict[str, Any]:
    host = registry_host(plan.default("REGISTRY"))
    if host == "ghcr.io":
        # GITHUB_TOKEN is there on every event (read-only on pull requests): pull requests read a private cache.
        return {
            "name": "Log in to the registry",
            "uses": "docker/login-action@v3",
            "with": {"registry": host, "username": "${{ github.actor }}", "password": "${{ secrets.GITHUB_TOKEN }}"},
        }
    return {
        "name": "Log in to the registry",
        "if": "env.PUBLISH == 'true'",
        "uses": "docker/login-action@v3",
        "with": {
            "registry": host,
            "username": "${{ secrets.REGISTRY_USERNAME }}",
            "password": "${{ secrets.REGISTRY_PASSWORD }}",
        },
    }


def _install(options: CiOptions) -> list[dict[str, Any]]:
    return [
        {"uses": "actions/setup-python@v5", "with": {"python-version": "3.12"}},
        {"name": "Install llama-bake", "run": f"pip install {shlex.quote(options.install or default_install())}"},
    ]


def _builder_steps(plan: BakePlan, options: CiOptions, qemu: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What a job that builds needs before its build: the repository, disk, llama-bake, buildx, the caches and
    the registry. ``qemu``: the step that lets it emulate arm64, when it may have to."""
    steps: list[dict[str, Any]] = [{"uses": "actions/checkout@v4"}]
    if options.free_disk:
        steps.append({"name": "Free disk space for the build", "run": FREE_DISK})
    steps += _install(options)
    if qemu is not None:
        steps.append(qemu)
    steps.append({"uses": "docker/setup-buildx-action@v3"})
    if "gha" in caches(options, plan):
        # buildx run from a shell step reaches GitHub's cache only with the runtime's token in its environment.
        steps.append({"name": "Give buildx GitHub's cache service", "uses": "crazy-max/ghaction-github-runtime@v3"})
    steps.append(_login(plan))
    return steps


def _summary_steps(artifact: str, path: str = JOB_SUMMARY) -> list[dict[str, Any]]:
    return [
        {
            "name": "Job summary",
            "if": "${{ always() }}",
            "run": 'test ! -f "$SUMMARY" || llama-bake ci summary "$SUMMARY" >> "$GITHUB_STEP_SUMMARY"',
        },
        {
            "name": "Keep the summary for the summary job",
            "if": "${{ always() }}",
            "uses": "actions/upload-artifact@v4",
            "with": {
                "name": artifact,
                "path": path,
                "retention-days": ARTIFACT_DAYS,
                "if-no-files-found": "ignore",
            },
        },
    ]


def _plan_job(options: CiOptions) -> dict[str, Any]:
    outputs = {"bases": ".bases", "merges": ".merges", "models": ".models", "runner_disk": ".runner_disk"}
    record = "\n".join(f"  echo \"{key}=$(jq -c '{jq}' {PLAN_FILE})\"" for key, jq in outputs.items())
    return {
        "name": "Plan the build",
        "runs-on": options.runs_on,
        "timeout-minutes": 15,
        "outputs": {key: f"${{{{ steps.plan.outputs.{key} }}}}" for key in outputs},
        "steps": [
            {"uses": "actions/checkout@v4"},
            *_install(options),
            {"name": "The bake file matches the catalog", "run": f"llama-bake generate --check {files_flags(options)}"},
            {
                "name": "Split the build into jobs",
                "id": "plan",
                "run": f'{plan_command(options)} > {PLAN_FILE}\n{{\n{record}\n}} >> "$GITHUB_OUTPUT"\n',
            },
            {
                "name": "Keep the plan for the summary job",
                "uses": "actions/upload-artifact@v4",
                "with": {"name": "plan", "path": PLAN_FILE, "retention-days": ARTIFACT_DAYS},
            },
        ],
    }


def _base_job(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    arm64 = "matrix.platform == 'linux/arm64'"
    qemu: dict[str, Any] | None = None
    if options.arm64_runs_on:  # each platform on a runner of its own architecture
        runs_on = f"${{{{ {arm64} && {_literal(options.arm64_runs_on)} || {_literal(options.runs_on)} }}}}"
    else:  # no native arm64 runner: emulate on the usual one
        runs_on, qemu = options.runs_on, {"name": QEMU["name"], "if": arm64, "uses": QEMU["uses"]}
    return {
        "name": "Base ${{ matrix.base }} (${{ matrix.platform }})",
        "needs": "plan",
        "strategy": {"fail-fast": False, "matrix": {"include": "${{ fromJSON(needs.plan.outputs.bases) }}"}},
        "runs-on": runs_on,
        "timeout-minutes": 240,  # a cold CUDA compile for two GPU generations takes most of an hour on 4 cores
        "env": {
            "BASE": "${{ matrix.base }}",
            "PLATFORM": "${{ matrix.platform }}",
            "JOB": "${{ matrix.job }}",
            "SUMMARY": JOB_SUMMARY,
        },
        "steps": [
            *_builder_steps(plan, options, qemu),
            {"name": "Build the base", "run": base_script(plan, options, PUBLISHING)},
            *_summary_steps("summary-${{ matrix.job }}"),
        ],
    }


def _merge_job(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    """One job after every base job, when a base has several platforms: each such base's index."""
    login = _login(plan)
    return {
        "name": "Merge each base's platforms into one image",
        "needs": ["plan", "base"],
        "if": "${{ needs.plan.outputs.merges != '[]' }}",
        "runs-on": options.runs_on,
        "timeout-minutes": 30,
        "env": {"JOB": MERGE_JOB, "SUMMARY": MERGE_SUMMARY},
        "steps": [
            *_install(options),
            {"uses": "docker/setup-buildx-action@v3"},
            login,
            {
                "name": "The base jobs' digests",
                "uses": "actions/download-artifact@v4",
                "with": {"pattern": BASE_ARTIFACTS, "merge-multiple": True},
            },
            {"name": "Merge the platforms", "run": merge_script(SUMMARY_FILE.format(job="base-*"))},
            *_summary_steps("summary-base-merged", MERGE_SUMMARY),
        ],
    }


def _model_job(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    arm64 = any("linux/arm64" in t.platforms for t in plan.targets if t.kind == "model")
    env = {
        "TARGETS": "${{ join(matrix.targets, ' ') }}",
        "JOB": "${{ matrix.job }}",
        "SUMMARY": JOB_SUMMARY,
        "DISK_BUDGET": "${{ needs.plan.outputs.runner_disk }}",
    }
    if plan.needs_hf_token:
        env["HF_TOKEN"] = "${{ secrets.HF_TOKEN }}"
    return {
        "name": "Models ${{ join(matrix.targets, ', ') }}",
        "needs": ["plan", "base", MERGE_JOB],
        # The merge job runs only for a base of several platforms: skipped is as good as done.
        "if": "${{ !cancelled() && !failure() }}",
        "strategy": {"fail-fast": False, "matrix": {"include": "${{ fromJSON(needs.plan.outputs.models) }}"}},
        "runs-on": options.runs_on,
        "timeout-minutes": 180,
        "env": env,
        "steps": [
            *_builder_steps(plan, options, QEMU if arm64 else None),
            {
                "name": "The base jobs' digests",
                "if": "env.PUBLISH == 'true'",
                "uses": "actions/download-artifact@v4",
                "with": {"pattern": BASE_ARTIFACTS, "merge-multiple": True},
            },
            {
                "name": "Build the models",
                # Every summary the step above fetched: the base jobs' and the merge job's.
                "run": model_script(plan, options, PUBLISHING, SUMMARY_FILE.format(job="*")),
            },
            *_summary_steps("summary-${{ matrix.job }}"),
        ],
    }


def _summary_job(options: CiOptions) -> dict[str, Any]:
    return {
        "name": "Summary of every image",
        "needs": ["plan", "base", MERGE_JOB, "models"],
        "if": "${{ always() && needs.plan.result == 'success' }}",
        "runs-on": options.runs_on,
        "timeout-minutes": 15,
        "steps": [
            *_install(options),
            {
                "name": "Every job's summary and the plan",
                "uses": "actions/download-artifact@v4",
                "with": {"merge-multiple": True},
            },
            {
                "name": "Every image, and each model that failed",
                "run": summary_command(SUMMARY_FILE.format(job="*")) + ' >> "$GITHUB_STEP_SUMMARY"',
            },
        ],
    }


def github_workflow(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    env: dict[str, str] = {"PUBLISH": _publish_expression(options, plan)}
    if plan.uses_git:
        env |= GITHUB_GIT
    push: dict[str, Any] = {"branches": [options.branch]}
    if plan.uses_git:
        push["tags"] = ["v*"]
    return {
        "name": "llama-bake",
        "on": {"push": push, "pull_request": {}, "workflow_dispatch": {}},
        "permissions": {"contents": "read", "packages": "write"},
        # A newer commit on a pull request cancels the older run; a push to the default branch runs to its end
        # (cancelled half-way, some images would be pushed and others not).
        "concurrency": {
            "group": "llama-bake-${{ github.ref }}",
            "cancel-in-progress": "${{ github.event_name == 'pull_request' }}",
        },
        "env": env,
        "jobs": {
            "plan": _plan_job(options),
            "base": _base_job(plan, options),
            MERGE_JOB: _merge_job(plan, options),
            "models": _model_job(plan, options),
            "summary": _summary_job(options),
        },
    }
