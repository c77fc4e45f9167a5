"""The docker client's own process runner: a bake runs in the bake file's directory, streams what it says, fails
with all of it, and leaves no process behind after Ctrl-C."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from llama_bake.buildx import client
from llama_bake.buildx.client import BakeFailed, Invocation

pytestmark = pytest.mark.tools  # each test starts a process


def test_a_command_runs_in_the_directory_given_with_its_environment_and_streams_its_lines(tmp_path: Path) -> None:
    code = "import os, sys; print(os.getcwd()); print(os.environ['LLAMA_X'], file=sys.stderr)"
    lines = list(client._stream([sys.executable, "-c", code], tmp_path, {"LLAMA_X": "x1"}))
    assert lines == [str(tmp_path), "x1"]
    assert Path.cwd() != tmp_path, "the caller's own working directory is never changed"


def test_a_command_that_fails_raises_with_everything_it_said(tmp_path: Path) -> None:
    code = "import sys; print('step 1'); print('ERROR: failed to solve', file=sys.stderr); sys.exit(3)"
    with pytest.raises(BakeFailed) as caught:
        list(client._stream([sys.executable, "-c", code], tmp_path, {}))
    assert caught.value.return_code == 3
    assert caught.value.stderr == "step 1\nERROR: failed to solve\n"


def test_after_ctrl_c_the_command_is_waited_for_then_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "CANCEL_TIMEOUT", 0.2)  # this child ignores the Ctrl-C buildx would obey
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    lines = client._stream([sys.executable, "-c", code], tmp_path, {})
    pid = int(next(lines))
    with pytest.raises(KeyboardInterrupt):
        lines.throw(KeyboardInterrupt)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_an_invocation_is_one_command_line_with_its_flags_before_the_targets() -> None:
    invocation = Invocation(files=("b.hcl",), targets=("m",), builder="x", flags=("--set", "m.a=1"), metadata_file="f")
    assert invocation.argv() == [
        "buildx",
        "bake",
        "--builder",
        "x",
        "--progress",
        "rawjson",
        "--file",
        "b.hcl",
        "--metadata-file",
        "f",
        "--set",
        "m.a=1",
        "m",
    ]


def test_a_reader_that_stops_early_stops_the_command_at_once(tmp_path: Path) -> None:
    """No Ctrl-C reached it (the reader failed, or was piped to `head`): it is stopped, not waited for."""
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    lines = client._stream([sys.executable, "-c", code], tmp_path, {})
    pid = int(next(lines))
    started = time.monotonic()
    lines.close()
    assert time.monotonic() - started < client.STOP_TIMEOUT
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
