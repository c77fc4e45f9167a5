"""The ``llama-bake`` command: one module per command family parses options and calls the package that owns the
work; this group is the one place errors become a message and their exit code.

Each command imports the code it runs when it runs, so ``--help`` and a no-op ``generate`` stay fast (they load
neither pydantic nor Jinja)."""

from __future__ import annotations

from typing import Any

import click

from llama_bake.cli import authoring, build, catalog, companions
from llama_bake.errors import LlamaBakeError


class Cli(click.Group):
    """The one place errors are caught: each of ours becomes a message and its exit code (a traceback only
    with --debug); every command below just raises."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LlamaBakeError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"llama-bake: {type(exc).__name__}: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="llama-bake")
def main(debug: bool) -> None:
    """Compile a catalog of GGUF models into a docker buildx bake graph of llama.cpp images."""


for command in (
    catalog.generate,
    catalog.preview,
    catalog.validate,
    catalog.schema,
    catalog.list_,
    build.build,
    build.doctor,
    build.smoke,
    companions.compose,
    companions.kube,
    companions.ci_group,
    catalog.graph,
    build.builder_group,
    authoring.add,
    authoring.pin,
    authoring.init,
):
    main.add_command(command)
