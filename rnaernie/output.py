"""Output files that appear whole or not at all.

`check_output_path` refuses an unusable path before any work starts; `atomic_output` hands out a
hidden temporary file beside the target and renames it into place only when the body succeeded,
so an error, Ctrl-C or SIGTERM leaves no half-written output (and an existing file untouched).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from rnaernie.errors import OutputError
from rnaernie.signals import sigterm_raises


def check_output_path(path: Path, suffixes: tuple[str, ...]) -> str:
    """Return the output format (its suffix, e.g. ".npy") or raise `OutputError` saying what to do."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise OutputError(f"cannot tell the output format from {path.name!r}; end the file name with "
                          f"{', '.join(suffixes)}.")
    if path.is_dir():
        raise OutputError(f"{path} is a folder; pass a file path with -o.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"folder {parent} does not exist; create it or choose another output path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in {parent}; choose a folder you can write to.")
    return suffix


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` if the body succeeds, else delete it."""
    path = Path(path)
    with sigterm_raises():
        try:
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.partial-", suffix=path.suffix, dir=path.parent)
        except OSError as exc:  # name the user's path, not the temporary one
            raise OutputError(f"cannot write {path} ({exc.strerror}); choose a folder you can write to.") from None
        os.close(handle)
        temporary = Path(temporary)
        try:
            yield temporary
            temporary.chmod(0o666 & ~current_umask())  # mkstemp made it private; give it a normal file's mode
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    current = os.umask(0)
    os.umask(current)
    return current


def write_json_list(path: Path, items: Iterable[dict]) -> int:
    """Write `items` as a JSON list, one item a line, streamed and atomic; return how many were written."""
    count = 0
    with atomic_output(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write("[")
        for count, item in enumerate(items, start=1):
            handle.write(("\n" if count == 1 else ",\n") + json.dumps(item, ensure_ascii=False))
        handle.write("\n]\n" if count else "]\n")
    return count
