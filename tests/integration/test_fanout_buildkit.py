"""The build split over builders, against real buildkitds and a registry on 127.0.0.1: a base job pushes the base,
a model job on a fresh builder builds on that exact image (no base step, only its own weights), a disk budget
refuses before any step, and a builder killed mid-build is reported as such."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from llama_bake.buildx import daemon
from llama_bake.buildx.options import CachePreset
from llama_bake.buildx.pinned import pinned_bases
from llama_bake.buildx.summary import CONNECTION_LOST
from llama_bake.cli import main
from tests.conftest import WeightsServer, write_yaml
from tests.integration import test_build_buildkit as build_tests
from tests.integration.test_build_buildkit import Project, _slow_model, _waits_until

pytestmark = pytest.mark.buildkit

# The build tests' fixtures: the fixture project, and a builder of the test's own.
project = build_tests.project
fresh_builder = build_tests.fresh_builder


def sized_model(project: Project, server: WeightsServer, name: str) -> None:
    """A model whose weights the build downloads from ``server``, with their size recorded (a planned disk)."""
    url, sha = server.add(f"{name}.gguf")
    weights = {"url": url, "sha256": sha, "size": len(server.files[f"{name}.gguf"])}
    write_yaml(
        project.catalog / "models" / f"{name}.yaml",
        {"weights": weights, "server": {"env": {"FIXTURE_DOWNLOAD": "1"}}},
    )


def base_job(project: Project, builder: str, registry: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """`llama-bake build base --push` with its cache, as a CI base job runs it: the summary file it writes."""
    out = tmp_path / "base-summary.json"
    argv = ["build", "base", "--catalog", str(project.catalog), "--builder", builder, "--push"]
    argv += ["--cache", f"registry={registry}/{tmp_path.name}-cache", "--var", f"REGISTRY={registry}/{tmp_path.name}"]
    argv += ["--progress", "rawjson", "--summary-json", str(out)]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output[-3000:]
    return out, [line for line in result.output.splitlines() if "fixture-compile" in line]


def test_a_model_job_on_a_fresh_builder_builds_on_the_base_jobs_image_with_no_base_step_and_only_its_weights(
    project: Project,
    embedded_builder: str,
    registry: str,
    fresh_builder: str,
    weights_server: WeightsServer,
    tmp_path: Path,
) -> None:
    for name in ("w1", "w2"):
        sized_model(project, weights_server, name)
    base_summary, compile_lines = base_job(project, embedded_builder, registry, tmp_path)
    assert compile_lines, "the base job compiled"
    assert dict(weights_server.gets) == {}, "a base job downloads no weights"
    [base] = json.loads(base_summary.read_text())["targets"]
    assert base["name"] == "base"
    assert json.loads(base_summary.read_text())["pushed"] is True
    # The model job: another builder, empty, sharing only the registry (and the cache, empty for this model).
    summary, progress = project.build(
        targets=("w1",),
        push=True,
        cache=CachePreset("registry", f"{registry}/{tmp_path.name}-cache"),
        variables=(f"REGISTRY={registry}/{tmp_path.name}",),
        base_images=pinned_bases([], [base_summary]),
    )
    assert summary.builder == fresh_builder
    assert dict(weights_server.gets) == {"w1.gguf": 1}, "only its own weights"
    steps = [vertex.name for vertex in progress.vertices.values()]
    assert [step for step in steps if "fixture-model w1" in step], "the model's own steps ran"
    assert not [step for step in steps if "fixture-compile" in step], "no step of the base, not even from a cache"
    assert [(t.name, t.status, t.base_digest) for t in summary.targets] == [("w1", "built", base["digest"])]
    assert summary.targets[0].steps_executed > 0
    labels = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/{tmp_path.name}/w1:latest"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["Labels"]
    assert labels["io.llama-bake.llama-cpp.ref"] == "b1", "FROM the base the base job pushed"


def test_a_disk_budget_below_the_plan_stops_the_build_before_any_step(
    project: Project,
    embedded_builder: str,
    registry: str,
    fresh_builder: str,
    weights_server: WeightsServer,
    tmp_path: Path,
) -> None:
    sized_model(project, weights_server, "w1")
    base_summary, _ = base_job(project, embedded_builder, registry, tmp_path)
    argv = ["build", "w1", "--catalog", str(project.catalog), "--bases-from", str(base_summary)]
    argv += ["--var", f"REGISTRY={registry}/{tmp_path.name}", "--push", "--progress", "rawjson", "--disk-budget", "1MB"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 11, result.output[-3000:]
    assert "over the 1.0 MB it has (--disk-budget); nothing was built" in result.output
    assert "w1    3.1 MB built" in result.output
    assert "base  6.0 GB base image pulled" in result.output
    assert '"vertexes"' not in result.output, "no step reached the builder"
    assert dict(weights_server.gets) == {}


def test_a_builder_killed_mid_build_is_reported_as_lost_naming_what_finished(
    project: Project, fresh_builder: str
) -> None:
    """kill -9 of buildkitd while m3's long step runs, once m1 has finished: not "failed before any step ran",
    but the lost builder (with buildx's own words for it), the targets that had finished and the steps that ran."""
    long_step = _slow_model(project, "m3")
    command = [sys.executable, "-m", "llama_bake", "build", "--catalog", str(project.catalog), "--progress", "rawjson"]
    process = subprocess.Popen([*command, "m1", "m3"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = _lines_of(process)
    try:
        # m1 and m3 build side by side, m1 exporting its image while m3's long step may already run: kill only
        # once the stream shows m1's last vertex done (buildx resolves the provenance for the metadata file
        # after the export) and m3's long step started, in whichever order they come.
        awaited = {"[m1] resolving provenance for metadata file": "completed", "a long step for m3": "started"}
        seen: list[str] = []
        deadline = time.monotonic() + 180
        while awaited and (line := lines.get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            seen.append(line)
            for vertex in _vertices(line):
                for text, stamp in list(awaited.items()):
                    if text in str(vertex.get("name", "")) and vertex.get(stamp) and not vertex.get("error"):
                        del awaited[text]
        assert not awaited, f"the build ended before {', '.join(awaited)}:\n" + "".join(seen[-20:])
        assert _waits_until(long_step, running=True, timeout=60), "the long step runs in the builder"
        _kill_builder()
        process.wait(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    err = "".join(iter(lambda: lines.get(timeout=30), None))  # the rest, llama-bake's report last
    assert process.returncode == 6, err
    assert "failed before any step ran" not in err
    assert "lost the connection to the builder during the build" in err
    # buildx's own error, quoted: its wording for the lost connection depends on the moment of the kill.
    quoted = [line.lower() for line in err.splitlines() if line.startswith("  ERROR: ")]
    assert [line for line in quoted if any(sign in line for sign in CONNECTION_LOST)], err
    assert "finished: base, m1\n" in err
    assert "not finished: m3" in err


def _lines_of(process: subprocess.Popen[str]) -> queue.Queue[str | None]:
    """The process's stderr, line by line, read on a thread (so that waiting for a line can time out); None
    at its end."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stderr is not None
        with process.stderr:
            for line in process.stderr:
                lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _vertices(line: str) -> list[dict[str, object]]:
    """The vertices of one line of the rawjson stream (the other lines are llama-bake's or buildx's words)."""
    return list(json.loads(line).get("vertexes") or ()) if line.startswith("{") else []


def _kill_builder() -> None:
    """kill -9 of the fresh builder's buildkitd, then of the steps it ran (orphans otherwise), and unmount what
    they left: what `builder down` does to a daemon that does not stop."""
    root = Path(os.environ["LLAMA_BAKE_STATE_DIR"]) / "buildkitd"
    pid = daemon.Daemon(root).pid()
    assert pid is not None
    steps = daemon._descendants(pid)
    os.kill(pid, signal.SIGKILL)
    for child in steps:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    daemon.unmount_below(root)
