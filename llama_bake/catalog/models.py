"""The catalog's typed models: project settings, llama.cpp bases and models.

Takes plain data (what YAML gives) and gives validated, frozen models. Knows the GPU/CUDA table and
which CMake options llama.cpp really has. No file I/O here: ``loader`` reads files and maps errors
back to them; ``cross_check`` finds problems that span entries (duplicates, unknown bases).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from llama_bake.errors import did_you_mean

# --- GPU families -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuFamily:
    name: str
    compute_capability: int
    cuda_arch: str  # what goes into CMAKE_CUDA_ARCHITECTURES
    min_cuda: tuple[int, int]
    max_cuda: tuple[int, int] | None  # last toolkit line that can still compile for it
    cards: str
    # The CPU architectures its machines come in: a GB10 (DGX Spark) is arm64 only; Hopper and datacenter
    # Blackwell exist as x86 servers and as Grace (arm64) superchips, GH200 and GB200.
    platforms: tuple[str, ...] = ("linux/amd64",)


# "-real" compiles device code for exactly the cards a team owns (no PTX JIT at first start).
# Blackwell consumer parts use the architecture-specific "a" variant: its FP4 tensor-core instructions
# (gpt-oss's MXFP4) need it, and ggml rewrites a plain 12X to 12Xa anyway, so the label stays truthful.
PLATFORMS = ("linux/amd64", "linux/arm64")
BOTH = PLATFORMS

GPU_FAMILIES: dict[str, GpuFamily] = {
    f.name: f
    for f in (
        GpuFamily("volta", 70, "70-real", (9, 0), (12, 9), "V100, Titan V"),
        GpuFamily("turing", 75, "75-real", (10, 0), None, "RTX 20, T4, Quadro RTX"),
        GpuFamily("ampere-datacenter", 80, "80-real", (11, 0), None, "A100, A30"),
        GpuFamily("ampere", 86, "86-real", (11, 1), None, "RTX 30, A10, A40, RTX A6000"),
        GpuFamily("ada", 89, "89-real", (11, 8), None, "RTX 40, L4, L40S, RTX 6000 Ada"),
        GpuFamily("hopper", 90, "90-real", (11, 8), None, "H100, H200, GH200", BOTH),
        GpuFamily("blackwell-datacenter", 100, "100-real", (12, 8), None, "B200, GB200", BOTH),
        GpuFamily("blackwell-consumer", 120, "120a-real", (12, 8), None, "RTX 50, RTX PRO 6000 Blackwell"),
        GpuFamily("gb10", 121, "121a-real", (12, 9), None, "GB10 (DGX Spark)", ("linux/arm64",)),
    )
}

# What people write for a card (lower case, without spaces, '-' or '_') -> its family.
_CARD_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"(geforce)?rtx20\d\d(ti|super)?|t4|quadrortx\d+|titanrtx", "turing"),
    (r"(geforce)?rtx30\d\d(ti)?|a10g?|a40|rtxa\d+|a6000", "ampere"),
    (r"a100|a30|a800", "ampere-datacenter"),
    (r"(geforce)?rtx40\d\d(ti|super)?|l4|l40s?|rtx6000ada|rtx\d+ada", "ada"),
    (r"gh200|h100|h200|h800|h20", "hopper"),
    (r"gb200|b200|b100|gb300|b300", "blackwell-datacenter"),
    (r"(geforce)?rtx50\d\d(ti)?|rtxpro\d+(blackwell)?", "blackwell-consumer"),
    (r"dgxspark|spark", "gb10"),
    (r"v100|titanv", "volta"),
)


def _family_hint(word: str) -> str:
    """What a GPU family the user wrote as a card name or a compute capability stands for."""
    compact = re.sub(r"[\s_-]", "", word.lower())
    capability = re.fullmatch(r"(?:sm|compute|cc)?(\d{1,2})\.?(\d)a?", compact)
    if capability:
        cc = int(capability.group(1) + capability.group(2))
        match = next((f for f in GPU_FAMILIES.values() if f.compute_capability == cc), None)
        if match is not None:
            return f"compute capability {cc} is the family `{match.name}` ({match.cards}): write `{match.name}`"
        return f"no family llama-bake knows has compute capability {cc}"
    for pattern, family in _CARD_PATTERNS:
        if re.fullmatch(pattern, compact):
            return f"{word} is in the family `{family}` ({GPU_FAMILIES[family].cards}): write `{family}`"
    hint = did_you_mean(word, tuple(GPU_FAMILIES))
    return hint or "not a family llama-bake knows"


# CMake switches that look plausible but do not exist (any more) in llama.cpp, with what to do instead.
OBSOLETE_CMAKE_OPTIONS: dict[str, str] = {
    "GGML_FLASH_ATTN": (
        "never existed: flash attention is a run-time choice; set the model's `server.flash_attn` "
        "(on/off/auto). GGML_CUDA_FA (default ON) compiles the kernels"
    ),
    "GGML_CUDA_F16": "was removed from llama.cpp in 2025; drop it (FP16 paths are chosen at run time)",
    "LLAMA_CUDA_F16": "was removed from llama.cpp; drop it",
    "LLAMA_CURL": "is ignored by current llama.cpp (downloads no longer use libcurl); drop it",
    "LLAMA_CUBLAS": "is a hard error in current llama.cpp; use `backend: cuda` (GGML_CUDA=ON)",
    "LLAMA_CUDA": "was renamed GGML_CUDA; use `backend: cuda`",
    "LLAMA_NATIVE": "was renamed GGML_NATIVE; llama-bake sets GGML_NATIVE=OFF for portable images",
}

# Options llama-bake derives from other catalog fields; setting them by hand would fight the generator.
MANAGED_CMAKE_OPTIONS: dict[str, str] = {
    "GGML_CUDA": "set by `backend` (cuda or cpu)",
    "CMAKE_CUDA_ARCHITECTURES": "derived from `gpu_families`",
    "GGML_NATIVE": "always OFF: a container image must not depend on the build machine's CPU",
}

RESERVED_GROUPS = ("default", "bases", "models")


def parse_cuda(version: str) -> tuple[int, int]:
    major, minor, *_ = version.split(".")
    return int(major), int(minor)


def fmt_cuda(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


# --- constrained strings ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Pattern(AfterValidator):
    """A pattern checked with our own message and hint, and written into the JSON Schema as ``pattern``."""

    regex: str = ""

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        json_schema: dict[str, Any] = handler(schema)
        json_schema["pattern"] = f"^(?:{self.regex})$"
        return json_schema


def _pattern(regex: str, what: str, hint: str) -> _Pattern:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            msg = f"{value!r} is not {what}; {hint}"
            raise ValueError(msg)
        return value

    return _Pattern(check, regex)


TargetName = Annotated[
    str,
    _pattern(
        r"[a-zA-Z0-9_-]{1,128}",
        "a valid bake target name",
        "use letters, digits, '-' and '_' only (for example `llama-3-1-8b`, not `llama-3.1`)",
    ),
]
Sha256 = Annotated[
    str,
    # PowerShell's Get-FileHash prints upper case; the checksum is the same.
    BeforeValidator(lambda v: v.strip().lower() if isinstance(v, str) else v),
    _pattern(r"[0-9a-f]{64}", "a sha256", "give the 64 hex digits of the file's SHA-256"),
]
Revision = Annotated[
    str,
    _pattern(
        r"[0-9a-f]{40}",
        "a pinned revision",
        "give the full 40-hex commit sha of the Hugging Face repo (a branch like `main` moves)",
    ),
]
HfRepo = Annotated[
    str,
    _pattern(r"[A-Za-z0-9][\w.-]*/[\w.-]+", "a Hugging Face repo id", "write it as `owner/name`"),
]
RepoFile = Annotated[
    str,
    _pattern(
        r"[\w.-]+(/[\w.-]+)*\.gguf",
        "a GGUF file path in the repo",
        "give the file's path inside the repo, ending in `.gguf`",
    ),
]
HttpsUrl = Annotated[
    str,
    _pattern(r"https?://[^\s\"'\\]+", "an http(s) URL", "write a full URL such as `https://host/file.gguf`"),
]
EnvName = Annotated[
    str,
    _pattern(r"[A-Za-z_][A-Za-z0-9_]*", "an environment variable name", "use letters, digits and '_'"),
]
CMakeName = Annotated[
    str,
    _pattern(r"[A-Z][A-Z0-9_]*", "a CMake option name", "CMake options are upper case, e.g. GGML_CUDA_FA"),
]
CMakeValue = Annotated[
    str,
    _pattern(
        r"[A-Za-z0-9_.;:/+=,-]*",
        "a supported CMake value",
        "values may hold letters, digits and . ; : / + = , - _ (no spaces or quotes)",
    ),
]
CudaVersion = Annotated[
    str,
    _pattern(r"\d{1,2}\.\d{1,2}\.\d{1,2}", "a CUDA version", "write it as major.minor.patch, e.g. 12.8.1"),
]
Duration = Annotated[
    str,
    _pattern(r"[1-9][0-9]{0,5}(ms|s|m|h)", "a duration", "write it like 30s, 10m or 1h"),
]
TagName = Annotated[
    str,
    _pattern(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", "a valid image tag", "use letters, digits, '.', '-', '_'"),
]
CcacheSize = Annotated[
    str,
    _pattern(
        r"[1-9][0-9]{0,5}(\.[0-9]{1,3})?(k|M|G|T|Ki|Mi|Gi|Ti)",
        "a ccache size",
        "write it as ccache does, e.g. 500M, 2G or 4Gi",
    ),
]
PackageName = Annotated[
    str,
    _pattern(r"[a-z0-9][a-z0-9+.-]+", "a Debian package name", "for example `libopenblas-dev`"),
]
# Values that reach a shell word or a single line: no line breaks.
OneLine = Annotated[str, _pattern(r"[^\n\r\x00]*", "a single line", "remove line breaks and NUL characters")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- project ------------------------------------------------------------------------------------

LLAMA_CPP_GIT = "https://github.com/ggml-org/llama.cpp.git"
# The llama.cpp whose llama-gguf-split re-splits big weights unless project.split_tool names another.
SPLIT_TOOL_REF = "b6500"
# ghcr.io documents 10 GB per layer, ECR Public 10,000 MiB: 9 GB fits both, with room for the tar and gzip framing.
DEFAULT_MAX_LAYER_SIZE = 9_000_000_000
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3}


def parse_size(text: str) -> int:
    """``9GB`` (decimal, as llama-gguf-split and the registries count), ``10GiB``, ``9500MB`` or bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        msg = f"{text!r} is not a size; write bytes, or a number with GB, MB, GiB or MiB (e.g. 9GB)"
        raise ValueError(msg)
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def format_size(size: int) -> str:
    """Bytes as people read a weights file's size: ``16.5 GB``."""
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"


