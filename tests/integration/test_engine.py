"""`llama-bake build`, `doctor`, `builder up` and the generated file on a real Docker Engine's default builder (the
`docker` driver, as Docker Desktop ships it), with the classic image store and with the containerd image store.

dockerd v28.5.2 and containerd v2.1.4 are built by .ci/install-engine.sh; each store gets its own dockerd on a private
socket and data root, with no default bridge (`--bridge=none`): builds run their steps on the host network
(`--network host`, the bake variable BUILD_NETWORK) and nothing listens beyond 127.0.0.1. The CUDA images are stood in
for by a busybox image imported into the engine; the templates are the cheap fixtures of the buildkit tier.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from llama_bake.cli import main
from tests.conftest import FIXTURE_TEMPLATES, WeightsServer, write_yaml
from tests.engine import Engine, missing_engine_tools, running_engine
from tests.integration.test_push_limits import layers
from tests.standins import _native_busybox, _rootfs
from tests.statedirs import state_dir

pytestmark = pytest.mark.engine

STAND_IN = "llama-bake-test/busybox:1"
DEVEL = "nvidia/cuda:12.8.1-devel-ubuntu24.04"
# What a cuda base's runtime stage starts from: the OS image (the slim CUDA runtime, the default).
RUNTIME = "ubuntu:24.04"
SHA = "c" * 64
HOST = ("--network", "host")  # no default bridge on these engines


@pytest.fixture(scope="module", params=["classic", "containerd"])
def engine(request: pytest.FixtureRequest, buildx: None) -> Iterator[Engine]:
    missing = missing_engine_tools()
    if missing:
        pytest.fail(f"the engine tier needs {', '.join(missing)}: run .ci/install-tools.sh")
    with running_engine(request.param) as running, tempfile.TemporaryDirectory() as tmp:
        _rootfs(_native_busybox(), Path(tmp) / "rootfs")
        running.import_rootfs(Path(tmp) / "rootfs", STAND_IN)
        yield running


@dataclass
class EngineProject:
    root: Path
    engine: Engine

    @property
    def catalog(self) -> Path:
        return self.root / "catalog"

    def project(self, **extra: Any) -> None:
        overrides = {DEVEL: f"docker-image://{STAND_IN}", RUNTIME: f"docker-image://{STAND_IN}"}
        write_yaml(
            self.catalog / "project.yaml",
            {"tag_scheme": ["{tag}", "{ref}"], "image_overrides": overrides, **extra},
        )

    def base(self, **extra: Any) -> None:
        source = {"llama_cpp": {"path": "src/llama.cpp", "ref": "b1"}, "gpu_families": ["ada"]}
        write_yaml(self.catalog / "bases" / "base.yaml", {**source, **extra})

    def model(self, name: str, **extra: Any) -> None:
        data = {"weights": {"url": f"https://models.invalid/{name}.gguf", "sha256": SHA}, **extra}
        write_yaml(self.catalog / "models" / f"{name}.yaml", data)

    def llama_bake(self, *args: str) -> Result:
        return CliRunner().invoke(main, [args[0], "--catalog", str(self.catalog), *args[1:]])

    def build(self, *args: str) -> Result:
        return self.llama_bake("build", "--progress", "plain", *HOST, *args)

    def summary(self, *args: str) -> tuple[Result, dict[str, Any]]:
        out = self.root / "summary.json"
        out.unlink(missing_ok=True)
        result = self.build("--summary-json", str(out), *args)
        return result, json.loads(out.read_text()) if out.exists() else {}


@pytest.fixture
def project(tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineProject]:
    for key, value in engine.env.items():
        monkeypatch.setenv(key, value)
    # No `builder up` builder: builds use the engine's own, as on a Docker Desktop machine.
    monkeypatch.setenv("LLAMA_BAKE_BUILDER", f"llama-bake-none-{os.getpid()}")
    state = state_dir("lbs-")  # short: buildkitd's socket lives there
    monkeypatch.setenv("LLAMA_BAKE_STATE_DIR", str(state))
    shutil.copytree(FIXTURE_TEMPLATES, tmp_path / "templates")
    (tmp_path / "src" / "llama.cpp").mkdir(parents=True)
    (tmp_path / "src" / "llama.cpp" / "VERSION").write_text("fixture source\n")
    proj = EngineProject(tmp_path, engine)
    proj.project()
    proj.base()
    proj.model("m1")
    proj.model("m2")
    yield proj
    shutil.rmtree(state, ignore_errors=True)


def statuses(summary: dict[str, Any]) -> dict[str, str]:
    return {t["name"]: t["status"] for t in summary["targets"]}


def all_finished(summary: dict[str, Any]) -> bool:
    """Every target built or answered from the cache (earlier tests on the same engine fill its cache)."""
    return sorted(statuses(summary)) == ["base", "m1", "m2"] and all(
        status in ("built", "cached") for status in statuses(summary).values()
    )


def in_engine(engine: Engine, image: str, *command: str) -> str:
    """Run ``command`` in ``image`` on the engine (host network: there is no bridge)."""
    return engine.docker("run", "--rm", "--network", "host", image, *command).stdout


def test_doctor_names_the_docker_driver_its_image_store_and_that_no_gpu_is_there(project: EngineProject) -> None:
    doctor = project.llama_bake("doctor")
    assert doctor.exit_code == 0, doctor.output
    store = project.engine.store
    if store == "classic":
        assert "warn driver: the docker driver, classic image store: cannot do attestations, cache export" in (
            doctor.output
        )
        assert "containerd-snapshotter" in doctor.output
        assert "warn layer compression: zstd asked, but the docker driver with the classic image store pushes" in (
            doctor.output
        )
    else:
        assert "ok  driver: the docker driver, containerd image store: attestations, cache export" in doctor.output
        assert "ok  layer compression: zstd: Docker Engine 28.5.2 pulls it" in doctor.output
    assert "warn engine GPU: Docker Engine 28.5.2 has no NVIDIA runtime and no CDI GPU device" in doctor.output
    assert "nvidia-ctk runtime configure" in doctor.output


def test_the_shipped_defaults_build_into_the_engine(project: EngineProject) -> None:
    result, summary = project.summary()
    assert result.exit_code == 0, result.output
    assert statuses(summary) == {"base": "built", "m1": "built", "m2": "built"}
    rows = {t["name"]: t for t in summary["targets"]}
    assert rows["base"]["steps_executed"] == 3, "the base's own steps, not counted under a model"
    assert rows["m1"]["steps_executed"] == 1
    assert rows["m1"]["digest_is_image_id"] is (project.engine.store == "classic")
    assert not [m for m in summary["messages"] if "no builder" in m]
    inspected = json.loads(project.engine.docker("image", "inspect", "localhost:5000/llama-bake/m1:latest").stdout)
    assert inspected[0]["Config"]["Labels"]["io.llama-bake.model.sha256"] == SHA
    assert in_engine(project.engine, "localhost:5000/llama-bake/m2:b1", "cat", "/model").strip() == "m2"
    assert "b1" in in_engine(project.engine, "localhost:5000/llama-bake/m1:latest", "cat", "/app/built")


def test_plain_docker_buildx_bake_of_the_generated_file_builds(project: EngineProject) -> None:
    generated = project.llama_bake("generate")
    assert generated.exit_code == 0, generated.output
    done = project.engine.docker(
        "buildx",
        "bake",
        "--progress",
        "quiet",
        "--var",
        "BUILD_NETWORK=host",
        "--allow",
        "network.host",
        check=False,
        cwd=project.root,
    )
    assert done.returncode == 0, done.stderr
    assert in_engine(project.engine, "localhost:5000/llama-bake/m1:latest", "cat", "/model").strip() == "m1"


def test_a_local_cache_is_refused_before_any_step_on_the_classic_store_and_holds_on_containerd(
    project: EngineProject, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    result, summary = project.summary("--cache", f"local={cache}")
    if project.engine.store == "classic":
        assert result.exit_code == 5, result.output
        assert "cannot export a build cache" in result.output
        assert "--no-cache-export" in result.output
        assert "fixture-compile" not in result.output, "refused before any step ran"
        assert summary == {}
        return
    assert result.exit_code == 0, result.output
    assert (cache / "m1" / "index.json").exists()
    project.engine.docker("buildx", "prune", "--all", "--force")
    again, summary = project.summary("--cache", f"local={cache}")
    assert again.exit_code == 0, again.output
    assert summary["steps_executed"] == 0, "an emptied builder runs no step after the import"


def test_two_phases_without_a_push_hand_the_base_over_on_either_store(project: EngineProject) -> None:
    result, summary = project.summary("--phases", "two")
    assert result.exit_code == 0, result.output
    assert all_finished(summary), summary
    assert summary["phases"] == 2
    assert in_engine(project.engine, "localhost:5000/llama-bake/m1:latest", "cat", "/model").strip() == "m1"


def test_a_registry_cache_nobody_exported_yet_fails_no_target_and_the_push_lands(
    project: EngineProject, registry: str
) -> None:
    """A pull request's first run: the cache to import does not exist yet; every target still builds and pushes."""
    result, summary = project.summary(
        "--push", "--var", f"REGISTRY={registry}/lb", "--cache", f"registry={registry}/never", "--no-cache-export"
    )
    assert result.exit_code == 0, result.output
    assert all_finished(summary), summary
    for model in ("m1", "m2"):
        done = subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/lb/{model}:latest"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr


