"""`llama-bake add`, `pin` and `init` against a stand-in Hub on 127.0.0.1 (huggingface_hub does the talking)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from llama_bake.cli import main
from tests.conftest import BASE, write_yaml
from tests.hub import StandInHub

pytestmark = pytest.mark.hub

REPO = "acme/Tiny-Model-GGUF"
FILES = {
    "tiny-Q4_K_M.gguf": b"GGUF q4 weights",
    "tiny-Q8_0.gguf": b"GGUF q8 weights",
    "mmproj-tiny-f16.gguf": b"GGUF projector f16",
    "mmproj-tiny-q8_0.gguf": b"GGUF projector q8",
}


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInHub]:
    server = StandInHub()
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # no saved login of the machine's user
    yield server
    server.close()


@pytest.fixture
def catalog(tmp_path: Path, hub: StandInHub) -> Path:
    root = tmp_path / "catalog"
    write_yaml(root / "project.yaml", {"hf_endpoint": hub.endpoint})
    write_yaml(root / "bases" / "llama-cpp-cuda.yaml", BASE)
    (root / "models").mkdir()
    return root


CARD_LICENSE = 'license: "apache-2.0"  # the Hub\'s model card\n'


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_add_by_quantisation_pins_the_commit_the_file_and_the_vision_projector(hub: StandInHub, catalog: Path) -> None:
    commit = hub.commit(REPO, FILES)
    result = run("add", "-c", str(catalog), f"{REPO}:Q4_K_M")
    assert result.exit_code == 0, result.output
    written = catalog / "models" / "tiny-model.yaml"
    data = yaml.safe_load(written.read_text())
    assert data["weights"] == {
        "hf": REPO,
        "file": "tiny-Q4_K_M.gguf",
        "revision": commit,
        "sha256": sha(FILES["tiny-Q4_K_M.gguf"]),
        "size": len(FILES["tiny-Q4_K_M.gguf"]),
    }
    assert data["mmproj"]["file"] == "mmproj-tiny-f16.gguf", "of two projectors, the F16 one"
    assert data["mmproj"]["sha256"] == sha(FILES["mmproj-tiny-f16.gguf"])
    assert run("validate", "-c", str(catalog), "--strict").exit_code == 0
    assert run("generate", "-c", str(catalog)).exit_code == 0
    again = run("add", "-c", str(catalog), f"{REPO}:Q8_0")
    assert again.exit_code == 2
    assert "exists; pass --name" in again.output
    assert yaml.safe_load(written.read_text()) == data, "never overwritten"


def test_add_by_file_with_settings(hub: StandInHub, catalog: Path) -> None:
    commit = hub.commit(REPO, FILES)
    argv = ["add", "-c", str(catalog), f"hf://{REPO}/tiny-Q8_0.gguf", "--name", "tiny-q8", "--no-mmproj"]
    result = run(*argv, "--delivery", "fetch", "--ctx-size", "4096")
    assert result.exit_code == 0, result.output
    data = yaml.safe_load((catalog / "models" / "tiny-q8.yaml").read_text())
    assert data["weights"]["revision"] == commit
    assert "mmproj" not in data
    assert (data["delivery"], data["server"]) == ("fetch", {"ctx_size": 4096})


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        (f"{REPO}:Q4_K", "Q4_K is ambiguous in acme/Tiny-Model-GGUF: tiny-Q4_K.gguf, tiny-Q4_K_M.gguf"),
        (f"{REPO}:Q2_K", "has no Q2_K file; its GGUF files: tiny-Q4_K.gguf, tiny-Q4_K_M.gguf"),
        (REPO, "has 2 GGUF models; add :QUANT"),
        (f"hf://{REPO}/nope.gguf", "has no file 'nope.gguf'"),
        ("acme/missing:Q4_K_M", "acme/missing was not found on"),
        ("not a spec", "write hf://OWNER/REPO/FILE.gguf, or OWNER/REPO:QUANT"),
    ],
)
def test_add_names_the_candidates_when_the_choice_is_not_one_file(
    hub: StandInHub, catalog: Path, spec: str, said: str
) -> None:
    hub.commit(REPO, {"tiny-Q4_K.gguf": b"a", "tiny-Q4_K_M.gguf": b"b"})
    result = run("add", "-c", str(catalog), spec)
    assert result.exit_code == 9, result.output
    assert said in result.output
    assert list((catalog / "models").iterdir()) == []


def test_a_gated_repository_needs_the_token_and_is_marked_gated(
    hub: StandInHub, catalog: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hub.commit("meta/Gated-GGUF", {"g-Q4_K_M.gguf": b"gated"}, gated=True)
    refused = run("add", "-c", str(catalog), "meta/Gated-GGUF:Q4_K_M")
    assert refused.exit_code == 9
    assert "is gated: set HF_TOKEN" in refused.output
    monkeypatch.setenv("HF_TOKEN", hub.token)
    result = run("add", "-c", str(catalog), "meta/Gated-GGUF:Q4_K_M")
    assert result.exit_code == 0, result.output
    text = (catalog / "models" / "gated.yaml").read_text()
    assert yaml.safe_load(text)["weights"]["gated"] is True
    generated = catalog.parent / "docker-bake.hcl"
    assert run("generate", "-c", str(catalog)).exit_code == 0
    for path in [*catalog.rglob("*.yaml"), generated, *(catalog.parent / "dockerfiles").iterdir()]:
        assert hub.token not in path.read_text(), f"the token reached {path}"


def test_the_hub_unreachable_is_a_clear_error(catalog: Path) -> None:
    write_yaml(catalog / "project.yaml", {"hf_endpoint": "http://127.0.0.1:9"})
    result = run("add", "-c", str(catalog), f"{REPO}:Q4_K_M")
    assert result.exit_code == 9
    assert "cannot reach http://127.0.0.1:9 for acme/Tiny-Model-GGUF" in result.output
    assert "Traceback" not in result.output


PLACEHOLDER_FILE = """\
# Our chat model. Keep this comment.
description: tiny chat   # trailing comment
weights:
  hf: acme/Tiny-Model-GGUF
  file: tiny-Q4_K_M.gguf
  revision: "0000000000000000000000000000000000000000"   # placeholder
  sha256: '0000000000000000000000000000000000000000000000000000000000000000'

