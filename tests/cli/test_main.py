"""The command group: errors and their exit codes, a fast --help, fixes that point where the user can act."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from llama_bake.cli import main


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--debug", "generate", "--catalog", str(tmp_path / "none")])
    assert result.exception is not None
    assert type(result.exception).__name__ == "CatalogError"


@pytest.mark.tools
def test_help_imports_none_of_the_pipelines_heavy_dependencies() -> None:
    """`--help` and every command's parser stay fast: pydantic, Jinja, YAML and python-on-whales load on use."""
    probe = (
        "import sys; from llama_bake.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(','.join(m for m in ('pydantic', 'jinja2', 'yaml', 'python_on_whales') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == ""


def test_the_fixes_llama_bake_prints_never_point_into_its_own_repository() -> None:
    """A pip-installed user has no .ci/ or tests/: every hint names a package, a release page or a command."""
    import llama_bake

    package = Path(llama_bake.__file__).parent
    for source in package.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert ".ci/" not in text, source.name
        assert "install-tools" not in text, source.name
