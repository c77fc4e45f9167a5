"""Where a base's compiler cache is exported and imported, and the bake that exports it (pure)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from llama_bake.buildx import ccache
from llama_bake.buildx.invocation import Phase, Site, make_invocation
from llama_bake.buildx.options import BuildOptions, CachePreset
from llama_bake.buildx.progress import Progress
from llama_bake.catalog.loader import load_catalog
from llama_bake.plan.ir import BakePlan
from llama_bake.plan.targets import make_plan
from tests.conftest import BASE, MODEL, WriteCatalog


def _plan(write_catalog: WriteCatalog, tmp_path: Path) -> BakePlan:
    catalog = write_catalog(bases={"base-a": BASE}, models={"model-a": MODEL})
    return make_plan(load_catalog(catalog), tmp_path, tmp_path)


def test_registry_and_local_stores_sit_beside_the_build_cache_and_gha_carries_none() -> None:
    assert ccache.store(CachePreset("registry", "reg/cache"), "b") == ccache.Store("registry", "reg/cache/b:ccache")
    assert ccache.store(CachePreset("local", "/c"), "b") == ccache.Store("local", "/c/b.ccache")
    assert ccache.store(CachePreset("gha"), "b") is None
    assert ccache.store(None, "b") is None


def test_with_bases_in_gha_the_models_registry_carries_it(write_catalog: WriteCatalog, tmp_path: Path) -> None:
    plan = _plan(write_catalog, tmp_path)
    github = BuildOptions(base_cache=CachePreset("gha"), model_cache=CachePreset("registry", "ghcr.io/a/cache"))
    assert ccache.stores(github, plan, ["base-a"]) == {
        "base-a": ccache.Store("registry", "ghcr.io/a/cache/base-a:ccache")
    }
    assert ccache.stores(BuildOptions(cache=CachePreset("gha")), plan, ["base-a"]) == {}


def test_the_last_export_is_pinned_by_digest_and_none_before_the_first(tmp_path: Path) -> None:
    local = ccache.Store("local", str(tmp_path / "b.ccache"))
    assert ccache.last_export(local, lambda ref: None) is None
    (tmp_path / "b.ccache").mkdir()
    (tmp_path / "b.ccache" / "index.json").write_text(json.dumps({"manifests": [{"digest": "sha256:" + "1" * 64}]}))
    assert ccache.last_export(local, lambda ref: None) == f"oci-layout://{tmp_path}/b.ccache@sha256:{'1' * 64}"
    remote = ccache.Store("registry", "127.0.0.1:5000/cache/b:ccache")
    assert ccache.last_export(remote, lambda ref: None) is None
    found = ccache.last_export(remote, lambda ref: "sha256:" + "2" * 64)
    assert found == f"docker-image://127.0.0.1:5000/cache/b@sha256:{'2' * 64}"


def test_the_base_phase_imports_the_last_export_as_the_ccache_context(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    plan = _plan(write_catalog, tmp_path)
    options = BuildOptions(cache=CachePreset("registry", "reg/cache"))
    invocation = make_invocation(
        options,
        plan,
        Phase("bases", ("base-a",), ("base-a",)),
        Site(
            tmp_path / "docker-bake.hcl",
            tmp_path,
            tmp_path,
            ccache_imports={"base-a": "docker-image://reg/cache/base-a@sha256:x"},
        ),
    )
    flags = list(invocation.flags)
    assert flags[flags.index("base-a.contexts.ccache=docker-image://reg/cache/base-a@sha256:x") - 1] == "--set"


def test_the_export_bake_builds_the_export_stage_to_the_store_only(write_catalog: WriteCatalog, tmp_path: Path) -> None:
    plan = _plan(write_catalog, tmp_path)
    options = BuildOptions(
        cache=CachePreset("local", str(tmp_path / "cache")),
        sets=("base-a.args.X=1", "base-a.output=type=image"),
        image_overrides=("ubuntu:24.04=oci-layout:///u",),
    )
    stores = ccache.stores(options, plan, ["base-a", "model-a"])
    assert list(stores) == ["base-a"]
    invocation = ccache.export_invocation(
        options, plan, stores, Site(tmp_path / "docker-bake.hcl", tmp_path / "elsewhere", tmp_path)
    )
    sets = [v for f, v in zip(invocation.flags[::2], invocation.flags[1::2], strict=True) if f == "--set"]
    assert "base-a.target=ccache-export" in sets
    assert f"base-a.output=type=oci,dest={tmp_path}/cache/base-a.ccache.new,tar=false" in sets
    assert "base-a.args.X=1" in sets, "the user's own overrides keep the compile's cache key"
    assert "base-a.output=type=image" not in sets, "one output: the store"
    assert "base-a.contexts.ubuntu:24.04=oci-layout:///u" in sets
    assert invocation.targets == ("base-a",)
    assert not invocation.push


def test_a_compile_is_found_by_its_statistics_line_and_a_models_line_counts_for_its_base(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    plan = _plan(write_catalog, tmp_path)
    progress = Progress()
    vertex = {"digest": "sha256:1", "name": "[model-a build 5/5] RUN cmake", "started": "2026-01-01T00:00:00Z"}
    progress.feed(json.dumps({"vertexes": [vertex]}))
    log = "llama-bake: ccache: 37 hits, 3 misses\n"
    progress.feed(
        json.dumps({"logs": [{"vertex": "sha256:1", "stream": 1, "data": base64.b64encode(log.encode()).decode()}]})
    )
    found = ccache.compiled(progress, plan, ["base-a", "model-a"])
    assert found == {"base-a": ccache.Stats(37, 3)}
    assert found["base-a"].rate == 37 / 40


def test_the_summary_gives_a_compiled_base_its_hit_rate(write_catalog: WriteCatalog, tmp_path: Path) -> None:
    from llama_bake.buildx.summary import summarize
    from llama_bake.cli.console import summary_text

    plan = _plan(write_catalog, tmp_path)
    progress = Progress()
    vertex = {"digest": "sha256:1", "name": "[base-a build 5/5] RUN cmake", "started": "2026-01-01T00:00:00Z"}
    progress.feed(json.dumps({"vertexes": [vertex]}))
    log = base64.b64encode(b"llama-bake: ccache: 9 hits, 1 misses\n").decode()
    progress.feed(json.dumps({"logs": [{"vertex": "sha256:1", "stream": 1, "data": log}]}))
    summary = summarize(plan, ["base-a", "model-a"], progress, {}, 1.0, "b")
    rows = {row["name"]: row for row in json.loads(summary.to_json())["targets"]}
    assert (rows["base-a"]["ccache_hits"], rows["base-a"]["ccache_misses"]) == (9, 1)
    assert rows["base-a"]["ccache_hit_rate"] == 0.9
    assert rows["model-a"]["ccache_hit_rate"] is None
    assert "base-a: compiler cache 90% hits (9 of 10 compiles)" in summary_text(summary)


def test_in_a_bake_of_the_base_alone_a_stage_named_line_counts_for_it(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    plan = _plan(write_catalog, tmp_path)
    progress = Progress()
    # One target: bake names the steps after their stages, not the target.
    vertex = {"digest": "sha256:1", "name": "[build 1/1] RUN cmake", "started": "2026-01-01T00:00:00Z"}
    progress.feed(json.dumps({"vertexes": [vertex]}))
    log = base64.b64encode(b"llama-bake: ccache: 0 hits, 7 misses\n").decode()
    progress.feed(json.dumps({"logs": [{"vertex": "sha256:1", "stream": 1, "data": log}]}))
    assert ccache.compiled(progress, plan, ["base-a"]) == {"base-a": ccache.Stats(0, 7)}
