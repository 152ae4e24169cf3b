"""The `rnaernie` typer app and the plumbing its commands share.

Commands live one per module (`rnaernie/cli/<command>.py`) and register themselves on `app`; what
all console scripts share (`run_guarded`, `err`) is in `rnaernie.console`. Here: `Progress`, `count`,
and the steps of the per-sequence JSON commands (`read_batches`, `report_written`). Heavy libraries
(numpy, torch, transformers) are imported inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from rnaernie.console import err, new_app

app = new_app(help="Work with a converted RNAErnie folder: embeddings, type-guided classification, RNA-RNA interaction, "
                   "secondary structure (train, fold, score).")


@app.callback()
def _root() -> None:
    """Work with a converted RNAErnie folder. Exit codes: 0 success, 2 bad input or usage."""


class Progress:
    """`with Progress(quiet, "embedding") as progress: progress.step()`: a bar on stderr, only for a person
    watching a terminal; `rate()` (e.g. nucleotides so far) adds a per-second rate to it."""

    def __init__(self, quiet: bool, description: str, unit: str = " records",
                 rate: Callable[[], float] | None = None, rate_unit: str = "nt/s"):
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True)
        self.rate, self.rate_unit, self.started = rate, rate_unit, time.perf_counter()

    def __enter__(self) -> Progress:
        return self

    def step(self) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if self.rate is not None:
            per_second = self.rate() / (time.perf_counter() - self.started)
            self.bar.set_postfix_str(f"{per_second:,.0f} {self.rate_unit}", refresh=False)

    def __exit__(self, *exception) -> None:
        if self.bar is not None:
            self.bar.close()


def count(number: int, noun: str) -> str:
    """'1 record', '2,500 records'."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


BATCH_SIZE = 16  # records per batch of `rnaernie classify` and `rnaernie types`


def read_batches(input: str, output: Path, skip_empty: bool, top_k: int) -> Iterator[list]:
    """Refuse a bad --top-k or output path, then open INPUT and read its first batch of records now, so
    a missing or unreadable input fails before the models load. Returns every batch, in order."""
    from rnaernie.output import check_output_path
    from rnaernie.sequences import batched, opened, read_records
    from rnaernie.type_guided import check_top_k

    check_top_k(top_k)  # the upper bound once the model's class tokens are known
    check_output_path(output, (".json",))
    return opened(batched(read_records(input, skip_empty), BATCH_SIZE))


def report_written(what: str, written: int, output: Path, seconds: float, truncated: int, limit: int) -> None:
    cut = f"; {truncated} longer than {limit} nt were cut to their first {limit}" if truncated else ""
    err(f"{what} of {written} sequences written to {output} ({seconds:.1f} s){cut}")
