"""llama-bake's benchmarks: one command, figures as ratios against baselines measured in the same run.

    python bench/run.py            # full sizes; writes bench/RESULTS.md (about 5 minutes on 2 cores)
    python bench/run.py --smoke    # tiny sizes, nothing written: keeps this code from rotting (run in CI)

Measured here: generation scaling on synthetic catalogs and start-up cost, each against a bare
``python -c pass``; then, on a real BuildKit (bench/builds.py), the graph against sequential builds, the
overhead over raw bake and a cache import against a cold build; and (bench/weights.py) what a model's weights
cost by layer compression (push, pull, builder disk) against one copy of them on the same disk. Absolute times
are printed for context only; the ratios are the figures. bench/ccache.py, bench/cuda_runtime.py and
bench/fanout.py (the CI fan-out: builder disk per job, compiles per run) write their own sections; the smoke run
runs fanout's at tiny sizes too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import builds
import ccache
import cuda_runtime
import fanout
import weights as weight_costs
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.statedirs import remove_stale  # noqa: E402

LLAMA_BAKE = [sys.executable, "-m", "llama_bake"]


NO_COMPILE_CACHE = {**os.environ, "LLAMA_BAKE_COMPILE_CACHE": "0"}


def timed(cmd: list[str], cwd: Path, repeat: int, env: dict[str, str] | None = None) -> float:
    """Median wall time of ``cmd`` over ``repeat`` runs (after one warm-up run)."""
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env=env)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env=env)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def synthetic_catalog(root: Path, models: int) -> Path:
    """One cuda base and ``models`` models on it, of three shapes (plain, vision, gated)."""
    catalog = root / "catalog"
    (catalog / "bases").mkdir(parents=True)
    (catalog / "models").mkdir()
    base = {
        "llama_cpp": {"git": "https://github.com/ggml-org/llama.cpp.git", "ref": "b6500"},
        "cuda": "12.8.1",
        "gpu_families": ["ada", "blackwell-consumer"],
    }
    (catalog / "bases" / "llama-cpp-cuda.yaml").write_text(yaml.safe_dump(base))
    for i in range(models):
        weights = {
            "hf": f"org/model-{i}-GGUF",
            "file": f"model-{i}-Q4_K_M.gguf",
            "revision": f"{i:040x}",
            "sha256": f"{i:064x}",
            "gated": i % 3 == 2,
        }
        model: dict[str, object] = {"weights": weights, "server": {"ctx_size": 4096 + i, "n_gpu_layers": 999}}
        if i % 3 == 1:
            model["mmproj"] = {**weights, "file": f"mmproj-{i}.gguf", "gated": False}
        (catalog / "models" / f"model-{i:05d}.yaml").write_text(yaml.safe_dump(model))
    return catalog


def generation(sizes: list[int], repeat: int, baseline: float) -> list[str]:
    rows = [
        "| models | wall (s) | vs `python -c pass` | average per model (ms) | marginal per model (ms) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    previous: tuple[int, float] | None = None
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            synthetic_catalog(Path(tmp), size)
            # Every run compiles: the compile cache, which answers an unchanged catalog, is off.
            wall = timed([*LLAMA_BAKE, "generate"], Path(tmp), repeat, NO_COMPILE_CACHE)
        average = (wall - baseline) / size * 1000
        # What one more model costs, from the previous size: flat when generation is linear.
        marginal = f"{(wall - previous[1]) / (size - previous[0]) * 1000:.3f}" if previous else "-"
        rows.append(f"| {size:,} | {wall:.3f} | {wall / baseline:.1f}x | {average:.3f} | {marginal} |")
        previous = (size, wall)
        print(f"generate {size} models: {wall:.3f}s", file=sys.stderr)
    return rows


def startup(repeat: int, baseline: float) -> list[str]:
    rows = ["| command | wall (s) | vs `python -c pass` | over the baseline (ms) |", "| --- | ---: | ---: | ---: |"]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(REPO / "catalog", Path(tmp) / "catalog")
        commands = (
            ("llama-bake --help", ["--help"], None),
            ("llama-bake generate (shipped catalog, compiled)", ["generate"], NO_COMPILE_CACHE),
            ("llama-bake generate (shipped catalog, unchanged: from the compile cache)", ["generate"], None),
        )
        for label, args, env in commands:
            wall = timed([*LLAMA_BAKE, *args], Path(tmp), repeat, env)
            rows.append(f"| `{label}` | {wall:.3f} | {wall / baseline:.2f}x | {(wall - baseline) * 1000:.0f} |")
            print(f"{label}: {wall:.3f}s", file=sys.stderr)
    return rows


def machine() -> str:
    def field(path: str, key: str) -> str:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError:
            return "?"
        return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(key)), "?")

    memory = field("/proc/meminfo", "MemTotal")
    memory = f"{int(memory.split()[0]) / 1024**2:.0f} GB RAM" if memory != "?" else "? RAM"
    return (
        f"{field('/proc/cpuinfo', 'model name')} ({os.cpu_count()} CPUs, {platform.machine()}), {memory}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat, write nothing")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-builds", action="store_true", help="skip the BuildKit benchmarks")
    args = parser.parse_args()
    remove_stale()  # what killed runs left under /tmp (tests/statedirs.py)
    sizes = [10, 50] if args.smoke else [10, 100, 1000, 5000]
    repeat = 1 if args.smoke else 5
    baseline = timed([sys.executable, "-c", "pass"], REPO, repeat)
    print(f"baseline python -c pass: {baseline:.3f}s", file=sys.stderr)
    lines = [
        "# llama-bake benchmarks",
        "",
        f"Run {dt.date.today().isoformat()} with `python bench/run.py` on {machine()}.",
        f"Generation and start-up figures are medians of {repeat} runs after a warm-up against `python -c pass` "
        f"({baseline * 1000:.0f} ms here), measured in the same run.",
        "",
        "## Generation scaling (synthetic catalogs, including interpreter start; compile cache off)",
        "",
        *generation(sizes, repeat, baseline),
        "",
        "## Start-up",
        "",
        "What a command costs over starting Python: for `--help` that is imports alone (click and the CLI; the",
        "pipeline's pydantic, Jinja, YAML and python-on-whales load on first use), for `generate` the imports",
        "the pipeline needs plus the work; an unchanged catalog is answered by the compile cache, which loads",
        "neither pydantic's catalog models nor Jinja.",
        "",
        *startup(repeat, baseline),
        "",
    ]
    if not args.no_builds:
        lines += builds.run(builds.SMOKE if args.smoke else builds.FULL, overhead_repeat=1 if args.smoke else 7)
        lines += weight_costs.run(weight_costs.SMOKE if args.smoke else weight_costs.FULL)
        if args.smoke:
            lines += ["", fanout.report(fanout.SMOKE, fanout.measure(fanout.SMOKE))]
    text = "\n".join(lines)
    if args.smoke:
        print(text)
    else:
        # bench/ccache.py's, bench/cuda_runtime.py's and bench/fanout.py's sections are measured on their own
        # (minutes to most of an hour, some on the slow tiers' caches): kept as they were.
        old = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        headings = (ccache.SECTION, cuda_runtime.SECTION, fanout.SECTION)
        kept = "".join(ccache.section(old, heading) for heading in headings)
        args.output.write_text(text + ("\n" + kept if kept else ""), encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
