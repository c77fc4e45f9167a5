"""``llama-bake build`` on a fake buildx: the phases, the builder it uses, what it refuses before any work, Ctrl-C,
and what a failure says. The real builds are in tests/integration/test_build_buildkit.py."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from llama_bake.buildx.client import DockerRunner
from llama_bake.buildx.options import BuildOptions, CachePreset
from llama_bake.buildx.run import BuildInterrupted, dry_run, run_build
from llama_bake.errors import BuildError, CatalogError, DockerError, UsageError
from llama_bake.project import Paths
from tests.conftest import MODEL, WriteCatalog
from tests.fakes import FakeBaker, event

FAKE_DIGEST = "sha256:" + "d" * 64


@pytest.mark.tools  # a fake docker client runs
def test_dry_run_prints_exactly_the_commands_the_build_runs(
    write_catalog: WriteCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both phases: the fake docker records each call and writes bake's metadata file as buildx would."""
    record = tmp_path / "calls.jsonl"
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "argv = sys.argv[1:]\n"
        "meta = argv[argv.index('--metadata-file') + 1]\n"
        f"json.dump({{argv[-1]: {{'containerimage.digest': {FAKE_DIGEST!r}}}}}, open(meta, 'w'))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    paths = Paths.from_options(write_catalog(), None)
    options = BuildOptions(
        targets=("model-a",),
        builder="b",
        cache=CachePreset("local", str(tmp_path / "outside" / "cache")),
        variables=("TAG=v1",),
        sets=("*.platform=linux/amd64",),
        image_overrides=("ubuntu:24.04=oci-layout:///mirror/ubuntu",),
    )
    printed = dry_run(paths, options, DockerRunner()).splitlines()
    run_build(paths, options, DockerRunner())
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    # Each asks the builder what it can do first (this fake answers nothing: capabilities unknown, no refusal).
    assert [c for c in calls if c[:2] != ["buildx", "bake"]] == [["buildx", "inspect", "b"]] * 2
    recorded = [c for c in calls if c[:2] == ["buildx", "bake"]]
    assert len(printed) == len(recorded) == 2, "two phases: the base, then the model on its digest"

    def normal(argv: list[str]) -> list[str]:
        # Each run has its own temporary directory; the fake's digest stands for the first phase's.
        text = json.dumps(argv)
        text = re.sub(r"/tmp/llama-bake-[^/\"]+", "<tmp>", text)
        normalised: list[str] = json.loads(text.replace(FAKE_DIGEST, "<digest>"))
        return normalised

    for line, argv in zip(printed, recorded, strict=True):
        assert shlex.split(line)[0] == "docker", "as a person types it, not the path the client was found at"
        assert normal(argv) == normal(shlex.split(line)[1:])
    assert "model-a.contexts.base=oci-layout://<tmp>/bases/llama-cpp-cuda@<digest>" in printed[1]


