"""What each builder's driver can do: the engine read from `docker info`, the capability table, and the refusals
with their fix. Pure."""

from __future__ import annotations

from llama_bake.buildx.driver import Capabilities, Demands, EngineInfo, capabilities, image_store_of, refusals

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
