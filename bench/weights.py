"""What a model's weights cost, by the catalog's layer compression: build + push time, the builder's disk at peak
and after the build, the registry's bytes, and a pull (download and unpack) into a real Docker Engine, each
against the floor measured in the same run: one copy of the weights file on this disk (``cp`` + ``sync``), and the
weights' own size.

The weights are random bytes (GGUF is quantized and does not compress), served on 127.0.0.1; the model is built by
the real model template on the buildkit tests' fixture base (a busybox stand-in for nvidia/cuda) on a private
``llama-bake builder up`` builder, pushed to Debian's docker-registry on 127.0.0.1 and pulled into a dockerd of its
own (classic image store). The builder is pruned before each build; its state directory's allocated bytes are
sampled every 0.2 s during the build. One more build re-splits a file over ``max_layer_size`` (the split tool a
shell stand-in, as in the tests).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from common import builder_env, registry

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.engine import running_engine  # noqa: E402
from tests.integration.test_push_limits import FAKE_SPLIT, FAKE_SPLIT_TEMPLATE  # noqa: E402
from tests.standins import busybox_layout  # noqa: E402

FIXTURE_BASE = REPO / "tests" / "fixtures" / "buildkit" / "templates" / "base.Dockerfile.j2"
DEVEL = "nvidia/cuda:12.8.1-devel-ubuntu24.04"
RUNTIME = "nvidia/cuda:12.8.1-runtime-ubuntu24.04"
LLAMA_BAKE = [sys.executable, "-m", "llama_bake"]
COMPRESSIONS = ("gzip", "zstd", "uncompressed")
MIB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    weights_mib: int
    engine: bool = True
    compressions: tuple[str, ...] = COMPRESSIONS


FULL = Sizes(weights_mib=1024)
# The smoke run keeps the code working: two compressions (the ratio needs gzip and zstd) run every line the third
# would, a build and an engine's pull fewer.
SMOKE = Sizes(weights_mib=4, compressions=("gzip", "zstd"))


def allocated(root: Path) -> int:
    """Bytes allocated on disk under ``root`` (hard links once); files vanishing meanwhile are skipped."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                stat = os.lstat(os.path.join(directory, name))  # noqa: PTH118 - os.walk's strings, many files
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_blocks * 512
    return total


class Sampler:
    """The peak of ``allocated(root)`` while it runs."""

    def __init__(self, root: Path) -> None:
        self.root, self.peak, self._stop = root, allocated(root), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, allocated(self.root))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, allocated(self.root))


@contextmanager
def served(directory: Path) -> Iterator[int]:
    """``directory`` over HTTP on 127.0.0.1; yields the port."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Bench:
    root: Path
    env: dict[str, str]
    builder: str
    registry: str
    weights: Path
    url: str
    sha: str
    overrides: dict[str, object]
    log: str = ""

    @property
    def catalog(self) -> Path:
        return self.root / "catalog"

    @property
    def builder_state(self) -> Path:
        return Path(self.env["LLAMA_BAKE_STATE_DIR"]) / "buildkitd" / "data"

    def run(self, cmd: list[str], *, stderr: bool = False) -> str:
        """``cmd``'s output (with ``stderr``, its standard error after it); a failure raises with its end."""
        done = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            msg = f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-3000:]}"
            raise RuntimeError(msg)
        return done.stdout + (done.stderr if stderr else "")

    def settings(self, **extra: object) -> None:
        (self.catalog / "project.yaml").write_text(yaml.safe_dump({**self.overrides, **extra}), encoding="utf-8")

    def model(self, name: str, **weights: object) -> None:
        data = {"weights": {"url": self.url, "sha256": self.sha, "size": self.weights.stat().st_size, **weights}}
        (self.catalog / "models" / f"{name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")

    def build(self, target: str) -> tuple[float, int, int]:
        """Build and push ``target`` on an emptied builder: wall time, peak and final bytes the builder added."""
        self.run(["docker", "buildx", "prune", "--all", "--force", "--builder", self.builder])
        before = allocated(self.builder_state)
        sampler = Sampler(self.builder_state)
        start = time.perf_counter()
        argv = ["build", "-c", str(self.catalog), "--push", "--progress", "plain", "--var", f"REGISTRY={self.registry}"]
        try:
            self.log = self.run([*LLAMA_BAKE, *argv, target], stderr=True)
        finally:
            peak = sampler.stop()
        wall = time.perf_counter() - start
        return wall, peak - before, allocated(self.builder_state) - before

    def layers(self, target: str) -> list[dict[str, object]]:
        ref = f"docker://{self.registry}/{target}:latest"
        try:
            manifest = json.loads(self.run(["skopeo", "inspect", "--tls-verify=false", "--raw", ref]))
        except RuntimeError:
            print(self.log[-6000:], file=sys.stderr)
            raise
        if "manifests" in manifest:
            digest = next(m["digest"] for m in manifest["manifests"] if m.get("platform", {}).get("os") == "linux")
            ref = f"docker://{self.registry}/{target}@{digest}"
            manifest = json.loads(self.run(["skopeo", "inspect", "--tls-verify=false", "--raw", ref]))
        return list(manifest["layers"])


def copy_floor(weights: Path) -> float:
    """One copy of the weights on this disk, written through (``cp`` then ``sync``): the floor of any write."""
    copy = weights.with_name("copy.gguf")
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    shutil.copyfile(weights, copy)
    subprocess.run(["sync"], check=True)
    wall = time.perf_counter() - start
    copy.unlink()
    return wall


