"""What the CI pipelines of GitHub Actions and GitLab CI share: the caches, the jobs' shell scripts and the job
plan they are rendered from. Pure.

The pipelines fan out (``ci_github``, ``ci_gitlab``): a plan job checks the bake file and splits the build into
jobs (``llama-bake ci plan``); a job per base and platform compiles llama.cpp once and pushes the base with its
caches (a base of several platforms: each platform on its own runner, pushed by digest with caches of its own,
then a merge job makes one index of them under the base's tags, ``llama-bake ci merge``); a job per model (or per
shard of small models, packed under the runner's disk) builds only its models on the bases' exact digests, each
with its own cache; a summary job combines every job's ``--summary-json`` and fails naming each model that
failed. Every job runs the command a developer runs (``llama-bake build``), so CI builds with the same summary
and the same errors. Images and caches are pushed from the default branch only: a pull request imports the
caches and pushes nothing, so a missing login fails nothing; its model jobs take their base from the base cache
(two phases, ``--no-cache-export``; a base of several platforms from each platform's cache) instead of a pushed
digest.

Caches: a model's weights are 12-17 GB, more than GitHub's cache holds for a whole repository (10 GB), so on
GitHub the models' cache is a registry cache by default and only the bases use GitHub's cache.
"""

from __future__ import annotations

import shlex
from importlib import metadata
from typing import TYPE_CHECKING, Any

from llama_bake.buildx.options import CachePreset
from llama_bake.catalog.fields import parse_size
from llama_bake.errors import UsageError
from llama_bake.plan.fanout import RUNNER_DISK, FanOut, fan_out
from llama_bake.render.ci_options import DEFAULT_CACHES, CiOptions

if TYPE_CHECKING:
    from llama_bake.plan.ir import BakePlan

# Room for a CUDA toolkit image, a compile and a model on GitHub's 14 GB runners: what the runner image ships
# and llama-bake does not need.
FREE_DISK = "sudo rm -rf /usr/share/dotnet /usr/local/lib/android /opt/ghc /opt/hostedtoolcache/CodeQL && df -h /"


def caches(options: CiOptions, plan: BakePlan) -> tuple[str, str]:
    """(the bases' cache, the models' cache), as ``llama-bake build`` takes them."""
    defaults = [spec.format(registry=plan.default("REGISTRY")) for spec in DEFAULT_CACHES[options.provider]]
    base = options.base_cache or options.cache or defaults[0]
    model = options.model_cache or options.cache or defaults[1]
    for spec in (base, model):
        try:
            kind = CachePreset.parse(spec).kind
        except UsageError:
            kind = "local"  # what is left of parse's forms: tell the CI ones
        if kind == "local":
            msg = f"CI cache {spec!r}: use gha (GitHub only) or registry=REF_PREFIX"
            raise UsageError(msg)
        if kind == "gha" and options.provider != "github":
            msg = "the gha cache only exists on GitHub Actions; use registry=REF_PREFIX"
            raise UsageError(msg)
    return base, model


def default_install() -> str:
    try:
        return f"llama-bake=={metadata.version('llama-bake')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "llama-bake"


def registry_host(registry: str) -> str:
    first = registry.split("/", 1)[0]
    return first if ("." in first or ":" in first or first == "localhost") else "docker.io"


def files_flags(options: CiOptions) -> str:
    """The catalog and bake file, as every llama-bake command in a pipeline names them."""
    return f"--catalog {shlex.quote(options.catalog)} --bake-file {shlex.quote(options.bake_file)}"


# Each job's summary, named after the job (the plan's ``job``), and the plan the summary job reads.
SUMMARY_FILE = "llama-bake-summary-{job}.json"
PLAN_FILE = "llama-bake-plan.json"
ARTIFACT_DAYS = 7  # how long the summaries and the plan are kept


def base_script(plan: BakePlan, options: CiOptions, publish: str) -> str:
    """A base job: ``$BASE`` for ``$PLATFORM`` alone, pushed with its caches (build cache and compiler cache)
    when ``publish`` holds, else built from the caches and kept (a pull request). A base of several platforms
    is pushed by digest, with caches of its own per platform (``build --platform``)."""
    base, model = caches(options, plan)
    # $CI_REGISTRY_IMAGE and the like expand in the shell, so the caches' words are not quoted.
    return (
        f"if {publish}; then set -- --push; else set -- --no-cache-export; fi\n"
        f'llama-bake build {files_flags(options)} "$BASE" --platform "$PLATFORM"'
        f" --base-cache {base} --model-cache {model} --progress plain"
        f' --summary-json "{SUMMARY_FILE.format(job="$JOB")}" "$@"\n'
    )


def model_script(plan: BakePlan, options: CiOptions, publish: str, base_summaries: str) -> str:
    """A model job: ``$TARGETS`` (space-separated). Pushed: on the exact base digests the base jobs' summaries
    (``base_summaries``, shell words) name, refused before any step when they cannot fit ``$DISK_BUDGET``. Else (a
    pull request): on the base from the base cache (two phases, nothing exported), with no budget: the plan counts
    a base built from nothing, which the cache spares."""
    base, model = caches(options, plan)
    return (
        f"if {publish}; then\n"
        '  set -- --push --disk-budget "$DISK_BUDGET"\n'
        f'  for summary in {base_summaries}; do set -- "$@" --bases-from "$summary"; done\n'
        "else\n"
        "  set -- --no-cache-export\n"
        "fi\n"
        f"llama-bake build {files_flags(options)} $TARGETS"
        f" --base-cache {base} --model-cache {model} --progress plain"
        f' --summary-json "{SUMMARY_FILE.format(job="$JOB")}" "$@"\n'
    )


def merge_script(parts: str) -> str:
    """A merge job: the images the base jobs pushed by digest (their summaries: ``parts``, shell words), one
    index per base under its tags, and the summary the model jobs build on. A pull request pushed none:
    nothing to merge."""
    return f'llama-bake ci merge {parts} --summary-json "{SUMMARY_FILE.format(job="$JOB")}"\n'


def plan_command(options: CiOptions) -> str:
    """The plan job's command: the jobs, as JSON on stdout."""
    disk = f" --runner-disk {shlex.quote(options.runner_disk)}" if options.runner_disk else ""
    return f"llama-bake ci plan {files_flags(options)} --provider {options.provider}{disk}"


def summary_command(files: str) -> str:
    """The summary job's command: every job's summary in one table; exit 6 naming each model of the plan that
    failed or has no result."""
    return f"llama-bake ci summary --plan {PLAN_FILE} {files}"


def _fan_out(plan: BakePlan, options: CiOptions) -> FanOut:
    try:
        disk = parse_size(options.runner_disk) if options.runner_disk else RUNNER_DISK[options.provider]
    except ValueError as exc:
        msg = f"--runner-disk: {exc}"
        raise UsageError(msg) from None
    models = [t.name for t in plan.targets if t.kind == "model"]
    return fan_out(plan, models, disk, options.provider)


def job_plan(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    """The jobs ``llama-bake ci plan`` prints for this catalog (what GitLab's static jobs are rendered from)."""
    return _fan_out(plan, options).as_json()


def plan_warnings(plan: BakePlan, options: CiOptions) -> tuple[str, ...]:
    """What ``llama-bake ci plan`` warns of for this catalog (a base over the runner's disk, a model of unknown
    size), for the command that writes the pipeline to say too."""
    return _fan_out(plan, options).warnings
