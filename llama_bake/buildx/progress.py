"""BuildKit's ``--progress=rawjson`` stream -> per-target state: steps executed and cached, wall time,
failures with their logs. Pure: fed line by line, it does no I/O.

Bake names each vertex ``[target stage n/m] INSTRUCTION``. BuildKit solves a step once even when several
targets need it (a model's base steps), and names it after the first target that reached it; such a step
is counted once, under that target.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

_NAME = re.compile(r"^\[(?P<target>[A-Za-z0-9_-]+)(?: (?P<where>[^\]]*))?\] (?P<step>.*)$", re.DOTALL)
_STEP = re.compile(r"^(?:\S+ )?\d+/\d+$")
_CACHE_IMPORT = "importing cache manifest from "
_LOAD_DEFINITION = "load build definition from "  # each build's own: its Dockerfile, sent in its session
_UNNAMED = re.compile(r"^(?:\[(?P<where>[^\]]*)\] )?")


@dataclass
class Transfer:
    """Bytes BuildKit reports moving for one vertex: a layer pulled or pushed, a context sent."""

    id: str
    current: int = 0
    total: int = 0
    started: datetime | None = None
    updated: datetime | None = None
    completed: datetime | None = None


@dataclass(frozen=True)
class Transfers:
    """A target's transfers together: bytes done and expected, the rate so far, and the time left at it."""

    current: int
    total: int
    seconds: float
    active: bool

    @property
    def rate(self) -> float:
        return self.current / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        if not self.active or self.rate <= 0 or self.total <= self.current:
            return None
        return (self.total - self.current) / self.rate


@dataclass
class Vertex:
    digest: str
    name: str
    target: str | None = None
    is_step: bool = False
    started: datetime | None = None
    completed: datetime | None = None
    cached: bool = False
    error: str = ""
    inputs: tuple[str, ...] = ()
    log: list[str] = field(default_factory=list)
    first_output: datetime | None = None  # when the step's process first wrote: its work had begun
    last_output: datetime | None = None
    transfers: dict[str, Transfer] = field(default_factory=dict)

    @property
    def step(self) -> str:
        match = _NAME.match(self.name)
        return match.group("step") if match else self.name

    @property
    def fatal(self) -> bool:
        """An error that fails the build. A cache that cannot be imported (none exported yet: a pull request's
        first run) is an error on its vertex, yet BuildKit builds on without it."""
        return bool(self.error) and not _canceled(self.error) and not self.step.startswith(_CACHE_IMPORT)


@dataclass
class TargetState:
    name: str
    vertices: list[Vertex] = field(default_factory=list)

    @property
    def steps(self) -> list[Vertex]:
        return [v for v in self.vertices if v.is_step]

    def step_states(self) -> dict[str, bool]:
        """Each started step by name: True when it came from the cache. A ``COPY/ADD --link`` step is two
        vertices of one name, the copy and a merge onto the base; after a cache import the copy is a hit and
        only the cheap merge runs, so a step is cached when any of its vertices is."""
        states: dict[str, bool] = {}
        for v in self.steps:
            if v.cached or v.started:
                states[v.name] = states.get(v.name, False) or v.cached
        return states

    @property
    def executed(self) -> int:
        return sum(1 for cached in self.step_states().values() if not cached)

    @property
    def cached(self) -> int:
        return sum(1 for cached in self.step_states().values() if cached)

    @property
    def failed(self) -> Vertex | None:
        return next((v for v in self.vertices if v.fatal), None)

    @property
    def canceled(self) -> bool:
        return any(_canceled(v.error) for v in self.vertices)

    @property
    def wall_seconds(self) -> float:
        """From the target's first step to its last. BuildKit sends every build that reaches a vertex another
        build on the builder is running (or ran while both were open) that vertex's history, with that build's
        start times: this build's own start is when it loaded its Dockerfile, and nothing counts from before."""
        own = [v.started for v in self.vertices if v.started and _LOAD_DEFINITION in v.step]
        floor = min(own) if own else None
        starts = [max(v.started, floor) if floor else v.started for v in self.vertices if v.started]
        ends = [v.completed for v in self.vertices if v.completed]
        if not starts or not ends:
            return 0.0
        return max(0.0, (max(ends) - min(starts)).total_seconds())

    @property
    def current(self) -> str:
        running = self.running
        return running.step if running else ""

    @property
    def running(self) -> Vertex | None:
        running = [v for v in self.steps if v.started and not v.completed]
        return running[-1] if running else None

    def transfers(self) -> Transfers:
        """Every sized transfer of the target (pulls, pushes, downloads BuildKit measures)."""
        sized = [t for v in self.vertices for t in v.transfers.values() if t.total > 0]
        starts = [t.started for t in sized if t.started is not None]
        ends = [end for t in sized if (end := t.completed or t.updated) is not None]
        seconds = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
        return Transfers(
            current=sum(min(t.current, t.total) for t in sized),
            total=sum(t.total for t in sized),
            seconds=max(0.0, seconds),
            active=any(t.completed is None for t in sized),
        )


def _canceled(error: str) -> bool:
    return "context canceled" in error or error.strip() == "canceled"


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    # BuildKit writes RFC 3339 with nanoseconds; Python's parser takes at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.year > 1970 else None  # BuildKit's zero time: not set


