"""The builder a build runs on, probed before any step: the route it takes and what it refuses (on a fake buildx)."""

from __future__ import annotations

import pytest

from llama_bake.buildx.driver import EngineInfo, capabilities
from llama_bake.buildx.options import BuildOptions, CachePreset
from llama_bake.buildx.probe import BuilderCannot
from llama_bake.buildx.run import run_build
from llama_bake.project import Paths
from tests.conftest import BASE, MODEL, WriteCatalog
from tests.fakes import FakeBaker

CLASSIC = EngineInfo("28.5.2", "classic", "overlay2")
CONTAINERD = EngineInfo("28.5.2", "containerd", "overlayfs")


def _classic() -> FakeBaker:
    return FakeBaker(caps=capabilities("docker", CLASSIC), built=("llama-cpp-cuda", "model-a"))


def test_the_shipped_default_provenance_builds_on_the_classic_store(write_catalog: WriteCatalog) -> None:
    paths = Paths.from_options(write_catalog(), None)
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
    paths = Paths.from_options(write_catalog(project=project), None)
    runner = _classic()
    with pytest.raises(BuilderCannot, match=said):
        run_build(paths, BuildOptions(targets=("model-a",), **options), runner)  # type: ignore[arg-type]
    assert runner.calls == [], "refused before any bake ran"


def test_several_platforms_are_refused_on_the_classic_store(write_catalog: WriteCatalog) -> None:
    base = {**BASE, "platforms": ["linux/amd64", "linux/arm64"], "gpu_families": ["hopper"]}
    paths = Paths.from_options(write_catalog(bases={"llama-cpp-cuda": base}, models={"model-a": MODEL}), None)
    runner = _classic()
    with pytest.raises(BuilderCannot, match="several platforms at once"):
        run_build(paths, BuildOptions(targets=("model-a",)), runner)
    assert runner.calls == []


def test_two_phases_on_the_classic_store_hand_the_base_over_through_the_engine(write_catalog: WriteCatalog) -> None:
    paths = Paths.from_options(write_catalog(), None)
    runner = _classic()
    cache = CachePreset("registry", "127.0.0.1:5000/c")
    run_build(paths, BuildOptions(targets=("model-a",), cache=cache, cache_export=False), runner)
    bases, models = runner.calls
    assert not [f for f in bases.flags if "type=oci" in f], "no OCI layout: the engine's store holds the base"
    [pinned] = [f for f in models.flags if ".contexts.base=" in f]
    assert pinned == "model-a.contexts.base=docker-image://127.0.0.1:5000/lb/llama-cpp-cuda:v1"
    assert not [f for f in models.flags if f.startswith("fs.read=")]
