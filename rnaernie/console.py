"""What every console script of the project shares (`rnaernie`, `rnaernie-convert`, `rnaernie-push`).

`new_app` makes the typer app; `run_command_line` is each script's `main`: SIGTERM stops the run
as Ctrl-C does (`rnaernie.signals`); `run_guarded` is the one place where a command's exception
becomes one stderr line and an exit code. Only typer is imported here, so `--help` is instant; the
command modules import heavy libraries inside the commands. This module lives outside
`rnaernie.cli` so that the converter's command lines use it without loading the `rnaernie` commands.
"""

from __future__ import annotations

import sys
from typing import Annotated, Callable

import typer

from rnaernie.errors import EXIT_OK, describe
from rnaernie.signals import sigterm_raises

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]  # every command has it


def new_app(**settings) -> typer.Typer:
    """A typer app as every console script of the project uses it (no rich: keeps start-up fast)."""
    return typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                       rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]}, **settings)


def run_command_line(app: typer.Typer) -> None:
    """Run `app` as this process's one command: SIGTERM raises `Terminated`, so it exits 143 with one line."""
    with sigterm_raises():
        app()


def err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_guarded(debug: bool, body: Callable[[], int | None],
                describe: Callable[[BaseException], tuple[str, int]] = describe) -> None:
    """Run `body()`; turn any exception into one stderr line and the right exit code."""
    try:
        code = body()
    except typer.Exit:
        raise
    except BaseException as exc:  # noqa: BLE001 - this is the one place that reports errors
        if debug and not isinstance(exc, KeyboardInterrupt):
            raise
        message, code = describe(exc)
        err(f"error: {message}")
    raise typer.Exit(code or EXIT_OK)
