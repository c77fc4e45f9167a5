"""``Catalog`` -> ``BakePlan``: every target, group and variable, resolved and sorted. Pure.

User values never enter Dockerfile text: they travel as build args, labels, tags and contexts, and the
Dockerfiles only vary by *shape* (backend, which env keys, mmproj or not, ...). Each target has its own
Dockerfile (``dockerfiles/NAME.Dockerfile``), so a change to one model is a change to its files only.
"""

from __future__ import annotations

import ntpath
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from types import ModuleType
from typing import Literal

from llama_bake.catalog import (
    GIT_PLACEHOLDERS,
    Base,
    Catalog,
    FileWeights,
    GitSource,
    HfWeights,
    Model,
    UrlWeights,
    Weights,
)
from llama_bake.errors import CatalogError

LABEL_PREFIX = "io.llama-bake"
DOCKERFILES_DIR = "dockerfiles"  # beside the bake file
MODELS_DIR = "/models"
DEFAULT_LLAMA_CACHE = "/var/cache/llama"


@dataclass(frozen=True)
class Var:
    """A reference to a bake variable inside an interpolated string."""

    name: str


@dataclass(frozen=True)
class Fn:
    """A value the bake file computes from the git variables: ``git_sha()``, ``git_branch()``, ``git_version()``.
    It may be empty (no branch on a tag build, a tag that is not semver)."""

    name: str


@dataclass(frozen=True)
class Interp:
    """A string made of literal parts and references: ``"${REGISTRY}/name:${TAG}"``. With an ``Fn`` part it is
    conditional: when that value is empty the whole string is left out (a tag) or unset (a label)."""

    parts: tuple[str | Var | Fn, ...]

    @property
    def conditions(self) -> tuple[Var | Fn, ...]:
        return tuple(p for p in self.parts if isinstance(p, Fn))


def git_value(name: str, values: Mapping[str, str]) -> str:
    """What the bake file's ``git_*()`` functions compute, for ``list``, the summary and the tests."""
    if name == "git_commit":
        return values.get("GIT_SHA", "")
    if name == "git_sha":
        return values.get("GIT_SHA", "")[:7]
    if name == "git_branch":
        return re.sub(r"[^A-Za-z0-9._-]+", "-", values.get("GIT_BRANCH", "")).strip("-.")
    version = values.get("GIT_VERSION", "")
    return version.removeprefix("v") if SEMVER.fullmatch(version) else ""


# The bake file's git_version() uses the same pattern (metadata-action's type=semver: v1.2.3, 1.2.3-rc.1).
SEMVER_PATTERN = "^v?[0-9]+[.][0-9]+[.][0-9]+([-+][0-9A-Za-z.-]+)?$"
SEMVER = re.compile(SEMVER_PATTERN)


@dataclass(frozen=True)
class Shape:
    """What makes one Dockerfile differ from another. Holds no user strings except validated keys."""

    kind: Literal["base", "model"]
    backend: str = ""
    source: str = ""  # base: git, tree or archive
    env_keys: tuple[str, ...] = ()
    delivery: str = ""
    # model: where the weights (and the vision projector, when there is one) come from: remote, gated or local
    sources: tuple[str, ...] = ()
    health: tuple[str, str, str, int] = ("", "", "", 0)

    @property
    def mmproj(self) -> bool:
        return len(self.sources) > 1

    @property
    def gated(self) -> bool:
        return "gated" in self.sources

    @property
    def local(self) -> bool:
        return "local" in self.sources

    @property
    def items(self) -> tuple[tuple[str, str, str], ...]:
        """(env prefix, directory in the image, source) of each weights file, for the templates."""
        dirs = (f"{MODELS_DIR}/", f"{MODELS_DIR}/mmproj/")
        return tuple(zip(("WEIGHTS", "MMPROJ"), dirs, self.sources, strict=False))


