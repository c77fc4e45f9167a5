"""buildx's rawjson progress read per target: steps run and cached, transfers, logs, failures."""

from __future__ import annotations

import json

import pytest

from llama_bake.buildx.progress import Progress
from tests.fakes import event

FAKE_DIGEST = "sha256:" + "d" * 64


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


def test_progress_follows_the_bytes_of_pulls_and_pushes_and_streams_step_logs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Sizes, rate and time left per target from BuildKit's statuses; the plain display prints the steps' own
    output as it comes and a line on the transfers (at most every 15 s of the build, and when they end)."""
    import base64

    from llama_bake.cli.console import BuildDisplay

    progress = Progress()
    display = BuildDisplay("plain")
    t0 = "2026-01-01T00:00:00Z"
    step = {"digest": "s", "name": "[m1 2/3] RUN make", "started": t0}
    push = {"digest": "p", "name": "[m1] pushing layers", "started": t0}

    def feed(line: str) -> None:
        display(line, progress, progress.feed(line))

    feed(event(vertexes=[step, push]))
    log = base64.b64encode(b"[ 42%] Building CUDA object ggml-cuda.cu.o\n").decode()
    feed(event(logs=[{"vertex": "s", "stream": 1, "data": log, "timestamp": "2026-01-01T00:00:01Z"}]))
    layer = {"vertex": "p", "id": "sha256:abc", "total": 16_000_000_000, "started": t0}
    feed(event(statuses=[{**layer, "current": 4_000_000_000, "timestamp": "2026-01-01T00:00:40Z"}]))
    feed(event(statuses=[{**layer, "current": 4_100_000_000, "timestamp": "2026-01-01T00:00:41Z"}]))
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
    feed(event(statuses=[done]))
    assert progress.target("m1").transfers().eta is None
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "[m1] | [ 42%] Building CUDA object ggml-cuda.cu.o",
        "[m1] transfers: 4.0 GB / 16.0 GB, 100.0 MB/s, 2m00s left",
        "[m1] transfers: 16.0 GB / 16.0 GB, 100.0 MB/s",
    ], "the update one second later is not printed; the end is"


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
