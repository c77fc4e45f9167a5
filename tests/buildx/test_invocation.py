"""Build options + the plan -> the bake command lines: phases, per-target caches, entitlements, outputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llama_bake.buildx import ccache
from llama_bake.buildx.client import Invocation
from llama_bake.buildx.invocation import Phase, Site, expand_targets, make_invocation, phases, refuse_other_platform
from llama_bake.buildx.options import BuildOptions, CachePreset
from llama_bake.errors import UsageError
from llama_bake.plan.ir import BakePlan
from llama_bake.project import Paths, compile_catalog
from tests.conftest import BASE, WriteCatalog

FAKE_DIGEST = "sha256:" + "d" * 64


def _invocation(plan: BakePlan, options: BuildOptions, tmp_path: Path, phase: int = 0) -> Invocation:
    step = phases(options, plan)[phase]
    images = {"llama-cpp-cuda": "oci-layout:///w/bases/llama-cpp-cuda@sha256:d"}
    return make_invocation(options, plan, step, Site(tmp_path / "bake.hcl", tmp_path, tmp_path), images)


def _sets(invocation: Invocation) -> list[str]:
    flags = list(invocation.flags)
    return [value for flag, value in zip(flags[::2], flags[1::2], strict=True) if flag == "--set"]


def test_local_cache_outside_the_project_gets_exactly_read_and_write_entitlements(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    paths = Paths.from_options(write_catalog(), None)
    plan = compile_catalog(paths).plan
    outside = Path("/var/tmp/llama-bake-cache")
    options = BuildOptions(cache=CachePreset("local", str(outside)), phases="one")
    inv = _invocation(plan, options, tmp_path)
    allows = [v for f, v in zip(inv.flags[::2], inv.flags[1::2], strict=True) if f == "--allow"]
    assert allows == [f"fs.read={outside}", f"fs.write={outside}"]
    inside = _invocation(plan, BuildOptions(cache=CachePreset("local", str(tmp_path / "c")), phases="one"), tmp_path)
    assert "--allow" not in inside.flags
    read_only = _invocation(plan, BuildOptions(cache=CachePreset("local", str(outside)), cache_export=False), tmp_path)
    assert f"fs.write={outside}" not in read_only.flags


def test_two_phases_whenever_a_cache_is_imported_or_when_asked(write_catalog: WriteCatalog) -> None:
    plan = compile_catalog(Paths.from_options(write_catalog(), None)).plan
    cache = CachePreset("registry", "r/c")
    one = Phase("all", ("default",), ("llama-cpp-cuda", "model-a"))
    assert phases(BuildOptions(), plan) == [one]
    two = [
        Phase("bases", ("llama-cpp-cuda",), ("llama-cpp-cuda",)),
        Phase("models", ("model-a",), ("model-a",)),
    ]
    assert phases(BuildOptions(cache=cache), plan) == two
    assert phases(BuildOptions(cache_from=("type=gha",)), plan) == two
    assert phases(BuildOptions(phases="two"), plan) == two
    assert phases(BuildOptions(cache=cache, phases="one"), plan) == [one]
    assert phases(BuildOptions(targets=("bases",), cache=cache), plan) == [
        Phase("all", ("bases",), ("llama-cpp-cuda",))
    ], "no model: nothing to pin"


def test_each_target_gets_its_own_cache_and_a_pinned_model_reads_only_its_own(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    plan = compile_catalog(Paths.from_options(write_catalog(), None)).plan
    options = BuildOptions(cache=CachePreset("registry", "r/c"))
    assert _sets(_invocation(plan, options, tmp_path, 0)) == [
        "llama-cpp-cuda.cache-from=type=registry,ref=r/c/llama-cpp-cuda:buildcache",
        "llama-cpp-cuda.cache-to=type=registry,ref=r/c/llama-cpp-cuda:buildcache,mode=max",
        f"llama-cpp-cuda.output=type=oci,dest={tmp_path}/bases/llama-cpp-cuda,tar=false,compression=zstd",
    ]
    assert _sets(_invocation(plan, options, tmp_path, 1)) == [
        "model-a.contexts.base=oci-layout:///w/bases/llama-cpp-cuda@sha256:d",
        "model-a.cache-from=type=registry,ref=r/c/model-a:buildcache",
        "model-a.cache-to=type=registry,ref=r/c/model-a:buildcache,mode=max",
    ]
    one = _invocation(plan, BuildOptions(cache=CachePreset("gha"), phases="one"), tmp_path)
    assert "model-a.cache-from=type=gha,scope=llama-bake-llama-cpp-cuda" in _sets(one), "one bake: the base's too"


def test_bases_and_models_can_use_different_caches_and_import_only(write_catalog: WriteCatalog, tmp_path: Path) -> None:
    plan = compile_catalog(Paths.from_options(write_catalog(), None)).plan
    options = BuildOptions(
        base_cache=CachePreset("gha"), model_cache=CachePreset("registry", "r/c"), cache_export=False, push=True
    )
    assert _sets(_invocation(plan, options, tmp_path, 0)) == [
        "llama-cpp-cuda.cache-from=type=gha,scope=llama-bake-llama-cpp-cuda",
        "*.output=type=image,push=true,compression=zstd",
    ], "pushed: no layout; import only: no cache-to"
    assert _sets(_invocation(plan, options, tmp_path, 1))[1:-1] == [
        "model-a.cache-from=type=registry,ref=r/c/model-a:buildcache"
    ]


def test_rewrite_timestamps_is_on_every_image_output_the_build_writes(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    catalog = write_catalog(project={"source_date_epoch": 1700000000, "rewrite_timestamps": True})
    plan = compile_catalog(Paths.from_options(catalog, None)).plan
    two = BuildOptions(phases="two")
    attrs = "compression=zstd,rewrite-timestamp=true"
    assert _sets(_invocation(plan, two, tmp_path, 0)) == [
        f"llama-cpp-cuda.output=type=oci,dest={tmp_path}/bases/llama-cpp-cuda,tar=false,{attrs}",
    ]
    assert plan.exporter_attrs == f",{attrs}", "what the bake file's image output carries too"
    pushed = _invocation(plan, BuildOptions(push=True), tmp_path)
    assert _sets(pushed) == [f"*.output=type=image,push=true,{attrs}"]
    assert pushed.push, "and --push, which buildx may apply before or after that output"
    assert _sets(_invocation(plan, BuildOptions(load=True), tmp_path)) == [f"*.output=type=docker,{attrs}"]
    own = BuildOptions(outputs=("type=oci,dest=out/{target}.tar", "type=cacheonly"))
    assert _sets(_invocation(plan, own, tmp_path)) == [
        f"llama-cpp-cuda.output=type=oci,dest=out/llama-cpp-cuda.tar,{attrs}",
        f"model-a.output=type=oci,dest=out/model-a.tar,{attrs}",
        "*.output=type=cacheonly",
    ]
    plain = compile_catalog(Paths.from_options(write_catalog(project={}), None)).plan
    assert not any("rewrite-timestamp" in s for s in _sets(_invocation(plain, two, tmp_path, 0))), "off by default"


@pytest.mark.parametrize(
    ("project", "attrs"),
    [
        ({}, "compression=zstd"),
        ({"compression": "zstd", "compression_level": 1}, "compression=zstd,compression-level=1"),
        ({"compression": "uncompressed"}, "compression=uncompressed"),
        ({"compression": "gzip"}, "compression=gzip,force-compression=true"),
    ],
)
def test_every_output_that_writes_an_image_carries_the_catalogs_compression(
    write_catalog: WriteCatalog, tmp_path: Path, project: dict[str, object], attrs: str
) -> None:
    plan = compile_catalog(Paths.from_options(write_catalog(project=project), None)).plan
    pushed = _invocation(plan, BuildOptions(push=True), tmp_path)
    assert (_sets(pushed), pushed.push) == ([f"*.output=type=image,push=true,{attrs}"], True)
    assert _sets(_invocation(plan, BuildOptions(load=True), tmp_path)) == [f"*.output=type=docker,{attrs}"]
    layout = _sets(_invocation(plan, BuildOptions(phases="two"), tmp_path, 0))
    assert layout == [f"llama-cpp-cuda.output=type=oci,dest={tmp_path}/bases/llama-cpp-cuda,tar=false,{attrs}"]
    own = BuildOptions(outputs=("type=oci,dest=o.tar,compression=estargz", "type=local,dest=d"), phases="one")
    assert _sets(_invocation(plan, own, tmp_path)) == [
        f"*.output={','.join(['type=oci,dest=o.tar,compression=estargz', *attrs.split(',')[1:]])}",
        "*.output=type=local,dest=d",
    ], "the user's own compression stays; a directory output is no image"
    assert _sets(_invocation(plan, BuildOptions(phases="one"), tmp_path)) == [], "the bake file's output stands"
    both = _sets(_invocation(plan, BuildOptions(push=True, load=True), tmp_path))
    assert both == [f"*.output=type=docker,{attrs}", f"*.output=type=image,push=true,{attrs}"]


def test_targets_and_groups_expand_and_unknown_names_suggest(write_catalog: WriteCatalog) -> None:
    plan = compile_catalog(Paths.from_options(write_catalog(), None)).plan
    assert expand_targets(plan, ["default"]) == ["model-a"]
    assert expand_targets(plan, ["llama-cpp-cuda-all"]) == ["llama-cpp-cuda", "model-a"]
    with pytest.raises(UsageError, match="did you mean `model-a`"):
        expand_targets(plan, ["model-b"])


@pytest.mark.parametrize("item", ["*.network=host", "tiny.no-cache-filter=resplit"])
def test_a_set_that_buildx_would_silently_drop_is_refused_with_what_works(
    write_catalog: WriteCatalog, tmp_path: Path, item: str
) -> None:
    plan = compile_catalog(Paths.from_options(write_catalog(), None)).plan
    with pytest.raises(UsageError, match=rf"--set '{re.escape(item)}': buildx ignores"):
        _invocation(plan, BuildOptions(sets=(item,)), tmp_path)
    assert "*.platform=linux/amd64" in _sets(
        _invocation(plan, BuildOptions(sets=("*.platform=linux/amd64",)), tmp_path)
    )


def _two_platform_plan(write_catalog: WriteCatalog) -> BakePlan:
    base = {**BASE, "gpu_families": ["hopper"], "platforms": ["linux/amd64", "linux/arm64"]}
    catalog = write_catalog(bases={"cuda": base}, project={"registry": "registry.example.com/team"})
    return compile_catalog(Paths.from_options(catalog, None)).plan


def test_one_platform_of_a_base_of_several_is_pushed_by_digest_with_caches_of_its_own(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    """`--platform`: that platform alone, no tag pushed (a tag is the index `ci merge` writes), the build cache
    and compiler cache of that platform, imported first; a build of every platform imports each platform's too."""
    plan = _two_platform_plan(write_catalog)
    cache = CachePreset("registry", "r/c")
    options = BuildOptions(targets=("cuda",), push=True, cache=cache, platform="linux/arm64")
    sets = _sets(_invocation(plan, options, tmp_path))
    assert "cuda.platform=linux/arm64" in sets
    assert "cuda.tags=registry.example.com/team/cuda" in sets
    [output] = [s for s in sets if s.startswith("cuda.output=")]
    assert ",push-by-digest=true,name-canonical=true,name=registry.example.com/team/cuda" in output
    assert [s for s in sets if ".cache-" in s] == [
        "cuda.cache-from=type=registry,ref=r/c/cuda:buildcache-arm64",
        "cuda.cache-from=type=registry,ref=r/c/cuda:buildcache",
        "cuda.cache-to=type=registry,ref=r/c/cuda:buildcache-arm64,mode=max",
    ]
    assert ccache.stores(options, plan, ["cuda"])["cuda"].location == "r/c/cuda:ccache-arm64"
    export = ccache.export_invocation(
        options, plan, ccache.stores(options, plan, ["cuda"]), Site(tmp_path, tmp_path, tmp_path)
    )
    assert "cuda.platform=linux/arm64" in _sets(export), "the compiler cache of that platform only"
    whole = _sets(_invocation(plan, BuildOptions(targets=("cuda",), push=True, cache=cache), tmp_path))
    assert "*.output=type=image,push=true" in " ".join(whole)
    assert [s for s in whole if ".cache-from" in s] == [
        "cuda.cache-from=type=registry,ref=r/c/cuda:buildcache",
        "cuda.cache-from=type=registry,ref=r/c/cuda:buildcache-amd64",
        "cuda.cache-from=type=registry,ref=r/c/cuda:buildcache-arm64",
    ]


def test_a_platform_a_target_is_not_built_for_is_refused(write_catalog: WriteCatalog) -> None:
    plan = compile_catalog(Paths.from_options(write_catalog(), None)).plan
    with pytest.raises(UsageError, match=r"--platform linux/arm64: not a platform of llama-cpp-cuda \(linux/amd64\)"):
        refuse_other_platform(BuildOptions(platform="linux/arm64"), plan, ["llama-cpp-cuda"])
