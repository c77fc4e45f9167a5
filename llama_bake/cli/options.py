"""The options several commands share, each defined once, and the command line a generated file's header repeats,
rebuilt from click's own parameters (no hand-written writer or parser of flags)."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

import click

from llama_bake.errors import LlamaBakeError

F = TypeVar("F", bound=Callable[..., Any])

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON (shapes in the README).")
CHECK_OPTION = click.option("--check", is_flag=True, help="Write nothing; exit 4 with a diff when a file is stale.")
OUT_FILE = click.Path(path_type=Path, dir_okay=False)


def parse_size_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A size option (``--runner-disk``, ``--disk-budget``) in bytes, written as ``max_layer_size`` is: 40GB,
    9500MB, 10GiB or bytes."""
    del ctx
    if value is None:
        return None
    from llama_bake.catalog.fields import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


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


def complete_targets(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of TARGETS: the catalog's targets and groups (nothing when the catalog is broken)."""
    from click.shell_completion import CompletionItem

    from llama_bake.project import Paths, compile_catalog

    try:
        paths = Paths.from_options(ctx.params.get("catalog"), ctx.params.get("bake_file"))
        plan = compile_catalog(paths).plan  # from the compile cache: a tab press stays quick
    except LlamaBakeError:
        return []
    names = sorted({t.name for t in plan.targets} | {g.name for g in plan.groups})
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


# Written into a header by the project's paths (relative to the bake file), not repeated from the command line.
PATH_PARAMS = ("catalog", "bake_file", "out", "check")


def changed_options(ctx: click.Context, skip: Collection[str] = PATH_PARAMS) -> list[str]:
    """The options of ``ctx``'s command whose value differs from its default, as shell words in the order the
    command declares them: what a header repeats so that its command writes the same file."""
    words: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name is None or param.name in skip:
            continue
        value = ctx.params.get(param.name)
        default = param.get_default(ctx, call=True)
        if not isinstance(default, (str, int, float, list, tuple)):
            default = None  # no default: None, or click's own "unset" marker (click 8.3)
        if param.multiple:
            value, default = tuple(value or ()), tuple(default or ())  # type: ignore[arg-type]
        if value == default:
            continue
        name = max(param.opts, key=len)
        if param.is_flag:
            words += [name] if value else [max(param.secondary_opts, key=len)] if param.secondary_opts else []
        elif param.multiple:
            words += [word for item in value for word in (name, shlex.quote(str(item)))]  # type: ignore[union-attr]
        elif value is not None:
            words += [name, shlex.quote(str(value))]
    return words


def report(path: Path, changed: bool, check: bool) -> None:
    click.echo(f"fresh: {path}" if check else f"{'wrote' if changed else 'unchanged'}: {path}", err=True)
