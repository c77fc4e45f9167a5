"""The ``llama-bake`` command: parse options, call one pipeline function, map errors to exit codes."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from llama_bake.errors import LlamaBakeError, UsageError

if TYPE_CHECKING:
    from llama_bake import pipeline
else:

    class _Lazy:
        """The pipeline (pydantic, Jinja, YAML) is imported on first use: `--help` stays fast."""

        def __getattr__(self, name: str) -> Any:
            import importlib

            return getattr(importlib.import_module("llama_bake.pipeline"), name)

    pipeline = _Lazy()

F = TypeVar("F", bound=Callable[..., Any])


def _complete_targets(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of TARGETS: the catalog's targets and groups (nothing when the catalog is broken)."""
    from click.shell_completion import CompletionItem

    try:
        paths = pipeline.Paths.from_options(ctx.params.get("catalog"), ctx.params.get("bake_file"))
        plan = pipeline.compile_catalog(paths).plan  # from the compile cache: a tab press stays quick
    except LlamaBakeError:
        return []
    names = sorted({t.name for t in plan.targets} | {g.name for g in plan.groups})
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON (shapes in the README).")


def paths_options(func: F) -> F:
    """--catalog and --bake-file, spelled the same in every command that reads the catalog."""
    func = click.option(
        "--bake-file",
        "-b",
        "bake_file",
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


@main.command()
@paths_options
@click.option("--check", is_flag=True, help="Write nothing; exit 4 with a diff when a file is stale.")
def generate(catalog: Path | None, bake_file: Path | None, check: bool) -> None:
    """Write docker-bake.hcl and dockerfiles/ from the catalog (atomically; unchanged files are not touched,
    Dockerfiles of removed targets are removed)."""
    paths = pipeline.Paths.from_options(catalog, bake_file)
    written = pipeline.generate(paths, check=check)
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


@main.command()
@paths_options
@click.option("--diff", "show_diff", is_flag=True, help="Show what generate would change on disk.")
@click.option("--resolved", is_flag=True, help="Show what buildx resolves (docker buildx bake --print).")
@click.option("--color/--no-color", default=None, help="Highlight (default: when stdout is a terminal).")
@click.argument("targets", nargs=-1, shell_complete=_complete_targets)
def preview(
    catalog: Path | None,
    bake_file: Path | None,
    show_diff: bool,
    resolved: bool,
    color: bool | None,
    targets: tuple[str, ...],
) -> None:
    """Print the generated HCL without writing it. TARGETS apply to --resolved."""
    from llama_bake import console

    paths = pipeline.Paths.from_options(catalog, bake_file)
    if resolved:
        config = pipeline.resolved(paths, targets)
        console.show(json.dumps(config, indent=2, sort_keys=True) + "\n", "json", color)
    elif show_diff:
        diff = pipeline.preview_diff(paths)
        console.show(diff or f"# {paths.output} is up to date\n", "diff", color)
    else:
        console.show(pipeline.preview_text(paths), "terraform", color)


@main.command()
@paths_options
@click.option("--strict", is_flag=True, help="Warnings are problems too (exit 8): for CI.")
@JSON_OPTION
def validate(catalog: Path | None, bake_file: Path | None, strict: bool, as_json: bool) -> None:
    """Check the catalog and report every problem at once (file, field, message, hint)."""
    paths = pipeline.Paths.from_options(catalog, bake_file)
    result = pipeline.validate(paths, strict=strict)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
    result.raise_if_invalid()
    if not as_json:
        warned = f" ({len(result.warnings)} warnings)" if result.warnings else ""
        click.echo(f"{paths.catalog}: valid{warned}", err=True)


@main.command()
@click.argument("kind", required=False, type=click.Choice(["base", "model", "project"]))
def schema(kind: str | None) -> None:
    """Print the JSON Schema of catalog files (all kinds, or one: project, base, model)."""
    click.echo(pipeline.schema_text(kind), nl=False)


@main.command(name="list")
@paths_options
@JSON_OPTION
def list_(catalog: Path | None, bake_file: Path | None, as_json: bool) -> None:
    """List targets, their base and image (with REGISTRY and TAG at their defaults)."""
    from dataclasses import asdict

    from llama_bake.console import columns

    rows = pipeline.list_targets(pipeline.Paths.from_options(catalog, bake_file))
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], indent=2))
        return
    from llama_bake.catalog import format_size

    platforms = [",".join(p.removeprefix("linux/") for p in r.platforms) for r in rows]
    weights = [
        ("-", "-")
        if r.kind == "base"
        else ("?" if r.weight_size is None else format_size(r.weight_size), str(r.weight_layers))
        for r in rows
    ]
    table = [
        ("TARGET", "KIND", "BASE", "IMAGE", "PLATFORMS", "WEIGHTS", "LAYERS"),
        *(
            (r.target, r.kind, r.base, r.image, shown, *sizes)
            for r, shown, sizes in zip(rows, platforms, weights, strict=True)
        ),
    ]
    for line in columns(table):
        click.echo(line)


