"""``llama-bake build``: generate, then run ``docker buildx bake`` and report per target.

Takes build options and the compiled plan; gives a ``Summary`` (or a ``BuildError`` that names the failing
target, the end of its log and which targets finished). BuildKit does the ordering, parallelism and caching;
this module only decides the command line and reads BuildKit's progress stream.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Literal

from llama_bake.bake import BakeFailed, BakeRunner, Invocation
from llama_bake.catalog import did_you_mean
from llama_bake.errors import BuildError, DockerError, UsageError
from llama_bake.output import write_atomic
from llama_bake.pipeline import Paths, compile_catalog
from llama_bake.plan import BakePlan
from llama_bake.progress import Progress, TargetState, Vertex

CacheKind = Literal["registry", "gha", "local"]
DEFAULT_BUILDER = "llama-bake"
LOG_TAIL = 20


@dataclass(frozen=True)
class CachePreset:
    kind: CacheKind
    ref: str = ""

    @classmethod
    def parse(cls, spec: str) -> CachePreset:
        kind, _, ref = spec.partition("=")
        if kind == "gha" and not ref:
            return cls("gha")
        if kind in ("registry", "local") and ref:
            return cls(kind, ref)  # type: ignore[arg-type]
        msg = f"--cache {spec!r}: use registry=REF_PREFIX, gha or local=DIR"
        raise UsageError(msg)


@dataclass(frozen=True)
class BuildOptions:
    targets: tuple[str, ...] = ()
    builder: str | None = None
    push: bool = False
    load: bool = False
    outputs: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    no_cache: bool = False
    cache: CachePreset | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    image_overrides: tuple[str, ...] = ()
    dry_run: bool = False


# built: every step done (or cached); unfinished: started, then the build stopped (failure elsewhere, Ctrl-C).
Status = Literal["built", "failed", "canceled", "unfinished", "not started"]


@dataclass(frozen=True)
class TargetSummary:
    name: str
    image: str
    digest: str
    status: Status
    wall_seconds: float
    steps_executed: int
    steps_cached: int


@dataclass(frozen=True)
class Summary:
    targets: tuple[TargetSummary, ...]
    wall_seconds: float
    builder: str
    messages: tuple[str, ...] = field(default=())  # buildx's own lines, each once

    def __post_init__(self) -> None:
        object.__setattr__(self, "messages", tuple(dict.fromkeys(self.messages)))

    @property
    def finished(self) -> list[str]:
        return [t.name for t in self.targets if t.status == "built"]

    @property
    def steps_executed(self) -> int:
        return sum(t.steps_executed for t in self.targets)

    @property
    def steps_cached(self) -> int:
        return sum(t.steps_cached for t in self.targets)

    def to_json(self) -> str:
        data = {
            "builder": self.builder,
            "wall_seconds": round(self.wall_seconds, 3),
            "steps_executed": self.steps_executed,
            "steps_cached": self.steps_cached,
            "targets": [asdict(t) | {"wall_seconds": round(t.wall_seconds, 3)} for t in self.targets],
            "messages": list(self.messages),
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def expand_targets(plan: BakePlan, names: Iterable[str]) -> list[str]:
    """Targets named directly or through groups, in plan order; unknown names are a usage error."""
    groups = {g.name: g.targets for g in plan.groups}
    known = {t.name for t in plan.targets}
    wanted: set[str] = set()
    for name in names:
        if name in groups:
            wanted.update(groups[name])
        elif name in known:
            wanted.add(name)
        else:
            hint = did_you_mean(name, sorted(known | set(groups)))
            msg = f"unknown target or group `{name}`" + (f"; {hint}" if hint else "; see `llama-bake list`")
            raise UsageError(msg)
    return [t.name for t in plan.targets if t.name in wanted]


def with_bases(plan: BakePlan, targets: list[str]) -> list[str]:
    """``targets`` and the bases they are linked to (BuildKit builds those too), in plan order."""
    wanted = set(targets) | {b for t in targets if (b := plan.target(t).base)}
    return [t.name for t in plan.targets if t.name in wanted]


def _allow_path(path: Path, cwd: Path, mode: str) -> list[str]:
    # buildx asks for an entitlement to read or write outside its working directory.
    try:
        path.resolve().relative_to(cwd.resolve())
    except ValueError:
        return ["--allow", f"fs.{mode}={path}"]
    return []


def _output_dest(spec: str) -> Path | None:
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key == "dest" and value not in ("", "-"):
            return Path(value)
    return None


def _outputs(options: BuildOptions, targets: list[str]) -> list[tuple[str, str, Path | None]]:
    """Each ``--output`` as (target, or ``*`` for all, exporter, the directory its ``dest`` is written in)."""
    outputs = []
    for spec in options.outputs:
        for target in targets if "{target}" in spec else ["*"]:
            resolved = spec.replace("{target}", target)
            dest = _output_dest(resolved)
            outputs.append((target, resolved, dest.absolute().parent if dest is not None else None))
    return outputs


def make_invocation(
    options: BuildOptions, plan: BakePlan, bake_file: Path, metadata_file: Path, cwd: Path
) -> Invocation:
    """The buildx command for ``options``. Pure: directories are created by ``run_build``."""
    names = list(options.targets) or ["default"]
    targets = expand_targets(plan, names)
    flags: list[str] = []
    env: dict[str, str] = {}
    cache = options.cache
    if cache is not None:
        env["CACHE_TYPE"] = cache.kind
        if cache.kind == "local":
            directory = Path(cache.ref).absolute()
            env["CACHE_REF"] = str(directory)
            flags += _allow_path(directory, cwd, "read") + _allow_path(directory, cwd, "write")
        else:
            env["CACHE_REF"] = cache.ref
    for variable in options.variables:
        if "=" not in variable:
            msg = f"--var {variable!r}: write NAME=VALUE"
            raise UsageError(msg)
        flags += ["--var", variable]
    bases = [t.name for t in plan.targets if t.kind == "base"]
    for override in options.image_overrides:
        ref, sep, source = override.partition("=")
        if not sep or not ref or not source:
            msg = f"--image-override {override!r}: write IMAGE=SOURCE, e.g. ubuntu:24.04=oci-layout:///mirror/ubuntu"
            raise UsageError(msg)
        flags += [arg for base in bases for arg in ("--set", f"{base}.contexts.{ref}={source}")]
    for spec in options.cache_from:
        flags += ["--set", f"*.cache-from={spec}"]
    for spec in options.cache_to:
        flags += ["--set", f"*.cache-to={spec}"]
    for target, spec, out_dir in _outputs(options, targets):
        flags += ["--set", f"{target}.output={spec}"]
        if out_dir is not None:
            flags += _allow_path(out_dir, cwd, "write")
    for item in options.sets:
        flags += ["--set", item]
    return Invocation(
        files=(str(bake_file),),
        targets=tuple(names),
        builder=options.builder,
        push=options.push,
        load=options.load,
        no_cache=options.no_cache,
        flags=tuple(flags),
        env=env,
        metadata_file=str(metadata_file),
    )


def dry_run_text(invocation: Invocation) -> str:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(invocation.env.items()))
    return (env + " " if env else "") + shlex.join(invocation.argv())


def builder_name() -> str:
    """The name ``llama-bake builder up`` registers (``$LLAMA_BAKE_BUILDER``, default llama-bake)."""
    return os.environ.get("LLAMA_BAKE_BUILDER", DEFAULT_BUILDER)


def choose_builder(requested: str | None, runner: BakeRunner) -> str | None:
    """The builder to use: the requested one, else the one ``llama-bake builder up`` made, else buildx's."""
    if requested:
        return requested
    name = builder_name()
    return name if name in runner.builders() else None


