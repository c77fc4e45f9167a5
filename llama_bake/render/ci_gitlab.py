"""The GitLab CI pipeline that fans the build out (the shape: ``render/ci.py``). Pure.

GitLab has no matrix computed at run time short of a generated child pipeline, so the jobs are written into
the file from the same plan ``llama-bake ci plan`` prints: a job per base and platform (and a merge job after the
platforms of a base that has several), a job per model or shard, each named after what it builds. A catalog
change that changes the jobs makes the file stale, which the plan job's ``generate --check`` reports (the file's
header names the command that writes it again). Static jobs rather than one ``parallel: matrix`` job: each model
job needs only its own bases (a matrix job's ``needs`` are the same for every entry), and the pipeline graph
names every model. A child pipeline would hide the jobs until it runs and needs a second trigger job and
artifact hand-over for no gain: the plan only changes with the catalog, which is committed with the file.
"""

from __future__ import annotations

import json
import shlex
from typing import TYPE_CHECKING, Any

from llama_bake.render.ci import (
    ARTIFACT_DAYS,
    PLAN_FILE,
    SUMMARY_FILE,
    base_script,
    default_install,
    files_flags,
    job_plan,
    merge_script,
    model_script,
    plan_command,
    summary_command,
)

if TYPE_CHECKING:
    from llama_bake.plan.ir import BakePlan
    from llama_bake.render.ci_options import CiOptions

GITLAB_GIT = {"GIT_SHA": "$CI_COMMIT_SHA", "GIT_BRANCH": "$CI_COMMIT_BRANCH", "GIT_VERSION": "$CI_COMMIT_TAG"}
BUILD = ".llama-bake-build"  # the hidden job every base and model job extends
PYTHON_IMAGE = "python:3.12-slim"
EXPIRE = f"{ARTIFACT_DAYS} days"
# Registers QEMU for arm64 in the job's Docker daemon, where no native arm64 runner is named.
QEMU = "docker run --privileged --rm tonistiigi/binfmt --install arm64"


def _install(options: CiOptions, *, system: bool) -> str:
    flag = "--break-system-packages " if system else ""
    return f"pip install {flag}{shlex.quote(options.install or default_install())}"


def _summary_after(job: str) -> dict[str, Any]:
    summary = SUMMARY_FILE.format(job=job)
    return {
        "after_script": [f"test ! -f {summary} || llama-bake ci summary {summary}"],
        "artifacts": {"when": "always", "expire_in": EXPIRE, "paths": [summary]},
    }


