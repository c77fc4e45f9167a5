"""Before a build that pushes: does every registry answer, and may the docker config's login push to every
repository the build will push to? A missing ``docker login`` or a token without the scope is otherwise found
after the CUDA compile and the weight downloads.

Takes the repositories (``host[:port]/path``) and the docker config; asks each registry as docker does
(``GET /v2/``; on 401 the token request with ``scope=repository:NAME:pull,push``, or basic auth), then starts
one blob upload per repository and cancels it, the only answer that proves the push is allowed. Gives nothing,
or raises ``PushRefused`` naming the fix. The credentials are read, sent to the registry and its token service
only, and never written.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from llama_bake.buildx import ccache
from llama_bake.buildx.invocation import expand_targets, phases
from llama_bake.buildx.options import BuildOptions
from llama_bake.buildx.pinned import repository_of
from llama_bake.errors import PushRefused
from llama_bake.plan.ir import BakePlan

TIMEOUT = 10.0
DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class Login:
    """What the docker config holds for one registry: a user and secret, or an identity token."""

    username: str
    secret: str

    @property
    def is_identity_token(self) -> bool:
        return self.username == "<token>"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Request(Protocol):
    def __call__(self, method: str, url: str, headers: Mapping[str, str], body: bytes = b"") -> Reply: ...


def urllib_request(method: str, url: str, headers: Mapping[str, str], body: bytes = b"") -> Reply:
    """One HTTP request; an HTTP error status is a reply, a network failure raises ``OSError``."""
    data = body if method == "POST" else None
    request = urllib.request.Request(url, method=method, headers=dict(headers), data=data)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())


def split_repository(repository: str) -> tuple[str, str]:
    """``ghcr.io/acme/model`` -> (``ghcr.io``, ``acme/model``); a name without a registry is Docker Hub's."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return DOCKER_HUB, repository if rest else f"library/{repository}"


def docker_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    directory = environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


def read_login(host: str, config: Mapping[str, object], helper: Callable[[str, str], Login | None]) -> Login | None:
    """The login ``docker login HOST`` stored: a credential helper's answer, or the config's ``auths`` entry."""
    key = DOCKER_HUB_CONFIG_KEY if host == DOCKER_HUB else host
    helpers = config.get("credHelpers")
    name = helpers.get(key) if isinstance(helpers, dict) else None
    store = name or config.get("credsStore")
    if isinstance(store, str) and store:
        found = helper(store, key)
        if found is not None:
            return found
    auths = config.get("auths")
    entry = auths.get(key) if isinstance(auths, dict) else None
    if entry is None and isinstance(auths, dict):  # written with a scheme or a trailing path
        entry = next((v for k, v in auths.items() if re.sub(r"^https?://|/.*$", "", k) == key), None)
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("identitytoken"), str) and entry["identitytoken"]:
        return Login("<token>", entry["identitytoken"])
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        username, _, secret = base64.b64decode(entry["auth"]).decode("utf-8", "replace").partition(":")
        return Login(username, secret)
    return None


