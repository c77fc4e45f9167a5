"""The short state directories under /tmp that the tests and benchmarks give builders and engines (unix socket
paths are limited to about 100 bytes, so they cannot live in pytest's temporary directory).

A run removes its own when it ends; a run that is killed cannot, and each leaves gigabytes behind (a builder's
unpacked layers, an engine's image store): a machine that runs the tests again and again fills its disk. So each
directory is made with a lock its process holds for as long as it lives (``state_dir``), and a new session
removes those whose process is gone (``remove_stale``): the kernel frees a dead process's lock. A directory with
no lock (made by an older checkout) is removed once it is older than any run.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

TMP = Path("/tmp")
LOCK = ".lb-lock"
# What mkdtemp makes of the prefixes the tests and benchmarks use (lb-, lb-early-, lb-job-, ...; lbe-: engines;
# lbs-: the engine tier's builders): the prefix and 8 random characters.
PATTERN = re.compile(r"lb[es]?-(?:[a-z0-9]+-)?[a-z0-9_]{8}")
# A directory without a lock is left alone until it is older than a whole CI run could be.
UNLOCKED_AGE_S = 3 * 3600

_held: list[IO[bytes]] = []  # the open lock files: closed (and so released) when this process ends


def state_dir(prefix: str, root: Path = TMP) -> Path:
    """A new directory ``root/PREFIXxxxx``, locked by this process for its life."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    lock = (path / LOCK).open("wb")
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held.append(lock)
    return path


def _stale(path: Path, now: float) -> bool:
    try:
        lock = (path / LOCK).open("rb")
    except FileNotFoundError:
        try:
            return now - path.stat().st_mtime > UNLOCKED_AGE_S
        except OSError:
            return False
    except OSError:
        return False
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its process is alive
        return True


def stale_dirs(root: Path = TMP, now: float | None = None) -> list[Path]:
    """This user's state directories under ``root`` whose process is gone, sorted."""
    at = time.time() if now is None else now
    found = []
    for path in sorted(root.iterdir()):
        try:
            mine = path.is_dir() and not path.is_symlink() and path.stat().st_uid == os.getuid()
        except OSError:
            continue
        if mine and PATTERN.fullmatch(path.name) and _stale(path, at):
            found.append(path)
    return found


def remove_in_background(paths: list[Path]) -> None:
    """Deletes ``paths`` in a process of its own, not this one's child (setsid -f), so nothing waits for it: a
    builder's state is gigabytes in tens of thousands of files, half a minute to delete on a busy disk."""
    subprocess.run(
        ["setsid", "-f", "rm", "-rf", "--", *map(str, paths)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )


def remove_stale(root: Path = TMP, remove: Callable[[list[Path]], None] = remove_in_background) -> list[Path]:
    """Removes the stale directories and returns them."""
    found = stale_dirs(root)
    if found:
        remove(found)
    return found
