"""The compile tiers' image builds, started when the session starts instead of when their module's tests come up.

Each compile tier (CUDA, CPU, Vulkan) spends most of its time in one `llama-bake build` that compiles llama.cpp, and
the tests before them in a run leave much of the machine idle (they wait on registries, engines and health checks).
A tier module declares its build as an `EarlyBuild`; the session starts every selected one, in a thread, by order
(the CUDA tier's first: its compiler cache starts the other two), on a builder of its own that runs at a lower
priority, so that the tests in front keep their pace and the compiles fill what they leave idle. The tier's module
fixture then waits for its build and checks it: a failed build fails the tier's tests with its output, as it did
when the fixture ran it.

The builder is its own so that nothing the other tests do to the session's builder (prune it, stop it, kill it)
reaches a compile; the tiers' later builds run on the session's builder from the exported caches, as a CI job on a
fresh runner does.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest

from tests.statedirs import remove_in_background, state_dir

T = TypeVar("T")
# The early builder's niceness: the tests in front of the compiles keep the CPU they ask for.
NICENESS = 10
# A finished step in `llama-bake build --progress plain`: "[target stage n/m] INSTRUCTION ... DONE 12.3s".
STEP_DONE = re.compile(r"^\[(?P<step>[^\]]+)\] .* \.\.\. DONE (?P<seconds>[0-9.]+)s$")
# What the early builds took, a line per tier, for the run's summary (tests/conftest.py prints it).
REPORT: list[str] = []


def slowest_steps(output: str, count: int = 3) -> list[tuple[float, str]]:
    """The ``count`` steps of a plain progress output that took longest, longest first, as (seconds, step)."""
    steps = [(float(m["seconds"]), m["step"]) for line in output.splitlines() if (m := STEP_DONE.match(line))]
    return sorted(steps, key=lambda s: -s[0])[:count]


def report_line(name: str, started: float, ended: float, output: str) -> str:
    """Where a tier's build went: when, in minutes from the session's start, and its slowest steps."""
    slowest = slowest_steps(output)
    steps = ", ".join(f"{step} {seconds:.0f} s" for seconds, step in slowest) or "none ran (all from the cache)"
    took = (ended - started) / 60
    return f"early build {name}: {took:.1f} min ({started / 60:.1f}-{ended / 60:.1f} min in); slowest steps: {steps}"


@dataclass(frozen=True)
class Build:
    """The build a tier's fixture used to run itself: the command, where, and the file that keeps its output."""

    argv: list[str]
    cwd: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Setup:
    """What a tier's prepare gets: an empty directory for its project, what holds anything that must live until the
    session ends (a stand-in server), and the session's environment as the chain started (the tests running
    meanwhile change os.environ for themselves)."""

    project: Path
    closing: contextlib.ExitStack
    env: dict[str, str]


# prepare(setup): writes the tier's project and returns its build and what reads the result once the build has
# succeeded.
Prepare = Callable[[Setup], tuple[Build, Callable[[], T]]]


@dataclass(frozen=True, eq=False)
class EarlyBuild(Generic[T]):
    """A tier module's build (``EARLY_BUILD`` at module level), run ``order``-th in the session's chain."""

    name: str
    order: int
    prepare: Prepare[T]


@dataclass(eq=False)
class _Slot:
    early: EarlyBuild[Any]
    project: Path
    done: threading.Event = field(default_factory=threading.Event)
    returncode: int | None = None
    read: Callable[[], Any] | None = None
    log: Path | None = None
    error: BaseException | None = None


