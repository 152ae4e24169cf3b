"""Outputs that appear whole or not at all: the one way every command writes a file or a folder.

`check_output_path` / `check_output_folder` refuse an unusable path before any work starts;
`atomic_output` (a file) and `atomic_folder` (a folder) hand out a hidden temporary beside the target
and publish it with one rename when the body succeeds. Whenever a SIGINT or SIGTERM arrives, either
the output is complete or it is exactly as it was (`rnaernie.signals`): during the body the signal
raises and the temporary is deleted (signals deferred); making and publishing the temporary run with
signals deferred. Replacing a non-empty folder (`replace=True`) moves the old one into a trash folder,
renames the new one into place (putting the old one back if that fails), then deletes the trash.
Missing parent folders are created, as `mkdir -p` would.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from rnaernie.errors import OutputError
from rnaernie.signals import deferred, sigterm_raises


def check_output_path(path: Path, suffixes: tuple[str, ...]) -> str:
    """Return the output format (its suffix, e.g. ".npy") or raise `OutputError` saying what to do."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise OutputError(f"cannot tell the output format from {path.name!r}; end the file name with "
                          f"{', '.join(suffixes)}.")
    if path.is_dir():
        raise OutputError(f"{path} is a folder; pass a file path with -o.")
    _check_parent(path)
    return suffix


def check_output_folder(path: Path, replace: bool = False, replace_option: str = "") -> None:
    """Refuse an output folder that `atomic_folder` could not publish, before any work starts.

    A non-empty folder is refused unless `replace`; `replace_option` names the command's option that
    allows it (e.g. "--force"), for the message.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} exists and is a file; choose a folder path for the output.")
    if path.is_dir() and not replace and any(path.iterdir()):
        remedy = f"pass {replace_option} to replace it" if replace_option else "remove it first"
        raise OutputError(f"{path} exists and is not empty; choose another folder or {remedy}.")
    _check_parent(path)


def require_pyarrow(instead: str) -> None:
    """Writing .parquet needs pyarrow: refuse before any work, naming the format to write `instead`."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise OutputError("writing .parquet needs pyarrow; pip install 'rnaernie-convert[embed]' (or pyarrow), "
                          f"or write {instead}.") from None


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; it becomes `path` (replacing a file there) if the body succeeds."""
    path = Path(path)

    def make(parent: Path) -> Path:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.partial-", suffix=path.suffix, dir=parent)
        os.close(handle)
        return Path(temporary)

    def publish(temporary: Path) -> None:
        temporary.chmod(0o666 & ~current_umask())  # mkstemp made it private; give it a normal file's mode
        os.replace(temporary, path)

    with _staged(path, make, publish) as temporary:
        yield temporary


@contextmanager
def atomic_folder(path: Path, replace: bool = False, replace_option: str = "") -> Iterator[Path]:
    """Yield a hidden staging folder beside `path`; it becomes `path` if the body succeeds.

    `path` must not exist or be an empty folder, unless `replace` (see `check_output_folder`).
    """
    path = Path(path)
    check_output_folder(path, replace, replace_option)

    def make(parent: Path) -> Path:
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=parent))

    def publish(staging: Path) -> None:
        staging.chmod(0o777 & ~current_umask())  # mkdtemp made it private; give it a normal folder's mode
        if not path.is_dir() or not any(path.iterdir()):
            os.replace(staging, path)  # a rename replaces an empty folder in one step
            return
        trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        path.rename(trash / path.name)
        try:
            staging.rename(path)
        except BaseException:
            (trash / path.name).rename(path)
            trash.rmdir()
            raise
        shutil.rmtree(trash, ignore_errors=True)

    with _staged(path, make, publish) as staging:
        yield staging


@contextmanager
def _staged(path: Path, make: Callable[[Path], Path], publish: Callable[[Path], None]) -> Iterator[Path]:
    """The one staging protocol behind `atomic_output` and `atomic_folder` (see the module's docstring)."""
    parent = path.parent
    temporary = None
    with sigterm_raises():
        try:
            try:
                parent.mkdir(parents=True, exist_ok=True)
                with deferred():  # a temporary is either made and named, or not made
                    temporary = make(parent)
            except OSError as exc:  # name the user's folder, not the temporary
                raise OutputError(f"cannot write in {parent} ({exc.strerror}); choose a folder you can "
                                  "write to.") from None
            yield temporary
            with deferred(commit=True):
                publish(temporary)
        except BaseException as exc:
            if temporary is not None and temporary.exists():
                with deferred():
                    _remove(temporary)
            if isinstance(exc, OSError) and exc.filename is None:
                exc.filename = str(path)  # e.g. ENOSPC from a write: say which output it was
            raise


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _check_parent(path: Path) -> None:
    """The nearest existing ancestor of `path` must be a folder this process can write in."""
    ancestor = Path(os.path.abspath(path)).parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"{ancestor} is a file, so {path} cannot be made; choose another output path.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in {ancestor}; choose a folder you can write to.")


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    current = os.umask(0)
    os.umask(current)
    return current


def write_text(path: Path, text: str) -> None:
    """Write a small text file whole or not at all."""
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json_list(path: Path, items: Iterable[dict]) -> int:
    """Write `items` as a JSON list, one item a line, streamed and atomic; return how many were written."""
    with atomic_output(path) as temporary, JsonList(temporary) as out:
        for item in items:
            out.write(item)
    return out.count


class JsonList:
    """`with JsonList(path) as out: out.write(item)`: a JSON list streamed one item a line."""

    def __init__(self, path: Path):
        self.path, self.count = path, 0

    def __enter__(self) -> JsonList:
        self.handle = open(self.path, "w", encoding="utf-8")
        self.handle.write("[")
        return self

    def write(self, item: dict) -> None:
        self.handle.write(("\n" if not self.count else ",\n") + json.dumps(item, ensure_ascii=False))
        self.count += 1

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.handle.write("\n]\n" if self.count else "]\n")
        self.handle.close()
