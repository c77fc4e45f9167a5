"""A vulkan image's GPU: the engine host's render nodes and their group, the `docker run` arguments smoke gives a
vulkan model, and doctor's render-node check (Docker Desktop, a remote engine, no node, a wrong group)."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest

from llama_bake.buildx.client import BuilderInfo, Builders, NodeInfo
from llama_bake.buildx.dri import RenderNode, is_local, render_check, render_gid, render_nodes
from llama_bake.buildx.driver import EngineInfo
from llama_bake.buildx.launch import Launch
from llama_bake.buildx.smoke import launch_for, smoke_one
from llama_bake.errors import DockerError
from llama_bake.project import Paths, plan_catalog
from tests.buildx.test_smoke import Clock, FakeContainers, server

LOCAL = EngineInfo("28.5.2", "containerd", "overlayfs", host_name="gpu-box", operating_system="Ubuntu 24.04.1 LTS")
DESKTOP = replace(LOCAL, host_name="docker-desktop", operating_system="Docker Desktop")
NODES = [RenderNode("/dev/dri/renderD128", 993)]
ARGS = {"ENV_LLAMA_ARG_PORT": "8080"}


def test_render_nodes_are_found_with_their_group(tmp_path: Path) -> None:
    (tmp_path / "card0").touch()
    (tmp_path / "renderD129").touch()
    (tmp_path / "renderD128").touch()
    found = render_nodes(tmp_path)
    assert [n.path for n in found] == [str(tmp_path / "renderD128"), str(tmp_path / "renderD129")]
    assert {n.gid for n in found} == {os.getgid()}
    assert render_nodes(tmp_path / "missing") == []


def test_the_render_group_is_read_only_where_the_engine_is_this_machine() -> None:
    assert is_local(LOCAL, lambda: "gpu-box")
    assert not is_local(LOCAL, lambda: "laptop")
    assert not is_local(DESKTOP, lambda: "docker-desktop"), "Docker Desktop's containers run in its VM"
    assert render_gid(replace(LOCAL, host_name="elsewhere"), lambda: NODES) is None


def test_smoke_gives_a_vulkan_model_the_render_nodes_and_the_group() -> None:
    launch = launch_for(ARGS, "i", "vulkan", "auto", "", 1234, False, render_gid=993)
    assert (launch.devices, launch.groups, launch.gpu, dict(launch.env)) == (("/dev/dri",), ("993",), "", {})
    forced = launch_for(ARGS, "i", "vulkan", "gpu", "the nvidia runtime", 1234, False, render_gid=993)
    assert forced.devices == ("/dev/dri",)
    assert forced.gpu == "", "a vulkan image is not handed the NVIDIA runtime"


def test_smoke_runs_a_vulkan_model_on_the_cpu_without_a_render_node_or_when_asked() -> None:
    without = launch_for(ARGS, "i", "vulkan", "auto", "", 1234, False, render_gid=None)
    assert (without.devices, without.groups, dict(without.env)) == ((), (), {"LLAMA_ARG_N_GPU_LAYERS": "0"})
    cpu = launch_for(ARGS, "i", "vulkan", "cpu", "", 1234, False, render_gid=993)
    assert (cpu.devices, dict(cpu.env)) == ((), {"LLAMA_ARG_N_GPU_LAYERS": "0"})
    with pytest.raises(DockerError, match="needs the engine host's GPU render node"):
        launch_for(ARGS, "i", "vulkan", "gpu", "the nvidia runtime", 1234, False, render_gid=None)


def test_a_cuda_model_never_gets_the_render_nodes() -> None:
    launch = launch_for(ARGS, "i", "cuda", "auto", "the nvidia runtime", 1234, False, render_gid=993)
    assert (launch.gpu, launch.devices, launch.groups) == ("runtime", (), ())


def test_the_smoke_result_says_the_device_and_group_it_ran_with() -> None:
    clock = Clock()
    get, _ = server(0)
    launch = Launch("reg/m1:latest", {}, 18080, 8080, False, "", devices=("/dev/dri",), groups=("993",))
    result = smoke_one(FakeContainers(), "m1", launch, 60, get, clock, clock.sleep)
    assert result.on == "GPU (/dev/dri, group 993)"


def test_doctor_names_the_render_nodes_and_the_group_compose_needs() -> None:
    check = render_check(LOCAL, NODES, True, {})
    assert (check.ok, check.warning) == (True, False)
    assert check.detail == "/dev/dri/renderD128 (group 993): Compose's vulkan services need LLAMA_BAKE_RENDER_GID=993"
    wrong = render_check(LOCAL, NODES, True, {"LLAMA_BAKE_RENDER_GID": "44"})
    assert wrong.warning
    assert wrong.fix.startswith("set LLAMA_BAKE_RENDER_GID=993")


@pytest.mark.parametrize(
    ("engine", "nodes", "local", "said", "fix"),
    [
        (DESKTOP, [], False, "Docker Desktop runs containers in a VM that has no /dev/dri", "a Linux host's Docker"),
        (LOCAL, [], False, "the engine runs on gpu-box, whose /dev/dri cannot be seen", "stat -c %g"),
        (LOCAL, [], True, "this host has no /dev/dri/renderD*", "amdgpu"),
        (None, [], False, "no Docker Engine answers", ""),
    ],
)
def test_doctor_warns_where_no_render_node_can_be_given(
    engine: EngineInfo | None, nodes: list[RenderNode], local: bool, said: str, fix: str
) -> None:
    check = render_check(engine, nodes, local, {})
    assert (check.ok, check.warning) == (True, True)
    assert said in check.detail
    assert fix in check.fix


class EngineOnly:
    def __init__(self, engine: EngineInfo | None) -> None:
        self.info = engine

    def engine(self) -> EngineInfo | None:
        return self.info


def test_doctor_checks_the_render_node_only_for_a_catalog_with_a_vulkan_base() -> None:
    from llama_bake.buildx.doctor import device_checks

    golden = Path(__file__).parents[1] / "render" / "golden"
    runner = cast(Builders, EngineOnly(DESKTOP))
    cuda_and_cpu = plan_catalog(Paths.from_options(golden / "multi" / "catalog", None))[1]
    assert device_checks(runner, cuda_and_cpu) == []
    assert device_checks(runner, None) == []
    (check,) = device_checks(runner, plan_catalog(Paths.from_options(golden / "vulkan" / "catalog", None))[1])
    assert check.name == "render node"
    assert check.detail.startswith("Docker Desktop runs containers in a VM that has no /dev/dri")


class FakeBuilders(EngineOnly):
    def version(self) -> str:
        return "github.com/docker/buildx v0.36.1"

    def builders(self) -> list[str]:
        return []

    def inspect(self, name: str | None, bootstrap: bool) -> BuilderInfo:
        node = NodeInfo("b0", "", "running", ("linux/amd64",))
        return BuilderInfo("b", "remote", "running", "unix:///s", "v0.32.2", (node,))


@pytest.mark.parametrize(("case", "nvidia_said"), [("vulkan", True), ("multi", True), ("vulkan-only", False)])
def test_doctor_asks_for_an_nvidia_runtime_only_when_a_base_needs_one(
    case: str, nvidia_said: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llama_bake.buildx import doctor

    golden = Path(__file__).parents[1] / "render" / "golden"
    shutil.copytree(golden / case.removesuffix("-only") / "catalog", tmp_path / "catalog")
    if case == "vulkan-only":
        (tmp_path / "catalog" / "bases" / "cuda.yaml").unlink()
        (tmp_path / "catalog" / "models" / "tiny-cuda.yaml").unlink()
    monkeypatch.setattr("llama_bake.buildx.doctor.shutil.which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr("llama_bake.buildx.nvidia.query_driver", lambda: None)
    checks = doctor.project_checks(
        cast(Builders, FakeBuilders(DESKTOP)), None, Paths.from_options(tmp_path / "catalog", None)
    )
    names = [c.name for c in checks]
    assert ("engine GPU" in names) == nvidia_said
    assert ("render node" in names) == case.startswith("vulkan")
