"""Edits of the user's catalog files: only the lines a pin changes change; comments, quoting and layout stay."""

from __future__ import annotations

import pytest
import yaml

from llama_bake.catalog.edits import pin_text

SPLIT = """weights:
  hf: acme/Big-GGUF
  revision: main  # follows main
  parts:
    - file: big-00001-of-00003.gguf
      sha256: '{zero}'
    - file: big-00002-of-00003.gguf
      sha256: '{zero}'
    - file: big-00003-of-00003.gguf
      sha256: '{zero}'
""".format(zero="0" * 64)


def _two_parts(**extra: str) -> dict[str, dict[str, str]]:
    parts: dict[str, str] = {}
    for i in range(2):
        parts |= {f"parts.{i}.file": f"big-0000{i + 1}-of-00002.gguf", f"parts.{i}.sha256": str(i) * 64}
        parts[f"parts.{i}.size"] = str(10 + i)
    return {"weights": {"revision": "c" * 40, **parts, **extra}}


@pytest.mark.parametrize("after", ["", "server:\n  ctx_size: 4096\n"], ids=["end of file", "a block after"])
def test_a_split_model_cut_into_fewer_parts_that_became_gated_keeps_its_file_whole(after: str) -> None:
    """Parts dropped and a key added after them: the key goes after the last part that stays, under the weights."""
    new = pin_text(SPLIT + after, _two_parts(gated="true"), {"weights": 2})
    data = yaml.safe_load(new)
    assert [p["file"] for p in data["weights"]["parts"]] == ["big-00001-of-00002.gguf", "big-00002-of-00002.gguf"]
    assert [p["size"] for p in data["weights"]["parts"]] == [10, 11]
    assert data["weights"]["gated"] is True
    assert data.get("server") == ({"ctx_size": 4096} if after else None)
    assert "# follows main" in new


def test_a_split_model_cut_into_more_parts_gets_them_after_its_last_part_before_a_new_key() -> None:
    updates = {"weights": {"gated": "true"}}
    for i in range(4):
        updates["weights"] |= {f"parts.{i}.file": f"big-0000{i + 1}-of-00004.gguf", f"parts.{i}.sha256": str(i) * 64}
        updates["weights"][f"parts.{i}.size"] = str(i)
    new = pin_text(SPLIT + "server:\n  ctx_size: 1\n", updates, {"weights": 4})
    data = yaml.safe_load(new)
    assert [p["size"] for p in data["weights"]["parts"]] == [0, 1, 2, 3]
    assert data["weights"]["gated"] is True
    assert data["server"] == {"ctx_size": 1}
