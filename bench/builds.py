"""Build benchmarks on a real BuildKit: the graph against the old build-all script, the overhead of
``llama-bake build`` over raw ``docker buildx bake``, and a cache import against a cold build.

The project is the buildkit test fixture (a base and N models on a busybox stand-in for nvidia/cuda) with
its ``sleep`` steps replaced by real CPU work: the base hashes zeros on every core (a parallel compile), each
model hashes zeros on one core. Everything runs on a builder of its own (``llama-bake builder up`` with
private state), stopped at the end.
"""

from __future__ import annotations

import json
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from common import builder_env

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.standins import busybox_layout  # noqa: E402

FIXTURE_TEMPLATES = REPO / "tests" / "fixtures" / "buildkit" / "templates"
DEVEL = "nvidia/cuda:12.8.1-devel-ubuntu24.04"
RUNTIME = "nvidia/cuda:12.8.1-runtime-ubuntu24.04"
LLAMA_BAKE = [sys.executable, "-m", "llama_bake"]


@dataclass(frozen=True)
class Sizes:
    models: int
    base_mb: int  # MB of zeros hashed per core by the base's "compile"
    model_mb: int  # MB hashed by each model's step
    repeat: int


FULL = Sizes(models=4, base_mb=600, model_mb=300, repeat=3)
SMOKE = Sizes(models=2, base_mb=1, model_mb=1, repeat=1)


def burn(mb: int) -> str:
    return f"dd if=/dev/zero bs=1M count={mb} 2>/dev/null | sha256sum >/dev/null"


@dataclass
class Project:
    root: Path
    builder: str
    env: dict[str, str]
    sizes: Sizes

    @property
    def catalog(self) -> Path:
        return self.root / "catalog"

    def run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            msg = f"{shlex.join(cmd)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            raise RuntimeError(msg)
        return result

    def timed(self, cmd: list[str]) -> float:
        start = time.perf_counter()
        self.run(cmd)
        return time.perf_counter() - start

    def prune(self) -> None:
        self.run(["docker", "buildx", "prune", "--all", "--force", "--builder", self.builder])

    def write_model(self, index: int, ctx_size: int = 4096) -> None:
        data = {
            "weights": {"url": f"https://models.invalid/m{index}.gguf", "sha256": "c" * 64},
            "server": {"ctx_size": ctx_size},
        }
        (self.catalog / "models" / f"m{index}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")

    # --- the two ways of building ------------------------------------------------------------------

    def llama_bake_build(self, *extra: str) -> tuple[float, dict[str, int]]:
        """``llama-bake build`` (generate, then bake); its wall time and the summary's step counts."""
        summary = self.root / "summary.json"
        wall = self.timed([*LLAMA_BAKE, "build", "--progress", "quiet", "--summary-json", str(summary), *extra])
        data = json.loads(summary.read_text(encoding="utf-8"))
        return wall, {"executed": data["steps_executed"], "cached": data["steps_cached"]}

    def sequential_build(self) -> float:
        """The old build-all script: one ``docker buildx build`` per Dockerfile, base first, in sequence. The
        base is exported as an image (an OCI layout here, ``--load`` there) for the models to start FROM.
        The Dockerfiles are the generated ones (the edit to the catalog is not timed), so both ways build
        exactly the same steps."""
        self.run([*LLAMA_BAKE, "generate"])
        printed = json.loads(self.run(["docker", "buildx", "bake", "--print", "bases", "models"]).stdout)
        work = self.root / "sequential"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        targets = printed["target"]
        bases = {v.removeprefix("target:") for t in targets.values() for v in _contexts(t).values() if "target:" in v}
        commands = []
        for name in sorted(targets, key=lambda n: (n not in bases, n)):
            target = targets[name]
            # The generated Dockerfile (dockerfiles/NAME.Dockerfile), relative to the target's context.
            dockerfile = self.root / target.get("context", ".") / target["dockerfile"]
            cmd = ["docker", "buildx", "build", "--builder", self.builder, "--progress", "quiet"]
            cmd += ["--file", str(dockerfile)]
            for key, value in sorted(target.get("args", {}).items()):
                cmd += ["--build-arg", f"{key}={value}"]
            for key, value in sorted(_contexts(target).items()):
                if value.startswith("target:"):
                    value = f"oci-layout://{work / value.removeprefix('target:')}:latest"
                cmd += ["--build-context", f"{key}={value}"]
            if name in bases:
                cmd += ["--output", f"type=oci,dest={work / name},tar=false,name={name}:latest"]
            else:
                cmd += ["--output", "type=cacheonly"]
            commands.append([*cmd, target.get("context", ".")])
        start = time.perf_counter()
        for cmd in commands:
            self.run(cmd)
        return time.perf_counter() - start

    def raw_bake_command(self) -> list[str]:
        """The exact command ``llama-bake build`` runs (from ``--dry-run``), with its metadata file kept here."""
        printed = self.run([*LLAMA_BAKE, "build", "--dry-run"]).stdout.strip()
        argv = shlex.split(printed)
        argv[argv.index("--metadata-file") + 1] = str(self.root / "raw-metadata.json")
        return argv


