"""``Catalog`` -> ``BakePlan``: every target, group and variable, resolved and sorted. Pure.

User values never enter Dockerfile text: they travel as build args, labels, tags and contexts, and the
Dockerfiles only vary by *shape* (backend, which env keys, mmproj or not, ...). Each target has its own
Dockerfile (``dockerfiles/NAME.Dockerfile``), so a change to one model is a change to its files only.
"""

from __future__ import annotations

import ntpath
import os
import re
from dataclasses import replace
from pathlib import Path, PurePath
from types import ModuleType

from llama_bake.catalog.bases import Base, GitSource
from llama_bake.catalog.checks import Catalog
from llama_bake.catalog.constants import GIT_PLACEHOLDERS
from llama_bake.catalog.layers import resplit
from llama_bake.catalog.models import FileWeights, HfWeights, Model
from llama_bake.errors import CatalogError
from llama_bake.plan.environment import CPU_ARGS, base_env, cmake_args, server_env, weights_label
from llama_bake.plan.ir import (
    DOCKERFILES_DIR,
    LABEL_PREFIX,
    BakePlan,
    Fn,
    Group,
    Interp,
    Shape,
    Target,
    Var,
    Variable,
    part_prefix,
)


def make_plan(catalog: Catalog, project_dir: Path, bake_dir: Path, dockerfiles: str = DOCKERFILES_DIR) -> BakePlan:
    """Resolve ``catalog``. Relative paths in the catalog are relative to ``project_dir``; paths in the
    plan are relative to ``bake_dir`` (where the bake file lives and bake runs); the Dockerfiles go into
    ``dockerfiles`` there."""
    variables: tuple[Variable, ...] = (
        Variable("REGISTRY", catalog.project.registry, "Image repository prefix, e.g. ghcr.io/acme."),
        Variable("TAG", catalog.project.tag, "Value of {tag} in the tag scheme."),
        Variable("CACHE_TYPE", "", "Per-target build cache: '' (none), registry, gha or local."),
        Variable("CACHE_REF", "", "registry: a repository prefix for cache refs; local: a directory."),
        Variable(
            "BUILD_NETWORK",
            "",
            "The RUN steps' network: '' (the engine's default), host (engines without a default bridge: "
            "dockerd --bridge=none, EKS nodes; pass --allow network.host) or none.",
        ),
    )
    if catalog.project.uses_git:
        variables += (
            Variable("GIT_SHA", "", "The commit built (CI sets it; llama-bake build reads the checkout)."),
            Variable("GIT_BRANCH", "", "The branch built, '' on a tag build."),
            Variable("GIT_VERSION", "", "The git tag built, e.g. v1.2.3 ({git_version} is set for semver tags)."),
        )
    if catalog.project.source_date_epoch is not None:
        variables += (
            Variable(
                "SOURCE_DATE_EPOCH",
                str(catalog.project.source_date_epoch),
                "Time written into image configs (project.source_date_epoch).",
            ),
        )
    targets = [_base_target(catalog, b, project_dir, bake_dir) for b in catalog.bases]
    targets += [_model_target(catalog, m, project_dir, bake_dir) for m in catalog.models]
    targets = sorted(
        (replace(t, dockerfile=f"{dockerfiles}/{t.name}.Dockerfile") for t in targets), key=lambda t: t.name
    )

    base_names = sorted(b.name for b in catalog.bases)
    model_names = sorted(m.name for m in catalog.models)
    groups = [
        Group("default", "Every model image (each builds its base first).", tuple(model_names)),
        Group("bases", "The llama.cpp base images.", tuple(base_names)),
        Group("models", "Every model image.", tuple(model_names)),
    ]
    for base in sorted(catalog.bases, key=lambda b: b.name):
        members = sorted(m.name for m in catalog.models if catalog.base_of(m).name == base.name)
        groups.append(Group(f"{base.name}-all", f"{base.name} and the models built on it.", (base.name, *members)))
    groups.sort(key=lambda g: g.name)
    shapes = sorted({t.shape for t in targets}, key=repr)
    project = catalog.project
    return BakePlan(
        tuple(variables),
        tuple(shapes),
        tuple(targets),
        tuple(groups),
        project.rewrite_timestamps,
        project.compression,
        project.compression_level,
    )


