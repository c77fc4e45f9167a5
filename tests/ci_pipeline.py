"""A generated CI pipeline run as its provider runs it: its jobs in order, each matrix entry a job of its own,
each job in its own checkout (a copy of the project) on its own empty builder (its own buildkitd and state
directory, stopped after the job), sharing only what the jobs share on a provider: the registry, the cache
backend, the artifacts and the job outputs.

What the runner image or the provider sets up (Python, llama-bake, buildx, the login, QEMU) is not run: the test's
venv, the job's builder and a registry without a login stand in for it. Every ``${{ }}`` expression the
workflow uses must be one this runner knows, so a new one fails the test instead of running as text.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llama_bake.render.ci_gitlab import QEMU
from tests.statedirs import state_dir

# GitHub steps the provider or the runner image does; the test's venv and the job's own builder stand in for them.
SETUP_ACTIONS = (
    "actions/setup-python",
    "docker/setup-buildx-action",
    "docker/setup-qemu-action",
    "docker/login-action",
    "crazy-max/ghaction-github-runtime",
    "actions/checkout",  # the job's directory is a fresh copy of the project
)
SETUP_STEPS = ("Free disk space for the build", "Install llama-bake")
# GitLab script lines the runner's set-up does here: the machine's binfmt_misc registration stands in for QEMU's.
GITLAB_SETUP_LINES = (QEMU,)
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
MATRIX = re.compile(r"\$\{\{ fromJSON\(needs\.(\w+)\.outputs\.(\w+)\) \}\}")


@dataclass
class Job:
    name: str  # the plan's job name (a matrix entry) or the job's key
    returncode: int = 0
    output: str = ""
    workdir: Path = Path()
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return not self.skipped and self.returncode == 0

    def summary(self) -> dict[str, Any]:
        """The job's ``--summary-json``."""
        return dict(json.loads((self.workdir / f"llama-bake-summary-{self.name}.json").read_text()))


