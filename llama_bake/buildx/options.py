"""What a build is asked for: the options of ``llama-bake build`` as one frozen value, and the per-target cache
presets (``--cache``, ``--base-cache``, ``--model-cache``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llama_bake.buildx.pinned import PinnedBase
from llama_bake.errors import UsageError
from llama_bake.plan.ir import CACHE_SPECS

CacheKind = Literal["registry", "gha", "local"]
PhaseMode = Literal["auto", "one", "two"]
PhaseName = Literal["all", "bases", "models"]
# How the first of two phases hands each base to its models: an OCI layout in a temporary directory, or (on a
# builder that cannot write OCI layouts: the docker driver's classic image store) the engine's own image store.
HandOver = Literal["oci-layout", "engine"]
# A target built for one of its several platforms (`build --platform`) has a cache of its own per platform, so
# that the platforms' builds (one CI job each) do not overwrite each other's; {arch}: the platform's last part.
PLATFORM_CACHE_SPECS = {
    "gha": ("type=gha,scope=llama-bake-{target}.{arch}", "type=gha,scope=llama-bake-{target}.{arch},mode=max"),
    "registry": (
        "type=registry,ref={ref}/{target}:buildcache-{arch}",
        "type=registry,ref={ref}/{target}:buildcache-{arch},mode=max",
    ),
    "local": ("type=local,src={ref}/{target}.{arch}", "type=local,dest={ref}/{target}.{arch},mode=max"),
}


def arch_of(platform: str) -> str:
    """``linux/arm64`` -> ``arm64`` (the name a platform's job, cache and compiler cache carry)."""
    return platform.rpartition("/")[2]


@dataclass(frozen=True)
class CachePreset:
    """One cache per target: ``REF/<target>:buildcache``, gha scope ``llama-bake-<target>``, or ``DIR/<target>``."""

    kind: CacheKind
    ref: str = ""

    @classmethod
    def parse(cls, spec: str, option: str = "--cache") -> CachePreset:
        kind, _, ref = spec.partition("=")
        if kind == "gha" and not ref:
            return cls("gha")
        if kind in ("registry", "local") and ref:
            return cls(kind, ref)  # type: ignore[arg-type]
        msg = f"{option} {spec!r}: use registry=REF_PREFIX, gha or local=DIR"
        raise UsageError(msg)

    def absolute(self) -> CachePreset:
        """A local directory as an absolute path: buildx resolves relative ones against its own directory."""
        return CachePreset(self.kind, str(Path(self.ref).absolute())) if self.kind == "local" else self

    def source(self, target: str, platform: str = "") -> str:
        """The cache to import; with ``platform``, that platform's own (a build of one of several platforms)."""
        specs = PLATFORM_CACHE_SPECS if platform else CACHE_SPECS
        return specs[self.kind][0].format(ref=self.ref, target=target, arch=arch_of(platform))

    def destination(self, target: str, platform: str = "") -> str:
        specs = PLATFORM_CACHE_SPECS if platform else CACHE_SPECS
        return specs[self.kind][1].format(ref=self.ref, target=target, arch=arch_of(platform))


@dataclass(frozen=True)
class BuildOptions:
    targets: tuple[str, ...] = ()
    builder: str | None = None
    push: bool = False
    load: bool = False
    outputs: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    no_cache: bool = False
    cache: CachePreset | None = None
    # Per kind of target, in place of ``cache``: a CUDA base fits a CI cache of a few GB, a model's weights do not.
    base_cache: CachePreset | None = None
    model_cache: CachePreset | None = None
    cache_export: bool = True  # False: import only (a pull request cannot write the cache)
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    image_overrides: tuple[str, ...] = ()
    phases: PhaseMode = "auto"
    hand_over: HandOver = "oci-layout"
    # The RUN steps' network: "host" where the engine has no default bridge (dockerd --bridge=none, EKS nodes).
    network: str | None = None
    # Bases built elsewhere (`--base-image`, `--bases-from`): not built here; their models build on these images.
    base_images: tuple[PinnedBase, ...] = ()
    # Bytes of builder disk the build may plan to use (`--disk-budget`): more is refused before any step.
    disk_budget: int | None = None
    # `--platform`: every target built for this one of its platforms. A target with several platforms is then
    # pushed by digest with its own cache and compiler cache, for `ci merge` to make its tag an index.
    platform: str | None = None

    def cache_for(self, kind: str) -> CachePreset | None:
        preset = (self.base_cache if kind == "base" else self.model_cache) or self.cache
        return preset.absolute() if preset is not None else None

    def split(self, platforms: tuple[str, ...]) -> str:
        """The platform a target with ``platforms`` is built for alone, one of several (``--platform``): its
        image is one part of its tag's index. "" when it is built whole."""
        return (self.platform or "") if len(platforms) > 1 else ""

    @property
    def imports_cache(self) -> bool:
        return bool(self.cache or self.base_cache or self.model_cache or self.cache_from)
