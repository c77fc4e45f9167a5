"""`llama-bake build` against a real buildkitd and a real registry on 127.0.0.1.

The fixture catalog replaces nvidia/cuda by a busybox stand-in (an image override, rendered as a bake named
context) and uses cheap fixture templates from tests/fixtures/buildkit, so each build takes seconds while
the generator, the HCL, python-on-whales, buildx and BuildKit are all real.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from llama_bake.buildx import daemon as builders
from llama_bake.buildx.client import DockerRunner
from llama_bake.buildx.options import BuildOptions, CachePreset
from llama_bake.buildx.probe import builder_name
from llama_bake.buildx.progress import Progress, Vertex
from llama_bake.buildx.run import run_build
from llama_bake.buildx.summary import Summary
from llama_bake.cli import main
from llama_bake.errors import BuildError
from llama_bake.generated import generate_set
from llama_bake.project import Paths, compile_catalog, plan_catalog
from tests.conftest import FIXTURE_TEMPLATES, REPO, WeightsServer, executed, prune_builder, write_yaml
from tests.images import plain_tar
from tests.statedirs import state_dir

pytestmark = pytest.mark.buildkit

SHA = "c" * 64
DEVEL = "nvidia/cuda:12.8.1-devel-ubuntu24.04"
# What a cuda base's runtime stage starts from: the OS image (the slim CUDA runtime, the default).
RUNTIME = "ubuntu:24.04"


@dataclass
class Project:
    root: Path
    stand_in: str

    @property
    def catalog(self) -> Path:
        return self.root / "catalog"

    @property
    def paths(self) -> Paths:
        return Paths.from_options(self.catalog, None)

    def model(self, name: str, **extra: Any) -> None:
        data = {"weights": {"url": f"https://models.invalid/{name}.gguf", "sha256": SHA}, **extra}
        write_yaml(self.catalog / "models" / f"{name}.yaml", data)

    def base(self, ref: str = "b1") -> None:
        write_yaml(
            self.catalog / "bases" / "base.yaml",
            {"llama_cpp": {"path": "src/llama.cpp", "ref": ref}, "gpu_families": ["ada", "blackwell-consumer"]},
        )

    def build(self, **options: Any) -> tuple[Summary, Progress]:
        progress = Progress()

        def record(line: str, _: Progress, __: list[Vertex]) -> None:
            progress.feed(line)

        result = run_build(self.paths, BuildOptions(**options), DockerRunner(), on_line=record)
        return result, progress


@pytest.fixture
def project(tmp_path: Path, embedded_builder: str, stand_in_image: str) -> Project:
    shutil.copytree(FIXTURE_TEMPLATES, tmp_path / "templates")
    (tmp_path / "src" / "llama.cpp").mkdir(parents=True)
    (tmp_path / "src" / "llama.cpp" / "VERSION").write_text("fixture source\n")
    proj = Project(tmp_path, stand_in_image)
    write_yaml(
        proj.catalog / "project.yaml",
        {"tag_scheme": ["{tag}", "{ref}"], "image_overrides": {DEVEL: stand_in_image, RUNTIME: stand_in_image}},
    )
    proj.base()
    proj.model("m1")
    proj.model("m2")
    return proj


def step(progress: Progress, text: str) -> Vertex:
    [vertex] = [v for v in progress.vertices.values() if text in v.name]
    return vertex


def test_base_builds_once_before_its_models_which_build_in_parallel(project: Project) -> None:
    summary, progress = project.build(no_cache=True)
    compile_step = step(progress, "fixture-compile")
    m1 = step(progress, "fixture-model m1")
    m2 = step(progress, "fixture-model m2")
    assert compile_step.completed is not None
    assert m1.first_output is not None
    assert m2.first_output is not None
    # BuildKit stamps a step `started` while it prepares its mounts; its process runs after the base is done.
    assert compile_step.completed <= m1.first_output
    assert compile_step.completed <= m2.first_output
    assert m1.started is not None
    assert m2.started is not None
    assert m1.completed is not None
    assert m2.completed is not None
    # The two model steps overlap in time: BuildKit ran them in parallel.
    assert m1.started < m2.completed
    assert m2.started < m1.completed
    assert [t.name for t in summary.targets] == ["base", "m1", "m2"]
    assert all(t.status == "built" for t in summary.targets)


def test_a_second_build_executes_no_step(project: Project) -> None:
    project.build()
    summary, progress = project.build()
    assert executed(progress) == []
    assert summary.steps_executed == 0
    assert summary.steps_cached >= 4


def test_changing_one_model_reruns_only_that_models_steps(project: Project) -> None:
    project.build()
    project.model("m1", server={"ctx_size": 4096})
    _, progress = project.build()
    assert executed(progress) == ['RUN echo "fixture-model m1" && sleep 2 && echo "m1" > /model']
    assert not step(progress, "fixture-model m1").cached
    assert step(progress, "fixture-model m2").cached


def test_changing_the_llama_cpp_ref_reruns_the_base_and_every_model_on_it(project: Project) -> None:
    project.build()
    project.base(ref="b2")
    _, progress = project.build()
    for text in ("fixture-compile llama.cpp b2", "fixture-model m1", "fixture-model m2"):
        assert not step(progress, text).cached, text


IMPORT_RUNS = 3


def served_models(project: Project, server: WeightsServer, count: int = 3) -> list[str]:
    """``count`` models whose weights the image build downloads from ``server`` (as the real template does)."""
    names = [f"w{i}" for i in range(1, count + 1)]
    for name in names:
        url, sha = server.add(f"{name}.gguf")
        write_yaml(
            project.catalog / "models" / f"{name}.yaml",
            {"weights": {"url": url, "sha256": sha}, "server": {"env": {"FIXTURE_DOWNLOAD": "1"}}},
        )
    for old in ("m1", "m2"):
        (project.catalog / "models" / f"{old}.yaml").unlink()
    return names


@pytest.mark.parametrize("kind", ["local", "registry"])
def test_a_cache_import_into_an_empty_builder_downloads_nothing_and_runs_no_step(
    project: Project, embedded_builder: str, registry: str, weights_server: WeightsServer, tmp_path: Path, kind: str
) -> None:
    """The CI case: export the caches, then build again on a builder with nothing in it, several times. Every
    weights download is counted by the server; BuildKit must answer all of them from the imported cache."""
    models = served_models(project, weights_server)
    ref = str(tmp_path / "cache") if kind == "local" else f"{registry}/cache-{tmp_path.name}"
    # Pushed (registry) the models are pinned to the base in the registry; else to its OCI layout.
    options: dict[str, Any] = {"cache": CachePreset(kind, ref)}  # type: ignore[arg-type]
    if kind == "registry":
        options |= {"push": True, "variables": (f"REGISTRY={registry}/{tmp_path.name}",)}
    # Without a provenance attestation (it carries the build's times) an unchanged catalog gives the same
    # digests build after build.
    settings = yaml.safe_load((project.catalog / "project.yaml").read_text())
    write_yaml(project.catalog / "project.yaml", {**settings, "provenance": "off"})
    prune_builder(embedded_builder)
    cold, progress = project.build(**options)
    assert sorted(weights_server.gets.values()) == [1, 1, 1], "the cold build downloads each file once"
    assert cold.phases == 2
    base_digest = next(t.digest for t in cold.targets if t.name == "base")
    for run in range(IMPORT_RUNS):
        weights_server.gets.clear()
        prune_builder(embedded_builder)
        summary, progress = project.build(**options)
        assert dict(weights_server.gets) == {}, f"import run {run + 1} downloaded weights again"
        assert executed(progress) == [], f"import run {run + 1} ran steps"
        assert {t.name: t.status for t in summary.targets} == dict.fromkeys(["base", *models], "cached")
        assert {t.base_digest for t in summary.targets if t.name in models} == {base_digest}
        assert {t.name: t.digest for t in summary.targets} == {t.name: t.digest for t in cold.targets}


@pytest.mark.parametrize("rewrite", [True, False])
def test_a_cold_rebuild_on_an_empty_builder_gives_the_same_digests_with_rewrite_timestamps(
    project: Project, embedded_builder: str, registry: str, weights_server: WeightsServer, tmp_path: Path, rewrite: bool
) -> None:
    """With source_date_epoch and rewrite_timestamps, every step runs again from nothing (no cache) and every
    image comes out byte for byte the same: pushed under the same digests. Without rewrite_timestamps the
    files the steps write carry the build's time, and a cold rebuild gives new digests (why the option exists)."""
    models = served_models(project, weights_server, count=2)
    settings = yaml.safe_load((project.catalog / "project.yaml").read_text())
    epoch = {"source_date_epoch": 1700000000, "rewrite_timestamps": rewrite, "provenance": "off"}
    write_yaml(project.catalog / "project.yaml", {**settings, **epoch})
    variables = (f"REGISTRY={registry}/repro-{str(rewrite).lower()}",)
    options: dict[str, Any] = {"push": True, "variables": variables, "targets": ("base", *models)}
    digests = []
    for _ in range(2):
        prune_builder(embedded_builder)
        summary, progress = project.build(**options)
        assert {t.name: t.status for t in summary.targets} == dict.fromkeys(["base", *models], "built")
        assert any("fixture-compile" in name for name in executed(progress)), "the compile ran again"
        digests.append({t.name: t.digest for t in summary.targets})
        assert all(d.startswith("sha256:") for d in digests[-1].values()), digests
        time.sleep(1.1)  # the second build's file times differ from the first's
    if rewrite:
        assert digests[0] == digests[1]
        config = skopeo("inspect", "--config", f"docker://{registry}/repro-{str(rewrite).lower()}/w1:latest")
        assert config["created"].startswith("2023-11-14T22:13:20")
    else:
        assert digests[0]["base"] != digests[1]["base"]


