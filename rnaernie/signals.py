"""SIGTERM stops a run the way Ctrl-C does: the one rule for every command and every file written.

Python turns Ctrl-C (SIGINT) into `KeyboardInterrupt`, so `finally` blocks and cleanup run; SIGTERM
(what `kill`, a batch scheduler or a container stop sends) would end the process at once, leaving
temporary files behind and saying nothing. Within `sigterm_raises()`, SIGTERM raises `Terminated`
(a `KeyboardInterrupt`) instead, so the same cleanup runs and the command exits 143 with one line.
A program that handles SIGTERM itself keeps its own handler: inside a host application (a notebook,
a web server, a workflow engine) the host decides what SIGTERM means.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from rnaernie.errors import Terminated


def raise_terminated(signum, frame):
    raise Terminated()


def in_main_thread() -> bool:
    """Python runs signal handlers, and lets them be set, in the main thread only."""
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """For the body, SIGTERM raises `Terminated` unless the program already handles SIGTERM itself.

    Outside the main thread (where Python cannot set handlers) the body simply runs.
    """
    if not in_main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is raise_terminated:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
