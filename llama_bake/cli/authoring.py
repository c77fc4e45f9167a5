"""The commands that write the user's catalog: ``add`` (a model from the Hub), ``pin`` (models' and bases' pins)
and ``init`` (a new catalog)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from llama_bake.catalog.constants import HUB_BRANCH
from llama_bake.cli.options import complete_targets, paths_options
from llama_bake.errors import UsageError


@click.command()
@paths_options
@click.argument("spec")
@click.option("--name", help="The model's name (its file and target). Default: from the repository's name.")
@click.option("--base", help="The base to build on (needed when the catalog has several).")
@click.option("--delivery", type=click.Choice(["baked", "fetch"]), help="Weights in the image, or fetched at start.")
@click.option("--ctx-size", type=int, help="The server's context size.")
@click.option("--revision", default=HUB_BRANCH, show_default=True, help="Branch, tag or commit to pin.")
@click.option("--mmproj", help="The vision projector file, when the repository has several.")
@click.option("--no-mmproj", is_flag=True, help="Leave out the vision projector.")
def add(catalog: Path | None, bake_file: Path | None, spec: str, **settings: Any) -> None:
    """Add a model from the Hugging Face Hub, pinned: SPEC is hf://OWNER/REPO/FILE.gguf or OWNER/REPO:QUANT."""
    from llama_bake.catalog.authoring import add_model
    from llama_bake.project import Paths

    added = add_model(Paths.from_options(catalog, bake_file).catalog, spec, settings)
    extra = f" and {added.mmproj}" if added.mmproj else ""
    weights = (
        added.weights[0] if len(added.weights) == 1 else f"{len(added.weights)} parts ({', '.join(added.weights)})"
    )
    click.echo(f"wrote {added.path}: {weights}{extra} at commit {added.commit[:12]}", err=True)


@click.command()
@paths_options
@click.argument("models", nargs=-1, shell_complete=complete_targets)
@click.option("--update", is_flag=True, help="Move pinned models to the repository's newest commit too.")
@click.option(
    "--branch", default=HUB_BRANCH, show_default=True, help="The branch --update (and a placeholder) follows."
)
@click.option("--ref", help="For a BASE: the release tag (or commit) to move its llama.cpp ref to.")
def pin(
    catalog: Path | None, bake_file: Path | None, models: tuple[str, ...], update: bool, branch: str, ref: str | None
) -> None:
    """Fill in revision and sha256 from the Hub for MODELS (default: every model) that have placeholders or a
    branch name; --update moves pinned ones too. A BASE named moves its llama.cpp ref: --update to the newest
    release tag of its git URL (git ls-remote), --ref to the one given. Prints what changed; comments stay."""
    from llama_bake.catalog import releases
    from llama_bake.catalog.authoring import pin_models
    from llama_bake.project import Paths

    catalog_dir = Paths.from_options(catalog, bake_file).catalog
    bases = [n for n in models if n in releases.base_files(catalog_dir)]
    if ref is not None and not bases:
        msg = "--ref moves a base's llama.cpp ref: name the base (`llama-bake pin BASE --ref b6600`)"
        raise UsageError(msg)
    rest = tuple(n for n in models if n not in bases)
    for result in releases.pin_bases(catalog_dir, bases, update=update, ref=ref):
        click.echo(result.diff, nl=False)
        click.echo(result.message, err=True)
    if rest or not bases:
        pinned = pin_models(catalog_dir, rest, update=update, branch=branch)
        for item in pinned:
            click.echo(item.diff, nl=False)
            for note in item.notes:
                click.echo(note, err=True)
        click.echo(f"pinned {len(pinned)} file(s)" if pinned else "every model is pinned; nothing changed", err=True)


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=".")
@click.option(
    "--gpu",
    "families",
    multiple=True,
    help=(
        "A GPU the catalog serves: a family, a card ('RTX 4090', 'Radeon RX 7900 XTX', 'Arc A770') or a compute "
        "capability (8.9); NVIDIA cards get a cuda base, AMD and Intel cards a vulkan base (one per Kubernetes device "
        "plugin when they need several). Default: this machine's "
        "NVIDIA cards."
    ),
)
def init(directory: Path, families: tuple[str, ...]) -> None:
    """Start a catalog in DIRECTORY/catalog: project settings and a base per backend of the cards, no model yet."""
    from llama_bake.catalog.authoring import init_catalog
    from llama_bake.catalog.gpus import family_cards

    done = init_catalog(directory, families)
    for path in done.written:
        click.echo(f"wrote {path}", err=True)
    for name, base in done.bases.items():
        cards = ", ".join(f"{family} ({family_cards(family)})" for family in base.families)
        said = "the CUDA base compiles for" if base.backend == "cuda" else f"the {base.backend} base `{name}` is for"
        plugin = f"; its pods ask for {base.plugin}" if base.plugin else ""
        click.echo(f"{said}: {cards}{plugin}", err=True)
    if len(done.bases) > 1:
        named = " or ".join(f"--base {name}" for name in done.bases)
        click.echo(f"next: `llama-bake add OWNER/REPO:QUANT {named}`, then `llama-bake generate`", err=True)
    else:
        click.echo("next: `llama-bake add OWNER/REPO:QUANT`, then `llama-bake generate`", err=True)
