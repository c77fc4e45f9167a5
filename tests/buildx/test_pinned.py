"""Models built on bases built elsewhere (``--base-image``, ``--bases-from``): the options, what is refused before
any step, and the commands and summary of such a build, on the fake buildx. The real two-job build is in
tests/integration/test_fanout_buildkit.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llama_bake.buildx.options import BuildOptions, CachePreset
from llama_bake.buildx.pinned import PinnedBase, pinned_bases, read_bases_from
from llama_bake.buildx.run import dry_run, run_build
from llama_bake.cli import main
from llama_bake.errors import UsageError
from llama_bake.project import Paths
from tests.conftest import MODEL, WriteCatalog
from tests.fakes import FakeBaker

DIGEST = "sha256:" + "e" * 64
IMAGE = f"127.0.0.1:5000/lb/llama-cpp-cuda@{DIGEST}"


def summary_file(tmp_path: Path, *, status: str = "built", digest: str = DIGEST, pushed: bool = True) -> Path:
    """What `llama-bake build llama-cpp-cuda --push --summary-json FILE` writes (the fields read here)."""
    data = {
        "pushed": pushed,
        "phases": 1,
        "targets": [
            {
                "name": "llama-cpp-cuda",
                "image": "127.0.0.1:5000/lb/llama-cpp-cuda:v1",
                "digest": digest,
                "status": status,
            }
        ],
    }
    path = tmp_path / "base-summary.json"
    path.write_text(json.dumps(data))
    return path


def test_base_image_takes_an_image_pinned_by_digest_only() -> None:
    assert PinnedBase.parse(f"llama-cpp-cuda={IMAGE}").source == f"docker-image://{IMAGE}"
    for bad in ("llama-cpp-cuda", f"={IMAGE}", "llama-cpp-cuda=127.0.0.1:5000/lb/base:v1", "b=r@sha256:abc"):
        with pytest.raises(UsageError, match="write BASE=IMAGE@sha256:DIGEST"):
            PinnedBase.parse(bad)


def test_a_base_builds_summary_gives_its_repository_at_the_digest(tmp_path: Path) -> None:
    [pinned] = read_bases_from(summary_file(tmp_path))
    assert (pinned.name, pinned.image, pinned.problem) == ("llama-cpp-cuda", IMAGE, "")
    assert pinned.digest == DIGEST


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"status": "failed", "digest": ""}, "it did not build there (status: failed)"),
        ({"pushed": False}, "that build pushed nothing"),
        ({"digest": ""}, "it records no digest"),
    ],
)
def test_a_summary_without_a_pushed_digest_gives_the_problem_not_an_image(
    tmp_path: Path, changes: dict[str, object], problem: str
) -> None:
    [pinned] = read_bases_from(summary_file(tmp_path, **changes))  # type: ignore[arg-type]
    assert pinned.image == ""
    assert problem in pinned.problem


def test_base_image_wins_over_a_summary_file_and_a_bad_file_is_a_usage_error(tmp_path: Path) -> None:
    other = "127.0.0.1:5000/mirror/base@sha256:" + "f" * 64
    [pinned] = pinned_bases([f"llama-cpp-cuda={other}"], [summary_file(tmp_path)])
    assert pinned.image == other
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    with pytest.raises(UsageError, match="not a `llama-bake build --summary-json` file"):
        read_bases_from(junk)


def test_models_build_on_the_given_base_which_is_not_built(write_catalog: WriteCatalog, tmp_path: Path) -> None:
    """No first phase, no compiler cache for the base, only the model's own cache; the summary says which base
    image the model was built on."""
    paths = Paths.from_options(write_catalog(models={"model-a": MODEL, "model-b": MODEL}), None)
    runner = FakeBaker()
    given = pinned_bases([], [summary_file(tmp_path)])
    options = BuildOptions(builder="b", targets=("model-a",), cache=CachePreset("gha"), base_images=given)
    summary = run_build(paths, options, runner)
    [call] = runner.calls
    assert call.targets == ("model-a",)
    assert f"model-a.contexts.base=docker-image://{IMAGE}" in call.flags
    cache_sets = [f for f in call.flags if "cache" in f]
    assert cache_sets == [
        "model-a.cache-from=type=gha,scope=llama-bake-model-a",
        "model-a.cache-to=type=gha,scope=llama-bake-model-a,mode=max",
    ], "the model's own cache only: none of the base's, no compiler cache"
    assert [(t.name, t.base_digest) for t in summary.targets] == [("model-a", DIGEST)]
    assert json.loads(summary.to_json())["pushed"] is False


def test_dry_run_shows_the_pinned_base(write_catalog: WriteCatalog) -> None:
    paths = Paths.from_options(write_catalog(), None)
    given = pinned_bases([f"llama-cpp-cuda={IMAGE}"], [])
    [line] = dry_run(paths, BuildOptions(builder="b", base_images=given), FakeBaker()).splitlines()
    assert f"model-a.contexts.base=docker-image://{IMAGE}" in line
    assert "llama-cpp-cuda" not in line.replace(f"docker-image://{IMAGE}", "")


@pytest.mark.parametrize("changes", [{"status": "failed", "digest": ""}, {"pushed": False}])
def test_a_needed_base_without_a_pushed_digest_is_refused_before_any_step(
    write_catalog: WriteCatalog, tmp_path: Path, changes: dict[str, object]
) -> None:
    catalog = write_catalog()
    path = summary_file(tmp_path, **changes)  # type: ignore[arg-type]
    runner = FakeBaker()
    with pytest.raises(UsageError, match=r"cannot build on a base that no finished build pushed: `llama-cpp-cuda`"):
        run_build(Paths.from_options(catalog, None), BuildOptions(base_images=pinned_bases([], [path])), runner)
    assert runner.calls == []
    result = CliRunner().invoke(main, ["build", "-c", str(catalog), "--bases-from", str(path), "--dry-run"])
    assert result.exit_code == 2
    assert "llama-bake build BASE --push --summary-json FILE" in result.output


def test_a_base_image_the_catalog_does_not_have_is_refused(write_catalog: WriteCatalog) -> None:
    paths = Paths.from_options(write_catalog(), None)
    given = pinned_bases([f"llama-cpp-cud={IMAGE}"], [])
    with pytest.raises(UsageError, match="no base `llama-cpp-cud`; did you mean `llama-cpp-cuda`"):
        run_build(paths, BuildOptions(builder="b", base_images=given), FakeBaker())


def test_a_base_not_given_is_built_as_before(write_catalog: WriteCatalog, tmp_path: Path) -> None:
    """A summary that names other bases changes nothing for this catalog's."""
    catalog = write_catalog()
    runner = FakeBaker()
    given = (PinnedBase("some-other-base", IMAGE, "f.json"),)
    options = BuildOptions(builder="b", targets=("model-a",), base_images=given)
    summary = run_build(Paths.from_options(catalog, None), options, runner)
    assert [c.targets for c in runner.calls] == [("model-a",)], "one bake, the base with its model, as before"
    assert [t.name for t in summary.targets] == ["llama-cpp-cuda", "model-a"]


