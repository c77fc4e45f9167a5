"""``llama-bake build``: generate, run each phase's ``docker buildx bake``, and report per target.

Takes build options and the paths of the catalog; gives a ``Summary`` (or a ``BuildError`` that names the
failing target, the end of its log and which targets finished). The command lines come from ``invocation``,
the report from ``summary``; this module runs the phases in order, pins the models to the bases the first
phase made, and turns buildx's failures and Ctrl-C into our errors. ``dry_run`` is its own path: it prints the
commands and runs nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Literal, NoReturn

from llama_bake.buildx import ccache
from llama_bake.buildx.client import BakeFailed, Baker, Invocation, registry_digest
from llama_bake.buildx.diskcheck import check_disk
from llama_bake.buildx.driver import Capabilities
from llama_bake.buildx.invocation import (
    Phase,
    Site,
    command_text,
    expand_targets,
    layout_dir,
    make_invocation,
    outputs,
    phases,
    refuse_other_platform,
    with_bases,
)
from llama_bake.buildx.options import BuildOptions
from llama_bake.buildx.pinned import given_bases, refuse_unusable, repository_of
from llama_bake.buildx.preflight import check_push, pushed_repositories
from llama_bake.buildx.probe import NoBuilder, diagnose, fit_to_builder, missing_builder, probe_builder
from llama_bake.buildx.progress import Progress, Vertex
from llama_bake.buildx.summary import DONE, Summary, digest_of, failure_message, image_name, steps_ran, summarize
from llama_bake.errors import BuildError, CatalogError, UsageError
from llama_bake.files import write_atomic
from llama_bake.generated import write_compiled
from llama_bake.plan.ir import BakePlan
from llama_bake.project import Paths, compile_catalog, git_environment

OnLine = Callable[[str, Progress, list[Vertex]], None]


class BuildFailed(BuildError):
    """A build that ran and failed; ``summary`` says what each target got to (for ``--summary-json``)."""

    def __init__(self, message: str, summary: Summary) -> None:
        super().__init__(message)
        self.summary = summary


class BuildInterrupted(BuildFailed):
    exit_code = 130


def refuse_unbuildable(plan: BakePlan, options: BuildOptions) -> None:
    """Before any work: a build with nothing to build, of a model whose pins are placeholders (it would
    download gigabytes, then fail its checksum), or on a base given from a summary that has no image of it,
    stops here naming the fix."""
    targets = with_bases(plan, expand_targets(plan, options.targets or ("default",)))
    if not targets:
        msg = "nothing to build: the catalog has no model yet; add one with `llama-bake add OWNER/REPO:QUANT`"
        raise UsageError(msg)
    refuse_unusable(given_bases(options.base_images, plan), plan, targets, options.phases)
    refuse_other_platform(options, plan, targets)
    problems = [t.unpinned for t in plan.targets if t.name in targets and t.unpinned]
    if problems:
        raise CatalogError(problems)


def _prepare(
    paths: Paths, options: BuildOptions, runner: Baker
) -> tuple[BakePlan, BuildOptions, dict[str, str], Capabilities | None]:
    """What a build and a dry run do first: generate, refuse what cannot build, read the git values, then probe
    the builder and fit the options to it (refusing, before any step, what it cannot do or has no disk for)."""
    compiled = compile_catalog(paths)
    write_compiled(paths, compiled)
    refuse_unbuildable(compiled.plan, options)
    env = git_environment(compiled.plan, paths.project)
    builder, caps = probe_builder(runner, options.builder)
    fitted = fit_to_builder(compiled.plan, dataclasses.replace(options, builder=builder), caps)
    check_disk(compiled.plan, fitted)
    return compiled.plan, fitted, env, caps


def _phases_and_caches(
    options: BuildOptions, plan: BakePlan, lookup: ccache.Digest
) -> tuple[list[Phase], dict[str, ccache.Store], dict[str, str]]:
    """The build's phases, each base's compiler-cache store, and the last export of each to import."""
    steps = phases(options, plan)
    stores = ccache.stores(options, plan, [t for phase in steps for t in phase.targets])
    found = {base: ccache.last_export(where, lookup) for base, where in stores.items()}
    return steps, stores, {base: source for base, source in found.items() if source}


def dry_run(paths: Paths, options: BuildOptions, runner: Baker) -> str:
    """Generate, then the command line of each phase, one per line; nothing is built. The second phase's
    base images are named by the placeholders the first phase fills in."""
    plan, options, env, _ = _prepare(paths, options, runner)
    builder = options.builder
    steps, _, imports = _phases_and_caches(options, plan, lambda ref: registry_digest(ref, builder))
    site = Site(paths.output, paths.bake_dir, Path("<tmp>"), env, imports)
    placeholders = {
        t.name: _base_source(options, plan, t.name, site.workdir, {t.name: {"containerimage.digest": "<digest>"}})
        for t in plan.targets
        if t.kind == "base"
    }
    invocations = [make_invocation(options, plan, phase, site, placeholders) for phase in steps]
    return "\n".join(command_text(invocation, runner.command(invocation)) for invocation in invocations)


Outcome = Literal["done", "failed", "interrupted"]


def assert_never(value: NoReturn) -> NoReturn:  # typing.assert_never is Python 3.11+
    msg = f"unhandled outcome {value!r}"
    raise AssertionError(msg)


@dataclasses.dataclass
class _Build:
    """One build underway: what its phases share, and what they report as they run."""

    paths: Paths
    options: BuildOptions
    plan: BakePlan
    steps: list[Phase]
    site: Site
    progress: Progress
    fallback: bool  # the default builder did not answer the probe: buildx's own may be used instead
    metadata: dict[str, object] = dataclasses.field(default_factory=dict)
    ran: list[Phase] = dataclasses.field(default_factory=list)
    stderr: str = ""

    @property
    def targets(self) -> list[str]:
        return [t for phase in self.steps for t in phase.targets]

    def run_phases(self, runner: Baker, on_line: OnLine | None) -> Outcome:
        """Each phase in order; a phase that fails stops the build. Returns how it ended: done, failed or
        interrupted (the stderr of a failed bake is kept)."""
        try:
            with _noting_sigint() as sigint:
                for phase in self.steps:
                    self.ran.append(phase)
                    self._run_phase(phase, runner, on_line)
        except BakeFailed as exc:
            # buildx may exit from the same Ctrl-C before Python raises KeyboardInterrupt: the same outcome.
            self.stderr = exc.stderr
            return "interrupted" if sigint else "failed"
        except KeyboardInterrupt:
            # buildx got the same SIGINT (a terminal sends it to the whole job) and cancels the solve.
            return "interrupted"
        return "done"

    def _run_phase(self, phase: Phase, runner: Baker, on_line: OnLine | None) -> None:
        self.progress.sole = phase.targets[0] if len(phase.targets) == 1 else None
        pinned = _bases_of(self.plan, phase.targets) if phase.name == "models" else []
        workdir = self.site.workdir
        images = {base: _base_source(self.options, self.plan, base, workdir, self.metadata) for base in pinned}
        invocation = make_invocation(self.options, self.plan, phase, self.site, images)
        try:
            invocation = _bake(runner, invocation, self.paths.bake_dir, self.progress, on_line, self.fallback)
        finally:
            self.metadata.update(_read_metadata(Path(invocation.metadata_file or "")))
        self.options = dataclasses.replace(self.options, builder=invocation.builder)

    def summary(self, elapsed: float) -> Summary:
        not_run = tuple(t for phase in self.steps[len(self.ran) :] for t in phase.targets)
        return summarize(
            self.plan,
            self.targets,
            self.progress,
            self.metadata,
            elapsed,
            self.options.builder,
            self.options.variables,
            skipped=not_run,
            phases=len(self.steps),
            pinned={name: p.digest for name, p in given_bases(self.options.base_images, self.plan).items()},
            pushed=self.options.push,
            platform=self.options.platform,
            tag_values={**os.environ, **self.site.env},
        )


def run_build(
    paths: Paths,
    options: BuildOptions,
    runner: Baker,
    on_line: OnLine | None = None,
    lookup: ccache.Digest | None = None,
) -> Summary:
    """Generate, then build each phase in order; a phase that fails stops the build. A base that compiled has
    its compiler cache exported after the last phase (``ccache``); ``lookup`` finds the last export's digest."""
    requested = options.builder
    plan, options, env, caps = _prepare(paths, options, runner)
    # A builder that did not answer the probe: when it is the default name, `_bake` falls back to buildx's own.
    fallback = requested is None and caps is None
    check_push(pushed_repositories(plan, options))
    builder = options.builder
    steps, stores, imports = _phases_and_caches(options, plan, lookup or (lambda ref: registry_digest(ref, builder)))
    progress = Progress({t.name: t.base for t in plan.targets if t.base is not None})
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="llama-bake-") as tmp:
        site = Site(paths.output, paths.bake_dir, Path(tmp), env, imports)
        job = _Build(paths, options, plan, steps, site, progress, fallback)
        _make_directories(options, plan, steps)
        outcome = job.run_phases(runner, on_line)
    summary = job.summary(time.monotonic() - started)
    _raise_unless_done(outcome, job, summary)
    if job.options.cache_export and stores:
        try:
            _export_ccache(job, runner, stores)
        except BuildError as exc:
            raise BuildFailed(str(exc), summary) from exc
        except KeyboardInterrupt:
            msg = "interrupted while exporting the compiler cache; the images were built, the last export stays"
            raise BuildInterrupted(msg, summary) from None
    return summary


