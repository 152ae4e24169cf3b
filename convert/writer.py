"""Write the output folder: a streamed `model.safetensors`, JSON files, and atomic publication.

The safetensors format is an 8-byte little-endian header length, a JSON header
(`{name: {dtype, shape, data_offsets}}` plus `__metadata__`), then the raw little-endian bytes.
Writing it ourselves lets us stream tensor by tensor (one tensor in memory at a time, no torch).
numpy is imported by the two tensor functions only: the push rewrites its card with `replace_files`
and must not pay for numpy.
"""

from __future__ import annotations

import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from convert.errors import ConversionError
from rnaernie.output import atomic_folder, check_output_folder
from rnaernie.signals import deferred

if TYPE_CHECKING:
    import numpy as np

SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
DTYPE_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}


def to_dtype(array: np.ndarray, dtype: str) -> np.ndarray:
    """float32 -> the output dtype as a C-contiguous array (bfloat16 as its uint16 bit pattern)."""
    import numpy as np

    array = np.asarray(array, dtype=np.float32)
    if dtype == "float32":
        return np.ascontiguousarray(array)
    if dtype == "float16":
        return np.ascontiguousarray(array, dtype=np.float16)
    # bfloat16: the top 16 bits of float32, rounded to nearest even (NaN is not expected here:
    # the mapper refuses non-finite weights).
    bits = np.ascontiguousarray(array).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)


def write_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], dtype: str,
                      produce: Callable[[str], np.ndarray], metadata: dict[str, str],
                      on_tensor: Callable[[str], None] | None = None) -> int:
    """Write tensors named in `shapes` (in that order), asking `produce(name)` for each one.

    The header is written first from the planned shapes, so at most two tensors are in memory
    at a time (the one being written and the next, being prepared). Returns the bytes written.
    """
    import numpy as np

    header: dict[str, object] = {"__metadata__": metadata}
    offset = 0
    for name, shape in shapes.items():
        size = int(np.prod(shape, dtype=np.int64)) * DTYPE_ITEMSIZE[dtype]
        header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)  # data starts 8-byte aligned

    def prepare(name: str) -> np.ndarray:
        data = to_dtype(produce(name), dtype)
        if data.shape != tuple(shapes[name]):
            raise AssertionError(f"{name}: produced {data.shape}, planned {shapes[name]}")
        return data.astype(data.dtype.newbyteorder("<"), copy=False)

    names = list(shapes)
    # One worker prepares the next tensor (transpose, cast) while this thread writes the current
    # one: numpy copies and file writes both release the GIL, so the two overlap on two cores.
    with open(path, "wb") as handle, ThreadPoolExecutor(max_workers=1) as worker:
        handle.write(struct.pack("<Q", len(header_bytes)))
        handle.write(header_bytes)
        upcoming = worker.submit(prepare, names[0]) if names else None
        for index, name in enumerate(names):
            data = upcoming.result()
            if index + 1 < len(names):
                upcoming = worker.submit(prepare, names[index + 1])
            handle.write(data.data)
            if on_tensor:
                on_tensor(name)
    return 8 + len(header_bytes) + offset


def json_text(obj: object) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def write_json(path: Path, obj: object) -> None:
    path.write_text(json_text(obj), encoding="utf-8")


def check_dtype(dtype: str) -> None:
    if dtype not in SAFETENSORS_DTYPES:
        raise ConversionError(f"--dtype {dtype!r} is not supported; use one of {', '.join(SAFETENSORS_DTYPES)}.")


def check_output_dir(out_dir: Path, force: bool) -> None:
    """Refuse an output path we must not touch, before doing any work (`rnaernie.output`)."""
    check_output_folder(out_dir, replace=force, replace_option="--force")


@contextmanager
def staged_output(out_dir: Path, force: bool) -> Iterator[Path]:
    """`with staged_output(OUT_DIR, force) as staging:` the one atomic folder (`rnaernie.output.atomic_folder`).

    Its publication is the run's commit: a command-line run that declared `end_run_at_commit` exits 0
    once OUT_DIR is complete, whatever signal arrives from then on.
    """
    with atomic_folder(out_dir, replace=force, replace_option="--force") as staging:
        yield staging


def replace_files(folder: Path, texts: dict[str, str], commit: bool = True) -> None:
    """Replace (or add) text files in an existing folder at once: all of them or none.

    `commit`: this is the run's commit (see `rnaernie.signals.deferred`); False when more follows (inside
    a staging folder, or the card a push is about to send).
    """
    temporary = {name: folder / f".{name}.partial" for name in texts}
    try:
        for name, text in texts.items():
            temporary[name].write_text(text, encoding="utf-8")
        with deferred(commit=commit):
            for name in texts:
                os.replace(temporary[name], folder / name)
    finally:
        with deferred():
            for path in temporary.values():
                path.unlink(missing_ok=True)
