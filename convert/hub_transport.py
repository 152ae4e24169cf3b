"""How a push talks to the Hub: timeouts and a deadline on every request, and what reached the Hub.

No push can hang: every HTTP request huggingface_hub makes gets connect and read timeouts, and the
push gives up once the Hub has not answered for `HubLimits.deadline` seconds, retries included
(`HubWatch`). The same watch remembers what reached the Hub, so an interruption or a failure can
say what the remote repository now holds (`convert.hub`, `convert.hub_errors`).

huggingface_hub is passed in or imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from convert.errors import HubError

ENV_CONNECT_TIMEOUT = "RNAERNIE_HUB_CONNECT_TIMEOUT"
ENV_READ_TIMEOUT = "RNAERNIE_HUB_READ_TIMEOUT"
ENV_DEADLINE = "RNAERNIE_HUB_DEADLINE"
RETRIED_STATUSES = (408, 429, 500, 502, 503, 504)  # huggingface_hub retries these: they are not answers
NOTHING_CHANGED = "No files have been modified since last commit"  # huggingface_hub's log line, not shown


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


def clock() -> float:
    return time.monotonic()


class HubWatch:
    """Bounds every request huggingface_hub sends, and notes what reached the Hub.

    Its hooks run on huggingface_hub's HTTP client (see `bounded_http`): before each request,
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
        now = clock()
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


@contextmanager
def bounded_http(hub, watch: HubWatch) -> Iterator[None]:
    """Put `watch`'s hooks on huggingface_hub's HTTP client for the push's duration.

    huggingface_hub (>= 1.0) sends every Hub request through one shared client (`get_session`),
    made by its client factory: its default, or one a host program set (proxy, certificates). We
    add our hooks to that client and take them off afterwards, so the factory and the client's own
    hooks (offline mode, request ids) are kept; public API only. One gap: after a connection error
    (refused, DNS, TLS) huggingface_hub closes the client and its retries of that call go through a
    new one from the factory, without these hooks (docs/publishing.md says what to set instead).
    Large files, and the storage token, go through hf_xet's own HTTP client, which reads its limits
    from HF_XET_CLIENT_* variables when its session starts; we set those unless the user has.
    """
    client = hub.get_session()
    own_hooks = client.event_hooks
    client.event_hooks = {"request": [*own_hooks["request"], watch.before_request],
                          "response": [*own_hooks["response"], watch.after_response]}
    xet = {"HF_XET_CLIENT_CONNECT_TIMEOUT": watch.limits.connect, "HF_XET_CLIENT_READ_TIMEOUT": watch.limits.read,
           "HF_XET_CLIENT_RETRY_MAX_DURATION": watch.limits.deadline}
    added = {name: f"{math.ceil(seconds * 1000)}ms" for name, seconds in xet.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        client.event_hooks = own_hooks
        for name in added:
            os.environ.pop(name, None)


def one_line(value, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def relayed_hub_log(say: Callable[[str], None]) -> Iterator[None]:
    """Route huggingface_hub's warnings (retries, ...) through `say` for the push's duration.

    Keeps stderr for our one error line. The "nothing changed" warning is not repeated: the
    push's own result line says so.
    """
    logger = logging.getLogger("huggingface_hub")
    saved = logger.handlers[:], logger.propagate, logger.level

    class Relay(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            line = one_line(record.getMessage(), 300)
            if NOTHING_CHANGED not in line:
                say(f"hub: {line}")

    logger.handlers, logger.propagate = [Relay(logging.WARNING)], False
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