LICENSES_LABEL = "org.opencontainers.image.licenses"
NO_LICENSE = "NOASSERTION"  # SPDX's word for a license nobody stated


def _image(name: str, tag: tuple[str | Var | Fn, ...]) -> Interp:
    return Interp(_merge([Var("REGISTRY"), f"/{name}:", *tag]))


def _tags(catalog: Catalog, name: str, base: Base, extra: tuple[str, ...]) -> tuple[Interp, ...]:
    values = {
        "ref": base.llama_cpp.ref,
        # {cuda}: the toolkit of a cuda base, the backend's name on another (a cpu base's tags said `cpu` first)
        "cuda": base.cuda if base.engine.cuda else base.backend,
        "backend": base.backend,
    }
    tags: list[Interp] = []
    for scheme in catalog.project.tag_scheme:
        parts: list[str | Var | Fn] = []
        rest = scheme
        while "{" in rest:
            head, _, tail = rest.partition("{")
            key, _, rest = tail.partition("}")
            if head:
                parts.append(head)
            parts.append(Var("TAG") if key == "tag" else Fn(key) if key in GIT_PLACEHOLDERS else values[key])
        if rest:
            parts.append(rest)
        tags.append(_image(name, tuple(parts)))
    tags += [_image(name, (t,)) for t in extra]
    return tuple(dict.fromkeys(tags))


def _merge(parts: list[str | Var | Fn]) -> tuple[str | Var | Fn, ...]:
    merged: list[str | Var | Fn] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return tuple(merged)


def _os_images(base: Base) -> tuple[str, str]:
    """The build stage's image and the runtime stage's, as the backend names them."""
    return base.engine.images(base.os, base.cuda, base.cuda_runtime)


def _overrides(catalog: Catalog, images: tuple[str, ...]) -> list[tuple[str, str]]:
    return [
        (i, catalog.project.image_overrides[i]) for i in dict.fromkeys(images) if i in catalog.project.image_overrides
    ]


def _base_target(catalog: Catalog, base: Base, project_dir: Path, bake_dir: Path) -> Target:
    build_image, runtime_image = _os_images(base)
    source = base.llama_cpp
    source_args: dict[str, str] = {}
    if isinstance(source, GitSource):
        src_context = f"{source.git}#{source.ref}"
        src_label = source.git
        source_kind = "git"
    elif source.is_archive:
        # The archive's directory is the context; only the archive itself is read from it.
        src_context, archive = _file_context(project_dir, bake_dir, source.path)
        source_args = {"LLAMA_SRC_ARCHIVE": archive, "LLAMA_SRC_SUBDIR": source.subdir or ""}
        src_label = "local"
        source_kind = "archive"
    else:
        src_context = _relative(project_dir, bake_dir, source.path)
        src_label = "local"
        source_kind = "tree"
    env = base_env(base)
    args: dict[str, str | Interp] = {
        "BUILD_IMAGE": build_image,
        "RUNTIME_IMAGE": runtime_image,
        "CMAKE_ARGS": cmake_args(base),
        **{f"CMAKE_ARGS_{p.split('/')[1].upper()}": CPU_ARGS[p] for p in base.target_platforms},
        "BUILD_JOBS": str(base.build_jobs),
        "BUILD_PACKAGES": " ".join(base.build_packages),
        "CCACHE_MAXSIZE": base.ccache_max_size,
        "LLAMA_CPP_REF": source.ref,
        **source_args,
        **{f"ENV_{k}": v for k, v in env.items()},
        **_epoch(catalog),
    }
    labels: dict[str, str | Interp] = {
        **catalog.project.labels,
        "org.opencontainers.image.title": base.name,
        "org.opencontainers.image.version": source.ref,
        f"{LABEL_PREFIX}.backend": base.backend,
        f"{LABEL_PREFIX}.llama-cpp.ref": source.ref,
        f"{LABEL_PREFIX}.llama-cpp.source": src_label,
    }
    if base.engine.cuda:
        labels[f"{LABEL_PREFIX}.cuda"] = base.cuda
        labels[f"{LABEL_PREFIX}.cuda-architectures"] = base.cuda_architectures
    if base.gpu_families:
        labels[f"{LABEL_PREFIX}.gpu-families"] = ",".join(base.gpu_families)
    labels.update(base.labels)
    contexts = [("llama-src", src_context), *_overrides(catalog, (build_image, runtime_image))]
    shape = Shape(
        kind="base",
        backend=base.backend,
        source=source_kind,
        env_keys=tuple(env),
        cuda_runtime=base.cuda_runtime if base.engine.cuda else "",
        build_packages=base.engine.build_packages,
        runtime_packages=base.engine.runtime_packages,
    )
    return Target(
        name=base.name,
        kind="base",
        description=f"llama.cpp {source.ref} ({_runs_on(base)})",
        shape=shape,
        base=None,
        contexts=tuple(sorted(contexts)),
        args=tuple(sorted(args.items())),
        labels=tuple(sorted(labels.items())),
        tags=_tags(catalog, base.name, base, ()),
        attest=_attest(catalog),
        from_images=tuple(dict.fromkeys((build_image, runtime_image))),
        llama_cpp=(source.ref, src_context),
        platforms=base.target_platforms,
        runs_on=runs_on(base),
    )


