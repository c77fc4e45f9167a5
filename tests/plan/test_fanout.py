"""``ci plan``: base jobs per platform, model jobs packed under the runner's disk, refusals with the fix."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from llama_bake.cli import main
from llama_bake.errors import DiskBudgetError
from llama_bake.plan.disk import BASE_DISK
from llama_bake.plan.fanout import RUNNER_DISK, fan_out
from llama_bake.project import Paths, compile_catalog
from tests.conftest import BASE, SHA_A, WriteCatalog

GB = 1000**3
PULLED = BASE_DISK["cuda"].pulled
CPU = {"backend": "cpu", "llama_cpp": BASE["llama_cpp"]}


def model(size: int | None, base: str = "llama-cpp-cuda", **extra: Any) -> dict[str, Any]:
    weights: dict[str, Any] = {"url": "https://h/m.gguf", "sha256": SHA_A}
    if size is not None:
        weights["size"] = size
    return {"base": base, "weights": weights, **extra}


def plan_of(write_catalog: WriteCatalog, models: dict[str, Any], bases: dict[str, Any] | None = None) -> Any:
    catalog = write_catalog(models=models, bases=bases or {"llama-cpp-cuda": BASE})
    return compile_catalog(Paths.from_options(catalog, None)).plan


def test_small_models_share_a_job_under_the_budget_and_big_ones_get_their_own(write_catalog: WriteCatalog) -> None:
    sizes = {"a": 1, "b": 2, "c": 8, "d": 3, "e": 1}  # GB of weights: 3, 6, 24, 9, 3 GB of disk
    pulled = BASE_DISK["cpu"].pulled  # each job pulls its base's image once
    plan = plan_of(write_catalog, {name: model(size * GB, base="cpu") for name, size in sizes.items()}, {"cpu": CPU})
    planned = fan_out(plan, list(sizes), pulled + 34 * GB)
    assert [(j.job, j.targets, j.planned_disk) for j in planned.models] == [
        ("models-a-b-e", ("a", "b", "e"), pulled + 12 * GB),
        ("models-c-d", ("c", "d"), pulled + 33 * GB),
    ], "largest first, each into the first job it fits"
    assert all(j.bases == ("cpu",) for j in planned.models)
    assert fan_out(plan, list(sizes), pulled + 34 * GB) == planned, "the same plan every time"
    one_each = fan_out(plan, list(sizes), pulled + 24 * GB)
    assert [j.job for j in one_each.models] == ["models-a-b-d-e", "models-c"]


def test_a_base_job_per_platform(write_catalog: WriteCatalog) -> None:
    plan = plan_of(
        write_catalog,
        {"a": model(GB, base="cpu")},
        {"cpu": {"backend": "cpu", "llama_cpp": BASE["llama_cpp"], "platforms": ["linux/amd64", "linux/arm64"]}},
    )
    planned = fan_out(plan, ["a"], 40 * GB).as_json()
    assert [(b["job"], b["platform"]) for b in planned["bases"]] == [
        ("base-cpu-amd64", "linux/amd64"),
        ("base-cpu-arm64", "linux/arm64"),
    ]


def test_models_on_two_bases_never_share_a_job(write_catalog: WriteCatalog) -> None:
    bases = {"llama-cpp-cuda": BASE, "cpu": {"backend": "cpu", "llama_cpp": BASE["llama_cpp"]}}
    plan = plan_of(write_catalog, {"a": model(GB), "b": model(GB, base="cpu")}, bases)
    planned = fan_out(plan, ["a", "b"], 40 * GB)
    assert [(j.targets, j.bases) for j in planned.models] == [(("a",), ("llama-cpp-cuda",)), (("b",), ("cpu",))]
    assert [b.base for b in planned.bases] == ["cpu", "llama-cpp-cuda"]


def test_a_model_bigger_than_the_runner_is_refused_with_the_numbers_and_the_fix(write_catalog: WriteCatalog) -> None:
    plan = plan_of(write_catalog, {"gemma": model(16_500_000_000), "a": model(GB)})
    with pytest.raises(DiskBudgetError) as caught:
        fan_out(plan, ["gemma", "a"], RUNNER_DISK["github"])
    message = str(caught.value)
    assert "cannot fit on a runner with 40.0 GB of builder disk: model gemma: 59.6 GB planned" in message
    assert "--runner-disk" in message
    assert "delivery: fetch" in message
    assert caught.value.exit_code == 11


def test_a_model_of_unknown_size_builds_alone_with_a_warning(write_catalog: WriteCatalog) -> None:
    plan = plan_of(write_catalog, {"a": model(GB), "b": model(None), "c": model(GB)})
    planned = fan_out(plan, ["a", "b", "c"], 40 * GB)
    assert [(j.job, j.planned_disk) for j in planned.models] == [("models-a-c", PULLED + 6 * GB), ("models-b", None)]
    assert planned.warnings == (
        "model b: a weights size is not recorded, so its disk cannot be planned; it builds in a job of its own "
        "(`llama-bake pin b` records the sizes)",
    )


def test_long_job_names_say_their_first_and_last_model_and_how_many(write_catalog: WriteCatalog) -> None:
    names = [f"model-with-a-long-name-{i}" for i in range(4)]
    plan = plan_of(write_catalog, {name: model(GB) for name in names})
    [job] = fan_out(plan, names, 40 * GB).models
    assert job.job == "models-model-with-a-long-name-0-to-model-with-a-long-name-3-4"


def test_ci_plan_prints_the_documented_json(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(models={"a": model(GB), "b": model(2 * GB)})
    result = CliRunner().invoke(main, ["ci", "plan", "-c", str(catalog), "--runner-disk", "40GB"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["runner_disk"] == 40 * GB
    assert [b["job"] for b in data["bases"]] == ["base-llama-cpp-cuda-amd64"]
    assert data["models"] == [
        {"job": "models-a-b", "targets": ["a", "b"], "bases": ["llama-cpp-cuda"], "planned_disk": PULLED + 9 * GB}
    ]
    gitlab = CliRunner().invoke(main, ["ci", "plan", "-c", str(catalog), "--provider", "gitlab"])
    assert gitlab.exit_code == 0, "a base's planned (not measured) figure warns, it does not refuse"
    assert "base llama-cpp-cuda: 32.0 GB planned for its build (from the images' published sizes, not measured)" in (
        gitlab.stderr
    )
    assert "saas-linux-medium-amd64" in gitlab.stderr
    bad = CliRunner().invoke(main, ["ci", "plan", "-c", str(catalog), "--runner-disk", "lots"])
    assert bad.exit_code == 2
    assert "is not a size" in bad.output
