"""The commands that read the catalog and write or show what it compiles to: ``generate``, ``preview``,
``validate``, ``schema``, ``list`` and ``graph``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from llama_bake.catalog.constants import CATALOG_KINDS
from llama_bake.cli.options import CHECK_OPTION, JSON_OPTION, complete_targets, paths_options


@click.command()
@paths_options
@CHECK_OPTION
def generate(catalog: Path | None, bake_file: Path | None, check: bool) -> None:
    """Write docker-bake.hcl and dockerfiles/ from the catalog (atomically; unchanged files are not touched,
    Dockerfiles of removed targets are removed), and the Compose and CI files an earlier `compose` or `ci` wrote
    at their default places (each rewritten by its header's own command)."""
    from llama_bake.cli.companions import regenerate
    from llama_bake.generated import generate as generate_files
    from llama_bake.project import Paths

    paths = Paths.from_options(catalog, bake_file)
    written = generate_files(
        paths, lambda path, words: regenerate(paths.catalog, paths.output, path, words, check=check), check=check
    )
    for warning in written.warnings:
        click.echo(f"warning: {warning}", err=True)
    if check:
        click.echo(f"up to date: {paths.output} and {len(written.unchanged) - 1} more generated file(s)", err=True)
        return
    for path in written.wrote:
        click.echo(f"wrote: {path}", err=True)
    for path in written.removed:
        click.echo(f"removed: {path}", err=True)
    if written.unchanged:
        click.echo(f"unchanged: {len(written.unchanged)} file(s)", err=True)


@click.command()
@paths_options
@click.option("--diff", "show_diff", is_flag=True, help="Show what generate would change on disk.")
@click.option("--resolved", is_flag=True, help="Show what buildx resolves (docker buildx bake --print).")
@click.option("--color/--no-color", default=None, help="Highlight (default: when stdout is a terminal).")
@click.argument("targets", nargs=-1, shell_complete=complete_targets)
def preview(
    catalog: Path | None,
    bake_file: Path | None,
    show_diff: bool,
    resolved: bool,
    color: bool | None,
    targets: tuple[str, ...],
) -> None:
    """Print the generated HCL without writing it. TARGETS apply to --resolved."""
    from llama_bake.cli import console
    from llama_bake.generated import preview_diff, preview_text
    from llama_bake.project import Paths, compile_catalog

    paths = Paths.from_options(catalog, bake_file)
    if resolved:
        from llama_bake.buildx.client import DockerRunner, bake_print

        config = bake_print(compile_catalog(paths).text, targets, {}, paths.bake_dir, DockerRunner())
        console.show(json.dumps(config, indent=2, sort_keys=True) + "\n", "json", color)
    elif show_diff:
        diff = preview_diff(paths)
        console.show(diff or f"# {paths.output} is up to date\n", "diff", color)
    else:
        console.show(preview_text(paths), "terraform", color)


@click.command()
@paths_options
@click.option("--strict", is_flag=True, help="Warnings are problems too (exit 8): for CI.")
@JSON_OPTION
def validate(catalog: Path | None, bake_file: Path | None, strict: bool, as_json: bool) -> None:
    """Check the catalog and report every problem at once (file, field, message, hint)."""
    from llama_bake.catalog.validate import validate as validate_catalog
    from llama_bake.project import Paths

    paths = Paths.from_options(catalog, bake_file)
    result = validate_catalog(paths.catalog, strict=strict)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
    result.raise_if_invalid()
    if not as_json:
        warned = f" ({len(result.warnings)} warnings)" if result.warnings else ""
        click.echo(f"{paths.catalog}: valid{warned}", err=True)


@click.command()
@click.argument("kind", required=False, type=click.Choice(CATALOG_KINDS))
def schema(kind: str | None) -> None:
    """Print the JSON Schema of catalog files (all kinds, or one: project, base, model)."""
    from llama_bake.catalog.schema import schema_text

    click.echo(schema_text(kind), nl=False)


@click.command(name="list")
@paths_options
@JSON_OPTION
def list_(catalog: Path | None, bake_file: Path | None, as_json: bool) -> None:
    """List targets, their base, what they run on (backend: GPU families) and image (with REGISTRY and TAG at their
    defaults)."""
    from dataclasses import asdict

    from llama_bake.cli.console import columns
    from llama_bake.plan.listing import rows as target_rows
    from llama_bake.project import Paths, compile_catalog

    rows = target_rows(compile_catalog(Paths.from_options(catalog, bake_file)).plan)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    from llama_bake.catalog.fields import format_size

    platforms = [",".join(p.removeprefix("linux/") for p in r.platforms) for r in rows]
    weights = [
        ("-", "-")
        if r.kind == "base"
        else ("?" if r.weight_size is None else format_size(r.weight_size), str(r.weight_layers))
        for r in rows
    ]
    disk = ["?" if r.planned_disk is None else format_size(r.planned_disk) for r in rows]
    table = [
        ("TARGET", "KIND", "BASE", "GPUS", "IMAGE", "PLATFORMS", "WEIGHTS", "LAYERS", "DISK"),
        *(
            (r.target, r.kind, r.base, r.runs_on, r.image, shown, *sizes, planned)
            for r, shown, sizes, planned in zip(rows, platforms, weights, disk, strict=True)
        ),
    ]
    for line in columns(table):
        click.echo(line)


@click.command()
@paths_options
@click.option(
    "--format", "fmt", type=click.Choice(["text", "mermaid", "dot", "json"]), default="text", show_default=True
)
@JSON_OPTION
def graph(catalog: Path | None, bake_file: Path | None, fmt: str, as_json: bool) -> None:
    """Show what depends on what: images and source -> bases -> models."""
    from llama_bake.project import Paths, compile_catalog
    from llama_bake.render.graph import render

    plan = compile_catalog(Paths.from_options(catalog, bake_file)).plan
    click.echo(render(plan, "json" if as_json else fmt), nl=False)
