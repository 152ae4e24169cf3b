"""Publish a converted folder on the Hugging Face Hub: `push_folder`, used by both command lines.

Only folders made by rnaernie-convert are pushed, and only verified ones unless the caller says
otherwise (the card then says the model is unverified). huggingface_hub is imported inside the
function, so conversion and `--dry-run` work without it. Every Hub failure becomes one `HubError`
line saying what happened and what to do; nothing is reported as pushed before the upload returns.

No push can hang: every HTTP request huggingface_hub makes gets connect and read timeouts, and the
push gives up once the Hub has not answered for `HubLimits.deadline` seconds, retries included
(`_HubWatch`). The same watch remembers what reached the Hub, so an interruption can say what
the remote repository now holds.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import quote

from convert.errors import HubError, MissingDependencyError, PushInterrupted
from convert.records import CONVERSION_RECORD, read_conversion_record, read_verification

DEFAULT_ENDPOINT = "https://huggingface.co"
REQUIRED_FILES = (CONVERSION_RECORD, "model.safetensors")
INSTALL_HINT = "pip install 'rnaernie-convert[hub]'"
HIDDEN = [".*", "*/.*"]  # never pushed: .git, .cache, editor droppings (same rule as `folder_files`)
NOTHING_CHANGED = "No files have been modified since last commit"  # huggingface_hub's log line
RETRIED_STATUSES = (408, 429, 500, 502, 503, 504)  # huggingface_hub retries these: they are not answers
_REPO_ID = re.compile(r"[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9](?:[\w.-]{0,94}[A-Za-z0-9])?")


@dataclass
class PushResult:
    repo_id: str
    url: str                    # the repository page (the branch page with --revision)
    files: dict[str, int]       # path in the repository -> bytes
    verified: bool
    card: str                   # the README.md that was (or, in a dry run, would be) pushed
    revision: str | None = None
    dry_run: bool = False
    commit_oid: str | None = None
    commit_url: str | None = None
    changed: bool = True        # False: the Hub already had exactly these files, so no commit was made
    notes: list[str] = field(default_factory=list)


def push_folder(folder: str | Path, repo_id: str, *, private: bool = False, revision: str | None = None,
                commit_message: str | None = None, token: str | None = None, dry_run: bool = False,
                allow_unverified: bool = False, limits: HubLimits | None = None,
                say: Callable[[str], None] = print, done: Callable[[str], None] | None = None) -> PushResult:
    """Push `folder` (an rnaernie-convert output) to the Hub model repository `repo_id`.

    Creates the repository (private if asked; otherwise the namespace's default) and the branch
    `revision` if missing. `limits` bound the waiting (default: `HubLimits.resolve()`, i.e. the
    RNAERNIE_HUB_* environment variables, else the defaults). Progress goes to `say`, the final
    line (result or dry-run report) to `done` (default: `say`). Raises `HubError` for refusals and
    Hub failures, `PushInterrupted` on Ctrl-C / SIGTERM during the upload, and
    `MissingDependencyError` if huggingface_hub is not installed.
    """
    folder = Path(folder)
    done = done or say
    limits = limits or HubLimits.resolve()
    check_repo_id(repo_id)
    _check_folder(folder)
    record = read_conversion_record(folder)
    verification, problem = read_verification(folder)
    verified = problem is None
    if not verified and not allow_unverified:
        verify = f"`rnaernie-convert CHECKPOINT {folder} --verify-only`"
        todo = f"fix the cause, then run {verify} again" if verification else f"run {verify} first"
        raise HubError(f"{folder} {problem}, so it will not be pushed: {todo}, or pass --allow-unverified to push "
                       "it with a card that says so.")
    card = _card(folder, record, verification, verified)
    message = commit_message or default_commit_message(record, verified)

    if dry_run:
        files = folder_files(folder)
        files["README.md"] = len(card.encode("utf-8"))
        url = repo_url(_endpoint(None), repo_id, revision)
        done(dry_run_report(url, files, card, message, private, verified, problem))
        return PushResult(repo_id, url, files, verified, card, revision, dry_run=True)

    hub = _import_hub()
    card = _through_card_classes(hub, card)
    endpoint = _endpoint(hub.constants)
    url = repo_url(endpoint, repo_id, revision)
    token = _resolve_token(token, hub)
    readme = folder / "README.md"
    if not readme.is_file() or readme.read_text(encoding="utf-8") != card:
        readme.write_text(card, encoding="utf-8")
    if not verified:
        say(f"warning: {folder} {problem}; pushing it anyway (--allow-unverified), README.md says it is unverified")
    files = folder_files(folder)
    say(f"pushing {len(files)} files ({_size(sum(files.values()))}) to {url}")
    watch = _HubWatch(limits)
    with _hub_log(say) as log, _bounded_http(hub, watch):
        commit = _upload(hub, endpoint, folder, repo_id, private=private, revision=revision, message=message,
                         token=token, watch=watch, url=url)
    changed = not any(NOTHING_CHANGED in line for line in log)
    if changed:
        done(f"pushed {len(files)} files to {url} (commit {commit.oid[:12]})")
    else:
        done(f"nothing to push: {url} already has these {len(files)} files (commit {commit.oid[:12]})")
    return PushResult(repo_id, url, files, verified, card, revision, commit_oid=commit.oid,
                      commit_url=commit.commit_url, changed=changed, notes=log)


# ---------------------------------------------------------------------------------------- checks

def check_repo_id(repo_id: str) -> None:
    if not _REPO_ID.fullmatch(repo_id or "") or ".." in repo_id or "--" in repo_id or repo_id.endswith(".git"):
        raise HubError(f"{repo_id!r} is not a Hub repository id; pass ORG/NAME (letters, digits, '-', '_', '.'), "
                       "e.g. my-lab/rnaernie.")


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise HubError(f"{folder} is not a folder; pass the output folder of rnaernie-convert.")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise HubError(f"{folder} has no {' or '.join(missing)}, so it was not made by rnaernie-convert and will "
                       "not be pushed; convert the checkpoint with rnaernie-convert first.")


def _card(folder: Path, record: dict, verification: dict | None, verified: bool) -> str:
    """The README.md to push: the folder's own card if verified (the verifier wrote it), else one saying so."""
    from convert.card import render_card

    readme = folder / "README.md"
    if verified and readme.is_file():
        return readme.read_text(encoding="utf-8")
    try:
        return render_card(record, verification)
    except (KeyError, TypeError, ValueError):  # a failed verdict with missing figures: say "not verified"
        return render_card(record, None)


def _through_card_classes(hub, card: str) -> str:
    """The card as huggingface_hub's ModelCard reads and renders it: what the Hub will see."""
    try:
        return hub.ModelCard(card).content
    except Exception as exc:  # noqa: BLE001 - YAML and validation errors have no common base
        raise HubError(f"README.md's metadata cannot be read by huggingface_hub ({_one_line(exc, 160)}); "
                       "convert again to regenerate the card. Nothing was pushed.") from None


# ---------------------------------------------------------------------------------------- display

def folder_files(folder: Path) -> dict[str, int]:
    """The files a push sends: everything in the folder except hidden paths, with their sizes."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files[relative.as_posix()] = path.stat().st_size
    return files


def default_commit_message(record: dict, verified: bool) -> str:
    state = "parity verified" if verified else "UNVERIFIED"
    return f"RNAErnie {record['architecture']} converted by rnaernie-convert {record['tool_version']} ({state})"


def repo_url(endpoint: str, repo_id: str, revision: str | None) -> str:
    base = f"{endpoint}/{repo_id}"
    return base if revision in (None, "main") else f"{base}/tree/{quote(revision, safe='')}"


def dry_run_report(url: str, files: dict[str, int], card: str, message: str, private: bool, verified: bool,
                   problem: str | None) -> str:
    width = max(len(f"{size:,}") for size in files.values())
    lines = [f"dry run (nothing sent): would push {len(files)} files ({_size(sum(files.values()))}) to {url}"
             + (" as a private repository" if private else ""),
             *(f"  {size:>{width},} bytes  {name}" for name, size in files.items()),
             f"verification: {'passed' if verified else 'UNVERIFIED, the folder ' + problem + '; the card says so'}",
             f"commit message: {message}",
             "----- README.md -----",
             card.rstrip("\n")]
    return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


# ---------------------------------------------------------------------------------------- waiting

ENV_CONNECT_TIMEOUT = "RNAERNIE_HUB_CONNECT_TIMEOUT"
ENV_READ_TIMEOUT = "RNAERNIE_HUB_READ_TIMEOUT"
ENV_DEADLINE = "RNAERNIE_HUB_DEADLINE"


@dataclass(frozen=True)
class HubLimits:
    """How long a push waits for the Hub, in seconds.

    `connect`: to open a connection; `read`: for each part of an answer (and to send each part of
    a request); `deadline`: the longest the Hub may go without answering, counted from the first
    request still unanswered, across retries. The defaults end a push to a silent or failing Hub
    within about 70 s: the deadline plus at most one of huggingface_hub's back-off pauses (<= 8 s).
    """

    connect: float = 10.0
    read: float = 30.0
    deadline: float = 60.0

    @classmethod
    def resolve(cls, connect: float | None = None, read: float | None = None,
                deadline: float | None = None) -> "HubLimits":
        """The given values, else the RNAERNIE_HUB_* environment variables, else the defaults."""
        chosen = {}
        for name, given, option, variable in (("connect", connect, "--connect-timeout", ENV_CONNECT_TIMEOUT),
                                              ("read", read, "--read-timeout", ENV_READ_TIMEOUT),
                                              ("deadline", deadline, "--deadline", ENV_DEADLINE)):
            value, source = given, option
            if value is None and os.environ.get(variable):
                value, source = os.environ[variable], variable
            if value is None:
                value = getattr(cls, name)
            try:
                seconds = float(value)
            except ValueError:
                seconds = math.nan
            if not 0 < seconds < math.inf:
                raise HubError(f"{source} must be a positive number of seconds, not {value!r}.")
            chosen[name] = seconds
        return cls(**chosen)


class HubDeadlineExceeded(Exception):
    """The Hub has not answered for `HubLimits.deadline` seconds (not retried by huggingface_hub)."""


def _clock() -> float:
    return time.monotonic()


class _HubWatch:
    """Bounds every request huggingface_hub sends, and notes what reached the Hub.

    Its hooks run on huggingface_hub's HTTP client (see `_bounded_http`): before each request,
    refuse it if the Hub has been silent or failing for the whole deadline, and otherwise give it
    the connect/read timeouts, cut to what is left of the deadline (explicit per-call timeouts,
    including `timeout=None`, are overridden: some calls pass None, which would wait forever).
    """

    def __init__(self, limits: HubLimits):
        self.limits = limits
        self.unanswered_since: float | None = None  # start of the oldest request not yet answered
        self.created: bool | None = None  # True: this push created the repository; False: it existed
        self.storage_started = False      # large files may have been sent to the Hub's storage (xet)
        self.commit_unanswered = False    # a commit request went out and no answer came back (yet)
        self.committed = False
        self._lock = threading.Lock()

    def before_request(self, request) -> None:
        now = _clock()
        with self._lock:
            since = now if self.unanswered_since is None else self.unanswered_since
            left = self.limits.deadline - (now - since)
            if left <= 0:
                raise HubDeadlineExceeded(f"no answer from the Hub for {self.limits.deadline:g} s")
            self.unanswered_since = since  # until an answer arrives, this request counts as unanswered
            path = request.url.path
            self.commit_unanswered |= request.method == "POST" and "/commit/" in path
        connect, read = min(self.limits.connect, left), min(self.limits.read, left)
        request.extensions["timeout"] = {"connect": connect, "read": read, "write": read, "pool": connect}

    def after_response(self, response) -> None:
        path = response.request.url.path
        with self._lock:
            if response.status_code not in RETRIED_STATUSES:
                self.unanswered_since = None
            if path.endswith("/api/repos/create") and response.status_code in (200, 409):
                self.created = response.status_code == 200 if self.created is None else self.created
            # large files start going to storage once the Hub has said which files are large
            self.storage_started |= "/preupload/" in path and response.status_code < 300
            if "/commit/" in path:
                self.commit_unanswered = False
                self.committed |= response.status_code < 300

    def remote_state(self, repo_id: str, url: str) -> str:
        """What the Hub holds after an interruption, as far as this push knows."""
        if self.committed:
            return f"the commit was applied: {url} has the files."
        if self.commit_unanswered:
            return (f"the commit was sent but not answered, so it may or may not have been applied: check {url} "
                    "and run the same command again (it pushes only what is missing).")
        created = f"{repo_id} was created, but " if self.created else ""
        stored = (" (large files already sent to the Hub's storage are not in the repository, and will not be "
                  "sent again)" if self.storage_started else "")
        return (f"{created}no commit was made, so the repository's files are unchanged{stored}. Run the same "
                "command again to push.")


@contextmanager
def _bounded_http(hub, watch: _HubWatch) -> Iterator[None]:
    """Put `watch`'s hooks on every HTTP client huggingface_hub creates, for the push's duration.

    huggingface_hub (>= 1.0) sends every Hub request through one shared client made by a factory
    (`set_client_factory`); we wrap the factory in place, keeping its own hooks (offline mode,
    request ids). Large files, and the storage token, go through hf_xet's own HTTP client, which
    reads its limits from HF_XET_CLIENT_* variables when its session starts; we set those unless
    the user has.
    """
    from huggingface_hub.utils import _http  # the factory in use is only readable here

    previous = _http._GLOBAL_CLIENT_FACTORY

    def bounded_client():
        client = previous()
        hooks = client.event_hooks
        client.event_hooks = {"request": [*hooks["request"], watch.before_request],
                              "response": [*hooks["response"], watch.after_response]}
        return client

    xet = {"HF_XET_CLIENT_CONNECT_TIMEOUT": watch.limits.connect, "HF_XET_CLIENT_READ_TIMEOUT": watch.limits.read,
           "HF_XET_CLIENT_RETRY_MAX_DURATION": watch.limits.deadline}
    added = {name: f"{math.ceil(seconds * 1000)}ms" for name, seconds in xet.items() if name not in os.environ}
    os.environ.update(added)
    hub.set_client_factory(bounded_client)  # also closes the current client, so the next request uses ours
    try:
        yield
    finally:
        hub.set_client_factory(previous)
        for name in added:
            os.environ.pop(name, None)


# ---------------------------------------------------------------------------------------- the Hub

def _import_hub():
    try:
        import huggingface_hub
        import huggingface_hub.constants  # noqa: F401 - used as hub.constants
    except ImportError:
        raise MissingDependencyError(f"pushing to the Hub needs huggingface_hub: {INSTALL_HINT}") from None
    return huggingface_hub


def _endpoint(constants) -> str:
    """HF_ENDPOINT as set now (huggingface_hub reads it only once, at import), else the library's default."""
    return (os.environ.get("HF_ENDPOINT") or getattr(constants, "ENDPOINT", None) or DEFAULT_ENDPOINT).rstrip("/")


def _resolve_token(token: str | None, hub) -> str:
    """--token, else HF_TOKEN, else the cached `hf auth login` token."""
    try:
        token = token or os.environ.get("HF_TOKEN") or hub.get_token()
    except Exception as exc:  # noqa: BLE001 - e.g. an OIDC exchange configured but failing
        raise HubError(f"could not read the Hugging Face token ({_one_line(exc)}); run `hf auth login` or pass "
                       "--token / set HF_TOKEN. Nothing was pushed.") from exc
    if not token:
        raise HubError("no Hugging Face token found: run `hf auth login`, or pass --token or set HF_TOKEN "
                       "(a token with write access). Nothing was pushed.")
    return token


def _upload(hub, endpoint: str, folder: Path, repo_id: str, *, private: bool, revision: str | None, message: str,
            token: str, watch: "_HubWatch", url: str):
    """create_repo -> create_branch -> upload_folder; any failure becomes one HubError line,
    an interruption one `PushInterrupted` line saying what the Hub now holds."""
    doing = f"creating {repo_id}"
    try:
        api = hub.HfApi(endpoint=endpoint, token=token)
        # private=None (not False) when --private is absent: an organisation's "private by default" still applies.
        api.create_repo(repo_id, private=True if private else None, exist_ok=True, repo_type="model")
        if private and not api.repo_info(repo_id, repo_type="model").private:  # create_repo ignores it for old repos
            raise HubError(f"{repo_id} already exists and is public, so --private cannot apply. Nothing was pushed. "
                           "Make it private in its settings on the Hub, or choose another name.")
        if revision and revision != "main" and not revision.startswith("refs/"):
            doing = f"creating branch {revision!r} on {repo_id}"
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        doing = f"uploading to {repo_id}"
        return api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model", revision=revision,
                                 commit_message=message, ignore_patterns=list(HIDDEN))
    except HubError:
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated) where a handler raises it
        what, code = ("terminated", 143) if type(exc).__name__ == "Terminated" else ("interrupted", 130)
        raise PushInterrupted(f"{what} while {doing}; {watch.remote_state(repo_id, url)}", code) from None
    except Exception as exc:  # noqa: BLE001 - classified below; --debug shows the original as the cause
        raise hub_failure(exc, doing=doing, endpoint=endpoint, repo_id=repo_id, revision=revision,
                          uploading=doing.startswith("uploading"), watch=watch) from exc