def credential_helper(name: str, key: str) -> Login | None:
    """``docker-credential-NAME get``, as docker runs it; None when the helper has no login for ``key``."""
    binary = shutil.which(f"docker-credential-{name}")
    if binary is None:
        msg = f"the docker config names the credential helper `{name}`, but docker-credential-{name} is not on PATH"
        raise PushRefused(msg)
    done = subprocess.run([binary, "get"], input=key, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        return None
    data = json.loads(done.stdout or "{}")
    return Login(str(data.get("Username", "")), str(data.get("Secret", "")))


@dataclass(frozen=True)
class Challenge:
    scheme: str  # bearer or basic
    params: Mapping[str, str]


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return Challenge(scheme.lower(), params)


def _basic(login: Login) -> str:
    return "Basic " + base64.b64encode(f"{login.username}:{login.secret}".encode()).decode()


class Registry:
    """One registry, asked the way docker asks it."""

    def __init__(self, host: str, login: Login | None, config_path: Path, request: Request) -> None:
        self.host = host
        self.login = login
        self.config_path = config_path
        self.request = request
        self.api_host = DOCKER_HUB_API if host == DOCKER_HUB else host
        self.base = ""

    @property
    def who(self) -> str:
        if self.login is None:
            return "no login"
        return "an identity token" if self.login.is_identity_token else f"user `{self.login.username}`"

    def _login_fix(self) -> str:
        host = "" if self.host == DOCKER_HUB else f" {self.host}"
        extra = " with a token that has write:packages" if self.host == "ghcr.io" else ""
        return f"run `docker login{host}`{extra} (the docker config read: {self.config_path})"

    def ping(self) -> Challenge | None:
        """``GET /v2/``: None when it needs no login, else its challenge."""
        schemes = (
            ("https", "http")
            if self.api_host.split(":")[0] in LOOPBACK or self.api_host.startswith("[::1]")
            else ("https",)
        )
        error: OSError | None = None
        for scheme in schemes:
            try:
                reply = self.request("GET", f"{scheme}://{self.api_host}/v2/", {})
            except OSError as exc:
                error = exc
                continue
            self.base = f"{scheme}://{self.api_host}"
            if reply.status == 200:
                return None
            if reply.status == 401 and reply.headers.get("www-authenticate"):
                return parse_challenge(reply.headers["www-authenticate"])
            msg = f"{self.host} answers GET /v2/ with HTTP {reply.status}: is it a container registry?"
            raise PushRefused(msg)
        reason = getattr(error, "reason", error)
        msg = (
            f"the registry {self.host} does not answer ({reason}); check the registry name (REGISTRY, "
            "project.yaml `registry`) and that it is reachable from here"
        )
        raise PushRefused(msg)

    def authorization(self, challenge: Challenge | None, repositories: list[str]) -> dict[str, str]:
        """The header that a push to ``repositories`` would carry."""
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            if self.login is None:
                msg = f"{self.host} needs a login and the docker config has none for it: {self._login_fix()}"
                raise PushRefused(msg)
            return {"Authorization": _basic(self.login)}
        realm = challenge.params.get("realm", "")
        query = [("service", challenge.params["service"])] if "service" in challenge.params else []
        query += [("scope", f"repository:{r}:pull,push") for r in repositories]
        if self.login is not None and self.login.is_identity_token:
            # An identity token (`docker login` through a browser) is exchanged as an OAuth refresh token.
            form = [("grant_type", "refresh_token"), ("refresh_token", self.login.secret), ("client_id", "llama-bake")]
            body = urllib.parse.urlencode([*form, *query]).encode()
            reply = self.request("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"}, body)
        else:
            headers = {"Authorization": _basic(self.login)} if self.login is not None else {}
            reply = self.request("GET", realm + "?" + urllib.parse.urlencode(query), headers)
        if reply.status in (401, 403):
            if self.login is None:
                msg = f"{self.host} needs a login and the docker config has none for it: {self._login_fix()}"
            else:
                msg = f"{self.host} refuses the docker config's login ({self.who}): {self._login_fix()} again"
            raise PushRefused(msg)
        if reply.status != 200:
            msg = f"the token service of {self.host} ({realm}) answers HTTP {reply.status}"
            raise PushRefused(msg)
        data = json.loads(reply.body or b"{}")
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            msg = f"the token service of {self.host} ({realm}) gave no token"
            raise PushRefused(msg)
        return {"Authorization": f"Bearer {token}"}

    def can_push(self, repository: str, headers: Mapping[str, str]) -> bool:
        """Start a blob upload and cancel it: a 202 is the registry saying this login may push there."""
        reply = self.request("POST", f"{self.base}/v2/{repository}/blobs/uploads/", headers)
        if reply.status == 202:
            location = reply.headers.get("location", "")
            if location:
                url = urllib.parse.urljoin(f"{self.base}/v2/{repository}/blobs/uploads/", location)
                with contextlib.suppress(OSError):  # an abandoned upload is collected by the registry
                    self.request("DELETE", url, headers)
            return True
        if reply.status in (401, 403):
            return False
        msg = f"{self.host} answers HTTP {reply.status} to an upload to {repository}: {reply.body[:200]!r}"
        raise PushRefused(msg)


def check_push(
    repositories: Iterable[str],
    *,
    environ: Mapping[str, str] = os.environ,
    request: Request = urllib_request,
    helper: Callable[[str, str], Login | None] = credential_helper,
) -> None:
    """Every registry of ``repositories`` answers and lets the docker config's login push to each of them."""
    config_path = docker_config_path(environ)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    except (OSError, ValueError) as exc:
        msg = f"cannot read the docker config {config_path}: {exc}"
        raise PushRefused(msg) from exc
    by_host: dict[str, list[str]] = {}
    for repository in dict.fromkeys(repositories):
        host, name = split_repository(repository)
        by_host.setdefault(host, []).append(name)
    for host, names in by_host.items():
        registry = Registry(host, read_login(host, config, helper), config_path, request)
        challenge = registry.ping()
        headers = registry.authorization(challenge, names)
        denied = [n for n in names if not registry.can_push(n, headers)]
        if denied:
            if registry.login is None:
                msg = f"{host} needs a login to push and the docker config has none for it: {registry._login_fix()}"
            else:
                scopes = ", ".join(f"repository:{n}:push" for n in denied)
                msg = (
                    f"the docker config's login for {host} ({registry.who}) cannot push to "
                    + ", ".join(f"{host}/{n}" for n in denied)
                    + f" (missing scope: {scopes}); give it write access to "
                    + ("them" if len(denied) > 1 else "it")
                    + (
                        " (ghcr.io: a token with write:packages, and the package's access for this repository)"
                        if host == "ghcr.io"
                        else ""
                    )
                    + f", or log in as someone who has it: {registry._login_fix()}"
                )
            raise PushRefused(msg)


def pushed_repositories(plan: BakePlan, options: BuildOptions, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Every repository the build writes to: each pushed target's tags (variables as bake resolves them: the
    environment, then ``--var``) and, when the cache is exported to a registry, each target's cache ref and each
    base's compiler cache (which goes to the models' registry when the bases' cache is gha)."""
    declared = {v.name for v in plan.variables}
    values = {k: v for k, v in environ.items() if k in declared}
    values |= {k: v for k, _, v in (item.partition("=") for item in options.variables) if k in declared}
    repositories: list[str] = []
    for phase in phases(options, plan):
        for name in expand_targets(plan, phase.names):
            target = plan.target(name)
            if options.push:
                repositories += [repository_of(tag) for tag in (plan.value_of(t, values) for t in target.tags) if tag]
            preset = options.cache_for(target.kind)
            if options.cache_export and preset is not None and preset.kind == "registry":
                repositories.append(repository_of(f"{preset.ref}/{name}:buildcache"))
        if options.cache_export:
            stores = ccache.stores(options, plan, expand_targets(plan, phase.names)).values()
            repositories += [repository_of(where.location) for where in stores if where.kind == "registry"]
    return list(dict.fromkeys(repositories))
