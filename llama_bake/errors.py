"""Errors llama-bake reports to users; each class owns its exit code (documented in the README)."""

from __future__ import annotations

import difflib


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A hint for a misspelt name: the closest of ``choices``, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else ""


class LlamaBakeError(Exception):
    """Base of every error the CLI reports without a traceback."""

    exit_code = 1


class CatalogError(LlamaBakeError):
    """The catalog cannot be read or is invalid; ``problems`` lists every problem found."""

    exit_code = 8

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = len(problems)
        head = "1 catalog problem" if count == 1 else f"{count} catalog problems"
        super().__init__(head + ":\n" + "\n".join(problems))


class TemplateError(LlamaBakeError):
    """A template is missing or fails to render."""

    exit_code = 3


class StaleError(LlamaBakeError):
    """``generate --check``: a generated file on disk differs from what the catalog gives."""

    exit_code = 4


class DockerError(LlamaBakeError):
    """docker/buildx is missing, too old, or has no reachable builder."""

    exit_code = 5


class BuildError(LlamaBakeError):
    """``docker buildx bake`` ran and failed."""

    exit_code = 6


class UsageError(LlamaBakeError):
    """Command-line values that click cannot check on its own: the same code as click's own usage errors."""

    exit_code = 2


class SmokeFailed(LlamaBakeError):
    """``smoke``: an image did not become healthy or did not answer a completion."""

    exit_code = 7


class PushRefused(LlamaBakeError):
    """Before a build that pushes: a registry does not answer, or the docker config's login cannot push to it."""

    exit_code = 10


class DiskBudgetError(LlamaBakeError):
    """Before any step (``build --disk-budget``) or at plan time (``ci plan``): the planned builder disk of the
    targets does not fit the disk the build or the runner has."""

    exit_code = 11
