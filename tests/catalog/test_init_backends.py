"""`llama-bake init` with the cards people name: NVIDIA cards give a cuda base, AMD and Intel cards a vulkan base
(one per device plugin when they need several), side by side when both are named; each says which family it
chose."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llama_bake.catalog import authoring
from llama_bake.catalog.authoring import chosen_families, init_catalog
from llama_bake.catalog.edits import render_vendors
from llama_bake.catalog.loader import load_catalog
from llama_bake.cli import main
from llama_bake.errors import UsageError
from llama_bake.project import Paths, plan_catalog
from llama_bake.render.kube import manifests, resource_problems
from tests.conftest import MODEL, write_yaml


def init(tmp_path: Path, *cards: str) -> tuple[Path, str]:
    args = [a for card in cards for a in ("--gpu", card)]
    result = CliRunner().invoke(main, ["init", str(tmp_path / "proj"), *args])
    assert result.exit_code == 0, result.output
    return tmp_path / "proj" / "catalog", result.output


def test_the_cards_are_grouped_by_backend_in_the_order_given() -> None:
    words = ["RTX 4090", "Arc A770", "Radeon RX 7900 XTX", "L40S", "Ryzen AI Max+ 395"]
    assert chosen_families(words) == {"cuda": ["ada"], "vulkan": ["intel-arc-alchemist", "rdna3", "rdna3.5"]}


def test_an_amd_card_gives_a_vulkan_base_and_says_its_family(tmp_path: Path) -> None:
    catalog, output = init(tmp_path, "Radeon RX 7900 XTX")
    assert sorted(p.name for p in (catalog / "bases").iterdir()) == ["llama-cpp-vulkan.yaml"]
    base = yaml.safe_load((catalog / "bases" / "llama-cpp-vulkan.yaml").read_text())
    assert (base["backend"], base["gpu_families"]) == ("vulkan", ["rdna3"])
    assert "cuda" not in base
    assert "the vulkan base `llama-cpp-vulkan` is for: rdna3 (Radeon RX 7600-7900 XTX" in output
    assert "next: `llama-bake add OWNER/REPO:QUANT`, then" in output
    assert CliRunner().invoke(main, ["generate", "-c", str(catalog)]).exit_code == 0


def test_nvidia_and_intel_cards_give_a_cuda_and_a_vulkan_base_and_models_name_theirs(tmp_path: Path) -> None:
    catalog, output = init(tmp_path, "RTX 4090", "Arc A770")
    cuda = yaml.safe_load((catalog / "bases" / "llama-cpp-cuda.yaml").read_text())
    vulkan = yaml.safe_load((catalog / "bases" / "llama-cpp-vulkan.yaml").read_text())
    assert (cuda["backend"], cuda["gpu_families"]) == ("cuda", ["ada"])
    assert (vulkan["backend"], vulkan["gpu_families"]) == ("vulkan", ["intel-arc-alchemist"])
    assert "the CUDA base compiles for: ada (RTX 40" in output
    assert "the vulkan base `llama-cpp-vulkan` is for: intel-arc-alchemist (Arc A310-A770" in output
    assert "--base llama-cpp-cuda or --base llama-cpp-vulkan" in output
    assert "--base BASE" in (catalog / "models" / "README.md").read_text()
    listed = CliRunner().invoke(main, ["list", "-c", str(catalog)]).output
    rows = {line.split()[0]: line.split()[3] for line in listed.splitlines()[1:]}
    assert rows == {"llama-cpp-cuda": "cuda:ada", "llama-cpp-vulkan": "vulkan:intel-arc-alchemist"}


def test_a_word_that_names_no_card_is_refused_with_every_family(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(tmp_path / "proj"), "--gpu", "Voodoo 5"])
    assert result.exit_code == 2
    assert "--gpu 'Voodoo 5': not a family llama-bake knows. Known: volta" in result.output
    assert "rdna3.5 (Ryzen AI Max+ 395" in result.output
    assert not (tmp_path / "proj" / "catalog").exists()


def test_amd_and_intel_cards_get_a_vulkan_base_per_device_plugin_which_kube_accepts(tmp_path: Path) -> None:
    catalog, output = init(tmp_path, "Radeon RX 7900 XTX", "Arc A770", "Ryzen AI Max+ 395", "Arc B580", "Iris Xe")
    bases = {p.stem: yaml.safe_load(p.read_text()) for p in (catalog / "bases").iterdir()}
    assert {name: base["gpu_families"] for name, base in bases.items()} == {
        "llama-cpp-vulkan-amd": ["rdna3", "rdna3.5"],
        "llama-cpp-vulkan-intel-i915": ["intel-arc-alchemist", "intel-xe-igpu"],
        "llama-cpp-vulkan-intel-xe": ["intel-arc-battlemage"],
    }
    assert "the vulkan base `llama-cpp-vulkan-amd` is for: rdna3 (" in output
    assert "; its pods ask for gpu.intel.com/xe" in output
    named = "--base llama-cpp-vulkan-amd or --base llama-cpp-vulkan-intel-i915 or --base llama-cpp-vulkan-intel-xe"
    assert named in output
    assert "the device plugin amd.com/gpu" in (catalog / "bases" / "llama-cpp-vulkan-amd.yaml").read_text()
    assert all(resource_problems(base) == [] for base in load_catalog(catalog).bases)
    for name in bases:
        write_yaml(catalog / "models" / f"m-{name}.yaml", {**MODEL, "base": name})
    loaded, plan = plan_catalog(Paths.from_options(catalog, None))
    files, _ = manifests(loaded, plan, {})
    limits = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
        for documents in files.values()
        for doc in documents
        if doc["kind"] == "Deployment"
    }
    assert {name: sorted(set(limit) - {"memory"}) for name, limit in limits.items()} == {
        "m-llama-cpp-vulkan-amd": ["amd.com/gpu"],
        "m-llama-cpp-vulkan-intel-i915": ["gpu.intel.com/i915"],
        "m-llama-cpp-vulkan-intel-xe": ["gpu.intel.com/xe"],
    }
    # The three images are one compile: the bases' build steps differ in no argument, only in names and labels.
    targets = [t for t in plan.targets if t.kind == "base"]
    assert len(targets) == 3
    assert len({(t.args, t.contexts, t.shape) for t in targets}) == 1


def test_the_cards_of_one_device_plugin_keep_one_vulkan_base(tmp_path: Path) -> None:
    catalog, output = init(tmp_path, "Arc A770", "Iris Xe")
    assert [p.name for p in (catalog / "bases").iterdir()] == ["llama-cpp-vulkan.yaml"]
    assert "its pods ask for" not in output


def test_the_kernel_names_the_makers_of_the_gpus_with_a_render_node(tmp_path: Path) -> None:
    for node, vendor in (("renderD129", "0x8086\n"), ("renderD128", "0x1002\n"), ("renderD130", "0x1002\n")):
        (tmp_path / node / "device").mkdir(parents=True)
        (tmp_path / node / "device" / "vendor").write_text(vendor)
    (tmp_path / "card0" / "device").mkdir(parents=True)  # a display node: not a render node
    (tmp_path / "card0" / "device" / "vendor").write_text("0x10de\n")
    (tmp_path / "renderD131").mkdir()  # no device (a virtual node): skipped
    assert render_vendors(tmp_path) == ["AMD", "Intel"]
    assert render_vendors(tmp_path / "absent") == []


@pytest.mark.parametrize(
    ("vendors", "said"),
    [
        (
            ["AMD"],
            "this machine has an AMD GPU (a render node in /dev/dri), but its family is not read from here: "
            "name the cards with --gpu, e.g. --gpu 'Radeon RX 7900 XTX', or a family",
        ),
        (
            ["AMD", "Intel"],
            "an AMD GPU and an Intel GPU (a render node in /dev/dri), but their families are not read "
            "from here: name the cards with --gpu, e.g. --gpu 'Radeon RX 7900 XTX', --gpu 'Arc A770'",
        ),
        (["NVIDIA"], "an NVIDIA GPU (a render node in /dev/dri), but no nvidia-smi reads its compute capability"),
        ([], "no NVIDIA GPU found here (no nvidia-smi): name the cards with --gpu"),
    ],
)
def test_without_gpu_words_init_says_which_gpus_it_sees_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vendors: list[str], said: str
) -> None:
    monkeypatch.setattr(authoring, "detect_families", lambda: [])  # no nvidia-smi here
    with pytest.raises(UsageError) as refused:
        init_catalog(tmp_path, [], vendors=lambda: vendors)
    assert said in str(refused.value)
    assert not (tmp_path / "catalog").exists()
