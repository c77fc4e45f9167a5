"""``llama-bake pin BASE``: a base's llama.cpp ``ref`` moved to the newest release tag of its ``git`` URL, or to a
tag given. The tags come from ``git ls-remote``, so the user's git config applies (credentials, proxies,
``url.<base>.insteadOf`` mirrors). The base file is edited in place: only the ref's value changes.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llama_bake.catalog.bases import GitSource
from llama_bake.catalog.constants import COMMIT_PATTERN
from llama_bake.catalog.edits import pin_text, round_trip_yaml
from llama_bake.errors import CatalogError, LlamaBakeError, UsageError
from llama_bake.files import unified_diff, write_atomic

# llama.cpp's releases are b1234; other projects' are v1.2.3 or 1.2 (no pre-releases: they carry a suffix).
RELEASE = re.compile(r"b\d+|v?\d+(\.\d+)*")
COMMIT = re.compile(COMMIT_PATTERN)

LsRemote = Callable[[str], str]  # URL -> `git ls-remote --heads --tags URL`


class RemoteError(LlamaBakeError):
    """The git remote could not answer (network, an unknown repository, no access)."""

    exit_code = 9


def ls_remote(url: str) -> str:
    try:
        done = subprocess.run(
            ["git", "ls-remote", "--heads", "--tags", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=None,
        )
    except FileNotFoundError as exc:
        msg = "git is not installed; `llama-bake pin BASE` asks git for the release tags"
        raise RemoteError(msg) from exc
    except subprocess.TimeoutExpired as exc:
        msg = f"git ls-remote {url} did not answer within 120 s"
        raise RemoteError(msg) from exc
    if done.returncode != 0:
        msg = f"git ls-remote {url} failed: {done.stderr.strip() or done.returncode}"
        raise RemoteError(msg)
    return done.stdout


@dataclass(frozen=True)
class Refs:
    tags: frozenset[str]
    branches: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> Refs:
        tags, branches = set(), set()
        for line in text.splitlines():
            _, _, ref = line.partition("\t")
            if ref.startswith("refs/tags/"):
                tags.add(ref.removeprefix("refs/tags/").removesuffix("^{}"))
            elif ref.startswith("refs/heads/"):
                branches.add(ref.removeprefix("refs/heads/"))
        return cls(frozenset(tags), frozenset(branches))

    def newest_release(self) -> str | None:
        releases = [t for t in self.tags if RELEASE.fullmatch(t)]
        return max(releases, key=lambda t: tuple(int(n) for n in re.findall(r"\d+", t)), default=None)


@dataclass(frozen=True)
class BasePin:
    """What ``pin`` found for one base: its ref as written, the ref it moves to ('' when none), the newest release."""

    path: Path
    url: str
    current: str
    target: str
    newest: str | None


def _read(path: Path) -> tuple[str, str]:
    try:
        data = round_trip_yaml().load(path.read_text(encoding="utf-8"))
    except Exception as exc:  # ruamel's parser errors
        msg = f"{path}: not readable YAML: {exc}"
        raise CatalogError([msg]) from exc
    source = data.get("llama_cpp") if isinstance(data, dict) else None
    if not isinstance(source, dict) or "git" not in source:
        msg = f"{path}: llama_cpp: `pin` moves a git ref; this base builds a local source (`path:`)"
        raise CatalogError([msg])
    return str(source["git"]), str(source.get("ref", "") or "")


def pin_for(path: Path, *, update: bool, ref: str | None, remote: LsRemote = ls_remote) -> BasePin:
    """The ref ``path``'s base moves to: ``ref`` when given (a tag or a commit; a branch moves, so it is
    refused), the newest release with ``update``, else none (``newest`` still says what exists)."""
    url, current = _read(path)
    refs = Refs.parse(remote(url))
    newest = refs.newest_release()
    target = ""
    if ref is not None:
        if ref in refs.branches and ref not in refs.tags:
            msg = f"--ref {ref}: `{ref}` is a branch of {url} and moves; give a release tag (e.g. {newest}) or a commit"
            raise UsageError(msg)
        if ref not in refs.tags and not COMMIT.fullmatch(ref):
            msg = f"--ref {ref}: {url} has no tag `{ref}`" + (f"; its newest release is {newest}" if newest else "")
            raise UsageError(msg)
        target = ref
    elif update:
        if newest is None:
            msg = f"{url} has no release tag (b1234, v1.2.3); give one with --ref"
            raise UsageError(msg)
        target = newest
    return BasePin(path, url, current, target if target != current else "", newest)


def pinned_text(text: str, ref: str) -> str:
    """``text`` with ``llama_cpp.ref`` set to ``ref``; every other byte (comments, quoting) stays."""
    new = pin_text(text, {"llama_cpp": {"ref": ref}})
    source = dict(round_trip_yaml().load(new)["llama_cpp"])
    try:
        GitSource.model_validate({"git": source["git"], "ref": source["ref"]})
    except ValueError as exc:
        msg = f"llama_cpp.ref {ref!r} would not validate: {exc}"
        raise CatalogError([msg]) from exc
    return new


@dataclass(frozen=True)
class BaseResult:
    pin: BasePin
    diff: str  # '' when the file did not change

    @property
    def message(self) -> str:
        name = self.pin.path.stem
        if self.diff:
            return f"{name}: llama.cpp {self.pin.current} -> {self.pin.target}"
        if self.pin.newest and self.pin.newest != self.pin.current:
            return (
                f"{name}: llama.cpp {self.pin.current}; a newer release exists: {self.pin.newest} "
                f"(`llama-bake pin {name} --update` moves to it)"
            )
        return f"{name}: llama.cpp {self.pin.current}" + (" is the newest release" if self.pin.newest else "")


def base_files(catalog: Path) -> dict[str, Path]:
    directory = catalog / "bases"
    return {p.stem: p for p in sorted(directory.glob("*.y*ml"))} if directory.is_dir() else {}


def pin_bases(
    catalog: Path, names: list[str], *, update: bool, ref: str | None, remote: LsRemote = ls_remote
) -> list[BaseResult]:
    """``llama-bake pin BASE...``: move each named base's ref (see ``pin_for``), writing only changed files."""
    files = base_files(catalog)
    results = []
    for name in names:
        path = files[name]
        found = pin_for(path, update=update, ref=ref, remote=remote)
        diff = ""
        if found.target:
            old = path.read_text(encoding="utf-8")
            new = pinned_text(old, found.target)
            diff = unified_diff(path, old, new)
            write_atomic(path, new)
        results.append(BaseResult(found, diff))
    return results
