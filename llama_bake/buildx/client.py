"""The only code that starts ``docker buildx``. Narrows python-on-whales' results to plain types and
turns its errors into ours, so the rest of llama-bake never sees its Union return types."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llama_bake.buildx.driver import Capabilities, EngineInfo, capabilities, image_store_of
from llama_bake.buildx.launch import Launch
from llama_bake.errors import DockerError

if TYPE_CHECKING:
    from python_on_whales import DockerClient


@dataclass(frozen=True)
class Invocation:
    """One ``docker buildx bake`` run: the one command line a build runs and ``--dry-run`` prints (``argv``).
    ``flags`` (``--set``, ``--var``, ``--allow``) go in front of the targets."""

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
        """The command line, from ``buildx`` on (the docker client and its global options come first)."""
        argv = ["buildx", "bake"]
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

    def command(self, invocation: Invocation) -> list[str]:
        """The command line ``bake`` runs for ``invocation`` (what ``--dry-run`` prints)."""
        ...

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
    """buildx's builders: list, inspect, create, remove (``builder up/down``, ``doctor``)."""

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


CANCEL_TIMEOUT = 30.0  # after Ctrl-C: how long buildx may take to cancel its build
STOP_TIMEOUT = 5.0  # after a stop the reader asked for


def _client() -> DockerClient:
    if shutil.which("docker") is None:
        msg = "the docker client is not installed; install it (the engine is not needed) and the buildx plugin"
        raise DockerError(msg)
    from python_on_whales import DockerClient

    return DockerClient()


def _docker(client: DockerClient, args: Sequence[str]) -> list[str]:
    """The docker client (the binary python-on-whales found) with its global options (context, host, config:
    python-on-whales' settings), then ``args``."""
    return [*map(str, client.client_config.docker_cmd), *args]


def _shown(argv: Sequence[str]) -> list[str]:
    """``argv`` as a person types it: ``docker``, not the path the binary was found at."""
    return ["docker", *argv[1:]]


def _detail(exc: Any) -> str:
    return str(exc.stderr or exc.stdout or exc).strip()


