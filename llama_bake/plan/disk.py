"""Planned builder disk: what building a target leaves on its builder (BuildKit's snapshots and content store),
from the sizes the catalog records and the factors below, the one place they are kept. Pure.

``list`` shows it per target, ``ci plan`` packs jobs under a runner's disk with it, and ``build --disk-budget``
refuses, before any step, a build whose targets do not fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llama_bake.catalog.backends import BACKENDS, BaseDisk
from llama_bake.plan.ir import BakePlan, Target

GB = 1000**3

# A baked model's weights take these multiples of their size on the builder, at the build's peak and after it.
# Measured 2026-12-03 (bench/weights.py; BuildKit v0.32.2, ext4, 1 GiB of random weights, an emptied builder;
# the same for gzip, zstd and uncompressed layers): a downloaded file (`hf`, `url`; a gated one is fetched by a
# RUN and copied the same way) is 3.0x: the download's own cache record, the layer's snapshot and the blob in the
# content store. A local file is 4.0x: its context's copy in the builder comes on top.
BAKED_WEIGHTS_FACTOR = {"remote": 3.0, "gated": 3.0, "local": 4.0}
# A weights file re-split for the registry's layer limit (model.Dockerfile.j2): a downloaded one peaks at 3.24x
# (the split parts exist beside the download for a moment; measured as above), a local one stays at 4.0x.
RESPLIT_EXTRA = {"remote": 0.25, "gated": 0.25, "local": 0.0}


# A base's planned builder disk, by backend: each backend's entry keeps its figure.
BASE_DISK: dict[str, BaseDisk] = {name: backend.disk for name, backend in BACKENDS.items()}


def weights_disk(target: Target) -> int | None:
    """A model's weights on the builder: None when a file's size is not recorded (``llama-bake pin`` records it)."""
    if target.shape.delivery == "fetch":
        return 0  # downloaded when the container starts: the build holds none of them
    sizes = target.weight_sizes
    if not sizes or any(size is None for size in sizes):
        return None
    known = [size for size in sizes if size is not None]
    # The files in the order of weight_sizes: the weights' parts, then the projector.
    sources = [source for _, _, source in target.shape.items]
    planned = sum(BAKED_WEIGHTS_FACTOR[source] * size for source, size in zip(sources, known, strict=False))
    if target.shape.resplit_layers:
        planned += RESPLIT_EXTRA[sources[0]] * known[0]  # the weights file (the projector is never re-split)
    return round(planned)


def base_disk(plan: BakePlan, base: str) -> BaseDisk:
    return BASE_DISK[plan.target(base).shape.backend]


def planned_disk(plan: BakePlan, name: str) -> int | None:
    """Building ``name`` alone on a builder that already has its base: a model's weights, or a base's build."""
    target = plan.target(name)
    if target.kind == "base":
        return base_disk(plan, name).built
    return weights_disk(target)


@dataclass(frozen=True)
class Need:
    """One line of a build's planned disk: a target built, or a base pulled for the models built on it."""

    name: str
    bytes: int | None
    what: str  # "built", or "base image pulled"
    # A base's figure is planned from published image sizes; a model's comes from its recorded weights sizes and
    # the measured factor. Only the second decides a refusal against a disk llama-bake measured by itself.
    planned_only: bool = False


def build_needs(plan: BakePlan, built: Iterable[str], pulled_bases: Iterable[str]) -> list[Need]:
    """What a build needs on its builder: each target it builds, and each base given as built elsewhere that its
    models pull (a base built in the same build is counted once, as built)."""
    needs = [Need(name, planned_disk(plan, name), "built", plan.target(name).kind == "base") for name in built]
    needs += [Need(base, base_disk(plan, base).pulled, "base image pulled", True) for base in pulled_bases]
    return needs


def total(needs: Iterable[Need]) -> int | None:
    """The sum, or None when one is unknown."""
    sizes = [need.bytes for need in needs]
    return None if any(size is None for size in sizes) else sum(size for size in sizes if size is not None)
