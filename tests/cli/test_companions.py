"""compose and ci: settings land in the file and in its header's command, which writes it again; generate refreshes
the files it finds by their header."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from llama_bake.cli import main
from tests.cli.invoke import generate, run
from tests.conftest import MODEL, WriteCatalog, write_yaml


@pytest.mark.parametrize(
    ("provider", "settings"),
    [
        ("github", ["--runs-on", "gpu-runner", "--no-free-disk", "--model-cache", "registry=r.example/c"]),
        ("gitlab", ["--runner-tag", "gpu", "--runner-tag", "cuda 12", "--branch", "release", "--runner-disk", "50GB"]),
    ],
)
def test_ci_settings_land_in_the_file_and_its_header_command_writes_it_again(
    write_catalog: WriteCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str, settings: list[str]
) -> None:
    import shlex

    catalog = write_catalog()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / f"{provider}.yml"
    runner = CliRunner()
    result = runner.invoke(main, ["ci", provider, "-f", str(out), "--install", "llama-bake==9.9", *settings])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    data = yaml.safe_load(text)
    if provider == "github":
        for name in ("base", "models"):
            job = data["jobs"][name]
            assert not any(s.get("name") == "Free disk space for the build" for s in job["steps"])
            build = next(s["run"] for s in job["steps"] if s.get("name", "").startswith("Build the"))
            assert "--model-cache registry=r.example/c" in build
            assert "--base-cache gha" in build
        assert data["jobs"]["models"]["runs-on"] == "gpu-runner"
        assert "'gpu-runner'" in data["jobs"]["base"]["runs-on"], "amd64 bases on it, arm64 on the arm64 label"
    else:
        assert data[".llama-bake-build"]["tags"] == ["gpu", "cuda 12"]
        assert data["models-model-a"]["extends"] == ".llama-bake-build"
        assert '[ "$CI_COMMIT_BRANCH" = release ]' in data["models-model-a"]["script"][0]
    assert "install llama-bake==9.9" in text.replace("--break-system-packages ", "")
    command = text.splitlines()[1].removeprefix("# Regenerate with: ")
    again = runner.invoke(main, [*shlex.split(command)[1:], "--check"])
    assert again.exit_code == 0, f"{command}: {again.output}"
    assert catalog.exists()


def test_generate_refreshes_the_compose_and_ci_files_it_wrote_with_their_own_settings(
    write_catalog: WriteCatalog,
) -> None:
    catalog = write_catalog()
    root = catalog.parent
    assert run("compose", "-c", str(catalog)).exit_code == 0
    ci = ["ci", "gitlab", "-c", str(catalog), "--branch", "release", "--runner-tag", "gpu box", "--runner-disk", "50GB"]
    assert run(*ci).exit_code == 0
    gitlab = (root / ".gitlab-ci.yml").read_text()
    elsewhere = root / "ci" / "github.yml"
    assert run("ci", "github", "-c", str(catalog), "-f", str(elsewhere)).exit_code == 0
    write_yaml(catalog / "models" / "model-a.yaml", {**MODEL, "server": {"port": 9001}})
    stale = generate(catalog, "--check")
    assert stale.exit_code == 4
    assert "compose.yaml" in stale.output
    result = generate(catalog)
    assert result.exit_code == 0
    assert f"wrote: {root / 'compose.yaml'}" in result.output
    assert "9001" in (root / "compose.yaml").read_text()
    assert (root / ".gitlab-ci.yml").read_text() == gitlab, "unchanged, its --branch and --runner-tag kept"
    assert run(*ci, "--check").exit_code == 0
    assert "9001" not in elsewhere.read_text(), "only files at their default places are found"
    assert generate(catalog, "--check").exit_code == 0


def test_a_stale_compose_file_is_found_when_the_catalog_comes_from_the_environment(
    write_catalog: WriteCatalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header's own command names no --catalog (the default): $LLAMA_BAKE_CATALOG, relative to where the
    command runs, must not be read as the header's catalog, or the file would be skipped as another's."""
    write_catalog()
    monkeypatch.chdir(tmp_path.parent)
    monkeypatch.setenv("LLAMA_BAKE_CATALOG", f"{tmp_path.name}/catalog")
    assert run("compose").exit_code == 0
    compose = tmp_path / "compose.yaml"
    assert compose.read_text().splitlines()[1] == "# Regenerate with: llama-bake compose"
    compose.write_text(compose.read_text() + "# edited by hand\n")
    stale = run("generate", "--check")
    assert stale.exit_code == 4, stale.output
    assert "compose.yaml" in stale.output


def test_gitlabs_jobs_written_from_the_plan_go_stale_when_the_catalog_adds_a_model(write_catalog: WriteCatalog) -> None:
    """GitLab's jobs are static: the plan job's `generate --check` finds a pipeline that lacks a new model's job."""
    catalog = write_catalog()
    root = catalog.parent
    assert run("ci", "gitlab", "-c", str(catalog), "--runner-disk", "50GB").exit_code == 0
    assert generate(catalog).exit_code == 0  # the bake file, committed with the pipeline
    assert generate(catalog, "--check").exit_code == 0
    write_yaml(catalog / "models" / "model-b.yaml", MODEL)
    stale = generate(catalog, "--check")
    assert stale.exit_code == 4
    assert ".gitlab-ci.yml" in stale.output
    assert generate(catalog).exit_code == 0
    assert "models-model-b" in yaml.safe_load((root / ".gitlab-ci.yml").read_text())


def test_ci_gitlab_says_what_the_plan_warns_of(write_catalog: WriteCatalog) -> None:
    """GitLab's jobs are written from the plan: its warnings (here a CUDA base planned over the runner's disk) are
    said when the file is written, as `ci plan` says them."""
    catalog = write_catalog()
    done = run("ci", "gitlab", "-c", str(catalog), "--runner-disk", "20GB")
    assert done.exit_code == 0, done.output
    assert "warning: base " in done.output
    assert "is over the runner's 20.0 GB" in done.output
