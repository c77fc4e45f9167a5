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
