"""Shared fixtures: small catalogs written to a temporary project, and the real buildx."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_bake.buildx.progress import Progress
from tests.early import REPORT, Chain, chain_for
from tests.statedirs import remove_in_background, remove_stale, state_dir

REPO = Path(__file__).resolve().parent.parent
SHA_A = "a" * 64
SHA_B = "b" * 64
REV = "1" * 40

BASE: dict[str, Any] = {
    "llama_cpp": {"git": "https://github.com/ggml-org/llama.cpp.git", "ref": "b6500"},
    "cuda": "12.8.1",
    "gpu_families": ["ada", "blackwell-consumer"],
}
MODEL: dict[str, Any] = {
    "weights": {"hf": "owner/repo-GGUF", "file": "model-Q4_K_M.gguf", "revision": REV, "sha256": SHA_A},
}

WriteCatalog = Callable[..., Path]


def pytest_configure(config: pytest.Config) -> None:
    """A run started in the background (`cmd &` in a script, nohup) starts with SIGINT ignored, and so would every
    process it starts. The Ctrl-C tests send SIGINT as a terminal does, to processes that must receive it."""
    del config
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Where the compile tiers' early builds went (tests/early.py), so that a run's log says it."""
    for line in REPORT:
        terminalreporter.write_line(line)


def write_yaml(path: Path, data: Any) -> Path:
    # Escaped output: PyYAML's dumper writes some characters raw (NEL) that its loader reads differently.
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=False)
    assert yaml.safe_load(text) == data, "the test's YAML writer must round-trip exactly"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(autouse=True, scope="session")
def compile_cache_in_the_session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The compile cache (``$XDG_CACHE_HOME/llama-bake/compiled``) in the session's temporary directory: no test
    writes to the user's own cache directory, and no test reads an entry another run left there."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True, scope="session")
def early_builds(
    request: pytest.FixtureRequest, compile_cache_in_the_session: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chain | None]:
    """The compile tiers' builds, started before the first test (tests/early.py): the tests in front run beside
    them. None when the session runs no compile tier."""
    del compile_cache_in_the_session
    yield from chain_for(request, lambda: tmp_path_factory.mktemp("early"))


@pytest.fixture
def write_catalog(tmp_path: Path) -> WriteCatalog:
    """Write a catalog under ``tmp_path/catalog``: ``write_catalog(bases={...}, models={...}, project={...})``."""

    def write(
        bases: dict[str, Any] | None = None,
        models: dict[str, Any] | None = None,
        project: dict[str, Any] | None = None,
    ) -> Path:
        catalog = tmp_path / "catalog"
        for name, data in (bases if bases is not None else {"llama-cpp-cuda": BASE}).items():
            write_yaml(catalog / "bases" / f"{name}.yaml", data)
        for name, data in (models if models is not None else {"model-a": MODEL}).items():
            write_yaml(catalog / "models" / f"{name}.yaml", data)
        if project is not None:
            write_yaml(catalog / "project.yaml", project)
        catalog.mkdir(exist_ok=True)
        return catalog

    return write


def _buildx_available() -> str | None:
    if shutil.which("docker") is None:
        return "the docker client is not on PATH"
    probe = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return "the buildx plugin is missing: run .ci/install-tools.sh"
    return None


@pytest.fixture(scope="session")
def buildx() -> None:
    """Real buildx. A missing tool fails the test: nothing is skipped for it."""
    problem = _buildx_available()
    if problem:
        pytest.fail(f"{problem} (tests marked `bake` and `buildkit` need real buildx)")


def executed(progress: Progress) -> list[str]:
    """The steps a build ran rather than took from the cache (a ``--link`` copy whose copy was a hit, and whose
    cheap merge onto the base ran, counts as cached)."""
    return progress.executed_steps()


# --- real BuildKit: an embedded builder, a registry on 127.0.0.1, and stand-in base images ------------

FIXTURE_TEMPLATES = Path(__file__).parent / "fixtures" / "buildkit" / "templates"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def session_env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Isolated builder name and state, so tests never touch a user's own `llama-bake` builder."""
    import os

    mp = pytest.MonkeyPatch()
    state = tmp_path_factory.mktemp("state")
    # What killed runs left under /tmp (gigabytes each) goes first: see tests/statedirs.py.
    remove_stale()
    # A short path: unix socket paths are limited to about 100 bytes.
    short = state_dir("lb-")
    mp.setenv("LLAMA_BAKE_STATE_DIR", str(short))
    mp.setenv("LLAMA_BAKE_BUILDER", f"llama-bake-test-{os.getpid()}")
    tools = Path(os.environ.get("LLAMA_BAKE_TOOLS", str(Path.home() / ".cache" / "llama-bake" / "tools")))
    mp.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    yield state
    mp.undo()
    # The builder's state (the embedded builder stopped before this): nothing after the session reads it.
    remove_in_background([short])