def test_build_uses_the_builder_up_builder_and_falls_back_to_buildxs_current_one(
    write_catalog: WriteCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_BAKE_BUILDER", "ours")
    paths = Paths.from_options(write_catalog(), None)
    built = ("llama-cpp-cuda", "model-a")  # what the `default` group builds
    present = FakeBaker({"ours"}, built=built)
    summary = run_build(paths, BuildOptions(), present)
    assert present.builders_used == ["ours"]
    assert summary.builder == "ours"
    absent = FakeBaker({None}, built=built)
    summary = run_build(paths, BuildOptions(), absent)
    # The probe found no `ours`: one bake, on buildx's current builder, and no stray "no builder" message.
    assert absent.builders_used == [None]
    assert summary.builder == "(buildx default)"
    assert not [m for m in summary.messages if "no builder" in m]


def test_a_builder_named_on_the_command_line_is_never_swapped_for_another(
    write_catalog: WriteCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = Paths.from_options(write_catalog(), None)
    runner = FakeBaker({None})
    with pytest.raises(DockerError, match="there is no builder `mine`"):
        run_build(paths, BuildOptions(builder="mine"), runner)
    assert runner.builders_used == ["mine"]
    other_failure = FakeBaker(stderr="ERROR: failed to solve: something else\n")
    monkeypatch.setenv("LLAMA_BAKE_BUILDER", "ours")
    with pytest.raises(BuildError, match="something else"):
        run_build(paths, BuildOptions(), other_failure)
    assert other_failure.builders_used == ["ours"]


CANCELED = "ERROR: failed to solve: Canceled: context canceled\n"


def _ctrl_c() -> None:
    """buildx exits from the user's Ctrl-C before Python raises KeyboardInterrupt (the other order of the race)."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        pass


@pytest.mark.skipif(sys.platform == "win32", reason="os.kill(SIGINT) ends the process on Windows")
def test_ctrl_c_is_an_interruption_whichever_process_sees_it_first(write_catalog: WriteCatalog) -> None:
    paths = Paths.from_options(write_catalog(), None)
    with pytest.raises(BuildInterrupted, match="interrupted; the builder cancels the running steps") as caught:
        run_build(paths, BuildOptions(builder="b"), FakeBaker(stderr=CANCELED, before=_ctrl_c))
    assert caught.value.exit_code == 130


def test_pushed_bases_pin_their_models_by_repository_and_digest(
    write_catalog: WriteCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = Paths.from_options(write_catalog(), None)
    runner = FakeBaker()
    checked: list[list[str]] = []
    monkeypatch.setattr("llama_bake.buildx.run.check_push", lambda repositories: checked.append(list(repositories)))
    summary = run_build(paths, BuildOptions(builder="b", push=True, cache=CachePreset("gha")), runner)
    assert checked == [["localhost:5000/llama-bake/llama-cpp-cuda", "localhost:5000/llama-bake/model-a"]], "once"
    assert [c.targets for c in runner.calls] == [("llama-cpp-cuda",), ("model-a",)]
    assert "model-a.contexts.base=docker-image://127.0.0.1:5000/lb/llama-cpp-cuda@sha256:llama-cpp-cuda" in (
        runner.calls[1].flags
    )
    model = next(t for t in summary.targets if t.name == "model-a")
    assert model.base_digest == "sha256:llama-cpp-cuda"
    assert model.digest == "sha256:model-a"
    assert summary.phases == 2


def test_a_base_that_fails_skips_its_models_and_says_so(write_catalog: WriteCatalog) -> None:
    paths = Paths.from_options(write_catalog(), None)
    runner = FakeBaker(fail="llama-cpp-cuda")
    with pytest.raises(BuildError) as caught:
        run_build(paths, BuildOptions(builder="b", cache=CachePreset("gha")), runner)
    assert len(runner.calls) == 1, "the models' phase never starts"
    message = str(caught.value)
    assert "target `llama-cpp-cuda` failed at step `RUN compile`" in message
    assert "skipped, their base did not build: model-a" in message


@pytest.mark.parametrize(
    "said", ["unknown flag: --builder\nSee 'docker --help'.\n", "docker: 'buildx' is not a docker command.\n"]
)
def test_a_docker_client_without_buildx_gets_told_how_to_install_it(write_catalog: WriteCatalog, said: str) -> None:
    paths = Paths.from_options(write_catalog(), None)
    with pytest.raises(DockerError, match="the docker client has no buildx plugin: install it") as caught:
        run_build(paths, BuildOptions(builder="b"), FakeBaker(stderr=said))
    assert caught.value.exit_code == 5


def test_build_and_dry_run_refuse_placeholder_pins_before_any_work(write_catalog: WriteCatalog) -> None:
    """The shipped catalog's all-zero pins would download gigabytes, then fail the checksum: refused first,
    naming the model and the command that fixes it. generate works on them and warns."""
    from click.testing import CliRunner

    from llama_bake.cli import main

    zero = {"weights": {"hf": "o/r-GGUF", "file": "m.gguf", "revision": "0" * 40, "sha256": "0" * 64}}
    catalog = write_catalog(models={"zero": zero, "model-a": MODEL})
    paths = Paths.from_options(catalog, None)
    runner = FakeBaker()
    with pytest.raises(CatalogError, match=r"model zero: weights.revision, weights.sha256 .*`llama-bake pin zero`"):
        run_build(paths, BuildOptions(builder="b"), runner)
    assert runner.calls == []
    with pytest.raises(CatalogError, match="llama-bake pin zero"):
        dry_run(paths, BuildOptions(builder="b"), runner)
    summary = run_build(paths, BuildOptions(builder="b", targets=("model-a",)), runner)
    assert [t.name for t in summary.targets] == ["llama-cpp-cuda", "model-a"], "the pinned model builds, with its base"
    generated = CliRunner().invoke(main, ["generate", "-c", str(catalog)])
    assert generated.exit_code == 0
    assert "warning: model zero: weights.revision, weights.sha256 still the all-zero placeholder" in generated.output
    empty = Paths.from_options(write_catalog(models={}), None)
    for model in catalog.glob("models/*"):
        model.unlink()
    with pytest.raises(UsageError, match="the catalog has no model yet"):
        run_build(empty, BuildOptions(builder="b"), runner)


def test_a_canceled_vertex_in_a_target_buildx_built_does_not_fail_the_build(write_catalog: WriteCatalog) -> None:
    """Seen on a cold build of seven targets on one base: buildx exited 0 and reported every target's image, and
    one model's stream held a vertex that ended "context canceled". buildx's result wins: that target was built."""
    t0, t1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"
    steps = [
        {"digest": "a", "name": "[model-a 1/2] COPY weights", "started": t0, "completed": t1},
        {"digest": "b", "name": "[model-a 2/2] RUN check", "started": t0, "completed": t1, "error": "context canceled"},
    ]
    paths = Paths.from_options(write_catalog(), None)
    runner = FakeBaker(built=("llama-cpp-cuda", "model-a"), progress=(event(vertexes=steps),))
    summary = run_build(paths, BuildOptions(builder="b"), runner)
    assert [(t.name, t.status) for t in summary.targets] == [("llama-cpp-cuda", "built"), ("model-a", "built")]


def test_a_build_that_buildx_calls_a_success_but_left_a_target_unfinished_exits_non_zero(
    write_catalog: WriteCatalog,
) -> None:
    from llama_bake.buildx.run import BuildFailed

    paths = Paths.from_options(write_catalog(), None)
    runner = FakeBaker(built=("llama-cpp-cuda",))  # buildx exits 0 with no word of model-a
    with pytest.raises(BuildFailed, match=r"not every target finished: model-a \(not started\)") as caught:
        run_build(paths, BuildOptions(targets=("model-a",)), runner)
    assert caught.value.exit_code != 0
    assert [t.status for t in caught.value.summary.targets] == ["built", "not started"]