@dataclass(frozen=True)
class Target:
    name: str
    kind: Literal["base", "model"]
    description: str
    shape: Shape
    base: str | None
    contexts: tuple[tuple[str, str], ...]
    args: tuple[tuple[str, str | Interp], ...]
    labels: tuple[tuple[str, str | Interp], ...]
    tags: tuple[Interp, ...]
    secrets: tuple[str, ...] = ()
    attest: tuple[str, ...] = ()
    # What a base is built from, for `graph`: its FROM images and its llama.cpp source (ref, context).
    from_images: tuple[str, ...] = ()
    llama_cpp: tuple[str, str] = ("", "")
    # Its Dockerfile, relative to the bake file: one per target, named after it.
    dockerfile: str = ""

    @property
    def image(self) -> Interp:
        """The image: the first tag that is always written (the catalog guarantees one). ``list``, the
        summary, compose and the pinned base of two-phase builds all mean this one."""
        return next(t for t in self.tags if not t.conditions)


@dataclass(frozen=True)
class Group:
    name: str
    description: str
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    description: str


@dataclass(frozen=True)
class BakePlan:
    variables: tuple[Variable, ...]
    shapes: tuple[Shape, ...]
    targets: tuple[Target, ...]
    groups: tuple[Group, ...]
    # Every image output clamps its layers' file times to SOURCE_DATE_EPOCH (project.rewrite_timestamps).
    rewrite_timestamps: bool = False

    def target(self, name: str) -> Target:
        return next(t for t in self.targets if t.name == name)

    def default(self, variable: str) -> str:
        return next(v.default for v in self.variables if v.name == variable)

    @property
    def needs_hf_token(self) -> bool:
        """Some target downloads gated weights, so the build needs the HF_TOKEN secret."""
        return any(t.secrets for t in self.targets)

    @property
    def uses_git(self) -> bool:
        return any(v.name == "GIT_SHA" for v in self.variables)

    def resolve(self, value: Interp, overrides: Mapping[str, str] | None = None) -> str:
        """``value`` as bake resolves it: variables at their defaults unless ``overrides`` sets them
        ("" when a git value it needs is empty)."""
        values = {v.name: v.default for v in self.variables} | dict(overrides or {})
        out = []
        for part in value.parts:
            if isinstance(part, Fn):
                computed = git_value(part.name, values)
                if not computed:
                    return ""
                out.append(computed)
            else:
                out.append(part if isinstance(part, str) else values[part.name])
        return "".join(out)


CACHE_TYPES = ("", "registry", "gha", "local")


def dockerfiles_dir(bake_file: str) -> str:
    """Where a bake file's Dockerfiles go: ``dockerfiles/`` beside docker-bake.hcl, ``dockerfiles/STEM/`` beside
    any other name, so two bake files in one directory never write each other's."""
    return DOCKERFILES_DIR if bake_file == "docker-bake.hcl" else f"{DOCKERFILES_DIR}/{Path(bake_file).stem}"


