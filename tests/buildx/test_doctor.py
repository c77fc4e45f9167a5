"""``llama-bake doctor``'s checks."""

from __future__ import annotations

from llama_bake.buildx.driver import Demands, EngineInfo, capabilities

CLASSIC = EngineInfo("28.5.2", "classic", "overlay2")
CONTAINERD = EngineInfo("28.5.2", "containerd", "overlayfs")

FAKE_DIGEST = "sha256:" + "d" * 64


def test_doctor_says_for_each_platform_whether_a_node_builds_it_emulates_it_or_cannot() -> None:
    from llama_bake.buildx.client import BuilderInfo, NodeInfo
    from llama_bake.buildx.doctor import platform_check

    one = BuilderInfo(
        "b", "remote", "running", "unix:///s", "v0.32.2", (NodeInfo("b0", "", "running", ("linux/amd64",)),)
    )
    emulating = BuilderInfo(
        "b", "remote", "running", "", "", (NodeInfo("b0", "", "running", ("linux/amd64", "linux/arm64")),)
    )
    assert platform_check(one, "linux/amd64").ok
    assert "emulates it" in platform_check(emulating, "linux/arm64").detail
    missing = platform_check(one, "linux/arm64")
    assert not missing.ok
    assert "b0: linux/amd64" in missing.detail
    assert "qemu-user-static" in missing.fix
    assert "llama-bake builder up --platform linux/arm64" in missing.fix


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


def test_doctor_warns_when_the_engine_cannot_pull_what_the_catalog_pushes() -> None:
    from llama_bake.buildx.doctor import compression_check

    remote = capabilities("remote", None)
    old = compression_check(EngineInfo("20.10.24", "classic", "overlay2"), remote, "zstd")
    assert (old.ok, old.warning) == (True, True)
    assert "Docker Engine 20.10.24 cannot pull" in old.detail
    assert "`compression: gzip`" in old.fix
    new = compression_check(EngineInfo("23.0.0", "classic", "overlay2"), remote, "zstd")
    assert (new.ok, new.warning, new.detail) == (True, False, "zstd: Docker Engine 23.0.0 pulls it")
    assert not compression_check(EngineInfo("20.10.24", "classic", "overlay2"), remote, "gzip").warning
    assert not compression_check(EngineInfo("20.10.24", "classic", "overlay2"), remote, "uncompressed").warning
    assert not compression_check(None, remote, "zstd").warning, "no engine here: nothing pulls on this machine"
    classic = compression_check(CLASSIC, capabilities("docker", CLASSIC), "zstd")
    assert classic.warning
    assert "pushes through the engine, which compresses every layer with gzip" in classic.detail
    assert not compression_check(CONTAINERD, capabilities("docker", CONTAINERD), "zstd").warning
