"""Ctrl-C (SIGINT) and SIGTERM: how a run stops without leaving OUT_DIR half-changed (docs/safety.md).

Whatever moment a SIGINT or SIGTERM arrives, either the run exits 0 and OUT_DIR is complete, or it
exits non-zero (130 / 143) and OUT_DIR is exactly as it was. The writer builds everything in a staging
folder and makes it OUT_DIR in one short *commit* (`convert.writer`); SIGTERM raises `Terminated`, a
`KeyboardInterrupt` (`rnaernie.signals.sigterm_raises`), so one cleanup serves both signals. Here:
- `deferred()`: while a commit runs, both signals are recorded instead of raised. Python runs signal
  handlers in the main thread, whichever thread the kernel picked, so swapping the handlers (rather
  than masking signals in one thread) covers torch's, Paddle's and the writer's threads too.
- `command_line_process()` (the CLI's `main`) and `end_run_at_commit()` (a run with nothing after its
  commit): a signal that arrives from the commit on is absorbed until the process exits 0, since
  OUT_DIR is already complete. Otherwise (Python API, a command inside another program, a push still
  to come) the recorded signal is delivered again as soon as the commit is over.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Iterator

from rnaernie.signals import in_main_thread

INTERRUPTIONS = (signal.SIGINT, signal.SIGTERM)
_command_line_process = False  # this process runs one command, then exits
_run_ends_at_commit = False


def command_line_process() -> None:
    """Called by the console script's `main`: this process runs one command and exits.

    `end_run_at_commit` then takes effect (inside another program it would swallow that program's
    Ctrl-C).
    """
    global _command_line_process
    _command_line_process = True


def end_run_at_commit() -> None:
    """Declare that the process exits as soon as its commit is done (the command line without a push).

    From the start of the commit on, SIGINT and SIGTERM no longer stop the run: it completes and
    exits 0 with OUT_DIR complete, instead of reporting a failure about a folder it has finished.
    """
    global _run_ends_at_commit
    _run_ends_at_commit = True


@contextmanager
def deferred(commit: bool = False) -> Iterator[list[int]]:
    """Run the body with SIGINT and SIGTERM recorded, not raised; yield the list of those received.

    Afterwards the previous handlers come back and the first recorded signal is delivered again,
    unless the body is the run's commit (`commit=True`) of a command-line process that called
    `end_run_at_commit()`: then the recorder stays and the process exits 0. Outside the main thread (where Python cannot set
    handlers) the body simply runs.
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
