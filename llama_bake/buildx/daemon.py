"""The embedded default builder: a local buildkitd registered as a buildx ``remote`` builder, and
``doctor``, which checks the docker client, buildx, and the builder, each problem with its fix.

For machines with no Docker engine (CI, build hosts): ``builder up`` starts buildkitd in the background and
``builder down`` stops it. State lives in ``$LLAMA_BAKE_STATE_DIR`` (default ``~/.local/state/llama-bake``).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from llama_bake.buildx.client import Builders
from llama_bake.buildx.probe import builder_name
from llama_bake.errors import DockerError, UsageError

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def state_dir() -> Path:
    configured = os.environ.get("LLAMA_BAKE_STATE_DIR")
    return Path(configured) if configured else Path.home() / ".local" / "state" / "llama-bake"


def tools_dir() -> Path:
    configured = os.environ.get("LLAMA_BAKE_TOOLS")
    return Path(configured) if configured else Path.home() / ".cache" / "llama-bake" / "tools"


@dataclass(frozen=True)
class Daemon:
    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "buildkitd.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "buildkitd.pid"

    @property
    def log(self) -> Path:
        return self.root / "buildkitd.log"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            return None
        return pid

    def answers(self) -> bool:
        if not self.socket.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            try:
                sock.connect(str(self.socket))
            except OSError:
                return False
        return True


def fresh_free_disk(builder: str | None) -> tuple[int, Path] | None:
    """The free bytes of the state directory of ``builder`` when it is the one ``builder up`` started (its
    buildkitd runs) and it holds no snapshot yet: a fresh builder, such as a CI runner's, for which a build's
    planned disk is exact. None otherwise (a warm builder may already hold what a build needs)."""
    daemon = _daemon(None)
    if builder != builder_name() or daemon.pid() is None:
        return None
    data = daemon.root / "data"
    if any(any(snapshots.iterdir()) for snapshots in data.glob("*/snapshots/snapshots")):
        return None
    return shutil.disk_usage(data if data.exists() else daemon.root).free, daemon.root


def find_buildkitd() -> Path | None:
    found = shutil.which("buildkitd")
    if found:
        return Path(found)
    candidate = tools_dir() / "buildkitd"
    return candidate if candidate.exists() else None


INSTALL_HINT = (
    "install buildkitd (a release archive from https://github.com/moby/buildkit/releases, its bin/ on PATH; "
    "or `go install github.com/moby/buildkit/cmd/buildkitd@v0.32.2`, or a binary in "
    "~/.cache/llama-bake/tools) and runc (apt-get install runc)"
)


def native_platform() -> str:
    """This machine's platform, as buildx names it."""
    machine = platform.machine().lower()
    return {"x86_64": "linux/amd64", "amd64": "linux/amd64", "aarch64": "linux/arm64", "arm64": "linux/arm64"}.get(
        machine, f"linux/{machine}"
    )


def _daemon(platform: str | None) -> Daemon:
    """The first node's buildkitd, or the one of the node ``builder up --platform`` adds for ``platform``."""
    return Daemon(state_dir() / ("buildkitd" if platform is None else f"buildkitd-{platform.rsplit('/', 1)[-1]}"))


