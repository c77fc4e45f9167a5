"""What the benchmarks share: the environment of a private builder (``llama-bake builder up`` with a state directory
of its own) and Debian's docker-registry on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.statedirs import state_dir  # noqa: E402

TOOLS = Path(os.environ.get("LLAMA_BAKE_TOOLS", str(Path.home() / ".cache" / "llama-bake" / "tools")))


def tools_env() -> dict[str, str]:
    """This interpreter's commands (llama-bake) and the built tools (buildx, buildkitd) first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{TOOLS}:{os.environ['PATH']}"}


def builder_env(prefix: str, builder: str | None = None) -> tuple[Path, str, dict[str, str]]:
    """(a new state directory, the builder's name, the environment that makes `llama-bake builder up` and
    `build` use them): a short path under /tmp, since unix socket paths are limited to about 100 bytes."""
    state = state_dir(f"lb-{prefix}-")
    name = builder or f"llama-bake-{prefix}-{os.getpid()}"
    return state, name, {**tools_env(), "LLAMA_BAKE_STATE_DIR": str(state), "LLAMA_BAKE_BUILDER": name}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def registry(root: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1, its storage under ``root``; yields its address, stopped at the end."""
    port = free_port()
    config = root / "registry.yml"
    settings = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "registry")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        probe = ["curl", "-fso", "/dev/null", f"http://127.0.0.1:{port}/v2/"]
        while subprocess.run(probe, check=False).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                msg = "docker-registry did not start"
                raise RuntimeError(msg)
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
