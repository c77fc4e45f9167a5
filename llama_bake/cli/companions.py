"""``compose``, ``ci`` and ``kube``: the files written beside the bake file for Compose, CI and Kubernetes, and their
regeneration by ``generate`` (each file's header command is parsed by the same command's options)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from llama_bake.cli.options import (
    CHECK_OPTION,
    OUT_FILE,
    PATH_PARAMS,
    changed_options,
    complete_targets,
    parse_size_option,
    paths_options,
    report,
)
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
    from llama_bake.project import Paths, compile_catalog
    from llama_bake.render.ci import plan_warnings

    paths = Paths.from_options(ctx.params["catalog"], ctx.params["bake_file"])
    settings = {name: value for name, value in ctx.params.items() if name in CI_DEFAULTS}
    for name in ("runner_tags", "arm64_runner_tags"):
        settings[name] = tuple(settings.get(name, ()))
    options = ci_options(paths, provider, **settings)
    written = ci_file(paths, options, out, changed_options(ctx), check=check)
    if provider == "gitlab":  # its jobs are the plan's: what `ci plan` warns of, said when they are written
        for warning in plan_warnings(compile_catalog(paths).plan, options):
            click.echo(f"warning: {warning}", err=True)
    return written


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
    @click.option(
        "--arm64-runs-on",
        default=CI_DEFAULTS["arm64_runs_on"],
        show_default=True,
        help="GitHub runner label of the arm64 base jobs ('': QEMU on --runs-on).",
        hidden=not github,
    )
    @click.option("--runner-tag", "runner_tags", multiple=True, help="GitLab runner tag.", hidden=github)
    @click.option(
        "--arm64-runner-tag",
        "arm64_runner_tags",
        multiple=True,
        help="GitLab runner tag of the arm64 base jobs (none: QEMU on the other runners).",
        hidden=github,
    )
    @click.option(
        "--runner-disk",
        metavar="SIZE",
        help="The disk a build job has (e.g. 40GB): models are packed into jobs under it, each job checks it. "
        "Default: the provider's standard runner after freeing disk.",
    )
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
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option(
    "--plan",
    "plan_file",
    type=click.File("r", encoding="utf-8"),
    help="`ci plan`'s JSON: a planned model or base with no result in any FILE fails too (implies --fail).",
)
@click.option("--fail", is_flag=True, help="Exit 6 naming each target that failed, was skipped or canceled.")
def ci_summary(files: tuple[Path, ...], plan_file: Any, fail: bool) -> None:
    """Print `build --summary-json` FILEs (one per job; or bake's metadata file; - for stdin) as one Markdown
    table for the CI job summary. A FILE that is missing is a job that stopped before writing it."""
    import json
    import sys

    from llama_bake.errors import BuildError, UsageError
    from llama_bake.render.job_summary import JobResult, combined_markdown, not_built, parse

    results = []
    for path in files:
        if str(path) == "-":
            results.append(parse("-", sys.stdin.read()))
        elif path.is_file():
            results.append(parse(str(path), path.read_text(encoding="utf-8")))
        else:
            click.echo(f"warning: {path}: no such summary (its job stopped before writing it)", err=True)
            results.append(JobResult(str(path), None))
    click.echo(combined_markdown(results), nl=False)
    try:
        plan = json.loads(plan_file.read()) if plan_file is not None else None
    except json.JSONDecodeError as exc:
        msg = f"--plan: not `llama-bake ci plan` JSON: {exc}"
        raise UsageError(msg) from exc
    if not (fail or plan is not None):
        return
    problems = not_built(results, plan)
    missing = [r.name for r in results if r.data is None]
    if problems or missing:
        lines = [f"  {p}" for p in problems] + [f"  no summary: {name}" for name in missing]
        msg = "not every target was built:\n" + "\n".join(lines)
        raise BuildError(msg)


@ci_group.command(name="merge")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--builder", help="Whose registry settings to use (default: the one `builder up` made, else buildx's).")
@click.option(
    "--summary-json",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the merged images' summary (for `build --bases-from`).",
)
def ci_merge(files: tuple[Path, ...], builder: str | None, summary_json: Path) -> None:
    """Merge the parts of each target built one platform each (`build --platform P --push`: pushed by digest)
    into one image index under its tags. FILES: those builds' --summary-json. Exit 6 naming each target with a
    platform missing or unfinished."""
    from llama_bake.buildx.client import DockerRunner
    from llama_bake.buildx.merge import imagetools_create, merge
    from llama_bake.buildx.probe import builder_name
    from llama_bake.errors import BuildError
    from llama_bake.files import write_atomic

    def create(sources: list[str], tags: list[str]) -> str:  # asks buildx only when there is something to merge
        name = builder or (builder_name() if builder_name() in DockerRunner().builders() else None)
        return imagetools_create(name)(sources, tags)

    summary, problems = merge(files, create, builder or "(the builder `builder up` made, else buildx's)")
    write_atomic(summary_json, summary.to_json())
    for target in summary.targets:
        if target.digest:
            where = target.image.rpartition(":")[0] if ":" in target.image.rpartition("/")[2] else target.image
            click.echo(f"{target.name}: {', '.join(target.platforms)} -> {where}@{target.digest}", err=True)
    if not summary.targets:
        click.echo("nothing to merge: no target in FILES was pushed for one of its platforms alone", err=True)
    if problems:
        raise BuildError("cannot merge every target's platforms:\n" + "\n".join(f"  {p}" for p in problems))


@ci_group.command(name="plan")
@paths_options
@click.argument("targets", nargs=-1, shell_complete=complete_targets)
@click.option(
    "--provider",
    type=click.Choice(["github", "gitlab"]),
    default="github",
    show_default=True,
    help="Whose standard runner sets the default --runner-disk.",
)
@click.option(
    "--runner-disk",
    callback=parse_size_option,
    help="The builder disk a runner has (40GB, 9500MB, 10GiB). Default: the provider's standard runner after the "
    "pipeline's set-up (GitHub 40GB, GitLab 15GB).",
)
def ci_plan(
    catalog: Path | None, bake_file: Path | None, targets: tuple[str, ...], provider: str, runner_disk: int | None
) -> None:
    """Print the fan-out plan as JSON: a job per base and platform, then the models (TARGETS, default: every
    model) in jobs that each fit a runner's disk. Exit 11 when a model cannot fit one."""
    import json

    from llama_bake.buildx.invocation import expand_targets
    from llama_bake.plan.fanout import RUNNER_DISK, fan_out
    from llama_bake.project import Paths, compile_catalog

    plan = compile_catalog(Paths.from_options(catalog, bake_file)).plan
    models = expand_targets(plan, targets or ("default",))
    planned = fan_out(plan, models, runner_disk or RUNNER_DISK[provider], provider)
    for warning in planned.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(json.dumps(planned.as_json(), indent=2))


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