# projector below
mmproj:
  hf: acme/Tiny-Model-GGUF
  file: mmproj-tiny-f16.gguf
  revision: main
server:
  ctx_size: 8192
"""


def test_pin_fills_placeholders_and_branch_names_and_changes_nothing_else(hub: StandInHub, catalog: Path) -> None:
    commit = hub.commit(REPO, FILES)
    path = catalog / "models" / "chat.yaml"
    path.write_text(PLACEHOLDER_FILE)
    assert run("validate", "-c", str(catalog)).exit_code == 8, "a branch name is never a build input"
    result = run("pin", "-c", str(catalog))
    assert result.exit_code == 0, result.output
    assert f'+  revision: "{commit}"   # placeholder' in result.output
    expected = (
        PLACEHOLDER_FILE.replace('"0000000000000000000000000000000000000000"', f'"{commit}"')
        .replace("'" + "0" * 64 + "'", "'" + sha(FILES["tiny-Q4_K_M.gguf"]) + "'")
        .replace("'\n\n# projector", f"'\n  size: {len(FILES['tiny-Q4_K_M.gguf'])}\n\n# projector")
        .replace(
            "  revision: main\n",
            f'  revision: "{commit}"\n  sha256: "{sha(FILES["mmproj-tiny-f16.gguf"])}"\n'
            f"  size: {len(FILES['mmproj-tiny-f16.gguf'])}\n",
        )
    ) + CARD_LICENSE  # the model card's license, for a file that names none
    assert path.read_text() == expected
    assert run("validate", "-c", str(catalog), "--strict").exit_code == 0
    again = run("pin", "-c", str(catalog))
    assert "nothing changed" in again.output
    assert path.read_text() == expected


def test_pin_update_moves_a_pinned_model_to_the_new_commit(hub: StandInHub, catalog: Path) -> None:
    hub.commit(REPO, FILES)
    assert run("add", "-c", str(catalog), f"{REPO}:Q4_K_M", "--no-mmproj").exit_code == 0
    path = catalog / "models" / "tiny-model.yaml"
    before = path.read_text()
    newer = hub.commit(REPO, {**FILES, "tiny-Q4_K_M.gguf": b"GGUF q4 weights, requantised"})
    assert "nothing changed" in run("pin", "-c", str(catalog), "tiny-model").output, "pinned: left alone"
    assert path.read_text() == before
    result = run("pin", "-c", str(catalog), "tiny-model", "--update")
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(path.read_text())
    assert data["weights"]["revision"] == newer
    assert data["weights"]["sha256"] == sha(b"GGUF q4 weights, requantised")
    assert data["weights"]["size"] == len(b"GGUF q4 weights, requantised")
    assert before.splitlines()[:2] == path.read_text().splitlines()[:2], "the header comment stays"
    unknown = run("pin", "-c", str(catalog), "nope")
    assert unknown.exit_code == 2
    assert "no model file for nope" in unknown.output


def test_init_starts_a_catalog_that_generates(tmp_path: Path) -> None:
    result = run("init", str(tmp_path / "proj"), "--gpu", "ada", "--gpu", "blackwell-consumer")
    assert result.exit_code == 0, result.output
    catalog = tmp_path / "proj" / "catalog"
    base = yaml.safe_load((catalog / "bases" / "llama-cpp-cuda.yaml").read_text())
    assert base["gpu_families"] == ["ada", "blackwell-consumer"]
    assert run("generate", "-c", str(catalog)).exit_code == 0
    assert run("init", str(tmp_path / "proj"), "--gpu", "ada").exit_code == 2, "an existing catalog stays"
    bad = run("init", str(tmp_path / "other"), "--gpu", "Voodoo 5")
    assert bad.exit_code == 2, bad.output
    assert "--gpu 'Voodoo 5': not a family llama-bake knows. Known: volta" in bad.output
    assert "bases/" not in bad.output, "no line of a file the user never wrote"
    assert not (tmp_path / "other" / "catalog").exists()


def test_init_takes_the_card_names_people_type_and_says_which_family(tmp_path: Path) -> None:
    result = run("init", str(tmp_path / "proj"), "--gpu", "RTX 4090", "--gpu", "GeForce RTX 5090", "--gpu", "8.9")
    assert result.exit_code == 0, result.output
    base = yaml.safe_load((tmp_path / "proj" / "catalog" / "bases" / "llama-cpp-cuda.yaml").read_text())
    assert base["gpu_families"] == ["ada", "blackwell-consumer"], "each family once, in the order given"
    assert "the CUDA base compiles for: ada (RTX 40, L4, L40S, RTX 6000 Ada), blackwell-consumer" in result.output


def test_init_writes_a_cuda_version_every_chosen_family_accepts(tmp_path: Path) -> None:
    # GB10 needs CUDA 12.9; the default 12.8.1 would give a catalog its own check rejects.
    result = run("init", str(tmp_path / "spark"), "--gpu", "gb10")
    assert result.exit_code == 0, result.output
    catalog = tmp_path / "spark" / "catalog"
    base = yaml.safe_load((catalog / "bases" / "llama-cpp-cuda.yaml").read_text())
    assert base["cuda"] == "12.9.1"
    assert run("generate", "-c", str(catalog)).exit_code == 0
    ada = run("init", str(tmp_path / "ada"), "--gpu", "ada")
    assert ada.exit_code == 0, ada.output
    ada_base = tmp_path / "ada" / "catalog" / "bases" / "llama-cpp-cuda.yaml"
    assert yaml.safe_load(ada_base.read_text())["cuda"] == "12.8.1", "the default stays where it suffices"


def test_init_reads_the_cards_from_nvidia_smi() -> None:
    from llama_bake.catalog.edits import detect_families

    assert detect_families(lambda argv: "8.9\n12.0\n8.9\n") == ["ada", "blackwell-consumer"]
    assert detect_families(lambda argv: "") == []


SPLIT_FILES = {
    "Q4_K_M/big-Q4_K_M-00001-of-00003.gguf": b"GGUF part one",
    "Q4_K_M/big-Q4_K_M-00002-of-00003.gguf": b"part two",
    "Q4_K_M/big-Q4_K_M-00003-of-00003.gguf": b"part three, the last",
    "big-Q8_0.gguf": b"GGUF q8, one file",
}
SPLIT_PARTS = sorted(f for f in SPLIT_FILES if f.startswith("Q4_K_M/"))


@pytest.mark.parametrize("spec", ["acme/Big-GGUF:Q4_K_M", "hf://acme/Big-GGUF/Q4_K_M/big-Q4_K_M-00001-of-00003.gguf"])
def test_add_pins_every_part_of_a_split_model_in_order(hub: StandInHub, catalog: Path, spec: str) -> None:
    commit = hub.commit("acme/Big-GGUF", SPLIT_FILES)
    result = run("add", "-c", str(catalog), spec)
    assert result.exit_code == 0, result.output
    assert "3 parts" in result.output
    data = yaml.safe_load((catalog / "models" / "big.yaml").read_text())
    assert data["weights"] == {
        "hf": "acme/Big-GGUF",
        "revision": commit,
        "parts": [{"file": f, "sha256": sha(SPLIT_FILES[f]), "size": len(SPLIT_FILES[f])} for f in SPLIT_PARTS],
    }
    assert run("validate", "-c", str(catalog), "--strict").exit_code == 0
    assert run("generate", "-c", str(catalog)).exit_code == 0
    dockerfile = (catalog.parent / "dockerfiles" / "big.Dockerfile").read_text()
    adds = [line for line in dockerfile.splitlines() if line.startswith("ADD --link")]
    assert len(adds) == 3, "each part is its own verified layer"
    bake = (catalog.parent / "docker-bake.hcl").read_text()
    assert f'"/models/{SPLIT_PARTS[0].split("/")[1]}"' in bake, "llama-server loads the first part"


def test_add_refuses_a_split_model_with_a_missing_part(hub: StandInHub, catalog: Path) -> None:
    hub.commit("acme/Big-GGUF", {k: v for k, v in SPLIT_FILES.items() if "00002" not in k})
    result = run("add", "-c", str(catalog), "acme/Big-GGUF:Q4_K_M")
    assert result.exit_code == 9, result.output
    assert "has 2 of the 3 parts of Q4_K_M/big-Q4_K_M: missing Q4_K_M/big-Q4_K_M-00002-of-00003.gguf" in result.output
    assert list((catalog / "models").iterdir()) == []


def test_pin_fills_and_moves_every_part_of_a_split_model(hub: StandInHub, catalog: Path) -> None:
    commit = hub.commit("acme/Big-GGUF", SPLIT_FILES)
    parts = "".join(f"    - file: {f}\n      sha256: '{'0' * 64}'\n" for f in SPLIT_PARTS)
    path = catalog / "models" / "big.yaml"
    path.write_text(f"weights:\n  hf: acme/Big-GGUF\n  revision: main  # follows main\n  parts:\n{parts}")
    result = run("pin", "-c", str(catalog))
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(path.read_text())
    assert data["weights"]["revision"] == commit
    assert [p["sha256"] for p in data["weights"]["parts"]] == [sha(SPLIT_FILES[f]) for f in SPLIT_PARTS]
    assert [p["size"] for p in data["weights"]["parts"]] == [len(SPLIT_FILES[f]) for f in SPLIT_PARTS]
    assert "# follows main" in path.read_text(), "comments stay"
    assert run("validate", "-c", str(catalog), "--strict").exit_code == 0
    newer = hub.commit("acme/Big-GGUF", {**SPLIT_FILES, SPLIT_PARTS[1]: b"part two, requantised"})
    assert run("pin", "-c", str(catalog), "--update").exit_code == 0
    data = yaml.safe_load(path.read_text())
    assert data["weights"]["revision"] == newer
    assert data["weights"]["parts"][1] == {
        "file": SPLIT_PARTS[1],
        "sha256": sha(b"part two, requantised"),
        "size": len(b"part two, requantised"),
    }
    assert data["weights"]["parts"][0]["sha256"] == sha(SPLIT_FILES[SPLIT_PARTS[0]])


def test_a_key_pin_adds_after_a_split_models_parts_goes_under_the_weights_not_into_a_part(
    hub: StandInHub, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repository that became gated gets `gated: true` in its weights; with `parts` as the last key, the new key
    goes after the last part's last line, at the weights' own indentation."""
    commit = hub.commit("acme/Big-GGUF", SPLIT_FILES, gated=True)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    parts = "".join(f"    - file: {f}\n      sha256: '{'0' * 64}'  # not yet\n" for f in SPLIT_PARTS)
    path = catalog / "models" / "big.yaml"
    path.write_text(f"weights:\n  hf: acme/Big-GGUF\n  revision: main\n  parts:\n{parts}server:\n  ctx_size: 4096\n")
    result = run("pin", "-c", str(catalog))
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(path.read_text())
    assert data["weights"]["gated"] is True
    assert data["weights"]["revision"] == commit
    assert [set(p) for p in data["weights"]["parts"]] == [{"file", "sha256", "size"}] * 3
    assert data["server"] == {"ctx_size": 4096}
    assert "\n  gated: true\nserver:\n" in path.read_text()


