"""A llama.cpp base (catalog/bases/NAME.yaml): its llama.cpp source, backend, CUDA, GPU families and build options."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from llama_bake.catalog.backends import BACKENDS, Backend
from llama_bake.catalog.fields import (
    CcacheSize,
    CMakeName,
    CMakeValue,
    CudaVersion,
    EnvName,
    OneLine,
    PackageName,
    Strict,
    TargetName,
    _pattern,
)
from llama_bake.catalog.gpus import (
    FAMILY_BACKEND,
    FAMILY_NAMES,
    GPU_FAMILIES,
    MANAGED_CMAKE_OPTIONS,
    OBSOLETE_CMAKE_OPTIONS,
    PLATFORMS,
    family_cards,
    family_hint,
    fmt_cuda,
    known_families,
    parse_cuda,
)

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
    backend: Literal["cuda", "vulkan", "cpu"] = Field(
        "cuda", description="; ".join(f"{b.name} ({b.runs_on})" for b in BACKENDS.values()) + "."
    )
    llama_cpp: LlamaSource = Field(description="Where the llama.cpp source comes from.")
    cuda: CudaVersion = Field("12.8.1", description="CUDA toolkit of the nvidia/cuda images.")
    os: OsFlavour = Field("ubuntu24.04", description="OS of the build and runtime images.")
    cuda_runtime: Literal["slim", "full"] = Field(
        "slim",
        description=(
            "What a cuda base's image runs on: slim (the plain OS image plus the CUDA libraries the compiled "
            "backend loads, found from its binaries) or full (NVIDIA's -runtime- image, several GB of CUDA "
            "libraries)."
        ),
    )
    gpu_families: tuple[str, ...] = Field(
        default=(),
        description=(
            "GPU families the base is for. cuda: the families it compiles for (" + ", ".join(GPU_FAMILIES) + "). "
            "vulkan: the cards it is meant for (" + ", ".join(BACKENDS["vulkan"].families) + "); the shaders run on "
            "any Vulkan GPU, so none means any, and the families say which device plugin a pod asks."
        ),
        json_schema_extra={"items": {"enum": list(FAMILY_NAMES), "type": "string"}},
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
        unknown = [family for family in value if family not in FAMILY_BACKEND]
        if unknown:
            lines = [f"`{family}`: {family_hint(family)}" for family in unknown]
            known = known_families()
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

    @property
    def engine(self) -> Backend:
        """The backend's entry: what it compiles with, installs, and how its containers reach their GPUs."""
        return BACKENDS[self.backend]

    @model_validator(mode="after")
    def _fits_its_backend(self) -> Base:
        """Fields, families and CMake options of another backend are refused, each with where it belongs."""
        backend = self.engine
        for name in backend.refused_fields:
            if name in self.model_fields_set:
                field_owner = next(b.name for b in BACKENDS.values() if name in b.fields)
                msg = f"{name} only applies to `backend: {field_owner}`; remove it for a {self.backend} base"
                raise ValueError(msg)
        for key in self.cmake_options:
            owner = next((b for b in BACKENDS.values() if b.owns_option(key)), backend)
            if owner is not backend:
                msg = (
                    f"cmake_options: {key} configures llama.cpp's {owner.name} backend, which a {self.backend} base "
                    f"does not compile; remove it, or move it to a `backend: {owner.name}` base"
                )
                raise ValueError(msg)
        if self.os in backend.os_refused:
            msg = f"a {self.backend} base cannot build on {self.os}: {backend.os_refused[self.os]}"
            raise ValueError(msg)
        foreign = [f for f in self.gpu_families if FAMILY_BACKEND[f] != self.backend]
        if foreign:
            raise ValueError(_foreign_families_message(self.backend, foreign))
        if backend.families_required and not self.gpu_families:
            msg = f"a {self.backend} base needs `gpu_families`, e.g. [ada, blackwell-consumer]; known: " + ", ".join(
                backend.families
            )
            raise ValueError(msg)
        if backend.cuda:
            self._families_fit_cuda()
        return self

    def _families_fit_cuda(self) -> None:
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
        nvidia = [GPU_FAMILIES[f] for f in self.gpu_families if f in GPU_FAMILIES]
        fixed = {p for f in nvidia for p in f.platforms if len(f.platforms) == 1}
        return tuple(p for p in PLATFORMS if p in fixed) or ("linux/amd64",)

    @property
    def cuda_architectures(self) -> str:
        families = sorted((GPU_FAMILIES[f] for f in self.gpu_families), key=lambda f: f.compute_capability)
        return ";".join(f.cuda_arch for f in families)


def _foreign_families_message(backend: str, families: list[str]) -> str:
    """Families of another backend's cards on a base: where they belong, and what this base's would be."""
    owners = sorted({FAMILY_BACKEND[f] for f in families})
    named = ", ".join(f"`{f}` ({family_cards(f)})" for f in families)
    where = " or ".join(f"a `backend: {o}` base" for o in owners)
    own = BACKENDS[backend].families
    instead = f"; a {backend} base's families: {', '.join(own)}" if own else f"; a {backend} base has none"
    return f"{named} run on {where}, not on this {backend} base: move them to one (a base each){instead}"
