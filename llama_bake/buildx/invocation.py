"""Build options + the plan -> the ``docker buildx bake`` command lines of one build. Pure: nothing runs, nothing
is created on disk (``run`` creates the directories these commands name).

A build is one bake, or two phases: the bases first, then the models with each model's ``base`` context pinned
to the exact image the first phase made (``docker-image://REPO@sha256:...`` when pushed, else
``oci-layout://DIR@sha256:...``). Two phases are what makes an imported cache hold: in one bake, a base shared by
several models through ``target:`` contexts leaves BuildKit without a cache path to some models' own steps
(moby/buildkit#4674), so their weights are downloaded again. With the base pinned by digest, each model's steps
hang off an image, not off another request, and its own cache covers them.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llama_bake.buildx.client import Invocation
from llama_bake.buildx.driver import Demands
from llama_bake.buildx.options import BuildOptions, CachePreset, PhaseName
from llama_bake.buildx.pinned import given_bases, repository_of
from llama_bake.errors import UsageError, did_you_mean
from llama_bake.plan.ir import BakePlan


def expand_targets(plan: BakePlan, names: Iterable[str]) -> list[str]:
    """Targets named directly or through groups, in plan order; unknown names are a usage error."""
    groups = {g.name: g.targets for g in plan.groups}
    known = {t.name for t in plan.targets}
    wanted: set[str] = set()
    for name in names:
        if name in groups:
            wanted.update(groups[name])
        elif name in known:
            wanted.add(name)
        else:
            hint = did_you_mean(name, sorted(known | set(groups)))
            msg = f"unknown target or group `{name}`" + (f"; {hint}" if hint else "; see `llama-bake list`")
            raise UsageError(msg)
    return [t.name for t in plan.targets if t.name in wanted]


def with_bases(plan: BakePlan, targets: Iterable[str]) -> list[str]:
    """``targets`` and the bases they are linked to (BuildKit builds those too), in plan order."""
    names = set(targets)
    wanted = names | {b for t in names if (b := plan.target(t).base)}
    return [t.name for t in plan.targets if t.name in wanted]


@dataclass(frozen=True)
class Phase:
    """One bake of a build: ``names`` as given to bake, ``targets`` every target it builds."""

    name: PhaseName
    names: tuple[str, ...]
    targets: tuple[str, ...]


def phases(options: BuildOptions, plan: BakePlan) -> list[Phase]:
    """One bake, or bases then models: two phases whenever a cache is imported (``auto``), or as asked. A base
    built elsewhere (``given_bases``) is not built: its models build in the models phase on its image."""
    names = list(options.targets) or ["default"]
    requested = expand_targets(plan, names)
    every = with_bases(plan, requested)
    models = tuple(t for t in requested if plan.target(t).kind == "model")
    given = [b for b in given_bases(options.base_images, plan) if b in every]
    if given:
        built = tuple(t for t in every if plan.target(t).kind == "base" and t not in given)
        return ([Phase("bases", built, built)] if built else []) + ([Phase("models", models, models)] if models else [])
    two = options.phases == "two" or (options.phases == "auto" and options.imports_cache)
    if not two or not models:
        return [Phase("all", tuple(names), tuple(every))]
    bases = tuple(t for t in every if plan.target(t).kind == "base")
    return [Phase("bases", bases, bases), Phase("models", models, models)]


def layout_dir(workdir: Path, base: str) -> Path:
    """Where the first phase writes a base as an OCI layout when nothing is pushed."""
    return workdir / "bases" / base


def _allow_path(path: Path, cwd: Path, mode: str) -> list[str]:
    # buildx asks for an entitlement to read or write outside its working directory.
    try:
        path.resolve().relative_to(cwd.resolve())
    except ValueError:
        return ["--allow", f"fs.{mode}={path}"]
    return []


def _output_dest(spec: str) -> Path | None:
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key == "dest" and value not in ("", "-"):
            return Path(value)
    return None


IMAGE_TYPES = ("image", "registry", "docker", "oci")


def with_attrs(spec: str, attrs: str) -> str:
    """A user's ``--output`` with the catalog's exporter attributes (``,key=value`` items) added when its exporter
    writes an image; a key the user wrote stays as written."""
    keys = dict(item.partition("=")[::2] for item in spec.split(","))
    if keys.get("type") not in IMAGE_TYPES:
        return spec
    added = [item for item in attrs.split(",") if item and item.partition("=")[0] not in keys]
    return ",".join([spec, *added])


def outputs(options: BuildOptions, targets: Iterable[str]) -> list[tuple[str, str, Path | None]]:
    """Each ``--output`` as (target, or ``*`` for all, exporter, the directory its ``dest`` is written in)."""
    found = []
    for spec in options.outputs:
        for target in targets if "{target}" in spec else ["*"]:
            resolved = spec.replace("{target}", target)
            dest = _output_dest(resolved)
            found.append((target, resolved, dest.absolute().parent if dest is not None else None))
    return found


@dataclass(frozen=True)
class Site:
    """Where the bakes of one build run, and what each of them passes alike: the bake file and the directory buildx
    runs in, the working directory that holds the bases' OCI layouts and the metadata files between two phases,
    the git values (environment) and each base's last exported compiler cache (``ccache``)."""

    bake_file: Path
    cwd: Path
    workdir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    ccache_imports: Mapping[str, str] = field(default_factory=dict)

    def metadata_file(self, phase: Phase) -> Path:
        return self.workdir / f"{phase.name}-metadata.json"


