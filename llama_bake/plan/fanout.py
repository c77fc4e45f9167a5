"""The CI fan-out plan: the catalog -> one job per base and platform, a merge of each base of several platforms
(its platforms' images, each pushed by digest, made one index under its tags), then the models in jobs that each
fit a runner's disk (one model per job, or small models on one base packed together by planned disk). Pure.

``llama-bake ci plan`` prints it as JSON; the generated pipelines read their matrices from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from llama_bake.catalog.fields import format_size
from llama_bake.errors import DiskBudgetError
from llama_bake.plan.disk import GB, base_disk, planned_disk, weights_disk
from llama_bake.plan.ir import BakePlan

# What the standard runner has for the builder after the generated pipeline's set-up, in bytes.
RUNNER_DISK = {
    # ubuntu-latest: 14 GB of free SSD, about 30 GB more once the free-disk step has removed the preinstalled
    # SDKs; 4 GB kept for the runner's own files (the llama-bake install, logs, the docker client's state).
    "github": 40 * GB,
    # saas-linux-small-amd64 (the default without a runner tag): a 25 GB disk
    # (gitlab-org/ci-cd/shared-runners/infrastructure#217), shared with the VM's system and the job's image.
    "gitlab": 15 * GB,
}
# A job name longer than this lists its first and last model and how many it builds.
JOB_NAME_MAX = 60


@dataclass(frozen=True)
class BaseJob:
    job: str
    base: str
    platform: str
    planned_disk: int


@dataclass(frozen=True)
class MergeJob:
    """A base of several platforms: after its platforms' jobs (``needs``), one index of their images."""

    job: str
    base: str
    platforms: tuple[str, ...]
    needs: tuple[str, ...]


@dataclass(frozen=True)
class ModelJob:
    job: str
    targets: tuple[str, ...]
    bases: tuple[str, ...]
    planned_disk: int | None  # None: a model's weight size is not recorded


@dataclass(frozen=True)
class FanOut:
    runner_disk: int
    bases: tuple[BaseJob, ...]
    models: tuple[ModelJob, ...]
    warnings: tuple[str, ...] = field(default=())
    merges: tuple[MergeJob, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "runner_disk": self.runner_disk,
            "bases": [vars(job) for job in self.bases],
            "merges": [vars(job) | {"platforms": list(job.platforms), "needs": list(job.needs)} for job in self.merges],
            "models": [vars(job) | {"targets": list(job.targets), "bases": list(job.bases)} for job in self.models],
        }


def _fix(provider: str, *, model: bool) -> str:
    larger = (
        "a larger runner label (`--runs-on`)"
        if provider == "github"
        else "a larger runner (`--runner-tag saas-linux-medium-amd64`: 50 GB, or larger)"
    )
    fetch = "; or `delivery: fetch` for a model (its weights are downloaded when the container starts)"
    return f"Use {larger} and pass its disk as --runner-disk SIZE" + (fetch if model else "")


def fan_out(plan: BakePlan, models: Iterable[str], runner_disk: int, provider: str = "github") -> FanOut:
    """Base jobs for the bases ``models`` need, one per platform (and a merge of a base's platforms when it has
    several); model jobs packed under ``runner_disk``. A model
    bigger than the runner is refused, naming the numbers and the fix; a base whose planned (not measured) figure
    is over it is a warning with the same fix."""
    wanted = [t.name for t in plan.targets if t.name in set(models) and t.kind == "model"]
    bases = [t.name for t in plan.targets if t.kind == "base" and any(plan.target(m).base == t.name for m in wanted)]
    too_big = []
    base_jobs = []
    merges: list[MergeJob] = []
    warnings: list[str] = []
    for base in bases:
        need = base_disk(plan, base).built
        if need > runner_disk:
            # A base's figure is planned from published image sizes, not measured: it warns, it does not refuse.
            warnings.append(
                f"base {base}: {format_size(need)} planned for its build (from the images' published sizes, not "
                f"measured) is over the runner's {format_size(runner_disk)}. " + _fix(provider, model=False)
            )
        platforms = plan.target(base).platforms
        jobs_of = [
            BaseJob(f"base-{base}-{platform.rpartition('/')[2]}", base, platform, need) for platform in platforms
        ]
        base_jobs += jobs_of
        if len(platforms) > 1:
            merges.append(MergeJob(f"merge-{base}", base, platforms, tuple(job.job for job in jobs_of)))
    jobs: list[ModelJob] = []
    for base in bases:
        members = [m for m in wanted if plan.target(m).base == base]
        unknown = [m for m in members if weights_disk(plan.target(m)) is None]
        for model in unknown:
            warnings.append(
                f"model {model}: a weights size is not recorded, so its disk cannot be planned; it builds in a job "
                f"of its own (`llama-bake pin {model}` records the sizes)"
            )
            jobs.append(ModelJob(f"models-{model}", (model,), (base,), None))
        pulled = base_disk(plan, base).pulled
        sized = [(m, planned_disk(plan, m) or 0) for m in members if m not in unknown]
        for model, need in sized:
            if need + pulled > runner_disk:
                too_big.append(f"model {model}: {format_size(need + pulled)} planned (its base image included)")
        jobs += _pack(plan, sized, base, pulled, runner_disk)
    if too_big:
        msg = f"cannot fit on a runner with {format_size(runner_disk)} of builder disk: {'; '.join(too_big)}. " + _fix(
            provider, model=True
        )
        raise DiskBudgetError(msg)
    order = {t.name: i for i, t in enumerate(plan.targets)}
    jobs.sort(key=lambda job: order[job.targets[0]])
    return FanOut(runner_disk, tuple(base_jobs), tuple(_unique_names(jobs)), tuple(warnings), tuple(merges))


def _pack(plan: BakePlan, sized: list[tuple[str, int]], base: str, pulled: int, budget: int) -> list[ModelJob]:
    """First fit, largest first (ties by name): each job holds its models and one pull of their base."""
    shards: list[list[tuple[str, int]]] = []
    for model, need in sorted(sized, key=lambda item: (-item[1], item[0])):
        for shard in shards:
            if pulled + sum(n for _, n in shard) + need <= budget:
                shard.append((model, need))
                break
        else:
            shards.append([(model, need)])
    order = {t.name: i for i, t in enumerate(plan.targets)}
    jobs = []
    for shard in shards:
        names = tuple(sorted((m for m, _ in shard), key=order.__getitem__))
        jobs.append(ModelJob(_job_name(names), names, (base,), pulled + sum(n for _, n in shard)))
    return jobs


def _job_name(models: tuple[str, ...]) -> str:
    """``models-a-b-c``: what the job builds (target names are [A-Za-z0-9_-], which GitHub takes in a job id)."""
    name = "models-" + "-".join(models)
    if len(name) <= JOB_NAME_MAX or len(models) == 1:
        return name
    return f"models-{models[0]}-to-{models[-1]}-{len(models)}"


def _unique_names(jobs: list[ModelJob]) -> list[ModelJob]:
    seen: dict[str, int] = {}
    out = []
    for job in jobs:
        count = seen.get(job.job, 0)
        seen[job.job] = count + 1
        out.append(job if count == 0 else ModelJob(f"{job.job}-{count + 1}", job.targets, job.bases, job.planned_disk))
    return out
