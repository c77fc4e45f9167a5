"""Where generated text goes: written atomically, compared for ``--check``, or diffed for preview.

Writing, previewing and checking differ only in this sink; the text itself comes from ``render``.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from llama_bake.errors import StaleError

if TYPE_CHECKING:
    from llama_bake.project import Paths


def read_existing(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def unified_diff(path: Path, old: str | None, new: str) -> str:
    """A unified diff from the file on disk (``old``, None when absent) to ``new``; '' when equal."""
    if old == new:
        return ""
    return "".join(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{path} (on disk)" if old is not None else f"{path} (missing)",
            tofile=f"{path} (from the catalog)",
        )
    )


def write_atomic(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` via a temporary file and a rename; readers never see half a file.

    Returns False, touching nothing, when the file already holds exactly ``text``.
    """
    if read_existing(path) == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(path.stat().st_mode & 0o777 if path.exists() else 0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_generated(path: Path, text: str, *, check: bool, command: str) -> bool:
    """Write ``text`` to ``path`` (True when it changed); with ``check``, write nothing and raise
    ``StaleError`` with a diff when the file differs."""
    if check:
        diff = unified_diff(path, read_existing(path), text)
        if diff:
            msg = f"{path} is stale; run `{command}` and commit it.\n{diff}"
            raise StaleError(msg)
        return False
    return write_atomic(path, text)


def regenerate_command(words: list[str], paths: Paths, out: Path, default: Path) -> str:
    """The command line that writes ``out`` again, with only the options that differ from the defaults."""
    words = paths.command(words)
    if out.absolute() != default.absolute():
        words += ["--file", Path(os.path.relpath(out.absolute(), paths.bake_dir)).as_posix()]
    return " ".join(words)
