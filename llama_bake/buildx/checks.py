"""One line of ``llama-bake doctor``'s report, and the verdict on a whole report."""

from __future__ import annotations

from dataclasses import dataclass

from llama_bake.errors import DockerError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # ok for building, but worth knowing (e.g. no GPU for the containers)


def verdict(checks: list[Check]) -> None:
    """Raise ``DockerError`` (exit 5) naming every failed check and its fix."""
    failed = [c for c in checks if not c.ok]
    if failed:
        msg = f"{len(failed)} problem(s): " + "; ".join(f"{c.name}: {c.fix}" for c in failed)
        raise DockerError(msg)
