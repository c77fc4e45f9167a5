"""The one fake of buildx for unit tests of llama-bake's own logic (the real buildx proves the features)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

from llama_bake.buildx.client import BakeFailed, Invocation
from llama_bake.buildx.driver import Capabilities
from llama_bake.errors import DockerError


class FakeBaker:
    """Stands in for ``Baker``: records each invocation, then behaves as buildx does.

    - ``builders``: the builders that exist (None is buildx's current one); a bake on another fails as buildx
      does for a builder it does not know. Default: every builder exists.
    - ``stderr``: a bake fails with this text (exit 1) when set.
    - ``fail``: a bake whose targets include this one fails at a step of it, with its rawjson progress.
    - ``before``: called at the start of each bake (e.g. to send this process a SIGINT).
    - ``caps``: what every builder can do (default: everything, as a buildkitd can); a builder that does not exist
      does not answer, as ``docker buildx inspect`` fails for it.
    - ``built``: the targets a successful bake reports in its metadata (default: the names it was given, which
      is right unless one is a group).
    - ``progress``: rawjson lines a successful bake prints before it ends.
    Otherwise the bake succeeds and writes the metadata file, one image per target, as buildx does.
    """

    def __init__(
        self,
        builders: set[str | None] | None = None,
        stderr: str = "",
        fail: str = "",
        before: Callable[[], None] | None = None,
        caps: Capabilities | None = None,
        built: tuple[str, ...] = (),
        progress: tuple[str, ...] = (),
    ) -> None:
        self.built = built
        self.progress = progress
        self.known = builders
        self.stderr = stderr
        self.fail = fail
        self.before = before
        self.caps = caps or Capabilities("remote")
        self.calls: list[Invocation] = []

    def capabilities(self, builder: str | None) -> Capabilities:
        if self.known is not None and builder not in self.known:
            msg = f'no builder "{builder}" found'
            raise DockerError(msg)
        return self.caps

    @property
    def builders_used(self) -> list[str | None]:
        return [call.builder for call in self.calls]

    def command(self, invocation: Invocation) -> list[str]:
        return ["docker", *invocation.argv()]

    def bake(self, invocation: Invocation, cwd: Path) -> Iterator[str]:
        self.calls.append(invocation)
        if self.before is not None:
            self.before()
        if self.known is not None and invocation.builder not in self.known:
            raise BakeFailed(1, self.stderr or f'ERROR: no builder "{invocation.builder}" found\n')
        if self.stderr:
            raise BakeFailed(1, self.stderr)
        if self.fail and self.fail in invocation.targets:
            step = {"digest": "x", "name": f"[{self.fail} 1/1] RUN compile", "started": "2026-01-01T00:00:00Z"}
            yield json.dumps({"vertexes": [{**step, "error": "exit code: 2"}]})
            raise BakeFailed(1, "ERROR: failed to solve\n")
        meta = {
            t: {
                "containerimage.digest": f"sha256:{t}",
                "image.name": f"127.0.0.1:5000/lb/{t}:v1,127.0.0.1:5000/lb/{t}:b1",
            }
            for t in self.built or invocation.targets
        }
        if invocation.metadata_file:
            Path(invocation.metadata_file).write_text(json.dumps(meta))
        yield from self.progress


def event(**parts: object) -> str:
    """One line of buildx's rawjson progress."""
    return json.dumps(parts)
