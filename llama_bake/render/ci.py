"""CI pipelines that build the catalog with a warm per-target cache: GitHub Actions and GitLab CI. Pure.

Both run the command a developer runs (``llama-bake build``), so CI builds in the same two phases, with the same
summary and the same errors: they check that the committed bake file is fresh, build with a cache per target,
push and export the cache from the default branch only (a pull request imports the cache and pushes nothing, so
a missing login fails nothing), and turn ``--summary-json`` into the job's summary.

Caches: a model's weights are 12-17 GB, more than GitHub's cache holds for a whole repository (10 GB), so on
GitHub the models' cache is a registry cache by default and only the bases use GitHub's cache.
"""

from __future__ import annotations

import json
import shlex
from importlib import metadata
from typing import TYPE_CHECKING, Any

from llama_bake.buildx.options import CachePreset
from llama_bake.errors import UsageError
from llama_bake.render.ci_options import DEFAULT_CACHES, CiOptions

if TYPE_CHECKING:
    from llama_bake.plan.ir import BakePlan

SUMMARY_FILE = "llama-bake-summary.json"
# Room for a CUDA toolkit image, a compile and a model on GitHub's 14 GB runners: what the runner image ships
# and llama-bake does not need.
FREE_DISK = "sudo rm -rf /usr/share/dotnet /usr/local/lib/android /opt/ghc /opt/hostedtoolcache/CodeQL && df -h /"


def caches(options: CiOptions, plan: BakePlan) -> tuple[str, str]:
    """(the bases' cache, the models' cache), as ``llama-bake build`` takes them."""
    defaults = [spec.format(registry=plan.default("REGISTRY")) for spec in DEFAULT_CACHES[options.provider]]
    base = options.base_cache or options.cache or defaults[0]
    model = options.model_cache or options.cache or defaults[1]
    for spec in (base, model):
        try:
            kind = CachePreset.parse(spec).kind
        except UsageError:
            kind = "local"  # what is left of parse's forms: tell the CI ones
        if kind == "local":
            msg = f"CI cache {spec!r}: use gha (GitHub only) or registry=REF_PREFIX"
            raise UsageError(msg)
        if kind == "gha" and options.provider != "github":
            msg = "the gha cache only exists on GitHub Actions; use registry=REF_PREFIX"
            raise UsageError(msg)
    return base, model


def default_install() -> str:
    try:
        return f"llama-bake=={metadata.version('llama-bake')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "llama-bake"


def registry_host(registry: str) -> str:
    first = registry.split("/", 1)[0]
    return first if ("." in first or ":" in first or first == "localhost") else "docker.io"


def _files(options: CiOptions) -> str:
    return f"--catalog {shlex.quote(options.catalog)} --bake-file {shlex.quote(options.bake_file)}"


def build_script(plan: BakePlan, options: CiOptions, publish: str) -> str:
    """The build as one shell script: push and export the caches when ``publish`` holds, else import only."""
    base, model = caches(options, plan)
    # $CI_REGISTRY_IMAGE and the like expand in the shell, so these words are not quoted.
    command = (
        f"llama-bake build {_files(options)} --base-cache {base} --model-cache {model}"
        f" --progress plain --summary-json {SUMMARY_FILE} $PUBLISH_FLAGS"
    )
    return f"if {publish}; then PUBLISH_FLAGS=--push; else PUBLISH_FLAGS=--no-cache-export; fi\n{command}\n"


# The git values of the tag scheme, as docker/metadata-action reads them from each provider.
GITHUB_GIT = {
    "GIT_SHA": "${{ github.sha }}",
    "GIT_BRANCH": "${{ github.ref_type == 'branch' && github.ref_name || '' }}",
    "GIT_VERSION": "${{ github.ref_type == 'tag' && github.ref_name || '' }}",
}
GITLAB_GIT = {"GIT_SHA": "$CI_COMMIT_SHA", "GIT_BRANCH": "$CI_COMMIT_BRANCH", "GIT_VERSION": "$CI_COMMIT_TAG"}


