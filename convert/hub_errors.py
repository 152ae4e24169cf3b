"""A failed Hub call as one line: what happened, where, what to do (never that anything was pushed).

Exceptions are told apart by their types: huggingface_hub's own errors (`huggingface_hub.errors`),
its HTTP client's (httpx2, which huggingface_hub 2.x is built on), and Python's built-in
`TimeoutError` / `ConnectionError` (hf_xet raises those). This module imports huggingface_hub, so
`convert.hub` imports it only when a push actually runs.
"""

from __future__ import annotations

import json
import re

import httpx2
from huggingface_hub.errors import OfflineModeIsEnabled, RevisionNotFoundError

from convert.errors import HubError
from convert.hub_transport import (ENV_CONNECT_TIMEOUT, ENV_DEADLINE, ENV_READ_TIMEOUT, HubDeadlineExceeded,
                                   HubLimits, HubWatch, one_line)


def hub_failure(exc: BaseException, *, doing: str, endpoint: str, repo_id: str, revision: str | None,
                uploading: bool, watch: HubWatch | None = None) -> HubError:
    """One line for a failed Hub call: what happened, where, what to do. Never says anything was pushed."""
    outcome = ("The push did not complete; run the same command again once fixed (files already there are "
               "skipped)." if uploading else "Nothing was pushed.")
    if watch is not None and watch.commit_unanswered:
        outcome = ("The commit was sent but not answered, so it may or may not have been applied; run the same "
                   "command again once fixed (it pushes only what is missing).")
    limits = watch.limits if watch is not None else HubLimits()
    happened, todo = classify(exc, endpoint, repo_id, revision, limits)
    return HubError(f"{happened} while {doing}. {outcome} {todo}")


def classify(exc: BaseException, endpoint: str, repo_id: str, revision: str | None,
             limits: HubLimits) -> tuple[str, str]:
    """(what happened, what to do) for an exception raised by huggingface_hub, httpx2 or hf_xet."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    detail = _server_message(exc)
    if isinstance(exc, HubDeadlineExceeded):
        return (f"the Hub at {endpoint} gave no answer for {limits.deadline:g} s, retries included",
                f"Try again later (https://status.huggingface.co), or allow longer with --deadline / {ENV_DEADLINE}.")
    if isinstance(exc, OfflineModeIsEnabled):
        return ("HF_HUB_OFFLINE is set, so huggingface_hub refuses to connect",
                "Unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to push.")
    if status == 401:
        return "the Hub rejected the token (HTTP 401)", "Run `hf auth login` again, or pass a valid --token / HF_TOKEN."
    if status == 403:
        return (f"the token may not write to {repo_id} (HTTP 403{detail})",
                f"Use a token with write access to '{repo_id.split('/')[0]}' (`hf auth login`), "
                "or push to a namespace you own.")
    if status == 404 and isinstance(exc, RevisionNotFoundError):
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
    if isinstance(exc, (httpx2.ConnectTimeout, httpx2.PoolTimeout)):
        return (f"could not connect to the Hub at {endpoint} within {limits.connect:g} s",
                f"Check the network connection and run again (--connect-timeout / {ENV_CONNECT_TIMEOUT} allows longer).")
    if isinstance(exc, (httpx2.TimeoutException, TimeoutError)):
        return (f"the Hub at {endpoint} did not answer within {limits.read:g} s",
                f"Check the network connection and run again (--read-timeout / {ENV_READ_TIMEOUT} allows longer).")
    if type(exc) is ConnectionError and re.match(r"(Server|Network) error", str(exc)):  # raised by hf_xet
        return (f"uploading large files to the Hub's storage failed ({one_line(exc, 160)})",
                "Try again in a few minutes; files already stored are not sent again.")
    if isinstance(exc, (httpx2.TransportError, ConnectionError)):  # connect, network, proxy, protocol errors
        return (f"cannot reach the Hub at {endpoint} ({one_line(exc, 100)})",
                "Check the network connection, proxy settings and HF_ENDPOINT, then run again.")
    if isinstance(exc, json.JSONDecodeError):
        return f"{endpoint} answered with something that is not the Hub's JSON", "Check HF_ENDPOINT and proxy settings."
    if isinstance(exc, ValueError) and "metadata in README.md" in str(exc):
        return (f"the Hub rejected the metadata at the top of README.md ({one_line(exc, 160)})",
                "Fix README.md's YAML front matter, or convert again to regenerate the card.")
    return f"the push failed ({type(exc).__name__}: {one_line(exc, 160)})", "Run again with --debug for details."


def _server_message(exc: BaseException) -> str:
    message = getattr(exc, "server_message", None)
    return f": {one_line(message, 160)}" if message else ""