def test_provenance_asked_for_is_refused_on_the_classic_store_and_attached_on_containerd(
    project: EngineProject,
) -> None:
    project.project(provenance="max")
    result = project.build()
    doctor = project.llama_bake("doctor")
    if project.engine.store == "classic":
        assert result.exit_code == 5, result.output
        assert "cannot attach provenance attestations" in result.output
        assert "`provenance: auto`" in result.output
        assert doctor.exit_code == 5, "doctor fails where the catalog's build would"
        assert "FAIL driver: the docker driver, classic image store: a build of this catalog asks" in doctor.output
    else:
        assert result.exit_code == 0, result.output
        assert doctor.exit_code == 0, doctor.output


def test_a_two_platform_base_is_refused_on_the_classic_store_and_its_exit_follows_the_summary_on_containerd(
    project: EngineProject,
) -> None:
    project.base(platforms=["linux/amd64", "linux/arm64"], gpu_families=["hopper"])
    result, summary = project.summary()
    if project.engine.store == "classic":
        assert result.exit_code == 5, result.output
        assert "cannot build several platforms at once" in result.output
        assert "fixture-compile" not in result.output, "refused before any step ran"
        return
    # Whatever buildx reports, the exit code agrees with the summary: 0 only when every target finished.
    done = all(status in ("built", "cached") for status in statuses(summary).values())
    assert (result.exit_code == 0) == done, result.output


