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
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import FrameType

from llama_bake.buildx import ccache
from llama_bake.buildx.client import BakeFailed, Baker, Invocation, registry_digest
from llama_bake.buildx.invocation import (
    Phase,
    command_text,
    expand_targets,
    layout_dir,
    make_invocation,
    outputs,
    phases,
    with_bases,
)
from llama_bake.buildx.options import BuildOptions
from llama_bake.buildx.preflight import check_push, pushed_repositories, repository_of
from llama_bake.buildx.probe import NoBuilder, diagnose, fit_to_builder, missing_builder, probe_builder
from llama_bake.buildx.progress import Progress, Vertex
from llama_bake.buildx.summary import DONE, Summary, digest_of, failure_message, image_name, summarize
from llama_bake.errors import BuildError, CatalogError, UsageError
from llama_bake.files import write_atomic
from llama_bake.generated import write_compiled
from llama_bake.plan.targets import BakePlan
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
    """Before any work: a build with nothing to build, or of a model whose pins are placeholders (it would
    download gigabytes, then fail its checksum), stops here naming the fix."""
    targets = with_bases(plan, expand_targets(plan, options.targets or ("default",)))
    if not targets:
        msg = "nothing to build: the catalog has no model yet; add one with `llama-bake add OWNER/REPO:QUANT`"
        raise UsageError(msg)
    problems = [
        f"{t.unpinned}; run `llama-bake pin {t.name}`" for t in plan.targets if t.name in targets and t.unpinned
    ]
    if problems:
        raise CatalogError(problems)


def _prepare(paths: Paths, options: BuildOptions) -> tuple[BakePlan, dict[str, str]]:
    """What a build and a dry run do first: generate, refuse what cannot build, read the git values."""
    compiled = compile_catalog(paths)
    write_compiled(paths, compiled)
    refuse_unbuildable(compiled.plan, options)
    return compiled.plan, git_environment(compiled.plan, paths.project)


def dry_run(paths: Paths, options: BuildOptions, runner: Baker) -> str:
    """Generate, then the command line of each phase, one per line; nothing is built. The second phase's
    base images are named by the placeholders the first phase fills in."""
    plan, env = _prepare(paths, options)
    builder, caps = probe_builder(runner, options.builder)
    options = fit_to_builder(plan, dataclasses.replace(options, builder=builder), caps)
    workdir = Path("<tmp>")
    placeholders = {
        t.name: _base_source(options, plan, t.name, workdir, {t.name: {"containerimage.digest": "<digest>"}})
        for t in plan.targets
        if t.kind == "base"
    }
    lines = []
    steps = phases(options, plan)
    stores = ccache.stores(options, plan, [t for phase in steps for t in phase.targets])
    imports = _ccache_imports(stores, lambda ref: registry_digest(ref, builder))
    for phase in steps:
        metadata_file = workdir / f"{phase.name}-metadata.json"
        invocation = make_invocation(
            options, plan, phase, paths.output, metadata_file, paths.bake_dir, workdir, placeholders, env, imports
        )
        lines.append(command_text(invocation))
    return "\n".join(lines)


def _ccache_imports(stores: Mapping[str, ccache.Store], lookup: ccache.Digest) -> dict[str, str]:
    """Each base's last exported compiler cache, where there is one."""
    found = {base: ccache.last_export(where, lookup) for base, where in stores.items()}
    return {base: source for base, source in found.items() if source}


