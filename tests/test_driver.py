"""What a builder can do, and what a build asks of it: refused before any step runs, each with its fix."""

from __future__ import annotations

import pytest

from llama_bake import project as pipeline
from llama_bake.buildx.driver import Capabilities, Demands, EngineInfo, capabilities, image_store_of, refusals
from llama_bake.buildx.options import BuildOptions, CachePreset
from llama_bake.buildx.probe import BuilderCannot
from llama_bake.buildx.run import run_build
from tests.conftest import BASE, MODEL, WriteCatalog
from tests.fakes import FakeBaker

CLASSIC = EngineInfo("28.5.2", "classic", "overlay2")
CONTAINERD = EngineInfo("28.5.2", "containerd", "overlayfs")


def test_the_image_store_is_read_from_dockers_driver_status() -> None:
    assert image_store_of([("driver-type", "io.containerd.snapshotter.v1")], "overlayfs") == "containerd"
    assert image_store_of([("Backing Filesystem", "extfs"), ("Supports d_type", "true")], "overlay2") == "classic"
    assert image_store_of([], "") == ""


def test_only_the_docker_driver_on_the_classic_store_lacks_attestations_cache_export_oci_and_platforms() -> None:
    classic = capabilities("docker", CLASSIC)
    assert classic.missing() == ["attestations", "cache export", "OCI export", "several platforms"]
    assert classic.into_engine
    assert classic.label == "the docker driver, classic image store"
    assert capabilities("docker", CONTAINERD).missing() == []
    for driver in ("remote", "docker-container", "kubernetes"):
        caps = capabilities(driver, None)
        assert caps.missing() == []
        assert not caps.into_engine


def test_the_engine_gpu_comes_from_the_nvidia_runtime_or_cdi_devices() -> None:
    assert CLASSIC.gpu == ""
    assert EngineInfo("28.5.2", "classic", "overlay2", runtimes=("nvidia", "runc")).gpu == "the nvidia runtime"
    cdi = EngineInfo("28.5.2", "classic", "overlay2", cdi_devices=("nvidia.com/gpu=0", "nvidia.com/gpu=all"))
    assert cdi.gpu == "CDI devices (nvidia.com/gpu=0, nvidia.com/gpu=all)"


def test_each_refusal_names_what_was_asked_and_the_containerd_store_fix() -> None:
    asked = Demands(
        attestations=("m1",),
        cache_export=("type=local,dest=/c/m1,mode=max",),
        oci_outputs=("type=oci,dest=o",),
        multi_platform=("base",),
    )
    problems = refusals(capabilities("docker", CLASSIC), asked)
    assert len(problems) == 4
    assert "provenance" in problems[0]
    assert "`provenance: auto`" in problems[0]
    assert "--no-cache-export" in problems[1]
    assert "type=local,dest=/c/m1,mode=max" in problems[1]
    assert "type=oci,dest=o" in problems[2]
    assert "several platforms" in problems[3]
    assert "base" in problems[3]
    assert all("containerd-snapshotter" in p and "Docker Desktop" in p for p in problems)
    assert refusals(capabilities("docker", CONTAINERD), asked) == []
    assert refusals(Capabilities("remote"), asked) == []


def _classic() -> FakeBaker:
    return FakeBaker(caps=capabilities("docker", CLASSIC), built=("llama-cpp-cuda", "model-a"))


def test_the_shipped_default_provenance_builds_on_the_classic_store(write_catalog: WriteCatalog) -> None:
    paths = pipeline.Paths.from_options(write_catalog(), None)
    runner = _classic()
    summary = run_build(paths, BuildOptions(targets=("model-a",)), runner)
    assert [t.status for t in summary.targets] == ["built", "built"]
    assert "attest" not in paths.output.read_text(), "auto: no attest, buildx's own default applies"