def runs_on(base: Base) -> str:
    """What a base's images run on, for `list`: ``cuda:ada,hopper``, ``vulkan:rdna3``, ``vulkan:any``, ``cpu``."""
    if not base.engine.devices:
        return base.backend
    return f"{base.backend}:{','.join(base.gpu_families) or 'any'}"


def _runs_on(base: Base) -> str:
    """The backend and what it was built for: ``cuda 12.8.1, 89-real``, ``vulkan: rdna3``, ``vulkan: any GPU``."""
    if base.engine.cuda:
        return f"{base.backend} {base.cuda}, {base.cuda_architectures}"
    if base.engine.families:
        return f"{base.backend}: {', '.join(base.gpu_families) or 'any GPU'}"
    return base.backend


def _epoch(catalog: Catalog) -> dict[str, str | Interp]:
    """SOURCE_DATE_EPOCH as a build arg (BuildKit reads it for the image's times) when the catalog sets it."""
    if catalog.project.source_date_epoch is None:
        return {}
    return {"SOURCE_DATE_EPOCH": Interp((Var("SOURCE_DATE_EPOCH"),))}


def _attest(catalog: Catalog) -> tuple[str, ...]:
    mode = catalog.project.provenance
    if mode == "auto":
        return ()  # no `attest`: buildx attaches min provenance where the driver supports it
    return ("type=provenance,disabled=true",) if mode == "off" else (f"type=provenance,mode={mode}",)


def _relative(project_dir: PurePath, bake_dir: PurePath, path: str, pathmod: ModuleType = os.path) -> str:
    """A catalog path (relative to the project directory, ``/``-separated) as bake sees it: relative to the
    bake file, ``/``-separated. ``pathmod`` is the host's path logic (``ntpath`` on Windows; tests pass it)."""
    if pathmod is not ntpath and WINDOWS_DRIVE.match(path):
        msg = f"{path!r} is a Windows path (a drive letter), and this machine is not Windows; give a path here"
        raise CatalogError([msg])
    absolute: str = path if pathmod.isabs(path) else pathmod.join(str(project_dir), path)
    try:
        relative: str = pathmod.relpath(absolute, str(bake_dir))
    except ValueError:  # Windows: on another drive than the bake file, so bake takes it absolute
        relative = pathmod.normpath(absolute)
    return relative.replace("\\", "/")


WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:/")


def _file_context(
    project_dir: PurePath, bake_dir: PurePath, path: str, pathmod: ModuleType = os.path
) -> tuple[str, str]:
    """A catalog file as a bake context: (its directory relative to the bake file, its name)."""
    where = _relative(project_dir, bake_dir, path, pathmod)
    directory, _, name = where.rpartition("/")
    return directory or ".", name


def _split_contexts(catalog: Catalog, project_dir: Path, bake_dir: Path) -> list[tuple[str, str]]:
    """llama-gguf-split's llama.cpp source and the image it is compiled in (with its override)."""
    tool = catalog.project.split_tool
    source = f"{tool.git}#{tool.ref}" if isinstance(tool, GitSource) else _relative(project_dir, bake_dir, tool.path)
    return [("gguf-split-src", source), *_overrides(catalog, (catalog.project.split_image,))]


