"""The `rnaernie` typer app, and `run_guarded`: the one place where a command's exception becomes a line.

Commands live one per module (`rnaernie/cli/<command>.py`) and register themselves on `app`.
Heavy libraries (numpy, torch, transformers) are imported inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import sys
from typing import Callable

import typer

from rnaernie.errors import EXIT_OK, describe


def new_app(**settings) -> typer.Typer:
    """A typer app as every console script of the project uses it (no rich: keeps start-up fast)."""
    return typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                       rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]}, **settings)


app = new_app(help="Work with a converted RNAErnie folder: embeddings, type-guided classification, RNA-RNA interaction.")


@app.callback()
def _root() -> None:
    """Work with a converted RNAErnie folder. Exit codes: 0 success, 2 bad input or usage."""


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


def progress_bar(quiet: bool, desc: str, unit: str):
    """A tqdm bar on stderr, only for a person watching a terminal (None otherwise)."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def count(number: int, noun: str) -> str:
    """'1 record', '2,048 records'."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