def _contexts(target: dict[str, object]) -> dict[str, str]:
    contexts = target.get("contexts") or {}
    assert isinstance(contexts, dict)
    return {str(k): str(v) for k, v in contexts.items()}


@contextmanager
def project(sizes: Sizes) -> Iterator[Project]:
    """A private builder (started with ``llama-bake builder up``, stopped at the end) and the fixture project."""
    state, builder, env = builder_env("bench")
    root = state / "project"
    proj = Project(root, builder, env, sizes)
    try:
        root.mkdir()
        proj.run([*LLAMA_BAKE, "builder", "up"])
        (state / "stand-in").mkdir()
        stand_in = busybox_layout(builder, state / "stand-in")
        templates = root / "templates"
        templates.mkdir()
        steps = {
            "base": f"for i in $(seq $(nproc)); do {burn(sizes.base_mb)} & done; wait",  # a parallel compile
            "model": burn(sizes.model_mb),
        }
        for name, work in steps.items():
            text = (FIXTURE_TEMPLATES / f"{name}.Dockerfile.j2").read_text(encoding="utf-8")
            assert text.count("sleep 2") == 1, f"the fixture {name} template changed: update the benchmark"
            (templates / f"{name}.Dockerfile.j2").write_text(text.replace("sleep 2", work), encoding="utf-8")
        (root / "src" / "llama.cpp").mkdir(parents=True)
        (root / "src" / "llama.cpp" / "VERSION").write_text("benchmark source\n", encoding="utf-8")
        (proj.catalog / "bases").mkdir(parents=True)
        (proj.catalog / "models").mkdir()
        # A cuda base runs on the slim runtime (ubuntu plus the CUDA libraries) by default: stand in for both.
        project_yaml = {"image_overrides": {DEVEL: stand_in, RUNTIME: stand_in, "ubuntu:24.04": stand_in}}
        (proj.catalog / "project.yaml").write_text(yaml.safe_dump(project_yaml), encoding="utf-8")
        base = {"llama_cpp": {"path": "src/llama.cpp", "ref": "b1"}, "gpu_families": ["ada"]}
        (proj.catalog / "bases" / "base.yaml").write_text(yaml.safe_dump(base), encoding="utf-8")
        for index in range(sizes.models):
            proj.write_model(index)
        yield proj
    finally:
        subprocess.run([*LLAMA_BAKE, "builder", "down"], env=env, capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def _steps(samples: list[dict[str, int]]) -> str:
    """Steps executed in each run (they can differ run to run), of the steps the build has."""
    total = samples[0]["executed"] + samples[0]["cached"]
    return f"{', '.join(str(s['executed']) for s in samples)} of {total}"


def graph_gain(proj: Project) -> tuple[list[str], float]:
    """Cold, warm and one-model-changed builds, each way from a pruned builder. Returns the rows and the
    median cold time of ``llama-bake build`` (the cache benchmark's baseline)."""
    phases = ("cold", "warm (nothing changed)", "one model changed")
    walls: dict[tuple[str, str], list[float]] = {(w, p): [] for w in ("bake", "sequential") for p in phases}
    steps: dict[str, list[dict[str, int]]] = {p: [] for p in phases}
    for rep in range(proj.sizes.repeat):
        ways = ("bake", "sequential") if rep % 2 == 0 else ("sequential", "bake")
        for way in ways:
            for index in range(proj.sizes.models):
                proj.write_model(index)
            proj.prune()
            for phase in phases:
                if phase == "one model changed":
                    proj.write_model(0, ctx_size=8192)
                if way == "bake":
                    wall, counted = proj.llama_bake_build()
                    steps[phase].append(counted)
                else:
                    wall = proj.sequential_build()
                walls[(way, phase)].append(wall)
                print(f"  {way} {phase}: {wall:.2f}s", file=sys.stderr)
    rows = [
        "| build | sequential `docker buildx build` (s) | `llama-bake build` (s) | gain | steps run by llama-bake |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for phase in phases:
        seq, bake = _median(walls[("sequential", phase)]), _median(walls[("bake", phase)])
        rows.append(f"| {phase} | {seq:.2f} | {bake:.2f} | **{seq / bake:.2f}x** | {_steps(steps[phase])} |")
    return rows, _median(walls[("bake", "cold")])


def overhead(proj: Project, repeat: int) -> list[str]:
    """A no-op ``llama-bake build`` (generate, bake, parse progress, summary) against the same bake command run raw."""
    raw = proj.raw_bake_command()
    proj.llama_bake_build()  # everything cached from here on
    raw_walls, tool_walls = [], []
    for _ in range(repeat):
        raw_walls.append(proj.timed(raw))
        tool_walls.append(proj.llama_bake_build()[0])
    raw_wall, tool_wall = _median(raw_walls), _median(tool_walls)
    print(f"  no-op: raw {raw_wall:.2f}s, llama-bake {tool_wall:.2f}s", file=sys.stderr)
    return [
        "| no-op build (everything cached) | wall (s) | vs raw bake |",
        "| --- | ---: | ---: |",
        f"| `{shlex.join(raw[:3])} ...` (the command `llama-bake build --dry-run` prints) | {raw_wall:.2f} | 1.00x |",
        f"| `llama-bake build` (generate, bake, progress, summary) | {tool_wall:.2f} "
        f"| **{tool_wall / raw_wall:.2f}x** |",
    ]


def cache_import(proj: Project, cold: float) -> list[str]:
    """Export the cache to a directory, prune the builder, rebuild from the cache: against a cold build."""
    cache = proj.root / "cache"
    exports, imports = [], []
    steps: list[dict[str, int]] = []
    for _ in range(proj.sizes.repeat):
        shutil.rmtree(cache, ignore_errors=True)
        proj.prune()
        exports.append(proj.llama_bake_build("--cache", f"local={cache}")[0])
        proj.prune()
        wall, counted = proj.llama_bake_build("--cache", f"local={cache}")
        imports.append(wall)
        steps.append(counted)
        print(f"  cache export {exports[-1]:.2f}s, import {wall:.2f}s, {counted}", file=sys.stderr)
    export, imported = _median(exports), _median(imports)
    return [
        "| build (`--cache local=DIR`) | wall (s) | vs cold build | steps executed |",
        "| --- | ---: | ---: | ---: |",
        f"| cold, no cache (from the table above) | {cold:.2f} | 1.00x | all |",
        f"| cold, exporting the cache | {export:.2f} | {export / cold:.2f}x | all |",
        f"| pruned builder, importing the cache | {imported:.2f} | **{imported / cold:.2f}x** | {_steps(steps)} |",
    ]


def versions(proj: Project) -> str:
    buildx = proj.run(["docker", "buildx", "version"]).stdout.split()
    inspect = proj.run(["docker", "buildx", "inspect", proj.builder]).stdout
    buildkit = next((line.split(":", 1)[1].strip() for line in inspect.splitlines() if "BuildKit" in line), "?")
    return f"buildx {buildx[1] if len(buildx) > 1 else '?'}, BuildKit {buildkit}"


def run(sizes: Sizes, overhead_repeat: int) -> list[str]:
    with project(sizes) as proj:
        tools = versions(proj)
        print("builds:", tools, file=sys.stderr)
        gain, cold = graph_gain(proj)
        lines = [
            "## The graph's gain over the old build-all script",
            "",
            f"A base whose step hashes {sizes.base_mb} MB of zeros on every core (a parallel compile) and "
            f"{sizes.models} models whose steps hash {sizes.model_mb} MB each on one core, on a busybox stand-in "
            f"for nvidia/cuda; {tools}. The old way is one `docker buildx build` per Dockerfile in "
            "sequence, the base exported as an image for the models' FROM (an OCI layout here; `--load` into an "
            "engine there, which costs more for a real CUDA image). Each way starts from a pruned builder; "
            f"medians of {sizes.repeat}.",
            "",
            *gain,
            "",
            "## Overhead of `llama-bake build` over raw `docker buildx bake`",
            "",
            f"Same generated file, same builder, everything cached; medians of {overhead_repeat}.",
            "",
            *overhead(proj, overhead_repeat),
            "",
            "## Cache import into a pruned builder",
            "",
            *cache_import(proj, cold),
            "",
        ]
    return lines