class Progress:
    """Accumulates the rawjson stream. ``feed`` returns the vertices whose state changed."""

    def __init__(self, links: Mapping[str, str] | None = None) -> None:
        # target -> the target it builds on (a model's base). The docker driver solves a linked base inside each
        # model's request and reports its steps once per request, under each name: they are the base's.
        self.links = dict(links or {})
        # The target a bake of one target builds: buildx then leaves its name out of each vertex's.
        self.sole: str | None = None
        self.vertices: dict[str, Vertex] = {}
        self.targets: dict[str, TargetState] = {}
        self.messages: list[str] = []
        # The log lines the last ``feed`` brought, in order: what a display streams.
        self.new_logs: list[tuple[Vertex, str]] = []

    def feed(self, line: str) -> list[Vertex]:
        self.new_logs = []
        text = line.strip()
        if not text:
            return []
        if not text.startswith("{"):
            self.messages.append(text)
            return []
        try:
            event = json.loads(text)
        except json.JSONDecodeError:
            self.messages.append(text)
            return []
        changed = [self._vertex(raw) for raw in event.get("vertexes") or []]
        for raw in event.get("logs") or []:
            self._log(raw)
        for raw in event.get("statuses") or []:
            vertex = self._status(raw)
            if vertex is not None and vertex not in changed:
                changed.append(vertex)
        for raw in event.get("warnings") or []:
            short = _decode(raw.get("short")).strip()
            if short:
                self.messages.append(f"warning: {short}")
        return changed

    def _log(self, raw: dict[str, object]) -> None:
        vertex = self.vertices.get(str(raw.get("vertex")))
        if vertex is None:
            return
        vertex.first_output = vertex.first_output or _time(raw.get("timestamp"))
        vertex.last_output = _time(raw.get("timestamp")) or vertex.last_output
        lines = _decode(raw.get("data")).splitlines()
        vertex.log.extend(lines)
        del vertex.log[:-200]  # the end of a log is what explains a failure
        self.new_logs += [(vertex, text) for text in lines]

    def _status(self, raw: dict[str, object]) -> Vertex | None:
        """A transfer's progress (a download, an export), on the vertex it belongs to."""
        vertex = self.vertices.get(str(raw.get("vertex")))
        if vertex is None:
            return None
        ident = str(raw.get("id") or "")
        transfer = vertex.transfers.setdefault(ident, Transfer(ident))
        transfer.current = _int(raw.get("current"), transfer.current)
        transfer.total = _int(raw.get("total"), transfer.total)
        transfer.started = transfer.started or _time(raw.get("started"))
        transfer.updated = _time(raw.get("timestamp")) or transfer.updated
        transfer.completed = _time(raw.get("completed")) or transfer.completed
        return vertex

    def _vertex(self, raw: dict[str, object]) -> Vertex:
        digest = str(raw.get("digest"))
        vertex = self.vertices.get(digest)
        if vertex is None:
            name = str(raw.get("name") or "")
            if self.sole is not None:
                name = _UNNAMED.sub(lambda m: f"[{self.sole} {m['where']}] " if m["where"] else f"[{self.sole}] ", name)
            vertex = Vertex(digest=digest, name=name)
            match = _NAME.match(name)
            if match:
                vertex.target = match.group("target")
                where = match.group("where") or ""
                vertex.is_step = bool(_STEP.match(where))
                self.targets.setdefault(vertex.target, TargetState(vertex.target)).vertices.append(vertex)
            self.vertices[digest] = vertex
        else:
            self._reattribute(vertex, str(raw.get("name") or ""))
        vertex.started = _time(raw.get("started")) or vertex.started
        vertex.completed = _time(raw.get("completed")) or vertex.completed
        vertex.cached = bool(raw.get("cached")) or vertex.cached
        vertex.error = str(raw.get("error") or vertex.error)
        inputs = raw.get("inputs")
        if isinstance(inputs, list) and inputs:
            vertex.inputs = tuple(str(i) for i in inputs)
        return vertex

    def _reattribute(self, vertex: Vertex, name: str) -> None:
        """A step already seen under a model, now reported under that model's base: it is the base's."""
        match = _NAME.match(name)
        owner = vertex.target
        if match is None or owner is None or self.links.get(owner) != match.group("target"):
            return
        self.targets[owner].vertices.remove(vertex)
        vertex.name, vertex.target = name, match.group("target")
        self.targets.setdefault(vertex.target, TargetState(vertex.target)).vertices.append(vertex)

    def finished_targets(self) -> set[str]:
        """The targets whose every vertex is done: completed, or needed by nothing BuildKit still had to run
        because a vertex built on it completed (on a cache hit BuildKit never starts the steps below it)."""
        covered: set[str] = set()
        pending = [v.digest for v in self.vertices.values() if v.completed]
        while pending:
            digest = pending.pop()
            if digest not in covered:
                covered.add(digest)
                vertex = self.vertices.get(digest)
                pending.extend(vertex.inputs if vertex else ())
        finished = set()
        for name, state in self.targets.items():
            # A cache import that failed is neither done nor needed: the build went on without it.
            needed = [v for v in state.vertices if not v.error or v.fatal or _canceled(v.error)]
            if (
                needed
                and not any(v.error or (v.started and not v.completed) for v in needed)
                and all(v.digest in covered for v in needed)
            ):
                finished.add(name)
        return finished

    def executed_steps(self) -> list[str]:
        """The instructions of the steps that ran rather than came from the cache, sorted."""
        return sorted(
            _NAME.sub(r"\g<step>", name)
            for state in self.targets.values()
            for name, cached in state.step_states().items()
            if not cached
        )

    def target(self, name: str) -> TargetState:
        return self.targets.get(name, TargetState(name))

    def failure(self) -> tuple[str, Vertex] | None:
        for state in self.targets.values():
            vertex = state.failed
            if vertex is not None:
                return state.name, vertex
        orphan = next((v for v in self.vertices.values() if v.fatal), None)
        return ("(unknown target)", orphan) if orphan else None


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _decode(data: object) -> str:
    if not isinstance(data, str):
        return ""
    try:
        return base64.b64decode(data).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return data
