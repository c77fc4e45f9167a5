"""The compile cache and the template bytecode cache: keyed on every input, and never a reason to fail."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.invoke import generate
from tests.conftest import REPO, WriteCatalog


@pytest.mark.tools
def test_generate_works_and_is_identical_without_a_writable_template_cache(
    write_catalog: WriteCatalog, tmp_path: Path
) -> None:
    """Compiled templates are cached under XDG_CACHE_HOME; a cache that cannot be written changes nothing."""
    catalog = write_catalog()
    outputs = []
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache directory would go\n")
    for cache_home in (tmp_path / "cache", tmp_path / "cache", blocked):
        env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
        out = tmp_path / "docker-bake.hcl"
        out.unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "llama_bake", "generate", "--catalog", str(catalog)], env=env, check=True)
        outputs.append(out.read_bytes())
    assert list((tmp_path / "cache" / "llama-bake" / "jinja").iterdir()), "the first run fills the cache"
    assert outputs[0] == outputs[1] == outputs[2]


def test_the_compile_cache_follows_the_projects_templates_and_survives_a_broken_entry(
    write_catalog: WriteCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llama_bake import compile_cache as cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    catalog = write_catalog()
    generate(catalog)
    first = (tmp_path / "docker-bake.hcl").read_text()
    entries = list(cache.cache_dir().glob("*.pickle"))
    assert len(entries) == 1
    entries[0].write_bytes(b"not a pickle")
    assert generate(catalog).exit_code == 0, "a broken entry is compiled again"
    assert (tmp_path / "docker-bake.hcl").read_text() == first
    # A project template of its own is an input too.
    template = tmp_path / "templates" / "model.Dockerfile.j2"
    template.parent.mkdir()
    template.write_text((REPO / "templates" / "model.Dockerfile.j2").read_text() + "# ours\n")
    generate(catalog)
    assert (tmp_path / "dockerfiles" / "model-a.Dockerfile").read_text().endswith("# ours\n")
    template.unlink()
    generate(catalog)
    assert not (tmp_path / "dockerfiles" / "model-a.Dockerfile").read_text().endswith("# ours\n")