def make_invocation(
    options: BuildOptions, plan: BakePlan, phase: Phase, site: Site, base_images: Mapping[str, str] | None = None
) -> Invocation:
    """The buildx command of ``phase``. ``base_images`` (phase ``models``) maps each base to the pinned image source
    its models build on."""
    flags = override_flags(options, plan)
    flags += platform_flags(options, phase.targets)
    imports = site.ccache_imports
    flags += [arg for b in phase.targets if b in imports for arg in ("--set", f"{b}.contexts.ccache={imports[b]}")]
    if phase.name == "models":
        flags += _base_contexts(options, plan, phase, site, base_images or {})
    flags += _cache_flags(options, plan, phase, site.cwd)
    flags += _output_flags(options, plan, phase, site.cwd)
    if phase.name == "bases" and not options.push and options.hand_over == "oci-layout":
        flags += _layout_outputs(plan, phase, site)
    if options.network:
        # A bake variable: buildx ignores `--set *.network`.
        flags += ["--var", f"BUILD_NETWORK={options.network}"]
        if options.network == "host":
            flags += ["--allow", "network.host"]
    for item in options.sets:
        flags += ["--set", _checked_set(item)]
    return Invocation(
        files=(str(site.bake_file),),
        targets=phase.names,
        builder=options.builder,
        push=options.push,
        load=options.load,
        no_cache=options.no_cache,
        flags=tuple(flags),
        env=dict(site.env),
        metadata_file=str(site.metadata_file(phase)),
    )


def _base_contexts(
    options: BuildOptions, plan: BakePlan, phase: Phase, site: Site, base_images: Mapping[str, str]
) -> list[str]:
    """The second of two phases: each model builds on the image the first made of its base."""
    flags: list[str] = []
    for model in phase.targets:
        base = plan.target(model).base
        assert base is not None
        flags += ["--set", f"{model}.contexts.base={base_images[base]}"]
    if not options.push and options.hand_over == "oci-layout":
        flags += _allow_path(site.workdir, site.cwd, "read")
    return flags


def _layout_outputs(plan: BakePlan, phase: Phase, site: Site) -> list[str]:
    """The first of two phases, unpushed: each base written as an OCI layout in the working directory."""
    attrs = plan.exporter_attrs
    flags: list[str] = []
    for base in phase.targets:
        flags += ["--set", f"{base}.output=type=oci,dest={layout_dir(site.workdir, base)},tar=false{attrs}"]
    return [*flags, *_allow_path(site.workdir, site.cwd, "write")]