def skopeo(*args: str) -> Any:
    out = subprocess.run(
        ["skopeo", *args[:1], "--tls-verify=false", *args[1:]], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_push_to_the_local_registry_with_tags_and_labels(project: Project, registry: str) -> None:
    summary, _ = project.build(push=True, variables=(f"REGISTRY={registry}/lb",))
    m1 = next(t for t in summary.targets if t.name == "m1")
    assert m1.image == f"{registry}/lb/m1:latest"
    assert m1.digest.startswith("sha256:")
    inspected = skopeo("inspect", f"docker://{registry}/lb/m1:latest")
    assert inspected["Digest"] == m1.digest
    labels = inspected["Labels"]
    assert labels["io.llama-bake.base"] == "base"
    assert labels["org.opencontainers.image.title"] == "m1"
    assert labels["io.llama-bake.model.sha256"] == SHA
    assert labels["io.llama-bake.llama-cpp.ref"] == "b1"  # inherited from the base image
    assert sorted(skopeo("list-tags", f"docker://{registry}/lb/m1")["Tags"]) == ["b1", "latest"]
    # The default provenance attestation rides in the index beside the image; the image itself is the same
    # manifest on every build of the same catalog, though the attestation's times change the index.
    first = _manifests(registry, "lb/m1:latest")
    assert sorted(first) == ["amd64", "unknown"]
    project.build(push=True, variables=(f"REGISTRY={registry}/lb",))
    assert _manifests(registry, "lb/m1:latest")["amd64"] == first["amd64"]
    config = skopeo("inspect", "--config", f"docker://{registry}/lb/m1:latest")["config"]
    assert "LLAMA_BAKE_MODEL=m1" in config["Env"]


def _manifests(registry: str, image: str) -> dict[str, str]:
    """An image index's manifests by architecture (``unknown``: an attestation)."""
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry}/{image}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {m["platform"]["architecture"]: m["digest"] for m in json.loads(raw)["manifests"]}


