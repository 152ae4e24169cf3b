"""The converter's error types, and `describe`: any exception as a user-facing line and exit code.

Python API users catch `ConversionError` (every bad-input problem) and `ParityError` (the
verifier found a mismatch). The CLI calls `describe(exc)` to get the message and exit code.
"""

from __future__ import annotations

from rnaernie.errors import EXIT_OK, RnaernieError  # noqa: F401 - EXIT_OK: the CLIs' exit code, from here
from rnaernie.errors import describe as describe_any

EXIT_PARITY = 1


class RnaernieConvertError(RnaernieError):
    """Base class of the converter's errors. `str(exc)` says what is wrong and what to do."""


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


class NotConvertibleError(ConversionError):
    """A model the registry recognises that is not converted as given (a kind without an encoder of its own,
    given no `--backbone`: `convert.kinds.Backbone`); nothing is written."""

    def __init__(self, source: str, description: str, reason: str):
        self.description, self.reason = description, reason
        super().__init__(f"{source} is {description}; it is not converted alone: {reason}.")


class OutputDirError(ConversionError):
    """The output folder cannot be used (exists, is a file, not writable)."""


class MissingDependencyError(ConversionError):
    """An optional dependency (Paddle, torch, transformers, huggingface_hub) is not installed."""


class HubError(ConversionError):
    """Pushing to the Hugging Face Hub failed; nothing is claimed to have been pushed."""


class PushInterrupted(HubError):
    """Ctrl-C (exit code 130) or SIGTERM (143) during a push; the message says what the Hub now holds."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class ReleaseInterrupted(RnaernieConvertError):
    """Ctrl-C (exit code 130) or SIGTERM (143) during a release walk; the message says which folders stay."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class ParityError(RnaernieConvertError):
    """The converted model does not reproduce the original within tolerance. `verification`: the record;
    `result`: the folder written all the same (a `convert.pipeline.ConversionResult`), from `convert_and_verify`."""

    exit_code = EXIT_PARITY

    def __init__(self, message: str, verification: dict | None = None, result=None):
        super().__init__(message)
        self.verification, self.result = verification, result


def describe(exc: BaseException) -> tuple[str, int]:
    """Return (one-line message, exit code) for any exception reaching the user (see `rnaernie.errors`)."""
    return describe_any(exc, interrupted="the output folder was left as it was (a push may or may not have completed)")
