"""Planned builder disk per target: the measured factor, the re-split copies, the projector, fetch, bases."""

from __future__ import annotations

from typing import Any

import pytest

from llama_bake.plan.disk import BAKED_WEIGHTS_FACTOR, BASE_DISK, build_needs, planned_disk, total
from llama_bake.project import Paths, compile_catalog
from tests.conftest import SHA_A, SHA_B, WriteCatalog

GB = 1000**3


def weights(size: int | None, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"url": "https://h/m.gguf", "sha256": SHA_A, **extra}
    if size is not None:
        data["size"] = size
    return data


@pytest.fixture
def plan(write_catalog: WriteCatalog) -> Any:
    models = {
        "small": {"weights": weights(2 * GB)},
        "vision": {"weights": weights(4 * GB), "mmproj": {"url": "https://h/p.gguf", "sha256": SHA_B, "size": GB}},
        "huge": {"weights": weights(16 * GB)},  # over the default max_layer_size of 9 GB: re-split
        "fetched": {"weights": weights(30 * GB), "delivery": "fetch"},
        "unknown": {"weights": weights(None)},
    }
    return compile_catalog(Paths.from_options(write_catalog(models=models), None)).plan


def test_a_baked_model_needs_three_times_its_weights_and_projector(plan: Any) -> None:
    assert BAKED_WEIGHTS_FACTOR["remote"] == 3.0  # measured: the download, the layer, the pushed blob
    assert planned_disk(plan, "small") == 6 * GB
    assert planned_disk(plan, "vision") == 15 * GB


def test_a_re_split_model_peaks_a_quarter_of_its_file_higher(plan: Any) -> None:
    assert plan.target("huge").shape.resplit_layers > 0
    assert planned_disk(plan, "huge") == 3.25 * 16 * GB  # measured: 3.24x at the re-split's peak


def test_a_local_file_needs_four_times_its_size(write_catalog: WriteCatalog, tmp_path: Any) -> None:
    models = {"local": {"weights": {"path": "m.gguf", "sha256": SHA_A, "size": 2 * GB}}}
    plan = compile_catalog(Paths.from_options(write_catalog(models=models), None)).plan
    assert plan.target("local").shape.sources[0] == "local"
    assert planned_disk(plan, "local") == 4 * 2 * GB  # measured: its context's copy comes on top


def test_fetched_weights_need_nothing_and_an_unrecorded_size_is_unknown(plan: Any) -> None:
    assert planned_disk(plan, "fetched") == 0
    assert planned_disk(plan, "unknown") is None


def test_a_base_has_its_planned_figure_built_and_pulled(plan: Any) -> None:
    assert planned_disk(plan, "llama-cpp-cuda") == BASE_DISK["cuda"].built
    needs = build_needs(plan, ["small"], ["llama-cpp-cuda"])
    assert [(n.name, n.what) for n in needs] == [("small", "built"), ("llama-cpp-cuda", "base image pulled")]
    assert total(needs) == 6 * GB + BASE_DISK["cuda"].pulled
    assert total(build_needs(plan, ["small", "unknown"], [])) is None
