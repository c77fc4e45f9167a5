"""The builder a build runs on: its name, what it can do (probed before any step), the route and refusals that
follow, and what buildx's own failures say about it (no buildx, no such builder, nothing reachable)."""

from __future__ import annotations

import dataclasses
import os

from llama_bake.buildx.client import Baker
from llama_bake.buildx.driver import Capabilities, refusals
from llama_bake.buildx.invocation import demands, phases
from llama_bake.buildx.options import BuildOptions
from llama_bake.errors import DockerError
from llama_bake.plan.ir import BakePlan

DEFAULT_BUILDER = "llama-bake"


def builder_name() -> str:
    """The name ``llama-bake builder up`` registers (``$LLAMA_BAKE_BUILDER``, default llama-bake)."""
    return os.environ.get("LLAMA_BAKE_BUILDER", DEFAULT_BUILDER)


NO_BUILDER_HINTS = (
    "cannot connect to the docker daemon",
    "no builder",
    "failed to find driver",
    "connect: no such file or directory",
    "connection refused",
    "is the docker daemon running",
)


def missing_builder(name: str | None, stderr: str) -> bool:
    """buildx refused ``--builder name``: there is no builder of that name."""
    return bool(name) and f'no builder "{name}" found' in stderr


# What the docker client says when the buildx plugin is not installed: it reads `buildx` as an unknown command,
# or `--builder` as an unknown flag of its own.
NO_BUILDX_HINTS = ("unknown flag: --builder", "'buildx' is not a docker command", "unknown command: docker buildx")


# Where buildx comes from: the doctor's fix and the error of a build that finds no buildx both say it.
INSTALL_BUILDX = (
    "Docker's apt repository: docker-buildx-plugin; Ubuntu: docker-buildx; or a release binary from "
    "https://github.com/docker/buildx/releases saved as ~/.docker/cli-plugins/docker-buildx (chmod +x); "
    "Docker Desktop ships it"
)


def _no_buildx(text: str) -> bool:
    return any(hint in text for hint in NO_BUILDX_HINTS)


def _no_builder(text: str) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in NO_BUILDER_HINTS)


class NoBuilder(DockerError):
    """No builder was named, the one `builder up` makes does not exist, and buildx's own is unreachable."""


class BuilderCannot(DockerError):
    """The build asks for something the builder cannot do (found before any step runs)."""


def probe_builder(runner: Baker, requested: str | None) -> tuple[str | None, Capabilities | None]:
    """The builder a build uses and what it can do: the requested one, else the one `builder up` made, else
    buildx's current one (None). Capabilities are None when the builder does not answer: the bake then says why."""
    if requested:
        try:
            return requested, runner.capabilities(requested)
        except DockerError:
            return requested, None
    name = builder_name()
    for candidate in (name, None):
        try:
            return candidate, runner.capabilities(candidate)
        except DockerError:
            continue
    return name, None


def fit_to_builder(plan: BakePlan, options: BuildOptions, caps: Capabilities | None) -> BuildOptions:
    """Before any step runs: take the route the builder allows (two phases through the engine's image store when
    it cannot write OCI layouts), then refuse, each with its fix, what it still cannot do."""
    if caps is None:
        return options
    if not caps.oci_export and caps.into_engine and not options.push:
        options = dataclasses.replace(options, hand_over="engine")
    problems = refusals(caps, demands(options, plan, phases(options, plan)))
    if problems:
        raise BuilderCannot("\n".join(problems))
    return options


def diagnose(stderr: str, builder: str | None) -> DockerError | None:
    """What a bake that failed before any step says about the builder (None: the build itself failed)."""
    if _no_buildx(stderr):
        msg = (
            f"the docker client has no buildx plugin: install it ({INSTALL_BUILDX}), then check with "
            "`docker buildx version`"
        )
        return DockerError(msg)
    if missing_builder(builder, stderr):
        msg = (
            f"there is no builder `{builder}` (`docker buildx ls` lists them); "
            "`llama-bake builder up` starts a local one"
        )
        return DockerError(msg)
    if _no_builder(stderr):
        msg = (
            "no BuildKit builder is reachable: start one with `llama-bake builder up` (a local buildkitd),"
            " or pass --builder NAME.\n" + stderr.strip()
        )
        return NoBuilder(msg)
    return None
