"""A base's compiler cache (ccache), carried from one builder to the next through the base's cache backend.

BuildKit exports layers, never the contents of a ``RUN --mount=type=cache``, so the ccache of a base's compile
is lost with its builder (a CI runner starts empty). The base Dockerfile therefore has more stages: the named
context ``ccache`` (the last export; an empty stage when none is given), ``ccache-import`` (copies it into the
compile's cache mount), and ``ccache-snapshot``/``ccache-export`` (the cache after a successful compile, cut to
``CCACHE_MAXSIZE``, alone in an image). This module says where a base's export lives, how a build imports it,
and the bake that exports it after a base compiled:

- ``registry=REF``: an image ``REF/<base>:ccache`` beside the build cache ``REF/<base>:buildcache`` (a base of
  several platforms built for one, ``--platform``: ``REF/<base>:ccache-<arch>``, ``DIR/<base>.ccache-<arch>``);
- ``local=DIR``: an OCI layout ``DIR/<base>.ccache`` beside the build cache ``DIR/<base>`` (a dot, which no
  target name has, so it never meets another target's cache);
- ``gha``: not carried. GitHub's cache backend holds BuildKit cache records, found only by the key of the step
  that made them, and no exporter writes an image there. A snapshot found whatever the llama.cpp source is needs
  a key that does not depend on the source; a step with such a key is a cache hit forever, so its first snapshot
  would come back on every run. With ``--base-cache gha --model-cache registry=REF`` (the generated GitHub
  workflow) it goes to the models' registry, ``REF/<base>:ccache``.

The import is keyed by what the export holds (a digest), never by the llama.cpp source: an update to a new
release imports the cache its predecessor left. A failed compile exports nothing, so the last good export stays.
Pure except ``last_export`` (reads a local layout's index, or asks the registry through the function given) and
``publish`` (moves a finished local export into place).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from llama_bake.buildx.client import Invocation
from llama_bake.buildx.invocation import Site, override_flags, platform_flags
from llama_bake.buildx.options import BuildOptions, CachePreset, arch_of
from llama_bake.buildx.progress import Progress
from llama_bake.plan.ir import BakePlan

CONTEXT = "ccache"
EXPORT_STAGE = "ccache-export"
TAG = "ccache"
# The line the compile step prints after the compile (templates/base.Dockerfile.j2).
STATS = re.compile(r"llama-bake: ccache: (\d+) hits, (\d+) misses")
# Keys a user's --set may give that the export bake sets itself, or that would add a second output.
OWN_KEYS = ("output", "cache-to", "cache-from", "tags", "target", "contexts.ccache", "push", "load")


@dataclass(frozen=True)
class Stats:
    hits: int
    misses: int

    @property
    def rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass(frozen=True)
class Store:
    """Where one base's compiler cache is exported to and imported from."""

    kind: str  # registry or local
    location: str  # an image reference, or an OCI layout directory

    @property
    def name(self) -> str:
        """The image name the export is given (a local layout's is only a label in its index)."""
        return self.location if self.kind == "registry" else f"llama-bake-ccache:{Path(self.location).stem}"

    def output(self, staging: Path | None = None) -> str:
        if self.kind == "registry":
            return "type=registry"
        return f"type=oci,dest={staging or self.location},tar=false"


def store(preset: CachePreset | None, base: str, platform: str = "") -> Store | None:
    """The base's store for this preset, or None (no preset, or gha: see the module's note). ``platform``: a
    base of several platforms built for one alone (``--platform``) has a store of its own per platform."""
    if preset is None:
        return None
    tag = f"{TAG}-{arch_of(platform)}" if platform else TAG
    match preset.kind:
        case "registry":
            return Store("registry", f"{preset.ref}/{base}:{tag}")
        case "local":
            return Store("local", f"{preset.ref}/{base}.{tag}")
        case "gha":
            return None


def preset_for(options: BuildOptions) -> CachePreset | None:
    """The bases' cache preset; when that is gha, the models' registry preset if there is one (what the
    generated GitHub workflow passes: bases in gha, models in a registry), so CI carries the compiler cache."""
    base = options.cache_for("base")
    if base is not None and base.kind == "gha":
        model = options.cache_for("model")
        return model if model is not None and model.kind == "registry" else None
    return base


