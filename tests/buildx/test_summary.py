"""The build summary."""

from __future__ import annotations

import json

from llama_bake.buildx.summary import Summary, TargetSummary

FAKE_DIGEST = "sha256:" + "d" * 64


def test_the_summary_shows_buildxs_own_messages_once_and_does_not_repeat_them() -> None:
    from llama_bake.cli.console import summary_text

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


# What buildx v0.36.1 printed when its buildkitd was killed (kill -9) while a step of m3 ran.
LOST = (
    "WARNING: No output specified for m1, m3 target(s) with remote driver.\n"
    "ERROR: target m3: failed to receive status: rpc error: code = Unavailable desc = error reading from server: EOF\n"
)


def test_a_builder_lost_after_steps_ran_is_said_so_with_what_finished_and_ran() -> None:
    from llama_bake.buildx.summary import failure_message

    targets = (
        TargetSummary("base", "r/base", "", "built", 1.0, 1, 0),
        TargetSummary("m1", "r/m1", "", "built", 1.0, 1, 0),
        TargetSummary("m3", "r/m3", "", "unfinished", 1.0, 1, 0),
    )
    message = failure_message(None, Summary(targets, 1.0, "b"), LOST)
    assert message.startswith("lost the connection to the builder during the build")
    assert "after 3 steps had run and 0 came from the cache" in message
    assert "error reading from server: EOF" in message
    assert "steps of m3: 1 run, 0 from the cache" in message
    assert "finished: base, m1\nnot finished: m3" in message
    nothing_ran = tuple(TargetSummary(t.name, t.image, "", "not started", 0.0, 0, 0) for t in targets)
    assert failure_message(None, Summary(nothing_ran, 1.0, "b"), "ERROR: bad flag\n").startswith(
        "docker buildx bake failed before any step ran:"
    )


def test_each_wording_buildx_gives_a_lost_builder_is_said_to_be_a_lost_connection() -> None:
    from llama_bake.buildx.summary import failure_message

    targets = (
        TargetSummary("m1", "r/m1", "", "built", 1.0, 1, 0),
        TargetSummary("m3", "r/m3", "", "unfinished", 1.0, 1, 0),
    )
    # Seen (kill -9 of buildkitd, buildx v0.36.1), then the same status code with a redial's description.
    for error in (
        "ERROR: target m3: failed to receive status: rpc error: code = Unavailable desc = error reading from server: "
        "EOF",
        "ERROR: target m3: failed to solve: Unavailable: error reading from server: EOF",
        'ERROR: target m1: failed to solve: Unavailable: connection error: desc = "transport: Error while dialing: '
        'dial unix /tmp/b/buildkitd.sock: connect: connection refused"',
    ):
        message = failure_message(None, Summary(targets, 1.0, "b"), error + "\n")
        assert message.startswith("lost the connection to the builder during the build"), error
        assert f"  {error}\n" in message
        assert message.endswith("finished: m1\nnot finished: m3")
