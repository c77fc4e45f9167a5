"""Golden tests: the rendered HCL equals a reviewed file. Regenerate after a deliberate change with
``LLAMA_BAKE_UPDATE_GOLDEN=1 pytest tests/render/test_golden.py`` and review the diff."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from llama_bake.cli import main
from llama_bake.project import Paths, compile_catalog
from tests.conftest import REPO

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "catalog").is_dir())


def render_case(case: str, tmp_path: Path) -> str:
    shutil.copytree(GOLDEN / case / "catalog", tmp_path / "catalog")
    paths = Paths.from_options(tmp_path / "catalog", None)
    return compile_catalog(paths).text


@pytest.mark.parametrize("case", CASES)
def test_rendered_hcl_and_dockerfiles_equal_the_reviewed_files(case: str, tmp_path: Path) -> None:
    shutil.copytree(GOLDEN / case / "catalog", tmp_path / "catalog")
    compiled = compile_catalog(Paths.from_options(tmp_path / "catalog", None))
    files = {"docker-bake.hcl": compiled.text, **compiled.dockerfiles}
    if os.environ.get("LLAMA_BAKE_UPDATE_GOLDEN") == "1":
        shutil.rmtree(GOLDEN / case / "dockerfiles", ignore_errors=True)
        for name, text in files.items():
            (GOLDEN / case / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / case / name).write_text(text, encoding="utf-8")
    for name, text in files.items():
        assert text == (GOLDEN / case / name).read_text(encoding="utf-8"), name
    on_disk = sorted(p.relative_to(GOLDEN / case).as_posix() for p in (GOLDEN / case / "dockerfiles").iterdir())
    assert on_disk == sorted(compiled.dockerfiles)


def test_the_repository_bake_file_is_fresh() -> None:
    """The committed docker-bake.hcl is what the shipped catalog gives (`llama-bake generate --check`)."""
    result = CliRunner().invoke(
        main, ["generate", "--check", "-c", str(REPO / "catalog"), "-b", str(REPO / "docker-bake.hcl")]
    )
    assert result.exit_code == 0, result.output


def test_families_case_has_the_cmake_architectures_of_each_family(tmp_path: Path) -> None:
    text = render_case("families", tmp_path)
    for arch in (
        "70-real",
        "75-real",
        "80-real",
        "86-real",
        "89-real",
        "90-real",
        "100-real",
        "120a-real",
        "121a-real",
    ):
        assert f"-DCMAKE_CUDA_ARCHITECTURES={arch} " in text


GENERATED = ("compose.yaml", "github.yml", "gitlab.yml", "graph.txt", "graph.mmd", "graph.dot")
# The families case is a CMake-line case: its models all publish port 8080, which Compose refuses.
GENERATED_CASES = ["multi", "vulkan"]


def generated_files(case: str, root: Path) -> dict[str, str]:
    """Every file llama-bake writes besides the bake file, for one golden case, as the CLI writes them."""
    shutil.copytree(GOLDEN / case / "catalog", root / "catalog", dirs_exist_ok=True)
    runner = CliRunner()
    out: dict[str, str] = {}
    commands = {
        "compose.yaml": ["compose", "-c", str(root / "catalog"), "-f", str(root / "compose.yaml")],
        "github.yml": ["ci", "github", "-c", str(root / "catalog"), "-f", str(root / "github.yml")],
        "gitlab.yml": [
            "ci",
            "gitlab",
            "-c",
            str(root / "catalog"),
            "-f",
            str(root / "gitlab.yml"),
            "--install",
            "llama-bake==1.0",
            "--runner-disk",
            "50GB",
        ],
    }
    for name, argv in commands.items():
        if name == "github.yml":
            argv = [*argv, "--install", "llama-bake==1.0"]
        result = runner.invoke(main, argv)
        assert result.exit_code == 0, result.output
        out[name] = (root / name).read_text(encoding="utf-8")
    # The Kubernetes manifests, with the digests a build's summary reported.
    shutil.copy(GOLDEN / case / "summary.json", root / "summary.json")
    result = runner.invoke(main, ["kube", "-c", str(root / "catalog"), "--summary", str(root / "summary.json")])
    assert result.exit_code == 0, result.output
    out |= {f"kube/{p.name}": p.read_text(encoding="utf-8") for p in sorted((root / "kube").iterdir())}
    for name, fmt in (("graph.txt", "text"), ("graph.mmd", "mermaid"), ("graph.dot", "dot")):
        result = runner.invoke(main, ["graph", "-c", str(root / "catalog"), "--format", fmt])
        assert result.exit_code == 0, result.output
        out[name] = result.stdout
    return out


@pytest.mark.parametrize("case", GENERATED_CASES)
def test_generated_compose_ci_and_graph_equal_the_reviewed_files(case: str, tmp_path: Path) -> None:
    files = generated_files(case, tmp_path)
    assert set(GENERATED) <= set(files)
    if os.environ.get("LLAMA_BAKE_UPDATE_GOLDEN") == "1":
        shutil.rmtree(GOLDEN / case / "kube", ignore_errors=True)
        for name, text in files.items():
            (GOLDEN / case / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / case / name).write_text(text, encoding="utf-8")
    for name, text in files.items():
        assert text == (GOLDEN / case / name).read_text(encoding="utf-8"), name
    on_disk = sorted(f"kube/{p.name}" for p in (GOLDEN / case / "kube").iterdir())
    assert on_disk == sorted(n for n in files if n.startswith("kube/"))


@pytest.mark.parametrize("case", GENERATED_CASES)
def test_generated_files_are_byte_identical_run_to_run_and_say_how_to_regenerate(case: str, tmp_path: Path) -> None:
    first = generated_files(case, tmp_path / "a")
    second = generated_files(case, tmp_path / "b")
    assert first == second
    assert first["compose.yaml"].splitlines()[1] == "# Regenerate with: llama-bake compose"
    assert first["github.yml"].splitlines()[1].startswith("# Regenerate with: llama-bake ci github")
    for name in (n for n in first if n.startswith("kube/")):
        assert first[name].splitlines()[1] == "# Regenerate with: llama-bake kube --summary summary.json", name


SCHEMAS = {
    "compose.yaml": "vendor.compose-spec",
    "github.yml": "vendor.github-workflows",
    "gitlab.yml": "vendor.gitlab-ci",
}


@pytest.mark.tools
@pytest.mark.parametrize("case", GENERATED_CASES)
def test_the_generated_github_workflow_passes_actionlint(case: str) -> None:
    if shutil.which("actionlint") is None:
        pytest.fail("actionlint is not installed: run .ci/install-tools.sh")
    result = subprocess.run(
        ["actionlint", "-no-color", str(GOLDEN / case / "github.yml")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.tools
@pytest.mark.parametrize("case", GENERATED_CASES)
def test_generated_files_pass_their_published_json_schemas(case: str) -> None:
    for name, schema in SCHEMAS.items():
        result = subprocess.run(
            ["check-jsonschema", "--builtin-schema", schema, str(GOLDEN / case / name)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


@pytest.mark.tools
def test_the_projects_own_ci_workflow_passes_actionlint() -> None:
    if shutil.which("actionlint") is None:
        pytest.fail("actionlint is not installed: run .ci/install-tools.sh")
    result = subprocess.run(
        ["actionlint", "-no-color", str(REPO / ".github" / "workflows" / "ci.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
