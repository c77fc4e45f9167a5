"""A llama.cpp update with and without the compiler cache, on the real CPU template.

    python bench/ccache.py                 # about 45 minutes on 2 busy cores; writes its section of bench/RESULTS.md
    python bench/ccache.py --work DIR      # keep caches and results in DIR: a second run resumes where it stopped
    python bench/ccache.py --smoke         # a small CMake tree instead of llama.cpp, nothing written

Two llama.cpp trees that differ as real releases do: the ones vendored by two nearby llama-cpp-python sdists from
PyPI. Each build on an emptied builder (``docker buildx prune --all``), with ``--cache local=A``:

1. ``cold``: the older tree, nothing imported; its build cache and compiler cache are exported to A;
2. ``one-file``: the older tree with one source file changed (one merged pull request, as a llama.cpp release
   is), A imported;
3. ``release``: the newer tree, A imported (the sdists are weeks of llama.cpp commits apart, and ggml.h, which
   nearly every file includes, changes in between).

The figures are (2) / (1) and (3) / (1), each the wall time of the whole ``llama-bake build`` (generate, build,
compiler cache export). The cold build also downloads the apt packages the later ones import with the build cache.
"""

from __future__ import annotations

import argparse
import datetime as dt
import filecmp
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from common import builder_env

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.standins import LLAMA_CPP_PYTHON, debian_layout, llama_cpp_tree  # noqa: E402

OLDER = "llama-cpp-python==0.3.35"
NEWER = LLAMA_CPP_PYTHON
LLAMA_BAKE = [sys.executable, "-m", "llama_bake"]
BASE = "llama-cpu"
SECTION = "## A llama.cpp update with the compiler cache"
# The one-file change of step 4: a new function in one of llama.cpp's own translation units.
EDITED = "src/llama-chat.cpp"
EDIT = "\nint llama_bake_bench_edit(int x);\nint llama_bake_bench_edit(int x) { return x + 1; }\n"


@dataclass
class Run:
    seconds: float
    base_seconds: float
    hits: int | None
    misses: int | None

    @property
    def rate(self) -> str:
        if self.hits is None or self.misses is None:
            return "-"
        return f"{self.hits / max(1, self.hits + self.misses):.0%} ({self.hits} of {self.hits + self.misses})"