def _cut(stem: str, count: int, tag: bytes) -> dict[str, bytes]:
    """A quantisation cut into ``count`` parts, as llama.cpp's tools name them."""
    return {f"{stem}-{n:05d}-of-{count:05d}.gguf": tag + b" part %d of %d" % (n, count) for n in range(1, count + 1)}


def test_pin_update_follows_a_split_model_cut_into_more_parts(hub: StandInHub, catalog: Path) -> None:
    others = {"big-Q8_0.gguf": SPLIT_FILES["big-Q8_0.gguf"]}
    hub.commit("acme/Big-GGUF", {**SPLIT_FILES})
    assert run("add", "-c", str(catalog), "acme/Big-GGUF:Q4_K_M").exit_code == 0
    path = catalog / "models" / "big.yaml"
    path.write_text(path.read_text().replace("  parts:\n", "  parts:  # Q4_K_M, as the Hub cuts it\n"))
    four = _cut("Q4_K_M/big-Q4_K_M", 4, b"GGUF requantised")
    newer = hub.commit("acme/Big-GGUF", {**others, **four})
    result = run("pin", "-c", str(catalog), "big", "--update")
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(path.read_text())
    assert data["weights"]["revision"] == newer
    assert data["weights"]["parts"] == [{"file": f, "sha256": sha(c), "size": len(c)} for f, c in four.items()]
    assert f"big: weights: acme/Big-GGUF at {newer[:12]} has Q4_K_M/big-Q4_K_M in 4 parts, was 3" in result.output
    assert "+    - file: Q4_K_M/big-Q4_K_M-00004-of-00004.gguf" in result.output, "the diff shows the new part"
    assert "# Q4_K_M, as the Hub cuts it" in path.read_text(), "comments stay"
    assert run("validate", "-c", str(catalog), "--strict").exit_code == 0
    assert run("pin", "-c", str(catalog), "big", "--update").output.strip() == "every model is pinned; nothing changed"


