"""What a build did, per target: the progress stream and bake's metadata -> a ``Summary``, and the text that
explains a failure. Pure."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from llama_bake.buildx import ccache
from llama_bake.buildx.invocation import image_of
from llama_bake.buildx.progress import Progress, TargetState, Vertex
from llama_bake.plan.ir import BakePlan

LOG_TAIL = 20

# built: steps ran; cached: every step came from the cache; unfinished: started, then the build stopped
# (a failure elsewhere, Ctrl-C); skipped: never tried, because the base it needs failed.
Status = Literal["built", "cached", "failed", "canceled", "unfinished", "skipped", "not started"]
DONE: tuple[Status, ...] = ("built", "cached")


@dataclass(frozen=True)
class TargetSummary:
    name: str
    image: str
    digest: str
    status: Status
    wall_seconds: float
    steps_executed: int
    steps_cached: int
    base_digest: str = ""  # the exact base image a model was built on (two phases)
    platforms: tuple[str, ...] = ("linux/amd64",)
    # The docker driver on the classic image store reports the image ID (its config's digest), not a manifest's.
    digest_is_image_id: bool = False
    # A base whose compile ran: its compiler cache's hits and misses (None: it did not compile).
    ccache_hits: int | None = None
    ccache_misses: int | None = None
    # A target with several platforms, built and pushed for one (`build --platform`): pushed by digest only, and
    # the tags and platforms of the index `ci merge` makes of the parts.
    merge_tags: tuple[str, ...] = ()
    merge_platforms: tuple[str, ...] = ()

    @property
    def ccache_hit_rate(self) -> float | None:
        if self.ccache_hits is None or self.ccache_misses is None:
            return None
        total = self.ccache_hits + self.ccache_misses
        return self.ccache_hits / total if total else 0.0


@dataclass(frozen=True)
class Summary:
    targets: tuple[TargetSummary, ...]
    wall_seconds: float
    builder: str
    messages: tuple[str, ...] = field(default=())  # buildx's own lines, each once
    phases: int = 1
    pushed: bool = False  # the images went to their registry (`--bases-from` takes bases from such a build only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(dict.fromkeys(self.messages)))

    @property
    def finished(self) -> list[str]:
        return [t.name for t in self.targets if t.status in DONE]

    @property
    def steps_executed(self) -> int:
        return sum(t.steps_executed for t in self.targets)

    @property
    def steps_cached(self) -> int:
        return sum(t.steps_cached for t in self.targets)

    def to_json(self) -> str:
        data = {
            "builder": self.builder,
            "phases": self.phases,
            "pushed": self.pushed,
            "wall_seconds": round(self.wall_seconds, 3),
            "steps_executed": self.steps_executed,
            "steps_cached": self.steps_cached,
            "targets": [
                asdict(t) | {"wall_seconds": round(t.wall_seconds, 3), "ccache_hit_rate": _rounded(t.ccache_hit_rate)}
                for t in self.targets
            ],
            "messages": list(self.messages),
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _rounded(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 4)


def summarize(  # noqa: PLR0913 - a pure function of everything a build reports
    plan: BakePlan,
    targets: list[str],
    progress: Progress,
    metadata: Mapping[str, object],
    wall_seconds: float,
    builder: str | None,
    variables: tuple[str, ...] = (),
    skipped: tuple[str, ...] = (),
    phases: int = 1,
    pinned: Mapping[str, str] | None = None,
    *,
    pushed: bool = False,
    platform: str | None = None,
    tag_values: Mapping[str, str] | None = None,
) -> Summary:
    """Each target's row. ``pinned``: the digest of each base given as built elsewhere (not built here).
    ``platform``: the one platform built (``--platform``); a target of several platforms pushed for it alone
    records the tags its index gets (resolved with ``tag_values``, as bake resolves them)."""
    given = pinned or {}
    finished = progress.finished_targets()
    statuses = {name: _status(progress.target(name), name in finished, metadata.get(name)) for name in targets}
    for name in targets:
        # BuildKit names a shared step after the first target that reached it: when only models were asked
        # for, the base's steps show under a model, and a model done means its base was done (as it was).
        base = plan.target(name).base
        if base is None or base not in statuses or statuses[name] not in DONE:
            continue
        if statuses[base] in ("not started", "unfinished") or not progress.target(base).steps:
            statuses[base] = statuses[name]
    for name in skipped:
        statuses[name] = "skipped"
    compiled = ccache.compiled(progress, plan, targets)
    rows = []
    for name in targets:
        state = progress.target(name)
        status = statuses[name]
        base = plan.target(name).base
        every = plan.target(name).platforms
        part = pushed and platform is not None and len(every) > 1
        tags = _tags(plan, name, tag_values or {}, variables) if part else ()
        rows.append(
            TargetSummary(
                name=name,
                image=image_name(plan, metadata, name, variables),
                digest=digest_of(metadata, name),
                status=status,
                wall_seconds=state.wall_seconds,
                steps_executed=state.executed,
                steps_cached=state.cached,
                base_digest=_base_digest(metadata, base, given, phases),
                platforms=(platform,) if platform else every,
                merge_tags=tags,
                merge_platforms=every if part else (),
                digest_is_image_id=_is_image_id(metadata, name),
                ccache_hits=compiled[name].hits if name in compiled else None,
                ccache_misses=compiled[name].misses if name in compiled else None,
            )
        )
    builder_name = builder or "(buildx default)"
    return Summary(tuple(rows), wall_seconds, builder_name, tuple(progress.messages), phases, pushed=pushed)


def _tags(plan: BakePlan, name: str, values: Mapping[str, str], variables: tuple[str, ...]) -> tuple[str, ...]:
    """Every tag of the target as bake writes them: variables from ``values`` (the environment), then ``--var``."""
    declared = {v.name for v in plan.variables}
    found = {k: v for k, v in values.items() if k in declared}
    found |= {k: v for k, _, v in (item.partition("=") for item in variables) if k in declared}
    return tuple(tag for tag in (plan.value_of(t, found) for t in plan.target(name).tags) if tag)


def _base_digest(metadata: Mapping[str, object], base: str | None, given: Mapping[str, str], phases: int) -> str:
    """The exact base image a model was built on: one given as built elsewhere, or the first of two phases'."""
    if base is None:
        return ""
    if base in given:
        return given[base]
    return digest_of(metadata, base) if phases > 1 else ""


