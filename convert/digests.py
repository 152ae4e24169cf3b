"""sha256 of files: the checkpoint (hashed in the background while it is converted) and a folder's files."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_CHUNK = 1 << 22


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Sha256InBackground:
    """Hash a file on the other core while we work on it (hashlib releases the GIL)."""

    def __init__(self, path: Path):
        self.digest = ""
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        self.digest = sha256_file(path)

    def result(self) -> str:
        self._thread.join()
        return self.digest
