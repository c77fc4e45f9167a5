"""The ``llama-bake`` command: parse options, call one pipeline function, map errors to exit codes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from llama_bake import pipeline
from llama_bake.errors import LlamaBakeError

F = TypeVar("F", bound=Callable[..., Any])


def paths_options(func: F) -> F:
    """--catalog and --output, shared by every command that reads the catalog."""
    func = click.option(
        "--output",
        "-o",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="The bake file. Default: docker-bake.hcl beside the catalog directory.",
    )(func)
    func = click.option(
        "--catalog",
        "-c",
        type=click.Path(path_type=Path, file_okay=False),
        default=None,
        envvar="LLAMA_BAKE_CATALOG",
        help="The catalog directory. Default: ./catalog.",
    )(func)
    return func


def reports_errors(func: F) -> F:
    """Turn our errors into a message and their exit code; a traceback only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LlamaBakeError as exc:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            click.echo(f"llama-bake: {type(exc).__name__}: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="llama-bake")
def main(debug: bool) -> None:
    """Compile a catalog of GGUF models into a docker buildx bake graph of llama.cpp images."""


@main.command()
@paths_options
@click.option("--check", is_flag=True, help="Write nothing; exit 4 with a diff when the file is stale.")
@reports_errors
def generate(catalog: Path | None, output: Path | None, check: bool) -> None:
    """Write docker-bake.hcl from the catalog (atomically; unchanged files are not touched)."""
    paths = pipeline.Paths.from_options(catalog, output)
    changed = pipeline.generate(paths, check=check)
    if check:
        click.echo(f"{paths.output} is up to date", err=True)
    else:
        click.echo(f"{'wrote' if changed else 'unchanged'}: {paths.output}", err=True)


@main.command()
@paths_options
@click.option("--diff", "show_diff", is_flag=True, help="Show what generate would change on disk.")
@click.option("--resolved", is_flag=True, help="Show what buildx resolves (docker buildx bake --print).")
@click.option("--color/--no-color", default=None, help="Highlight (default: when stdout is a terminal).")
@click.argument("targets", nargs=-1)
@reports_errors
def preview(
    catalog: Path | None,
    output: Path | None,
    show_diff: bool,
    resolved: bool,
    color: bool | None,
    targets: tuple[str, ...],
) -> None:
    """Print the generated HCL without writing it. TARGETS apply to --resolved."""
    from llama_bake import console

    paths = pipeline.Paths.from_options(catalog, output)
    if resolved:
        from llama_bake.bake import WhalesRunner

        config = pipeline.resolved(paths, targets, WhalesRunner())
        console.show(json.dumps(config, indent=2, sort_keys=True) + "\n", "json", color)
    elif show_diff:
        diff = pipeline.preview_diff(paths)
        console.show(diff or f"# {paths.output} is up to date\n", "diff", color)
    else:
        console.show(pipeline.compile_catalog(paths).text, "terraform", color)


@main.command()
@paths_options
@reports_errors
def validate(catalog: Path | None, output: Path | None) -> None:
    """Check the catalog and report every problem at once (file, field, message, hint)."""
    paths = pipeline.Paths.from_options(catalog, output)
    warnings = pipeline.validate(paths)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{paths.catalog}: valid" + (f" ({len(warnings)} warnings)" if warnings else ""), err=True)


@main.command()
@click.argument("kind", required=False, type=click.Choice(sorted(pipeline.SCHEMA_KINDS)))
@reports_errors
def schema(kind: str | None) -> None:
    """Print the JSON Schema of catalog files (all kinds, or one: project, base, model)."""
    click.echo(pipeline.schema_text(kind), nl=False)


@main.command(name="list")
@paths_options
@reports_errors
def list_(catalog: Path | None, output: Path | None) -> None:
    """List targets, their base and image (with REGISTRY and TAG at their defaults)."""
    rows = pipeline.list_targets(pipeline.Paths.from_options(catalog, output))
    widths = [max(len(h), *(len(getattr(r, h)) for r in rows)) for h in ("target", "kind", "base")]
    header = ("TARGET", "KIND", "BASE", "IMAGE")
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, [*widths, 0], strict=True)).rstrip())
    for row in rows:
        cells = (row.target, row.kind, row.base, row.image)
        click.echo("  ".join(c.ljust(w) for c, w in zip(cells, [*widths, 0], strict=True)).rstrip())