def _start(daemon: Daemon) -> str:
    """Start ``daemon`` unless it runs; a status line."""
    if daemon.pid() is not None and daemon.answers():
        return f"buildkitd already running (pid {daemon.pid()}, {daemon.endpoint})"
    binary = find_buildkitd()
    if binary is None:
        msg = f"buildkitd is not installed; {INSTALL_HINT}"
        raise DockerError(msg)
    if shutil.which("runc") is None:
        msg = "runc is not installed (buildkitd's OCI worker runs steps with it): apt-get install runc"
        raise DockerError(msg)
    daemon.root.mkdir(parents=True, exist_ok=True)
    daemon.socket.unlink(missing_ok=True)
    # A short-lived sh starts buildkitd in the background and exits: the daemon outlives this command,
    # and is in its own session, out of reach of this terminal's Ctrl-C.
    launcher = subprocess.run(
        [
            "sh",
            "-c",
            '"$0" "$@" </dev/null >>"$LLAMA_BAKE_LOG" 2>&1 & echo $!',
            str(binary),
            "--addr",
            daemon.endpoint,
            "--root",
            str(daemon.root / "data"),
        ],
        env={**os.environ, "LLAMA_BAKE_LOG": str(daemon.log)},
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    )
    pid = int(launcher.stdout.strip())
    daemon.pidfile.write_text(f"{pid}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while not daemon.answers():
        if daemon.pid() is None or time.monotonic() > deadline:
            tail = daemon.log.read_text(errors="replace").splitlines()[-10:]
            msg = f"buildkitd did not start (log {daemon.log}):\n" + "\n".join(tail)
            raise DockerError(msg)
        time.sleep(0.1)
    return f"started buildkitd (pid {pid}, {daemon.endpoint})"


def up(runner: Builders, platform: str | None = None) -> str:
    """Start buildkitd (unless running) and register it as a buildx remote builder. With ``platform``, also
    start a second buildkitd and make it the builder's node for that platform (the first node declares this
    machine's own), so buildx sends each platform's steps to its node. Returns a status line."""
    name = builder_name()
    first = _daemon(None)
    started = [_start(first)]
    if platform is None:
        if name in runner.builders():
            info = runner.inspect(name, bootstrap=False)
            if info.endpoint != first.endpoint or len(info.nodes) > 1:
                runner.remove(name)
        if name not in runner.builders():
            runner.create_remote(name, first.endpoint)
    else:
        if platform == native_platform():
            msg = f"{platform} is this machine's own platform: the first node builds it; name another, e.g. linux/arm64"
            raise UsageError(msg)
        second = _daemon(platform)
        started.append(_start(second))
        if name in runner.builders():
            runner.remove(name)
        runner.create_remote(name, first.endpoint, platforms=(native_platform(),))
        runner.create_remote(name, second.endpoint, platforms=(platform,), append=True)
    info = runner.inspect(name, bootstrap=True)
    nodes = ", ".join(f"{n.name} ({', '.join(n.platforms[:2]) or '?'})" for n in info.nodes) if platform else ""
    where = f" with nodes {nodes}" if nodes else ""
    version = info.buildkit_version or "unknown"
    said = f"{'; '.join(started)}; builder `{name}` is {info.status}{where} (BuildKit {version})"
    engine = runner.engine()
    if engine is not None:
        said += (
            f"\nnote: a Docker Engine ({engine.version}) answers here. Its own builder (`docker buildx use default`, "
            f"the docker driver) builds straight into it and needs no `builder up`. `{name}` is a separate "
            "buildkitd: it does not see the engine's images, and its images reach the engine only with "
            "`llama-bake build --load` (or go to a registry with --push). `llama-bake builder down` goes back to "
            "the engine's builder"
        )
    return said


def down(runner: Builders) -> str:
    name = builder_name()
    notes = []
    if name in runner.builders():
        runner.remove(name)
        notes.append(f"removed builder `{name}`")
    for root in sorted(state_dir().glob("buildkitd*")):
        if root.is_dir():
            notes += _stop(Daemon(root))
    return "; ".join(notes) or "nothing was running"


def _stop(daemon: Daemon) -> list[str]:
    notes = []
    pid = daemon.pid()
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        if _exits(daemon, STOP_TIMEOUT):
            notes.append(f"stopped buildkitd (pid {pid})")
        else:
            # buildkitd waits for running builds, whose steps (PID 1 in their containers) ignore SIGTERM:
            # stop the steps with it, or they would outlive the daemon.
            for child in [*_descendants(pid), pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
            _exits(daemon, STOP_TIMEOUT)
            unmount_below(daemon.root)  # the killed steps' root filesystems and cache mounts
            notes.append(f"killed buildkitd (pid {pid}) and the build steps it was running")
    daemon.pidfile.unlink(missing_ok=True)
    daemon.socket.unlink(missing_ok=True)
    return notes


def _exits(daemon: Daemon, timeout: float) -> bool:
    """Whether the daemon's process is gone within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while daemon.pid() is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def unmount_below(root: Path) -> None:
    """Unmount what a killed buildkitd left mounted under ``root``, deepest first."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = f"{root.resolve()}/"
    # The mount point is the second field; spaces and the like in it are escaped as octal (\040).
    points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[1]) for line in lines]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, check=False)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), deepest first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ")".
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: list[int] = []
    pending = list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children.get(child, []))
    return found[::-1]
