"""Errors of the model side, and `describe()`: the one place that turns an exception into a user's line.

Every error a user can cause (bad input file, unusable model folder, unwritable output) is an
`RnaernieError` whose message is a complete sentence saying what is wrong and what to do. The
converter's errors (`convert.errors`) derive from it, so both command lines report alike.
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_BAD_INPUT = 2


class RnaernieError(Exception):
    """Base class. `str(exc)` says what is wrong and what to do."""

    exit_code = EXIT_BAD_INPUT


class InputError(RnaernieError):
    """An input file (FASTA, sequence list, options) that cannot be used."""


class ModelFolderError(RnaernieError):
    """A model folder that is missing, unreadable, or lacks what the command needs."""


class OutputError(RnaernieError):
    """An output path that cannot be written (unknown extension, folder missing, no permission)."""


class Terminated(KeyboardInterrupt):
    """Raised from a SIGTERM handler, so that cleanup runs exactly as it does for Ctrl-C."""


def interruption(exc: KeyboardInterrupt) -> tuple[str, int]:
    """("terminated", 143) for SIGTERM's `Terminated`, ("interrupted", 130) for Ctrl-C."""
    return ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)


def describe(exc: BaseException, interrupted: str = "the output was left as it was") -> tuple[str, int]:
    """Return (one-line message, exit code) for any exception reaching the user.

    Project errors carry their own message. A few OS-level failures are common enough to deserve a
    sentence of their own; anything else is a bug in this tool. `interrupted` says what an
    interruption left behind.
    """
    if isinstance(exc, RnaernieError):
        return str(exc), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        what, code = interruption(exc)
        return f"{what}; {interrupted}.", code
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return f"out of disk space while writing{where}; free some space and run again.", EXIT_BAD_INPUT
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"permission denied{where}; choose a folder you can write to.", EXIT_BAD_INPUT
        return f"I/O error{where}: {exc.strerror or exc}; check the path and run again.", EXIT_BAD_INPUT
    if isinstance(exc, MemoryError):
        return "ran out of memory; close other programs or use a machine with more RAM.", EXIT_BAD_INPUT
    return (
        f"internal error ({type(exc).__name__}: {exc}); please report it with the output of --debug.",
        EXIT_BAD_INPUT,
    )
