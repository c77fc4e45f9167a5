"""The generated CI pipelines run as their providers run them (tests/ci_pipeline.py): each job in its own checkout
on its own empty builder, sharing only the registry on 127.0.0.1 (images and caches), the artifacts and the job
outputs. The fixture base stands in for the llama.cpp compile (tests/fixtures/buildkit)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from llama_bake.cli import main
from llama_bake.errors import DiskBudgetError
from llama_bake.generated import generate_set
from llama_bake.project import Paths, compile_catalog
from tests.ci_pipeline import PipelineRun
from tests.conftest import FIXTURE_TEMPLATES, WeightsServer, write_yaml

pytestmark = pytest.mark.buildkit

MODELS = ("w1", "w2", "w3")  # w3's checksum is wrong: its job fails
SHA = "0123456789abcdef0123456789abcdef01234567"
# A CPU base plans 4 GB to build and 1 GB to pull; a model of 600 MB plans 1.8 GB: one model per 4 GB runner.
RUNNER_DISK = "4GB"
PLANNED_SIZE = 600 * 10**6


def _project(root: Path, registry: str, stand_in: str, server: WeightsServer) -> Path:
    shutil.copytree(FIXTURE_TEMPLATES, root / "templates")
    (root / "src" / "llama.cpp").mkdir(parents=True)
    (root / "src" / "llama.cpp" / "VERSION").write_text("fixture source\n")
    catalog = root / "catalog"
    write_yaml(
        catalog / "project.yaml",
        {
            "registry": registry,
            "tag_scheme": ["{tag}", "sha-{git_sha}", "{git_branch}", "{git_version}"],
            "image_overrides": {"ubuntu:24.04": stand_in},
        },
    )
    write_yaml(
        catalog / "bases" / "base.yaml",
        {"backend": "cpu", "llama_cpp": {"path": "src/llama.cpp", "ref": "b1"}},
    )
    for name in MODELS:
        url, sha = server.add(f"{name}.gguf", 64 * 1024)
        # Recorded as PLANNED_SIZE for the plan, so that each model gets a job of its own on a RUNNER_DISK runner
        # (the files are 64 KB: the build does not check sizes).
        weights = {"url": url, "sha256": "f" * 64 if name == "w3" else sha, "size": PLANNED_SIZE}
        write_yaml(
            catalog / "models" / f"{name}.yaml", {"weights": weights, "server": {"env": {"FIXTURE_DOWNLOAD": "1"}}}
        )
    return catalog


def _tags(registry: str, repository: str) -> list[str]:
    done = subprocess.run(
        ["skopeo", "list-tags", "--tls-verify=false", f"docker://{registry}/{repository}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return sorted(yaml.safe_load(done.stdout)["Tags"]) if done.returncode == 0 else []


def _base_steps(job: Any) -> int:
    """The base's steps the job ran (from its --summary-json); 0 when the base is not in it."""
    return sum(t["steps_executed"] for t in job.summary()["targets"] if t["name"] == "base")


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_the_pipeline_compiles_the_base_once_and_each_model_job_builds_only_its_model(  # noqa: PLR0915 - one CI run, job by job
    tmp_path: Path,
    registry: str,
    stand_in_image: str,
    two_platform_stand_in: str,
    weights_server: WeightsServer,
    provider: str,
) -> None:
    """A push to the default branch, then a pull request, then a release, each job on an empty builder of its
    own. The push: the base job compiles once and pushes; each model job runs none of the base's steps, downloads
    only its own weights and pushes its image; the model with a wrong checksum fails its own job only, and the
    summary job exits 6 naming it. A model job whose disk budget is below its need stops before any step. The pull
    request: nothing is pushed, nothing compiled (the base comes from the cache), no cached weights downloaded.
    The release adds linux/arm64 to the base: a job per platform, each building its own platform alone and pushing
    it by digest, a merge job that makes the base's tag one index of exactly those images, and models for both
    platforms built on that index."""
    root = tmp_path / "repo"
    catalog = _project(root, f"{registry}/{provider}", stand_in_image, weights_server)
    argv = ["ci", provider, "--catalog", str(catalog), "--runner-disk", RUNNER_DISK]
    if provider == "github":
        argv += ["--cache", f"registry={registry}/{provider}/cache"]  # GitHub's own cache service is not here
    paths = Paths.from_options(catalog, None)
    written = root / (".github/workflows/llama-bake.yml" if provider == "github" else ".gitlab-ci.yml")
    document = _regenerate(argv, paths, written)
    if provider == "github":
        push = {"PUBLISH": "true", "GIT_SHA": SHA, "GIT_BRANCH": "main", "GIT_VERSION": ""}
        pull_request = {"PUBLISH": "false", "GIT_SHA": SHA, "GIT_BRANCH": "12/merge", "GIT_VERSION": ""}
        release = {"PUBLISH": "true", "GIT_SHA": SHA, "GIT_BRANCH": "", "GIT_VERSION": "v1.2.3"}
        assert "v*" in document["on"]["push"]["tags"], "a version tag runs the pipeline"
    else:
        ci = {"CI_COMMIT_SHA": SHA, "CI_REGISTRY_IMAGE": f"{registry}/{provider}", "CI_COMMIT_TAG": ""}
        push = ci | {"CI_COMMIT_BRANCH": "main"}
        pull_request = ci | {"CI_COMMIT_BRANCH": "feature"}
        release = ci | {"CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "v1.2.3"}

    # A push to the default branch.
    pipeline = PipelineRun(provider, document, root, tmp_path / "push", push)
    gets: dict[str, dict[str, int]] = {}
    original = pipeline._shell

    def counting(script: str, workdir: Path, env: Any) -> tuple[int, str]:
        before = dict(weights_server.gets)
        result = original(script, workdir, env)
        fetched = {k: v - before.get(k, 0) for k, v in weights_server.gets.items() if v != before.get(k, 0)}
        gets.setdefault(workdir.name, {}).update(fetched)
        return result

    pipeline._shell = counting  # type: ignore[method-assign]
    jobs = pipeline.run().jobs
    model_jobs = [f"models-{name}" for name in MODELS]
    merge_skipped = ["merge"] if provider == "github" else []  # no base of several platforms: nothing to merge
    assert list(jobs) == ["plan", "base-base-amd64", *merge_skipped, *model_jobs, "summary"]
    assert all(jobs[name].skipped for name in merge_skipped)
    for name in ("plan", "base-base-amd64", "models-w1", "models-w2"):
        assert jobs[name].ok, f"{name}:\n{jobs[name].output[-3000:]}"
    assert _base_steps(jobs["base-base-amd64"]) > 0, "the base job compiled"
    for name in model_jobs:
        assert _base_steps(jobs[name]) == 0, f"{name} ran the base's steps"
        assert gets.get(name, {}).keys() <= {f"{name.removeprefix('models-')}.gguf"}, gets
    assert gets["models-w1"] == {"w1.gguf": 1}
    assert gets["models-w2"] == {"w2.gguf": 1}
    assert gets.get("base-base-amd64", {}) == {}
    # The failed model fails its own job, with the build's own exit code, and the summary names it.
    assert jobs["models-w3"].returncode == 6, jobs["models-w3"].output[-3000:]
    assert jobs["summary"].returncode == 6, jobs["summary"].output[-3000:]
    assert "  w3 (failed, in llama-bake-summary-models-w3.json)" in jobs["summary"].output
    assert "  w1 (" not in jobs["summary"].output
    assert "  w2 (" not in jobs["summary"].output
    if provider == "github":  # the combined table is the run's job summary
        table = (tmp_path / "push" / "summary.step-summary.md").read_text()
        assert all(f"| {name} |" in table for name in ("base", *MODELS)), table
    assert _tags(registry, f"{provider}/w1") == ["latest", "main", "sha-0123456"]
    assert _tags(registry, f"{provider}/w3") == []

    # The same model job on a runner with less disk than it needs (the plan hands each job the runner's disk;
    # here a variable set for the pipeline): refused before any step, with its own exit code.
    weights_server.gets.clear()
    refused = pipeline.run_again("models-w1", "models-w1-small-runner", {"DISK_BUDGET": "100000"})
    assert refused.returncode == DiskBudgetError.exit_code, refused.output[-3000:]
    assert "over the 100.0 kB it has (--disk-budget); nothing was built" in refused.output
    assert dict(weights_server.gets) == {}, "no step ran"

    # A pull request that removes the failed model (one job fewer to run), every job on a new empty builder: built
    # from the caches, nothing pushed, compiled or downloaded.
    subprocess.run(
        ["skopeo", "delete", "--tls-verify=false", f"docker://{registry}/{provider}/w2:latest"],
        check=True,
        capture_output=True,
    )
    (catalog / "models" / "w3.yaml").unlink()
    document = _regenerate(argv, paths, written)
    weights_server.gets.clear()
    pr = PipelineRun(provider, document, root, tmp_path / "pull-request", pull_request).run().jobs
    assert list(pr) == ["plan", "base-base-amd64", *merge_skipped, "models-w1", "models-w2", "summary"]
    for name in ("plan", "base-base-amd64", "models-w1", "models-w2", "summary"):
        assert pr[name].ok, f"{name}:\n{pr[name].output[-3000:]}"
        if name not in ("plan", "summary"):
            assert _base_steps(pr[name]) == 0, f"{name} compiled the base on a pull request"
    assert dict(weights_server.gets) == {}, "the models' caches hold w1 and w2"
    assert "latest" not in _tags(registry, f"{provider}/w2"), "a pull request pushes nothing"
    assert _tags(registry, f"{provider}/w1") == ["latest", "main", "sha-0123456"], "no tag of the pull request's"

    # A release tag that adds linux/arm64 to the base, every job on a new empty builder: each platform of the base
    # in a job of its own, pushed by digest; the merge job makes one index of them under the base's tags; the
    # models, for both platforms, build on that index. Pushed, and tagged with the version (no branch tag).
    _two_platforms(catalog, two_platform_stand_in)
    document = _regenerate(argv, paths, written)
    released = PipelineRun(provider, document, root, tmp_path / "release", release).run().jobs
    _assert_two_platform_release(released, registry, provider, ["models-w1", "models-w2"])


def _regenerate(argv: list[str], paths: Paths, written: Path) -> Any:
    """The pipeline and the bake file written again after a catalog change (committed with it); the pipeline."""
    assert (done := CliRunner().invoke(main, argv)).exit_code == 0, done.output
    generate_set(paths, compile_catalog(paths), check=False)
    return yaml.safe_load(written.read_text())


def _assert_two_platform_release(released: dict[str, Any], registry: str, provider: str, model_jobs: list[str]) -> None:
    """The base is an index of both platforms whose images are the ones each platform's job pushed (each job
    built its own platform only); the models, for both platforms, build on that index; tagged with the version."""
    merge = "merge" if provider == "github" else "merge-base"
    platform_jobs = {"amd64": "base-base-amd64", "arm64": "base-base-arm64"}
    assert list(released) == ["plan", *platform_jobs.values(), merge, *model_jobs, "summary"]
    for name in ("plan", *platform_jobs.values(), merge, *model_jobs, "summary"):
        assert released[name].ok, f"{name}:\n{released[name].output[-3000:]}"
    assert "1.2.3" in _tags(registry, f"{provider}/base")
    index = _index(registry, f"{provider}/base:1.2.3")
    assert sorted(a for a, _ in index if a != "unknown") == ["amd64", "arm64"]
    for arch, job in platform_jobs.items():
        [part] = released[job].summary()["targets"]
        assert part["platforms"] == [f"linux/{arch}"], "each platform job built its own platform only"
        assert part["steps_executed"] > 0, "each platform job compiled its platform"
        pushed = _index(registry, f"{provider}/base@{part['digest']}")
        assert [a for a, _ in pushed if a != "unknown"] == [arch], f"{job} pushed its own platform's image only"
        assert dict(pushed)[arch] == dict(index)[arch], "the index names the image the platform job pushed"
    [merged] = released[merge].summary()["targets"]
    assert merged["digest"] == _digest(registry, f"{provider}/base:1.2.3")
    for name in ("models-w1", "models-w2"):
        [model] = [t for t in released[name].summary()["targets"] if t["name"] != "base"]
        assert model["base_digest"] == merged["digest"], "the models build on the merged index"
        assert _base_steps(released[name]) == 0, f"{name} ran the base's steps"
    assert sorted(a for a, _ in _index(registry, f"{provider}/w2:1.2.3") if a != "unknown") == ["amd64", "arm64"]
    assert _tags(registry, f"{provider}/w2") == ["1.2.3", "latest", "sha-0123456"]
    inspect = ["skopeo", "inspect", "--tls-verify=false", f"docker://{registry}/{provider}/w2:1.2.3"]
    labels = yaml.safe_load(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)["Labels"]
    assert labels["org.opencontainers.image.version"] == "1.2.3"


def _two_platforms(catalog: Path, stand_in: str) -> None:
    """The base for linux/amd64 and linux/arm64, its image a two-platform stand-in (arm64 emulated here)."""
    settings = yaml.safe_load((catalog / "project.yaml").read_text())
    write_yaml(catalog / "project.yaml", {**settings, "image_overrides": {"ubuntu:24.04": stand_in}})
    base = yaml.safe_load((catalog / "bases" / "base.yaml").read_text())
    write_yaml(catalog / "bases" / "base.yaml", {**base, "platforms": ["linux/amd64", "linux/arm64"]})


def _raw(registry: str, image: str) -> str:
    inspect = ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry}/{image}"]
    return subprocess.run(inspect, capture_output=True, text=True, check=True).stdout


def _index(registry: str, image: str) -> list[tuple[str, str]]:
    """An image index's manifests: (architecture, digest); ``unknown``: an attestation."""
    return [(m["platform"]["architecture"], m["digest"]) for m in json.loads(_raw(registry, image))["manifests"]]


def _digest(registry: str, image: str) -> str:
    return "sha256:" + hashlib.sha256(_raw(registry, image).encode()).hexdigest()