@contextmanager
def bench(sizes: Sizes) -> Iterator[Bench]:
    state, builder, env = builder_env("weights")
    root = state / "project"
    files = state / "served"
    files.mkdir()
    weights = files / "model.gguf"
    with weights.open("wb") as out:
        for _ in range(sizes.weights_mib):
            out.write(os.urandom(MIB))
    sha = subprocess.run(["sha256sum", str(weights)], capture_output=True, text=True, check=True).stdout.split()[0]
    try:
        with served(files) as port, registry(state) as address:
            url = f"http://127.0.0.1:{port}/model.gguf"
            proj = Bench(root, env, builder, address, weights, url, sha, {"provenance": "off"})
            root.mkdir()
            proj.run([*LLAMA_BAKE, "builder", "up"])
            (state / "stand-in").mkdir()
            stand_in = busybox_layout(builder, state / "stand-in")
            (root / "templates").mkdir()
            shutil.copy(FIXTURE_BASE, root / "templates" / "base.Dockerfile.j2")
            (root / "templates" / "gguf-split.Dockerfile.j2").write_text(FAKE_SPLIT_TEMPLATE, encoding="utf-8")
            (root / "src" / "gguf-split").mkdir(parents=True)
            (root / "src" / "gguf-split" / "llama-gguf-split").write_text(FAKE_SPLIT, encoding="utf-8")
            (root / "src" / "llama.cpp").mkdir(parents=True)
            (root / "src" / "llama.cpp" / "VERSION").write_text("benchmark source\n", encoding="utf-8")
            (proj.catalog / "bases").mkdir(parents=True)
            (proj.catalog / "models").mkdir()
            base = {"llama_cpp": {"path": "src/llama.cpp", "ref": "b1"}, "gpu_families": ["ada"]}
            (proj.catalog / "bases" / "base.yaml").write_text(yaml.safe_dump(base), encoding="utf-8")
            proj.overrides["image_overrides"] = {DEVEL: stand_in, RUNTIME: stand_in, "ubuntu:24.04": stand_in}
            proj.overrides["split_tool"] = {"path": "src/gguf-split", "ref": "fake-1"}
            yield proj
    finally:
        subprocess.run([*LLAMA_BAKE, "builder", "down"], env=env, capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)


def pull_time(proj: Bench, target: str) -> float:
    """``docker pull`` of the pushed image into a fresh dockerd (classic store): download and unpack."""
    with running_engine("classic") as engine:
        start = time.perf_counter()
        engine.docker("pull", f"{proj.registry}/{target}:latest")
        return time.perf_counter() - start


def run(sizes: Sizes) -> list[str]:
    gib = sizes.weights_mib / 1024
    rows = []
    with bench(sizes) as proj:
        floor = copy_floor(proj.weights)
        size = proj.weights.stat().st_size
        print(f"weights: one copy of {size / MIB:.0f} MiB in {floor:.2f}s", file=sys.stderr)
        measured = {}
        for compression in sizes.compressions:
            proj.settings(compression=compression)
            name = f"w-{compression}"
            proj.model(name)
            wall, peak, after = proj.build(name)
            layers = proj.layers(name)
            weights_layer = max(layers, key=lambda layer: int(str(layer["size"])))
            pushed = sum(int(str(layer["size"])) for layer in layers)
            pull = pull_time(proj, name) if sizes.engine else float("nan")
            measured[compression] = wall
            print(
                f"  {compression}: build+push {wall:.2f}s, peak +{peak / MIB:.0f} MiB, pull {pull:.2f}s",
                file=sys.stderr,
            )
            rows.append(
                f"| {compression} | `{weights_layer['mediaType']}` | {wall:.2f} | {wall / floor:.1f}x "
                f"| {pull:.2f} | {pull / floor:.1f}x | {peak / size:.2f}x | {after / size:.2f}x "
                f"| {pushed / size:.3f}x |"
            )
            (proj.catalog / "models" / f"{name}.yaml").unlink()
        proj.settings(compression="zstd", max_layer_size=max(size // 3, 1_000_000))
        proj.model("w-resplit")
        wall, peak, after = proj.build("w-resplit")
        parts = sum(1 for layer in proj.layers("w-resplit") if int(str(layer["size"])) > size // 10)
        rows.append(
            f"| zstd, re-split into {parts} parts | - | {wall:.2f} | {wall / floor:.1f}x | - | - "
            f"| {peak / size:.2f}x | {after / size:.2f}x | - |"
        )
        print(f"  re-split: peak +{peak / MIB:.0f} MiB, after +{after / MIB:.0f} MiB", file=sys.stderr)
    gain = measured["gzip"] / measured["zstd"]
    return [
        "## Weights: layer compression, builder disk, push and pull",
        "",
        f"One model whose weights are {gib:g} GiB of random bytes (GGUF does not compress), served on 127.0.0.1, "
        "built with the real model template on an emptied private builder and pushed to docker-registry on "
        "127.0.0.1; pulled into a fresh dockerd (classic store). The floor, measured in the same run: one copy of "
        f"the weights on this disk (`cp` + `sync`), {floor:.2f} s here; disk figures are per byte of weights "
        "(the builder's state directory, allocated bytes, sampled every 0.2 s). zstd pushes "
        f"**{gain:.1f}x** as fast as gzip here.",
        "",
        "| compression | weights layer | build + push (s) | vs one copy | pull + unpack (s) | vs one copy "
        "| builder disk, peak | after the build | registry bytes |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
    ]


if __name__ == "__main__":
    smoke = "--smoke" in sys.argv
    print("\n".join(run(SMOKE if smoke else FULL)))