def stores(options: BuildOptions, plan: BakePlan, targets: Iterable[str]) -> dict[str, Store]:
    """The store of each base among ``targets``."""
    preset = preset_for(options)
    found = {}
    for name in targets:
        target = plan.target(name)
        if target.kind == "base" and (where := store(preset, name, options.split(target.platforms))) is not None:
            found[name] = where
    return found


Digest = Callable[[str], str | None]  # an image reference -> its digest, or None when it does not exist


def last_export(where: Store, registry_digest: Digest) -> str | None:
    """The named-context source of the last export (pinned by digest), or None when there is none yet."""
    if where.kind == "registry":
        digest = registry_digest(where.location)
        if not digest:
            return None
        repository = where.location.rsplit(":", 1)[0]
        return f"docker-image://{repository}@{digest}"
    try:
        index = json.loads((Path(where.location) / "index.json").read_text(encoding="utf-8"))
        digest = str(index["manifests"][0]["digest"])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return f"oci-layout://{where.location}@{digest}"


def import_flags(imports: Mapping[str, str], targets: Iterable[str]) -> list[str]:
    """``--set`` of the ``ccache`` context of each base among ``targets`` that has an export."""
    return [
        arg for name in targets if name in imports for arg in ("--set", f"{name}.contexts.{CONTEXT}={imports[name]}")
    ]


def compiled(progress: Progress, plan: BakePlan, built: Iterable[str]) -> dict[str, Stats]:
    """The bases among ``built`` whose compile ran, with its ccache statistics. BuildKit names a shared step
    after the first target that reached it, so a model's line counts for its base; a bake of one target names
    its steps after their stages, so there a line counts for the one base built."""
    names = {t.name for t in plan.targets}
    bases = [name for name in built if plan.target(name).kind == "base"]
    found: dict[str, Stats] = {}
    for vertex in progress.vertices.values():
        owner = vertex.target if vertex.target in names else (bases[0] if len(bases) == 1 else None)
        if owner is None:
            continue
        for line in vertex.log:
            match = STATS.search(line)
            if match:
                found[plan.target(owner).base or owner] = Stats(int(match.group(1)), int(match.group(2)))
    return found


def staging_dir(where: Store) -> Path:
    """A local export is written beside its place, then moved in: an interrupted export leaves the last one."""
    return Path(where.location + ".new")


def export_invocation(options: BuildOptions, plan: BakePlan, exports: Mapping[str, Store], site: Site) -> Invocation:
    """The bake that exports ``exports`` (base -> store) after the bases compiled on this builder: each base
    built again (all of it cached, on the caches ``site`` imported) with its target stage ``ccache-export`` and
    the store as its only output."""
    flags = override_flags(options, plan) + platform_flags(options, exports)
    flags += [
        arg
        for item in options.sets
        if not any(item.partition("=")[0].endswith(f".{key}") for key in OWN_KEYS)
        for arg in ("--set", item)
    ]
    flags += import_flags(site.ccache_imports, exports)
    for base, where in exports.items():
        staging = staging_dir(where) if where.kind == "local" else None
        # The store's name as the only tag: buildx names an image output after the target's tags.
        flags += ["--set", f"{base}.target={EXPORT_STAGE}", "--set", f"{base}.output={where.output(staging)}"]
        flags += ["--set", f"{base}.tags={where.name}"]
        if staging is not None:
            flags += _allow(staging.parent, site.cwd)
    return Invocation(
        files=(str(site.bake_file),),
        targets=tuple(exports),
        builder=options.builder,
        flags=tuple(_unique_allows(flags)),
        env=dict(site.env),
    )


def _allow(directory: Path, cwd: Path) -> list[str]:
    try:
        directory.resolve().relative_to(cwd.resolve())
    except ValueError:
        return ["--allow", f"fs.write={directory}", "--allow", f"fs.read={directory}"]
    return []


def _unique_allows(flags: list[str]) -> list[str]:
    out: list[str] = []
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        if flag == "--allow" and value in out:
            continue
        out += [flag, value]
    return out


def publish(where: Store) -> None:
    """Move a finished local export into place (the old one is removed only after the new one is complete)."""
    if where.kind != "local":
        return
    staging = staging_dir(where)
    final = Path(where.location)
    old = Path(where.location + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
