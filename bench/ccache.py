"""A llama.cpp update with and without the compiler cache, on the real CPU template.

    python bench/ccache.py           # about 25 minutes on 2 cores; writes its section of bench/RESULTS.md
    python bench/ccache.py --smoke   # a small CMake tree instead of llama.cpp, nothing written

Two llama.cpp trees that differ as real releases do: the ones vendored by two nearby llama-cpp-python sdists from
PyPI. On a builder of its own, each build on an emptied builder (``docker buildx prune --all``):

1. the older tree, with ``--cache local=A``: its build cache and its compiler cache are exported to A;
2. the newer tree, cold: ``--cache local=B``, where B is A without the compiler cache (the same build cache is
   imported, so both runs skip the same apt steps and differ only in the compiler cache);
3. the newer tree with ``--cache local=A``: the older tree's compiler cache is imported;
4. the newer tree with one source file changed (as one merged pull request is), ``--cache local=A``.

Two sdists are weeks of llama.cpp commits apart (ggml.h, which nearly every file includes, changes in between);
a llama.cpp release is one merged pull request, so (4) is the common update. The figures are (3) / (2) and
(4) / (2), each the wall time of the whole ``llama-bake build`` (the export included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.standins import LLAMA_CPP_PYTHON, debian_layout, llama_cpp_tree  # noqa: E402

OLDER = "llama-cpp-python==0.3.35"
NEWER = LLAMA_CPP_PYTHON
LLAMA_BAKE = [sys.executable, "-m", "llama_bake"]
BASE = "llama-cpu"
SECTION = "## A llama.cpp update with the compiler cache"
# The one-file change of step 4: a new function in one of llama.cpp's own translation units.
EDITED = "src/llama-sampling.cpp"
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
def bench() -> Iterator[Bench]:
    """A private builder (``llama-bake builder up``, stopped at the end) and a project on the Debian stand-in."""
    tools = Path(os.environ.get("LLAMA_BAKE_TOOLS", str(Path.home() / ".cache" / "llama-bake" / "tools")))
    state = Path(tempfile.mkdtemp(prefix="lb-ccache-", dir="/tmp"))  # short: unix socket paths are limited
    builder = f"llama-bake-ccache-{os.getpid()}"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{tools}:{os.environ['PATH']}",
        "LLAMA_BAKE_STATE_DIR": str(state),
        "LLAMA_BAKE_BUILDER": builder,
    }
    root = state / "project"
    (root / "catalog" / "bases").mkdir(parents=True)
    (root / "catalog" / "models").mkdir()
    project = {"image_overrides": {"ubuntu:24.04": f"oci-layout://{debian_layout()}:latest"}}
    (root / "catalog" / "project.yaml").write_text(yaml.safe_dump(project), encoding="utf-8")
    proj = Bench(root, builder, env)
    try:
        proj.run([*LLAMA_BAKE, "builder", "up"])
        yield proj
    finally:
        subprocess.run([*LLAMA_BAKE, "builder", "down"], env=env, capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)


def changed_sources(older: Path, newer: Path) -> tuple[int, int]:
    """(C/C++/CUDA files that differ or are new in ``newer``, all of them in ``newer``)."""
    suffixes = {".c", ".cc", ".cpp", ".h", ".hpp", ".cu", ".cuh"}
    files = [p.relative_to(newer) for p in newer.rglob("*") if p.is_file() and p.suffix in suffixes]
    changed = sum(1 for f in files if not (older / f).is_file() or not filecmp.cmp(older / f, newer / f, shallow=False))
    return changed, len(files)


def smoke_trees(root: Path) -> tuple[Path, Path]:
    from tests.test_ccache_buildkit import write_tree

    write_tree(root / "older")
    write_tree(root / "newer", {3: "return 33;"})
    (root / "newer" / "src").mkdir()
    (root / "newer" / "src" / "llama-sampling.cpp").write_text("// not compiled in the smoke run\n")
    return root / "older", root / "newer"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a small CMake tree, nothing written")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    # One CPU variant, as in the slow tests: the real template's compile, minutes instead of most of an hour.
    options = {"GGML_CPU_ALL_VARIANTS": "OFF", "GGML_BACKEND_DL": "OFF"}
    with bench() as proj:
        if args.smoke:
            older, newer = smoke_trees(proj.root / "trees")
            names = ("older", "newer")
        else:
            older, newer = llama_cpp_tree(OLDER), llama_cpp_tree(NEWER)
            names = (OLDER, NEWER)
        changed, total = changed_sources(older, newer)
        a, b = proj.root / "cache-a", proj.root / "cache-b"
        print(f"1/4 {names[0]}, exporting to A", file=sys.stderr)
        proj.base(older, "older", options)
        first = proj.build(a)
        shutil.copytree(a, b, ignore=shutil.ignore_patterns(f"{BASE}.ccache"))
        proj.base(newer, "newer", options)
        print(f"2/4 {names[1]}, cold compiler cache (B: A's build cache only)", file=sys.stderr)
        cold = proj.build(b)
        print(f"3/4 {names[1]}, with the compiler cache {names[0]} exported (A)", file=sys.stderr)
        warm = proj.build(a)
        edited = proj.root / "edited"
        shutil.copytree(newer, edited, symlinks=True)
        unit = edited / EDITED
        unit.write_text(unit.read_text(encoding="utf-8") + EDIT, encoding="utf-8")
        proj.base(edited, "newer-edited", options)
        print(f"4/4 {names[1]} with {EDITED} changed, with the compiler cache (A)", file=sys.stderr)
        one = proj.build(a)
        versions = proj.run(["docker", "buildx", "version"]).stdout.strip()
    ratio, one_ratio = warm.seconds / cold.seconds, one.seconds / cold.seconds
    lines = [
        SECTION,
        "",
        f"Run {dt.date.today().isoformat()} with `python bench/ccache.py` ({versions}; 2 CPUs, `build_jobs: 2`).",
        f"The real CPU template (`GGML_CPU_ALL_VARIANTS=OFF`, `GGML_BACKEND_DL=OFF`) on the Debian stand-in; "
        f"the llama.cpp trees vendored by `{names[0]}` and `{names[1]}` from PyPI: {changed} of {total} C/C++ "
        "files differ or are new. Each build on an emptied builder (`docker buildx prune --all`), timed whole "
        "(generate, build, compiler cache export).",
        "",
        "| build | wall (s) | base (s) | ccache hits |",
        "| --- | ---: | ---: | ---: |",
        f"| {names[0]}, cold (fills the cache) | {first.seconds:.1f} | {first.base_seconds:.1f} | {first.rate} |",
        f"| {names[1]}, cold compiler cache (same build cache imported) | {cold.seconds:.1f} | "
        f"{cold.base_seconds:.1f} | {cold.rate} |",
        f"| {names[1]}, {names[0]}'s compiler cache imported | {warm.seconds:.1f} | {warm.base_seconds:.1f} | "
        f"{warm.rate} |",
        f"| {names[1]} with `{EDITED}` changed, the cache imported | {one.seconds:.1f} | "
        f"{one.base_seconds:.1f} | {one.rate} |",
        "",
        f"The update from `{names[0]}` to `{names[1]}` with the compiler cache takes **{ratio:.2f}x** the cold "
        f"compile; a one-file update (one merged pull request, as a llama.cpp release is) **{one_ratio:.2f}x** "
        "(goal: at most 0.3x).",
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


def section(text: str) -> str:
    """This benchmark's section of RESULTS.md ('' when absent): ``run.py`` keeps it when it rewrites the file."""
    start = text.find(SECTION)
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end + 1 if end >= 0 else len(text)]


def replace_section(text: str, new: str) -> str:
    old = section(text)
    if old:
        return text.replace(old, new)
    return text.rstrip("\n") + "\n\n" + new


if __name__ == "__main__":
    sys.exit(main())
