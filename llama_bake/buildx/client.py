"""The only code that starts ``docker buildx``. Narrows python-on-whales' results to plain types and
turns its errors into ours, so the rest of llama-bake never sees its Union return types."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llama_bake.buildx.driver import Capabilities, EngineInfo, capabilities, image_store_of
from llama_bake.errors import DockerError


@dataclass(frozen=True)
class Invocation:
    """One ``docker buildx bake`` run. ``flags`` are passed in front of the targets: python-on-whales has
    no parameter for ``--allow``, ``--var`` or a repeated ``--set``."""

    files: tuple[str, ...]
    targets: tuple[str, ...]
    builder: str | None = None
    push: bool = False
    load: bool = False
    no_cache: bool = False
    flags: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    metadata_file: str | None = None
    progress: str = "rawjson"

    def argv(self) -> list[str]:
        """The command exactly as python-on-whales builds it (used by ``--dry-run``)."""
        argv = ["docker", "buildx", "bake"]
        if self.no_cache:
            argv.append("--no-cache")
        if self.builder:
            argv += ["--builder", self.builder]
        if self.load:
            argv.append("--load")
        if self.push:
            argv.append("--push")
        argv += ["--progress", self.progress]
        for file in self.files:
            argv += ["--file", file]
        if self.metadata_file:
            argv += ["--metadata-file", self.metadata_file]
        return argv + list(self.flags) + list(self.targets)


@dataclass(frozen=True)
class Launch:
    """One container to start: its image, extra environment, the host port its server answers on, and how."""

    image: str
    env: Mapping[str, str]
    host_port: int
    container_port: int
    host_network: bool  # no published port: the server listens on the host's 127.0.0.1 itself
    gpu: str  # "" (none), "runtime" (--gpus all) or a CDI device name (--device nvidia.com/gpu=all)


class BakeFailed(Exception):
    """``docker buildx bake`` exited non-zero; ``stderr`` is everything it wrote there."""

    def __init__(self, return_code: int, stderr: str) -> None:
        self.return_code = return_code
        self.stderr = stderr
        super().__init__(f"docker buildx bake exited with {return_code}")


@dataclass(frozen=True)
class NodeInfo:
    name: str
    endpoint: str
    status: str
    platforms: tuple[str, ...]  # as buildkit reports them: its own first, then what it emulates


@dataclass(frozen=True)
class BuilderInfo:
    name: str
    driver: str
    status: str
    endpoint: str
    buildkit_version: str
    nodes: tuple[NodeInfo, ...] = ()


class Baker(Protocol):
    """Runs one ``docker buildx bake``, yielding its rawjson progress lines, and says what a builder can do:
    all a build needs."""

    def bake(self, invocation: Invocation, cwd: Path) -> Iterator[str]: ...

    def capabilities(self, builder: str | None) -> Capabilities:
        """What ``builder`` (None: buildx's current one) can do; ``DockerError`` when it does not exist or
        does not answer."""
        ...


class Printer(Protocol):
    """``docker buildx bake --print``: what buildx resolves from a bake file."""

    def print_config(
        self, bake_file: Path, targets: Sequence[str], variables: Mapping[str, str], cwd: Path
    ) -> dict[str, Any]: ...


class Builders(Protocol):
    """buildx's builders: list, inspect, create, remove, prune (``builder up/down``, ``doctor``)."""

    def version(self) -> str: ...

    def builders(self) -> list[str]: ...

    def engine(self) -> EngineInfo | None:
        """The Docker Engine the docker client talks to, or None when none answers."""
        ...

    def capabilities(self, builder: str | None) -> Capabilities: ...

    def inspect(self, name: str | None, bootstrap: bool) -> BuilderInfo: ...

    def create_remote(
        self, name: str, endpoint: str, platforms: tuple[str, ...] = (), append: bool = False
    ) -> None: ...

    def remove(self, name: str) -> None: ...

    def prune(self, builder: str) -> None: ...


CANCEL_TIMEOUT = 30.0


def _wait_for_children(timeout: float) -> None:
    """After Ctrl-C: buildx got the same SIGINT and is cancelling the build; wait for it to exit (up to
    ``timeout``; a second Ctrl-C stops waiting), so nothing of the build outlives the command."""
    no_hang = getattr(os, "WNOHANG", None)
    if no_hang is None:
        # Windows has no waitpid(-1): the console's Ctrl-C reached buildx too, and it exits on its own.
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, no_hang)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def _client() -> Any:
    if shutil.which("docker") is None:
        msg = "the docker client is not installed; install it (the engine is not needed) and the buildx plugin"
        raise DockerError(msg)
    from python_on_whales import DockerClient

    return DockerClient()