def _output_flags(options: BuildOptions, plan: BakePlan, phase: Phase, cwd: Path) -> list[str]:
    """The exporters, spelled out wherever the build writes an image, so that each carries the catalog's
    compression (and clamped file times): the image exporter with push=true when pushing, the docker exporter with
    --load (alone: the bake file's image output would run beside it), each ``--output``. With none of them, the
    bake file's own output stands (the same image exporter)."""
    flags: list[str] = []
    attrs = plan.exporter_attrs
    if options.load:
        flags += ["--set", f"*.output=type=docker{attrs}"]
    split = [name for name in phase.targets if options.split(plan.target(name).platforms)]
    if options.push and not split:
        # push=true spelled here: buildx applies a target's overrides in map order, so its --push may set push on
        # the bake file's output before this --set replaces it (seen: one push in three never happened).
        flags += ["--set", f"*.output=type=image,push=true{attrs}"]
    elif options.push:
        # One platform of a target with several: pushed by digest alone (no tag: a tag is the index of every
        # platform, which `ci merge` writes once each platform's build has pushed its part).
        for name in phase.targets:
            by_digest = ""
            if name in split:
                # buildx names an image after the target's tags, and a tagged name cannot be pushed by digest.
                repository = repository_of(image_of(plan, name, options.variables))
                flags += ["--set", f"{name}.tags={repository}"]
                by_digest = f",push-by-digest=true,name-canonical=true,name={repository}"
            flags += ["--set", f"{name}.output=type=image,push=true{by_digest}{attrs}"]
    for target, spec, out_dir in outputs(options, phase.targets):
        flags += ["--set", f"{target}.output={with_attrs(spec, attrs)}"]
        if out_dir is not None:
            flags += _allow_path(out_dir, cwd, "write")
    return flags


# Target attributes `docker buildx bake --set` accepts and then drops without a word (buildx v0.36.1: `--print`
# shows them unset), with what does the job instead.
IGNORED_BY_SET = {
    "network": "use --network (llama-bake passes it as a bake variable)",
    "no-cache-filter": "use --no-cache for the whole build, or write no-cache-filter in a bake file of your own",
}


def _checked_set(item: str) -> str:
    """``--set TARGET.KEY=VALUE``, refused where buildx would silently ignore it."""
    key = item.partition("=")[0].rpartition(".")[2]
    if key in IGNORED_BY_SET:
        msg = f"--set {item!r}: buildx ignores {key} given with --set; {IGNORED_BY_SET[key]}"
        raise UsageError(msg)
    return item


def image_of(plan: BakePlan, name: str, variables: tuple[str, ...]) -> str:
    """The target's image (``Target.image``: its first tag that is always written), with ``--var`` values in
    place of the variables' defaults."""
    declared = {v.name for v in plan.variables}
    overrides = {k: v for k, _, v in (item.partition("=") for item in variables) if k in declared}
    return plan.value_of(plan.target(name).image, overrides)


def platform_flags(options: BuildOptions, targets: Iterable[str]) -> list[str]:
    """``--platform``: each target built for that platform only."""
    if options.platform is None:
        return []
    return [arg for name in targets for arg in ("--set", f"{name}.platform={options.platform}")]


def refuse_other_platform(options: BuildOptions, plan: BakePlan, targets: Iterable[str]) -> None:
    """``--platform`` must be one that each target it builds is built for."""
    if options.platform is None:
        return
    other = [
        f"{name} ({', '.join(plan.target(name).platforms)})"
        for name in targets
        if options.platform not in plan.target(name).platforms
    ]
    if other:
        msg = f"--platform {options.platform}: not a platform of {'; '.join(other)}; build those without --platform"
        raise UsageError(msg)


def override_flags(options: BuildOptions, plan: BakePlan) -> list[str]:
    """``--var`` and the image overrides (on every base): what every bake of a build passes alike."""
    flags: list[str] = []
    for variable in options.variables:
        if "=" not in variable:
            msg = f"--var {variable!r}: write NAME=VALUE"
            raise UsageError(msg)
        flags += ["--var", variable]
    bases = [t.name for t in plan.targets if t.kind == "base"]
    for override in options.image_overrides:
        ref, sep, source = override.partition("=")
        if not sep or not ref or not source:
            msg = f"--image-override {override!r}: write IMAGE=SOURCE, e.g. ubuntu:24.04=oci-layout:///mirror/ubuntu"
            raise UsageError(msg)
        flags += [arg for base in bases for arg in ("--set", f"{base}.contexts.{ref}={source}")]
    return flags


