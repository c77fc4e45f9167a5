"""``llama-bake list``: a row per target of the plan, its image and tags with the variables at their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from llama_bake.plan.disk import planned_disk
from llama_bake.plan.ir import BakePlan


@dataclass(frozen=True)
class Row:
    target: str
    kind: str
    base: str
    runs_on: str  # the backend and the GPU families it is for: cuda:ada, vulkan:rdna3, vulkan:any, cpu
    image: str
    tags: tuple[str, ...]
    dockerfile: str
    platforms: tuple[str, ...]
    weight_size: int | None  # bytes; None for a base, or where a file's size is not recorded
    weight_layers: int  # one per weights file (a split model's parts, the vision projector); a re-split: its parts
    planned_disk: int | None  # bytes of builder disk to build it (plan/disk.py); None where a weight size is unknown


def rows(plan: BakePlan) -> list[Row]:
    """Each target, its base ("-" for a base), its image and every tag (variables at their defaults)."""
    return [
        Row(
            t.name,
            t.kind,
            t.base or "-",
            t.runs_on,
            plan.value_of(t.image),
            tuple(tag for tag in (plan.value_of(i) for i in t.tags) if tag),
            t.dockerfile,
            t.platforms,
            t.weight_size,
            t.weight_layers,
            planned_disk(plan, t.name),
        )
        for t in plan.targets
    ]