def _detail(exc: Any) -> str:
    return str(exc.stderr or exc.stdout or exc).strip()


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    # python-on-whales has no cwd parameter, and bake resolves relative contexts against the working
    # directory: run it from the bake file's directory.
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@contextlib.contextmanager
def _fails_as(what: str) -> Iterator[None]:
    """A failed docker command becomes a ``DockerError``: ``what`` failed, and what docker said."""
    from python_on_whales.exceptions import DockerException

    try:
        yield
    except DockerException as exc:
        msg = f"{what}: {_detail(exc)}"
        raise DockerError(msg) from exc


class WhalesRunner:
    """``BakeRunner`` on python-on-whales (imported lazily: it is slow to import)."""

    def print_config(
        self, bake_file: Path, targets: Sequence[str], variables: Mapping[str, str], cwd: Path
    ) -> dict[str, Any]:
        client = _client()
        with _fails_as("docker buildx bake --print failed"), _working_directory(cwd):
            result = client.buildx.bake(
                targets=list(targets), files=[str(bake_file)], print=True, variables=dict(variables)
            )
        if not isinstance(result, dict):
            msg = f"docker buildx bake --print returned {type(result).__name__}, expected a JSON object"
            raise DockerError(msg)
        return result

    def bake(self, invocation: Invocation, cwd: Path) -> Iterator[str]:
        client = _client()
        from python_on_whales.exceptions import DockerException

        with _working_directory(cwd):
            try:
                yield from client.buildx.bake(
                    targets=[*invocation.flags, *invocation.targets],
                    builder=invocation.builder,
                    files=list(invocation.files),
                    load=invocation.load,
                    push=invocation.push,
                    cache=not invocation.no_cache,
                    progress=invocation.progress,
                    variables=dict(invocation.env),
                    metadata_file=invocation.metadata_file,
                    stream_logs=True,
                )
            except KeyboardInterrupt:
                _wait_for_children(CANCEL_TIMEOUT)
                raise
            except DockerException as exc:
                stderr = exc.stderr if isinstance(exc.stderr, str) else ""
                raise BakeFailed(exc.return_code, stderr) from exc

    def capabilities(self, builder: str | None) -> Capabilities:
        driver = self.inspect(builder, bootstrap=False).driver
        return capabilities(driver, self.engine() if driver == "docker" else None)

    def engine(self) -> EngineInfo | None:
        from python_on_whales.exceptions import DockerException
        from python_on_whales.utils import run

        client = _client()
        # python-on-whales' SystemInfo drops the fields it does not know (the CDI devices): read docker's JSON.
        try:
            text = run([*client.client_config.docker_cmd, "info", "--format", "{{json .}}"])
        except DockerException:
            return None
        try:
            data = json.loads(str(text))
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict) or not data.get("ServerVersion"):
            return None
        status = [tuple(map(str, pair)) for pair in data.get("DriverStatus") or [] if len(pair) == 2]
        devices = [str(d.get("ID") or "") for d in data.get("DiscoveredDevices") or [] if isinstance(d, dict)]
        return EngineInfo(
            version=str(data["ServerVersion"]),
            image_store=image_store_of(status, str(data.get("Driver") or "")),  # type: ignore[arg-type]
            storage_driver=str(data.get("Driver") or ""),
            runtimes=tuple(sorted(str(k) for k in data.get("Runtimes") or {})),
            default_runtime=str(data.get("DefaultRuntime") or ""),
            cdi_devices=tuple(sorted(filter(None, devices))),
        )

    # --- containers on the engine (``smoke``) ---

    def start(self, launch: Launch) -> str:
        with _fails_as(f"docker run {launch.image} failed"):
            container = _client().run(
                launch.image,
                detach=True,
                envs=dict(launch.env),
                networks=["host"] if launch.host_network else [],
                publish=[] if launch.host_network else [(f"127.0.0.1:{launch.host_port}", launch.container_port)],
                gpus="all" if launch.gpu == "runtime" else None,
                devices=[launch.gpu] if launch.gpu and launch.gpu != "runtime" else [],
                labels={"io.llama-bake.smoke": "1"},
            )
        return str(container.id)

    def exited(self, container: str) -> int | None:
        with _fails_as(f"docker inspect {container[:12]} failed"):
            state = _client().container.inspect(container).state
        return None if state.running else int(state.exit_code or 0)

    def logs(self, container: str) -> str:
        with _fails_as(f"docker logs {container[:12]} failed"):
            return str(_client().container.logs(container))

    def remove_container(self, container: str) -> None:
        from python_on_whales.exceptions import DockerException

        with contextlib.suppress(DockerException):
            _client().container.remove(container, force=True)

    def version(self) -> str:
        with _fails_as("the buildx plugin does not answer"):
            return str(_client().buildx.version()).strip()

    def builders(self) -> list[str]:
        with _fails_as("docker buildx ls failed"):
            return sorted(str(b.name) for b in _client().buildx.list())

    def inspect(self, name: str | None, bootstrap: bool) -> BuilderInfo:
        with _fails_as(f"builder {name or '(current)'} is not reachable"):
            builder = _client().buildx.inspect(name, bootstrap=bootstrap)
        node = builder.nodes[0] if builder.nodes else None
        return BuilderInfo(
            name=str(builder.name),
            driver=str(builder.driver),
            status=str(node.status if node else "unknown"),
            endpoint=str(node.endpoint if node else ""),
            buildkit_version=str(node.version or "" if node else ""),
            nodes=tuple(
                NodeInfo(str(n.name), str(n.endpoint or ""), str(n.status or ""), tuple(n.platforms or ()))
                for n in builder.nodes or ()
            ),
        )

    def create_remote(self, name: str, endpoint: str, platforms: tuple[str, ...] = (), append: bool = False) -> None:
        with _fails_as(f"docker buildx create --driver remote {endpoint} failed"):
            _client().buildx.create(
                endpoint, driver="remote", name=name, platforms=list(platforms) or None, append=append
            )

    def remove(self, name: str) -> None:
        with _fails_as(f"docker buildx rm {name} failed"):
            _client().buildx.remove(name)

    def prune(self, builder: str) -> None:
        from python_on_whales.utils import run

        _client()
        # python-on-whales' prune has no --builder parameter.
        with _fails_as("docker buildx prune failed"):
            run(["docker", "buildx", "prune", "--force", "--all", "--builder", builder])


def registry_digest(reference: str, builder: str | None = None) -> str | None:
    """The digest of ``reference`` in its registry (``docker buildx imagetools inspect``, with ``builder``'s
    registry settings), or None when it does not exist or cannot be read (the caller goes on without it)."""
    from python_on_whales.exceptions import DockerException
    from python_on_whales.utils import run

    try:
        _client()
    except DockerError:
        return None
    where = ["--builder", builder] if builder else []
    try:
        out = run(["docker", "buildx", "imagetools", "inspect", *where, "--format", "{{.Manifest.Digest}}", reference])
    except DockerException:
        return None
    digest = str(out or "").strip()
    return digest if digest.startswith("sha256:") else None


def resolve(
    text: str, targets: Sequence[str], variables: Mapping[str, str], cwd: Path, runner: Printer
) -> dict[str, Any]:
    """What buildx resolves from ``text`` (``docker buildx bake --print``), without building."""
    with tempfile.TemporaryDirectory(prefix="llama-bake-") as tmp:
        bake_file = Path(tmp) / "docker-bake.hcl"
        bake_file.write_text(text, encoding="utf-8")
        return runner.print_config(bake_file, targets or ["default"], variables, cwd)
