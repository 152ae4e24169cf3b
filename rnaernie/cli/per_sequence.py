"""The steps `rnaernie classify` and `rnaernie types` share: one JSON item per input sequence.

Everything the user can get wrong cheaply (--top-k, the output path, the input file) is checked
before a model loads; the summary line says how many sequences were written and how many were cut.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

from rnaernie.console import err

BATCH_SIZE = 16


def read_batches(input: str, output: Path, skip_empty: bool, top_k: int) -> Iterator[list]:
    """Refuse a bad --top-k or output path, then open INPUT and read its first batch of records now, so
    a missing or unreadable input fails before the models load. Returns every batch, in order."""
    from rnaernie.output import check_output_path
    from rnaernie.sequences import batched, read_records
    from rnaernie.type_guided import check_top_k

    check_top_k(top_k)  # the upper bound once the model's class tokens are known
    check_output_path(output, (".json",))
    batches = batched(read_records(input, skip_empty), BATCH_SIZE)
    first = next(batches)
    return itertools.chain([first], batches)


def report_written(what: str, count: int, output: Path, seconds: float, truncated: int, limit: int) -> None:
    cut = f"; {truncated} longer than {limit} nt were cut to their first {limit}" if truncated else ""
    err(f"{what} of {count} sequences written to {output} ({seconds:.1f} s){cut}")
