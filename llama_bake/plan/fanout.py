"""The CI fan-out plan: one job per base and platform, then one job per model. Pure.

A stand-in with the interface of the packing by planned disk (``fan_out``), which replaces it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llama_bake.plan.ir import BakePlan

GB = 10**9
RUNNER_DISK = {"github": 40 * GB, "gitlab": 15 * GB}


@dataclass(frozen=True)
class FanOut:
    runner_disk: int
    bases: tuple[dict[str, object], ...]
    models: tuple[dict[str, object], ...]

    def as_json(self) -> dict[str, object]:
        return {"runner_disk": self.runner_disk, "bases": list(self.bases), "models": list(self.models)}


def fan_out(plan: BakePlan, models: Iterable[str], runner_disk: int, provider: str = "github") -> FanOut:
    del provider
    wanted = [t for t in plan.targets if t.name in set(models) and t.kind == "model"]
    needed = {t.base for t in wanted}
    bases = tuple(
        {"job": f"base-{t.name}-{p.rpartition('/')[2]}", "base": t.name, "platform": p, "planned_disk": 0}
        for t in plan.targets
        if t.name in needed
        for p in t.platforms
    )
    jobs = tuple(
        {"job": f"models-{t.name}", "targets": [t.name], "bases": [t.base], "planned_disk": 3 * (t.weight_size or 0)}
        for t in wanted
    )
    return FanOut(runner_disk, bases, jobs)