def make_plan(catalog: Catalog, project_dir: Path, bake_dir: Path, dockerfiles: str = DOCKERFILES_DIR) -> BakePlan:
    """Resolve ``catalog``. Relative paths in the catalog are relative to ``project_dir``; paths in the
    plan are relative to ``bake_dir`` (where the bake file lives and bake runs); the Dockerfiles go into
    ``dockerfiles`` there."""
    variables: tuple[Variable, ...] = (
        Variable("REGISTRY", catalog.project.registry, "Image repository prefix, e.g. ghcr.io/acme."),
        Variable("TAG", catalog.project.tag, "Value of {tag} in the tag scheme."),
        Variable("CACHE_TYPE", "", "Per-target build cache: '' (none), registry, gha or local."),
        Variable("CACHE_REF", "", "registry: a repository prefix for cache refs; local: a directory."),
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
    return BakePlan(tuple(variables), tuple(shapes), tuple(targets), tuple(groups), catalog.project.rewrite_timestamps)


def _image(name: str, tag: tuple[str | Var | Fn, ...]) -> Interp:
    return Interp(_merge([Var("REGISTRY"), f"/{name}:", *tag]))


def _tags(catalog: Catalog, name: str, base: Base, extra: tuple[str, ...]) -> tuple[Interp, ...]:
    values = {
        "ref": base.llama_cpp.ref,
        "cuda": base.cuda if base.backend == "cuda" else "cpu",
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


def cmake_args(base: Base) -> str:
    """The -D options passed to llama.cpp's CMake, generated ones first, user options sorted."""
    options: dict[str, str] = {"GGML_NATIVE": "OFF"}
    if base.backend == "cuda":
        options["GGML_CUDA"] = "ON"
        options["CMAKE_CUDA_ARCHITECTURES"] = base.cuda_architectures
        # libcuda.so comes from the host driver at run time; the devel image only has its stub.
        options["CMAKE_EXE_LINKER_FLAGS"] = "-Wl,--allow-shlib-undefined"
    options.update(
        {
            "GGML_BACKEND_DL": "ON",
            "GGML_CPU_ALL_VARIANTS": "ON",
            "LLAMA_BUILD_TESTS": "OFF",
            "LLAMA_BUILD_EXAMPLES": "OFF",
        }
    )
    options.update(dict(sorted(base.cmake_options.items())))
    return " ".join(f"-D{k}={v}" for k, v in options.items())


def _os_images(base: Base) -> tuple[str, str]:
    version = base.os.removeprefix("ubuntu")
    if base.backend == "cuda":
        return (f"nvidia/cuda:{base.cuda}-devel-{base.os}", f"nvidia/cuda:{base.cuda}-runtime-{base.os}")
    return (f"ubuntu:{version}", f"ubuntu:{version}")


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
    env = {"LLAMA_CACHE": DEFAULT_LLAMA_CACHE, **base.runtime_env}
    env = dict(sorted(env.items()))
    args: dict[str, str | Interp] = {
        "BUILD_IMAGE": build_image,
        "RUNTIME_IMAGE": runtime_image,
        "CMAKE_ARGS": cmake_args(base),
        "BUILD_JOBS": str(base.build_jobs),
        "BUILD_PACKAGES": " ".join(base.build_packages),
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
    if base.backend == "cuda":
        labels[f"{LABEL_PREFIX}.cuda"] = base.cuda
        labels[f"{LABEL_PREFIX}.cuda-architectures"] = base.cuda_architectures
        labels[f"{LABEL_PREFIX}.gpu-families"] = ",".join(base.gpu_families)
    labels.update(base.labels)
    contexts = [("llama-src", src_context), *_overrides(catalog, (build_image, runtime_image))]
    shape = Shape(kind="base", backend=base.backend, source=source_kind, env_keys=tuple(env))
    return Target(
        name=base.name,
        kind="base",
        description=f"llama.cpp {source.ref} ({base.backend}"
        + (f" {base.cuda}, {base.cuda_architectures})" if base.backend == "cuda" else ")"),
        shape=shape,
        base=None,
        contexts=tuple(sorted(contexts)),
        args=tuple(sorted(args.items())),
        labels=tuple(sorted(labels.items())),
        tags=_tags(catalog, base.name, base, ()),
        attest=_attest(catalog),
        from_images=tuple(dict.fromkeys((build_image, runtime_image))),
        llama_cpp=(source.ref, src_context),
    )


def _epoch(catalog: Catalog) -> dict[str, str | Interp]:
    """SOURCE_DATE_EPOCH as a build arg (BuildKit reads it for the image's times) when the catalog sets it."""
    if catalog.project.source_date_epoch is None:
        return {}
    return {"SOURCE_DATE_EPOCH": Interp((Var("SOURCE_DATE_EPOCH"),))}


def _attest(catalog: Catalog) -> tuple[str, ...]:
    mode = catalog.project.provenance
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


def _weights_env(prefix: str, weights: Weights, hf_endpoint: str) -> dict[str, str]:
    env = {f"LLAMA_BAKE_{prefix}_SHA256": weights.sha256, f"LLAMA_BAKE_{prefix}_FILE": weights.filename}
    if isinstance(weights, HfWeights):
        env[f"LLAMA_BAKE_{prefix}_URL"] = weights.url(hf_endpoint)
        if weights.gated:
            # Only these downloads are sent the Hugging Face token.
            env[f"LLAMA_BAKE_{prefix}_GATED"] = "hf"
    elif isinstance(weights, UrlWeights):
        env[f"LLAMA_BAKE_{prefix}_URL"] = weights.url
    return env


def _weights_label(weights: Weights) -> str:
    if isinstance(weights, HfWeights):
        return f"hf://{weights.hf}/{weights.file}@{weights.revision}"
    if isinstance(weights, FileWeights):
        return f"file:{weights.source_name}"
    return weights.url


def server_env(model: Model, hf_endpoint: str = "https://huggingface.co") -> dict[str, str]:
    """Every environment variable of a model image, sorted: server defaults as LLAMA_ARG_*."""
    server = model.server
    env: dict[str, str] = {
        "LLAMA_ARG_HOST": server.host,
        "LLAMA_ARG_PORT": str(server.port),
        "LLAMA_ARG_FLASH_ATTN": server.flash_attn,
        "LLAMA_ARG_JINJA": "true" if server.jinja else "false",
        "LLAMA_BAKE_DELIVERY": model.delivery,
        "LLAMA_BAKE_MODEL": model.name,
        **_weights_env("WEIGHTS", model.weights, hf_endpoint),
    }
    if server.ctx_size is not None:
        env["LLAMA_ARG_CTX_SIZE"] = str(server.ctx_size)
    if server.n_gpu_layers is not None:
        env["LLAMA_ARG_N_GPU_LAYERS"] = str(server.n_gpu_layers)
    if model.delivery == "baked":
        env["LLAMA_ARG_MODEL"] = f"{MODELS_DIR}/{model.weights.filename}"
    if model.mmproj is not None:
        env.update(_weights_env("MMPROJ", model.mmproj, hf_endpoint))
        if model.delivery == "baked":
            env["LLAMA_ARG_MMPROJ"] = f"{MODELS_DIR}/mmproj/{model.mmproj.filename}"
    if server.extra_args:
        env["LLAMA_BAKE_EXTRA_ARGS"] = "\n".join(server.extra_args)
    env.update(server.env)
    return dict(sorted(env.items()))


def _model_target(catalog: Catalog, model: Model, project_dir: Path, bake_dir: Path) -> Target:
    base = catalog.base_of(model)
    env = server_env(model, catalog.project.hf_endpoint)
    # A local file travels as a named context (its directory) plus its name.
    contexts = [("base", f"target:{base.name}")]
    file_args: dict[str, str] = {}
    sources: list[str] = []
    for prefix, item in (("WEIGHTS", model.weights), ("MMPROJ", model.mmproj)):
        if isinstance(item, FileWeights):
            directory, name = _file_context(project_dir, bake_dir, item.path)
            contexts.append((f"{prefix.lower()}-file", directory))
            file_args[f"{prefix}_SOURCE"] = name
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
    )
    args: dict[str, str | Interp] = {**file_args, **{f"ENV_{k}": v for k, v in env.items()}, **_epoch(catalog)}
    labels: dict[str, str | Interp] = {
        **catalog.project.labels,
        "org.opencontainers.image.title": model.name,
        f"{LABEL_PREFIX}.base": base.name,
        f"{LABEL_PREFIX}.model.weights": _weights_label(model.weights),
        f"{LABEL_PREFIX}.model.sha256": model.weights.sha256,
        f"{LABEL_PREFIX}.model.delivery": model.delivery,
    }
    if model.description:
        labels["org.opencontainers.image.description"] = model.description
    if model.mmproj is not None:
        labels[f"{LABEL_PREFIX}.model.mmproj"] = _weights_label(model.mmproj)
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
    )
