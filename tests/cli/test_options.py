"""The shared options: the header's command from click's parameters, and target completion."""

from __future__ import annotations

import click
from click.testing import CliRunner

from llama_bake.cli import main
from tests.conftest import MODEL, WriteCatalog


def test_a_header_repeats_exactly_the_options_that_differ_from_their_defaults() -> None:
    from llama_bake.cli.options import changed_options

    @click.command()
    @click.option("--catalog")
    @click.option("--branch", default="main")
    @click.option("--free-disk/--no-free-disk", default=True)
    @click.option("--tag", "tags", multiple=True)
    @click.option("--install")
    def command(**_: object) -> None:
        """A command like `ci`."""

    ctx = command.make_context(
        "x", ["--catalog", "c", "--no-free-disk", "--tag", "a b", "--tag", "c", "--branch", "main"]
    )
    assert changed_options(ctx) == ["--no-free-disk", "--tag", "'a b'", "--tag", "c"]
    assert changed_options(command.make_context("x", [])) == []


def test_shell_completion_offers_the_catalogs_targets_and_groups(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(models={"model-a": MODEL, "mistral": MODEL})
    for words, expected in (
        (f"llama-bake build -c {catalog} m", ["mistral", "model-a", "models"]),
        (f"llama-bake preview --resolved -c {catalog} llama", ["llama-cpp-cuda", "llama-cpp-cuda-all"]),
    ):
        env = {"_LLAMA_BAKE_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        result = CliRunner().invoke(main, [], env=env, prog_name="llama-bake")
        assert [line.split(",", 1)[1] for line in result.output.splitlines()] == expected, result.output