def run_build(
    paths: Paths,
    options: BuildOptions,
    runner: Baker,
    on_line: OnLine | None = None,
    lookup: ccache.Digest | None = None,
) -> Summary:
    """Generate, then build each phase in order; a phase that fails stops the build. A base that compiled has
    its compiler cache exported after the last phase (``ccache``); ``lookup`` finds the last export's digest."""
    plan, env = _prepare(paths, options)
    builder, caps = probe_builder(runner, options.builder)
    # A builder that did not answer the probe: when it is the default name, `_bake` falls back to buildx's own.
    fallback = options.builder is None and caps is None
    options = fit_to_builder(plan, dataclasses.replace(options, builder=builder), caps)
    check_push(pushed_repositories(plan, options))
    steps = phases(options, plan)
    stores = ccache.stores(options, plan, [t for phase in steps for t in phase.targets])
    imports = _ccache_imports(stores, lookup or (lambda ref: registry_digest(ref, options.builder)))
    progress = Progress({t.name: t.base for t in plan.targets if t.base is not None})
    metadata: dict[str, object] = {}
    started = time.monotonic()
    stderr = ""
    failed = interrupted = False
    builder = options.builder
    ran: list[Phase] = []
    with tempfile.TemporaryDirectory(prefix="llama-bake-") as tmp:
        workdir = Path(tmp)
        _make_directories(options, plan, steps)
        try:
            with _noting_sigint() as sigint:
                for phase in steps:
                    ran.append(phase)
                    progress.sole = phase.targets[0] if len(phase.targets) == 1 else None
                    pinned = _bases_of(plan, phase.targets) if phase.name == "models" else []
                    base_images = {base: _base_source(options, plan, base, workdir, metadata) for base in pinned}
                    invocation = make_invocation(
                        dataclasses.replace(options, builder=builder),
                        plan,
                        phase,
                        paths.output,
                        workdir / f"{phase.name}-metadata.json",
                        paths.bake_dir,
                        workdir,
                        base_images,
                        env,
                        imports,
                    )
                    try:
                        invocation = _bake(runner, invocation, paths.bake_dir, progress, on_line, fallback)
                    finally:
                        metadata.update(_read_metadata(Path(invocation.metadata_file or "")))
                    builder = invocation.builder
        except BakeFailed as exc:
            # buildx may exit from the same Ctrl-C before Python raises KeyboardInterrupt: the same outcome.
            interrupted = bool(sigint)
            failed = not interrupted
            stderr = exc.stderr
        except KeyboardInterrupt:
            # buildx got the same SIGINT (a terminal sends it to the whole job) and cancels the solve.
            interrupted = True
    not_run = tuple(t for phase in steps[len(ran) :] for t in phase.targets)
    summary = summarize(
        plan,
        [t for phase in steps for t in phase.targets],
        progress,
        metadata,
        time.monotonic() - started,
        builder,
        options.variables,
        skipped=not_run,
        phases=len(steps),
    )
    if interrupted:
        msg = "interrupted; the builder cancels the running steps. Targets that had finished: " + (
            ", ".join(summary.finished) or "none"
        )
        raise BuildInterrupted(msg, summary)
    if failed:
        failure = progress.failure()
        problem = diagnose(stderr, builder) if failure is None else None
        if problem is not None:
            raise problem
        raise BuildFailed(failure_message(failure, summary, stderr), summary)
    unfinished = [f"{t.name} ({t.status})" for t in summary.targets if t.status not in DONE]
    if unfinished:
        # buildx exited 0, yet a target did not finish: the exit code says so all the same.
        msg = (
            f"docker buildx bake reported success, but not every target finished: {', '.join(unfinished)}; "
            "finished: " + (", ".join(summary.finished) or "none")
        )
        raise BuildFailed(msg, summary)
    if options.cache_export and stores:
        built = [t for phase in steps for t in phase.targets]
        export_options = dataclasses.replace(options, builder=builder)
        try:
            _export_ccache(built, runner, export_options, plan, paths, env, stores, imports, progress)
        except BuildError as exc:
            raise BuildFailed(str(exc), summary) from exc
        except KeyboardInterrupt:
            msg = "interrupted while exporting the compiler cache; the images were built, the last export stays"
            raise BuildInterrupted(msg, summary) from None
    return summary


def build(
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


def _export_ccache(
    built: list[str],
    runner: Baker,
    options: BuildOptions,
    plan: BakePlan,
    paths: Paths,
    env: Mapping[str, str],
    stores: Mapping[str, ccache.Store],
    imports: Mapping[str, str],
    progress: Progress,
) -> None:
    """Export the compiler cache of each base whose compile ran (a cached base has nothing new to export)."""
    compiled = ccache.compiled(progress, plan, built)
    exports = {base: where for base, where in stores.items() if base in compiled}
    if not exports:
        return
    invocation = ccache.export_invocation(options, plan, exports, imports, paths.output, paths.bake_dir, env)
    try:
        for _ in runner.bake(invocation, paths.bake_dir):
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
    """The exact image the first phase made for ``base``, as a named-context source for its models."""
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