TAG_PLACEHOLDERS = ("tag", "ref", "cuda", "backend", "git_sha", "git_branch", "git_version")
# Filled at build time from GIT_SHA, GIT_BRANCH and GIT_VERSION (CI sets them; `llama-bake build` reads the
# checkout); a tag whose value is empty (no branch on a tag build, no semver tag) is left out.
GIT_PLACEHOLDERS = ("git_sha", "git_branch", "git_version")


_CUDA_IN_IMAGE = re.compile(r"cuda[-_]?(\d+)\.(\d+)", re.IGNORECASE)


class StackService(Strict):
    """Another service of the team's stack whose CUDA version the llama.cpp bases must match."""

    image: str | None = Field(
        None, description="Its image; the CUDA version is read from the tag (e.g. `...:2.7.0-cuda12.8-cudnn9-devel`)."
    )
    cuda: Annotated[str, _pattern(r"\d+\.\d+(\.\d+)?", "a CUDA version", "e.g. 12.8")] | None = Field(
        None, description="Its CUDA version, when the image name does not say it."
    )

    @model_validator(mode="after")
    def _knows_its_cuda(self) -> StackService:
        if self.cuda is None:
            if self.image is None:
                msg = "give the service's `image` or its `cuda` version"
                raise ValueError(msg)
            if not _CUDA_IN_IMAGE.search(self.image):
                msg = f"cannot read a CUDA version from {self.image!r}; add `cuda: X.Y`"
                raise ValueError(msg)
        return self

    @property
    def cuda_version(self) -> tuple[int, int]:
        if self.cuda is not None:
            return parse_cuda(self.cuda + ".0")
        found = _CUDA_IN_IMAGE.search(self.image or "")
        assert found is not None  # checked by the validator
        return int(found.group(1)), int(found.group(2))