@main.command()
@paths_options
@click.argument("targets", nargs=-1, shell_complete=_complete_targets)
@click.option("--builder", help="buildx builder (default: the one `builder up` made, else buildx's current).")
@click.option("--push", is_flag=True, help="Push the images (the registry's credentials come from docker login).")
@click.option("--load", is_flag=True, help="Load the images into the local Docker engine.")
@click.option("--output", "outputs", multiple=True, help="Exporter, e.g. type=oci,dest=out/{target}.tar.")
@click.option("--set", "sets", multiple=True, help="Override a target attribute (TARGET.KEY=VALUE).")
@click.option("--var", "variables", multiple=True, help="Set a bake variable (NAME=VALUE).")
@click.option("--no-cache", is_flag=True, help="Build without the builder's cache.")
@click.option(
    "--progress",
    type=click.Choice(["auto", "plain", "tty", "quiet", "rawjson"]),
    default="auto",
    show_default=True,
)
@click.option("--cache", "cache", help="Per-target cache for every target: registry=REF_PREFIX, gha, or local=DIR.")
@click.option("--base-cache", help="The bases' cache, in place of --cache (same forms).")
@click.option("--model-cache", help="The models' cache, in place of --cache (same forms).")
@click.option(
    "--cache-export/--no-cache-export",
    default=True,
    show_default=True,
    help="Export the per-target caches (off: import only, e.g. a pull request that cannot write them).",
)
@click.option("--cache-from", multiple=True, help="Extra cache source for every target (buildx syntax).")
@click.option("--cache-to", multiple=True, help="Extra cache export for every target (buildx syntax).")
@click.option("--image-override", "image_overrides", multiple=True, help="Replace an image: IMAGE=SOURCE.")
@click.option(
    "--phases",
    type=click.Choice(["auto", "one", "two"]),
    default="auto",
    show_default=True,
    help="two: bases first, then the models on the bases' exact digests (auto: whenever a cache is imported).",
)
@click.option(
    "--network",
    type=click.Choice(["default", "host", "none"]),
    help="The RUN steps' network: host where the engine has no default bridge (dockerd --bridge=none, EKS nodes).",
)
@click.option("--summary-json", type=click.Path(path_type=Path, dir_okay=False), help="Write the summary as JSON.")
@click.option("--dry-run", is_flag=True, help="Generate, then print the buildx commands instead of running them.")
@click.option(
    "--start-builder/--no-start-builder",
    default=True,
    show_default=True,
    help="With no builder reachable and buildkitd installed, start the embedded one (`builder up`) and build.",
)
def build(
    catalog: Path | None,
    bake_file: Path | None,
    targets: tuple[str, ...],
    builder: str | None,
    push: bool,
    load: bool,
    outputs: tuple[str, ...],
    sets: tuple[str, ...],
    variables: tuple[str, ...],
    no_cache: bool,
    progress: str,
    cache: str | None,
    base_cache: str | None,
    model_cache: str | None,
    cache_export: bool,
    cache_from: tuple[str, ...],
    cache_to: tuple[str, ...],
    image_overrides: tuple[str, ...],
    phases: str,
    network: str | None,
    summary_json: Path | None,
    dry_run: bool,
    start_builder: bool,
) -> None:
    """Generate docker-bake.hcl, then build TARGETS (targets or groups; default: every model)."""
    from llama_bake import console
    from llama_bake.invocation import BuildOptions, CachePreset

    def preset(spec: str | None, option: str) -> CachePreset | None:
        return CachePreset.parse(spec, option) if spec else None

    options = BuildOptions(
        targets=targets,
        builder=builder,
        push=push,
        load=load,
        outputs=outputs,
        sets=sets,
        variables=variables,
        no_cache=no_cache,
        cache=preset(cache, "--cache"),
        base_cache=preset(base_cache, "--base-cache"),
        model_cache=preset(model_cache, "--model-cache"),
        cache_export=cache_export,
        cache_from=cache_from,
        cache_to=cache_to,
        image_overrides=image_overrides,
        phases=phases,  # type: ignore[arg-type]
        network=network,
    )
    paths = pipeline.Paths.from_options(catalog, bake_file)
    if dry_run:
        click.echo(pipeline.dry_run(paths, options))
        return
    with console.BuildDisplay(progress) as display:
        say = functools.partial(click.echo, err=True)
        result = pipeline.build(paths, options, display, summary_json, start_builder=start_builder, say=say)
    if progress != "quiet":
        click.echo(console.summary_text(result), err=True, nl=False)