def _cache_flags(options: BuildOptions, plan: BakePlan, phase: Phase, cwd: Path) -> list[str]:
    """Every target's cache, spelled out: a ``--set`` replaces the bake file's own list, and each target
    gets its own cache so that none overwrites another's. In one bake a model also reads its base's cache;
    with its base pinned by digest (two phases) it reads only its own, the layout seen to hit every time."""
    flags: list[str] = []
    for name in phase.targets:
        target = plan.target(name)
        preset = options.cache_for(target.kind)
        if preset is not None:
            sources = cache_sources(options, plan, name, preset)
            if phase.name == "all" and target.base is not None:
                base_preset = options.cache_for("base")
                if base_preset is not None:
                    sources += cache_sources(options, plan, target.base, base_preset)
            flags += [arg for spec in sources for arg in ("--set", f"{name}.cache-from={spec}")]
            if options.cache_export:
                flags += ["--set", f"{name}.cache-to={preset.destination(name, options.split(target.platforms))}"]
    for spec in options.cache_from:
        flags += ["--set", f"*.cache-from={spec}"]
    if options.cache_export:
        for spec in options.cache_to:
            flags += ["--set", f"*.cache-to={spec}"]
    flags += _local_cache_allows(options, cwd)
    return _dedupe_allows(flags)


def cache_sources(options: BuildOptions, plan: BakePlan, name: str, preset: CachePreset) -> list[str]:
    """What a target imports: its cache, and for a target with several platforms each platform's own (which
    the builds of one platform each, `--platform`, export): its own platform's first when it builds one."""
    platforms = plan.target(name).platforms
    own = options.split(platforms)
    if own:
        return [preset.source(name, own), preset.source(name)]
    each = [preset.source(name, p) for p in platforms] if len(platforms) > 1 else []
    return [preset.source(name), *each]


def _local_cache_allows(options: BuildOptions, cwd: Path) -> list[str]:
    """Local cache directories: read, and written when the cache is exported (buildx's fs entitlements)."""
    flags: list[str] = []
    for kind in ("base", "model"):
        preset = options.cache_for(kind)
        if preset is not None and preset.kind == "local":
            directory = Path(preset.ref)
            flags += _allow_path(directory, cwd, "read")
            if options.cache_export:
                flags += _allow_path(directory, cwd, "write")
    return flags


def _dedupe_allows(flags: list[str]) -> list[str]:
    """The same ``--allow`` once (a base and its models may share a cache directory)."""
    out: list[str] = []
    seen: set[str] = set()
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        if flag == "--allow":
            if value in seen:
                continue
            seen.add(value)
        out += [flag, value]
    return out


def command_text(invocation: Invocation, command: list[str]) -> str:
    """``command`` (what runs for ``invocation``) as a shell line, after the environment it runs with."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(invocation.env.items()))
    return (env + " " if env else "") + shlex.join(command)


def demands(options: BuildOptions, plan: BakePlan, steps: list[Phase]) -> Demands:
    """What the build asks of the builder beyond building: attestations, cache export, OCI layouts (the user's
    ``--output`` of type oci, and the hand-over between two phases when nothing is pushed), several platforms."""
    targets = [plan.target(name) for phase in steps for name in phase.targets]
    exports: list[str] = []
    if options.cache_export:
        for target in targets:
            preset = options.cache_for(target.kind)
            if preset is not None:
                exports.append(preset.destination(target.name, options.split(target.platforms)))
        exports += options.cache_to
    oci = [spec for spec in options.outputs if "type=oci" in spec.split(",")]
    if len(steps) > 1 and not options.push and options.hand_over == "oci-layout":
        oci.append("the bases handed to their models between the two phases")
    return Demands(
        attestations=tuple(t.name for t in targets if any("disabled=true" not in a for a in t.attest)),
        cache_export=tuple(dict.fromkeys(exports)),
        oci_outputs=tuple(oci),
        multi_platform=tuple(t.name for t in targets if len(t.platforms) > 1 and options.platform is None),
    )
