"""The catalog's field types, each rule once: constrained strings (names, pins, URLs, CMake, sizes) with the
hint a bad value gets, sizes as people write them, the placeholders, and the strict base of every model.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from llama_bake.catalog.constants import COMMIT_PATTERN, HF_REPO_PATTERN, SHA256_PATTERN

RESERVED_GROUPS = ("default", "bases", "models")

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
    _pattern(SHA256_PATTERN, "a sha256", "give the 64 hex digits of the file's SHA-256"),
]
Revision = Annotated[
    str,
    _pattern(
        COMMIT_PATTERN,
        "a pinned revision",
        "give the full 40-hex commit sha of the Hugging Face repo (a branch like `main` moves)",
    ),
]
HfRepo = Annotated[
    str,
    _pattern(HF_REPO_PATTERN, "a Hugging Face repo id", "write it as `owner/name`"),
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


# --- models -------------------------------------------------------------------------------------


Size = Annotated[int, Field(ge=0)]
_GGUF_NAME = r"[\w.-]+\.gguf"
GgufName = Annotated[str, _pattern(_GGUF_NAME, "a GGUF file name", "end it in .gguf")]
# llama.cpp's name for one part of a split model: it loads the first and finds the others beside it by name.
SPLIT_NAME = re.compile(r"(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf")
