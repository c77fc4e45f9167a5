"""A stand-in for a strict registry on 127.0.0.1, in front of the tests' docker-registry: it can demand a login
through a token service (as ghcr.io and Docker Hub do: ``WWW-Authenticate: Bearer realm=...``, the token request
with ``scope=repository:NAME:pull,push``) and refuse any blob over a size limit (as ghcr.io refuses layers over
10 GB). It counts the blob uploads that reach the registry: the proof of what a push sent."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import re
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit


@dataclass
class Grant:
    user: str
    push: frozenset[str]  # repositories this user may push to ("*": all)


@dataclass
class RegistryProxy:
    backend: str  # host:port of the real registry
    users: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)  # user -> (password, push repos)
    max_blob: int | None = None
    auth: bool = False
    uploads: Counter[str] = field(default_factory=Counter)  # blob digest -> finished uploads
    uploaded_sizes: dict[str, int] = field(default_factory=dict)  # blob digest -> its size
    refused: list[tuple[str, int]] = field(default_factory=list)  # (repository, bytes) refused for size
    denied: list[str] = field(default_factory=list)  # "METHOD path" refused for a missing login or scope

    def __post_init__(self) -> None:
        self.tokens: dict[str, Grant] = {}
        self.sizes: Counter[str] = Counter()  # upload session -> bytes received
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy.handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the token service --------------------------------------------------------------------------

    def _token(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        """GET with basic auth (docker's login and pre-flight) or POST with a form (containerd's OAuth, BuildKit)."""
        query = parse_qs(urlsplit(handler.path).query)
        header = handler.headers.get("Authorization", "")
        name = password = None
        if handler.command == "POST":
            form = parse_qs(self._body(handler).decode())
            query |= form
            if form.get("grant_type") == ["password"]:
                name, password = form.get("username", [""])[0], form.get("password", [""])[0]
        elif header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
        user = ""
        if name is not None:
            if self.users.get(name, ("",))[0] != password or not password:
                self._reply(handler, 401, {"Content-Type": "application/json"}, b'{"details":"bad credentials"}')
                return
            user = name
        wanted = {m.group(1) for s in query.get("scope", []) if (m := re.match(r"repository:(.+):.*push", s))}
        allowed = self.users.get(user, ("", frozenset()))[1]
        token = secrets.token_hex(16)
        self.tokens[token] = Grant(user, frozenset(r for r in wanted if "*" in allowed or r in allowed))
        answer = json.dumps({"token": token, "access_token": token}).encode()
        self._reply(handler, 200, {"Content-Type": "application/json"}, answer)

    def _challenge(self, handler: http.server.BaseHTTPRequestHandler, repository: str) -> None:
        realm = f'Bearer realm="http://{self.address}/token",service="stand-in"'
        if repository:
            realm += f',scope="repository:{repository}:pull,push"'
        self.denied.append(f"{handler.command} {handler.path}")
        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
        self._reply(handler, 401, {"WWW-Authenticate": realm, "Content-Type": "application/json"}, body)

    # --- the registry -------------------------------------------------------------------------------

    def handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        if path == "/token":
            self._token(handler)
            return
        body = self._body(handler)
        match = re.match(r"/v2/(.+?)/(blobs|manifests|tags)/", path)
        repository = match.group(1) if match else ""
        writes = handler.command in ("POST", "PUT", "PATCH", "DELETE")
        if self.auth:
            grant = self.tokens.get(handler.headers.get("Authorization", "").removeprefix("Bearer "))
            if grant is None or (writes and repository and repository not in grant.push):
                self._challenge(handler, repository)
                return
        session = re.match(r"/v2/.+/blobs/uploads/([^/?]+)", path)
        if session and handler.command in ("PATCH", "PUT"):
            self.sizes[session.group(1)] += len(body)
            if self.max_blob is not None and self.sizes[session.group(1)] > self.max_blob:
                self.refused.append((repository, self.sizes[session.group(1)]))
                message = f"blob exceeds the registry's limit of {self.max_blob} bytes"
                error = json.dumps({"errors": [{"code": "SIZE_INVALID", "message": message}]}).encode()
                self._reply(handler, 413, {"Content-Type": "application/json"}, error)
                return
        status, headers, answer = self._forward(handler, body)
        if session and handler.command == "PUT" and status == 201:
            digest = parse_qs(urlsplit(handler.path).query).get("digest", ["?"])[0]
            self.uploads[digest] += 1
            self.uploaded_sizes[digest] = self.sizes[session.group(1)]
        self._reply(handler, status, headers, answer)

    def _body(self, handler: http.server.BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    handler.rfile.readline()
                    return bytes(out)
                out += handler.rfile.read(size)
                handler.rfile.readline()
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    def _forward(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.backend, timeout=120)
        headers: dict[str, str] = {}
        for key, value in handler.headers.items():  # a header given several times (Accept) is one list
            if key.lower() not in ("host", "authorization", "transfer-encoding", "content-length"):
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        headers["Content-Length"] = str(len(body))
        connection.request(handler.command, handler.path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        out = {k: v for k, v in response.getheaders() if k.lower() not in ("transfer-encoding", "connection")}
        if "Location" in out:
            out["Location"] = out["Location"].replace(f"http://{self.backend}", f"http://{self.address}")
        connection.close()
        return response.status, out, answer

    def _reply(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        """Every reply, a refusal included, to a HEAD request has the headers only: a body sent after one would be
        read by the client as the start of its next response on the same connection."""
        head = handler.command == "HEAD"
        handler.send_response(status)
        for key, value in headers.items():
            if key.lower() != "content-length":
                handler.send_header(key, value)
        length = headers.get("Content-Length") if head else None
        handler.send_header("Content-Length", length or str(len(body)))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)
