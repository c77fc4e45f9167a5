"""Where the templates are: the project's own first, then the ones llama-bake ships. Plain paths: the compile
cache keys on these files without loading Jinja."""

from __future__ import annotations

from pathlib import Path


def _packaged_templates() -> Path:
    """The templates shipped with llama-bake: ``_templates`` in a wheel, the repository's own files in a
    checkout or an editable install (nothing is linked: links break on Windows checkouts)."""
    package = Path(__file__).parent.parent
    wheel = package / "_templates"
    return wheel if wheel.is_dir() else package.parent


PACKAGED_TEMPLATES = _packaged_templates()
BAKE_TEMPLATE = "docker-bake.hcl.j2"
DOCKERFILE_TEMPLATES = {"base": "templates/base.Dockerfile.j2", "model": "templates/model.Dockerfile.j2"}
