"""Embedding output files, written record by record so memory does not grow with the input.

* `.npy`: float32 [N, hidden], rows in input order; pooled outputs only (numpy alone reads it).
* `.npz`: `embeddings` float32 ([N, hidden] pooled; [total nucleotides, hidden] for `--pooling none`,
  record i being rows `offsets[i]:offsets[i+1]` of `offsets` int64 [N+1]), `ids` (unicode [N]) and
  `index` int64 [N] (each record's position in the whole input: with `--shard` the slices merge by it).
* `.parquet` (needs pyarrow): one row per record, columns `index` int64, `id` string, `embedding`
  (a fixed-size list of `hidden` float32; for `--pooling none` a list of them, one per nucleotide),
  written in row groups; pandas, polars, DuckDB and Hugging Face `datasets` read it.

The writer is given the temporary path of `rnaernie.output.atomic_output`, so a failure leaves no
file; `.npz` members are staged in a scratch folder beside it and zipped at the end.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from rnaernie.embedding import Pooling
from rnaernie.errors import OutputError
from rnaernie.output import check_output_path, require_pyarrow

SUFFIXES = (".npy", ".npz", ".parquet")
_NPY_HEADER_BYTES = 128  # room for any shape: the header is rewritten in place once the row count is known
_PARQUET_ROW_GROUP_VALUES = 4 * 2**20  # float32 values buffered per row group (16 MiB)
_COPY_BYTES = 2**22


def check_embedding_output(path: Path, pooling: Pooling) -> str:
    """The output format (suffix) for `path`, or `OutputError` saying what to write instead."""
    suffix = check_output_path(path, SUFFIXES)
    if suffix == ".npy" and pooling is Pooling.NONE:
        raise OutputError(f"{Path(path).name}: .npy holds one vector per record, but --pooling none gives a matrix "
                          "per record; write .npz or .parquet instead.")
    if suffix == ".parquet":
        require_pyarrow(instead=".npz")
    return suffix


@contextmanager
def embedding_writer(path: Path, suffix: str, pooling: Pooling, hidden: int):
    """Yield a writer with `add(index, record_id, array)`; the file at `path` is complete when the block ends."""
    if suffix == ".npy":
        with open(path, "wb") as file:
            rows = _NpyStream(file, "<f4", (hidden,))
            yield _NpyWriter(rows)
            rows.finish()
    elif suffix == ".npz":
        with npz_writer(path, "embeddings", (hidden,), offsets=pooling is Pooling.NONE) as writer:
            yield writer
    else:
        writer = _embedding_parquet(path, pooling, hidden)
        try:
            yield writer
            writer.flush()
        finally:
            writer.close()


@contextmanager
def npz_writer(path: Path, name: str, row_shape: tuple[int, ...], offsets: bool):
    """Yield a writer with `add(index, record_id, array)` for an .npz of `name`, `ids`, `index` (and `offsets`).

    Each record's array is appended to `name` (rows of `row_shape`); with `offsets`, record i is rows
    `offsets[i]:offsets[i+1]`, otherwise each record is one row.
    """
    with tempfile.TemporaryDirectory(prefix=f".{Path(path).name}.scratch-", dir=Path(path).parent) as scratch:
        writer = _NpzWriter(Path(scratch), name, row_shape, offsets)
        yield writer
        writer.finish(path)


class _NpyStream:
    """A .npy file written block by block; the header's shape is filled in by `finish()`."""

    def __init__(self, file: BinaryIO, descr: str, row_shape: tuple[int, ...]):
        self.file, self.descr, self.row_shape, self.rows = file, descr, row_shape, 0
        self.start = file.tell()
        file.write(self._header(0))

    def append(self, block) -> None:
        self.file.write(block.tobytes())
        self.rows += len(block)

    def finish(self) -> None:
        end = self.file.tell()
        self.file.seek(self.start)
        self.file.write(self._header(self.rows))
        self.file.seek(end)

    def _header(self, rows: int) -> bytes:
        return npy_header(self.descr, (rows, *self.row_shape))