def _running(pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout
    return found.split()


def _slow_model(project: Project, name: str) -> str:
    """A model with a step that sleeps for minutes; returns a pgrep pattern for that step's process, which is
    this test's alone (the length is random)."""
    seconds = str(random.randrange(300, 900))
    project.model(name, server={"env": {"FIXTURE_SLOW": seconds}})
    return f"sleep {seconds}"


def _waits_until(pattern: str, running: bool, timeout: float) -> bool:
    """Whether a process matching ``pattern`` is running (or gone, for ``running=False``) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while bool(_running(pattern)) != running and time.monotonic() < deadline:
        time.sleep(0.2)
    return bool(_running(pattern)) == running


def test_builder_down_during_a_build_stops_the_running_steps_too(project: Project, fresh_builder: str) -> None:
    """buildkitd waits for running builds on SIGTERM; `builder down` then kills it with the steps it runs
    (PID 1 in their containers, deaf to SIGTERM), so no step outlives the daemon."""
    long_step = _slow_model(project, "m3")
    command = [sys.executable, "-m", "llama_bake", "build", "--catalog", str(project.catalog), "--progress", "quiet"]
    process = subprocess.Popen([*command, "m3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert _waits_until(long_step, running=True, timeout=60), "the long step runs in the builder"
    down = CliRunner().invoke(main, ["builder", "down"])
    assert down.exit_code == 0, down.output
    assert "killed buildkitd" in down.output
    assert not _running(long_step)
    state = os.environ["LLAMA_BAKE_STATE_DIR"]
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    assert [m for m in mounts if state in m] == [], "the killed steps' mounts are unmounted"
    _, err = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "m3" in err


def test_docker_compose_builds_each_model_and_its_base_service_on_the_builder(
    project: Project, registry: str, embedded_builder: str
) -> None:
    """The build half of `docker compose up --build` on the generated Compose file: Compose's own bake builds
    the models and the base they name as a `service:` context (a `scale: 0` service). With no Docker engine
    here to load into or start containers, the images are pushed and inspected instead."""
    project.model("m2", compose={"host_port": 8082})
    written = CliRunner().invoke(main, ["compose", "--catalog", str(project.catalog)])
    assert written.exit_code == 0, written.output  # compose.yaml, and the Dockerfiles its services build from
    built = subprocess.run(
        ["docker", "compose", "-f", "compose.yaml", "build", "--push"],
        cwd=project.root,
        env={**os.environ, "BUILDX_BUILDER": embedded_builder, "REGISTRY": f"{registry}/compose"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    for model in ("m1", "m2"):
        labels = skopeo("inspect", f"docker://{registry}/compose/{model}:latest")["Labels"]
        assert labels["org.opencontainers.image.title"] == model
        assert labels["io.llama-bake.llama-cpp.ref"] == "b1"  # the base's label: FROM the base Compose built
    base = skopeo("inspect", f"docker://{registry}/compose/base:latest")["Labels"]
    assert base["org.opencontainers.image.title"] == "base"


def test_a_failing_model_names_the_target_shows_its_log_and_reports_the_others(project: Project) -> None:
    project.model("m3", server={"env": {"FIXTURE_FAIL": "1"}})
    with pytest.raises(BuildError) as exc:
        project.build()
    message = str(exc.value)
    assert "target `m3` failed at step `RUN echo" in message
    assert "exit code: 3" in message
    assert "the weights for m3 are corrupt" in message
    assert "finished: " in message
    assert "m3" in message.split("not finished: ")[1]


def test_the_cli_exits_6_on_a_failed_build_and_still_writes_the_summary(project: Project, tmp_path: Path) -> None:
    project.model("m3", server={"env": {"FIXTURE_FAIL": "1"}})
    out = tmp_path / "summary.json"
    argv = ["build", "--catalog", str(project.catalog), "--progress", "quiet", "--summary-json", str(out), "m3"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 6
    assert "target `m3` failed" in result.output
    statuses = {t["name"]: t["status"] for t in json.loads(out.read_text())["targets"]}
    assert statuses == {"base": "built", "m3": "failed"} or statuses == {"base": "cached", "m3": "failed"}


@pytest.fixture
def fresh_builder(embedded_builder: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A second buildkitd with an empty cache, for this test only; `llama-bake` uses it by default."""
    state = state_dir("lb-fresh-")  # short: unix socket paths are limited
    monkeypatch.setenv("LLAMA_BAKE_STATE_DIR", str(state))
    monkeypatch.setenv("LLAMA_BAKE_BUILDER", f"llama-bake-fresh-{os.getpid()}")
    runner = DockerRunner()
    builders.up(runner)
    try:
        yield builder_name()
    finally:
        builders.down(runner)
        shutil.rmtree(state, ignore_errors=True)


def test_ctrl_c_stops_the_build_names_what_finished_and_leaves_the_builder_usable(
    project: Project, fresh_builder: str
) -> None:
    # Its own builder: after a cancelled build, BuildKit keeps some of its records in use, out of reach of the
    # prunes that later tests start with.
    long_step = _slow_model(project, "m3")
    project.build(targets=("m1",))
    command = [sys.executable, "-m", "llama_bake", "build", "--catalog", str(project.catalog), "--progress", "rawjson"]
    # Its own process group, as a shell gives a foreground job: Ctrl-C reaches llama-bake and buildx alike.
    process = subprocess.Popen(
        [*command, "m1", "m3"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stderr is not None
    seen = []
    for line in process.stderr:  # rawjson: the long step's vertex shows once BuildKit starts it
        seen.append(line)
        if "a long step" in line and '"started"' in line:
            break
    else:
        pytest.fail("the build ended before its long step started:\n" + "".join(seen[-20:]))
    assert _waits_until(long_step, running=True, timeout=20), "the long step runs in the builder"
    os.killpg(process.pid, signal.SIGINT)
    _, rest = process.communicate(timeout=60)  # the step would sleep for minutes: the build was stopped
    assert process.returncode == 130
    assert "interrupted; the builder cancels the running steps" in rest
    assert "Targets that had finished: base, m1\n" in rest + "\n"
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # llama-bake waited for buildx: nothing of the build is left on this side
    assert _waits_until(long_step, running=False, timeout=30), "the builder cancelled the long step"
    _, progress = project.build(targets=("m1",))
    assert executed(progress) == []


def test_summary_json_and_plain_progress_from_the_cli(project: Project, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    result = CliRunner().invoke(
        main, ["build", "--catalog", str(project.catalog), "--progress", "plain", "--summary-json", str(out), "m1"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [t["name"] for t in data["targets"]] == ["base", "m1"]
    assert {t["status"] for t in data["targets"]} <= {"built", "cached"}  # the session's builder may be warm
    assert "TARGET" in result.output
    # The bake file's image output ran (the image stays in the builder's store, compressed as the catalog says),
    # so buildx has no "No output specified" warning to give (its warnings' pass-through: tests/buildx/test_summary.py).
    assert next(t for t in data["targets"] if t["name"] == "m1")["digest"], data
    assert "No output specified" not in result.output


def test_plain_progress_streams_the_compile_output_and_the_bytes_pulled(project: Project, registry: str) -> None:
    """`--progress plain` prints each step's own output as it runs (the compile's log, live), and the size and
    rate of what BuildKit reports in bytes: here the stand-in base image read from its OCI layout, as a
    pull of nvidia/cuda would be. (BuildKit v0.32 reports no bytes for `ADD <url>` nor for pushes.)"""
    prune_builder(builder_name())
    result = CliRunner().invoke(
        main,
        ["build", "-c", str(project.catalog), "--progress", "plain", "--push", "--var", f"REGISTRY={registry}/plain"],
    )
    assert result.exit_code == 0, result.output
    # The base's compile is solved once, under the first target that reached it.
    assert re.search(r"^\[(base|m1|m2)\] \| fixture-compile llama\.cpp b1$", result.output, re.MULTILINE)
    moved = re.findall(r"^\[(?:base|m1|m2)\] transfers: ([0-9.]+ [kM]?B) / ([0-9.]+ [kM]?B)", result.output, re.M)
    assert moved, result.output
    assert moved[-1][0] == moved[-1][1], "the last line of a transfer is its end"


def test_image_override_from_the_command_line(project: Project) -> None:
    """The catalog's overrides removed: the CLI option alone makes the build work (the air-gapped path)."""
    write_yaml(project.catalog / "project.yaml", {})
    summary, _ = project.build(
        targets=("m1",), image_overrides=(f"{DEVEL}={project.stand_in}", f"{RUNTIME}={project.stand_in}")
    )
    assert [t.status in ("built", "cached") for t in summary.targets] == [True, True]


def test_dry_run_prints_the_builder_the_build_would_use(project: Project, embedded_builder: str) -> None:
    result = CliRunner().invoke(main, ["build", "--catalog", str(project.catalog), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"docker buildx bake --builder {embedded_builder} " in result.output


@pytest.fixture
def no_builder_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buildx: None) -> Iterator[Path]:
    """A docker config with buildx but no builder other than buildx's default (which needs a Docker engine)."""
    plugin = Path(shutil.which("docker-buildx") or Path.home() / ".docker" / "cli-plugins" / "docker-buildx")
    config = tmp_path / "docker-config"
    (config / "cli-plugins").mkdir(parents=True)
    (config / "cli-plugins" / "docker-buildx").symlink_to(plugin.resolve())
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    state = Path(
        subprocess.run(["mktemp", "-d", "/tmp/lb-nb-XXXX"], capture_output=True, text=True, check=True).stdout.strip()
    )
    monkeypatch.setenv("LLAMA_BAKE_STATE_DIR", str(state))
    monkeypatch.setenv("LLAMA_BAKE_BUILDER", "llama-bake-fresh")
    yield state
    shutil.rmtree(state, ignore_errors=True)


def test_build_with_a_docker_client_that_has_no_buildx_says_to_install_it(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real docker client with an empty plugin directory: it reads `--builder` as an unknown flag of its own."""
    (tmp_path / "no-plugins").mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-plugins"))
    result = CliRunner().invoke(main, ["build", "--catalog", str(project.catalog), "--progress", "quiet"])
    assert result.exit_code == 5
    assert "the docker client has no buildx plugin: install it" in result.output


def test_doctor_and_build_without_a_builder_say_how_to_get_one(
    project: Project, no_builder_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doctor = CliRunner().invoke(main, ["doctor"])
    assert doctor.exit_code == 5
    assert "FAIL builder" in doctor.output
    assert "llama-bake builder up" in doctor.output
    as_json = CliRunner().invoke(main, ["doctor", "--json"])
    assert as_json.exit_code == 5
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    failed = next(c for c in report["checks"] if not c["ok"])
    assert failed["name"] == "builder"
    assert "llama-bake builder up" in failed["fix"]
    argv = ["build", "--catalog", str(project.catalog), "--progress", "quiet"]
    build = CliRunner().invoke(main, [*argv, "--no-start-builder"])
    assert build.exit_code == 5
    assert "llama-bake builder up" in build.output
    # Without buildkitd anywhere, build cannot start one either: the same hint.
    monkeypatch.setenv("LLAMA_BAKE_TOOLS", str(no_builder_env / "no-tools"))
    kept = [p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "buildkitd").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(kept))
    assert shutil.which("buildkitd") is None
    build = CliRunner().invoke(main, argv)
    assert build.exit_code == 5
    assert "llama-bake builder up" in build.output


def test_build_with_no_builder_starts_the_embedded_one_and_says_so(project: Project, no_builder_env: Path) -> None:
    try:
        build = CliRunner().invoke(main, ["build", "--catalog", str(project.catalog), "--progress", "quiet", "m1"])
        assert build.exit_code == 0, build.output
        assert "no builder is reachable: starting the embedded one" in build.output
        assert "builder `llama-bake-fresh` is running" in build.output
        again = CliRunner().invoke(main, ["build", "--catalog", str(project.catalog), "--progress", "quiet", "m1"])
        assert again.exit_code == 0, again.output
        assert "starting the embedded one" not in again.output, "once started, it is used"
    finally:
        down = CliRunner().invoke(main, ["builder", "down"])
    assert down.exit_code == 0, down.output


def test_builder_up_from_nothing_then_build_then_down(project: Project, no_builder_env: Path) -> None:
    up = CliRunner().invoke(main, ["builder", "up"])
    try:
        assert up.exit_code == 0, up.output
        assert "builder `llama-bake-fresh` is running" in up.output
        doctor = CliRunner().invoke(main, ["doctor"])
        assert doctor.exit_code == 0, doctor.output
        build = CliRunner().invoke(main, ["build", "--catalog", str(project.catalog), "--progress", "quiet", "m1"])
        assert build.exit_code == 0, build.output
    finally:
        down = CliRunner().invoke(main, ["builder", "down"])
    assert down.exit_code == 0
    assert "stopped buildkitd" in down.output
    assert not (no_builder_env / "buildkitd" / "buildkitd.sock").exists()


def test_the_real_cuda_templates_pass_buildx_check(
    embedded_builder: str, two_platform_stand_in: str, tmp_path: Path
) -> None:
    """`docker buildx bake --call=check` on the real templates, every model shape, nvidia/cuda stood in for;
    with a GB10 base, the arm64 path too. buildx cannot check a target whose context is `target:`
    (\"unsupported context source target\"), so the models are checked with their base context set to the
    stand-in."""
    stand_in_image = two_platform_stand_in
    catalog = tmp_path / "catalog"
    shutil.copytree(REPO / "catalog", catalog)
    project = yaml.safe_load((catalog / "project.yaml").read_text(encoding="utf-8"))
    cuda_129 = ("nvidia/cuda:12.9.1-devel-ubuntu24.04", "nvidia/cuda:12.9.1-runtime-ubuntu24.04")
    project["image_overrides"] = dict.fromkeys((DEVEL, RUNTIME, *cuda_129, "ubuntu:24.04"), stand_in_image)
    project.pop("stack")  # the shipped stack pins CUDA 12.8; a GB10 needs 12.9
    (tmp_path / "split-src").mkdir()
    project["split_tool"] = {"path": "split-src", "ref": "local"}  # check resolves contexts: no GitHub here
    write_yaml(catalog / "project.yaml", project)
    spark = {"llama_cpp": {"git": "https://github.com/ggml-org/llama.cpp.git", "ref": "b6500"}, "cuda": "12.9.1"}
    # The shipped base runs on the slim CUDA runtime, this one on NVIDIA's full one: both runtime stages checked.
    write_yaml(catalog / "bases" / "spark.yaml", {**spark, "gpu_families": ["gb10"], "cuda_runtime": "full"})
    spark_weights = {"url": "https://models.invalid/s.gguf", "sha256": SHA}
    write_yaml(catalog / "models" / "on-spark.yaml", {"base": "spark", "weights": spark_weights})
    for shipped in (catalog / "models").glob("*.yaml"):
        data = yaml.safe_load(shipped.read_text(encoding="utf-8"))
        write_yaml(shipped, {"base": "llama-cpp-cuda", **data})
    weights = {"hf": "acme/gated-GGUF", "file": "m.gguf", "revision": "1" * 40, "sha256": SHA, "gated": True}
    on_cuda = {"base": "llama-cpp-cuda"}
    write_yaml(
        catalog / "models" / "gated.yaml", {**on_cuda, "weights": weights, "mmproj": {**weights, "gated": False}}
    )
    write_yaml(
        catalog / "models" / "fetched.yaml", {**on_cuda, "weights": {**weights, "gated": False}, "delivery": "fetch"}
    )
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "local.gguf").write_bytes(b"GGUF")
    write_yaml(catalog / "models" / "local.yaml", {**on_cuda, "weights": {"path": "weights/local.gguf", "sha256": SHA}})
    big = {"url": "https://models.invalid/big.gguf", "sha256": SHA, "size": 16_500_000_000}
    write_yaml(catalog / "models" / "resplit.yaml", {**on_cuda, "weights": big})
    parts = [{"url": f"https://models.invalid/p-0000{n}-of-00002.gguf", "sha256": SHA} for n in (1, 2)]
    write_yaml(catalog / "models" / "parts.yaml", {**on_cuda, "weights": {"parts": parts}})
    paths = Paths.from_options(catalog, None)
    generate_set(paths, compile_catalog(paths), check=False)
    plan = plan_catalog(paths)[1]
    kinds = {(s.kind, s.backend or s.delivery, s.sources) for s in plan.shapes}
    assert {s.cuda_runtime for s in plan.shapes if s.kind == "base"} == {"slim", "full"}
    assert kinds >= {
        ("base", "cuda", ()),
        ("model", "baked", ("remote",)),
        ("model", "baked", ("gated", "remote")),
        ("model", "fetch", ("remote",)),
        ("model", "baked", ("local",)),
    }, kinds
    assert {(s.weight_parts, s.resplit_layers) for s in plan.shapes if s.kind == "model"} >= {(2, 0), (1, 4)}
    spark_base, on_spark = plan.target("spark"), plan.target("on-spark")
    assert spark_base.platforms == on_spark.platforms == ("linux/arm64",)
    args = dict(spark_base.args)
    assert "-DCMAKE_CUDA_ARCHITECTURES=121a-real" in str(args["CMAKE_ARGS"])
    assert "GGML_CPU_ALL_VARIANTS=OFF" in str(args["CMAKE_ARGS_ARM64"])
    assert "CMAKE_ARGS_AMD64" not in args, "no x86 CPU variants for an arm64-only base"
    for group, extra in (("bases", []), ("models", ["--set", f"*.contexts.base={stand_in_image}"])):
        result = subprocess.run(
            ["docker", "buildx", "bake", "--builder", embedded_builder, "--call=check", *extra, group],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        targets = [t.name for t in plan.targets if (t.kind == "base") == (group == "bases")]
        assert result.stdout.count("Check complete, no warnings found.") == len(targets), result.stdout


def _file_in_image(registry: str, repository: str, digest: str, path: str) -> bytes:
    """One file of an image manifest in the registry, read from its layers (the last layer that has it)."""
    import io
    import tarfile
    import urllib.request

    manifest = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry}/{repository}@{digest}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    found = b""
    for layer in manifest["layers"]:
        with urllib.request.urlopen(f"http://{registry}/v2/{repository}/blobs/{layer['digest']}") as response:
            data = response.read()
        with tarfile.open(fileobj=io.BytesIO(plain_tar(data, layer["mediaType"]))) as tar:
            member = next((m for m in tar.getmembers() if m.name.lstrip("./") == path and m.isfile()), None)
            if member is not None:
                handle = tar.extractfile(member)
                assert handle is not None
                found = handle.read()
    return found


def test_a_two_platform_base_and_its_models_build_each_platform_on_its_own_architecture(
    project: Project, registry: str, two_platform_stand_in: str
) -> None:
    """A base for linux/amd64 and linux/arm64 (arm64 emulated by qemu-user-static here): one tag, an image
    index with both platforms, for the base and for the models that inherit them; each platform's steps ran
    on its own architecture (the stand-in's own busybox says `uname -m`), with its own CPU options."""
    settings = yaml.safe_load((project.catalog / "project.yaml").read_text())
    overrides = {DEVEL: two_platform_stand_in, RUNTIME: two_platform_stand_in}
    write_yaml(project.catalog / "project.yaml", {**settings, "image_overrides": overrides})
    write_yaml(
        project.catalog / "bases" / "base.yaml",
        {
            "llama_cpp": {"path": "src/llama.cpp", "ref": "b1"},
            "gpu_families": ["hopper"],
            "platforms": ["linux/amd64", "linux/arm64"],
        },
    )
    summary, _ = project.build(push=True, variables=(f"REGISTRY={registry}/multi",), targets=("base", "m1", "m2"))
    assert {t.name: t.platforms for t in summary.targets} == dict.fromkeys(
        ["base", "m1", "m2"], ("linux/amd64", "linux/arm64")
    )
    for image in ("base", "m1"):
        manifests = _manifests(registry, f"multi/{image}:latest")
        assert {"amd64", "arm64"} <= set(manifests), manifests
        for arch, machine, cpu in (("amd64", "x86_64", "ALL_VARIANTS=ON"), ("arm64", "aarch64", "ARM_ARCH")):
            repository = f"multi/{image}"
            assert _file_in_image(registry, repository, manifests[arch], "app/arch").decode().strip() == machine
            assert cpu in _file_in_image(registry, repository, manifests[arch], "app/cpu-args").decode()


@pytest.fixture
def two_node_builder(embedded_builder: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """`builder up --platform linux/arm64`: two buildkitd on this machine, one node per platform."""
    state = state_dir("lb-2n-")
    monkeypatch.setenv("LLAMA_BAKE_STATE_DIR", str(state))
    monkeypatch.setenv("LLAMA_BAKE_BUILDER", f"llama-bake-2n-{os.getpid()}")
    up = CliRunner().invoke(main, ["builder", "up", "--platform", "linux/arm64"])
    try:
        assert up.exit_code == 0, up.output
        assert "with nodes" in up.output
        yield builder_name(), state
    finally:
        down = CliRunner().invoke(main, ["builder", "down"])
        assert down.exit_code == 0, down.output
        assert down.output.count("stopped buildkitd") == 2, down.output
        shutil.rmtree(state, ignore_errors=True)


def _blobs(daemon_root: Path) -> set[str]:
    return {p.name for p in daemon_root.glob("data/*/content/blobs/sha256/*")}


def test_a_two_node_builder_builds_each_platform_on_its_own_node(
    project: Project, registry: str, two_platform_stand_in: str, two_node_builder: tuple[str, Path]
) -> None:
    """Each platform's layers are made by its node: the arm64 image's own layer is in the second buildkitd's
    content store and not in the first's, and the other way round; doctor names the node of each platform."""
    builder, state = two_node_builder
    settings = yaml.safe_load((project.catalog / "project.yaml").read_text())
    overrides = {DEVEL: two_platform_stand_in, RUNTIME: two_platform_stand_in}
    write_yaml(project.catalog / "project.yaml", {**settings, "image_overrides": overrides})
    base = {"llama_cpp": {"path": "src/llama.cpp", "ref": "b1"}, "gpu_families": ["hopper"]}
    write_yaml(project.catalog / "bases" / "base.yaml", {**base, "platforms": ["linux/amd64", "linux/arm64"]})
    doctor = CliRunner().invoke(main, ["doctor", "-c", str(project.catalog)])
    assert doctor.exit_code == 0, doctor.output
    assert re.search(r"platform linux/arm64: node \S+1 builds it as its own platform", doctor.output), doctor.output
    assert re.search(r"platform linux/amd64: node \S+0 builds it as its own platform", doctor.output), doctor.output
    project.build(push=True, builder=builder, variables=(f"REGISTRY={registry}/two-node",), targets=("base",))
    manifests = _manifests(registry, "two-node/base:latest")
    layers = {}
    for arch in ("amd64", "arm64"):
        raw = subprocess.run(
            [
                "skopeo",
                "inspect",
                "--raw",
                "--tls-verify=false",
                f"docker://{registry}/two-node/base@{manifests[arch]}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        layers[arch] = json.loads(raw)["layers"][-1]["digest"].removeprefix("sha256:")  # the base's own layer
    first, second = _blobs(state / "buildkitd"), _blobs(state / "buildkitd-arm64")
    assert layers["amd64"] in first
    assert layers["amd64"] not in second
    assert layers["arm64"] in second
    assert layers["arm64"] not in first
