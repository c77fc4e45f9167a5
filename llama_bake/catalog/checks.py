"""The catalog as a whole, and the checks that span its entries (duplicates, unknown bases, a CUDA that does not
match the rest of the stack).
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_bake.catalog.bases import Base
from llama_bake.catalog.fields import RESERVED_GROUPS, Strict
from llama_bake.catalog.gpus import fmt_cuda, parse_cuda
from llama_bake.catalog.models import Model
from llama_bake.catalog.project import Project
from llama_bake.errors import did_you_mean

# --- cross-entry checks -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A problem located by (section, index, field...) in the catalog's combined data."""

    loc: tuple[str | int, ...]
    message: str


class Catalog(Strict):
    project: Project
    bases: tuple[Base, ...]
    models: tuple[Model, ...]

    def base_of(self, model: Model) -> Base:
        name = model.base if model.base is not None else self.bases[0].name
        return next(b for b in self.bases if b.name == name)


def cross_check(bases: list[Base | None], models: list[Model | None], project: Project | None = None) -> list[Problem]:
    """Problems between entries; ``None`` stands for an entry that failed its own validation."""
    problems: list[Problem] = []
    for i, base in enumerate(bases):
        if base is not None and base.backend == "cuda" and project is not None:
            problems += [Problem(("bases", i, "cuda"), m) for m in stack_mismatches(base, project)]
    valid_bases = [b for b in bases if b is not None]
    if not bases:
        problems.append(Problem(("bases",), "the catalog has no base; add catalog/bases/<name>.yaml (see the README)"))
    seen: dict[str, tuple[str | int, ...]] = {}
    base_names = [b.name for b in valid_bases]

    def claim(name: str, loc: tuple[str | int, ...]) -> None:
        if name in RESERVED_GROUPS:
            problems.append(Problem((*loc, "name"), f"`{name}` is a reserved group name; choose another"))
        elif name in seen:
            other = seen[name]
            problems.append(Problem((*loc, "name"), f"`{name}` is already used by {other[0]}[{other[1]}]"))
        else:
            seen[name] = loc

    for i, base in enumerate(bases):
        if base is not None:
            claim(base.name, ("bases", i))
    for i, model in enumerate(models):
        if model is not None:
            claim(model.name, ("models", i))
    for i, base in enumerate(bases):
        if base is not None and f"{base.name}-all" in seen:
            problems.append(
                Problem(("bases", i, "name"), f"`{base.name}-all` is the group of this base; rename the target")
            )
    for i, model in enumerate(models):
        if model is None:
            continue
        if model.base is None:
            if len(base_names) > 1:
                problems.append(
                    Problem(
                        ("models", i, "base"),
                        "the catalog has several bases; name one: " + ", ".join(sorted(base_names)),
                    )
                )
        elif valid_bases and model.base not in base_names:
            hint = did_you_mean(model.base, base_names)
            problems.append(
                Problem(
                    ("models", i, "base"),
                    f"unknown base `{model.base}`; " + (hint if hint else "known: " + ", ".join(sorted(base_names))),
                )
            )
    return problems


def stack_mismatches(base: Base, project: Project) -> list[str]:
    """Why ``base`` does not fit the stack: one message per service on another CUDA major.minor."""
    mine = parse_cuda(base.cuda)
    out = []
    for name, service in sorted(project.stack.items()):
        theirs = service.cuda_version
        if theirs != mine:
            where = f" ({service.image})" if service.image else ""
            out.append(
                f"CUDA {base.cuda} does not match the stack: service `{name}`{where} is on CUDA {fmt_cuda(theirs)}; "
                f"set `cuda: {fmt_cuda(theirs)}.x` here (e.g. {fmt_cuda(theirs)}.1), or update `stack.{name}` "
                "in project.yaml if that service moved"
            )
    return out