def _raise_unless_done(outcome: Outcome, job: _Build, summary: Summary) -> None:
    """The exit code is the truth: an interrupted or failed build, and one where buildx exited 0 while a target
    did not finish, each raise (naming what failed and what had finished)."""
    finished = ", ".join(summary.finished) or "none"
    match outcome:
        case "interrupted":
            msg = f"interrupted; the builder cancels the running steps. Targets that had finished: {finished}"
            raise BuildInterrupted(msg, summary)
        case "failed":
            failure = job.progress.failure()
            # A builder that answered steps was there: what its stderr says is about the build, not a missing one.
            problem = diagnose(job.stderr, job.options.builder) if failure is None and not steps_ran(summary) else None
            raise problem or BuildFailed(failure_message(failure, summary, job.stderr), summary)
        case "done":
            pass
        case _:
            assert_never(outcome)
    unfinished = [f"{t.name} ({t.status})" for t in summary.targets if t.status not in DONE]
    if unfinished:
        msg = (
            f"docker buildx bake reported success, but not every target finished: {', '.join(unfinished)}; "
            f"finished: {finished}"
        )
        raise BuildFailed(msg, summary)


def build(  # noqa: PLR0913 - the CLI's display, summary file and builder starter are each optional
    paths: Paths,
    options: BuildOptions,
    runner: Baker,
    on_line: OnLine | None,
    summary_json: Path | None,
    *,
    start_builder: Callable[[], str] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> Summary:
    """``run_build``, with the summary written to ``summary_json`` whether the build succeeds or fails (CI shows
    what failed and what was skipped). With ``start_builder``, a build that finds no builder at all (none named,
    no Docker engine) calls it to start the embedded one, says so, and builds."""
    try:
        try:
            summary = run_build(paths, options, runner, on_line=on_line)
        except NoBuilder:
            if start_builder is None or options.builder is not None:
                raise
            say("no builder is reachable: starting the embedded one (`llama-bake builder up`; `builder down` stops it)")
            say(start_builder())
            summary = run_build(paths, options, runner, on_line=on_line)
    except BuildFailed as exc:
        if summary_json is not None:
            write_atomic(summary_json, exc.summary.to_json())
        raise
    if summary_json is not None:
        write_atomic(summary_json, summary.to_json())
    return summary


def _export_ccache(job: _Build, runner: Baker, stores: Mapping[str, ccache.Store]) -> None:
    """Export the compiler cache of each base whose compile ran (a cached base has nothing new to export)."""
    compiled = ccache.compiled(job.progress, job.plan, job.targets)
    exports = {base: where for base, where in stores.items() if base in compiled}
    if not exports:
        return
    invocation = ccache.export_invocation(job.options, job.plan, exports, job.site)
    try:
        for _ in runner.bake(invocation, job.paths.bake_dir):
            pass
    except BakeFailed as exc:
        tail = "\n".join(exc.stderr.strip().splitlines()[-20:])
        msg = f"the images were built, but exporting the compiler cache of {', '.join(exports)} failed:\n{tail}"
        raise BuildError(msg) from exc
    for where in exports.values():
        ccache.publish(where)


def _make_directories(options: BuildOptions, plan: BakePlan, steps: list[Phase]) -> None:
    """What buildx writes into must exist: local cache directories and the ``--output`` destinations."""
    for kind in ("base", "model"):
        preset = options.cache_for(kind)
        if preset is not None and preset.kind == "local":
            Path(preset.ref).mkdir(parents=True, exist_ok=True)
    for phase in steps:
        for _, _, out_dir in outputs(options, phase.targets):
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)