def _build_template(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    template: dict[str, Any] = {"image": "docker:27", "services": ["docker:27-dind"], "interruptible": True}
    # A job that pushes runs to its end (cancelled half-way, some images would be pushed and others not).
    pushes = f"$CI_COMMIT_BRANCH == {json.dumps(options.branch)}" + (" || $CI_COMMIT_TAG" if plan.uses_git else "")
    template["rules"] = [{"if": pushes, "interruptible": False}, {"when": "on_success"}]
    if options.runner_tags:
        template["tags"] = list(options.runner_tags)
    template |= {
        "variables": {"DOCKER_TLS_CERTDIR": "/certs", **(GITLAB_GIT if plan.uses_git else {})},
        "before_script": [
            "apk add --no-cache python3 py3-pip",
            _install(options, system=True),
            # The job token can read the project's registry in every pipeline, merge requests included.
            'echo "$CI_REGISTRY_PASSWORD" | docker login -u "$CI_REGISTRY_USER" --password-stdin "$CI_REGISTRY"',
            "docker buildx create --use --driver docker-container",
        ],
    }
    return template


def _base_job(plan: BakePlan, options: CiOptions, entry: dict[str, Any], publish: str) -> dict[str, Any]:
    job: dict[str, Any] = {"extends": BUILD, "stage": "bases", "needs": [{"job": "plan", "artifacts": False}]}
    script = [base_script(plan, options, publish).rstrip("\n")]
    if entry["platform"] == "linux/arm64" and options.arm64_runner_tags:
        job["tags"] = list(options.arm64_runner_tags)
    elif entry["platform"] == "linux/arm64":  # no arm64 runner: emulated
        script.insert(0, QEMU)
    job["variables"] = {"BASE": entry["base"], "PLATFORM": entry["platform"], "JOB": entry["job"]}
    return job | {"script": script} | _summary_after(entry["job"])


def _merge_job(entry: dict[str, Any]) -> dict[str, Any]:
    """After the platforms' jobs of a base of several: its index, under its tags."""
    parts = " ".join(SUMMARY_FILE.format(job=job) for job in entry["needs"])
    return {
        "extends": BUILD,
        "stage": "bases",
        "needs": list(entry["needs"]),
        "variables": {"JOB": entry["job"]},
        "script": [merge_script(parts).rstrip("\n")],
    } | _summary_after(entry["job"])


def _model_job(
    plan: BakePlan, options: CiOptions, entry: dict[str, Any], base_jobs: list[str], runner_disk: int, publish: str
) -> dict[str, Any]:
    summaries = " ".join(SUMMARY_FILE.format(job=job) for job in base_jobs)
    script = [model_script(plan, options, publish, summaries).rstrip("\n")]
    if plan.needs_hf_token:
        script.insert(0, 'test -n "$HF_TOKEN" || { echo "set the masked CI/CD variable HF_TOKEN"; exit 1; }')
    return {
        "extends": BUILD,
        "stage": "models",
        "needs": base_jobs,
        "variables": {"TARGETS": " ".join(entry["targets"]), "JOB": entry["job"], "DISK_BUDGET": str(runner_disk)},
        "script": script,
    } | _summary_after(entry["job"])


def gitlab_pipeline(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    jobs = job_plan(plan, options)
    publish = f'[ "$CI_COMMIT_BRANCH" = {shlex.quote(options.branch)} ]'
    if plan.uses_git:
        publish += ' || [ -n "${CI_COMMIT_TAG:-}" ]'  # a tag is a release: pushed, and tagged {git_version}
    pipeline: dict[str, Any] = {"stages": ["plan", "bases", "models", "summary"], BUILD: _build_template(plan, options)}
    plan_job: dict[str, Any] = {"stage": "plan", "image": PYTHON_IMAGE, "interruptible": True}
    if options.runner_tags:
        plan_job["tags"] = list(options.runner_tags)
    pipeline["plan"] = plan_job | {
        "before_script": [_install(options, system=False)],
        "script": [f"llama-bake generate --check {files_flags(options)}", f"{plan_command(options)} > {PLAN_FILE}"],
        "artifacts": {"expire_in": EXPIRE, "paths": [PLAN_FILE]},
    }
    for entry in jobs["bases"]:
        pipeline[entry["job"]] = _base_job(plan, options, entry, publish)
    for entry in jobs["merges"]:
        pipeline[entry["job"]] = _merge_job(entry)
    # What a model job builds on: its base's merge job for a base of several platforms, else its base's job.
    last = {entry["base"]: entry["job"] for entry in [*jobs["bases"], *jobs["merges"]]}
    for entry in jobs["models"]:
        needs = [last[base] for base in entry["bases"]]
        pipeline[entry["job"]] = _model_job(plan, options, entry, needs, jobs["runner_disk"], publish)
    # No `needs`: the last stage waits for every job and takes every job's artifacts (a job's `needs` is limited
    # to 50 jobs, fewer than a large catalog's).
    summary: dict[str, Any] = {"stage": "summary", "image": PYTHON_IMAGE, "when": "always", "interruptible": True}
    if options.runner_tags:
        summary["tags"] = list(options.runner_tags)
    pipeline["summary"] = summary | {
        "before_script": [_install(options, system=False)],
        "script": [summary_command(SUMMARY_FILE.format(job="*"))],
    }
    return pipeline
