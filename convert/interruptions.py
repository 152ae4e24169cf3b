"""Ctrl-C (SIGINT) and SIGTERM in a conversion: the converter's names for the one signal rule.

The guarantee (Safety): whatever moment a SIGINT or SIGTERM arrives, either the run exits 0 and
OUT_DIR is complete, or it exits non-zero (130 / 143) and OUT_DIR is exactly as it was. The
mechanism is the model side's too: `rnaernie.signals` (SIGTERM raises `Terminated`; `deferred`;
`command_line_process` and `end_run_at_commit`) and `rnaernie.output.atomic_folder`, which the
converter's `convert.writer.staged_output` uses.
- `signal_point(name)`: a test-only hook (see its docstring), free when unused.
"""

from __future__ import annotations

import os
import signal

from rnaernie.signals import command_line_process, deferred, end_run_at_commit  # noqa: F401 - the converter's names

_SIGNAL_POINT = os.environ.get("RNAERNIE_CONVERT_TEST_SIGNAL_AT", "")  # read once: unset costs nothing


def signal_point(name: str) -> None:
    """Test-only hook: with RNAERNIE_CONVERT_TEST_SIGNAL_AT=NAME:SIGINT (or :SIGTERM) in the
    environment, the process sends itself that signal when it reaches the point called NAME.

    The signal is handled before `os.kill` returns, so it lands exactly here: tests can interrupt
    any named moment of a run deterministically, with no timing involved. The points are:
    start, staged, writing, written, verifying, verified, swap, published, cleaned, done; and in a
    push, committed (the upload has returned).
    """
    if _SIGNAL_POINT and _SIGNAL_POINT.partition(":")[0] == name:
        os.kill(os.getpid(), signal.Signals[_SIGNAL_POINT.partition(":")[2]])