class Project(Strict):
    """Settings shared by every image: where images go and how they are named."""

    registry: Annotated[
        str,
        _pattern(
            r"[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*",
            "an image repository prefix",
            "for example `ghcr.io/acme` or `localhost:5000/llama` (lower case, no tag)",
        ),
    ] = Field("localhost:5000/llama-bake", description="Default for the REGISTRY variable.")
    tag: TagName = Field("latest", description="Default for the TAG variable.")
    tag_scheme: tuple[str, ...] = Field(
        ("{tag}",),
        min_length=1,
        description=(
            "Tags each image gets; placeholders: {tag}, {ref} (llama.cpp ref), {cuda}, {backend}, and, as "
            "docker/metadata-action names them, {git_sha} (7 hex), {git_branch} (sanitised) and {git_version} "
            "(a semver tag without its v). A tag whose git value is empty is left out."
        ),
    )
    labels: dict[str, str] = Field(default_factory=dict, description="OCI labels on every image.")
    hf_endpoint: Annotated[
        str,
        _pattern(
            r"https?://[^\s\"'\\/]+(/[^\s\"'\\/]+)*",
            "a Hugging Face endpoint URL",
            "e.g. `https://huggingface.co` or your mirror's `https://hf.example.internal` (no trailing /)",
        ),
    ] = Field(
        "https://huggingface.co",
        description="Where `hf` weights are downloaded from: the Hub or a mirror of it (like HF_ENDPOINT).",
    )
    stack: dict[TargetName, StackService] = Field(
        default_factory=dict,
        description="Other services of the stack (e.g. a fine-tuning service); every cuda base must match their CUDA.",
    )
    provenance: Literal["auto", "min", "max", "off"] = Field(
        "auto",
        description=(
            "SLSA provenance attestation on every image: auto (buildx's own default: min where the builder can "
            "attach attestations, none on Docker's default builder with the classic image store), min, max (adds "
            "the build args and sources), or off. It carries the build's start and end time, so the image index "
            "digest changes on every build; the image manifest's digest does not. off gives the same index digest "
            "for the same catalog. min and max are refused before building on a builder that cannot attach them."
        ),
    )
    source_date_epoch: int | None = Field(
        None,
        ge=0,
        description=(
            "SOURCE_DATE_EPOCH for every build (seconds since 1970, e.g. the llama.cpp release's commit time): "
            "the time written into image configs and history. Unset: the build time, which a cached build keeps."
        ),
    )
    rewrite_timestamps: bool = Field(
        False,
        description=(
            "Clamp the file times in every layer to source_date_epoch, so a cold rebuild on an empty builder "
            "gives the same digests. It costs a pass over every layer at each export (minutes for 16 GB "
            "weights), so it is off by default; a cached build keeps its digests without it."
        ),
    )
    max_layer_size: Annotated[int, BeforeValidator(lambda v: parse_size(v) if isinstance(v, str) else v)] = Field(
        DEFAULT_MAX_LAYER_SIZE,
        ge=1_000_000,
        description=(
            "The largest image layer the registry accepts, in bytes or with a unit (9GB, 9500MB, 10GiB). Default "
            "9GB: ghcr.io refuses layers over 10 GB and ECR Public over 10,000 MiB. validate warns of a weights "
            "file above it."
        ),
    )
    split_tool: LlamaSource = Field(
        default_factory=lambda: GitSource(git=LLAMA_CPP_GIT, ref=SPLIT_TOOL_REF),
        description=(
            "The llama.cpp whose llama-gguf-split re-splits a weights file over max_layer_size (git + ref, or a "
            "local source directory). Pinned apart from the bases, so a new llama.cpp in a base re-splits "
            "nothing and re-pushes no weight layer."
        ),
    )
    split_image: str = Field(
        "ubuntu:24.04", description="The image llama-gguf-split is compiled and run in (image_overrides apply)."
    )
    image_overrides: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Replace a base image (e.g. nvidia/cuda:12.8.1-devel-ubuntu24.04) by a mirror "
            "(docker-image://...), a local OCI layout (oci-layout://...), a directory or target:NAME."
        ),
    )

    @field_validator("split_tool")
    @classmethod
    def _split_tool_is_a_tree(cls, value: GitSource | LocalSource) -> GitSource | LocalSource:
        if isinstance(value, LocalSource) and value.is_archive:
            msg = "split_tool takes a git repository or a source directory, not an archive; unpack it"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _rewrite_needs_an_epoch(self) -> Project:
        if self.rewrite_timestamps and self.source_date_epoch is None:
            msg = "rewrite_timestamps needs source_date_epoch: add `source_date_epoch: <seconds since 1970>`"
            raise ValueError(msg)
        return self

    @property
    def uses_git(self) -> bool:
        """Some tag takes a value from the git checkout (GIT_SHA, GIT_BRANCH or GIT_VERSION)."""
        return any("{" + name + "}" in item for item in self.tag_scheme for name in GIT_PLACEHOLDERS)

    @field_validator("tag_scheme")
    @classmethod
    def _known_placeholders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            for name in re.findall(r"\{([^}]*)\}", item):
                if name not in TAG_PLACEHOLDERS:
                    hint = did_you_mean(name, TAG_PLACEHOLDERS)
                    msg = f"unknown placeholder {{{name}}} in {item!r}; known: " + ", ".join(
                        "{" + p + "}" for p in TAG_PLACEHOLDERS
                    )
                    raise ValueError(msg + (f"; {hint}" if hint else ""))
            probe = re.sub(r"\{[^}]*\}", "x", item)
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", probe):
                msg = f"{item!r} does not make a valid image tag; use letters, digits, '.', '-', '_'"
                raise ValueError(msg)
        if all(any("{" + g + "}" in item for g in GIT_PLACEHOLDERS) for item in value):
            msg = (
                "every tag depends on git, so an image could have no tag; "
                "add one that does not (e.g. `{tag}`), as the name `list`, compose and the summary use"
            )
            raise ValueError(msg)
        return value


