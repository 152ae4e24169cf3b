"""The `rnaernie` typer app. Commands live one per module (`rnaernie/cli/<command>.py`) and register
themselves on `app`; what all console scripts share (`run_guarded`, `err`) is in `rnaernie.console`; the progress bar and `count`
that the commands share are here.
Heavy libraries (numpy, torch, transformers) are imported inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import sys

from rnaernie.console import new_app

app = new_app(help="Work with a converted RNAErnie folder: embeddings, type-guided classification, RNA-RNA interaction, "
                   "secondary structure (train, fold, score).")


@app.callback()
def _root() -> None:
    """Work with a converted RNAErnie folder. Exit codes: 0 success, 2 bad input or usage."""


def progress_bar(quiet: bool, description: str, unit: str = " records"):
    """A progress bar on stderr, only for a person watching a terminal (None otherwise)."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True)


def count(number: int, noun: str) -> str:
    """'1 record', '2,500 records'."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