class Chain:
    """The session's early builds, run by order in a thread on a niced builder of their own."""

    def __init__(self, builds: list[EarlyBuild[Any]], root: Path, env: dict[str, str]) -> None:
        self.slots = {b.name: _Slot(b, root / b.name) for b in sorted(builds, key=lambda b: b.order)}
        for slot in self.slots.values():
            slot.project.mkdir(parents=True)
        # A short path: buildkitd's unix socket path is limited to about 100 bytes.
        self.state = state_dir("lb-early-")
        builder = f"llama-bake-early-{os.getpid()}"
        self.env = {**env, "LLAMA_BAKE_BUILDER": builder, "LLAMA_BAKE_STATE_DIR": str(self.state)}
        self.closing = contextlib.ExitStack()
        self.process: subprocess.Popen[bytes] | None = None  # the build running now
        self.stopping = False
        self.started = time.monotonic()
        self.lock = threading.Lock()  # a build starts, or the session stops: never a build after the stop
        self.thread = threading.Thread(target=self._run, name="early-builds", daemon=True)

    def start(self) -> None:
        self._builder("up")
        self.thread.start()

    def wait(self, early: EarlyBuild[T]) -> T:
        """The tier's result, once its build has finished; a failed build fails the calling test with its output."""
        slot = self.slots[early.name]
        slot.done.wait()
        if slot.error is not None:
            raise slot.error
        assert slot.log is not None
        assert slot.read is not None
        if slot.returncode != 0:
            output = slot.log.read_text(encoding="utf-8", errors="replace")
            pytest.fail(f"the {early.name} tier's build exited {slot.returncode}:\n{output[-6000:]}")
        return slot.read()  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Stop a build still running (an interrupted or failed session), then the builder; close what lived."""
        with self.lock:
            self.stopping = True
            process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)  # llama-bake cancels its build, as on Ctrl-C
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if self.thread.is_alive():
            self.thread.join()
        try:
            self._builder("down")
        finally:
            self.closing.close()
            remove_in_background([self.state])

    def _builder(self, verb: str) -> None:
        # The daemon inherits the niceness, and its steps (the compiles) inherit the daemon's.
        command = ["llama-bake", "builder", verb]
        if verb == "up":
            command = ["nice", "-n", str(NICENESS), *command]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            pytest.fail(f"`llama-bake builder {verb}` for the early builds exited {result.returncode}:\n{output}")

    def _run(self) -> None:
        """The builds one after another, by order: each tier's tests then run beside the next tier's build (the CPU
        and Vulkan tiers' builds side by side finished together, and the tests of both ran with nothing beside them:
        a cold run 2 minutes longer)."""
        for slot in self.slots.values():
            self._build(slot)

    def _build(self, slot: _Slot) -> None:
        try:
            build, slot.read = slot.early.prepare(Setup(slot.project, self.closing, self.env))
            slot.log = build.log
            with build.log.open("wb") as log:
                with self.lock:
                    if self.stopping:
                        message = f"the session stopped before the {slot.early.name} tier's build started"
                        raise RuntimeError(message)
                    process = self.process = subprocess.Popen(
                        build.argv,
                        cwd=build.cwd,
                        env={**self.env, **build.env},
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                began = time.monotonic() - self.started
                slot.returncode = process.wait()
            output = build.log.read_text(encoding="utf-8", errors="replace")
            REPORT.append(report_line(slot.early.name, began, time.monotonic() - self.started, output))
        # Whatever a prepare raised (pytest.fail's exception is a BaseException) is the tier's fixture's to raise.
        except BaseException as exc:  # noqa: BLE001
            slot.error = exc
        finally:
            slot.done.set()


def selected(items: list[pytest.Item]) -> list[EarlyBuild[Any]]:
    """The early builds of the modules whose tests the session runs."""
    found: dict[str, EarlyBuild[Any]] = {}
    for item in items:
        early = getattr(getattr(item, "module", None), "EARLY_BUILD", None)
        if isinstance(early, EarlyBuild):
            found[early.name] = early
    return list(found.values())


def chain_for(request: pytest.FixtureRequest, root: Callable[[], Path]) -> Iterator[Chain | None]:
    """The session fixture's body (tests/conftest.py): no chain, and no builder, when no tier with one is selected."""
    builds = selected(request.session.items)
    if not builds:
        yield None
        return
    request.getfixturevalue("buildx")
    request.getfixturevalue("session_env")  # the tools on PATH, the session's state apart from a user's
    chain = Chain(builds, root(), dict(os.environ))
    chain.start()
    try:
        yield chain
    finally:
        chain.stop()
