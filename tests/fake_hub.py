"""A local stand-in for the Hugging Face Hub: just the endpoints a folder push uses, in a thread.

huggingface_hub (2.x) pushes with: POST /api/repos/create, POST /api/models/ID/branch/BRANCH,
POST /api/validate-yaml (README front matter), POST /api/models/ID/preupload/REV (we answer
"regular" for every file, so contents arrive inline) and POST /api/models/ID/commit/REV (NDJSON:
a header line, then one base64 "file" line per file). GET /api/models/ID[/revision/REV] answers the
repo_info calls made after a 401/403 on create and when nothing changed. Anything else is a 404
and is recorded in `unknown`, so tests notice a new endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

GOOD_TOKEN = "hf_fake_write_token"
REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [  # (method, pattern, endpoint name)
    ("POST", re.compile(r"/api/repos/create"), "create"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate-yaml"),
    ("POST", re.compile(rf"/api/models/{REPO}/branch/(?P<rev>[^/]+)"), "branch"),
    ("POST", re.compile(rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)"), "preupload"),
    ("POST", re.compile(rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)"), "commit"),
    ("GET", re.compile(rf"/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?"), "info"),
]


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Branch:
    head: str
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, Branch]


@dataclass
class Commit:
    repo_id: str
    revision: str
    oid: str
    summary: str
    files: dict[str, bytes]  # what this commit added


@dataclass
class Failure:
    status: int
    error_code: str | None = None
    message: str = "fake failure"
    times: int = 10**6  # how many requests fail before the endpoint recovers


class FakeHub:
    def __init__(self, tokens: tuple[str, ...] = (GOOD_TOKEN,), forbidden_namespaces: tuple[str, ...] = ()):
        self.tokens = set(tokens)
        self.forbidden_namespaces = set(forbidden_namespaces)
        self.repos: dict[str, Repo] = {}
        self.create_payloads: list[dict] = []
        self.commits: list[Commit] = []
        self.requests: list[tuple[str, str, str | None]] = []  # (method, endpoint name, bearer token)
        self.unknown: list[str] = []
        self.failures: dict[str, Failure] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, endpoint: str, status: int, error_code: str | None = None, message: str = "fake failure",
             times: int = 10**6) -> None:
        """Make `endpoint` (a ROUTES name) answer `status` for the next `times` requests."""
        self.failures[endpoint] = Failure(status, error_code, message, times)

    def endpoints_called(self) -> list[str]:
        return [name for _, name, _ in self.requests]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return self.repos[repo_id].branches[revision].files

    # ------------------------------------------------------------------------------------ server side

    def _handler_class(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _dispatch(self, method: str) -> None:
                path = urlsplit(self.path).path
                body = self._body()
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
                for route_method, pattern, name in ROUTES:
                    match = pattern.fullmatch(path)
                    if match and route_method == method:
                        break
                else:
                    hub.unknown.append(f"{method} {path}")
                    return self._send(*_err(404, f"fake hub: no such endpoint {method} {path}"))
                with hub._lock:
                    hub.requests.append((method, name, token))
                    failure = hub.failures.get(name)
                    if failure and failure.times > 0:
                        failure.times -= 1
                        return self._send(*_err(failure.status, failure.message, failure.error_code))
                    if token not in hub.tokens:
                        return self._send(*_err(401, "Invalid credentials in Authorization header"))
                    params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    status, payload, headers = getattr(hub, "_" + name.replace("-", "_"))(
                        body=body, base=f"http://{self.headers['Host']}", **params)
                self._send(status, payload, headers)

        return Handler

    # Endpoint implementations: return (status, JSON payload, extra headers). Called under the lock.

    def _create(self, body: bytes, base: str) -> tuple[int, dict, dict]:
        payload = json.loads(body)
        self.create_payloads.append(payload)
        repo_id = f"{payload.get('organization')}/{payload['name']}"
        if payload.get("organization") in self.forbidden_namespaces:
            return _err(403, "You don't have the rights to create a model under this namespace")
        if repo_id in self.repos:  # the real Hub's 409 carries the url too (create_repo(exist_ok=True) reads it)
            status, body, headers = _err(409, "You already created this model repo")
            return status, {**body, "url": f"{base}/{repo_id}"}, headers
        initial = Branch(head=hashlib.sha1(repo_id.encode()).hexdigest())
        self.repos[repo_id] = Repo(repo_id, payload.get("visibility") == "private", {"main": initial})
        return 200, {"url": f"{base}/{repo_id}", "name": repo_id, "id": repo_id}, {}

    def _info(self, body: bytes, base: str, repo: str, rev: str = "main") -> tuple[int, dict, dict]:
        if repo not in self.repos:
            return _err(404, "Repository not found", "RepoNotFound")
        if rev not in self.repos[repo].branches:
            return _err(404, "Invalid rev id", "RevisionNotFound")
        return 200, {"id": repo, "sha": self.repos[repo].branches[rev].head, "private": self.repos[repo].private}, {}

    def _branch(self, body: bytes, base: str, repo: str, rev: str) -> tuple[int, dict, dict]:
        if repo not in self.repos:
            return _err(404, "Repository not found", "RepoNotFound")
        branches = self.repos[repo].branches
        if rev in branches:
            return _err(409, "Reference already exists")
        branches[rev] = Branch(branches["main"].head, dict(branches["main"].files))
        return 200, {}, {}

    def _validate_yaml(self, body: bytes, base: str) -> tuple[int, dict, dict]:
        content = json.loads(body)["content"]
        match = re.match(r"---\n(.*?)\n---\n", content, re.S)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else None
            assert isinstance(metadata, dict), "front matter must be a mapping"
        except Exception as exc:  # noqa: BLE001 - report it like the Hub does
            return 400, {"errors": [{"message": f"Invalid YAML: {exc}"}]}, {}
        return 200, {"errors": [], "warnings": []}, {}

    def _preupload(self, body: bytes, base: str, repo: str, rev: str) -> tuple[int, dict, dict]:
        branch = self._branch_or_error(repo, rev)
        if not isinstance(branch, Branch):
            return branch
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                  "oid": git_blob_oid(branch.files[f["path"]]) if f["path"] in branch.files else None}
                 for f in json.loads(body)["files"]]
        return 200, {"files": files, "commitOid": branch.head}, {}

    def _commit(self, body: bytes, base: str, repo: str, rev: str) -> tuple[int, dict, dict]:
        branch = self._branch_or_error(repo, rev)
        if not isinstance(branch, Branch):
            return branch
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = lines[0]["value"]
        added = {}
        for line in lines[1:]:
            if line["key"] != "file" or line["value"].get("encoding") != "base64":
                return _err(400, f"fake hub takes regular base64 files only, got {line['key']}")
            added[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
        branch.files.update(added)
        oid = hashlib.sha1((branch.head + header["summary"] + json.dumps(sorted(
            (path, git_blob_oid(data)) for path, data in added.items()))).encode()).hexdigest()
        branch.head = oid
        self.commits.append(Commit(repo, rev, oid, header["summary"], added))
        return 200, {"commitUrl": f"{base}/{repo}/commit/{oid}", "commitOid": oid, "success": True}, {}

    def _branch_or_error(self, repo: str, rev: str):
        if repo not in self.repos:
            return _err(404, "Repository not found", "RepoNotFound")
        if rev not in self.repos[repo].branches:
            return _err(404, "Invalid rev id: " + rev, "RevisionNotFound")
        return self.repos[repo].branches[rev]


def _err(status: int, message: str, error_code: str | None = None) -> tuple[int, dict, dict]:
    headers = {"X-Error-Message": message}
    if error_code:
        headers["X-Error-Code"] = error_code
    return status, {"error": message}, headers