@dataclass
class Bench:
    root: Path
    builder: str
    env: dict[str, str]

    def run(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            msg = f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
            raise RuntimeError(msg)
        return done

    def base(self, tree: Path, ref: str, cmake_options: dict[str, str]) -> None:
        data = {
            "backend": "cpu",
            "llama_cpp": {"path": str(tree), "ref": ref},
            "build_jobs": 2,
            "cmake_options": cmake_options,
        }
        (self.root / "catalog" / "bases" / f"{BASE}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")

    def build(self, cache: Path) -> Run:
        """An emptied builder, then ``llama-bake build BASE --cache local=CACHE``."""
        self.run(["docker", "buildx", "prune", "--all", "--force", "--builder", self.builder])
        summary = self.root / "summary.json"
        start = time.perf_counter()
        self.run([*LLAMA_BAKE, "build", BASE, "--cache", f"local={cache}", "--summary-json", str(summary)])
        seconds = time.perf_counter() - start
        row = next(t for t in json.loads(summary.read_text())["targets"] if t["name"] == BASE)
        run = Run(seconds, row["wall_seconds"], row["ccache_hits"], row["ccache_misses"])
        print(f"  {seconds:.1f}s, base {run.base_seconds:.1f}s, ccache {run.rate}", file=sys.stderr)
        return run


@contextmanager
def bench(work: Path | None, builder: str | None) -> Iterator[Bench]:
    """A builder (a private one from ``llama-bake builder up``, stopped at the end, unless one is named) and a
    project on the Debian stand-in, in ``work`` (kept) or a temporary directory."""
    state, name, env = builder_env("ccache", builder)
    root = work or state / "project"
    (root / "catalog" / "bases").mkdir(parents=True, exist_ok=True)
    (root / "catalog" / "models").mkdir(exist_ok=True)
    project = {"image_overrides": {"ubuntu:24.04": f"oci-layout://{debian_layout()}:latest"}}
    (root / "catalog" / "project.yaml").write_text(yaml.safe_dump(project), encoding="utf-8")
    proj = Bench(root, name, env)
    try:
        if builder is None:
            proj.run([*LLAMA_BAKE, "builder", "up"])
        yield proj
    finally:
        if builder is None:
            subprocess.run([*LLAMA_BAKE, "builder", "down"], env=env, capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)


def changed_sources(older: Path, newer: Path) -> tuple[int, int]:
    """(C/C++/CUDA files that differ or are new in ``newer``, all of them in ``newer``)."""
    suffixes = {".c", ".cc", ".cpp", ".h", ".hpp", ".cu", ".cuh"}
    files = [p.relative_to(newer) for p in newer.rglob("*") if p.is_file() and p.suffix in suffixes]
    changed = sum(1 for f in files if not (older / f).is_file() or not filecmp.cmp(older / f, newer / f, shallow=False))
    return changed, len(files)


def smoke_trees(root: Path) -> tuple[Path, Path]:
    from tests.integration.test_ccache_buildkit import write_tree

    write_tree(root / "older")
    write_tree(root / "newer", {3: "return 33;"})
    (root / "older" / "src").mkdir()
    (root / "older" / "src" / "llama-chat.cpp").write_text("// not compiled in the smoke run\n")
    return root / "older", root / "newer"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a small CMake tree, nothing written")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--work", type=Path, help="keep caches and results here; a second run resumes")
    parser.add_argument("--builder", help="an existing builder to use (default: a private one, started and stopped)")
    parser.add_argument("--report-only", action="store_true", help="write what --work holds; build nothing")
    args = parser.parse_args()
    if args.report_only:
        return report(args, json.loads((args.work / "results.json").read_text()), (OLDER, NEWER), None, "")
    # One CPU variant, as in the slow tests: the real template's compile, minutes instead of most of an hour.
    options = {"GGML_CPU_ALL_VARIANTS": "OFF", "GGML_BACKEND_DL": "OFF"}
    with bench(args.work, args.builder) as proj:
        if args.smoke:
            older, newer = smoke_trees(proj.root / "trees")
            names = ("older", "newer")
        else:
            older, newer = llama_cpp_tree(OLDER), llama_cpp_tree(NEWER)
            names = (OLDER, NEWER)
        changed, total = changed_sources(older, newer)
        cache = proj.root / "cache-a"
        results_file = proj.root / "results.json"
        results = json.loads(results_file.read_text()) if results_file.exists() else {}
        edited = proj.root / "edited"
        if not edited.exists():
            shutil.copytree(older, edited, symlinks=True)
            unit = edited / EDITED
            unit.write_text(unit.read_text(encoding="utf-8") + EDIT, encoding="utf-8")
        steps = (("cold", older, "older"), ("one-file", edited, "older-edited"), ("release", newer, "newer"))
        for index, (step, tree, ref) in enumerate(steps, 1):
            if step in results:
                print(f"{index}/3 {step}: kept from an earlier run", file=sys.stderr)
                continue
            print(f"{index}/3 {step}", file=sys.stderr)
            proj.base(tree, ref, options)
            results[step] = asdict(proj.build(cache))
            results_file.write_text(json.dumps(results, indent=2))
        versions = proj.run(["docker", "buildx", "version"]).stdout.strip()
    return report(args, results, names, (changed, total), versions)


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, float]],
    names: tuple[str, str],
    files: tuple[int, int] | None,
    versions: str,
) -> int:
    """The section of RESULTS.md from the results at hand (a step not run yet is said to be so)."""
    if files is None:
        files = changed_sources(llama_cpp_tree(OLDER), llama_cpp_tree(NEWER))
    if not versions:
        versions = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True).stdout.strip()
    changed, total = files
    cold = Run(**results["cold"])  # type: ignore[arg-type]

    def row(step: str, label: str) -> str:
        if step not in results:
            return f"| {label} | not run (stopped at the deadline) | - | - |"
        run = Run(**results[step])  # type: ignore[arg-type]
        return f"| {label} | {run.seconds:.1f} | {run.seconds / cold.seconds:.2f}x | {run.rate} |"

    lines = [
        SECTION,
        "",
        f"Run {dt.date.today().isoformat()} with `python bench/ccache.py` ({versions}; 2 CPUs shared with other "
        "builds, `build_jobs: 2`).",
        f"The real CPU template (`GGML_CPU_ALL_VARIANTS=OFF`, `GGML_BACKEND_DL=OFF`) on the Debian stand-in; the "
        f"llama.cpp trees vendored by `{names[0]}` and `{names[1]}` from PyPI ({changed} of {total} C/C++ files of "
        f"the newer differ or are new). Each build on an emptied builder (`docker buildx prune --all`), timed whole "
        "(generate, build, compiler cache export); the cold one also downloads the apt packages that the later ones "
        "import with the build cache.",
        "",
        "| build | wall (s) | vs cold | ccache hits |",
        "| --- | ---: | ---: | ---: |",
        f"| {names[0]}, cold (fills the cache) | {cold.seconds:.1f} | 1.00x | {cold.rate} |",
        row("one-file", f"{names[0]} with `{EDITED}` changed (one merged pull request)"),
        row("release", f"{names[1]} (weeks of llama.cpp commits later)"),
        "",
        "A one-file update, the common one, recompiles one translation unit. The last row builds another tree (its "
        "own number of translation units) while other builds share the machine, so its time against the cold one "
        "says little; its hit rate says what the cache gives across these two sdists: nearly nothing, since "
        "ggml.h, which nearly every file includes, changed between them.",
        "",
    ]
    text = "\n".join(lines)
    if args.smoke:
        print(text)
        return 0
    existing = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    args.output.write_text(replace_section(existing, text), encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def section(text: str, heading: str = SECTION) -> str:
    """A benchmark's section of RESULTS.md ('' when absent), this one's by default: ``run.py`` keeps the sections
    measured on their own when it rewrites the file."""
    start = text.find(heading)
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(heading))
    return text[start : end + 1 if end >= 0 else len(text)]


def replace_section(text: str, new: str, heading: str = SECTION) -> str:
    old = section(text, heading)
    if old:
        return text.replace(old, new)
    return text.rstrip("\n") + "\n\n" + new


if __name__ == "__main__":
    sys.exit(main())
