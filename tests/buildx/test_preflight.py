"""The push pre-flight's own logic against a registry answered in memory (no network, no process): which
repositories a build pushes to, where the login comes from, and what each refusal says."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from llama_bake.buildx.options import BuildOptions, CachePreset
from llama_bake.buildx.preflight import Login, Reply, check_push, pushed_repositories, split_repository
from llama_bake.errors import PushRefused
from llama_bake.project import Paths, compile_catalog
from tests.conftest import WriteCatalog


class FakeRegistry:
    """A token-auth registry: ``user`` with ``password`` may push to ``writable``."""

    def __init__(self, writable: tuple[str, ...] = ("acme/model",), *, up: bool = True) -> None:
        self.writable = writable
        self.up = up
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        self.bodies: list[bytes] = []

    def __call__(self, method: str, url: str, headers: Mapping[str, str], body: bytes = b"") -> Reply:  # noqa: PLR0911 - one return per request the fake registry answers
        self.calls.append((method, url, dict(headers)))
        self.bodies.append(body)
        if not self.up:
            msg = "connection refused"
            raise OSError(msg)
        if url == "https://reg.example/v2/":
            challenge = 'Bearer realm="https://auth.example/token",service="reg.example"'
            return Reply(401, {"www-authenticate": challenge}, b"")
        if method == "POST" and url == "https://auth.example/token":
            token = b"refresh_token=IDTOKEN" in body
            return Reply(200 if token else 401, {}, json.dumps({"access_token": "T"}).encode() if token else b"")
        if url.startswith("https://auth.example/token"):
            good = "Basic " + base64.b64encode(b"user:password").decode()
            auth = headers.get("Authorization")
            if auth is not None and auth != good:
                return Reply(401, {}, b"")
            return Reply(200, {}, json.dumps({"token": "T" if auth else "anonymous"}).encode())
        if method == "POST" and "/blobs/uploads/" in url:
            repo = url.split("/v2/", 1)[1].split("/blobs/", 1)[0]
            if headers.get("Authorization") == "Bearer T" and repo in self.writable:
                return Reply(202, {"location": f"/v2/{repo}/blobs/uploads/u1"}, b"")
            return Reply(401, {}, b"")
        if method == "DELETE":
            return Reply(204, {}, b"")
        return Reply(404, {}, b"")


def config(tmp_path: Path, auths: dict[str, object]) -> dict[str, str]:
    (tmp_path / "config.json").write_text(json.dumps({"auths": auths}))
    return {"DOCKER_CONFIG": str(tmp_path)}


def auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def no_helper(name: str, key: str) -> Login | None:
    msg = "no credential helper is configured"
    raise AssertionError(msg)


def test_a_login_that_may_push_passes_and_the_upload_it_started_is_cancelled(tmp_path: Path) -> None:
    registry = FakeRegistry()
    env = config(tmp_path, {"reg.example": auth("user", "password")})
    check_push(["reg.example/acme/model"], environ=env, request=registry, helper=no_helper)
    token_url = next(url for _, url, _ in registry.calls if "auth.example" in url)
    assert "scope=repository%3Aacme%2Fmodel%3Apull%2Cpush" in token_url, "the scope docker asks for"
    assert [m for m, _, _ in registry.calls][-2:] == ["POST", "DELETE"]


def test_without_a_login_the_fix_is_docker_login(tmp_path: Path) -> None:
    env = config(tmp_path, {})
    with pytest.raises(PushRefused) as caught:
        check_push(["reg.example/acme/model"], environ=env, request=FakeRegistry(), helper=no_helper)
    assert "needs a login to push and the docker config has none for it: run `docker login reg.example`" in str(
        caught.value
    )
    assert caught.value.exit_code == 10


def test_a_login_without_the_scope_names_the_repositories_and_the_scope(tmp_path: Path) -> None:
    env = config(tmp_path, {"reg.example": auth("user", "password")})
    with pytest.raises(PushRefused) as caught:
        check_push(
            ["reg.example/acme/model", "reg.example/acme/other"],
            environ=env,
            request=FakeRegistry(),
            helper=no_helper,
        )
    text = str(caught.value)
    assert "login for reg.example (user `user`) cannot push to reg.example/acme/other " in text
    assert "(missing scope: repository:acme/other:push)" in text


def test_a_wrong_password_is_refused_at_the_token_service(tmp_path: Path) -> None:
    env = config(tmp_path, {"https://reg.example/v1/": auth("user", "wrong")})
    with pytest.raises(PushRefused, match=r"refuses the docker config's login \(user `user`\): run `docker login"):
        check_push(["reg.example/acme/model"], environ=env, request=FakeRegistry(), helper=no_helper)


def test_a_registry_that_does_not_answer_is_named(tmp_path: Path) -> None:
    with pytest.raises(PushRefused, match=r"the registry reg\.example does not answer"):
        check_push(["reg.example/acme/model"], environ=config(tmp_path, {}), request=FakeRegistry(up=False))


def test_a_credential_helper_answers_for_its_registry(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"reg.example": "vault"}}))
    asked: list[tuple[str, str]] = []

    def helper(name: str, key: str) -> Login | None:
        asked.append((name, key))
        return Login("user", "password")

    check_push(
        ["reg.example/acme/model"], environ={"DOCKER_CONFIG": str(tmp_path)}, request=FakeRegistry(), helper=helper
    )
    assert asked == [("vault", "reg.example")]


@pytest.mark.parametrize(
    ("repository", "split"),
    [
        ("ghcr.io/acme/m", ("ghcr.io", "acme/m")),
        ("127.0.0.1:5000/m", ("127.0.0.1:5000", "m")),
        ("acme/m", ("docker.io", "acme/m")),
        ("localhost/m", ("localhost", "m")),
    ],
)
def test_repositories_name_their_registry_as_docker_does(repository: str, split: tuple[str, str]) -> None:
    assert split_repository(repository) == split


def test_pushed_repositories_are_every_tag_and_registry_cache_the_build_writes(write_catalog: WriteCatalog) -> None:
    paths = Paths.from_options(write_catalog(), None)
    plan = compile_catalog(paths).plan
    options = BuildOptions(push=True, model_cache=CachePreset("registry", "ghcr.io/acme/cache"))
    assert pushed_repositories(plan, options, environ={"REGISTRY": "ghcr.io/acme"}) == [
        "ghcr.io/acme/llama-cpp-cuda",
        "ghcr.io/acme/model-a",
        "ghcr.io/acme/cache/model-a",
    ]
    assert pushed_repositories(plan, BuildOptions(), environ={}) == [], "nothing pushed, nothing checked"


def test_the_compiler_caches_repository_is_checked_where_the_bases_cache_is_gha(write_catalog: WriteCatalog) -> None:
    """The generated GitHub workflow's caches: the bases' in gha, the models' in a registry, where the bases'
    compiler cache goes too (REF/<base>:ccache): that repository is written, so it is checked."""
    plan = compile_catalog(Paths.from_options(write_catalog(), None)).plan
    options = BuildOptions(
        targets=("llama-cpp-cuda",),
        push=True,
        base_cache=CachePreset("gha"),
        model_cache=CachePreset("registry", "ghcr.io/acme/cache"),
    )
    assert pushed_repositories(plan, options, environ={"REGISTRY": "ghcr.io/acme"}) == [
        "ghcr.io/acme/llama-cpp-cuda",
        "ghcr.io/acme/cache/llama-cpp-cuda",
    ]
    imports_only = BuildOptions(**{**vars(options), "push": False, "cache_export": False})
    assert pushed_repositories(plan, imports_only, environ={}) == []


def test_an_identity_token_is_exchanged_for_an_access_token(tmp_path: Path) -> None:
    registry = FakeRegistry()
    env = config(tmp_path, {"reg.example": {"identitytoken": "IDTOKEN"}})
    check_push(["reg.example/acme/model"], environ=env, request=registry, helper=no_helper)
    assert b"grant_type=refresh_token" in registry.bodies[1]
    assert b"scope=repository%3Aacme%2Fmodel%3Apull%2Cpush" in registry.bodies[1]