def test_a_wrong_checksum_fails_the_build_naming_the_target(
    project: EngineProject, weights_server: WeightsServer
) -> None:
    url, _ = weights_server.add("w1.gguf")
    project.model("m1", weights={"url": url, "sha256": "d" * 64}, server={"env": {"FIXTURE_DOWNLOAD": "1"}})
    result, summary = project.summary("m1")
    assert result.exit_code == 6, result.output
    assert "target `m1` failed" in result.output
    assert "checksum" in result.output.lower() or "digest" in result.output.lower()
    assert statuses(summary)["m1"] == "failed"


def test_builder_up_on_a_machine_with_an_engine_says_what_it_is_and_how_images_reach_the_engine(
    project: EngineProject, stand_in_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its buildkitd does not see the engine's images: the stand-ins come as an OCI layout (never a pull)."""
    project.project(image_overrides={DEVEL: stand_in_image, RUNTIME: stand_in_image})
    monkeypatch.setenv("LLAMA_BAKE_BUILDER", f"llama-bake-up-{os.getpid()}")
    up = CliRunner().invoke(main, ["builder", "up"])
    try:
        assert up.exit_code == 0, up.output
        assert "a Docker Engine (28.5.2) answers here" in up.output
        assert "llama-bake build --load" in up.output
        project.engine.docker("rmi", "-f", "localhost:5000/llama-bake/m1:latest", check=False)
        # buildkitd's steps use the host network already (and it does not grant network.host).
        loaded = project.llama_bake("build", "--progress", "plain", "--load", "m1")
        assert loaded.exit_code == 0, loaded.output
        assert in_engine(project.engine, "localhost:5000/llama-bake/m1:latest", "cat", "/model").strip() == "m1"
    finally:
        down = CliRunner().invoke(main, ["builder", "down"])
    assert down.exit_code == 0, down.output


def test_an_image_pushed_with_zstd_pulls_and_runs_on_either_store(
    engine: Engine,
    embedded_builder: str,
    registry: str,
    stand_in_image: str,
    weights_server: WeightsServer,
    tmp_path: Path,
) -> None:
    """Built and pushed by the session's buildkitd with the default compression (zstd), read back from the registry
    on 127.0.0.1, then pulled by the engine and run: the weights arrive whole."""
    shutil.copytree(FIXTURE_TEMPLATES, tmp_path / "templates")
    (tmp_path / "src" / "llama.cpp").mkdir(parents=True)
    (tmp_path / "src" / "llama.cpp" / "VERSION").write_text("fixture source\n")
    catalog = tmp_path / "catalog"
    write_yaml(catalog / "project.yaml", {"image_overrides": {DEVEL: stand_in_image, RUNTIME: stand_in_image}})
    write_yaml(
        catalog / "bases" / "base.yaml", {"llama_cpp": {"path": "src/llama.cpp", "ref": "b1"}, "gpu_families": ["ada"]}
    )
    url, sha = weights_server.add("w.gguf", size=3 << 20)
    model = {"weights": {"url": url, "sha256": sha}, "server": {"env": {"FIXTURE_DOWNLOAD": "1"}}}
    write_yaml(catalog / "models" / "m.yaml", model)
    prefix = f"{registry}/zstd-{engine.store}"
    argv = ["build", "-c", str(catalog), "--builder", embedded_builder, "--push", "--progress", "plain", "m"]
    pushed = CliRunner().invoke(main, [*argv, "--var", f"REGISTRY={prefix}"])
    assert pushed.exit_code == 0, pushed.output
    weights = max(layers(f"{prefix}/m"), key=lambda layer: int(layer["size"]))
    assert weights["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    image = f"{prefix}/m:latest"
    engine.docker("pull", image)
    assert in_engine(engine, image, "sha256sum", "/models/w.gguf").split()[0] == sha
    assert in_engine(engine, image, "cat", "/model").strip() == "m"