def test_pin_update_follows_a_split_model_cut_into_fewer_parts_written_in_flow_style(
    hub: StandInHub, catalog: Path
) -> None:
    four = _cut("Q4_K_M/big-Q4_K_M", 4, b"GGUF")
    commit = hub.commit("acme/Big-GGUF", four)
    items = "".join(f"    - {{file: {f}, sha256: '{sha(c)}', size: {len(c)}}}\n" for f, c in four.items())
    path = catalog / "models" / "big.yaml"
    path.write_text(f"weights:\n  hf: acme/Big-GGUF\n  revision: '{commit}'\n  parts:\n{items}")
    path.write_text(path.read_text() + "# the end\nserver:\n  ctx_size: 512\n")
    two = _cut("Q4_K_M/big-Q4_K_M", 2, b"GGUF in halves")
    newer = hub.commit("acme/Big-GGUF", two)
    result = run("pin", "-c", str(catalog), "--update")
    assert result.exit_code == 0, result.output
    assert "has Q4_K_M/big-Q4_K_M in 2 parts, was 4" in result.output
    after = path.read_text()
    data = yaml.safe_load(after)
    assert data["weights"]["revision"] == newer
    assert data["weights"]["parts"] == [{"file": f, "sha256": sha(c), "size": len(c)} for f, c in two.items()]
    assert data["server"] == {"ctx_size": 512}
    assert after.endswith("# the end\nserver:\n  ctx_size: 512\n" + CARD_LICENSE), after
    assert after.count("    - {file: ") == 2, "still one line per part"
    assert run("validate", "-c", str(catalog), "--strict").exit_code == 0


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"big-Q8_0.gguf": b"GGUF q8"}, "no longer has Q4_K_M/big-Q4_K_M (no Q4_K_M/big-Q4_K_M-0000i-of-0000N.gguf)"),
        (
            {"Q4_K_M/big-Q4_K_M.gguf": b"GGUF whole"},
            "has Q4_K_M/big-Q4_K_M as one file, Q4_K_M/big-Q4_K_M.gguf: write `file: Q4_K_M/big-Q4_K_M.gguf` in place",
        ),
        (
            {**_cut("Q4_K_M/big-Q4_K_M", 2, b"a"), **_cut("Q4_K_M/big-Q4_K_M", 4, b"b")},
            "cuts Q4_K_M/big-Q4_K_M into 2 and into 4 parts",
        ),
        (
            {k: v for k, v in _cut("Q4_K_M/big-Q4_K_M", 4, b"GGUF").items() if "00002" not in k},
            "has 3 of the 4 parts of Q4_K_M/big-Q4_K_M: missing Q4_K_M/big-Q4_K_M-00002-of-00004.gguf",
        ),
    ],
)
def test_pin_update_of_a_split_model_whose_quantisation_is_gone_is_a_clear_error(
    hub: StandInHub, catalog: Path, files: dict[str, bytes], message: str
) -> None:
    hub.commit("acme/Big-GGUF", SPLIT_FILES)
    assert run("add", "-c", str(catalog), "acme/Big-GGUF:Q4_K_M").exit_code == 0
    path = catalog / "models" / "big.yaml"
    before = path.read_text()
    hub.commit("acme/Big-GGUF", files)
    result = run("pin", "-c", str(catalog), "big", "--update")
    assert result.exit_code == 9, result.output
    assert message in result.output
    assert path.read_text() == before, "the model file is left as it was"


