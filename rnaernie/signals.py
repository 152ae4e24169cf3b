"""Ctrl-C (SIGINT) and SIGTERM: the one signal rule for every command and every output written.

- `sigterm_raises()`: SIGTERM raises `Terminated` (a `KeyboardInterrupt`), so the cleanup Ctrl-C
  gets runs for SIGTERM too (what `kill`, a scheduler or a container stop sends; by default it ends
  the process at once, leaving temporary files behind) and the command exits 143 with one line. A
  program that handles SIGTERM itself (a notebook, a web server) keeps its own handler.
- `deferred()`: while an output is made or published (`rnaernie.output`) both signals are recorded,
  not raised, so that step is never cut in half. Handlers run in the main thread whichever thread the
  kernel picked, so swapping them covers torch's and the writers' threads too. A command-line run
  whose publication is its last step calls `end_run_at_commit()`: a signal from then on is absorbed
  and the run exits 0, its output complete; otherwise the signal is delivered when the step is over.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from rnaernie.errors import Terminated

INTERRUPTIONS = (signal.SIGINT, signal.SIGTERM)
_command_line_process = False  # this process runs one command, then exits
_run_ends_at_commit = False


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


def command_line_process() -> None:
    """Called by a console script's `main`: this process runs one command and exits.

    `end_run_at_commit` then takes effect (inside another program it would swallow that program's
    Ctrl-C).
    """
    global _command_line_process
    _command_line_process = True


def end_run_at_commit() -> None:
    """Declare that the process exits as soon as its commit (the output's publication) is done.

    From the start of the commit on, SIGINT and SIGTERM no longer stop the run: it completes and
    exits 0 with the output complete, instead of reporting a failure about an output it has finished.
    """
    global _run_ends_at_commit
    _run_ends_at_commit = True


@contextmanager
def deferred(commit: bool = False) -> Iterator[list[int]]:
    """Run the body with SIGINT and SIGTERM recorded, not raised; yield the list of those received.

    Afterwards the previous handlers come back and the first recorded signal is delivered again,
    unless the body is the run's commit (`commit=True`) of a command-line process that called
    `end_run_at_commit()`: then the recorder stays and the process exits 0. Outside the main thread
    (where Python cannot set handlers) the body simply runs.
    """
    if not in_main_thread():
        yield []
        return
    received: list[int] = []
    previous = {}
    try:
        for signum in INTERRUPTIONS:  # a signal already pending is raised here, before the body starts
            previous[signum] = signal.signal(signum, lambda signum, frame: received.append(signum))
        yield received
    finally:
        if not (commit and _run_ends_at_commit and _command_line_process) or len(previous) < len(INTERRUPTIONS):
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if received:
                os.kill(os.getpid(), received[0])  # handled by the restored handler, before kill returns
