"""CI job summaries: several ``build --summary-json`` files (one per job of a fan-out) -> one Markdown table, and
the models that did not build: failed, skipped, canceled, or with no result in any file (a job that died before
writing its summary), checked against ``ci plan``'s JSON. Pure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_bake.errors import UsageError

DONE = ("built", "cached")  # buildx.summary.DONE, as the summary file spells it


@dataclass(frozen=True)
class JobResult:
    """One job's summary file: its name (the file) and its JSON (None: the file is missing)."""

    name: str
    data: dict[str, Any] | None


def parse(name: str, text: str) -> JobResult:
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        msg = f"{name}: the build summary is not JSON: {exc}"
        raise UsageError(msg) from exc
    if not isinstance(data, dict):
        msg = f"{name}: not a `llama-bake build --summary-json` file"
        raise UsageError(msg)
    return JobResult(name, data)


def _targets(result: JobResult) -> list[dict[str, Any]]:
    targets = (result.data or {}).get("targets")
    return (
        [t for t in targets if isinstance(t, dict) and isinstance(t.get("name"), str)]
        if isinstance(targets, list)
        else []
    )


def combined_markdown(results: Sequence[JobResult]) -> str:
    """One file: as ``ci summary`` always printed it. Several: one table, a row per target and the job (file)
    it comes from, a target built in several jobs once (its finished row first), then the jobs with no file."""
    if len(results) == 1 and results[0].data is not None:
        return summary_markdown(results[0].data)
    rows = ["| target | status | image | digest | on base | job |", "| --- | --- | --- | --- | --- | --- |"]
    run = cached = 0
    for target, job in _best(results).values():
        cells = [target.get(k) or "" for k in ("name", "status", "image", "digest", "base_digest")]
        rows.append("| {} | {} | `{}` | `{}` | `{}` | ".format(*cells) + f"{job} |")
    for result in results:
        run += int((result.data or {}).get("steps_executed") or 0)
        cached += int((result.data or {}).get("steps_cached") or 0)
    missing = [r.name for r in results if r.data is None]
    lines = [f"{run} steps run, {cached} from the cache, in {len(results)} jobs."]
    if missing:
        lines.append(f"No summary from: {', '.join(missing)} (the job stopped before writing it).")
    return "### llama-bake images\n\n" + "\n".join(lines) + "\n\n" + "\n".join(rows) + "\n"


def _best(results: Sequence[JobResult]) -> dict[tuple[str, str], tuple[dict[str, Any], str]]:
    """Each target once per set of platforms (a base of several built one platform per job, then merged, has a
    row per platform's part and one for the index): a finished result wins over one that did not finish (a base
    built in one job and skipped in none), else the first seen."""
    best: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
    for result in results:
        for target in _targets(result):
            key = (target["name"], ",".join(map(str, target.get("platforms") or ())))
            if key not in best or (target.get("status") in DONE and best[key][0].get("status") not in DONE):
                best[key] = (target, result.name)
    return best


def not_built(results: Sequence[JobResult], plan: dict[str, Any] | None) -> list[str]:
    """Each target that did not finish, with its status, and (with the plan) each planned model or base that
    has no result in any file."""
    best = _best(results)
    problems = [
        f"{name} ({target.get('status') or 'no status'}, in {job})"
        for (name, _), (target, job) in best.items()
        if target.get("status") not in DONE
    ]
    names = {name for name, _ in best}
    if plan is not None:
        planned = [b.get("base") for b in plan.get("bases", []) if isinstance(b, dict)]
        planned += [t for job in plan.get("models", []) if isinstance(job, dict) for t in job.get("targets", [])]
        for name in dict.fromkeys(n for n in planned if isinstance(n, str)):
            if name not in names:
                problems.append(f"{name} (no result in any summary: its job stopped before writing one)")
    return problems


def summary_markdown(data: Any) -> str:
    """One job's ``llama-bake build --summary-json`` (or bake's metadata file), read, as a Markdown table."""
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