# --- bases --------------------------------------------------------------------------------------


class GitSource(Strict):
    git: Annotated[
        str,
        _pattern(
            r"(https://|ssh://|git@)[^\s\"'\\#]+",
            "a git URL",
            "for example https://github.com/ggml-org/llama.cpp.git",
        ),
    ] = Field(description="Repository URL.")
    ref: Annotated[
        str,
        _pattern(
            r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}",
            "a git ref",
            "give a release tag like `b6500` or a commit sha",
        ),
    ] = Field(description="Pinned tag or commit. Moving branches are rejected.")

    @field_validator("ref")
    @classmethod
    def _pinned(cls, value: str) -> str:
        if value.lower() in {"master", "main", "head", "latest", "develop"}:
            msg = (
                f"`{value}` moves, so builds would not be reproducible; pin a release tag "
                "(e.g. `b6500`) or a commit sha"
            )
            raise ValueError(msg)
        return value


ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")
RelPath = Annotated[
    str,
    # A Windows path works as written (C:\models\x.gguf, spaces, a drive letter): its backslashes are separators.
    BeforeValidator(lambda v: v.strip().replace("\\", "/") if isinstance(v, str) else v),
    _pattern(
        r"[^\"'\x00-\x1f]+",
        "a file path",
        "give a path relative to the project directory (or absolute), without quotes",
    ),
]


class LocalSource(Strict):
    path: RelPath = Field(
        description=(
            "A llama.cpp source directory or archive (" + ", ".join(ARCHIVE_SUFFIXES) + "), relative to the "
            "project directory (air-gapped builds)."
        ),
    )
    subdir: (
        Annotated[str, _pattern(r"[\w.-]+(/[\w.-]+)*", "a relative directory", "e.g. `llama.cpp-b6500` (no leading /)")]
        | None
    ) = Field(
        None,
        description=(
            "Directory inside the archive that holds llama.cpp's CMakeLists.txt. Default: the archive's root, "
            "or its only top-level directory."
        ),
    )
    ref: Annotated[str, _pattern(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,127}", "a version label", "e.g. b6500")] = Field(
        "local", description="What the image label records as the llama.cpp version."
    )

    @property
    def is_archive(self) -> bool:
        return self.path.lower().endswith(ARCHIVE_SUFFIXES)

    @model_validator(mode="after")
    def _subdir_needs_archive(self) -> LocalSource:
        if self.subdir is not None and not self.is_archive:
            msg = (
                "`subdir` only applies to an archive (" + ", ".join(ARCHIVE_SUFFIXES) + "); "
                "for a directory, point `path` at the llama.cpp tree itself"
            )
            raise ValueError(msg)
        return self


def _source_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "git" in value:
            return "git"
        if "path" in value:
            return "path"
    if isinstance(value, GitSource):
        return "git"
    if isinstance(value, LocalSource):
        return "path"
    return None


LlamaSource = Annotated[
    Annotated[GitSource, Tag("git")] | Annotated[LocalSource, Tag("path")],
    Discriminator(
        _source_kind,
        custom_error_type="source_kind",
        custom_error_message="give either `git` + `ref` or a local `path`",
    ),
]


OsFlavour = Literal["ubuntu22.04", "ubuntu24.04"]


def _name_from_the_file(schema: dict[str, Any]) -> None:
    """In a file, ``name`` may be left out (the loader takes the file's name): not required in the schema."""
    schema["required"] = [r for r in schema.get("required", []) if r != "name"]


