"""The project's error types, and the one place that turns any exception into a user-facing line.

Python API users catch `ConversionError` (every bad-input problem) and `ParityError` (the
verifier found a mismatch). The CLI calls `describe(exc)` to get the message and exit code.
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_PARITY = 1
EXIT_BAD_INPUT = 2


class RnaernieConvertError(Exception):
    """Base class. `str(exc)` is a complete sentence saying what is wrong and what to do."""

    exit_code = EXIT_BAD_INPUT


class ConversionError(RnaernieConvertError):
    """Bad input or usage: the file, the config, the vocab or the output folder."""


class CheckpointFormatError(ConversionError):
    """The checkpoint is not a readable `.pdparams` state dict (wrong format, truncated, ...)."""


class UnsafeCheckpointError(CheckpointFormatError):
    """The pickle asks for something outside the allowlist: it may try to run code."""


class ConfigError(ConversionError):
    """`model_config.json` / `config.json` is missing, malformed or disagrees with the weights."""


class MappingError(ConversionError):
    """Weights that cannot be mapped: unknown, missing, mis-shaped or non-finite tensors."""

    def __init__(self, problems: list[str], checkpoint: str = "the checkpoint"):
        self.problems = problems
        shown = "; ".join(problems[:8])
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        super().__init__(
            f"{checkpoint} does not match the RNAErnie layout: {shown}{more}. "
            "Check that this is an RNAErnie/ERNIE checkpoint and that its config matches it."
        )


class OutputDirError(ConversionError):
    """The output folder cannot be used (exists, is a file, not writable)."""


class MissingDependencyError(ConversionError):
    """An optional dependency (Paddle, torch, transformers, huggingface_hub) is not installed."""


class HubError(ConversionError):
    """Pushing to the Hugging Face Hub failed; nothing is claimed to have been pushed."""


class ParityError(RnaernieConvertError):
    """The converted model does not reproduce the original within tolerance."""

    exit_code = EXIT_PARITY


class Terminated(KeyboardInterrupt):
    """Raised from the SIGTERM handler, so that cleanup runs exactly as it does for Ctrl-C."""


def describe(exc: BaseException) -> tuple[str, int]:
    """Return (one-line message, exit code) for any exception reaching the user.

    Project errors carry their own message. A few OS-level failures are common enough
    to deserve a sentence of their own; anything else is a bug in this tool.
    """
    if isinstance(exc, RnaernieConvertError):
        return str(exc), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        what, code = ("terminated", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        return f"{what}; the output folder was left as it was (a push may or may not have completed).", code
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