def hub_failure(exc: BaseException, *, doing: str, endpoint: str, repo_id: str, revision: str | None,
                uploading: bool, watch: "_HubWatch | None" = None) -> HubError:
    """One line for a failed Hub call: what happened, where, what to do. Never says anything was pushed."""
    outcome = ("The push did not complete; run the same command again once fixed (files already there are "
               "skipped)." if uploading else "Nothing was pushed.")
    if watch is not None and watch.commit_unanswered:
        outcome = ("The commit was sent but not answered, so it may or may not have been applied; run the same "
                   "command again once fixed (it pushes only what is missing).")
    limits = watch.limits if watch is not None else HubLimits()
    happened, todo = _classify(exc, endpoint, repo_id, revision, limits)
    return HubError(f"{happened} while {doing}. {outcome} {todo}")


def _classify(exc: BaseException, endpoint: str, repo_id: str, revision: str | None,
              limits: HubLimits) -> tuple[str, str]:
    """(what happened, what to do) for an exception raised by huggingface_hub or its HTTP client."""
    names = {cls.__name__ for cls in type(exc).__mro__}  # httpx2, httpx and requests name their errors alike
    status = getattr(getattr(exc, "response", None), "status_code", None)
    detail = _server_message(exc)
    if isinstance(exc, HubDeadlineExceeded):
        return (f"the Hub at {endpoint} gave no answer for {limits.deadline:g} s, retries included",
                f"Try again later (https://status.huggingface.co), or allow longer with --deadline / {ENV_DEADLINE}.")
    if "OfflineModeIsEnabled" in names:
        return ("HF_HUB_OFFLINE is set, so huggingface_hub refuses to connect",
                "Unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to push.")
    if status == 401:
        return "the Hub rejected the token (HTTP 401)", "Run `hf auth login` again, or pass a valid --token / HF_TOKEN."
    if status == 403:
        return (f"the token may not write to {repo_id} (HTTP 403{detail})",
                f"Use a token with write access to '{repo_id.split('/')[0]}' (`hf auth login`), "
                "or push to a namespace you own.")
    if status == 404 and "RevisionNotFoundError" in names:
        return (f"the Hub has no revision {revision or 'main'!r} in {repo_id} (HTTP 404)",
                "Pass an existing branch, or a new branch name, with --revision.")
    if status == 404:
        return (f"{repo_id} was not found on the Hub (HTTP 404{detail})",
                "Check ORG/NAME, and that the token can see that repository.")
    if status == 429:
        return "the Hub is rate-limiting this token (HTTP 429)", "Wait a few minutes and run again."
    if isinstance(status, int) and status >= 500:
        return (f"the Hub had a server error (HTTP {status}{detail})",
                "Try again in a few minutes (https://status.huggingface.co).")
    if isinstance(status, int):
        return (f"the Hub refused the request (HTTP {status}{detail})",
                "Check ORG/NAME and --revision; run again with --debug for details.")
    if names & {"ConnectTimeout", "PoolTimeout"}:
        return (f"could not connect to the Hub at {endpoint} within {limits.connect:g} s",
                f"Check the network connection and run again (--connect-timeout / {ENV_CONNECT_TIMEOUT} allows longer).")
    if names & {"TimeoutException", "Timeout", "TimeoutError"}:
        return (f"the Hub at {endpoint} did not answer within {limits.read:g} s",
                f"Check the network connection and run again (--read-timeout / {ENV_READ_TIMEOUT} allows longer).")
    if type(exc) is ConnectionError and re.match(r"(Server|Network) error", str(exc)):  # raised by hf_xet
        return (f"uploading large files to the Hub's storage failed ({_one_line(exc, 160)})",
                "Try again in a few minutes; files already stored are not sent again.")
    if names & {"ConnectError", "ConnectionError", "NetworkError", "TransportError", "ProxyError", "ProtocolError"}:
        return (f"cannot reach the Hub at {endpoint} ({_one_line(exc, 100)})",
                "Check the network connection, proxy settings and HF_ENDPOINT, then run again.")
    if "JSONDecodeError" in names:
        return f"{endpoint} answered with something that is not the Hub's JSON", "Check HF_ENDPOINT and proxy settings."
    if isinstance(exc, ValueError) and "metadata in README.md" in str(exc):
        return (f"the Hub rejected the metadata at the top of README.md ({_one_line(exc, 160)})",
                "Fix README.md's YAML front matter, or convert again to regenerate the card.")
    return f"the push failed ({type(exc).__name__}: {_one_line(exc, 160)})", "Run again with --debug for details."


def _server_message(exc: BaseException) -> str:
    message = getattr(exc, "server_message", None)
    return f": {_one_line(message, 160)}" if message else ""


def _one_line(value, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def _hub_log(say: Callable[[str], None]) -> Iterator[list[str]]:
    """Route huggingface_hub's warnings (retries, "nothing changed") through `say` for the push's duration.

    Keeps stderr for our one error line, and lets `push_folder` tell a real commit from a no-op.
    """
    logger = logging.getLogger("huggingface_hub")
    saved = logger.handlers[:], logger.propagate, logger.level
    seen: list[str] = []

    class Relay(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            line = _one_line(record.getMessage(), 300)
            seen.append(line)
            if NOTHING_CHANGED not in line:
                say(f"hub: {line}")

    logger.handlers, logger.propagate = [Relay(logging.WARNING)], False
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield seen
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