class Base(Strict):
    """A compiled llama.cpp image that models are built on."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_name_from_the_file)

    name: TargetName = Field(description="Bake target name; defaults to the file name.")
    backend: Literal["cuda", "cpu"] = Field("cuda", description="cuda (NVIDIA GPUs) or cpu.")
    llama_cpp: LlamaSource = Field(description="Where the llama.cpp source comes from.")
    cuda: CudaVersion = Field("12.8.1", description="CUDA toolkit of the nvidia/cuda images.")
    os: OsFlavour = Field("ubuntu24.04", description="OS of the build and runtime images.")
    gpu_families: tuple[str, ...] = Field(
        default=(),
        description="GPU families to compile for: " + ", ".join(GPU_FAMILIES) + ".",
        json_schema_extra={"items": {"enum": list(GPU_FAMILIES), "type": "string"}},
    )
    platforms: tuple[Literal["linux/amd64", "linux/arm64"], ...] | None = Field(
        None,
        min_length=1,
        description=(
            "CPU architectures to build for; the models on this base get the same. Default: what the GPU "
            "families fix (gb10: linux/arm64), else linux/amd64. hopper and blackwell-datacenter exist on both."
        ),
        json_schema_extra={"items": {"enum": list(PLATFORMS), "type": "string"}},
    )
    cmake_options: dict[CMakeName, CMakeValue] = Field(
        default_factory=dict, description="Extra -D options for llama.cpp's CMake."
    )
    build_jobs: int = Field(8, ge=1, le=256, description="Cap on parallel compile jobs (nvcc is memory hungry).")
    build_packages: tuple[PackageName, ...] = Field(
        default=(), description="Extra Debian/Ubuntu packages for the build stage."
    )
    ccache_max_size: CcacheSize = Field(
        "2G",
        description=(
            "Bound of the compiler cache that `llama-bake build` exports with a base cache preset (ccache's "
            "max_size). Raise it when a compile with many CUDA architectures misses after an update."
        ),
    )
    runtime_env: dict[EnvName, OneLine] = Field(
        default_factory=dict, description="Environment of the runtime image (CUDA_DEVICE_MAX_CONNECTIONS, ...)."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra OCI labels.")

    @field_validator("gpu_families", mode="before")
    @classmethod
    def _numbers_as_words(cls, value: Any) -> Any:
        # `gpu_families: [86, 8.9]` arrives as numbers: let the family check say what they stand for.
        if isinstance(value, list | tuple):
            return tuple(str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in value)
        return value

    @field_validator("gpu_families")
    @classmethod
    def _known_families(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [family for family in value if family not in GPU_FAMILIES]
        if unknown:
            lines = [f"`{family}`: {_family_hint(family)}" for family in unknown]
            known = "; ".join(f"{f.name} ({f.cards})" for f in GPU_FAMILIES.values())
            noun = "an unknown GPU family" if len(unknown) == 1 else f"{len(unknown)} unknown GPU families"
            msg = f"{noun}: " + "; ".join(lines) + f". Known: {known}"
            raise ValueError(msg)
        if len(set(value)) != len(value):
            msg = "a GPU family is listed twice"
            raise ValueError(msg)
        return value

    @field_validator("cmake_options")
    @classmethod
    def _real_options(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key in OBSOLETE_CMAKE_OPTIONS:
                msg = f"{key} {OBSOLETE_CMAKE_OPTIONS[key]}"
                raise ValueError(msg)
            if key in MANAGED_CMAKE_OPTIONS:
                msg = f"{key} is managed by llama-bake: {MANAGED_CMAKE_OPTIONS[key]}"
                raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _families_fit_backend_and_cuda(self) -> Base:
        if self.backend == "cpu":
            if self.gpu_families:
                msg = "gpu_families only apply to `backend: cuda`; remove them for a cpu base"
                raise ValueError(msg)
            return self
        if not self.gpu_families:
            msg = "a cuda base needs `gpu_families`, e.g. [ada, blackwell-consumer]; known: " + ", ".join(GPU_FAMILIES)
            raise ValueError(msg)
        cuda = parse_cuda(self.cuda)
        for name in self.gpu_families:
            family = GPU_FAMILIES[name]
            if cuda < family.min_cuda:
                msg = (
                    f"GPU family `{name}` (compute capability {family.compute_capability}) needs CUDA >= "
                    f"{fmt_cuda(family.min_cuda)}, but this base uses CUDA {self.cuda}; "
                    f"set `cuda: {fmt_cuda(family.min_cuda)}.0` or newer, or drop `{name}`"
                )
                raise ValueError(msg)
            if family.max_cuda is not None and cuda > family.max_cuda:
                msg = (
                    f"GPU family `{name}` is not supported after CUDA {fmt_cuda(family.max_cuda)}, "
                    f"but this base uses CUDA {self.cuda}; use a {family.max_cuda[0]}.x toolkit or drop `{name}`"
                )
                raise ValueError(msg)
        self._families_exist_on_the_platforms()
        return self

    def _families_exist_on_the_platforms(self) -> None:
        wanted = self.target_platforms
        for name in self.gpu_families:
            family = GPU_FAMILIES[name]
            missing = [p for p in wanted if p not in family.platforms]
            if missing:
                where = "the other families need" if self.platforms is None else "`platforms` asks for"
                others = [f for f in self.gpu_families if f != name]
                msg = (
                    f"GPU family `{name}` ({family.cards}) exists on {', '.join(family.platforms)} only, but "
                    f"{where} {', '.join(missing)}: put `{name}` in a base of its own"
                    + (f" (one for {', '.join(others)}, one for {name})" if others else "")
                    + (f", or set `platforms: [{family.platforms[0]}]`" if self.platforms is not None else "")
                )
                raise ValueError(msg)

    @property
    def target_platforms(self) -> tuple[str, ...]:
        """The platforms built: as set, or what the families fix (amd64 when none does)."""
        if self.platforms is not None:
            return tuple(p for p in PLATFORMS if p in self.platforms)
        fixed = {p for f in self.gpu_families for p in GPU_FAMILIES[f].platforms if len(GPU_FAMILIES[f].platforms) == 1}
        return tuple(p for p in PLATFORMS if p in fixed) or ("linux/amd64",)

    @property
    def cuda_architectures(self) -> str:
        families = sorted((GPU_FAMILIES[f] for f in self.gpu_families), key=lambda f: f.compute_capability)
        return ";".join(f.cuda_arch for f in families)


# --- models -------------------------------------------------------------------------------------


# What the shipped catalog has until `llama-bake pin` fills in the real values.
PLACEHOLDER_REVISION = "0" * 40
PLACEHOLDER_SHA256 = "0" * 64


Size = Annotated[int, Field(ge=0)]
_GGUF_NAME = r"[\w.-]+\.gguf"
GgufName = Annotated[str, _pattern(_GGUF_NAME, "a GGUF file name", "end it in .gguf")]
# llama.cpp's name for one part of a split model: it loads the first and finds the others beside it by name.
SPLIT_NAME = re.compile(r"(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf")


@dataclass(frozen=True)
class WeightFile:
    """One file of a model's weights as the image holds it: its name there, checksum, size (when the catalog
    records it) and where it comes from (the repo file, the URL or the local path)."""

    filename: str
    sha256: str
    size: int | None
    source: str


def _image_file_name(given: str | None, source_name: str) -> str:
    """The weights' file name in the image: as given, else the source's own name if it is a GGUF name."""
    if given:
        return given
    return source_name if re.fullmatch(_GGUF_NAME, source_name) else "model.gguf"


def _last_segment(text: str) -> str:
    return text.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def _one_file_or_parts(single: Mapping[str, object], parts: tuple[object, ...] | None, first: str) -> None:
    """Either the single-file keys (``first`` + ``sha256``) or ``parts``, never both."""
    given = [k for k, v in single.items() if v is not None]
    if parts is None:
        missing = [k for k in (first, "sha256") if single.get(k) is None]
        if missing:
            msg = f"give `{first}` + `sha256` (one file), or `parts` (a split GGUF); missing: " + ", ".join(missing)
            raise ValueError(msg)
    elif given:
        msg = f"a split model lists its files under `parts`; move {', '.join(f'`{k}`' for k in given)} into them"
        raise ValueError(msg)


def _check_split(names: list[str]) -> None:
    """``names`` (in the image) are every part of one split GGUF, in order: llama.cpp's ``NAME-0000i-of-0000N``."""
    if len(names) < 2:
        msg = "`parts` lists the parts of a split GGUF (two or more); for one file use the single-file form"
        raise ValueError(msg)
    stems = set()
    for number, name in enumerate(names, start=1):
        match = SPLIT_NAME.fullmatch(name)
        expected = f"-{number:05d}-of-{len(names):05d}.gguf"
        if match is None or not name.endswith(expected):
            msg = (
                f"part {number} is {name!r}, but llama.cpp finds the parts of a split model by name: part {number} "
                f"of {len(names)} must end in `{expected}` (list every part, in order)"
            )
            raise ValueError(msg)
        stems.add(match.group("stem"))
    if len(stems) > 1:
        msg = "the parts must share one name before -0000i-of-0000N.gguf; found " + ", ".join(sorted(stems))
        raise ValueError(msg)