def _base_source(
    options: BuildOptions, plan: BakePlan, base: str, workdir: Path, metadata: Mapping[str, object]
) -> str:
    """The exact image the first phase made for ``base`` (or the one given as built elsewhere), as a
    named-context source for its models."""
    given = given_bases(options.base_images, plan).get(base)
    if given is not None:
        return given.source
    if options.hand_over == "engine" and not options.push:
        # The engine's store holds the image the first phase just wrote under its name; the classic store knows
        # it by name and image ID only (no manifest digest), so the name it was given is the exact reference.
        return f"docker-image://{image_name(plan, metadata, base, options.variables)}"
    digest = digest_of(metadata, base)
    if not digest:
        msg = f"the first phase built `{base}` but buildx reported no digest for it; cannot pin its models to it"
        raise BuildError(msg)
    if options.push:
        return f"docker-image://{repository_of(image_name(plan, metadata, base, options.variables))}@{digest}"
    return f"oci-layout://{layout_dir(workdir, base)}@{digest}"


def _bases_of(plan: BakePlan, targets: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(b for t in targets if (b := plan.target(t).base) is not None))


@contextlib.contextmanager
def _noting_sigint() -> Iterator[list[int]]:
    """Notes a SIGINT (then lets Python raise KeyboardInterrupt as usual). Only where Python handles SIGINT:
    in the main thread, and not when it was started with SIGINT ignored (a background job)."""
    seen: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is not signal.default_int_handler:
        yield seen
        return

    def note(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def _bake(
    runner: Baker,
    invocation: Invocation,
    cwd: Path,
    progress: Progress,
    on_line: OnLine | None,
    fallback: bool,
) -> Invocation:
    """Run bake, feeding ``progress``; returns the invocation that ran. With ``fallback``, a default builder
    that does not exist (`builder up` never ran) means buildx's current builder."""
    try:
        for line in runner.bake(invocation, cwd):
            changed = progress.feed(line)
            if on_line is not None:
                on_line(line, progress, changed)
    except BakeFailed as exc:
        if fallback and missing_builder(invocation.builder, exc.stderr):
            current = dataclasses.replace(invocation, builder=None)
            return _bake(runner, current, cwd, progress, on_line, fallback=False)
        raise
    return invocation


def _read_metadata(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
