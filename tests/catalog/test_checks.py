"""The checks across the catalog's entries."""

from __future__ import annotations

from llama_bake.catalog.bases import Base
from llama_bake.catalog.checks import cross_check
from llama_bake.catalog.models import Model
from tests.catalog.entries import base
from tests.conftest import MODEL


def test_cross_check_finds_duplicates_reserved_names_and_unknown_bases() -> None:
    b = Base.model_validate(base(name="base"))
    m1 = Model.model_validate({"name": "dup", **MODEL})
    m2 = Model.model_validate({"name": "dup", **MODEL})
    m3 = Model.model_validate({"name": "models", **MODEL})
    m4 = Model.model_validate({"name": "m4", "base": "bsae", **MODEL})
    messages = [(p.loc, p.message) for p in cross_check([b], [m1, m2, m3, m4])]
    assert (("models", 1, "name"), "`dup` is already used by models[0]") in messages
    assert any(loc == ("models", 2, "name") and "reserved" in msg for loc, msg in messages)
    assert any(loc == ("models", 3, "base") and "did you mean `base`?" in msg for loc, msg in messages)


def test_cross_check_requires_a_base_name_when_there_are_several() -> None:
    b1 = Base.model_validate(base(name="one"))
    b2 = Base.model_validate(base(name="two"))
    m = Model.model_validate({"name": "m", **MODEL})
    problems = cross_check([b1, b2], [m])
    assert [p.loc for p in problems] == [("models", 0, "base")]