class HfPart(Strict):
    file: RepoFile = Field(description="Path of this part in the repo (NAME-0000i-of-0000N.gguf).")
    sha256: Sha256 = Field(description="SHA-256 of this part; the build fails on a mismatch.")
    size: Size | None = Field(None, description="Size in bytes (`add` and `pin` record it).")


class HfWeights(Strict):
    hf: HfRepo = Field(description="Hugging Face repo id, owner/name.")
    file: RepoFile | None = Field(None, description="Path of the GGUF file in the repo.")
    revision: Revision = Field(description="Commit sha the file is pinned to.")
    sha256: Sha256 | None = Field(None, description="SHA-256 of the file; the build fails on a mismatch.")
    size: Size | None = Field(None, description="Size in bytes (`add` and `pin` record it).")
    parts: tuple[HfPart, ...] | None = Field(None, description="A split GGUF: every part, in order.")
    gated: bool = Field(False, description="Needs a Hugging Face token (passed as a BuildKit secret).")

    @model_validator(mode="after")
    def _one_form(self) -> HfWeights:
        _one_file_or_parts({"file": self.file, "sha256": self.sha256, "size": self.size}, self.parts, "file")
        if self.parts is not None:
            _check_split([_last_segment(p.file) for p in self.parts])
        return self

    @property
    def filename(self) -> str:
        """The name in the image of the file llama-server loads (a split model's first part)."""
        return self.files[0].filename

    @property
    def files(self) -> tuple[WeightFile, ...]:
        if self.parts is not None:
            return tuple(WeightFile(_last_segment(p.file), p.sha256, p.size, p.file) for p in self.parts)
        assert self.file is not None  # checked by the validator
        assert self.sha256 is not None
        return (WeightFile(_last_segment(self.file), self.sha256, self.size, self.file),)

    def url(self, endpoint: str = "https://huggingface.co", file: str | None = None) -> str:
        """Download URL of ``file`` (default: the first) at the pinned revision, from ``endpoint`` (the Hub or a
        mirror of it)."""
        return f"{endpoint}/{self.hf}/resolve/{self.revision}/{file or self.files[0].source}"


class UrlPart(Strict):
    url: HttpsUrl = Field(description="Where to download this part (its name: NAME-0000i-of-0000N.gguf).")
    sha256: Sha256 = Field(description="SHA-256 of this part; the build fails on a mismatch.")
    size: Size | None = Field(None, description="Size in bytes.")


