"""The only code that starts ``docker buildx``. Narrows python-on-whales' results to plain types and
turns its errors into ours, so the rest of llama-bake never sees its Union return types."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from llama_bake.errors import DockerError


class BakeRunner(Protocol):
    """What llama-bake needs from buildx; the fake in tests implements the same."""

    def print_config(
        self, bake_file: Path, targets: Sequence[str], variables: Mapping[str, str], cwd: Path
    ) -> dict[str, Any]: ...


class WhalesRunner:
    """``BakeRunner`` on python-on-whales (imported lazily: it is slow to import)."""

    def print_config(
        self, bake_file: Path, targets: Sequence[str], variables: Mapping[str, str], cwd: Path
    ) -> dict[str, Any]:
        client = _client()
        from python_on_whales.exceptions import DockerException

        try:
            with _working_directory(cwd):
                result = client.buildx.bake(
                    targets=list(targets), files=[str(bake_file)], print=True, variables=dict(variables)
                )
        except DockerException as exc:
            detail = (exc.stderr or exc.stdout or str(exc)).strip()
            msg = f"docker buildx bake --print failed: {detail}"
            raise DockerError(msg) from exc
        if not isinstance(result, dict):
            msg = f"docker buildx bake --print returned {type(result).__name__}, expected a JSON object"
            raise DockerError(msg)
        return result


def _client() -> Any:
    if shutil.which("docker") is None:
        msg = "the docker client is not installed; install it (the engine is not needed) and the buildx plugin"
        raise DockerError(msg)
    from python_on_whales import DockerClient

    return DockerClient()


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    # python-on-whales has no cwd parameter, and bake resolves relative contexts against the working
    # directory: run it from the bake file's directory.
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def resolve(
    text: str, targets: Sequence[str], variables: Mapping[str, str], cwd: Path, runner: BakeRunner
) -> dict[str, Any]:
    """What buildx resolves from ``text`` (``docker buildx bake --print``), without building."""
    with tempfile.TemporaryDirectory(prefix="llama-bake-") as tmp:
        bake_file = Path(tmp) / "docker-bake.hcl"
        bake_file.write_text(text, encoding="utf-8")
        return runner.print_config(bake_file, targets or ["default"], variables, cwd)