def image_name(plan: BakePlan, metadata: Mapping[str, object], name: str, variables: tuple[str, ...]) -> str:
    """The target's image as buildx reported it (its first name), else as the plan names it."""
    return str(_meta(metadata, name).get("image.name") or image_of(plan, name, variables)).split(",")[0]


def _meta(metadata: Mapping[str, object], name: str) -> Mapping[str, object]:
    found = metadata.get(name)
    return found if isinstance(found, dict) else {}


def _is_image_id(metadata: Mapping[str, object], name: str) -> bool:
    meta = _meta(metadata, name)
    digest = meta.get("containerimage.digest")
    return bool(digest) and digest == meta.get("containerimage.config.digest")


def digest_of(metadata: Mapping[str, object], name: str) -> str:
    return str(_meta(metadata, name).get("containerimage.digest") or "")


def _status(state: TargetState, finished: bool, meta: object) -> Status:
    if state.failed is not None:
        return "failed"
    # buildx writes a target's result (its metadata) only when the whole bake succeeded: that outweighs a vertex
    # its stream reported canceled (seen in a cold build of seven targets waiting on one base's compile).
    if state.canceled and not meta:
        return "canceled"
    if finished or meta:
        return "cached" if state.steps and state.executed == 0 else "built"
    return "unfinished" if state.vertices else "not started"


# What buildx says when the builder goes away under a running build (seen: kill -9 of buildkitd, buildx v0.36.1,
# worded by the call that noticed: "failed to receive status: rpc error: code = Unavailable desc = error reading
# from server: EOF" or "failed to solve: Unavailable: error reading from server: EOF"). gRPC's Unavailable, in
# either form, is the builder out of reach whatever the description (a redial refused after the kill).
CONNECTION_LOST = (
    "error reading from server",
    "code = unavailable",
    "unavailable: ",
    "transport is closing",
    "connection reset by peer",
    "broken pipe",
)


def steps_ran(summary: Summary) -> bool:
    """Whether the builder ran or answered any step (so whatever failed, the builder was there)."""
    return bool(summary.steps_executed or summary.steps_cached or summary.finished)


def _headline(summary: Summary, stderr: str) -> str:
    """A failure with no failing step: the builder lost, the build canceled, or buildx failing (before or
    after steps ran)."""
    ran = steps_ran(summary)
    if ran and any(sign in stderr.lower() for sign in CONNECTION_LOST):
        return (
            "lost the connection to the builder during the build (its buildkitd stopped, was killed or became "
            f"unreachable) after {summary.steps_executed} steps had run and {summary.steps_cached} came from "
            "the cache:"
        )
    if any(t.status == "canceled" for t in summary.targets):
        return "the build was canceled (buildx was interrupted or stopped):"
    if ran:
        return (
            f"docker buildx bake failed after {summary.steps_executed} steps had run and {summary.steps_cached} "
            "came from the cache, without naming a failing step:"
        )
    return "docker buildx bake failed before any step ran:"


def failure_message(failure: tuple[str, Vertex] | None, summary: Summary, stderr: str) -> str:
    unfinished = [t.name for t in summary.targets if t.status not in DONE and t.status != "skipped"]
    skipped = [t.name for t in summary.targets if t.status == "skipped"]
    lines = []
    if failure is not None:
        target, vertex = failure
        lines.append(f"target `{target}` failed at step `{vertex.step.strip()}`:")
        lines.append(f"  {vertex.error.strip()}")
        if vertex.log:
            lines.append(f"  last {min(LOG_TAIL, len(vertex.log))} lines of its log:")
            lines += [f"    {line}" for line in vertex.log[-LOG_TAIL:]]
    else:
        tail = [line for line in stderr.splitlines() if line.strip() and not line.lstrip().startswith("{")]
        lines.append(_headline(summary, stderr))
        lines += [f"  {line}" for line in tail[-LOG_TAIL:]] or ["  (no output)"]
        lines += [
            f"steps of {t.name}: {t.steps_executed} run, {t.steps_cached} from the cache"
            for t in summary.targets
            if t.steps_executed or t.steps_cached
        ]
    lines.append("finished: " + (", ".join(summary.finished) or "none"))
    lines.append("not finished: " + (", ".join(unfinished) or "none"))
    if skipped:
        lines.append("skipped, their base did not build: " + ", ".join(skipped))
    return "\n".join(lines)
