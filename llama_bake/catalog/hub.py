"""The Hugging Face Hub: a repository's commit and GGUF files with their SHA-256, and which file a name or a
quantisation means. It talks to the Hub through ``huggingface_hub`` (the ``hub`` extra, imported on use) at
``project.hf_endpoint`` (a mirror works), with ``HF_TOKEN`` for gated repositories; the token is never written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llama_bake.catalog.constants import HF_REPO_PATTERN, SHA256_PATTERN
from llama_bake.errors import LlamaBakeError

SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$")


class HubError(LlamaBakeError):
    """The Hub could not answer, or did not have what was asked for."""

    exit_code = 9


@dataclass(frozen=True)
class HubFile:
    path: str
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def is_mmproj(self) -> bool:
        return self.name.lower().startswith("mmproj")


@dataclass(frozen=True)
class HubRepo:
    repo: str
    commit: str
    gated: bool
    files: tuple[HubFile, ...]  # the GGUF files
    license: str = ""  # the model card's `license` ('' when it names none)

    def file(self, path: str) -> HubFile:
        found = next((f for f in self.files if f.path == path), None)
        if found is None:
            msg = f"{self.repo} has no file {path!r} at {self.commit[:12]}; its GGUF files: " + _names(self.files)
            raise HubError(msg)
        return found


@dataclass(frozen=True)
class Spec:
    """What the user named: ``hf://OWNER/REPO/FILE.gguf`` or ``OWNER/REPO[:QUANT]``."""

    repo: str
    file: str | None = None
    quant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Spec:
        if text.startswith("hf://"):
            parts = text.removeprefix("hf://").split("/", 2)
            if len(parts) == 3 and parts[2].endswith(".gguf"):
                return cls(f"{parts[0]}/{parts[1]}", file=parts[2])
        else:
            repo, _, quant = text.partition(":")
            if re.fullmatch(HF_REPO_PATTERN, repo):
                return cls(repo, quant=quant or None)
        msg = f"{text!r}: write hf://OWNER/REPO/FILE.gguf, or OWNER/REPO:QUANT (e.g. unsloth/gemma-3-4b-it-GGUF:Q4_K_M)"
        raise HubError(msg)


def fetch(repo: str, revision: str, endpoint: str) -> HubRepo:
    """``repo`` at ``revision`` (a branch, tag or commit): its commit and its GGUF files."""
    try:
        from huggingface_hub import HfApi
        from huggingface_hub import errors as hf_errors
    except ImportError as exc:
        msg = "the Hub commands need huggingface_hub: pip install 'llama-bake[hub]'"
        raise HubError(msg) from exc
    try:
        info = HfApi(endpoint=endpoint).model_info(repo, revision=revision, files_metadata=True)
    except hf_errors.GatedRepoError as exc:
        msg = f"{repo} is gated: set HF_TOKEN to a token of an account that has accepted its terms on {endpoint}"
        raise HubError(msg) from exc
    except hf_errors.RepositoryNotFoundError as exc:
        msg = f"{repo} was not found on {endpoint} (a private repository needs HF_TOKEN)"
        raise HubError(msg) from exc
    except hf_errors.RevisionNotFoundError as exc:
        msg = f"{repo} has no revision {revision!r}"
        raise HubError(msg) from exc
    except hf_errors.OfflineModeIsEnabled as exc:
        msg = f"HF_HUB_OFFLINE is set: {repo} cannot be looked up; unset it, or write the pins by hand"
        raise HubError(msg) from exc
    except Exception as exc:  # the HTTP client's own errors: no network, DNS, TLS, a mirror that is down
        msg = f"cannot reach {endpoint} for {repo}: {type(exc).__name__}: {exc}"
        raise HubError(msg) from exc
    files = []
    for sibling in info.siblings or []:
        if sibling.rfilename.endswith(".gguf"):
            sha256 = sibling.lfs.sha256 if sibling.lfs else ""
            files.append(HubFile(sibling.rfilename, sha256, sibling.size or 0))
    if not info.sha:
        msg = f"{endpoint} gave no commit for {repo}@{revision}"
        raise HubError(msg)
    card = getattr(info, "card_data", None)
    found = getattr(card, "license", None) if card is not None else None
    licence = " OR ".join(found) if isinstance(found, list) else str(found or "")
    return HubRepo(repo, info.sha, bool(info.gated), tuple(sorted(files, key=lambda f: f.path)), licence.strip())


def _names(files: tuple[HubFile, ...] | list[HubFile]) -> str:
    return ", ".join(f.path for f in files) or "none"


def _quant_of(name: str, quant: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9])", name, re.IGNORECASE) is not None


