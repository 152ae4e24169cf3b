"""Read RNA records from FASTA (optionally gzipped) or one sequence a line; `-` is stdin.

Records are streamed: memory does not grow with the file. A record's id is the first word of its
FASTA header; in a plain list it is `seq<N>` (N counts records from 1). The sequence is returned as
written (lines joined, surrounding whitespace removed); the tokenizer applies the official rules.
Problems are `InputError`s naming the file and line.
"""

from __future__ import annotations

import gzip
import io
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from rnaernie.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
MAX_NUCLEOTIDES = 510  # the model reads at most [CLS] + 510 nucleotides + [SEP] = 512 positions


@dataclass(frozen=True)
class Record:
    id: str
    sequence: str


def read_records(source: str | Path, skip_empty: bool = False) -> Iterator[Record]:
    """Yield the records of `source` in file order (see the module docstring)."""
    name = "stdin" if str(source) == "-" else str(source)
    with _open_binary(source) as lines:
        yield from _parse(lines, name, skip_empty)


def _open_binary(source: str | Path) -> IO[bytes]:
    """A binary stream over the file or stdin, gunzipped when it starts with the gzip magic bytes."""
    if str(source) == "-":
        raw = sys.stdin.buffer
    else:
        path = Path(source)
        if path.is_dir():
            raise InputError(f"{path} is a folder; pass a FASTA file, a file with one sequence a line, or '-'.")
        try:
            raw = open(path, "rb")
        except FileNotFoundError:
            raise InputError(f"{path} does not exist; pass a FASTA file, a file with one sequence a line, "
                             "or '-' for stdin.") from None
    buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
    return gzip.GzipFile(fileobj=buffered) if buffered.peek(2)[:2] == GZIP_MAGIC else buffered


def _parse(lines: IO[bytes], name: str, skip_empty: bool) -> Iterator[Record]:
    fasta: bool | None = None  # decided by the first non-blank line
    header_line = 0
    current_id: str | None = None
    parts: list[str] = []
    count = 0
    try:
        for number, raw in enumerate(lines, start=1):
            line = _decode(raw, name, number).strip()
            if not line:
                continue
            if fasta is None:
                fasta = line.startswith(">")
            if not fasta:
                if line.startswith(">"):
                    raise InputError(f"{name}, line {number}: a FASTA header in a file that started with a plain "
                                     "sequence; use FASTA throughout or one sequence a line.")
                count += 1
                yield Record(f"seq{count}", line)
                continue
            if line.startswith(">"):
                if current_id is not None:
                    record = _finish(current_id, parts, name, header_line, skip_empty)
                    if record:
                        yield record
                current_id, parts, header_line = _header_id(line, name, number), [], number
            else:
                parts.append(line)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # truncated or corrupt gzip
        raise InputError(f"{name}: the gzip data is damaged ({exc}); recompress the file or "
                         "pass it uncompressed.") from None
    if current_id is not None:
        record = _finish(current_id, parts, name, header_line, skip_empty)
        if record:
            yield record
    if fasta is None:
        raise InputError(f"{name} holds no sequences; pass FASTA or one sequence a line.")


def _decode(raw: bytes, name: str, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{name}, line {number}: not UTF-8 text; pass a FASTA file or one sequence a line "
                         "(gzipped or not).") from None


def _header_id(line: str, name: str, number: int) -> str:
    words = line[1:].split()
    if not words:
        raise InputError(f"{name}, line {number}: a FASTA header without an id; write '>ID description'.")
    return words[0]


def _finish(record_id: str, parts: list[str], name: str, header_line: int, skip_empty: bool) -> Record | None:
    sequence = "".join(parts)
    if sequence:
        return Record(record_id, sequence)
    if skip_empty:
        return None
    raise InputError(f"{name}, line {header_line}: record {record_id!r} has no sequence; remove it or pass "
                     "--skip-empty.")


def batched(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    """Consecutive lists of at most `size` records (the last may be shorter), in file order."""
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
