"""``compose``, ``ci`` and ``kube``: the files written beside the bake file for Compose, CI and Kubernetes, and their
regeneration by ``generate`` (each file's header command is parsed by the same command's options)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from llama_bake.cli.options import CHECK_OPTION, OUT_FILE, PATH_PARAMS, changed_options, paths_options, report
from llama_bake.render.ci_options import DEFAULT_CACHES, DEFAULT_PATHS, CiOptions, Provider

# The CI command's defaults are CiOptions' own: one place for each.
CI_DEFAULTS = {f.name: f.default for f in dataclasses.fields(CiOptions) if f.default is not dataclasses.MISSING}


def _compose(ctx: click.Context, out: Path | None, *, check: bool, with_dockerfiles: bool = True) -> tuple[Path, bool]:
    from llama_bake.companions import compose_file
    from llama_bake.project import Paths

    paths = Paths.from_options(ctx.params["catalog"], ctx.params["bake_file"])
    return compose_file(paths, out, changed_options(ctx), check=check, with_dockerfiles=with_dockerfiles)


@click.command()
@paths_options
@click.option(
    "--file", "-f", "out", type=OUT_FILE, help="Where to write it. Default: compose.yaml beside the bake file."
)
@CHECK_OPTION
@click.pass_context
def compose(ctx: click.Context, catalog: Path | None, bake_file: Path | None, out: Path | None, check: bool) -> None:
    """Write a Compose file: one service per model, GPUs reserved, built locally from the bake targets."""
    report(*_compose(ctx, out, check=check), check)


def _kube(ctx: click.Context, out: Path | None, summary: Path | None, *, check: bool) -> tuple[Path, bool]:
    from llama_bake.companions import kube_files
    from llama_bake.project import Paths

    paths = Paths.from_options(ctx.params["catalog"], ctx.params["bake_file"])
    options = changed_options(ctx, (*PATH_PARAMS, "summary"))
    return kube_files(paths, out, options, summary, check=check)


@click.command()
@paths_options
@click.option(
    "--out",
    "-o",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    help="The kustomize directory to write. Default: kube/ beside the bake file.",
)
@click.option(
    "--summary",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A build's --summary-json: its image digests are pinned in the kustomization.",
)
@CHECK_OPTION
@click.pass_context
def kube(
    ctx: click.Context,
    catalog: Path | None,
    bake_file: Path | None,
    out: Path | None,
    summary: Path | None,
    check: bool,
) -> None:
    """Write Kubernetes manifests: a kustomize directory with a Deployment and a Service per model."""
    report(*_kube(ctx, out, summary, check=check), check)


@click.group(name="ci")
def ci_group() -> None:
    """CI pipelines that build the catalog with a per-target cache."""


def _ci(ctx: click.Context, provider: Provider, out: Path | None, *, check: bool) -> tuple[Path, bool]:
    from llama_bake.companions import ci_file, ci_options
    from llama_bake.project import Paths

    paths = Paths.from_options(ctx.params["catalog"], ctx.params["bake_file"])
    settings = {name: value for name, value in ctx.params.items() if name in CI_DEFAULTS}
    settings["runner_tags"] = tuple(settings.get("runner_tags", ()))
    return ci_file(paths, ci_options(paths, provider, **settings), out, changed_options(ctx), check=check)


def _ci_command(provider: Provider) -> click.Command:
    github = provider == "github"
    base_cache, model_cache = (spec.format(registry="<REGISTRY>") for spec in DEFAULT_CACHES[provider])
    weights_note = " (weights outgrow GitHub's 10 GB cache)" if github else ""

    @paths_options
    @click.option("--file", "-f", "out", type=OUT_FILE, help=f"Default: {DEFAULT_PATHS[provider]}.")
    @click.option(
        "--branch", default=CI_DEFAULTS["branch"], show_default=True, help="Push images from this branch only."
    )
    @click.option(
        "--runs-on",
        default=CI_DEFAULTS["runs_on"],
        show_default=True,
        help="GitHub runner label.",
        hidden=not github,
    )
    @click.option(
        "--free-disk/--no-free-disk",
        default=CI_DEFAULTS["free_disk"],
        help="GitHub: free runner disk for CUDA.",
        hidden=not github,
    )
    @click.option("--cache", help="Every target's cache: gha (GitHub only) or registry=REF_PREFIX.")
    @click.option("--base-cache", help=f"The bases' cache. Default: {base_cache}.")
    @click.option("--model-cache", help=f"The models' cache. Default: {model_cache}{weights_note}.")
    @click.option("--install", help="pip requirement that installs llama-bake in CI (default: this version).")
    @click.option("--runner-tag", "runner_tags", multiple=True, help="GitLab runner tag.", hidden=github)
    @CHECK_OPTION
    @click.pass_context
    def command(ctx: click.Context, /, out: Path | None, check: bool, **_: Any) -> None:
        report(*_ci(ctx, provider, out, check=check), check)

    command.__doc__ = f"Write a {'GitHub Actions workflow' if github else 'GitLab CI pipeline'}."
    return click.command(name=provider)(command)


ci_github = _ci_command("github")
ci_gitlab = _ci_command("gitlab")
ci_group.add_command(ci_github)
ci_group.add_command(ci_gitlab)


@ci_group.command(name="summary")
@click.argument("metadata", type=click.File("r", encoding="utf-8"))
def ci_summary(metadata: Any) -> None:
    """Print bake's metadata file (or - for stdin) as a Markdown table of images and digests."""
    from llama_bake.render.ci import summary_markdown

    click.echo(summary_markdown(metadata.read()), nl=False)


COMMANDS: dict[tuple[str, ...], click.Command] = {
    ("compose",): compose,
    ("kube",): kube,
    ("ci", "github"): ci_github,
    ("ci", "gitlab"): ci_gitlab,
}


def regenerate(catalog: Path, output: Path, path: Path, words: list[str], *, check: bool) -> tuple[Path, bool] | None:
    """Write ``path`` again (or check it) with the command its header names (``words``, after ``llama-bake``),
    parsed by that command's own options, when the header says this catalog and bake file wrote it: (its path,
    changed). None when the file is not one of ours (another command, another catalog, options this version does
    not know)."""
    from llama_bake.project import DEFAULT_CATALOG, DEFAULT_OUTPUT_NAME

    key = tuple(words[:1]) if words[:1] in (["compose"], ["kube"]) else tuple(words[:2])
    command = COMMANDS.get(key)
    if command is None:
        return None
    try:
        ctx = command.make_context(" ".join(("llama-bake", *key)), list(words[len(key) :]))
    except click.ClickException:
        return None
    bake_dir = output.parent
    written = {
        name: ctx.params[name] if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE else None
        for name in ("catalog", "bake_file")
    }  # what the header says; not $LLAMA_BAKE_CATALOG, which click would read for a header without --catalog
    own_catalog = (bake_dir / (written["catalog"] or DEFAULT_CATALOG)).absolute() == catalog
    own_output = (bake_dir / (written["bake_file"] or DEFAULT_OUTPUT_NAME)).absolute() == output
    if not (own_catalog and own_output):
        return None
    ctx.params["catalog"], ctx.params["bake_file"] = catalog, output
    with ctx:
        if key == ("compose",):
            return _compose(ctx, path, check=check, with_dockerfiles=False)
        if key == ("kube",):
            summary = ctx.params["summary"]
            return _kube(ctx, path.parent, bake_dir / summary if summary else None, check=check)
        return _ci(ctx, key[1], path, check=check)  # type: ignore[arg-type]
