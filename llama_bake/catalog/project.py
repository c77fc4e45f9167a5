"""project.yaml: the settings every target shares (registry, tags, cache, layer limit, the rest of the stack)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from llama_bake.catalog.access import DEFAULT_ACCESS, Access, ApiKey
from llama_bake.catalog.bases import GitSource, LlamaSource, LocalSource
from llama_bake.catalog.constants import (
    DEFAULT_MAX_LAYER_SIZE,
    GIT_PLACEHOLDERS,
    HF_ENDPOINT,
    LLAMA_CPP_GIT,
    SPLIT_TOOL_REF,
    TAG_PLACEHOLDERS,
)
from llama_bake.catalog.fields import Strict, TagName, TargetName, _pattern, parse_size
from llama_bake.catalog.gpus import parse_cuda
from llama_bake.errors import did_you_mean

# --- project ------------------------------------------------------------------------------------


Compression = Literal["zstd", "gzip", "uncompressed"]
GZIP_MAX_LEVEL = 9

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
        HF_ENDPOINT,
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
    compression: Compression = Field(
        "zstd",
        description=(
            "How every image layer is compressed when it is pushed or exported: zstd (default: weights, which do "
            "not compress, are stored as they are at disk speed, and the binaries shrink about as with gzip), "
            "uncompressed (layers as plain tar: the weights push as fast as with zstd, the other layers grow), or "
            "gzip (for engines older than Docker 23, which cannot pull zstd; 2-3x zstd's push time on weights). "
            "With gzip, layers taken from a base that came as zstd are compressed again (force-compression)."
        ),
    )
    compression_level: int | None = Field(
        None,
        ge=0,
        le=22,
        description=(
            "The codec's level: zstd 0-22 (BuildKit maps it to four speeds: <3 fastest, 3-6 default, 7-8 better, "
            "9+ best), gzip 0-9. Unset: BuildKit's default (zstd 3, gzip 6). Not with uncompressed."
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
    access: Access = Field(
        DEFAULT_ACCESS,
        description=(
            "How every model is reached unless it says otherwise: local (published on 127.0.0.1 only) or network "
            "(every interface of the host; needs an `api_key`)."
        ),
    )
    api_key: ApiKey | None = Field(
        None,
        description=(
            "Where every model's API key is read at run time unless it says otherwise: `{env: NAME}` or "
            "`{file: PATH}`, never the key itself."
        ),
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

    @model_validator(mode="after")
    def _level_fits_the_codec(self) -> Project:
        level = self.compression_level
        if level is None:
            return self
        if self.compression == "uncompressed":
            msg = "compression_level has no meaning with `compression: uncompressed`; remove it"
            raise ValueError(msg)
        if self.compression == "gzip" and level > GZIP_MAX_LEVEL:
            msg = f"compression_level {level} is not a gzip level; write 0-{GZIP_MAX_LEVEL} (6 is gzip's default)"
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