def npy_header(descr: str, shape: tuple[int, ...]) -> bytes:
    """A .npy version 1.0 header of fixed length, so that it can be rewritten in place."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    room = _NPY_HEADER_BYTES - 10  # magic (6), version (2), header length (2)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", room) + text.ljust(room - 1).encode("latin1") + b"\n"


class _NpyWriter:
    def __init__(self, rows: _NpyStream):
        self.rows = rows

    def add(self, index: int, record_id: str, array) -> None:
        self.rows.append(array[None, :])


class _NpzWriter:
    """Stages each member as its own stream in `scratch`, then stores them in one zip (np.load reads it)."""

    def __init__(self, scratch: Path, name: str, row_shape: tuple[int, ...], offsets: bool):
        self.scratch, self.name, self.per_token = scratch, name, offsets
        self.files = {member: open(scratch / member, "w+b") for member in (name, "ids", "index", "offsets")}
        self.values = _NpyStream(self.files[name], "<f4", row_shape)
        self.records = self.tokens = self.id_width = 0

    def add(self, index: int, record_id: str, array) -> None:
        import numpy as np

        self.values.append(array if self.per_token else array[None, :])
        encoded = record_id.encode("utf-8")
        self.files["ids"].write(struct.pack("<I", len(encoded)) + encoded)
        self.id_width = max(self.id_width, len(record_id))
        self.files["index"].write(np.int64(index).tobytes())
        if self.per_token:
            self.files["offsets"].write(np.int64(self.tokens).tobytes())
            self.tokens += len(array)
        self.records += 1

    def finish(self, path: Path) -> None:
        import numpy as np

        self.values.finish()
        if self.per_token:
            self.files["offsets"].write(np.int64(self.tokens).tobytes())
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            self._member(archive, self.name, None, None)
            self._member(archive, "ids", f"<U{max(self.id_width, 1)}", self.records, self._unicode_blocks())
            self._member(archive, "index", "<i8", self.records)
            if self.per_token:
                self._member(archive, "offsets", "<i8", self.records + 1)
        for file in self.files.values():
            file.close()

    def _member(self, archive: zipfile.ZipFile, name: str, descr: str | None, rows: int | None, blocks=None) -> None:
        source = self.files[name]
        source.seek(0)
        with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
            if descr is not None:  # a raw stream: give it a header (the values stream has its own)
                member.write(npy_header(descr, (rows,)))
            if blocks is None:
                shutil.copyfileobj(source, member, _COPY_BYTES)
            else:
                for block in blocks:
                    member.write(block)

    def _unicode_blocks(self, per_block: int = 4096) -> Iterator[bytes]:
        import numpy as np

        source = self.files["ids"]
        source.seek(0)
        block: list[str] = []
        while True:
            prefix = source.read(4)
            if prefix:
                block.append(source.read(struct.unpack("<I", prefix)[0]).decode("utf-8"))
            if block and (len(block) == per_block or not prefix):
                yield np.array(block, dtype=f"<U{max(self.id_width, 1)}").tobytes()
                block = []
            if not prefix:
                return


class ParquetWriter:
    """`add(*row)` buffers a row; about every `group_values` values (`size(row)` each), `table(rows)` makes
    them a pyarrow Table written as one row group. `close()` writes the rest."""

    def __init__(self, path: Path, schema, table: Callable[[list], object], size: Callable[[tuple], int],
                 group_values: int = _PARQUET_ROW_GROUP_VALUES):
        import pyarrow.parquet as pq

        self.file, self.table, self.size, self.group_values = pq.ParquetWriter(path, schema), table, size, group_values
        self.buffer: list[tuple] = []
        self.buffered_values = 0

    def add(self, *row) -> None:
        self.buffer.append(row)
        self.buffered_values += self.size(row)
        if self.buffered_values >= self.group_values:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.file.write_table(self.table(self.buffer))
        self.buffer, self.buffered_values = [], 0

    def close(self) -> None:
        self.file.close()


def _embedding_parquet(path: Path, pooling: Pooling, hidden: int) -> ParquetWriter:
    """Rows `add(index, record_id, array)`, buffered up to about 16 MiB of floats per row group."""
    import numpy as np
    import pyarrow as pa

    per_token = pooling is Pooling.NONE
    vector = pa.list_(pa.float32(), hidden)
    schema = pa.schema([("index", pa.int64()), ("id", pa.string()), ("embedding", pa.list_(vector) if per_token else vector)])

    def table(rows: list) -> object:
        indexes, ids, arrays = zip(*rows)
        values = pa.array(np.concatenate([a.reshape(-1) for a in arrays]), type=pa.float32())
        vectors = pa.FixedSizeListArray.from_arrays(values, hidden)
        if per_token:
            offsets = np.cumsum([0] + [len(a) for a in arrays]).astype(np.int32)
            vectors = pa.ListArray.from_arrays(pa.array(offsets), vectors)
        return pa.Table.from_arrays([pa.array(indexes, pa.int64()), pa.array(ids, pa.string()), vectors], schema=schema)

    return ParquetWriter(path, schema, table, size=lambda row: row[2].size)
