"""Write the output folder: a streamed `model.safetensors`, JSON files, and atomic publication.

The safetensors format is an 8-byte little-endian header length, a JSON header
(`{name: {dtype, shape, data_offsets}}` plus `__metadata__`), then the raw little-endian bytes.
Writing it ourselves lets us stream tensor by tensor (one tensor in memory at a time, no torch).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import struct
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from convert.errors import OutputDirError, Terminated

SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
DTYPE_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}


def to_dtype(array: np.ndarray, dtype: str) -> np.ndarray:
    """float32 -> the output dtype as a C-contiguous array (bfloat16 as its uint16 bit pattern)."""
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


def write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def check_output_dir(out_dir: Path, force: bool) -> None:
    """Refuse an output path we must not touch, before doing any work."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputDirError(f"{out_dir} exists and is a file; choose a folder path for the output.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise OutputDirError(f"{out_dir} exists and is not empty; choose another folder or pass --force to replace it.")
    parent = out_dir.parent if str(out_dir.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputDirError(f"cannot write in {parent.resolve()}; choose a folder you can write to.")


@contextmanager
def staged_output(out_dir: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary sibling of `out_dir`; on success rename it into place, else delete it.

    Nothing appears at `out_dir` unless the whole body succeeded, including on Ctrl-C or SIGTERM.
    """
    check_output_dir(out_dir, force)
    parent = out_dir.parent

    def on_sigterm(signum, frame):
        raise Terminated()

    # installed before the staging folder exists, so no SIGTERM can land between the two
    previous = signal.signal(signal.SIGTERM, on_sigterm) if _in_main_thread() else None
    staging = None
    try:
        try:
            parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            raise OutputDirError(f"cannot write in {parent.resolve()}; choose a folder you can write to.") from None
        yield staging
        _publish(staging, out_dir)
    except BaseException as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(out_dir)  # e.g. ENOSPC from a write: say which output it was
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _publish(staging: Path, out_dir: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp made it private; give it a normal folder's mode
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    # --force over an existing folder takes two renames; hold Ctrl-C / SIGTERM between them so
    # the old folder is never moved aside without the new one taking its place
    trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    can_hold = hasattr(signal, "pthread_sigmask")  # POSIX only
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if can_hold else None
    try:
        out_dir.rename(trash / out_dir.name)
        staging.rename(out_dir)
    finally:
        if can_hold:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        shutil.rmtree(trash, ignore_errors=True)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
