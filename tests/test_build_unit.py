"""Build logic without BuildKit: the command line, cache presets, target expansion, progress parsing.
The real builds are proven in test_build_buildkit.py."""

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

from llama_bake import pipeline
from llama_bake.bake import Invocation, WhalesRunner
from llama_bake.build import BuildInterrupted, dry_run, git_environment, run_build
from llama_bake.errors import BuildError, CatalogError, DockerError, UsageError
from llama_bake.invocation import BuildOptions, CachePreset, Phase, expand_targets, make_invocation, phases
from llama_bake.plan import BakePlan
from llama_bake.progress import Progress
from llama_bake.summary import Summary, TargetSummary
from tests.conftest import MODEL, WriteCatalog
from tests.fakes import FakeBaker

FAKE_DIGEST = "sha256:" + "d" * 64


def test_dry_run_prints_exactly_the_commands_python_on_whales_runs(
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
    paths = pipeline.Paths.from_options(write_catalog(), None)
    options = BuildOptions(
        targets=("model-a",),
        builder="b",
        cache=CachePreset("local", str(tmp_path / "outside" / "cache")),
        variables=("TAG=v1",),
        sets=("*.platform=linux/amd64",),
        image_overrides=("ubuntu:24.04=oci-layout:///mirror/ubuntu",),
    )
    printed = dry_run(paths, options, WhalesRunner()).splitlines()
    run_build(paths, options, WhalesRunner())
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
        assert normal(argv) == normal(shlex.split(line)[1:])
    assert "model-a.contexts.base=oci-layout://<tmp>/bases/llama-cpp-cuda@<digest>" in printed[1]


def test_cache_presets_parse_and_reject_what_they_cannot_use() -> None:
    assert CachePreset.parse("gha") == CachePreset("gha")
    assert CachePreset.parse("registry=ghcr.io/acme/cache") == CachePreset("registry", "ghcr.io/acme/cache")
    assert CachePreset.parse("local=/tmp/c") == CachePreset("local", "/tmp/c")
    for bad in ("s3=bucket", "registry", "local=", "gha=x"):
        with pytest.raises(UsageError):
            CachePreset.parse(bad)


def _invocation(plan: BakePlan, options: BuildOptions, tmp_path: Path, phase: int = 0) -> Invocation:
    step = phases(options, plan)[phase]
    images = {"llama-cpp-cuda": "oci-layout:///w/bases/llama-cpp-cuda@sha256:d"}
    return make_invocation(options, plan, step, tmp_path / "bake.hcl", tmp_path / "m", tmp_path, tmp_path, images)


def _sets(invocation: Invocation) -> list[str]:
    flags = list(invocation.flags)
    return [value for flag, value in zip(flags[::2], flags[1::2], strict=True) if flag == "--set"]


def test_local_cache_outside_the_project_gets_exactly_read_and_write_entitlements(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    paths = pipeline.Paths.from_options(write_catalog(), None)
    plan = pipeline.compile_catalog(paths).plan
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
    plan = pipeline.compile_catalog(pipeline.Paths.from_options(write_catalog(), None)).plan
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
    plan = pipeline.compile_catalog(pipeline.Paths.from_options(write_catalog(), None)).plan
    options = BuildOptions(cache=CachePreset("registry", "r/c"))
    assert _sets(_invocation(plan, options, tmp_path, 0)) == [
        "llama-cpp-cuda.cache-from=type=registry,ref=r/c/llama-cpp-cuda:buildcache",
        "llama-cpp-cuda.cache-to=type=registry,ref=r/c/llama-cpp-cuda:buildcache,mode=max",
        f"llama-cpp-cuda.output=type=oci,dest={tmp_path}/bases/llama-cpp-cuda,tar=false",
    ]
    assert _sets(_invocation(plan, options, tmp_path, 1)) == [
        "model-a.contexts.base=oci-layout:///w/bases/llama-cpp-cuda@sha256:d",
        "model-a.cache-from=type=registry,ref=r/c/model-a:buildcache",
        "model-a.cache-to=type=registry,ref=r/c/model-a:buildcache,mode=max",
    ]
    one = _invocation(plan, BuildOptions(cache=CachePreset("gha"), phases="one"), tmp_path)
    assert "model-a.cache-from=type=gha,scope=llama-bake-llama-cpp-cuda" in _sets(one), "one bake: the base's too"


def test_bases_and_models_can_use_different_caches_and_import_only(write_catalog: WriteCatalog, tmp_path: Path) -> None:
    plan = pipeline.compile_catalog(pipeline.Paths.from_options(write_catalog(), None)).plan
    options = BuildOptions(
        base_cache=CachePreset("gha"), model_cache=CachePreset("registry", "r/c"), cache_export=False, push=True
    )
    assert _sets(_invocation(plan, options, tmp_path, 0)) == [
        "llama-cpp-cuda.cache-from=type=gha,scope=llama-bake-llama-cpp-cuda"
    ], "pushed: no layout; import only: no cache-to"
    assert _sets(_invocation(plan, options, tmp_path, 1))[1:] == [
        "model-a.cache-from=type=registry,ref=r/c/model-a:buildcache"
    ]


def test_rewrite_timestamps_is_on_every_image_output_the_build_writes(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    catalog = write_catalog(project={"source_date_epoch": 1700000000, "rewrite_timestamps": True})
    plan = pipeline.compile_catalog(pipeline.Paths.from_options(catalog, None)).plan
    two = BuildOptions(phases="two")
    assert _sets(_invocation(plan, two, tmp_path, 0)) == [
        "*.output=type=image,rewrite-timestamp=true",
        f"llama-cpp-cuda.output=type=oci,dest={tmp_path}/bases/llama-cpp-cuda,tar=false,rewrite-timestamp=true",
    ]
    pushed = _invocation(plan, BuildOptions(push=True), tmp_path)
    assert _sets(pushed) == ["*.output=type=image,rewrite-timestamp=true"]
    assert pushed.push, "--push adds push=true to that output"
    assert _sets(_invocation(plan, BuildOptions(load=True), tmp_path)) == [
        "*.output=type=docker,rewrite-timestamp=true"
    ]
    own = BuildOptions(outputs=("type=oci,dest=out/{target}.tar", "type=cacheonly"))
    assert _sets(_invocation(plan, own, tmp_path))[1:] == [
        "llama-cpp-cuda.output=type=oci,dest=out/llama-cpp-cuda.tar,rewrite-timestamp=true",
        "model-a.output=type=oci,dest=out/model-a.tar,rewrite-timestamp=true",
        "*.output=type=cacheonly",
    ]
    plain = pipeline.compile_catalog(pipeline.Paths.from_options(write_catalog(project={}), None)).plan
    assert not any("rewrite-timestamp" in s for s in _sets(_invocation(plain, two, tmp_path, 0))), "off by default"


def test_targets_and_groups_expand_and_unknown_names_suggest(write_catalog: WriteCatalog) -> None:
    plan = pipeline.compile_catalog(pipeline.Paths.from_options(write_catalog(), None)).plan
    assert expand_targets(plan, ["default"]) == ["model-a"]
    assert expand_targets(plan, ["llama-cpp-cuda-all"]) == ["llama-cpp-cuda", "model-a"]
    with pytest.raises(UsageError, match="did you mean `model-a`"):
        expand_targets(plan, ["model-b"])


def test_progress_counts_executed_and_cached_steps_per_target() -> None:
    progress = Progress()
    lines = [
        {"vertexes": [{"digest": "a", "name": "[m1 1/2] RUN x", "started": "2026-01-01T00:00:00.123456789Z"}]},
        {"vertexes": [{"digest": "a", "name": "[m1 1/2] RUN x", "completed": "2026-01-01T00:00:02Z"}]},
        {"vertexes": [{"digest": "b", "name": "[m1 internal] load", "started": "2026-01-01T00:00:00Z"}]},
        {
            "vertexes": [
                {
                    "digest": "c",
                    "name": "[m2 build 2/3] COPY y",
                    "cached": True,
                    "started": "2026-01-01T00:00:01Z",
                    "completed": "2026-01-01T00:00:01Z",
                }
            ]
        },
        {
            "vertexes": [
                {
                    "digest": "d",
                    "name": "[m2 2/2] RUN z",
                    "started": "2026-01-01T00:00:01Z",
                    "completed": "2026-01-01T00:00:03Z",
                    "error": "exit code: 3",
                }
            ]
        },
        {"logs": [{"vertex": "d", "data": "Ym9vbQo=", "timestamp": "2026-01-01T00:00:02Z"}]},
    ]
    for line in lines:
        progress.feed(json.dumps(line))
    progress.feed("WARNING: plain text from buildx")
    assert progress.target("m1").executed == 1
    assert progress.target("m1").cached == 0
    assert progress.target("m2").cached == 1
    assert progress.target("m1").wall_seconds == pytest.approx(2.0, abs=0.01)
    target, vertex = progress.failure() or ("", None)
    assert target == "m2"
    assert vertex is not None
    assert vertex.log == ["boom"]
    assert progress.messages == ["WARNING: plain text from buildx"]


def test_a_vertex_another_build_started_earlier_counts_from_this_builds_start() -> None:
    """BuildKit replays a shared vertex's history to a second build that reaches it (seen: two bakes of one
    Dockerfile 10 s apart on one builder; the second's stream had the first's start times): a target that took
    0.5 s must not be shown as taking the time since the other build began."""
    progress = Progress()
    for vertex in (
        {"digest": "d", "name": "[m1 internal] load build definition from m1.Dockerfile"},
        {"digest": "r", "name": "[m1 1/1] RUN x", "cached": True},
    ):
        stamps = {"started": "2026-01-01T00:01:52Z", "completed": "2026-01-01T00:01:52.5Z"}
        if vertex["digest"] == "r":  # the other build's run of the shared step
            stamps = {"started": "2026-01-01T00:00:00Z", "completed": "2026-01-01T00:01:50Z"}
        progress.feed(json.dumps({"vertexes": [vertex | stamps]}))
    assert progress.target("m1").wall_seconds == pytest.approx(0.5, abs=0.01)


def test_a_target_is_finished_when_its_steps_completed_or_sit_below_a_cache_hit() -> None:
    t0, t1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"
    progress = Progress()
    announced = [
        # BuildKit announces the whole graph; on a cache hit at `top`, it never starts `low` or `mid`.
        {"digest": "low", "name": "[m1 build 1/3] COPY src"},
        {"digest": "mid", "name": "[m1 build 2/3] RUN compile", "inputs": ["low"]},
        {"digest": "top", "name": "[m1 1/1] RUN model", "inputs": ["mid"]},
        {"digest": "other", "name": "[m2 1/1] RUN model", "inputs": ["mid"]},
    ]
    progress.feed(json.dumps({"vertexes": announced}))
    assert "m1" not in progress.finished_targets()
    progress.feed(json.dumps({"vertexes": [{"digest": "top", "cached": True, "started": t0, "completed": t0}]}))
    assert "m1" in progress.finished_targets()
    progress.feed(json.dumps({"vertexes": [{"digest": "other", "started": t0}]}))
    assert "m2" not in progress.finished_targets(), "a step still running"
    progress.feed(json.dumps({"vertexes": [{"digest": "other", "completed": t1, "error": "context canceled"}]}))
    assert "m2" not in progress.finished_targets()
    assert "m3" not in progress.finished_targets(), "a target BuildKit never mentioned has not finished"


def test_build_uses_the_builder_up_builder_and_falls_back_to_buildxs_current_one(
    write_catalog: WriteCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_BAKE_BUILDER", "ours")
    paths = pipeline.Paths.from_options(write_catalog(), None)
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
    paths = pipeline.Paths.from_options(write_catalog(), None)
    runner = FakeBaker({None})
    with pytest.raises(DockerError, match="there is no builder `mine`"):
        run_build(paths, BuildOptions(builder="mine"), runner)
    assert runner.builders_used == ["mine"]
    other_failure = FakeBaker(stderr="ERROR: failed to solve: something else\n")
    monkeypatch.setenv("LLAMA_BAKE_BUILDER", "ours")
    with pytest.raises(BuildError, match="something else"):
        run_build(paths, BuildOptions(), other_failure)
    assert other_failure.builders_used == ["ours"]


def test_the_summary_shows_buildxs_own_messages_once_and_does_not_repeat_them() -> None:
    from llama_bake.console import summary_text

    target = TargetSummary("m1", "localhost:5000/m1:latest", "", "built", 1.0, 1, 0)
    no_output = "WARNING: No output specified for m1 target(s) with remote driver."
    said = summary_text(Summary((target,), 1.0, "b", (no_output, "warning: FromAsCasing", no_output)))
    assert said.count(f"buildx: {no_output}") == 1
    assert "buildx: warning: FromAsCasing" in said
    assert "images stayed in the builder's cache" not in said  # buildx said it already
    quiet = summary_text(Summary((target,), 1.0, "b"))
    assert "buildx:" not in quiet
    assert "images stayed in the builder's cache" in quiet
    assert json.loads(Summary((target,), 1.0, "b", (no_output, no_output)).to_json())["messages"] == [no_output]


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
    paths = pipeline.Paths.from_options(write_catalog(), None)
    with pytest.raises(BuildInterrupted, match="interrupted; the builder cancels the running steps") as caught:
        run_build(paths, BuildOptions(builder="b"), FakeBaker(stderr=CANCELED, before=_ctrl_c))
    assert caught.value.exit_code == 130


def test_pushed_bases_pin_their_models_by_repository_and_digest(
    write_catalog: WriteCatalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = pipeline.Paths.from_options(write_catalog(), None)
    runner = FakeBaker()
    checked: list[list[str]] = []
    monkeypatch.setattr("llama_bake.build.check_push", lambda repositories: checked.append(list(repositories)))
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
    paths = pipeline.Paths.from_options(write_catalog(), None)
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
    paths = pipeline.Paths.from_options(write_catalog(), None)
    with pytest.raises(DockerError, match="the docker client has no buildx plugin: install it") as caught:
        run_build(paths, BuildOptions(builder="b"), FakeBaker(stderr=said))
    assert caught.value.exit_code == 5


@pytest.mark.tools
def test_a_local_build_reads_the_git_values_from_the_checkout_unless_the_environment_sets_them(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    import subprocess

    catalog = write_catalog(project={"tag_scheme": ["{tag}", "sha-{git_sha}", "{git_version}"]})
    plan = pipeline.compile_catalog(pipeline.Paths.from_options(catalog, None)).plan
    assert git_environment(plan, tmp_path, {}) == {}, "not a checkout: nothing"

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "-q", "-b", "release/1.x")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "c")
    git("tag", "v1.4.0")
    sha = git("rev-parse", "HEAD")
    assert git_environment(plan, tmp_path, {}) == {"GIT_SHA": sha, "GIT_BRANCH": "release/1.x", "GIT_VERSION": "v1.4.0"}
    assert git_environment(plan, tmp_path, {"GIT_SHA": "ci", "GIT_BRANCH": ""}) == {"GIT_VERSION": "v1.4.0"}
    plain = pipeline.compile_catalog(pipeline.Paths.from_options(write_catalog(project={}), None)).plan
    assert git_environment(plain, tmp_path, {}) == {}, "no git placeholder: git is not even run"


def test_ctrl_c_returns_at_once_where_there_is_no_os_wnohang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llama_bake import bake

    monkeypatch.delattr(os, "WNOHANG")  # as on Windows
    started = time.monotonic()
    bake._wait_for_children(30.0)
    assert time.monotonic() - started < 1.0


def _event(**parts: object) -> str:
    return json.dumps(parts)


def test_progress_follows_the_bytes_of_pulls_and_pushes_and_streams_step_logs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Sizes, rate and time left per target from BuildKit's statuses; the plain display prints the steps' own
    output as it comes and a line on the transfers (at most every 15 s of the build, and when they end)."""
    import base64

    from llama_bake.console import BuildDisplay

    progress = Progress()
    display = BuildDisplay("plain")
    t0 = "2026-01-01T00:00:00Z"
    step = {"digest": "s", "name": "[m1 2/3] RUN make", "started": t0}
    push = {"digest": "p", "name": "[m1] pushing layers", "started": t0}

    def feed(line: str) -> None:
        display(line, progress, progress.feed(line))

    feed(_event(vertexes=[step, push]))
    log = base64.b64encode(b"[ 42%] Building CUDA object ggml-cuda.cu.o\n").decode()
    feed(_event(logs=[{"vertex": "s", "stream": 1, "data": log, "timestamp": "2026-01-01T00:00:01Z"}]))
    layer = {"vertex": "p", "id": "sha256:abc", "total": 16_000_000_000, "started": t0}
    feed(_event(statuses=[{**layer, "current": 4_000_000_000, "timestamp": "2026-01-01T00:00:40Z"}]))
    feed(_event(statuses=[{**layer, "current": 4_100_000_000, "timestamp": "2026-01-01T00:00:41Z"}]))
    moved = progress.target("m1").transfers()
    assert (moved.current, moved.total, moved.seconds) == (4_100_000_000, 16_000_000_000, 41.0)
    assert moved.rate == pytest.approx(100_000_000)
    assert moved.eta == pytest.approx(119.0)
    done = {
        **layer,
        "current": 16_000_000_000,
        "timestamp": t0.replace("00:00", "02:40"),
        "completed": "2026-01-01T00:02:40Z",
    }
    feed(_event(statuses=[done]))
    assert progress.target("m1").transfers().eta is None
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "[m1] | [ 42%] Building CUDA object ggml-cuda.cu.o",
        "[m1] transfers: 4.0 GB / 16.0 GB, 100.0 MB/s, 2m00s left",
        "[m1] transfers: 16.0 GB / 16.0 GB, 100.0 MB/s",
    ], "the update one second later is not printed; the end is"


def test_the_terminal_view_shows_transfers_and_the_running_steps_last_lines() -> None:
    import base64

    from rich.console import Console

    from llama_bake.console import _live_view

    progress = Progress()
    t0 = "2026-01-01T00:00:00Z"
    progress.feed(_event(vertexes=[{"digest": "s", "name": "[base build 2/3] RUN cmake --build", "started": t0}]))
    progress.feed(_event(vertexes=[{"digest": "p", "name": "[base build 1/3] FROM nvidia/cuda", "started": t0}]))
    lines = "".join(f"[{n:3d}%] Building CUDA object ops-{n}.cu.o\n" for n in range(10, 90, 10)).encode()
    progress.feed(_event(logs=[{"vertex": "s", "data": base64.b64encode(lines).decode(), "timestamp": t0}]))
    pull = {"vertex": "p", "id": "sha256:layer", "total": 5_000_000_000, "current": 1_000_000_000, "started": t0}
    progress.feed(_event(statuses=[{**pull, "timestamp": "2026-01-01T00:00:20Z"}]))
    console = Console(width=200, record=True, force_terminal=False)
    console.print(_live_view(progress))
    shown = console.export_text()
    assert "1.0 GB / 5.0 GB, 50.0 MB/s, 1m20s left" in shown
    assert "[ 80%] Building CUDA object ops-80.cu.o" in shown
    assert "[ 20%]" not in shown, "only the last lines"


def test_build_and_dry_run_refuse_placeholder_pins_before_any_work(write_catalog: WriteCatalog) -> None:
    """The shipped catalog's all-zero pins would download gigabytes, then fail the checksum: refused first,
    naming the model and the command that fixes it. generate works on them and warns."""
    from click.testing import CliRunner

    from llama_bake.cli import main

    zero = {"weights": {"hf": "o/r-GGUF", "file": "m.gguf", "revision": "0" * 40, "sha256": "0" * 64}}
    catalog = write_catalog(models={"zero": zero, "model-a": MODEL})
    paths = pipeline.Paths.from_options(catalog, None)
    runner = FakeBaker()
    with pytest.raises(CatalogError, match=r"model zero: weights.revision, weights.sha256 .*`llama-bake pin zero`"):
        run_build(paths, BuildOptions(builder="b"), runner)
    assert runner.calls == []
    with pytest.raises(CatalogError, match="llama-bake pin zero"):
        dry_run(paths, BuildOptions(builder="b"), runner)
    assert isinstance(run_build(paths, BuildOptions(builder="b", targets=("model-a",)), runner), Summary)
    generated = CliRunner().invoke(main, ["generate", "-c", str(catalog)])
    assert generated.exit_code == 0
    assert "warning: model zero: weights.revision, weights.sha256 still the all-zero placeholder" in generated.output
    empty = pipeline.Paths.from_options(write_catalog(models={}), None)
    for model in catalog.glob("models/*"):
        model.unlink()
    with pytest.raises(UsageError, match="the catalog has no model yet"):
        run_build(empty, BuildOptions(builder="b"), runner)


def test_doctor_says_for_each_platform_whether_a_node_builds_it_emulates_it_or_cannot() -> None:
    from llama_bake.bake import BuilderInfo, NodeInfo
    from llama_bake.builder import platform_check

    one = BuilderInfo(
        "b", "remote", "running", "unix:///s", "v0.32.2", (NodeInfo("b0", "", "running", ("linux/amd64",)),)
    )
    emulating = BuilderInfo(
        "b", "remote", "running", "", "", (NodeInfo("b0", "", "running", ("linux/amd64", "linux/arm64")),)
    )
    assert platform_check(one, "linux/amd64").ok
    assert "emulates it" in platform_check(emulating, "linux/arm64").detail
    missing = platform_check(one, "linux/arm64")
    assert not missing.ok
    assert "b0: linux/amd64" in missing.detail
    assert "qemu-user-static" in missing.fix
    assert "llama-bake builder up --platform linux/arm64" in missing.fix


def test_a_cache_that_cannot_be_imported_fails_no_target() -> None:
    """A pull request's first run imports a registry cache nobody exported yet: BuildKit errors that vertex and
    builds on; the target it is named after still finishes."""
    t0, t1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"
    progress = Progress()
    missing = "127.0.0.1:5000/c/m1:buildcache: not found"
    importing = {"digest": "imp", "name": "[m1 internal] importing cache manifest from 127.0.0.1:5000/c/m1:buildcache"}
    progress.feed(json.dumps({"vertexes": [{**importing, "started": t0, "error": missing}]}))
    step = {"digest": "s", "name": "[m1 1/1] RUN echo", "started": t0, "completed": t1}
    progress.feed(json.dumps({"vertexes": [step]}))
    assert progress.target("m1").failed is None
    assert progress.failure() is None
    assert "m1" in progress.finished_targets()
    progress.feed(json.dumps({"vertexes": [{**step, "digest": "s2", "name": "[m1 2/2] RUN x", "error": "exit 1"}]}))
    assert progress.target("m1").failed is not None, "a real step's error still fails it"


def test_a_bake_of_one_target_has_its_unprefixed_steps_counted_under_it() -> None:
    """buildx leaves the target's name out of each vertex when a bake builds one target (the first of two phases
    with one base); the steps are that target's all the same."""
    t0, t1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"
    progress = Progress()
    progress.sole = "base"
    for digest, name in (("a", "[build 2/3] RUN make"), ("b", "[1/2] RUN echo"), ("c", "[internal] load x")):
        progress.feed(json.dumps({"vertexes": [{"digest": digest, "name": name, "started": t0, "completed": t1}]}))
    assert progress.target("base").executed == 2
    assert progress.executed_steps() == ["RUN echo", "RUN make"]
    assert set(progress.targets) == {"base"}


def test_a_base_step_reported_under_each_model_and_under_the_base_is_the_bases() -> None:
    """The docker driver solves a linked base inside each model's request and reports its steps once per request."""
    t0, t1 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"
    progress = Progress({"m1": "base", "m2": "base"})
    for name in ("[m1 build 2/3] RUN make", "[m2 build 2/3] RUN make", "[base build 2/3] RUN make"):
        progress.feed(json.dumps({"vertexes": [{"digest": "same", "name": name, "started": t0, "completed": t1}]}))
    assert progress.target("base").executed == 1
    assert progress.target("m1").executed == 0
    assert progress.target("m2").executed == 0
    unlinked = Progress()
    unlinked.feed(json.dumps({"vertexes": [{"digest": "same", "name": "[m1 build 2/3] RUN make", "started": t0}]}))
    unlinked.feed(json.dumps({"vertexes": [{"digest": "same", "name": "[base build 2/3] RUN make", "started": t0}]}))
    assert unlinked.target("m1").steps, "without the link, BuildKit's first name stands"
