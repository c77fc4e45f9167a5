"""A real Docker Engine for the engine tier: dockerd (with its own containerd) on a private socket and data root,
with the classic image store (overlay2) or the containerd image store, as Docker Desktop and Docker Engine ship them.

Containers use the host network only (``--bridge=none``, no iptables): nothing reaches beyond 127.0.0.1. A private
``DOCKER_CONFIG`` carries the buildx and Compose plugins, so the engine's default builder (the ``docker`` driver) is
what ``docker buildx bake`` uses, and a user's own docker configuration is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from llama_bake.buildx.daemon import tools_dir, unmount_below
from tests.statedirs import state_dir

Store = Literal["classic", "containerd"]
START_TIMEOUT = 60.0


def missing_engine_tools() -> list[str]:
    """What the engine tier needs and this machine lacks (each a failure, never a skip)."""
    tools = tools_dir()
    needed = ["dockerd", "containerd", "containerd-shim-runc-v2", "docker-proxy"]
    missing = [name for name in needed if not (tools / name).exists() and shutil.which(name) is None]
    missing += [name for name in ("runc", "docker") if shutil.which(name) is None]
    return missing


@dataclass
class Engine:
    """One running dockerd; ``env`` is what a client needs to talk to it (and to nothing else)."""

    store: Store
    root: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    _log: IO[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        config = self.root / "config"
        plugins = config / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        for name in ("buildx", "docker-compose"):
            built = tools_dir() / name
            if built.exists():
                shutil.copy2(built, plugins / ("docker-buildx" if name == "buildx" else name))
        (config / "config.json").write_text("{}\n")
        daemon_json = self.root / "daemon.json"
        settings: dict[str, object] = {"features": {"containerd-snapshotter": self.store == "containerd"}}
        daemon_json.write_text(json.dumps(settings) + "\n")
        path = f"{tools_dir()}:{os.environ['PATH']}"
        self._log = (self.root / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--host",
                self.host,
                "--data-root",
                str(self.root / "data"),
                "--exec-root",
                str(self.root / "exec"),
                "--pidfile",
                str(self.root / "dockerd.pid"),
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--config-file",
                str(daemon_json),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": path},
            start_new_session=True,
        )
        self.env = {"DOCKER_HOST": self.host, "DOCKER_CONFIG": str(config), "PATH": path}
        deadline = time.monotonic() + START_TIMEOUT
        while self.docker("version", check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = (self.root / "dockerd.log").read_text(errors="replace")[-3000:]
                msg = f"dockerd ({self.store} store) did not start:\n{tail}"
                raise RuntimeError(msg)
            time.sleep(0.3)

    def docker(
        self, *args: str, check: bool = True, input_bytes: bytes | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["docker", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            check=False,
            input=input_bytes,
            cwd=cwd,
        )
        result = subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        )
        if check and done.returncode != 0:
            msg = f"docker {' '.join(args)} exited {done.returncode}: {result.stderr.strip()}"
            raise RuntimeError(msg)
        return result

    def import_rootfs(self, rootfs: Path, name: str) -> None:
        """``tar -C ROOTFS -c . | docker import - NAME``: a local image for a ``FROM`` that cannot be pulled."""
        with tempfile.TemporaryFile() as tar:
            subprocess.run(["tar", "-C", str(rootfs), "-c", "."], stdout=tar, check=True)
            tar.seek(0)
            self.docker("import", "-", name, input_bytes=tar.read())

    def stop(self) -> None:
        if self.process is None:
            return
        for line in self.docker("ps", "-aq", check=False).stdout.split():
            self.docker("rm", "-f", line, check=False)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        unmount_below(self.root)
        if self._log is not None:
            self._log.close()
        self.process = None


def client_env(engine: Engine, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **engine.env, **(extra or {})}


@contextlib.contextmanager
def running_engine(store: Store) -> Iterator[Engine]:
    """A started engine with its private root (short: unix socket paths), stopped and removed afterwards."""
    root = state_dir("lbe-")
    engine = Engine(store, root)
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()
        shutil.rmtree(root, ignore_errors=True)
