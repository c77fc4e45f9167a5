"""The CI fan-out against one job, and against a per-target matrix of plain bake, each job on a builder of its own.

    python bench/fanout.py          # six models; writes its section of bench/RESULTS.md (a few minutes)
    python bench/fanout.py --smoke  # one tiny model, nothing written (run.py --smoke runs it)

The project is the buildkit test fixture (a base whose "compile" is a step that prints `fixture-compile`, and
models whose weights the build downloads from a server on 127.0.0.1), pushed to a registry on 127.0.0.1. Every
job runs on an empty builder of its own (``llama-bake builder up`` with its own state directory), as a CI
runner does; its builder disk is the size of that builder's state once the job is done (nothing is pruned
during a build, so it is the job's peak):

1. one job: ``llama-bake build --push`` of every model (the pipeline before the fan-out);
2. the fan-out: a base job (``build base --push``), then one job per model (``build MODEL --push --bases-from``);
3. a per-target matrix of plain ``docker buildx bake MODEL`` (what docker/bake-action's matrix runs): each job
   builds its model and, through the ``target:`` context, the base again.

The figures: the largest fan-out job's builder disk against the one job's, and how many jobs ran the base's
compile step in the fan-out and in the plain matrix.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import ccache
import yaml
from common import registry, tools_env

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import FIXTURE_TEMPLATES, WeightsServer  # noqa: E402
from tests.standins import busybox_layout  # noqa: E402
from tests.statedirs import state_dir  # noqa: E402

LLAMA_BAKE = [sys.executable, "-m", "llama_bake"]
SECTION = "## The CI fan-out: builder disk per job and compiles per run"
COMPILED = "fixture-compile llama.cpp"  # what the base's compile step prints when it runs


@dataclass(frozen=True)
class Sizes:
    models: int
    weights_mb: int


FULL = Sizes(models=6, weights_mb=64)
SMOKE = Sizes(models=1, weights_mb=1)


@dataclass(frozen=True)
class Job:
    disk: int  # bytes of the job's builder state when it is done
    compiled: bool  # the base's compile step ran in it


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


@dataclass
class Bench:
    root: Path
    env: dict[str, str]
    registry: str

    def job(self, name: str, argv: list[str]) -> Job:
        """``argv`` in a job of its own: an empty builder, started for it and stopped after."""
        state = state_dir("lb-fan-")  # short: unix socket paths are limited
        env = {**self.env, "LLAMA_BAKE_STATE_DIR": str(state), "LLAMA_BAKE_BUILDER": f"lb-fan-{state.name}"}
        try:
            subprocess.run([*LLAMA_BAKE, "builder", "up"], env=env, capture_output=True, check=True)
            argv = [env["LLAMA_BAKE_BUILDER"] if word == "{builder}" else word for word in argv]
            done = subprocess.run(argv, cwd=self.root, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                msg = f"{name}: {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
                raise RuntimeError(msg)
            return Job(_du(state), COMPILED in done.stdout + done.stderr)
        finally:
            subprocess.run([*LLAMA_BAKE, "builder", "down"], env=env, capture_output=True, check=False)
            shutil.rmtree(state, ignore_errors=True)

    def build(self, scenario: str, *args: str) -> list[str]:
        """``llama-bake build`` as a CI job runs it; each scenario with a cache of its own, so none starts warm."""
        cache = f"registry={self.registry}/cache-{scenario}"
        return [*LLAMA_BAKE, "build", "--progress", "plain", "--push", "--cache", cache, *args]


@contextmanager
def bench(sizes: Sizes) -> Iterator[tuple[Bench, list[str]]]:
    work = state_dir("lb-fanout-")
    env = tools_env()
    server = WeightsServer()
    try:
        with registry(work) as address:
            root = work / "project"
            shutil.copytree(FIXTURE_TEMPLATES, root / "templates")
            (root / "src" / "llama.cpp").mkdir(parents=True)
            (root / "src" / "llama.cpp" / "VERSION").write_text("benchmark source\n")
            stand_in = _stand_in(work, env)
            catalog = root / "catalog"
            (catalog / "bases").mkdir(parents=True)
            (catalog / "models").mkdir()
            project = {"registry": f"{address}/bench", "image_overrides": {"ubuntu:24.04": stand_in}}
            (catalog / "project.yaml").write_text(yaml.safe_dump(project))
            base = {"backend": "cpu", "llama_cpp": {"path": "src/llama.cpp", "ref": "b1"}}
            (catalog / "bases" / "base.yaml").write_text(yaml.safe_dump(base))
            models = [f"m{i}" for i in range(1, sizes.models + 1)]
            for name in models:
                url, sha = server.add(f"{name}.gguf", sizes.weights_mb << 20)
                model = {"weights": {"url": url, "sha256": sha}, "server": {"env": {"FIXTURE_DOWNLOAD": "1"}}}
                (catalog / "models" / f"{name}.yaml").write_text(yaml.safe_dump(model))
            subprocess.run([*LLAMA_BAKE, "generate"], cwd=root, env=env, capture_output=True, check=True)
            yield Bench(root, env, address), models
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)


def _stand_in(work: Path, env: dict[str, str]) -> str:
    """The busybox stand-in for ubuntu, made on a builder of its own."""
    state = state_dir("lb-fan-")
    job_env = {**env, "LLAMA_BAKE_STATE_DIR": str(state), "LLAMA_BAKE_BUILDER": f"lb-fan-{state.name}"}
    try:
        subprocess.run([*LLAMA_BAKE, "builder", "up"], env=job_env, capture_output=True, check=True)
        (work / "stand-in").mkdir()
        return busybox_layout(job_env["LLAMA_BAKE_BUILDER"], work / "stand-in")
    finally:
        subprocess.run([*LLAMA_BAKE, "builder", "down"], env=job_env, capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)


def measure(sizes: Sizes) -> dict[str, list[Job]]:
    with bench(sizes) as (proj, models):
        results: dict[str, list[Job]] = {}
        print("one job", file=sys.stderr)
        results["one job"] = [proj.job("one job", proj.build("one", "--summary-json", "one.json"))]
        print("fan-out", file=sys.stderr)
        fan = [proj.job("base", proj.build("fan", "base", "--summary-json", "base.json"))]
        for name in models:
            argv = proj.build("fan", name, "--bases-from", "base.json", "--summary-json", f"{name}.json")
            fan.append(proj.job(name, argv))
        results["fan-out"] = fan
        print("plain bake matrix", file=sys.stderr)
        bake = ["docker", "buildx", "bake", "--builder", "{builder}", "--progress", "plain", "-f", "docker-bake.hcl"]
        results["bake matrix"] = [proj.job(name, [*bake, name]) for name in models]
        return results


def report(sizes: Sizes, results: dict[str, list[Job]]) -> str:
    one = results["one job"][0].disk
    fan = results["fan-out"]
    peak = max(job.disk for job in fan)
    mb = 1e6
    weights = sizes.models * (sizes.weights_mb << 20)
    return "\n".join(
        [
            SECTION,
            "",
            f"Run {dt.date.today().isoformat()} with `python bench/fanout.py`: {sizes.models} models of "
            f"{sizes.weights_mb} MiB of random weights each on one CPU fixture base, every job on an empty builder "
            "of its own, pushed to a registry on 127.0.0.1 (bench/fanout.py says how).",
            "",
            "| | jobs | largest job's builder disk | vs one job | jobs that ran the base's compile |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| one job (`llama-bake build --push`) | 1 | {one / mb:.0f} MB | 1.00x | "
            f"{sum(j.compiled for j in results['one job'])} |",
            f"| fan-out (a base job, then a job per model with `--bases-from`) | {len(fan)} | {peak / mb:.0f} MB | "
            f"{peak / one:.2f}x | {sum(j.compiled for j in fan)} |",
            f"| per-target matrix of plain `docker buildx bake MODEL` | {len(results['bake matrix'])} | "
            f"{max(j.disk for j in results['bake matrix']) / mb:.0f} MB | "
            f"{max(j.disk for j in results['bake matrix']) / one:.2f}x | "
            f"{sum(j.compiled for j in results['bake matrix'])} |",
            "",
            f"The one job's builder holds {one / weights:.1f}x the weights it bakes ({one / mb:.0f} MB for "
            f"{weights / mb:.0f} MB of weights and the fixture base): each model's download, its layer and its "
            "pushed blob. A fan-out model job holds one model's three copies and the base it pulls. The plain "
            "matrix pushes nothing (no blob in the content store: two copies per model), and every job of it "
            "compiles the base again (docker/bake-action#435).",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one tiny model, nothing written")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    results = measure(sizes)
    text = report(sizes, results)
    if args.smoke:
        print(text)
        return 0
    existing = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    args.output.write_text(ccache.replace_section(existing, text, SECTION), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