def test_one_base_given_and_one_built_in_the_same_build(write_catalog: WriteCatalog) -> None:
    """The base not given is built first; then every model, each on its own base's exact image."""
    cpu = {"backend": "cpu", "llama_cpp": {"git": "https://github.com/ggml-org/llama.cpp.git", "ref": "b6500"}}
    catalog = write_catalog(
        bases={
            "llama-cpp-cuda": {"llama_cpp": cpu["llama_cpp"], "cuda": "12.8.1", "gpu_families": ["ada"]},
            "cpu": cpu,
        },
        models={"on-cuda": {**MODEL, "base": "llama-cpp-cuda"}, "on-cpu": {**MODEL, "base": "cpu"}},
    )
    runner = FakeBaker()
    cpu_image = "127.0.0.1:5000/lb/cpu@" + DIGEST
    options = BuildOptions(builder="b", push=True, base_images=pinned_bases([f"cpu={cpu_image}"], []))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("llama_bake.buildx.run.check_push", lambda repositories: None)
        summary = run_build(Paths.from_options(catalog, None), options, runner)
    assert [c.targets for c in runner.calls] == [("llama-cpp-cuda",), ("on-cpu", "on-cuda")]
    models = runner.calls[1].flags
    assert f"on-cpu.contexts.base=docker-image://{cpu_image}" in models
    assert "on-cuda.contexts.base=docker-image://127.0.0.1:5000/lb/llama-cpp-cuda@sha256:llama-cpp-cuda" in models
    bases = {t.name: t.base_digest for t in summary.targets if t.name.startswith("on-")}
    assert bases == {"on-cpu": DIGEST, "on-cuda": "sha256:llama-cpp-cuda"}
    assert "cpu" not in [t.name for t in summary.targets]