NO_BUILDER_HINTS = (
    "cannot connect to the docker daemon",
    "no builder",
    "failed to find driver",
    "connect: no such file or directory",
    "connection refused",
    "is the docker daemon running",
)


def _missing_builder(name: str | None, stderr: str) -> bool:
    """buildx refused ``--builder name``: there is no builder of that name."""
    return bool(name) and f'no builder "{name}" found' in stderr


def _no_builder(text: str) -> bool:
    lowered = text.lower()
    return any(hint in lowered for hint in NO_BUILDER_HINTS)


def _image_of(plan: BakePlan, name: str, env: Mapping[str, str], variables: tuple[str, ...]) -> str:
    declared = {v.name for v in plan.variables}
    overrides = {k: v for k, v in env.items() if k in declared}
    for item in variables:
        key, _, value = item.partition("=")
        if key in declared:
            overrides[key] = value
    target = plan.target(name)
    return plan.resolve(target.tags[0] if target.tags else target.image, overrides)


def summarize(
    plan: BakePlan,
    targets: list[str],
    progress: Progress,
    metadata: Mapping[str, object],
    wall_seconds: float,
    invocation: Invocation,
    variables: tuple[str, ...],
) -> Summary:
    finished = progress.finished_targets()
    statuses = {name: _status(progress.target(name), name in finished, metadata.get(name)) for name in targets}
    for name in targets:
        # BuildKit names a shared step after the first target that reached it: when only models were asked
        # for, the base's steps show under a model, and a built model means its base was built.
        base = plan.target(name).base
        if base in statuses and statuses[base] in ("not started", "unfinished") and statuses[name] == "built":
            statuses[base] = "built"
    rows = []
    for name in targets:
        state = progress.target(name)
        meta = metadata.get(name)
        meta = meta if isinstance(meta, dict) else {}
        image = str(meta.get("image.name") or _image_of(plan, name, invocation.env, variables)).split(",")[0]
        rows.append(
            TargetSummary(
                name=name,
                image=image,
                digest=str(meta.get("containerimage.digest") or ""),
                status=statuses[name],
                wall_seconds=state.wall_seconds,
                steps_executed=state.executed,
                steps_cached=state.cached,
            )
        )
    return Summary(tuple(rows), wall_seconds, invocation.builder or "(buildx default)", tuple(progress.messages))


