"""The state directories a killed run leaves under /tmp are removed by the next session; a live run's never are
(tests/statedirs.py). Run against a directory of the test's own in place of /tmp, without starting a process: a
lock nobody holds stands for a killed run's, and one this process holds for a live run's (a flock is held per
open file, so a second open of it in this process cannot take it either)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.statedirs import LOCK, UNLOCKED_AGE_S, remove_stale, stale_dirs, state_dir


def killed_runs(prefix: str, root: Path) -> Path:
    """A directory as a killed run leaves it: its lock file, which nobody holds."""
    path = root / f"{prefix}k1ll3d_0"
    path.mkdir()
    (path / LOCK).touch()
    return path


def test_a_killed_runs_directory_is_stale_and_a_live_ones_is_not(tmp_path: Path) -> None:
    killed = killed_runs("lbe-", tmp_path)
    state_dir("lb-early-", tmp_path)
    assert stale_dirs(tmp_path) == [killed]


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
    for name in ("lb-notes", "lbx-abcd1234", "pytest-of-root"):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (past, past))
    (tmp_path / "lb-abcd1234").write_text("a file")
    assert stale_dirs(tmp_path) == []


def test_the_stale_ones_and_only_they_are_removed(tmp_path: Path) -> None:
    stale = killed_runs("lb-", tmp_path)
    state_dir("lb-", tmp_path)
    removed: list[list[Path]] = []
    assert remove_stale(tmp_path, removed.append) == [stale]
    assert removed == [[stale]]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert remove_stale(empty, removed.append) == []
    assert removed == [[stale]], "nothing to remove: no call"
