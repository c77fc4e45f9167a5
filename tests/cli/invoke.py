"""The command line run in the test process (click's runner), as a user types it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from llama_bake.cli import main


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def generate(catalog: Path, *extra: str) -> Result:
    return run("generate", "--catalog", str(catalog), *extra)