def github_workflow(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    host = registry_host(plan.default("REGISTRY"))
    publish_expr = f"github.event_name != 'pull_request' && github.ref == 'refs/heads/{options.branch}'"
    if plan.uses_git:
        # Version tags are released: built, pushed and tagged {git_version}.
        publish_expr = (
            f"github.event_name != 'pull_request' && (github.ref == 'refs/heads/{options.branch}'"
            " || startsWith(github.ref, 'refs/tags/v'))"
        )
    env: dict[str, str] = {"PUBLISH": f"${{{{ {publish_expr} }}}}"}
    if plan.uses_git:
        env |= GITHUB_GIT
    if plan.needs_hf_token:
        env["HF_TOKEN"] = "${{ secrets.HF_TOKEN }}"
    if host == "ghcr.io":
        # GITHUB_TOKEN is there on every event (read-only on pull requests): pull requests read a private cache.
        login: dict[str, Any] = {
            "name": "Log in to the registry",
            "uses": "docker/login-action@v3",
            "with": {"registry": host, "username": "${{ github.actor }}", "password": "${{ secrets.GITHUB_TOKEN }}"},
        }
    else:
        login = {
            "name": "Log in to the registry",
            "if": "env.PUBLISH == 'true'",
            "uses": "docker/login-action@v3",
            "with": {
                "registry": host,
                "username": "${{ secrets.REGISTRY_USERNAME }}",
                "password": "${{ secrets.REGISTRY_PASSWORD }}",
            },
        }
    steps: list[dict[str, Any]] = [{"uses": "actions/checkout@v4"}]
    if options.free_disk:
        steps.append({"name": "Free disk space for the CUDA build", "run": FREE_DISK})
    steps += [
        {"uses": "actions/setup-python@v5", "with": {"python-version": "3.12"}},
        {"name": "Install llama-bake", "run": f"pip install {shlex.quote(options.install or default_install())}"},
        {"name": "The bake file matches the catalog", "run": f"llama-bake generate --check {_files(options)}"},
        {"uses": "docker/setup-buildx-action@v3"},
    ]
    if "gha" in caches(options, plan):
        # buildx run from a shell step reaches GitHub's cache only with the runtime's token in its environment.
        steps.append({"name": "Give buildx GitHub's cache service", "uses": "crazy-max/ghaction-github-runtime@v3"})
    steps += [
        login,
        {"name": "Build the images", "run": build_script(plan, options, '[ "$PUBLISH" = true ]')},
        {
            "name": "Image summary",
            "if": "${{ always() }}",
            "run": f'test ! -f {SUMMARY_FILE} || llama-bake ci summary {SUMMARY_FILE} >> "$GITHUB_STEP_SUMMARY"',
        },
    ]
    push: dict[str, Any] = {"branches": [options.branch]}
    if plan.uses_git:
        push["tags"] = ["v*"]
    return {
        "name": "llama-bake",
        "on": {"push": push, "pull_request": {}, "workflow_dispatch": {}},
        "permissions": {"contents": "read", "packages": "write"},
        "concurrency": {"group": "llama-bake-${{ github.ref }}", "cancel-in-progress": True},
        "jobs": {"build": {"runs-on": options.runs_on, "timeout-minutes": 180, "env": env, "steps": steps}},
    }


def gitlab_pipeline(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    publish = f'[ "$CI_COMMIT_BRANCH" = {shlex.quote(options.branch)} ]'
    if plan.uses_git:
        publish += ' || [ -n "${CI_COMMIT_TAG:-}" ]'  # a tag is a release: pushed, and tagged {git_version}
    script = [
        f"llama-bake generate --check {_files(options)}",
        build_script(plan, options, publish).rstrip("\n"),
    ]
    if plan.needs_hf_token:
        script.insert(0, 'test -n "$HF_TOKEN" || { echo "set the masked CI/CD variable HF_TOKEN"; exit 1; }')
    job: dict[str, Any] = {
        "stage": "build",
        "image": "docker:27",
        "services": ["docker:27-dind"],
    }
    if options.runner_tags:
        job["tags"] = list(options.runner_tags)
    job |= {
        "variables": {"DOCKER_TLS_CERTDIR": "/certs", **(GITLAB_GIT if plan.uses_git else {})},
        "before_script": [
            "apk add --no-cache python3 py3-pip",
            f"pip install --break-system-packages {shlex.quote(options.install or default_install())}",
            # The job token can read the project's registry in every pipeline, merge requests included.
            'echo "$CI_REGISTRY_PASSWORD" | docker login -u "$CI_REGISTRY_USER" --password-stdin "$CI_REGISTRY"',
            "docker buildx create --use --driver docker-container",
        ],
        "script": script,
        "after_script": [f"test ! -f {SUMMARY_FILE} || llama-bake ci summary {SUMMARY_FILE}"],
        "artifacts": {"when": "always", "paths": [SUMMARY_FILE]},
    }
    return {"stages": ["build"], "llama-bake": job}


def pipeline(plan: BakePlan, options: CiOptions) -> dict[str, Any]:
    if options.provider == "github":
        return github_workflow(plan, options)
    return gitlab_pipeline(plan, options)


def summary_markdown(text: str) -> str:
    """``llama-bake build --summary-json`` (or bake's metadata file) as a Markdown table for a CI job summary."""
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        msg = f"the build summary is not JSON: {exc}"
        raise UsageError(msg) from exc
    if isinstance(data, dict) and isinstance(data.get("targets"), list):
        rows = ["| target | status | image | digest | on base |", "| --- | --- | --- | --- | --- |"]
        for item in data["targets"]:
            if isinstance(item, dict):
                cells = [item.get(k) or "" for k in ("name", "status", "image", "digest", "base_digest")]
                rows.append("| {} | {} | `{}` | `{}` | `{}` |".format(*cells))
        head = f"{data.get('steps_executed', 0)} steps run, {data.get('steps_cached', 0)} from the cache.\n\n"
        return "### llama-bake images\n\n" + head + "\n".join(rows) + "\n"
    rows = ["| target | image | digest |", "| --- | --- | --- |"]
    for name in sorted(data) if isinstance(data, dict) else []:
        item = data[name]
        if not isinstance(item, dict) or name.startswith("buildx."):
            continue
        image = str(item.get("image.name", "")).split(",")[0] or "(not pushed)"
        rows.append(f"| {name} | `{image}` | `{item.get('containerimage.digest', '')}` |")
    return "### llama-bake images\n\n" + "\n".join(rows) + "\n"
