"""A CI file's settings, the ``ci`` command's defaults among them: plain data (the command's options read their
defaults from here, so `--help` loads nothing else)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Provider = Literal["github", "gitlab"]
# Each provider's caches when none is named: (the bases', the models'). A model's weights are 12-17 GB, more
# than GitHub's cache holds for a whole repository (10 GB): on GitHub only the bases use it. {registry}: the
# catalog's REGISTRY.
DEFAULT_CACHES = {
    "github": ("gha", "registry={registry}/cache"),
    "gitlab": ("registry=$CI_REGISTRY_IMAGE/cache", "registry=$CI_REGISTRY_IMAGE/cache"),
}
DEFAULT_PATHS = {"github": ".github/workflows/llama-bake.yml", "gitlab": ".gitlab-ci.yml"}


@dataclass(frozen=True)
class CiOptions:
    """A CI file's settings. The defaults here are the ``ci`` command's (its options read them)."""

    provider: Provider
    bake_file: str  # relative to the repository root
    catalog: str  # relative to the repository root
    install: str | None = None  # pip requirement that installs llama-bake; None: this version
    branch: str = "main"  # images are pushed (and caches written) from this branch only
    cache: str | None = None  # every target's cache; None: the provider's defaults
    base_cache: str | None = None
    model_cache: str | None = None
    runs_on: str = "ubuntu-latest"  # GitHub
    # GitHub: the runner label of the arm64 base jobs (a native arm64 runner); "": QEMU on `runs_on`
    arm64_runs_on: str = "ubuntu-24.04-arm"
    runner_tags: tuple[str, ...] = ()  # GitLab
    # GitLab: the runner tags of the arm64 base jobs (a native arm64 runner); none: QEMU on the other runners
    arm64_runner_tags: tuple[str, ...] = ()
    # The disk each build job has (e.g. 40GB): the plan packs models into jobs under it, and each job checks
    # its targets fit before any step. None: what the provider's standard runner has (the plan's default).
    runner_disk: str | None = None
    free_disk: bool = True  # GitHub: remove what the runner image ships and a CUDA build does not need