def _run(argv: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run a docker command to its end: its stdout, or ``DockerError`` with what it said."""
    try:
        done = subprocess.run(
            list(argv),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            capture_output=True,
            encoding="utf-8",
            errors="replace",
            check=False,
        )
    except OSError as exc:
        msg = f"{argv[0]} did not start: {exc}"
        raise DockerError(msg) from exc
    if done.returncode != 0:
        msg = f"`{shlex.join(_shown(argv))}` failed: {(done.stderr or done.stdout).strip()}"
        raise DockerError(msg)
    return done.stdout


def _stream(argv: Sequence[str], cwd: Path, env: Mapping[str, str]) -> Generator[str, None, None]:
    """Run a docker command in ``cwd``, yielding each line it writes (stdout and stderr, as they come);
    ``BakeFailed`` with all it wrote when it exits non-zero. Nothing of it outlives the command: after Ctrl-C
    (which reached it too) it is waited for while it cancels; when the reader stops early, it is stopped."""
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        encoding="utf-8",
        errors="replace",
    ) as process:
        said: list[str] = []
        assert process.stdout is not None
        try:
            for line in process.stdout:
                said.append(line)
                yield line.rstrip("\n")
            process.wait()
        except KeyboardInterrupt:
            _wait_for(process, CANCEL_TIMEOUT)
            raise
        except GeneratorExit:
            # The reader failed or stopped: nobody sent a signal; the docker client's exit cancels its plugin.
            process.terminate()
            _wait_for(process, STOP_TIMEOUT)
            raise
    if process.returncode != 0:
        raise BakeFailed(process.returncode, "".join(said))


def _wait_for(process: subprocess.Popen[str], timeout: float) -> None:
    """Wait for ``process`` to exit (up to ``timeout``; a second Ctrl-C stops waiting), then kill it."""
    try:
        process.wait(timeout)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        process.kill()


@contextlib.contextmanager
def _fails_as(what: str) -> Iterator[None]:
    """A failed docker command becomes a ``DockerError``: ``what`` failed, and what docker said."""
    from python_on_whales.exceptions import DockerException

    try:
        yield
    except DockerException as exc:
        msg = f"{what}: {_detail(exc)}"
        raise DockerError(msg) from exc


class DockerRunner:
    """The docker client, through python-on-whales (imported lazily: it is slow to import) where it has the
    command; ``bake`` runs ``Invocation.argv`` itself: python-on-whales' bake has no working directory and no
    parameter for ``--allow``, ``--var`` or a repeated ``--set``, and the dry run prints this same line."""

    def print_config(
        self, bake_file: Path, targets: Sequence[str], variables: Mapping[str, str], cwd: Path
    ) -> dict[str, Any]:
        argv = _docker(_client(), ["buildx", "bake", "--print", "--file", str(bake_file), *targets])
        text = _run(argv, cwd, variables)
        try:
            result = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"docker buildx bake --print did not print JSON: {text[:200]!r}"
            raise DockerError(msg) from exc
        if not isinstance(result, dict):
            msg = f"docker buildx bake --print returned {type(result).__name__}, expected a JSON object"
            raise DockerError(msg)
        return result

    def command(self, invocation: Invocation) -> list[str]:
        if shutil.which("docker") is None:  # a dry run needs no docker
            return ["docker", *invocation.argv()]
        return _shown(_docker(_client(), invocation.argv()))

    def bake(self, invocation: Invocation, cwd: Path) -> Iterator[str]:
        """Run the bake in ``cwd`` (bake resolves relative contexts against it), yielding its progress lines."""
        yield from _stream(_docker(_client(), invocation.argv()), cwd, dict(invocation.env))

    def capabilities(self, builder: str | None) -> Capabilities:
        driver = self.inspect(builder, bootstrap=False).driver
        return capabilities(driver, self.engine() if driver == "docker" else None)

    def engine(self) -> EngineInfo | None:
        # python-on-whales' SystemInfo drops the fields it does not know (the CDI devices): read docker's JSON.
        client = _client()  # no docker client at all is its own error, not "no engine"
        try:
            text = _run(_docker(client, ["info", "--format", "{{json .}}"]))
        except DockerError:
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
            host_name=str(data.get("Name") or ""),
            operating_system=str(data.get("OperatingSystem") or ""),
        )

    # --- containers on the engine (``smoke``) ---

    def start(self, launch: Launch) -> str:
        # The API key reaches llama-server as LLAMA_API_KEY through an env file only this user reads, never an argument.
        with _fails_as(f"docker run {launch.image} failed"), tempfile.TemporaryDirectory() as directory:
            env_file = Path(directory) / "env"
            env_file.touch(mode=0o600)
            env_file.write_text(f"LLAMA_API_KEY={launch.api_key}\n" if launch.api_key else "", encoding="utf-8")
            container = _client().run(
                launch.image,
                detach=True,
                envs=dict(launch.env),
                env_files=[env_file],
                networks=["host"] if launch.host_network else [],
                publish=[] if launch.host_network else [(f"127.0.0.1:{launch.host_port}", launch.container_port)],
                gpus="all" if launch.gpu == "runtime" else None,
                devices=([launch.gpu] if launch.gpu and launch.gpu != "runtime" else []) + list(launch.devices),
                groups_add=list(launch.groups),
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


def registry_digest(reference: str, builder: str | None = None) -> str | None:
    """The digest of ``reference`` in its registry (``docker buildx imagetools inspect``, with ``builder``'s
    registry settings), or None when it does not exist or cannot be read (the caller goes on without it)."""
    where = ["--builder", builder] if builder else []
    try:
        client = _client()
        out = _run(
            _docker(client, ["buildx", "imagetools", "inspect", *where, "--format", "{{.Manifest.Digest}}", reference])
        )
    except DockerError:
        return None
    digest = str(out or "").strip()
    return digest if digest.startswith("sha256:") else None


def bake_print(
    text: str, targets: Sequence[str], variables: Mapping[str, str], cwd: Path, runner: Printer
) -> dict[str, Any]:
    """What buildx resolves from ``text`` (``docker buildx bake --print``), without building."""
    with tempfile.TemporaryDirectory(prefix="llama-bake-") as tmp:
        bake_file = Path(tmp) / "docker-bake.hcl"
        bake_file.write_text(text, encoding="utf-8")
        return runner.print_config(bake_file, targets or ["default"], variables, cwd)
