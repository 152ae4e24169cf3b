"""A local stand-in for the Hugging Face Hub: just the endpoints a folder push uses, in a thread.

huggingface_hub (2.x) pushes with: POST /api/repos/create, POST /api/models/ID/branch/BRANCH,
POST /api/validate-yaml (README front matter), POST /api/models/ID/preupload/REV and
POST /api/models/ID/commit/REV (NDJSON: a header line, then one line per file). GET
/api/models/ID[/revision/REV] answers the repo_info calls made after a 401/403 on create and when
nothing changed.

Large files take the path a real push of the 347 MB model.safetensors takes. Like the Hub, the
preupload answer is "lfs" for files the default .gitattributes routes to LFS (`*.safetensors`, ...)
or larger than 10 MB, and "regular" (content inline in the commit) otherwise; for a file the branch
already has, it returns the file's oid (sha256 for LFS files, git blob sha1 otherwise), which is how
huggingface_hub skips unchanged files. With hf_xet installed (a dependency of huggingface_hub 2.x),
huggingface_hub sends "lfs" files through Xet storage: GET /api/models/ID/xet-write-token/REV
(headers name the storage endpoint and a token), then to that endpoint (this server, under /v1/):
a dedup query per chunk (GET /v1/chunks/..., answered 404: nothing to dedup against), xorbs (POST
/v1/xorbs/default/HASH: the chunks, each an 8-byte header then its bytes) and a shard (POST
/v1/shards: the file's layout). The commit then names the file by sha256 and size ("lfsFile");
the stand-in accepts it only if those bytes arrived in the uploaded xorbs. Tests set
HF_XET_XORB_COMPRESSION_POLICY=none so chunks arrive as plain bytes. Endpoints hf_xet tries first
and falls back from (xorb grants, /v2/shards) answer 404 as a storage server without them does.
Anything else is a 404 and is recorded in `unknown`, so tests notice a new endpoint.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

GOOD_TOKEN = "hf_fake_write_token"
XET_TOKEN = "xet_fake_write_token"
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.msgpack")  # of the Hub's list
LFS_THRESHOLD = 10 * 1024 * 1024  # larger files go to LFS whatever their name
REPO = r"(?P<repo>[^/]+/[^/]+)"
HASH = r"(?P<hash>[0-9a-f]{64})"
ROUTES = [  # (method, pattern, endpoint name)
    ("POST", re.compile(r"/api/repos/create"), "create"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate-yaml"),
    ("POST", re.compile(rf"/api/models/{REPO}/branch/(?P<rev>[^/]+)"), "branch"),
    ("POST", re.compile(rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)"), "preupload"),
    ("GET", re.compile(rf"/api/models/{REPO}/xet-write-token/(?P<rev>[^/]+)"), "xet-token"),
    ("POST", re.compile(rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)"), "commit"),
    ("GET", re.compile(rf"/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?"), "info"),
    # Xet storage (the endpoint named by the xet-token answer)
    ("GET", re.compile(rf"/v1/chunks/default/{HASH}"), "dedup"),
    ("POST", re.compile(rf"/v1/xorb-grants/default/{HASH}"), "xorb-grant"),
    ("POST", re.compile(rf"/v1/xorbs/default/{HASH}"), "xorb"),
    ("POST", re.compile(r"/v2/shards"), "shard-v2"),
    ("POST", re.compile(r"/v1/shards"), "shard"),
    ("POST", re.compile(r"/v1/telemetry"), "telemetry"),
]
STORAGE = {"dedup", "xorb-grant", "xorb", "shard-v2", "shard", "telemetry"}  # authorised by the xet token


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Branch:
    head: str
    files: dict[str, bytes] = field(default_factory=dict)
    lfs: set[str] = field(default_factory=set)  # paths stored as LFS / Xet files

    def oid(self, path: str) -> str | None:
        if path not in self.files:
            return None
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if path in self.lfs else git_blob_oid(data)


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
    lfs: set[str] = field(default_factory=set)  # which of them came as "lfsFile" lines (through storage)


@dataclass
class Failure:
    status: int
    error_code: str | None = None
    message: str = "fake failure"
    times: int = 10**6  # how many requests fail before the endpoint recovers


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return  # the client hung up before the answer (an interrupted push): not the stand-in's error
        super().handle_error(request, client_address)


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
        self.hooks: dict[str, Callable[[], None]] = {}  # endpoint name -> called when a request arrives
        self.silent: set[str] = set()  # endpoint names that accept the request and never answer ("*": all)
        self.xorbs: dict[str, list[bytes]] = {}  # xorb hash -> its chunks, as uploaded to storage
        self.shards = 0
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()  # releases requests held by `silent`
        self._server.shutdown()
        self._server.server_close()

    def fail(self, endpoint: str, status: int, error_code: str | None = None, message: str = "fake failure",
             times: int = 10**6) -> None:
        """Make `endpoint` (a ROUTES name) answer `status` for the next `times` requests."""
        self.failures[endpoint] = Failure(status, error_code, message, times)

    def on_request(self, endpoint: str, hook: Callable[[], None]) -> None:
        """Call `hook()` (once) when a request for `endpoint` arrives, before answering it."""
        self.hooks[endpoint] = hook

    def never_answer(self, endpoint: str = "*") -> None:
        """Make `endpoint` (a ROUTES name, or "*" for all) accept requests and never answer them."""
        self.silent.add(endpoint)

    def endpoints_called(self) -> list[str]:
        return [name for _, name, _ in self.requests]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        return self.repos[repo_id].branches[revision].files

    def lfs_files(self, repo_id: str, revision: str = "main") -> set[str]:
        return self.repos[repo_id].branches[revision].lfs

    def stored_bytes(self) -> int:
        return sum(len(chunk) for chunks in self.xorbs.values() for chunk in chunks)

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
                    silent = bool(hub.silent & {name, "*"})
                    hook = hub.hooks.pop(name, None)
                if hook:
                    hook()
                if silent:
                    hub._closing.wait()
                    self.close_connection = True
                    return None
                with hub._lock:
                    failure = hub.failures.get(name)
                    if failure and failure.times > 0:
                        failure.times -= 1
                        return self._send(*_err(failure.status, failure.message, failure.error_code))
                    if token not in ({XET_TOKEN} if name in STORAGE else hub.tokens):
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
        branches[rev] = Branch(branches["main"].head, dict(branches["main"].files), set(branches["main"].lfs))
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
        files = [{"path": f["path"], "uploadMode": "lfs" if _goes_to_lfs(f["path"], f["size"]) else "regular",
                  "shouldIgnore": False, "oid": branch.oid(f["path"])}
                 for f in json.loads(body)["files"]]
        return 200, {"files": files, "commitOid": branch.head}, {}

    def _xet_token(self, body: bytes, base: str, repo: str, rev: str) -> tuple[int, dict, dict]:
        branch = self._branch_or_error(repo, rev)
        if not isinstance(branch, Branch):
            return branch
        expires = str(int(time.time()) + 3600)
        headers = {"X-Xet-Endpoint": base, "X-Xet-Access-Token": XET_TOKEN, "X-Xet-Expiration": expires}
        return 200, {"casUrl": base, "accessToken": XET_TOKEN, "exp": int(expires)}, headers

    def _dedup(self, body: bytes, base: str, hash: str) -> tuple[int, dict, dict]:
        return _err(404, "no shard for this chunk")

    def _xorb_grant(self, body: bytes, base: str, hash: str) -> tuple[int, dict, dict]:
        return _err(404, "xorb grants are not offered here")

    def _xorb(self, body: bytes, base: str, hash: str) -> tuple[int, dict, dict]:
        try:
            chunks = _xorb_chunks(body)
        except ValueError as exc:
            return _err(400, f"bad xorb: {exc}")
        inserted = hash not in self.xorbs
        self.xorbs.setdefault(hash, chunks)
        return 200, {"was_inserted": inserted}, {}

    def _shard_v2(self, body: bytes, base: str) -> tuple[int, dict, dict]:
        return _err(404, "shard upload v2 is not offered here")

    def _shard(self, body: bytes, base: str) -> tuple[int, dict, dict]:
        self.shards += 1
        return 200, {"result": 1}, {}

    def _telemetry(self, body: bytes, base: str) -> tuple[int, dict, dict]:
        return 200, {}, {}

    def _stored_file(self, sha256: str, size: int) -> bytes | None:
        """The bytes with this sha256 and size, if uploaded to storage (a run of whole chunks)."""
        for chunks in self.xorbs.values():
            for start in range(len(chunks)):
                data = b""
                for chunk in chunks[start:]:
                    data += chunk
                    if len(data) >= size:
                        break
                if len(data) == size and hashlib.sha256(data).hexdigest() == sha256:
                    return data
        return None

    def _commit(self, body: bytes, base: str, repo: str, rev: str) -> tuple[int, dict, dict]:
        branch = self._branch_or_error(repo, rev)
        if not isinstance(branch, Branch):
            return branch
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = lines[0]["value"]
        added, lfs = {}, set()
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file" and value.get("encoding") == "base64":
                added[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile" and value.get("algo") == "sha256":
                data = self._stored_file(value["oid"], value["size"])
                if data is None:
                    return _err(400, f"LFS file {value['path']} ({value['oid']}) is not in storage")
                added[value["path"]] = data
                lfs.add(value["path"])
            else:
                return _err(400, f"fake hub takes base64 files and sha256 lfsFiles only, got {line['key']}")
        branch.files.update(added)
        branch.lfs = (branch.lfs - set(added)) | lfs
        oid = hashlib.sha1((branch.head + header["summary"] + json.dumps(sorted(
            (path, git_blob_oid(data)) for path, data in added.items()))).encode()).hexdigest()
        branch.head = oid
        self.commits.append(Commit(repo, rev, oid, header["summary"], added, lfs))
        return 200, {"commitUrl": f"{base}/{repo}/commit/{oid}", "commitOid": oid, "success": True}, {}

    def _branch_or_error(self, repo: str, rev: str):
        if repo not in self.repos:
            return _err(404, "Repository not found", "RepoNotFound")
        if rev not in self.repos[repo].branches:
            return _err(404, "Invalid rev id: " + rev, "RevisionNotFound")
        return self.repos[repo].branches[rev]


def _goes_to_lfs(path: str, size: int) -> bool:
    return size > LFS_THRESHOLD or any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in LFS_PATTERNS)


def _xorb_chunks(body: bytes) -> list[bytes]:
    """The chunks of an uncompressed xorb: each an 8-byte header (version, 3-byte LE compressed size,
    compression scheme, 3-byte LE size) followed by its bytes."""
    chunks, at = [], 0
    while at < len(body):
        if at + 8 > len(body):
            raise ValueError(f"truncated chunk header at byte {at}")
        header = body[at:at + 8]
        stored, scheme, size = int.from_bytes(header[1:4], "little"), header[4], int.from_bytes(header[5:8], "little")
        if scheme != 0 or stored != size:
            raise ValueError(f"chunk at byte {at} is compressed (scheme {scheme}); set HF_XET_XORB_COMPRESSION_POLICY=none")
        chunks.append(body[at + 8:at + 8 + size])
        at += 8 + size
    return chunks


def _err(status: int, message: str, error_code: str | None = None) -> tuple[int, dict, dict]:
    headers = {"X-Error-Message": message}
    if error_code:
        headers["X-Error-Code"] = error_code
    return status, {"error": message}, headers
