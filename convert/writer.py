"""Write the output folder: a streamed `model.safetensors`, JSON files, and atomic publication.

The safetensors format is an 8-byte little-endian header length, a JSON header
(`{name: {dtype, shape, data_offsets}}` plus `__metadata__`), then the raw little-endian bytes.
Writing it ourselves lets us stream tensor by tensor (one tensor in memory at a time, no torch).
numpy is imported by the two tensor functions only: the push rewrites its card with `replace_files`
and must not pay for numpy.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from convert import interruptions
from convert.errors import ConversionError, OutputDirError
from rnaernie.output import current_umask
from rnaernie.signals import sigterm_raises

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
    """Yield a temporary sibling of `out_dir`; when the body succeeds, commit it as `out_dir`, else delete it.

    The invariant: whatever moment a SIGINT or SIGTERM arrives, either the run exits 0 and `out_dir`
    is complete, or it exits non-zero and `out_dir` is exactly as it was (with `--force` over an
    existing folder too). How each moment is covered:
    - before the commit, a signal raises KeyboardInterrupt / `Terminated` (SIGTERM is made to raise
      while this runs, if nothing else handles it); the staging folder is deleted with signals
      deferred, so a second Ctrl-C cannot leave half of it;
    - the commit (one rename; with `--force`: old folder into a trash folder, staging into place,
      trash deleted) runs with signals deferred (`convert.interruptions.deferred`), so it is never
      cut in half; if the second rename fails, the old folder is put back;
    - after the commit, a command-line run has nothing left but to exit 0 (see
      `interruptions.end_run_at_commit`); a Python caller gets the deferred KeyboardInterrupt once
      `out_dir` is complete.
    """
    check_output_dir(out_dir, force)
    parent = out_dir.parent
    staging = None
    with sigterm_raises():
        try:
            try:
                parent.mkdir(parents=True, exist_ok=True)
                with interruptions.deferred():  # a staging folder is either made and named, or not made
                    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                raise OutputDirError(f"cannot write in {parent.resolve()}; choose a folder you can write to.") from None
            yield staging
            _commit(staging, out_dir)
        except BaseException as exc:
            if staging is not None and staging.exists():
                with interruptions.deferred():
                    shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError) and exc.filename is None:
                exc.filename = str(out_dir)  # e.g. ENOSPC from a write: say which output it was
            raise


def _commit(staging: Path, out_dir: Path) -> None:
    """Make `staging` the folder `out_dir` (replacing an existing one), never leaving it half done."""
    staging.chmod(0o777 & ~current_umask())  # mkdtemp made it private; give it a normal folder's mode
    with interruptions.deferred(commit=True):
        if not out_dir.exists():
            staging.rename(out_dir)
            return
        trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        out_dir.rename(trash / out_dir.name)
        try:
            staging.rename(out_dir)
        except BaseException:
            (trash / out_dir.name).rename(out_dir)
            trash.rmdir()
            raise
        shutil.rmtree(trash, ignore_errors=True)


def replace_files(folder: Path, texts: dict[str, str], commit: bool = True) -> None:
    """Replace (or add) text files in an existing folder at once: all of them or none.

    `commit`: this is the run's commit (see `interruptions.deferred`); False when more follows (inside
    a staging folder, or the card a push is about to send).
    """
    temporary = {name: folder / f".{name}.partial" for name in texts}
    try:
        for name, text in texts.items():
            temporary[name].write_text(text, encoding="utf-8")
        with interruptions.deferred(commit=commit):
            for name in texts:
                os.replace(temporary[name], folder / name)
    finally:
        with interruptions.deferred():
            for path in temporary.values():
                path.unlink(missing_ok=True)
