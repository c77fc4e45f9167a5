"""How a served model is reached: ``access`` (``local``: 127.0.0.1 only; ``network``: every interface of the
host, or a cluster Service) and where its API key comes from at run time (``api_key``: an environment variable or
a file, never the key itself). The project sets the defaults; a model may set its own.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from llama_bake.catalog.bases import RelPath
from llama_bake.catalog.fields import EnvName, Strict

Access = Literal["local", "network"]
DEFAULT_ACCESS: Access = "local"
KEY_FIX = "add `api_key: {env: LLAMA_API_KEY}` (or `api_key: {file: PATH}`) here or in project.yaml"


def _not_the_key(value: Any) -> Any:
    if isinstance(value, str):
        msg = (
            "the key itself never goes in the catalog (it would land in generated files and git); name where it "
            "is read at run time: `{env: NAME}` (an environment variable) or `{file: PATH}`"
        )
        raise ValueError(msg)
    return value


class ApiKeySource(Strict):
    """Where the API key is read when the model runs (Compose secret, `smoke`); the Kubernetes manifests read it
    from a Secret instead."""

    env: EnvName | None = Field(None, description="An environment variable of whoever runs compose or smoke.")
    file: RelPath | None = Field(
        None,
        description="A file holding the key (one per line), relative to the project directory; keep it out of git.",
    )

    @model_validator(mode="after")
    def _one(self) -> ApiKeySource:
        if (self.env is None) == (self.file is None):
            msg = "give one of `env: NAME` or `file: PATH`"
            raise ValueError(msg)
        return self

    @property
    def pair(self) -> tuple[str, str]:
        """("env", NAME) or ("file", PATH): the plan's plain form."""
        return ("env", self.env) if self.env is not None else ("file", self.file or "")


ApiKey = Annotated[ApiKeySource, BeforeValidator(_not_the_key)]