def choose(repo: HubRepo, spec: Spec) -> tuple[HubFile, ...]:
    """The model files ``spec`` means: the file named, or the one whose name carries the quantisation (as
    llama.cpp's ``-hf owner/repo:QUANT`` does); for a split GGUF, every part in order. Ambiguous or missing: the
    candidates are listed."""
    if spec.file is not None:
        chosen = repo.file(spec.file)
    else:
        models = [f for f in repo.files if not f.is_mmproj]
        whole = [f for f in models if not SPLIT.search(f.name) or "-00001-of-" in f.name]
        if spec.quant is None:
            if len(whole) != 1:
                msg = f"{repo.repo} has {len(whole)} GGUF models; add :QUANT or use hf://{repo.repo}/FILE: "
                raise HubError(msg + _names(whole))
            chosen = whole[0]
        else:
            matching = [f for f in whole if _quant_of(f.path, spec.quant)]
            if len(matching) != 1:
                if not matching:
                    msg = f"{repo.repo} has no {spec.quant} file; its GGUF files: {_names(models)}"
                else:
                    msg = f"{spec.quant} is ambiguous in {repo.repo}: {_names(matching)}; name one with hf://{repo.repo}/FILE"
                raise HubError(msg)
            chosen = matching[0]
    files = split_parts(repo, chosen) if SPLIT.search(chosen.name) else (chosen,)
    for item in files:
        if not re.fullmatch(SHA256_PATTERN, item.sha256):
            msg = f"the Hub gave no SHA-256 for {item.path} (not an LFS file?); pin it by hand"
            raise HubError(msg)
    return files


def split_parts(repo: HubRepo, one: HubFile) -> tuple[HubFile, ...]:
    """Every part of the split GGUF that ``one`` belongs to, in order; a missing part is an error."""
    match = SPLIT.search(one.path)
    assert match is not None
    stem = one.path[: match.start()]
    count = int(match.group(0).split("-of-")[1].removesuffix(".gguf"))
    by_path = {f.path: f for f in repo.files}
    wanted = [f"{stem}-{n:05d}-of-{count:05d}.gguf" for n in range(1, count + 1)]
    missing = [w for w in wanted if w not in by_path]
    if missing:
        msg = (
            f"{repo.repo} at {repo.commit[:12]} has {count - len(missing)} of the {count} parts of {stem}: "
            f"missing {', '.join(missing)}; llama.cpp needs every part (pick another quantisation, or a commit "
            "that has them all)"
        )
        raise HubError(msg)
    return tuple(by_path[w] for w in wanted)


def split_set(repo: HubRepo, part: str) -> tuple[HubFile, ...]:
    """Every part, in order, of the split GGUF that ``part`` (a part's path, from a catalog) belongs to, however
    many parts ``repo`` cuts it into now: a new revision may cut the same quantisation (the same stem) into more
    or fewer. A quantisation gone, now one unsplit file, or cut two ways at once is an error naming the fix."""
    match = SPLIT.search(part)
    if match is None:
        return (repo.file(part),)
    stem = part[: match.start()]
    pattern = re.compile(rf"{re.escape(stem)}-\d{{5}}-of-(\d{{5}})\.gguf")
    counts = sorted({int(m.group(1)) for f in repo.files if (m := pattern.fullmatch(f.path))})
    if len(counts) == 1:
        return split_parts(repo, HubFile(f"{stem}-00001-of-{counts[0]:05d}.gguf", "", 0))
    at = f"{repo.repo} at {repo.commit[:12]}"
    if counts:
        sets = ", ".join(f"{stem}-00001-of-{n:05d}.gguf" for n in counts)
        msg = f"{at} cuts {stem} into {' and into '.join(map(str, counts))} parts ({sets}); pin the parts by hand"
    elif any(f.path == f"{stem}.gguf" for f in repo.files):
        msg = f"{at} has {stem} as one file, {stem}.gguf: write `file: {stem}.gguf` in place of `parts`, then pin"
    else:
        msg = (
            f"{at} no longer has {stem} (no {stem}-0000i-of-0000N.gguf); its GGUF files: {_names(repo.files)}; "
            "pick another quantisation, or pin the model to an older commit"
        )
    raise HubError(msg)


def choose_mmproj(repo: HubRepo, name: str | None) -> HubFile | None:
    """The vision projector beside the model: the one named, the only one, or the F16 one among several."""
    if name is not None:
        return repo.file(name)
    projectors = [f for f in repo.files if f.is_mmproj]
    if len(projectors) <= 1:
        return projectors[0] if projectors else None
    f16 = [f for f in projectors if re.search(r"f16", f.name, re.IGNORECASE)]
    if len(f16) == 1:
        return f16[0]
    msg = f"{repo.repo} has several vision projectors: {_names(projectors)}; pick one with --mmproj FILE"
    raise HubError(msg)


def model_name(repo: str) -> str:
    """A target name from a repository: ``unsloth/gemma-3-4b-it-GGUF`` -> ``gemma-3-4b-it``."""
    base = repo.split("/", 1)[1]
    base = re.sub(r"[-_.]?gguf$", "", base, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9_-]+", "-", base.lower()).strip("-") or "model"