@main.command()
@paths_options
@click.option("--builder", help="Check this builder instead of the default one.")
@JSON_OPTION
def doctor(catalog: Path | None, bake_file: Path | None, builder: str | None, as_json: bool) -> None:
    """Check docker, buildx and the builder; print each problem with its fix."""
    from dataclasses import asdict

    checks = pipeline.doctor(builder, pipeline.Paths.from_options(catalog, bake_file))
    if as_json:
        click.echo(json.dumps({"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        for check in checks:
            word = "FAIL" if not check.ok else "warn" if check.warning else "ok "
            click.echo(f"{word} {check.name}: {check.detail}")
            if check.fix:
                click.echo(f"     fix: {check.fix}")
    pipeline.doctor_verdict(checks)


@main.command()
@paths_options
@click.argument("models", nargs=-1, shell_complete=_complete_targets)
@click.option("--var", "variables", multiple=True, help="Set a bake variable (NAME=VALUE), as for build.")
@click.option("--cpu", "mode", flag_value="cpu", help="Run on the CPU (no GPU, no layer offloaded).")
@click.option("--gpu", "mode", flag_value="gpu", help="Require the GPU (fails when the engine cannot give one).")
@click.option("--auto", "mode", flag_value="auto", default=True, hidden=True)
@click.option(
    "--host-network",
    is_flag=True,
    help="Share the host's network (the server listens on 127.0.0.1 only) instead of publishing a port.",
)
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for /health.")
def smoke(
    catalog: Path | None,
    bake_file: Path | None,
    models: tuple[str, ...],
    variables: tuple[str, ...],
    mode: str,
    host_network: bool,
    timeout: float,
) -> None:
    """Run each built model image (default: every model) on the Docker Engine: wait for /health, ask for one
    completion, report time to healthy and tokens per second, remove the container. Exit 7 when one fails."""
    from llama_bake.errors import SmokeFailed
    from llama_bake.smoke import result_line

    paths = pipeline.Paths.from_options(catalog, bake_file)
    results = pipeline.smoke(paths, models, variables, mode, host_network, timeout)  # type: ignore[arg-type]
    for result in results:
        click.echo(result_line(result))
    failed = [r.model for r in results if not r.ok]
    if failed:
        msg = f"{len(failed)} of {len(results)} image(s) failed: {', '.join(failed)}"
        raise SmokeFailed(msg)


def _report(path: Path, changed: bool, check: bool) -> None:
    click.echo(f"fresh: {path}" if check else f"{'wrote' if changed else 'unchanged'}: {path}", err=True)


OUT_FILE = click.Path(path_type=Path, dir_okay=False)


@main.command()
@paths_options
@click.option(
    "--file", "-f", "out", type=OUT_FILE, help="Where to write it. Default: compose.yaml beside the bake file."
)
@click.option("--check", is_flag=True, help="Write nothing; exit 4 with a diff when the file is stale.")
def compose(catalog: Path | None, bake_file: Path | None, out: Path | None, check: bool) -> None:
    """Write a Compose file: one service per model, GPUs reserved, built locally from the bake targets."""
    paths = pipeline.Paths.from_options(catalog, bake_file)
    _report(*pipeline.compose_file(paths, out, check=check), check)


@main.group(name="ci")
def ci_group() -> None:
    """CI pipelines that build the catalog with a per-target cache."""


def _ci_command(provider: str) -> Callable[..., None]:
    from llama_bake.ci import DEFAULT_PATHS

    github = provider == "github"

    @paths_options
    @click.option("--file", "-f", "out", type=OUT_FILE, help=f"Default: {DEFAULT_PATHS[provider]}.")
    @click.option("--cache", help="Every target's cache: gha (GitHub only) or registry=REF_PREFIX.")
    @click.option(
        "--base-cache",
        help="The bases' cache. Default: " + ("gha." if github else "registry=$CI_REGISTRY_IMAGE/cache."),
    )
    @click.option(
        "--model-cache",
        help="The models' cache. Default: "
        + ("registry=<REGISTRY>/cache (weights outgrow GitHub's 10 GB cache)." if github else "as the bases."),
    )
    @click.option("--branch", default="main", show_default=True, help="Push images from this branch only.")
    @click.option("--install", help="pip requirement that installs llama-bake in CI (default: this version).")
    @click.option(
        "--runs-on", default="ubuntu-latest", show_default=True, help="GitHub runner label.", hidden=not github
    )
    @click.option(
        "--free-disk/--no-free-disk", default=True, help="GitHub: free runner disk for CUDA.", hidden=not github
    )
    @click.option("--runner-tag", "runner_tags", multiple=True, help="GitLab runner tag.", hidden=github)
    @click.option("--check", is_flag=True, help="Write nothing; exit 4 with a diff when the file is stale.")
    def command(
        catalog: Path | None,
        bake_file: Path | None,
        out: Path | None,
        check: bool,
        **settings: Any,
    ) -> None:
        paths = pipeline.Paths.from_options(catalog, bake_file)
        _report(*pipeline.ci_file(paths, provider, out, settings, check=check), check)

    command.__doc__ = f"Write a {'GitHub Actions workflow' if github else 'GitLab CI pipeline'}."
    return command


ci_group.command(name="github")(_ci_command("github"))
ci_group.command(name="gitlab")(_ci_command("gitlab"))


@ci_group.command(name="summary")
@click.argument("metadata", type=click.File("r", encoding="utf-8"))
def ci_summary(metadata: Any) -> None:
    """Print bake's metadata file (or - for stdin) as a Markdown table of images and digests."""
    click.echo(pipeline.ci_summary(metadata.read()), nl=False)


@main.command()
@paths_options
@click.option(
    "--format", "fmt", type=click.Choice(["text", "mermaid", "dot", "json"]), default="text", show_default=True
)
@JSON_OPTION
def graph(catalog: Path | None, bake_file: Path | None, fmt: str, as_json: bool) -> None:
    """Show what depends on what: images and source -> bases -> models."""
    paths = pipeline.Paths.from_options(catalog, bake_file)
    click.echo(pipeline.graph_text(paths, "json" if as_json else fmt), nl=False)


@main.group(name="builder")
def builder_group() -> None:
    """Start or stop the embedded BuildKit builder (for machines without a Docker engine)."""


@builder_group.command(name="up")
@click.option(
    "--platform",
    type=click.Choice(["linux/amd64", "linux/arm64"]),
    help="Also start a second node for this platform (by emulation here, or point buildx at a native machine).",
)
def builder_up(platform: str | None) -> None:
    """Start a local buildkitd and register it as the buildx builder `llama-bake`."""
    click.echo(pipeline.builder_up(platform), err=True)


@builder_group.command(name="down")
def builder_down() -> None:
    """Remove the `llama-bake` builder and stop its buildkitd."""
    click.echo(pipeline.builder_down(), err=True)


@main.command()
@paths_options
@click.argument("spec")
@click.option("--name", help="The model's name (its file and target). Default: from the repository's name.")
@click.option("--base", help="The base to build on (needed when the catalog has several).")
@click.option("--delivery", type=click.Choice(["baked", "fetch"]), help="Weights in the image, or fetched at start.")
@click.option("--ctx-size", type=int, help="The server's context size.")
@click.option("--revision", default="main", show_default=True, help="Branch, tag or commit to pin.")
@click.option("--mmproj", help="The vision projector file, when the repository has several.")
@click.option("--no-mmproj", is_flag=True, help="Leave out the vision projector.")
def add(catalog: Path | None, bake_file: Path | None, spec: str, **settings: Any) -> None:
    """Add a model from the Hugging Face Hub, pinned: SPEC is hf://OWNER/REPO/FILE.gguf or OWNER/REPO:QUANT."""
    paths = pipeline.Paths.from_options(catalog, bake_file)
    added = pipeline.add_model(paths, spec, settings)
    extra = f" and {added.mmproj}" if added.mmproj else ""
    weights = (
        added.weights[0] if len(added.weights) == 1 else f"{len(added.weights)} parts ({', '.join(added.weights)})"
    )
    click.echo(f"wrote {added.path}: {weights}{extra} at commit {added.commit[:12]}", err=True)


@main.command()
@paths_options
@click.argument("models", nargs=-1, shell_complete=_complete_targets)
@click.option("--update", is_flag=True, help="Move pinned models to the repository's newest commit too.")
@click.option("--branch", default="main", show_default=True, help="The branch --update (and a placeholder) follows.")
@click.option("--ref", help="For a BASE: the release tag (or commit) to move its llama.cpp ref to.")
def pin(
    catalog: Path | None, bake_file: Path | None, models: tuple[str, ...], update: bool, branch: str, ref: str | None
) -> None:
    """Fill in revision and sha256 from the Hub for MODELS (default: every model) that have placeholders or a
    branch name; --update moves pinned ones too. A BASE named moves its llama.cpp ref: --update to the newest
    release tag of its git URL (git ls-remote), --ref to the one given. Prints what changed; comments stay."""
    from llama_bake import releases

    paths = pipeline.Paths.from_options(catalog, bake_file)
    bases = [n for n in models if n in releases.base_files(paths.catalog)]
    if ref is not None and not bases:
        msg = "--ref moves a base's llama.cpp ref: name the base (`llama-bake pin BASE --ref b6600`)"
        raise UsageError(msg)
    rest = tuple(n for n in models if n not in bases)
    for result in releases.pin_bases(paths.catalog, bases, update=update, ref=ref):
        click.echo(result.diff, nl=False)
        click.echo(result.message, err=True)
    if rest or not bases:
        pinned = pipeline.pin_models(paths, rest, update=update, branch=branch)
        for item in pinned:
            click.echo(item.diff, nl=False)
            for note in item.notes:
                click.echo(note, err=True)
        click.echo(f"pinned {len(pinned)} file(s)" if pinned else "every model is pinned; nothing changed", err=True)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=".")
@click.option("--gpu", "families", multiple=True, help="A GPU family to compile for (default: this machine's cards).")
def init(directory: Path, families: tuple[str, ...]) -> None:
    """Start a catalog in DIRECTORY/catalog: project settings and a CUDA base, no model yet."""
    for path in pipeline.init_catalog(directory, families):
        click.echo(f"wrote {path}", err=True)
    click.echo("next: `llama-bake add OWNER/REPO:QUANT`, then `llama-bake generate`", err=True)
