"""The commands that run something on the builder or the engine: ``build``, ``smoke``, ``doctor`` and ``builder``."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from llama_bake.cli.options import JSON_OPTION, complete_targets, parse_size_option, paths_options


@click.command()
@paths_options
@click.argument("targets", nargs=-1, shell_complete=complete_targets)
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
@click.option(
    "--bases-from",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A base build's --summary-json: its models build on those pushed bases, which are not built here.",
)
@click.option(
    "--base-image",
    "base_image_specs",
    multiple=True,
    help="BASE=IMAGE@sha256:DIGEST: build BASE's models on this pushed image; BASE is not built here.",
)
@click.option(
    "--platform",
    metavar="PLATFORM",
    help="Build each target for this one of its platforms (linux/amd64, linux/arm64): a target of several is "
    "pushed by digest with its own caches, for `ci merge` to make its tag an index of every platform.",
)
@click.option(
    "--disk-budget",
    callback=parse_size_option,
    help="Builder disk this build may use (40GB, 9500MB, 10GiB): a build planned over it is refused before any step.",
)
@click.option("--summary-json", type=click.Path(path_type=Path, dir_okay=False), help="Write the summary as JSON.")
@click.option("--dry-run", is_flag=True, help="Generate, then print the buildx commands instead of running them.")
@click.option(
    "--start-builder/--no-start-builder",
    default=True,
    show_default=True,
    help="With no builder reachable and buildkitd installed, start the embedded one (`builder up`) and build.",
)
def build(  # noqa: PLR0913 - click passes one parameter per option
    catalog: Path | None,
    bake_file: Path | None,
    progress: str,
    summary_json: Path | None,
    dry_run: bool,
    start_builder: bool,
    cache: str | None,
    base_cache: str | None,
    model_cache: str | None,
    bases_from: tuple[Path, ...],
    base_image_specs: tuple[str, ...],
    **options: object,
) -> None:
    """Generate docker-bake.hcl, then build TARGETS (targets or groups; default: every model)."""
    from llama_bake.buildx import daemon, run
    from llama_bake.buildx.client import DockerRunner
    from llama_bake.buildx.options import BuildOptions, CachePreset
    from llama_bake.buildx.pinned import pinned_bases
    from llama_bake.cli import console
    from llama_bake.project import Paths

    presets = {
        name: CachePreset.parse(spec, "--" + name.replace("_", "-")) if spec else None
        for name, spec in (("cache", cache), ("base_cache", base_cache), ("model_cache", model_cache))
    }
    pinned = pinned_bases(base_image_specs, bases_from)
    build_options = BuildOptions(**options, **presets, base_images=pinned)  # type: ignore[arg-type]
    paths = Paths.from_options(catalog, bake_file)
    runner = DockerRunner()
    if dry_run:
        click.echo(run.dry_run(paths, build_options, runner))
        return
    starter = None
    if start_builder and daemon.find_buildkitd() is not None:
        starter = functools.partial(daemon.up, runner, None)
    with console.BuildDisplay(progress) as display:
        say = functools.partial(click.echo, err=True)
        result = run.build(paths, build_options, runner, display, summary_json, start_builder=starter, say=say)
    if progress != "quiet":
        click.echo(console.summary_text(result), err=True, nl=False)


@click.command()
@paths_options
@click.option("--builder", help="Check this builder instead of the default one.")
@JSON_OPTION
def doctor(catalog: Path | None, bake_file: Path | None, builder: str | None, as_json: bool) -> None:
    """Check docker, buildx and the builder; print each problem with its fix."""
    from dataclasses import asdict

    from llama_bake.buildx.checks import verdict
    from llama_bake.buildx.client import DockerRunner
    from llama_bake.buildx.doctor import project_checks
    from llama_bake.project import Paths

    checks = project_checks(DockerRunner(), builder, Paths.from_options(catalog, bake_file))
    if as_json:
        click.echo(json.dumps({"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        for check in checks:
            word = "FAIL" if not check.ok else "warn" if check.warning else "ok "
            click.echo(f"{word} {check.name}: {check.detail}")
            if check.fix:
                click.echo(f"     fix: {check.fix}")
    verdict(checks)


@click.command()
@paths_options
@click.argument("models", nargs=-1, shell_complete=complete_targets)
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
def smoke(  # noqa: PLR0913 - click passes one parameter per option
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
    from llama_bake.buildx import smoke as smokes
    from llama_bake.buildx.client import DockerRunner
    from llama_bake.errors import SmokeFailed
    from llama_bake.project import Paths, compile_catalog

    paths = Paths.from_options(catalog, bake_file)
    plan = compile_catalog(paths).plan
    results = smokes.smoke(
        plan,
        DockerRunner(),
        models,
        variables,
        mode,  # type: ignore[arg-type]
        host_network=host_network,
        timeout=timeout,
        bake_dir=paths.bake_dir,
    )
    for result in results:
        click.echo(smokes.result_line(result))
    failed = [r.model for r in results if not r.ok]
    if failed:
        msg = f"{len(failed)} of {len(results)} image(s) failed: {', '.join(failed)}"
        raise SmokeFailed(msg)


@click.group(name="builder")
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
    from llama_bake.buildx import daemon
    from llama_bake.buildx.client import DockerRunner

    click.echo(daemon.up(DockerRunner(), platform), err=True)


@builder_group.command(name="down")
def builder_down() -> None:
    """Remove the `llama-bake` builder and stop its buildkitd."""
    from llama_bake.buildx import daemon
    from llama_bake.buildx.client import DockerRunner

    click.echo(daemon.down(DockerRunner()), err=True)
