"""Planned builder disk: what building a target leaves on its builder (BuildKit's snapshots and content store),
from the sizes the catalog records and the factors below, the one place they are kept. Pure.

``list`` shows it per target, ``ci plan`` packs jobs under a runner's disk with it, and ``build --disk-budget``
refuses, before any step, a build whose targets do not fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llama_bake.plan.ir import BakePlan, Target

GB = 1000**3

# A baked model's weights (each file, the vision projector too) take 3.0 times their size on the builder.
# Measured 2026-12-03 (BuildKit v0.32.2, weights of 1 GiB of random bytes, built and pushed on a pruned builder):
# the `ADD <url>` download's snapshot, the `ADD --link` layer's snapshot and the pushed blob in the content
# store, 1 GiB each. A gated download (a RUN's output, then `COPY --link`) and a local file (the context, then
# `COPY --link`) make the same three copies.
BAKED_WEIGHTS_FACTOR = 3.0
# A weights file re-split for the registry's layer limit (model.Dockerfile.j2) makes two copies more: the whole
# file in the stage `weights-whole` and its parts in the stage `resplit`, before the `COPY --link` layers that
# stand for the `ADD --link` layer above. Counted from the template, not measured.
RESPLIT_EXTRA_COPIES = 2


@dataclass(frozen=True)
class BaseDisk:
    """A base's planned builder disk, by backend. Planned from the images' published sizes, not measured."""

    built: int  # building it: the build image (blobs + unpacked), the compile, the compiler cache, the runtime image
    pulled: int  # a model built on its pushed image (a model job): the runtime image's blobs and snapshots


BASE_DISK = {
    # nvidia/cuda devel (~4.5 GB of blobs, ~9 GB unpacked), the build packages and llama.cpp's build tree
    # (~2.5 GB), the compiler cache at its default ccache_max_size of 2G five times over (the imported export,
    # blob and snapshot; the cache mount; the new export, snapshot and blob: ~10 GB), the runtime image (~1.5 GB
    # of blobs, ~3.5 GB unpacked) and the base's own layers (~0.5 GB).
    "cuda": BaseDisk(built=32 * GB, pulled=6 * GB),
    # ubuntu, build-essential, cmake and a CPU build with its compiler cache; a runtime image of a few hundred MB.
    "cpu": BaseDisk(built=4 * GB, pulled=1 * GB),
}


def weights_disk(target: Target) -> int | None:
    """A model's weights on the builder: None when a file's size is not recorded (``llama-bake pin`` records it)."""
    if target.shape.delivery == "fetch":
        return 0  # downloaded when the container starts: the build holds none of them
    sizes = target.weight_sizes
    if not sizes or any(size is None for size in sizes):
        return None
    known = [size for size in sizes if size is not None]
    planned = BAKED_WEIGHTS_FACTOR * sum(known)
    if target.shape.resplit_layers:
        planned += RESPLIT_EXTRA_COPIES * known[0]  # the weights file (the projector is never re-split)
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


def build_needs(plan: BakePlan, built: Iterable[str], pulled_bases: Iterable[str]) -> list[Need]:
    """What a build needs on its builder: each target it builds, and each base given as built elsewhere that its
    models pull (a base built in the same build is counted once, as built)."""
    needs = [Need(name, planned_disk(plan, name), "built") for name in built]
    needs += [Need(base, base_disk(plan, base).pulled, "base image pulled") for base in pulled_bases]
    return needs


def total(needs: Iterable[Need]) -> int | None:
    """The sum, or None when one is unknown."""
    sizes = [need.bytes for need in needs]
    return None if any(size is None for size in sizes) else sum(size for size in sizes if size is not None)