def test_add_and_pin_take_the_license_from_the_model_card_and_keep_one_the_file_names(
    hub: StandInHub, catalog: Path
) -> None:
    hub.commit(REPO, FILES)
    hub.repos[REPO].license = "gemma"
    assert run("add", "-c", str(catalog), f"{REPO}:Q4_K_M", "--no-mmproj").exit_code == 0
    path = catalog / "models" / "tiny-model.yaml"
    assert yaml.safe_load(path.read_text())["license"] == "gemma"
    hub.repos[REPO].license = "apache-2.0"
    assert "nothing changed" in run("pin", "-c", str(catalog)).output, "a license the file names is kept"
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True) if "license" not in line))
    pinned = run("pin", "-c", str(catalog))
    assert '+license: "apache-2.0"' in pinned.output
    assert yaml.safe_load(path.read_text())["license"] == "apache-2.0"


def test_without_a_card_license_add_writes_none_and_validate_warns(hub: StandInHub, catalog: Path) -> None:
    hub.commit(REPO, FILES)
    hub.repos[REPO].license = ""
    assert run("add", "-c", str(catalog), f"{REPO}:Q4_K_M", "--no-mmproj").exit_code == 0
    assert "license" not in yaml.safe_load((catalog / "models" / "tiny-model.yaml").read_text())
    checked = run("validate", "-c", str(catalog))
    assert checked.exit_code == 0
    assert "model tiny-model: the weights' license is unknown" in checked.output
    assert "`llama-bake pin tiny-model` reads it from the Hub's model card" in checked.output
    assert run("validate", "-c", str(catalog), "--strict").exit_code == 8
