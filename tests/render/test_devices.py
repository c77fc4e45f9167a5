"""How a model's container reaches its base's GPUs, as each backend's entry says: Compose's device lines and render
group (and the CPU override that drops them), and the GPU a Kubernetes pod asks for, with the refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from llama_bake.catalog.bases import Base
from llama_bake.errors import CatalogError
from llama_bake.project import Paths, plan_catalog
from llama_bake.render.compose import RENDER_GID, compose_document, cpu_override
from llama_bake.render.kube import gpu_resources, manifests, resource_problems
from tests.conftest import MODEL, WriteCatalog
from tests.render.test_kube import documents, restricted_violations

GOLDEN = Path(__file__).parent / "golden" / "vulkan"
SOURCE = {"git": "https://github.com/ggml-org/llama.cpp.git", "ref": "b6500"}


def services() -> dict[str, Any]:
    document = yaml.safe_load((GOLDEN / "compose.yaml").read_text(encoding="utf-8"))
    return dict(document["services"])


def test_a_vulkan_service_gets_the_render_nodes_and_the_hosts_render_group_by_number() -> None:
    radeon = services()["tiny-radeon"]
    assert radeon["devices"] == ["/dev/dri:/dev/dri"]
    assert radeon["group_add"] == [RENDER_GID]
    assert "deploy" not in radeon
    assert RENDER_GID.startswith("${LLAMA_BAKE_RENDER_GID:?set LLAMA_BAKE_RENDER_GID to the host's render group id")
    assert "stat -c %g /dev/dri/renderD128" in RENDER_GID
    assert "}" not in RENDER_GID[:-1], "Compose ends the message at the first }"


def test_a_cuda_service_beside_it_keeps_its_gpu_reservation_and_gets_no_device_nodes() -> None:
    cuda = services()["tiny-cuda"]
    assert cuda["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert "devices" not in cuda
    assert "group_add" not in cuda


def test_a_cpu_service_gets_neither(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(
        bases={"cpu": {"backend": "cpu", "llama_cpp": SOURCE}}, models={"m": {**MODEL, "base": "cpu"}}
    )
    paths = Paths.from_options(catalog, None)
    loaded, plan = plan_catalog(paths)
    service = compose_document(loaded, plan, paths.bake_dir, paths.bake_dir)["services"]["m"]
    assert not {"deploy", "devices", "group_add"} & set(service)


def test_the_cpu_override_drops_the_device_nodes_and_the_group_and_offloads_nothing() -> None:
    document = yaml.safe_load((GOLDEN / "compose.yaml").read_text(encoding="utf-8"))
    override = yaml.safe_load(
        cpu_override(document, "t", "llama-bake compose").replace("!reset", "")  # PyYAML does not know the tag
    )["services"]
    assert override["tiny-radeon"] == {"devices": [], "group_add": [], "environment": {"LLAMA_ARG_N_GPU_LAYERS": "0"}}
    assert override["tiny-cuda"] == {"deploy": None, "environment": {"LLAMA_ARG_N_GPU_LAYERS": "0"}}
    assert "radeon" not in override, "a base is never started"


def vulkan_base(families: list[str]) -> Base:
    return Base.model_validate({"name": "v", "backend": "vulkan", "llama_cpp": SOURCE, "gpu_families": families})


@pytest.mark.parametrize(
    ("families", "resource"),
    [
        (["rdna3", "rdna3.5", "rdna4"], "amd.com/gpu"),
        (["intel-arc-alchemist", "intel-xe-igpu"], "gpu.intel.com/i915"),
        (["intel-arc-battlemage"], "gpu.intel.com/xe"),
    ],
)
def test_a_vulkan_pod_asks_for_its_families_device_plugin(families: list[str], resource: str) -> None:
    assert gpu_resources(vulkan_base(families)) == [resource]
    assert resource_problems(vulkan_base(families)) == []


def test_a_vulkan_base_that_names_no_family_or_two_device_plugins_is_refused_with_the_fix() -> None:
    (none,) = resource_problems(vulkan_base([]))
    assert "without gpu_families does not say which device plugin's GPU its pods ask for" in none
    assert none.endswith("name its families")
    (mixed,) = resource_problems(vulkan_base(["rdna3", "intel-arc-alchemist"]))
    assert "2 device plugins (amd.com/gpu, gpu.intel.com/i915)" in mixed
    assert mixed.endswith("put the families of each in a base of their own")


def test_kube_refuses_such_a_base_before_writing_anything(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(
        bases={"any": {"backend": "vulkan", "llama_cpp": SOURCE}}, models={"m": {**MODEL, "base": "any"}}
    )
    loaded, plan = plan_catalog(Paths.from_options(catalog, None))
    with pytest.raises(CatalogError, match="base any: a vulkan base without gpu_families"):
        manifests(loaded, plan, {})


def test_vulkan_pods_ask_one_gpu_of_their_plugin_and_pass_the_restricted_standard() -> None:
    deployments = {d["metadata"]["name"]: d for d in documents(GOLDEN / "kube") if d["kind"] == "Deployment"}
    for name, resource in (("tiny-radeon", "amd.com/gpu"), ("tiny-arc", "gpu.intel.com/i915")):
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["containers"][0]["resources"]["limits"] == {resource: 1}
        assert pod["tolerations"] == [{"key": resource, "operator": "Exists", "effect": "NoSchedule"}]
        assert "affinity" not in pod, "SPIR-V runs on every card of the plugin: no node is ruled out"
        assert restricted_violations(pod) == [], name


def test_the_vulkan_dockerfile_installs_the_sdk_to_build_and_mesa_to_run_and_says_when_no_gpu_is_reachable() -> None:
    text = (GOLDEN / "dockerfiles" / "radeon.Dockerfile").read_text(encoding="utf-8")
    build, runtime = text.split("FROM ${RUNTIME_IMAGE} AS runtime")
    assert "libssl-dev libvulkan-dev glslc spirv-headers $BUILD_PACKAGES" in build
    assert "--mount=type=cache,id=llama-bake-ccache-vulkan," in build
    assert "CMAKE_CUDA_COMPILER_LAUNCHER" not in build
    assert "libgomp1 libssl3 curl ca-certificates libvulkan1 mesa-vulkan-drivers\n" in runtime
    assert "llama-bake: no GPU render node (/dev/dri): llama.cpp will run on the CPU; pass /dev/dri" in runtime
    assert 'if [ -z "${GGML_VK_VISIBLE_DEVICES:-}" ]; then' in runtime, "quiet when a device is named (lavapipe)"
    assert "LLAMA_BAKE_BACKEND=${ENV_LLAMA_BAKE_BACKEND}" in runtime
    cuda = (GOLDEN / "dockerfiles" / "cuda.Dockerfile").read_text(encoding="utf-8")
    assert "vulkan" not in cuda.lower()
    assert "/dev/dri" not in cuda
