"""The state directories a killed run leaves under /tmp are removed by the next session; a live run's never are
(tests/statedirs.py). Run here against a directory of the test's own in place of /tmp."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.statedirs import LOCK, UNLOCKED_AGE_S, remove_stale, stale_dirs, state_dir

HOLD = """
import sys, time
from pathlib import Path
from tests.statedirs import state_dir
print(state_dir(sys.argv[1], Path(sys.argv[2])), flush=True)
time.sleep(600)
"""


def held_by_a_process(prefix: str, root: Path) -> tuple[subprocess.Popen[str], Path]:
    """A directory made by another process, which holds its lock until it is killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, prefix, str(root)],
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    with child.stdout:
        made = Path(child.stdout.readline().strip())
    return child, made


def test_a_killed_runs_directory_is_stale_and_a_live_ones_is_not(tmp_path: Path) -> None:
    live, live_dir = held_by_a_process("lb-early-", tmp_path)
    killed, killed_dir = held_by_a_process("lbe-", tmp_path)
    try:
        killed.kill()
        killed.wait()
        assert stale_dirs(tmp_path) == [killed_dir]
    finally:
        live.kill()
        live.wait()
    assert stale_dirs(tmp_path) == sorted([live_dir, killed_dir])


def test_this_processs_own_directories_are_never_stale(tmp_path: Path) -> None:
    mine = state_dir("lb-", tmp_path)
    assert (mine / LOCK).exists()
    assert stale_dirs(tmp_path) == []


def test_a_directory_without_a_lock_is_stale_only_when_older_than_any_run(tmp_path: Path) -> None:
    old = tmp_path / "lb-job-abcd1234"
    new = tmp_path / "lbs-x1y2z3_4"
    for path in (old, new):
        path.mkdir()
    past = time.time() - UNLOCKED_AGE_S - 60
    os.utime(old, (past, past))
    assert stale_dirs(tmp_path) == [old]


def test_what_is_not_a_state_directory_is_left_alone(tmp_path: Path) -> None:
    past = time.time() - UNLOCKED_AGE_S - 60
    for name in ("lb-notes", "lbx-abcd1234", "pytest-of-root", "lb-abcd1234.txt"):
        (tmp_path / name).mkdir() if not name.endswith(".txt") else (tmp_path / name).write_text("x")
        os.utime(tmp_path / name, (past, past))
    assert stale_dirs(tmp_path) == []


def test_the_stale_ones_are_removed(tmp_path: Path) -> None:
    child, stale = held_by_a_process("lb-", tmp_path)
    child.kill()
    child.wait()
    (stale / "data").mkdir()
    kept = state_dir("lb-", tmp_path)
    assert remove_stale(tmp_path) == [stale]
    deadline = time.monotonic() + 10
    while stale.exists() and time.monotonic() < deadline:  # removed by a process of its own
        time.sleep(0.05)
    assert not stale.exists()
    assert kept.exists()