class UrlWeights(Strict):
    url: HttpsUrl | None = Field(None, description="Where to download the GGUF file.")
    sha256: Sha256 | None = Field(None, description="SHA-256 of the file; the build fails on a mismatch.")
    filename_: GgufName | None = Field(
        None, alias="filename", description="File name in the image (default: from the URL)."
    )
    size: Size | None = Field(None, description="Size in bytes.")
    parts: tuple[UrlPart, ...] | None = Field(None, description="A split GGUF: every part, in order.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_form(self) -> UrlWeights:
        single = {"url": self.url, "sha256": self.sha256, "filename": self.filename_, "size": self.size}
        _one_file_or_parts(single, self.parts, "url")
        if self.parts is not None:
            _check_split([_last_segment(p.url) for p in self.parts])
        return self

    @property
    def filename(self) -> str:
        """The name in the image of the file llama-server loads (a split model's first part)."""
        return self.files[0].filename

    @property
    def files(self) -> tuple[WeightFile, ...]:
        if self.parts is not None:
            return tuple(WeightFile(_last_segment(p.url), p.sha256, p.size, p.url) for p in self.parts)
        assert self.url is not None  # checked by the validator
        assert self.sha256 is not None
        return (
            WeightFile(_image_file_name(self.filename_, _last_segment(self.url)), self.sha256, self.size, self.url),
        )


class FilePart(Strict):
    path: RelPath = Field(description="This part on this machine (NAME-0000i-of-0000N.gguf).")
    sha256: Sha256 = Field(description="SHA-256 of this part; the build fails on a mismatch.")
    size: Size | None = Field(None, description="Size in bytes.")


class FileWeights(Strict):
    path: RelPath | None = Field(None, description="A GGUF file on this machine, relative to the project directory.")
    sha256: Sha256 | None = Field(None, description="SHA-256 of the file; the build fails on a mismatch.")
    filename_: GgufName | None = Field(
        None, alias="filename", description="File name in the image (default: the file's own name)."
    )
    size: Size | None = Field(None, description="Size in bytes.")
    parts: tuple[FilePart, ...] | None = Field(None, description="A split GGUF: every part, in order.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_form(self) -> FileWeights:
        single = {"path": self.path, "sha256": self.sha256, "filename": self.filename_, "size": self.size}
        _one_file_or_parts(single, self.parts, "path")
        if self.parts is not None:
            _check_split([_last_segment(p.path) for p in self.parts])
        return self

    @property
    def filename(self) -> str:
        """The name in the image of the file llama-server loads (a split model's first part)."""
        return self.files[0].filename

    @property
    def files(self) -> tuple[WeightFile, ...]:
        if self.parts is not None:
            return tuple(WeightFile(_last_segment(p.path), p.sha256, p.size, p.path) for p in self.parts)
        assert self.path is not None  # checked by the validator
        assert self.sha256 is not None
        name = _image_file_name(self.filename_, _last_segment(self.path))
        return (WeightFile(name, self.sha256, self.size, self.path),)


def _weights_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        keys = set(value)
        parts = value.get("parts")
        if "hf" not in keys and isinstance(parts, list) and parts and isinstance(parts[0], dict):
            keys |= set(parts[0])  # a split url or path model names its source in each part
        if "hf" in keys:
            return "hf"
        if "url" in keys:
            return "url"
        if "path" in keys:
            return "local"
    if isinstance(value, HfWeights):
        return "hf"
    if isinstance(value, UrlWeights):
        return "url"
    if isinstance(value, FileWeights):
        return "local"
    return None


Weights = Annotated[
    Annotated[HfWeights, Tag("hf")] | Annotated[UrlWeights, Tag("url")] | Annotated[FileWeights, Tag("local")],
    Discriminator(
        _weights_kind,
        custom_error_type="weights_kind",
        custom_error_message=(
            "give either `hf` + `file` + `revision` + `sha256`, `url` + `sha256`, or a local `path` + `sha256` "
            "(a split GGUF: `parts`, each with its `file`, `url` or `path` and `sha256`)"
        ),
    ),
]


# Settings that llama-bake sets itself from the catalog's fields; `server.env` must not repeat them.
MANAGED_SERVER_ENV = (
    "LLAMA_ARG_HOST",
    "LLAMA_ARG_PORT",
    "LLAMA_ARG_MODEL",
    "LLAMA_ARG_MMPROJ",
    "LLAMA_ARG_CTX_SIZE",
    "LLAMA_ARG_N_GPU_LAYERS",
    "LLAMA_ARG_FLASH_ATTN",
    "LLAMA_ARG_JINJA",
)


class Server(Strict):
    """llama-server defaults, carried into the image as LLAMA_ARG_* environment variables."""

    host: Annotated[str, _pattern(r"[0-9A-Za-z.:-]+", "a host address", "e.g. 0.0.0.0")] = "0.0.0.0"
    port: int = Field(8080, ge=1, le=65535)
    ctx_size: int | None = Field(None, ge=0, description="Context size (-c); 0 = the model's own.")
    n_gpu_layers: int | None = Field(None, ge=0, description="Layers to offload (-ngl); 999 = all.")
    flash_attn: Literal["on", "off", "auto"] = Field("auto", description="Flash attention (-fa).")
    jinja: bool = Field(True, description="Use the model's chat template (--jinja).")
    extra_args: tuple[OneLine, ...] = Field(default=(), description="More llama-server arguments, one per item.")
    env: dict[EnvName, OneLine] = Field(default_factory=dict, description="More environment (LLAMA_ARG_*...).")

    @field_validator("env")
    @classmethod
    def _not_managed(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key in MANAGED_SERVER_ENV:
                msg = f"{key} is set from the model's own fields; use those instead of `env`"
                raise ValueError(msg)
        return value


class Health(Strict):
    start_period: Duration = Field("10m", description="Time a large model may take to load.")
    interval: Duration = "30s"
    timeout: Duration = "5s"
    retries: int = Field(3, ge=1, le=100)


class ComposeSettings(Strict):
    """How `llama-bake compose` runs the model."""

    host_port: int | None = Field(None, ge=1, le=65535, description="Port on the host (default: the server port).")
    gpus: Literal["all"] | Annotated[int, Field(ge=1)] | tuple[str, ...] = Field(
        "all", description="GPUs to reserve on a cuda base: all, a count, or a list of device ids."
    )


class Model(Strict):
    """One served model: one image built on a base."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_name_from_the_file)

    name: TargetName = Field(description="Bake target and image name; defaults to the file name.")
    description: str = ""
    base: TargetName | None = Field(None, description="Base target; default: the only base.")
    weights: Weights
    mmproj: Weights | None = Field(None, description="Vision projector (multimodal models).")
    delivery: Literal["baked", "fetch"] = Field(
        "baked",
        description=(
            "baked: weights are a verified image layer; fetch: downloaded and verified at start into LLAMA_CACHE."
        ),
    )
    server: Server = Field(default_factory=Server)
    health: Health = Field(default_factory=Health)
    compose: ComposeSettings = Field(default_factory=ComposeSettings)
    tags: tuple[TagName, ...] = Field(default=(), description="Extra tags for this image.")
    labels: dict[str, str] = Field(default_factory=dict, description="Extra OCI labels.")

    @model_validator(mode="after")
    def _fetch_needs_a_download(self) -> Model:
        if self.delivery == "fetch":
            for name, weights in (("weights", self.weights), ("mmproj", self.mmproj)):
                if isinstance(weights, FileWeights):
                    msg = (
                        f"`{name}` is a local file, which a container cannot fetch at start; "
                        "use `delivery: baked`, or give an `hf` or `url` source"
                    )
                    raise ValueError(msg)
        return self

    @property
    def placeholders(self) -> tuple[str, ...]:
        """The pins still the all-zero placeholders, as ``field.key`` (e.g. ``weights.sha256``): `generate`
        and `validate` warn of them, `build` refuses them, `llama-bake pin` fills them in."""
        found = []
        for field, item in (("weights", self.weights), ("mmproj", self.mmproj)):
            if isinstance(item, HfWeights) and item.revision == PLACEHOLDER_REVISION:
                found.append(f"{field}.revision")
            if item is not None and any(f.sha256 == PLACEHOLDER_SHA256 for f in item.files):
                found.append(f"{field}.sha256")
        return tuple(found)


# --- cross-entry checks -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A problem located by (section, index, field...) in the catalog's combined data."""

    loc: tuple[str | int, ...]
    message: str


class Catalog(Strict):
    project: Project
    bases: tuple[Base, ...]
    models: tuple[Model, ...]

    def base_of(self, model: Model) -> Base:
        name = model.base if model.base is not None else self.bases[0].name
        return next(b for b in self.bases if b.name == name)


def cross_check(bases: list[Base | None], models: list[Model | None], project: Project | None = None) -> list[Problem]:
    """Problems between entries; ``None`` stands for an entry that failed its own validation."""
    problems: list[Problem] = []
    for i, base in enumerate(bases):
        if base is not None and base.backend == "cuda" and project is not None:
            problems += [Problem(("bases", i, "cuda"), m) for m in stack_mismatches(base, project)]
    valid_bases = [b for b in bases if b is not None]
    if not bases:
        problems.append(Problem(("bases",), "the catalog has no base; add catalog/bases/<name>.yaml (see the README)"))
    seen: dict[str, tuple[str | int, ...]] = {}
    base_names = [b.name for b in valid_bases]

    def claim(name: str, loc: tuple[str | int, ...]) -> None:
        if name in RESERVED_GROUPS:
            problems.append(Problem((*loc, "name"), f"`{name}` is a reserved group name; choose another"))
        elif name in seen:
            other = seen[name]
            problems.append(Problem((*loc, "name"), f"`{name}` is already used by {other[0]}[{other[1]}]"))
        else:
            seen[name] = loc

    for i, base in enumerate(bases):
        if base is not None:
            claim(base.name, ("bases", i))
    for i, model in enumerate(models):
        if model is not None:
            claim(model.name, ("models", i))
    for i, base in enumerate(bases):
        if base is not None and f"{base.name}-all" in seen:
            problems.append(
                Problem(("bases", i, "name"), f"`{base.name}-all` is the group of this base; rename the target")
            )
    for i, model in enumerate(models):
        if model is None:
            continue
        if model.base is None:
            if len(base_names) > 1:
                problems.append(
                    Problem(
                        ("models", i, "base"),
                        "the catalog has several bases; name one: " + ", ".join(sorted(base_names)),
                    )
                )
        elif valid_bases and model.base not in base_names:
            hint = did_you_mean(model.base, base_names)
            problems.append(
                Problem(
                    ("models", i, "base"),
                    f"unknown base `{model.base}`; " + (hint if hint else "known: " + ", ".join(sorted(base_names))),
                )
            )
    return problems


def stack_mismatches(base: Base, project: Project) -> list[str]:
    """Why ``base`` does not fit the stack: one message per service on another CUDA major.minor."""
    mine = parse_cuda(base.cuda)
    out = []
    for name, service in sorted(project.stack.items()):
        theirs = service.cuda_version
        if theirs != mine:
            where = f" ({service.image})" if service.image else ""
            out.append(
                f"CUDA {base.cuda} does not match the stack: service `{name}`{where} is on CUDA {fmt_cuda(theirs)}; "
                f"set `cuda: {fmt_cuda(theirs)}.x` here (e.g. {fmt_cuda(theirs)}.1), or update `stack.{name}` "
                "in project.yaml if that service moved"
            )
    return out