def _model_target(catalog: Catalog, model: Model, project_dir: Path, bake_dir: Path) -> Target:

    base = catalog.base_of(model)
    limit = catalog.project.max_layer_size
    env = server_env(model, catalog.project.hf_endpoint, limit)
    # A local file travels as a named context (its directory) plus its name.
    contexts = [("base", f"target:{base.name}")]
    split = resplit(model, limit)
    split_args: dict[str, str] = {}
    split_source = ""
    if split is not None:
        contexts += _split_contexts(catalog, project_dir, bake_dir)
        split_source = "git" if isinstance(catalog.project.split_tool, GitSource) else "tree"
        split_args = {
            "SPLIT_IMAGE": catalog.project.split_image,
            "SPLIT_MAX_MB": str(split.split_mb),
            "MAX_LAYER_SIZE": str(limit),
            "SPLIT_TOOL_REF": catalog.project.split_tool.ref,
        }
    file_args: dict[str, str] = {}
    sources: list[str] = []
    for prefix, item in (("WEIGHTS", model.weights), ("MMPROJ", model.mmproj)):
        if isinstance(item, FileWeights):
            for number, part in enumerate(item.files, start=1):
                key = part_prefix(prefix, number)
                directory, name = _file_context(project_dir, bake_dir, part.source)
                contexts.append((f"{key.lower().replace('_', '-')}-file", directory))
                file_args[f"{key}_SOURCE"] = name
            sources.append("local")
        elif item is not None:
            sources.append("gated" if isinstance(item, HfWeights) and item.gated else "remote")
    gated = "gated" in sources
    health = model.health
    shape = Shape(
        kind="model",
        env_keys=tuple(env),
        delivery=model.delivery,
        sources=tuple(sources),
        health=(health.start_period, health.interval, health.timeout, health.retries),
        weight_parts=len(model.weights.files),
        resplit_layers=split.layers if split is not None else 0,
        split_source=split_source,
    )
    args: dict[str, str | Interp] = {
        **file_args,
        **split_args,
        **{f"ENV_{k}": v for k, v in env.items()},
        **_epoch(catalog),
    }
    # The weights' license, never the project's (which stays on the bases, llama.cpp's build). Always set: an image
    # inherits its base's labels. Unknown: SPDX's NOASSERTION.
    labels: dict[str, str | Interp] = {
        **catalog.project.labels,
        LICENSES_LABEL: model.license or NO_LICENSE,
        "org.opencontainers.image.title": model.name,
        f"{LABEL_PREFIX}.base": base.name,
        f"{LABEL_PREFIX}.model.weights": weights_label(model.weights),
        f"{LABEL_PREFIX}.model.sha256": model.weights.files[0].sha256,
        f"{LABEL_PREFIX}.model.delivery": model.delivery,
    }
    if model.description:
        labels["org.opencontainers.image.description"] = model.description
    if model.mmproj is not None:
        labels[f"{LABEL_PREFIX}.model.mmproj"] = weights_label(model.mmproj)
    if catalog.project.uses_git:
        # docker/metadata-action's labels, on model images only: a label that changes with every commit on a
        # base would change its digest, and every model on it would run its steps again.
        labels["org.opencontainers.image.revision"] = Interp((Fn("git_commit"),))
        labels["org.opencontainers.image.version"] = Interp((Fn("git_version"),))
    labels.update(model.labels)
    return Target(
        name=model.name,
        kind="model",
        description=model.description or f"{model.name} on {base.name}",
        shape=shape,
        base=base.name,
        contexts=tuple(sorted(contexts)),
        args=tuple(sorted(args.items())),
        labels=tuple(sorted(labels.items())),
        tags=_tags(catalog, model.name, base, model.tags),
        secrets=("id=hf_token,env=HF_TOKEN",) if gated else (),
        attest=_attest(catalog),
        placeholders=model.placeholders,
        platforms=base.target_platforms,
        weight_sizes=tuple(f.size for w in (model.weights, model.mmproj) if w is not None for f in w.files),
        weight_layers=(split.estimate if split is not None else len(model.weights.files)) + (model.mmproj is not None),
        access=catalog.access_of(model),
        api_key=_api_key(catalog, model, project_dir, bake_dir),
        runs_on=runs_on(base),
    )


def _api_key(catalog: Catalog, model: Model, project_dir: Path, bake_dir: Path) -> tuple[str, str] | tuple[()]:
    source = catalog.api_key_of(model)
    if source is None:
        return ()
    kind, value = source.pair
    return (kind, _relative(project_dir, bake_dir, value) if kind == "file" else value)
