"""A stand-in Hugging Face Hub on 127.0.0.1: the endpoints huggingface_hub calls for a model's commit and files
(``/api/models/OWNER/REPO/revision/REV?blobs=true``) and the downloads an image build makes
(``/OWNER/REPO/resolve/REV/FILE``). A gated repository answers 401 GatedRepo without the right token."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    gated: bool = False
    license: str = "apache-2.0"  # the model card's (empty: the card names none)
    branches: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> path -> content


class StandInHub:
    def __init__(self, token: str = "hf_standin_token") -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hub.requests.append((self.path, self.headers.get("Authorization")))
                self._reply(with_body=True)

            def do_HEAD(self) -> None:
                self._reply(with_body=False)

            def _reply(self, *, with_body: bool) -> None:
                status, headers, body = hub.answer(self.path, self.headers.get("Authorization", ""))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def commit(self, repo: str, files: dict[str, bytes], *, branch: str = "main", gated: bool = False) -> str:
        """A new commit of ``repo`` on ``branch`` holding ``files``; returns its sha."""
        entry = self.repos.setdefault(repo, Repo(gated=gated))
        entry.gated = entry.gated or gated
        sha = hashlib.sha1(json.dumps([repo, len(entry.commits), sorted(files)]).encode()).hexdigest()
        entry.commits[sha] = dict(files)
        entry.branches[branch] = sha
        return sha

    def _error(self, status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        return status, headers, json.dumps({"error": message}).encode()

    def answer(self, raw_path: str, authorization: str) -> tuple[int, dict[str, str], bytes]:  # noqa: PLR0911 - one return per route of the stand-in Hub
        path = urlsplit(raw_path).path
        parts = [unquote(p) for p in path.strip("/").split("/")]
        api = parts[:2] == ["api", "models"]
        if api:
            if len(parts) < 6 or parts[4] != "revision":
                return self._error(404, "EntryNotFound", "not served here")
            repo_id, revision, rest = f"{parts[2]}/{parts[3]}", parts[5], []
        else:
            if len(parts) < 5 or parts[2] != "resolve":
                return self._error(404, "EntryNotFound", "not served here")
            repo_id, revision, rest = f"{parts[0]}/{parts[1]}", parts[3], parts[4:]
        repo = self.repos.get(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        if repo.gated and authorization != f"Bearer {self.token}":
            return self._error(401, "GatedRepo", "Access to this model is restricted")
        commit = repo.branches.get(revision, revision)
        files = repo.commits.get(commit)
        if files is None:
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        if not api:
            content = files.get("/".join(rest))
            if content is None:
                return self._error(404, "EntryNotFound", "Entry not found")
            return 200, {"Content-Type": "application/octet-stream", "X-Repo-Commit": commit}, content
        siblings = [
            {
                "rfilename": name,
                "size": len(content),
                "blobId": hashlib.sha1(content).hexdigest(),
                "lfs": {"size": len(content), "sha256": hashlib.sha256(content).hexdigest(), "pointerSize": 134},
            }
            for name, content in sorted(files.items())
        ]
        info = {
            "_id": repo_id,
            "id": repo_id,
            "modelId": repo_id,
            "sha": commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": ["gguf"],
            "siblings": siblings,
        }
        if repo.license:
            info["cardData"] = {"license": repo.license}
        return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()
