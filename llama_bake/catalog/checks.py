"""The catalog as a whole, and the checks that span its entries (duplicates, unknown bases, a CUDA that does not
match the rest of the stack).
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_bake.catalog.access import KEY_FIX, Access, ApiKeySource
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

    def access_of(self, model: Model) -> Access:
        return model.access or self.project.access

    def api_key_of(self, model: Model) -> ApiKeySource | None:
        return model.api_key or self.project.api_key


def cross_check(bases: list[Base | None], models: list[Model | None], project: Project | None = None) -> list[Problem]:
    """Problems between entries; ``None`` stands for an entry that failed its own validation."""
    problems: list[Problem] = []
    for i, base in enumerate(bases):
        if base is not None and base.engine.cuda and project is not None:
            problems += [Problem(("bases", i, "cuda"), m) for m in stack_mismatches(base, project)]
    if not bases:
        problems.append(Problem(("bases",), "the catalog has no base; add catalog/bases/<name>.yaml (see the README)"))
    problems += _name_clashes(bases, models)
    problems += _unknown_bases(bases, models)
    problems += _nvidia_gpus_elsewhere(bases, models)
    if project is not None:
        problems += _unprotected(models, project)
    return problems


def _unprotected(models: list[Model | None], project: Project) -> list[Problem]:
    """A model reachable from the network needs an API key: anyone who reaches the port could drive the GPUs."""
    problems = []
    for i, model in enumerate(models):
        if model is None or (model.access or project.access) != "network" or (model.api_key or project.api_key):
            continue
        said = "" if model.access else " (project.yaml's `access: network`)"
        problems.append(
            Problem(
                ("models", i, "access"),
                f"the model is reachable from the network{said} without an API key, so anyone who reaches its port "
                f"can use it; {KEY_FIX}, or set `access: local` (127.0.0.1 only)",
            )
        )
    return problems


def _name_clashes(bases: list[Base | None], models: list[Model | None]) -> list[Problem]:
    """Every target's name once: no two entries, no reserved group, no base's own group (``NAME-all``)."""
    problems: list[Problem] = []
    seen: dict[str, tuple[str | int, ...]] = {}
    entries = [("bases", i, b.name) for i, b in enumerate(bases) if b] + [
        ("models", i, m.name) for i, m in enumerate(models) if m
    ]
    for section, i, name in entries:
        if name in RESERVED_GROUPS:
            problems.append(Problem((section, i, "name"), f"`{name}` is a reserved group name; choose another"))
        elif name in seen:
            other = seen[name]
            problems.append(Problem((section, i, "name"), f"`{name}` is already used by {other[0]}[{other[1]}]"))
        else:
            seen[name] = (section, i)
    problems += [
        Problem(("bases", i, "name"), f"`{base.name}-all` is the group of this base; rename the target")
        for i, base in enumerate(bases)
        if base is not None and f"{base.name}-all" in seen
    ]
    return problems


def _nvidia_gpus_elsewhere(bases: list[Base | None], models: list[Model | None]) -> list[Problem]:
    """``compose.gpus`` picks NVIDIA GPUs; a model on a base whose GPUs are device nodes (vulkan) would ignore it."""
    by_name = {b.name: b for b in bases if b is not None}
    problems = []
    for i, model in enumerate(models):
        if model is None or "gpus" not in model.compose.model_fields_set:
            continue
        base = by_name.get(model.base) if model.base else next(iter(by_name.values()), None)
        if base is not None and base.engine.devices == "nodes":
            problems.append(
                Problem(
                    ("models", i, "compose", "gpus"),
                    f"compose.gpus picks NVIDIA GPUs, and base {base.name} is a {base.backend} base, whose services "
                    "get every render node of /dev/dri; remove it (to pick a card, set GGML_VK_VISIBLE_DEVICES in "
                    "server.env: 0, 1, ... in the order llama.cpp lists them)",
                )
            )
    return problems


def _unknown_bases(bases: list[Base | None], models: list[Model | None]) -> list[Problem]:
    """A model names a base the catalog has, or (with several bases) names one at all."""
    base_names = [b.name for b in bases if b is not None]
    problems: list[Problem] = []
    for i, model in enumerate(models):
        if model is None:
            continue
        if model.base is None and len(base_names) > 1:
            message = "the catalog has several bases; name one: " + ", ".join(sorted(base_names))
            problems.append(Problem(("models", i, "base"), message))
        elif model.base is not None and base_names and model.base not in base_names:
            hint = did_you_mean(model.base, base_names) or "known: " + ", ".join(sorted(base_names))
            problems.append(Problem(("models", i, "base"), f"unknown base `{model.base}`; {hint}"))
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