def _status(state: TargetState, finished: bool, meta: object) -> Status:
    if state.failed is not None:
        return "failed"
    if state.canceled:
        return "canceled"
    if finished or meta:
        return "built"
    return "unfinished" if state.vertices else "not started"


def failure_message(failure: tuple[str, Vertex] | None, summary: Summary, stderr: str) -> str:
    unfinished = [t.name for t in summary.targets if t.status != "built"]
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
        if any(t.status == "canceled" for t in summary.targets):
            lines.append("the build was canceled (buildx was interrupted or stopped):")
        else:
            lines.append("docker buildx bake failed before any step ran:")
        lines += [f"  {line}" for line in tail[-LOG_TAIL:]] or ["  (no output)"]
    lines.append("finished: " + (", ".join(summary.finished) or "none"))
    lines.append("not finished: " + (", ".join(unfinished) or "none"))
    return "\n".join(lines)


class BuildInterrupted(BuildError):
    exit_code = 130


def run_build(
    paths: Paths,
    options: BuildOptions,
    runner: BakeRunner,
    on_line: Callable[[str, Progress, list[Vertex]], None] = lambda line, progress, changed: None,
) -> Summary | str:
    """Generate, then build. Returns the summary, or the command line for ``dry_run``."""
    compiled = compile_catalog(paths)
    write_atomic(paths.output, compiled.text)
    if options.dry_run:
        try:
            builder = choose_builder(options.builder, runner)
        except DockerError:
            builder = options.builder  # a dry run prints the command even where buildx is missing
    else:
        # The one `builder up` made, without asking buildx first (`buildx ls` costs a docker call on every
        # build); when it does not exist, `_bake` falls back to buildx's current builder.
        builder = options.builder or builder_name()
    with tempfile.TemporaryDirectory(prefix="llama-bake-") as tmp:
        metadata_file = Path(tmp) / "metadata.json"
        invocation = make_invocation(
            dataclasses.replace(options, builder=builder),
            compiled.plan,
            paths.output,
            metadata_file,
            paths.bake_dir,
        )
        if options.dry_run:
            return dry_run_text(invocation)
        if options.cache is not None and options.cache.kind == "local":
            Path(invocation.env["CACHE_REF"]).mkdir(parents=True, exist_ok=True)
        requested = expand_targets(compiled.plan, list(options.targets) or ["default"])
        for _, _, out_dir in _outputs(options, requested):
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
        targets = with_bases(compiled.plan, requested)
        progress = Progress()
        started = time.monotonic()
        stderr = ""
        failed = interrupted = False
        try:
            with _noting_sigint() as sigint:
                invocation = _bake(runner, invocation, paths.bake_dir, progress, on_line, options.builder is None)
        except BakeFailed as exc:
            # buildx may exit from the same Ctrl-C before Python raises KeyboardInterrupt: the same outcome.
            interrupted = bool(sigint)
            failed = not interrupted
            stderr = exc.stderr
        except KeyboardInterrupt:
            # buildx got the same SIGINT (a terminal sends it to the whole job) and cancels the solve.
            interrupted = True
        metadata = _read_metadata(metadata_file)
        summary = summarize(
            compiled.plan,
            targets,
            progress,
            metadata,
            time.monotonic() - started,
            invocation,
            options.variables,
        )
    if interrupted:
        msg = "interrupted; the builder cancels the running steps. Targets that had finished: " + (
            ", ".join(summary.finished) or "none"
        )
        raise BuildInterrupted(msg)
    if failed:
        failure = progress.failure()
        if failure is None and _missing_builder(invocation.builder, stderr):
            msg = (
                f"there is no builder `{invocation.builder}` (`docker buildx ls` lists them); "
                "`llama-bake builder up` starts a local one"
            )
            raise DockerError(msg)
        if failure is None and _no_builder(stderr):
            msg = (
                "no BuildKit builder is reachable: start one with `llama-bake builder up` (a local buildkitd),"
                " or pass --builder NAME.\n" + stderr.strip()
            )
            raise DockerError(msg)
        raise BuildError(failure_message(failure, summary, stderr))
    return summary


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
    runner: BakeRunner,
    invocation: Invocation,
    cwd: Path,
    progress: Progress,
    on_line: Callable[[str, Progress, list[Vertex]], None],
    fallback: bool,
) -> Invocation:
    """Run bake, feeding ``progress``; returns the invocation that ran. With ``fallback``, a default builder
    that does not exist (`builder up` never ran) means buildx's current builder."""
    try:
        for line in runner.bake(invocation, cwd):
            on_line(line, progress, progress.feed(line))
    except BakeFailed as exc:
        if fallback and _missing_builder(invocation.builder, exc.stderr):
            current = dataclasses.replace(invocation, builder=None)
            return _bake(runner, current, cwd, progress, on_line, fallback=False)
        raise
    return invocation


def _read_metadata(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
