"""Build options: the cache presets."""

from __future__ import annotations

import pytest

from llama_bake.buildx.options import CachePreset
from llama_bake.errors import UsageError

FAKE_DIGEST = "sha256:" + "d" * 64


def test_cache_presets_parse_and_reject_what_they_cannot_use() -> None:
    assert CachePreset.parse("gha") == CachePreset("gha")
    assert CachePreset.parse("registry=ghcr.io/acme/cache") == CachePreset("registry", "ghcr.io/acme/cache")
    assert CachePreset.parse("local=/tmp/c") == CachePreset("local", "/tmp/c")
    for bad in ("s3=bucket", "registry", "local=", "gha=x"):
        with pytest.raises(UsageError):
            CachePreset.parse(bad)
