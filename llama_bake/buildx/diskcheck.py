"""Disk pre-flight: before any step, a build whose targets' planned builder disk (``plan/disk.py``) is over its
budget is refused, with the numbers per target and the fix. The budget is ``--disk-budget``, or the free disk of
the builder ``builder up`` started, while that builder is still empty (a warm one may hold what the build needs).
"""

from __future__ import annotations

from llama_bake.buildx import daemon
from llama_bake.buildx.invocation import phases
from llama_bake.buildx.options import BuildOptions
from llama_bake.buildx.pinned import given_bases
from llama_bake.catalog.fields import format_size
from llama_bake.errors import DiskBudgetError
from llama_bake.plan.disk import Need, build_needs
from llama_bake.plan.ir import BakePlan

FIX = (
    "build fewer targets per builder (`llama-bake ci plan` packs them per runner), build the models on a base "
    "built elsewhere (--bases-from its build's summary), use a builder with more disk, or `delivery: fetch` for a "
    "big model (its weights are downloaded when the container starts)"
)


def budget(options: BuildOptions) -> tuple[int, str] | None:
    """The bytes the build may use and where that figure comes from, or None (nothing to check)."""
    if options.disk_budget is not None:
        return options.disk_budget, "--disk-budget"
    measured = daemon.fresh_free_disk(options.builder)
    if measured is None:
        return None
    free, root = measured
    return free, f"free on the disk of the builder's state directory {root}"


def needs(plan: BakePlan, options: BuildOptions) -> list[Need]:
    """What the build plans to use: each target it builds, and each base given as built elsewhere that its models
    pull. A base given by digest is not built."""
    built = [name for phase in phases(options, plan) for name in phase.targets]
    used = {plan.target(name).base for name in built}
    return build_needs(plan, built, [base for base in given_bases(options.base_images, plan) if base in used])


def check_disk(plan: BakePlan, options: BuildOptions) -> None:
    """Refuse, before any step, a build whose planned disk is over its budget."""
    limit = budget(options)
    if limit is None:
        return
    allowed, origin = limit
    planned = needs(plan, options)
    known = sum(need.bytes or 0 for need in planned)
    if known <= allowed:
        return
    width = max(len(need.name) for need in planned)
    lines = [
        f"  {need.name:<{width}}  "
        + (f"{format_size(need.bytes)} {need.what}" if need.bytes is not None else "? (no weights size recorded)")
        for need in planned
    ]
    msg = (
        f"this build plans {format_size(known)} of builder disk, over the {format_size(allowed)} it has "
        f"({origin}); nothing was built:\n" + "\n".join(lines) + f"\nFix: {FIX}"
    )
    raise DiskBudgetError(msg)