BINFMT = Path("/proc/sys/fs/binfmt_misc")
# Debian's qemu-user-static ships its binfmt_misc line: the aarch64 ELF header -> qemu, with flags O, P
# (argv[0] preserved: busybox picks its applet by it) and F (the interpreter is opened now, so it also works
# inside the builder's containers).
QEMU_AARCH64 = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")


@pytest.fixture(scope="session")
def arm64_emulation() -> Any:
    """linux/arm64 binaries run here through Debian's qemu-user-static, registered with binfmt_misc for the
    session (and unregistered after, unless it was there before). Every builder started after it can build
    for linux/arm64 by emulation."""
    entry = BINFMT / "qemu-aarch64"
    if not QEMU_AARCH64.exists():
        pytest.fail("qemu-user-static is not installed: run .ci/install-tools.sh")
    if not (BINFMT / "register").exists():
        mounted = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True)
        if mounted.returncode != 0:
            pytest.fail(f"cannot mount binfmt_misc for arm64 emulation: {mounted.stderr.decode().strip()}")
    ours = not entry.exists()
    if ours:
        try:
            (BINFMT / "register").write_text(QEMU_AARCH64.read_text().strip())
        except OSError as exc:
            pytest.fail(f"cannot register qemu-aarch64 with binfmt_misc: {exc}")
    yield
    if ours and entry.exists():
        entry.write_text("-1")


@pytest.fixture(scope="session")
def embedded_builder(buildx: None, session_env: Any, arm64_emulation: None) -> Any:
    """`llama-bake builder up` for the session; `builder down` at the end."""
    from llama_bake.buildx import daemon as builder
    from llama_bake.buildx.client import DockerRunner
    from llama_bake.buildx.probe import builder_name

    runner = DockerRunner()
    builder.up(runner)
    yield builder_name()
    builder.down(runner)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Debian's docker-registry (distribution 2.8) on 127.0.0.1, stopped at the end of the session."""
    import time

    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed: run .ci/install-tools.sh")
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = write_yaml(
        root / "config.yml",
        {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}"},
        },
    )
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    import urllib.request

    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()}")
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
    log.close()


@pytest.fixture(scope="session")
def stand_in_image(embedded_builder: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 2 MB busybox image as an OCI layout: stands in for nvidia/cuda and ubuntu, which cannot be pulled."""
    from tests.standins import busybox_layout

    try:
        return busybox_layout(embedded_builder, tmp_path_factory.mktemp("stand-in"))
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def two_platform_stand_in(embedded_builder: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """busybox for linux/amd64 and linux/arm64 in one image index: the multi-platform nvidia/cuda stand-in."""
    from tests.standins import two_platform_busybox_layout

    try:
        return two_platform_busybox_layout(embedded_builder, tmp_path_factory.mktemp("stand-in-2"))
    except RuntimeError as exc:
        pytest.fail(str(exc))


class WeightsServer:
    """GGUF-sized stand-ins served on 127.0.0.1, every GET counted: the proof that a build downloaded nothing."""

    def __init__(self) -> None:
        import collections
        import http.server
        import threading

        self.files: dict[str, bytes] = {}
        self.gets: collections.Counter[str] = collections.Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                server.gets[name] += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def add(self, name: str, size: int = 1 << 20) -> tuple[str, str]:
        """A new random file; returns its URL and SHA-256."""
        import hashlib
        import os

        self.files[name] = os.urandom(size)
        return f"http://127.0.0.1:{self.port}/{name}", hashlib.sha256(self.files[name]).hexdigest()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def weights_server() -> Any:
    server = WeightsServer()
    yield server
    server.close()


@pytest.fixture
def run_image(tmp_path: Path) -> Any:
    """``run_image(archive)`` runs an exported image with runc (tests/images.py); stopped after the test."""
    from tests.images import Runner

    runner = Runner(tmp_path)
    yield runner.run
    runner.stop()


def prune_builder(builder: str) -> None:
    """Empty ``builder``: every build cache record, cache mounts included (``docker buildx prune --all``)."""
    subprocess.run(
        ["docker", "buildx", "prune", "--force", "--all", "--builder", builder], check=True, capture_output=True
    )
