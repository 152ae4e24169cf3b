"""Read RNA records from FASTA (optionally gzipped) or one sequence a line; `-` is stdin.

Records are streamed: memory does not grow with the file. A record's id is the first word of its
FASTA header and its `description` the rest of the header (the nRC files put the class there); in a
plain list the id is `seq<N>` (N counts records from 1). The sequence is returned as
written (lines joined, surrounding whitespace removed); the tokenizer applies the official rules.
Problems are `InputError`s naming the file and line.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import sys
import zlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Iterable, Iterator, NamedTuple, TypeVar

from rnaernie.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
MAX_NUCLEOTIDES = 510  # the model reads at most [CLS] + 510 nucleotides + [SEP] = 512 positions


T = TypeVar("T")


@dataclass(frozen=True)
class Record:
    id: str
    sequence: str
    description: str = ""


def read_records(source: str | Path, skip_empty: bool = False) -> Iterator[Record]:
    """Yield the records of `source` in file order (see the module docstring)."""
    name = "stdin" if str(source) == "-" else str(source)
    with _open_binary(source) as lines:
        yield from _parse(lines, name, skip_empty)


def read_table(source: str | Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()
               ) -> Iterator[tuple[dict[str, str], str]]:
    """Stream the rows of a CSV or TSV file (`-`: stdin) as ({column: stripped value}, where-for-messages).

    The first line names the columns (`columns` must all be there; `optional` ones are kept when
    present); the delimiter is that line's: a tab if it has one, else a comma. Blank rows are skipped.
    """
    name = "stdin" if str(source) == "-" else str(source)
    needs = ",".join(columns) + (f" ({', '.join(optional)} optional)" if optional else "")
    try:
        handle = (io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", newline="") if str(source) == "-"
                  else open(source, encoding="utf-8", newline=""))
    except FileNotFoundError:
        raise InputError(f"{name} does not exist; pass a CSV or TSV file with columns {needs}.") from None
    except OSError as exc:
        raise InputError(f"cannot read {name} ({exc.strerror}); pass a CSV or TSV file with columns {needs}.") from None
    reader = None
    with handle:
        try:
            header_line = handle.readline()
            delimiter = "\t" if "\t" in header_line else ","
            header = [column.strip() for column in next(csv.reader([header_line], delimiter=delimiter), [])]
            missing = [column for column in columns if column not in header]
            if missing:
                raise InputError(f"{name}, line 1: no column {', '.join(missing)} (found: {', '.join(header) or 'nothing'});"
                                 f" the first line must name the columns {needs}.")
            position = {column: header.index(column) for column in (*columns, *optional) if column in header}
            reader = csv.reader(handle, delimiter=delimiter)
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                where = f"{name}, line {reader.line_num + 1}"
                if len(row) != len(header):
                    raise InputError(f"{where} has {len(row)} fields, the header {len(header)}; fix the row (a "
                                     f"{'tab' if delimiter == chr(9) else 'comma'} inside a value needs quotes).")
                yield {column: row[index].strip() for column, index in position.items()}, where
        except UnicodeDecodeError:
            raise InputError(f"{name} is not UTF-8 text; pass a CSV or TSV file with columns {needs}.") from None
        except csv.Error as exc:
            line = reader.line_num + 1 if reader is not None else 1
            raise InputError(f"{name}, line {line}: {exc}; fix the quoting.") from None


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
    description = ""
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
                    record = _finish(current_id, description, parts, name, header_line, skip_empty)
                    if record:
                        yield record
                (current_id, description), parts, header_line = parse_header(line[1:], f"{name}, line {number}"), [], number
            else:
                parts.append(line)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:  # truncated or corrupt gzip
        raise InputError(f"{name}: the gzip data is damaged ({exc}); recompress the file or "
                         "pass it uncompressed.") from None
    if current_id is not None:
        record = _finish(current_id, description, parts, name, header_line, skip_empty)
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


def parse_header(header: str, where: str) -> tuple[str, str]:
    """(id, description) of a FASTA header (the text after '>'); `where` names the file and line."""
    words = header.split(maxsplit=1)
    if not words:
        raise InputError(f"{where}: a FASTA header without an id; write '>ID description'.")
    return words[0], words[1].strip() if len(words) > 1 else ""


def _finish(record_id: str, description: str, parts: list[str], name: str, header_line: int,
            skip_empty: bool) -> Record | None:
    sequence = "".join(parts)
    if sequence:
        return Record(record_id, sequence, description)
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


def opened(items: Iterator[T]) -> Iterator[T]:
    """`items` with its first item read now: a missing or malformed input fails before a model loads."""
    first = next(items, None)
    return itertools.chain([first], items) if first is not None else iter(())


class Shard(NamedTuple):
    """`--shard K/N`: records K-1, K-1+N, K-1+2N, ... (K from 1), N deterministic slices of the whole input."""

    k: int = 1
    n: int = 1

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        """'K/N' -> Shard(K, N) with 1 <= K <= N; None -> the whole input."""
        if text is None:
            return cls()
        try:
            k, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise InputError(f"--shard {text!r} is not K/N; write e.g. --shard 3/8 for the third of 8 slices.") from None
        if not 1 <= k <= n:
            raise InputError(f"--shard {text}: K must be between 1 and N; write e.g. --shard 1/{max(n, 1)}.")
        return cls(k, n)

    def select(self, items: Iterable[T]) -> Iterator[T]:
        return itertools.islice(items, self.k - 1, None, self.n)

    def index(self, position: int) -> int:
        """The input position of this shard's `position`-th item (from 0)."""
        return position * self.n + self.k - 1

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"


class LongMode(str, Enum):
    """`--long`: what a command does with a record longer than the model reads (510 nucleotides)."""

    TRUNCATE = "truncate"  # read the first 510
    CHUNK = "chunk"  # read windows of 510
    ERROR = "error"  # stop, naming the record

    @classmethod
    def parse(cls, text: str, allowed: tuple[LongMode, ...] = ()) -> LongMode:
        allowed = allowed or tuple(cls)
        if text not in [mode.value for mode in allowed]:
            raise InputError(f"--long {text!r} is not known; use one of {', '.join(m.value for m in allowed)}.")
        return cls(text)

    def check(self, record_id: str, length: int, limit: int = MAX_NUCLEOTIDES) -> None:
        """Refuse a record over `limit` nucleotides in ERROR mode, saying what to do."""
        if self is LongMode.ERROR and length > limit:
            raise InputError(f"record {record_id!r} has {length} nucleotides, more than the model's {limit}; pass "
                             f"--long truncate (first {limit}) or --long chunk (windows of {limit}), or shorten it.")

    def window_starts(self, length: int, limit: int = MAX_NUCLEOTIDES) -> range:
        """Where the windows read of a record of `length` nucleotides start (each at most `limit` long)."""
        return range(0, length, limit) if self is LongMode.CHUNK else range(1)