@contextmanager
def own_builder(env: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """A buildkitd of its own, as on a fresh runner: ``llama-bake builder up`` with its own state directory and
    builder name; stopped and removed after the job."""
    state = state_dir("lb-job-")  # short: unix socket paths are limited
    job_env = {**env, "LLAMA_BAKE_STATE_DIR": str(state), "LLAMA_BAKE_BUILDER": f"lb-{state.name}"}
    up = subprocess.run(["llama-bake", "builder", "up"], env=job_env, capture_output=True, text=True, check=False)
    assert up.returncode == 0, up.stderr
    try:
        yield job_env
    finally:
        subprocess.run(["llama-bake", "builder", "down"], env=job_env, capture_output=True, check=False)
        shutil.rmtree(state, ignore_errors=True)


@dataclass
class PipelineRun:
    """One run of ``document`` (the generated file, loaded) for ``provider`` from the project at ``root``."""

    provider: str
    document: dict[str, Any]
    root: Path
    work: Path
    env: dict[str, str]  # what the provider sets: GitHub's PUBLISH and git values, GitLab's CI_* variables
    jobs: dict[str, Job] = field(default_factory=dict)
    # How each job ran, to run it again: (its key, matrix entry) on GitHub, the jobs it took artifacts from on GitLab.
    ran: dict[str, tuple[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)  # set last in a job's environment
    artifacts: dict[str, list[Path]] = field(default_factory=dict)  # artifact (GitHub) or job (GitLab) -> files

    def _shell(self, script: str, workdir: Path, env: Mapping[str, str]) -> tuple[int, str]:
        done = subprocess.run(
            ["bash", "-c", "set -eu\n" + script],
            cwd=workdir,
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
        return done.returncode, done.stdout + done.stderr

    def _checkout(self, name: str) -> Path:
        workdir = self.work / name
        shutil.copytree(self.root, workdir, symlinks=True)
        return workdir

    def _keep(self, key: str, workdir: Path, patterns: list[str]) -> None:
        kept = self.work / "artifacts" / key
        kept.mkdir(parents=True, exist_ok=True)
        for pattern in patterns:
            for path in workdir.glob(pattern):
                shutil.copy2(path, kept / path.name)
        self.artifacts[key] = sorted(kept.iterdir())

    def _fetch(self, keys: list[str], workdir: Path) -> None:
        for key in keys:
            for path in self.artifacts.get(key, []):
                shutil.copy2(path, workdir / path.name)

    # --- GitHub Actions -------------------------------------------------------------------------------------

    def _github_resolver(self, entry: Mapping[str, Any], needs: Mapping[str, Any]) -> Any:
        """What the runner makes of the ``${{ }}`` expressions in a job's env and its steps' inputs."""
        known = {f"matrix.{key}": str(value) for key, value in entry.items() if not isinstance(value, list)}
        known |= {f"join(matrix.{key}, ' ')": " ".join(v) for key, v in entry.items() if isinstance(v, list)}
        known |= {f"join(matrix.{key}, ', ')": ", ".join(v) for key, v in entry.items() if isinstance(v, list)}
        for name, outputs in needs.items():
            known |= {f"needs.{name}.outputs.{key}": value for key, value in outputs.items()}
        known["secrets.HF_TOKEN"] = ""

        def value(match: re.Match[str]) -> str:
            assert match.group(1) in known, f"the test runner does not know `{match.group(0)}`"
            return known[match.group(1)]

        return lambda text: EXPRESSION.sub(value, str(text))

    def _github_job(
        self, key: str, entry: Mapping[str, Any], outputs: dict[str, dict[str, str]], checkout: str | None = None
    ) -> Job:
        spec = self.document["jobs"][key]
        name = entry.get("job", key)
        workdir = self._checkout(checkout or name)
        step_summary = workdir.parent / f"{workdir.name}.step-summary.md"
        github_output = workdir.parent / f"{workdir.name}.output"
        resolve = self._github_resolver(entry, outputs)
        env = {**os.environ, **self.env, **{k: resolve(v) for k, v in spec.get("env", {}).items()}, **self.overrides}
        env |= {"GITHUB_STEP_SUMMARY": str(step_summary), "GITHUB_OUTPUT": str(github_output)}
        builds = any(s.get("uses", "").startswith("docker/setup-buildx-action") for s in spec["steps"])
        job = Job(name, workdir=workdir)
        self.ran[name] = (key, entry)
        with own_builder(env) if builds else _no_builder(env) as job_env:
            for step in spec["steps"]:
                uses = step.get("uses", "")
                if uses.startswith(SETUP_ACTIONS) or step.get("name") in SETUP_STEPS:
                    continue  # the test's venv and the job's builder stand in for them
                if not self._github_runs(step, job, job_env):
                    continue
                if uses.startswith("actions/upload-artifact"):
                    self._keep(resolve(step["with"]["name"]), workdir, [resolve(step["with"]["path"])])
                elif uses.startswith("actions/download-artifact"):
                    pattern = step["with"].get("pattern", "*")
                    self._fetch([k for k in self.artifacts if fnmatch.fnmatch(k, pattern)], workdir)
                else:
                    assert "run" in step, f"the test runner does not know the step {step}"
                    code, out = self._shell(step["run"], workdir, job_env)
                    job.output += out
                    job.returncode = job.returncode or code
        if github_output.exists():
            lines = github_output.read_text().splitlines()
            outputs[key] = dict(line.split("=", 1) for line in lines if "=" in line)
        if checkout is None:
            self.jobs[name] = job
        return job

    def _github_runs(self, step: dict[str, Any], job: Job, env: Mapping[str, str]) -> bool:
        condition = step.get("if", "")
        if condition == "${{ always() }}":
            return True
        if job.returncode:
            return False
        if condition == "env.PUBLISH == 'true'":
            return env.get("PUBLISH") == "true"
        assert not condition, f"the test runner does not know the condition {condition!r}"
        return True

    def _github_job_runs(self, spec: dict[str, Any], results: Mapping[str, str]) -> bool:
        """Whether a job runs, by its ``if`` and how the jobs it needs ended (success, failure or skipped)."""
        needs = spec.get("needs", [])
        needs = [needs] if isinstance(needs, str) else needs
        ended = [results.get(n, "skipped") for n in needs]
        condition = spec.get("if", "")
        if condition == "${{ always() && needs.plan.result == 'success' }}":
            return results.get("plan") == "success"
        if condition == "${{ !cancelled() && !failure() }}":
            return "failure" not in ended and results.get("plan") == "success"
        merges = re.fullmatch(r"\$\{\{ needs\.(\w+)\.outputs\.(\w+) != '\[\]' \}\}", condition)
        if merges:  # and, as any `if` without a status function, success() of every job it needs
            return all(e == "success" for e in ended) and json.loads(self.outputs[merges[1]][merges[2]]) != []
        assert not condition, condition
        return all(e == "success" for e in ended)

    def run_github(self) -> None:
        outputs = self.outputs
        results: dict[str, str] = {}
        for key, spec in self.document["jobs"].items():
            include = spec.get("strategy", {}).get("matrix", {}).get("include")
            matrix = MATRIX.fullmatch(include) if include else None
            if not self._github_job_runs(spec, results):
                planned = outputs.get(matrix.group(1), {}).get(matrix.group(2), "[{}]") if matrix else "[{}]"
                entries = json.loads(planned)
                for entry in entries:
                    self.jobs[entry.get("job", key)] = Job(entry.get("job", key), skipped=True)
                results[key] = "skipped"
                continue
            entries = json.loads(outputs[matrix.group(1)][matrix.group(2)]) if matrix else [{}]
            done = [self._github_job(key, entry, outputs) for entry in entries]
            results[key] = "success" if all(job.ok for job in done) else "failure"

    # --- GitLab CI ------------------------------------------------------------------------------------------

    def _gitlab_spec(self, key: str) -> dict[str, Any]:
        spec = dict(self.document[key])
        parent = spec.pop("extends", None)
        if parent is None:
            return spec
        base = self._gitlab_spec(parent)
        return base | spec | {"variables": {**base.get("variables", {}), **spec.get("variables", {})}}

    def _gitlab_job(self, key: str, env: Mapping[str, str], needs: list[str], checkout: str | None = None) -> Job:
        spec = self._gitlab_spec(key)
        workdir = self._checkout(checkout or key)
        self._fetch(needs, workdir)
        variables = {
            name: re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), str(value))
            for name, value in spec.get("variables", {}).items()
        }
        job = Job(key, workdir=workdir)
        self.ran[key] = (key, needs)
        job_env = {**env, **variables, **self.overrides}
        builds = spec.get("image", "").startswith("docker")
        with own_builder(job_env) if builds else _no_builder(job_env) as job_env:
            script = [line for line in spec["script"] if line not in GITLAB_SETUP_LINES]
            job.returncode, job.output = self._shell("\n".join(script), workdir, job_env)
            _, after = self._shell("\n".join(spec.get("after_script", [])), workdir, job_env)
            job.output += after
        artifacts = spec.get("artifacts", {})
        if checkout is None and (job.ok or artifacts.get("when") == "always"):
            self._keep(key, workdir, artifacts.get("paths", []))
        if checkout is None:
            self.jobs[key] = job
        return job

    def run_gitlab(self) -> None:
        env = {**os.environ, **self.env}
        keys = [k for k, v in self.document.items() if isinstance(v, dict) and not k.startswith(".")]
        for stage in self.document["stages"]:
            earlier = list(self.jobs)
            for key in (k for k in keys if self._gitlab_spec(k)["stage"] == stage):
                spec = self._gitlab_spec(key)
                if "needs" in spec:
                    needs = [n if isinstance(n, str) else n["job"] for n in spec["needs"]]
                    fetch = [
                        n if isinstance(n, str) else n["job"]
                        for n in spec["needs"]
                        if isinstance(n, str) or n.get("artifacts", True)
                    ]
                else:
                    needs, fetch = earlier, earlier
                if spec.get("when") != "always" and not all(self.jobs[n].ok for n in needs):
                    self.jobs[key] = Job(key, skipped=True)
                    continue
                self._gitlab_job(key, env, fetch)

    def run_again(self, name: str, workdir: str, overrides: Mapping[str, str]) -> Job:
        """Job ``name`` once more, in a new checkout named ``workdir`` on a new builder, with ``overrides`` set
        last in its environment (a pipeline variable, or a runner of another size)."""
        key, how = self.ran[name]
        self.overrides = dict(overrides)
        try:
            if self.provider == "github":
                return self._github_job(key, how, self.outputs, checkout=workdir)
            return self._gitlab_job(key, {**os.environ, **self.env}, how, checkout=workdir)
        finally:
            self.overrides = {}

    def run(self) -> PipelineRun:
        self.work.mkdir(parents=True, exist_ok=True)
        if self.provider == "github":
            self.run_github()
        else:
            self.run_gitlab()
        return self


@contextmanager
def _no_builder(env: Mapping[str, str]) -> Iterator[dict[str, str]]:
    yield dict(env)


def job_shell(
    provider: str, document: dict[str, Any], job: str, entry: Mapping[str, Any], outputs: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    """One job's own shell steps (what runs after its set-up, the steps that always run left out) and the
    environment its definition sets, for the matrix ``entry`` and the plan job's ``outputs``."""
    if provider == "github":
        run = PipelineRun(provider, document, Path(), Path(), {})
        resolve = run._github_resolver(entry, {"plan": outputs})
        spec = document["jobs"][job]
        steps = [s["run"] for s in spec["steps"] if "run" in s and "if" not in s and s.get("name") not in SETUP_STEPS]
        return "\n".join(steps), {k: resolve(v) for k, v in spec.get("env", {}).items()}
    spec = PipelineRun(provider, document, Path(), Path(), {})._gitlab_spec(job)
    return "\n".join(spec["script"]), {k: str(v) for k, v in spec.get("variables", {}).items()}
