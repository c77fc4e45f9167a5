"""CI pipelines that build the catalog with a warm per-target cache: GitHub Actions and GitLab CI. Pure.

Both check that the committed bake file is fresh (``llama-bake generate --check``), build the generated file
itself (not a Git context), give every target its own cache through the bake file's CACHE_TYPE/CACHE_REF
variables, and push only from the default branch. The bases are baked first and the models second, so the
models' bakes find their base in the builder instead of solving it again (after a cache import BuildKit can
still re-run some models' last step: moby/buildkit#4674, the known limit in the README).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llama_bake.errors import UsageError

if TYPE_CHECKING:
    from llama_bake.plan import BakePlan

PROVIDERS = ("github", "gitlab")
DEFAULT_PATHS = {"github": ".github/workflows/llama-bake.yml", "gitlab": ".gitlab-ci.yml"}


@dataclass(frozen=True)
class CiOptions:
    provider: str
    cache: str  # "gha", or "registry=REF_PREFIX"; "registry" alone = <registry>/cache
    bake_file: str  # relative to the repository root
    catalog: str  # relative to the repository root
    install: str  # pip requirement that installs llama-bake
    branch: str = "main"  # images are pushed from this branch only

    @property
    def cache_env(self) -> dict[str, str]:
        kind, _, ref = self.cache.partition("=")
        if kind == "gha":
            if self.provider != "github":
                msg = "the gha cache only exists on GitHub Actions; use --cache registry=REF_PREFIX"
                raise UsageError(msg)
            return {"CACHE_TYPE": "gha"}
        if kind == "registry":
            if not ref:
                ref = "$CI_REGISTRY_IMAGE/cache" if self.provider == "gitlab" else ""
            if not ref:
                msg = "--cache registry needs a repository prefix for the cache: registry=ghcr.io/acme/cache"
                raise UsageError(msg)
            return {"CACHE_TYPE": "registry", "CACHE_REF": ref}
        msg = f"unknown --cache {self.cache!r}: use gha or registry=REF_PREFIX"
        raise UsageError(msg)


def default_install() -> str:
    from importlib import metadata

    try:
        return f"llama-bake=={metadata.version('llama-bake')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "llama-bake"


def registry_host(registry: str) -> str:
    first = registry.split("/", 1)[0]
    return first if ("." in first or ":" in first or first == "localhost") else "docker.io"


def _generate_args(options: CiOptions) -> str:
    return f"--catalog {options.catalog} --output {options.bake_file}"


def github_workflow(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    host = registry_host(plan.default("REGISTRY"))
    on_default_branch = f"github.event_name != 'pull_request' && github.ref == 'refs/heads/{options.branch}'"
    if host == "ghcr.io":
        login = {"registry": host, "username": "${{ github.actor }}", "password": "${{ secrets.GITHUB_TOKEN }}"}
    else:
        login = {
            "registry": host,
            "username": "${{ secrets.REGISTRY_USERNAME }}",
            "password": "${{ secrets.REGISTRY_PASSWORD }}",
        }
    env = dict(options.cache_env)
    if plan.needs_hf_token:
        env["HF_TOKEN"] = "${{ secrets.HF_TOKEN }}"

    def bake(step_id: str, name: str, targets: str) -> dict[str, Any]:
        return {
            "name": name,
            "id": step_id,
            "uses": "docker/bake-action@v6",
            "env": env,
            "with": {
                # The generated file in the checkout, not bake's default Git context.
                "source": ".",
                "files": options.bake_file,
                "targets": targets,
                "push": f"${{{{ {on_default_branch} }}}}",
            },
        }

    steps: list[dict[str, Any]] = [
        {"uses": "actions/checkout@v4"},
        {"uses": "actions/setup-python@v5", "with": {"python-version": "3.12"}},
        {"name": "Install llama-bake", "run": f"pip install '{options.install}'"},
        {"name": "The bake file matches the catalog", "run": f"llama-bake generate --check {_generate_args(options)}"},
        {"uses": "docker/setup-buildx-action@v3"},
        {
            "name": "Log in to the registry",
            "if": f"${{{{ {on_default_branch} }}}}",
            "uses": "docker/login-action@v3",
            "with": login,
        },
        bake("bases", "Build the llama.cpp bases", "bases"),
        bake("models", "Build the models", "default"),
        {
            "name": "Image summary",
            "if": "${{ always() }}",
            "env": {"METADATA": "${{ steps.models.outputs.metadata }}"},
            "run": 'printf \'%s\' "$METADATA" | llama-bake ci summary - >> "$GITHUB_STEP_SUMMARY"',
        },
    ]
    return {
        "name": "llama-bake",
        "on": {"push": {"branches": [options.branch]}, "pull_request": {}, "workflow_dispatch": {}},
        "permissions": {"contents": "read", "packages": "write"},
        "concurrency": {"group": "llama-bake-${{ github.ref }}", "cancel-in-progress": True},
        "jobs": {"build": {"runs-on": "ubuntu-latest", "timeout-minutes": 180, "steps": steps}},
    }


def gitlab_pipeline(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    env = dict(options.cache_env)
    variables: dict[str, Any] = {"DOCKER_TLS_CERTDIR": "/certs", **env}
    script = [
        f"llama-bake generate --check {_generate_args(options)}",
        f'if [ "$CI_COMMIT_BRANCH" = "{options.branch}" ]; then PUSH=--push; else PUSH=; fi',
        f"docker buildx bake --file {options.bake_file} $PUSH bases",
        f"docker buildx bake --file {options.bake_file} --metadata-file metadata.json $PUSH default",
        "llama-bake ci summary metadata.json",
    ]
    if plan.needs_hf_token:
        script.insert(0, 'test -n "$HF_TOKEN" || { echo "set the masked CI/CD variable HF_TOKEN"; exit 1; }')
    return {
        "stages": ["build"],
        "llama-bake": {
            "stage": "build",
            "image": "docker:27",
            "services": ["docker:27-dind"],
            "variables": variables,
            "before_script": [
                "apk add --no-cache python3 py3-pip",
                f"pip install --break-system-packages '{options.install}'",
                'echo "$CI_REGISTRY_PASSWORD" | docker login -u "$CI_REGISTRY_USER" --password-stdin "$CI_REGISTRY"',
                "docker buildx create --use --driver docker-container",
            ],
            "script": script,
            "artifacts": {"when": "always", "paths": ["metadata.json"]},
        },
    }


def pipeline(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    if options.provider == "github":
        return github_workflow(plan, options)
    return gitlab_pipeline(plan, options)


def summary_markdown(metadata_text: str) -> str:
    """bake's metadata (per target: image name, digest) as a Markdown table for a CI job summary."""
    try:
        data = json.loads(metadata_text or "{}")
    except json.JSONDecodeError as exc:
        msg = f"the bake metadata is not JSON: {exc}"
        raise UsageError(msg) from exc
    rows = ["| target | image | digest |", "| --- | --- | --- |"]
    for name in sorted(data) if isinstance(data, dict) else []:
        item = data[name]
        if not isinstance(item, dict) or name.startswith("buildx."):
            continue
        image = str(item.get("image.name", "")).split(",")[0] or "(not pushed)"
        rows.append(f"| {name} | `{image}` | `{item.get('containerimage.digest', '')}` |")
    return "### llama-bake images\n\n" + "\n".join(rows) + "\n"