@pytest.mark.parametrize(
    ("project", "options", "said"),
    [
        ({"provenance": "max"}, {}, "cannot attach provenance attestations"),
        ({}, {"cache": CachePreset("registry", "127.0.0.1:5000/c")}, "cannot export a build cache"),
        ({}, {"outputs": ("type=oci,dest=out/{target}.tar",)}, "cannot write OCI layouts"),
    ],
)
def test_what_the_classic_store_cannot_do_is_refused_before_any_bake(
    write_catalog: WriteCatalog, project: dict[str, str], options: dict[str, object], said: str
) -> None:
    paths = pipeline.Paths.from_options(write_catalog(project=project), None)
    runner = _classic()
    with pytest.raises(BuilderCannot, match=said):
        run_build(paths, BuildOptions(targets=("model-a",), **options), runner)  # type: ignore[arg-type]
    assert runner.calls == [], "refused before any bake ran"


def test_several_platforms_are_refused_on_the_classic_store(write_catalog: WriteCatalog) -> None:
    base = {**BASE, "platforms": ["linux/amd64", "linux/arm64"], "gpu_families": ["hopper"]}
    paths = pipeline.Paths.from_options(write_catalog(bases={"llama-cpp-cuda": base}, models={"model-a": MODEL}), None)
    runner = _classic()
    with pytest.raises(BuilderCannot, match="several platforms at once"):
        run_build(paths, BuildOptions(targets=("model-a",)), runner)
    assert runner.calls == []


def test_two_phases_on_the_classic_store_hand_the_base_over_through_the_engine(write_catalog: WriteCatalog) -> None:
    paths = pipeline.Paths.from_options(write_catalog(), None)
    runner = _classic()
    cache = CachePreset("registry", "127.0.0.1:5000/c")
    run_build(paths, BuildOptions(targets=("model-a",), cache=cache, cache_export=False), runner)
    bases, models = runner.calls
    assert not [f for f in bases.flags if "type=oci" in f], "no OCI layout: the engine's store holds the base"
    [pinned] = [f for f in models.flags if ".contexts.base=" in f]
    assert pinned == "model-a.contexts.base=docker-image://127.0.0.1:5000/lb/llama-cpp-cuda:v1"
    assert not [f for f in models.flags if f.startswith("fs.read=")]


def test_a_build_that_buildx_calls_a_success_but_left_a_target_unfinished_exits_non_zero(
    write_catalog: WriteCatalog,
) -> None:
    from llama_bake.buildx.run import BuildFailed

    paths = pipeline.Paths.from_options(write_catalog(), None)
    runner = FakeBaker(built=("llama-cpp-cuda",))  # buildx exits 0 with no word of model-a
    with pytest.raises(BuildFailed, match=r"not every target finished: model-a \(not started\)") as caught:
        run_build(paths, BuildOptions(targets=("model-a",)), runner)
    assert caught.value.exit_code != 0
    assert [t.status for t in caught.value.summary.targets] == ["built", "not started"]


def test_doctor_names_the_driver_and_store_and_fails_only_where_the_catalogs_build_would() -> None:
    from llama_bake.buildx.doctor import driver_check

    classic = capabilities("docker", CLASSIC)
    plain = driver_check(classic, Demands())
    assert plain.ok
    assert plain.warning
    assert plain.detail.startswith("the docker driver, classic image store: cannot do attestations, cache export")
    assert "containerd-snapshotter" in plain.fix
    refused = driver_check(classic, Demands(attestations=("m1",)))
    assert not refused.ok
    assert "provenance" in refused.fix
    able = driver_check(capabilities("docker", CONTAINERD), Demands(attestations=("m1",)))
    assert (able.ok, able.warning) == (True, False)
    assert "images land in the engine" in able.detail


def test_doctor_says_whether_the_engine_gives_containers_a_gpu_with_the_fix() -> None:
    from llama_bake.buildx.doctor import gpu_check

    none = gpu_check(CLASSIC)
    assert none.warning
    assert "no NVIDIA runtime and no CDI GPU device" in none.detail
    assert "nvidia-ctk runtime configure" in none.fix
    assert "smoke --cpu" in none.fix
    assert "-f compose.cpu.yaml up" in none.fix
    nvidia = gpu_check(EngineInfo("28.5.2", "classic", "overlay2", runtimes=("nvidia", "runc")))
    assert (nvidia.ok, nvidia.warning, nvidia.fix) == (True, False, "")
    assert gpu_check(None).detail.startswith("no Docker Engine answers")
