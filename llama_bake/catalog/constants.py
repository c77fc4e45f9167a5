"""Values every stage shares, each written once: the patterns of pins and repository ids, the Hub's address, the
layer limit, the placeholders and the llama.cpp defaults. Plain Python (no pydantic): the plan, unpickled from the
compile cache, imports this without loading the catalog's models."""

from collections.abc import Sequence

SHA256_PATTERN = r"[0-9a-f]{64}"
COMMIT_PATTERN = r"[0-9a-f]{40}"
HF_REPO_PATTERN = r"[A-Za-z0-9][\w.-]*/[\w.-]+"
HF_ENDPOINT = "https://huggingface.co"
HUB_BRANCH = "main"  # what `add` pins and `pin --update` follows unless told otherwise

# ghcr.io documents 10 GB per layer, ECR Public 10,000 MiB: 9 GB fits both, with room for the tar and gzip framing.
DEFAULT_MAX_LAYER_SIZE = 9_000_000_000

# What the shipped catalog has until `llama-bake pin` fills in the real values.
PLACEHOLDER_REVISION = "0" * 40
PLACEHOLDER_SHA256 = "0" * 64

LLAMA_CPP_GIT = "https://github.com/ggml-org/llama.cpp.git"
# The llama.cpp whose llama-gguf-split re-splits big weights unless project.split_tool names another.
SPLIT_TOOL_REF = "b6500"

# The kinds of catalog file (`llama-bake schema KIND`).
CATALOG_KINDS = ("base", "model", "project")

TAG_PLACEHOLDERS = ("tag", "ref", "cuda", "backend", "git_sha", "git_branch", "git_version")
# Filled at build time from GIT_SHA, GIT_BRANCH and GIT_VERSION (CI sets them; `llama-bake build` reads the
# checkout); a tag whose value is empty (no branch on a tag build, no semver tag) is left out.
GIT_PLACEHOLDERS = ("git_sha", "git_branch", "git_version")


def unpinned(model: str, fields: Sequence[str]) -> str:
    """The one text for a model whose pins are still placeholders: ``validate`` and ``generate`` warn of it,
    ``build`` refuses it."""
    return (
        f"model {model}: {', '.join(fields)} still the all-zero placeholder; `llama-bake pin {model}` fills it in "
        "(build refuses it until then)"
    )
