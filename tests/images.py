"""Built images, looked at and run the way this machine can without a Docker engine: an OCI archive read in
Python, unpacked with umoci and run with runc on the host's network (the server on 127.0.0.1)."""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.conftest import free_port


def run_checked(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, *, base_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``base_env`` (default: this process's environment) with ``env`` added; a non-zero exit fails
    the test with the end of its output."""
    environment = {**(os.environ if base_env is None else base_env), **(env or {})}
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, env=environment)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


# --- reading an OCI archive ---------------------------------------------------------------------


def plain_tar(data: bytes, media_type: str) -> bytes:
    """A layer blob as a plain tar, whatever the exporter compressed it with (gzip, zstd or nothing)."""
    if media_type.endswith("gzip"):
        return gzip.decompress(data)
    if media_type.endswith("zstd"):
        # BuildKit writes zstd as a stream: its frames need not say their size, so read them as a stream.
        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    return data


class OciArchive:
    def __init__(self, path: Path) -> None:
        self.path = path
        with tarfile.open(path) as tar:
            self.files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]

    def blob(self, digest: str) -> bytes:
        return self.files["blobs/" + digest.replace(":", "/")]

    def manifest(self) -> dict[str, Any]:
        index = json.loads(self.files["index.json"])
        manifest: dict[str, Any] = json.loads(self.blob(index["manifests"][0]["digest"]))
        if "manifests" in manifest:  # an index of one platform
            manifest = json.loads(self.blob(manifest["manifests"][0]["digest"]))
        return manifest

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = json.loads(self.blob(self.manifest()["config"]["digest"]))
        return config

    def layer_files(self) -> Iterator[tuple[str, bytes]]:
        """Every regular file of every layer, with its path."""
        for layer in self.manifest()["layers"]:
            data = plain_tar(self.blob(layer["digest"]), layer["mediaType"])
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        yield member.name, tar.extractfile(member).read()  # type: ignore[union-attr]


# --- running an image with runc -----------------------------------------------------------------


@dataclass
class Container:
    name: str
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def exec(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runc", "--root", str(self.root), "exec", self.name, *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )


@dataclass(frozen=True)
class Unpacked:
    """An image unpacked once (its root filesystem and runc's spec for it); each container runs on it read-only."""

    rootfs: Path
    spec: dict[str, Any]


def unpack(archive: Path, into: Path) -> Unpacked:
    """The image of the OCI archive ``archive`` unpacked by umoci under ``into``."""
    layout = into / "layout"
    bundle = into / "bundle"
    into.mkdir(parents=True, exist_ok=True)
    # As gzip: Debian's umoci (0.4.7) refuses zstd layers ("blob is not correct mediatype").
    as_gzip = ["skopeo", "copy", "--quiet", "--dest-compress", "--dest-compress-format", "gzip"]
    run_checked([*as_gzip, f"oci-archive:{archive}", f"oci:{layout}:image"], cwd=into)
    run_checked(["umoci", "unpack", "--image", f"{layout}:image", str(bundle)], cwd=into)
    spec = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    return Unpacked(bundle / "rootfs", spec)


@dataclass
class Runner:
    """Runs images under ``tmp``; ``stop`` kills and deletes every container it started."""

    tmp: Path
    started: list[Container] = field(default_factory=list)

    def run(self, archive: Path) -> Container:
        return self.start(unpack(archive, self.tmp / f"image-{len(self.started)}"))

    def start(
        self, image: Unpacked, env: dict[str, str] | None = None, mounts: tuple[dict[str, Any], ...] = ()
    ) -> Container:
        """A container of ``image`` with ``env`` added to its environment and ``mounts`` to its mounts."""
        spec = copy.deepcopy(image.spec)
        spec["root"] = {"path": str(image.rootfs), "readonly": True}
        port = free_port()
        # Share the host's network, so the test reaches the server on 127.0.0.1; a port of our choosing. On the
        # host's network the image's own host (0.0.0.0, for a published port) would listen on every interface:
        # the server listens on the loopback address only.
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "network"]
        environment = [e for e in spec["process"]["env"] if not e.startswith(("LLAMA_ARG_PORT=", "LLAMA_ARG_HOST="))]
        added = {"LLAMA_ARG_PORT": str(port), "LLAMA_ARG_HOST": "127.0.0.1", **(env or {})}
        spec["process"]["env"] = [*environment, *(f"{k}={v}" for k, v in added.items())]
        spec["process"]["terminal"] = False
        # As Compose and Kubernetes run it: a read-only root filesystem, with tmpfs on /tmp and on the cache
        # (LLAMA_CACHE: a volume there), the process as the image's user (umoci takes it from the image config).
        cache = dict(e.split("=", 1) for e in environment).get("LLAMA_CACHE", "/var/cache/llama")
        user = spec["process"]["user"]
        # The cache belongs to the image's user, as a volume Docker fills from the image (or fsGroup) makes it.
        owner = [f"uid={user['uid']}", f"gid={user['gid']}"]
        for target, options in (("/tmp", ["mode=1777"]), (cache, owner)):
            mount = {
                "destination": target,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", *options],
            }
            spec["mounts"].append(mount)
        spec["mounts"] += mounts
        bundle = self.tmp / f"bundle-{len(self.started)}"
        bundle.mkdir(parents=True)
        (bundle / "config.json").write_text(json.dumps(spec), encoding="utf-8")
        root = self.tmp / "runc"
        name = f"llama-bake-test-{os.getpid()}-{len(self.started)}"
        log = self.tmp / f"{name}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["runc", "--root", str(root), "run", "--bundle", str(bundle), name],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        container = Container(name, root, port, process, log)
        self.started.append(container)
        return container

    def stop(self) -> None:
        for container in self.started:
            subprocess.run(["runc", "--root", str(container.root), "kill", container.name, "KILL"], check=False)
            try:
                container.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                container.process.kill()
            subprocess.run(["runc", "--root", str(container.root), "delete", "--force", container.name], check=False)


def wait_healthy(container: Container, limit_s: float) -> float:
    """Seconds until ``/health`` answers 200; fails the test when the container exits or ``limit_s`` passes."""
    started = time.monotonic()
    while True:
        try:
            with urllib.request.urlopen(container.url("/health"), timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        if container.process.poll() is not None:
            pytest.fail(f"the container exited {container.process.returncode}:\n{container.log.read_text()[-3000:]}")
        if time.monotonic() - started > limit_s:
            pytest.fail(f"/health not 200 after {limit_s}s:\n{container.log.read_text()[-3000:]}")
        time.sleep(0.5)


def complete(container: Container, prompt: str, n_predict: int = 8) -> dict[str, Any]:
    """llama-server's ``/completion`` answer to ``prompt`` (greedy)."""
    request = urllib.request.Request(
        container.url("/completion"),
        data=json.dumps({"prompt": prompt, "n_predict": n_predict, "temperature": 0}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


# The step that copies an imported compiler cache into the compile's cache mount: it runs again whenever a newer
# export is imported (the last build exported one), while the compile it feeds stays cached.
CCACHE_IMPORT_STEP = "echo llama-bake-ccache-1 > /tmp/ccache-imported"


def compiled_again(steps: list[str]) -> list[str]:
    """The steps that ran, less the compiler cache's import step."""
    return [step for step in steps if CCACHE_IMPORT_STEP not in step]
