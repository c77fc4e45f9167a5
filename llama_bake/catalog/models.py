"""A model (catalog/models/NAME.yaml): its weights (a Hub file, a URL or a local file; one file or a split model's
parts, each pinned by checksum), vision projector, server defaults, health check and Compose settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from llama_bake.catalog.access import Access, ApiKey
from llama_bake.catalog.bases import RelPath, _name_from_the_file
from llama_bake.catalog.constants import HF_ENDPOINT, PLACEHOLDER_REVISION, PLACEHOLDER_SHA256
from llama_bake.catalog.fields import (
    _GGUF_NAME,
    SPLIT_NAME,
    Duration,
    EnvName,
    GgufName,
    HfRepo,
    HttpsUrl,
    OneLine,
    RepoFile,
    Revision,
    Sha256,
    Size,
    Strict,
    TagName,
    TargetName,
    _pattern,
)


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

    def url(self, endpoint: str = HF_ENDPOINT, file: str | None = None) -> str:
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


def _weights_kind(value: Any) -> str | None:  # noqa: PLR0911 - one return per kind of weights source
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
    access: Access | None = Field(
        None,
        description=(
            "local: published on 127.0.0.1 only; network: on every interface (needs `api_key`). Default: the "
            "project's `access`."
        ),
    )
    api_key: ApiKey | None = Field(
        None, description="Where the API key is read at run time (never the key). Default: the project's."
    )
    license: OneLine | None = Field(
        None,
        description=(
            "The weights' license (the image's org.opencontainers.image.licenses), as the Hub's model card names it "
            "(e.g. apache-2.0, gemma, llama3.1) or an SPDX expression; `add` and `pin` read it from the Hub."
        ),
    )
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
