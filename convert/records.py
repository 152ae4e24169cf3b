"""The two records an output folder carries, by name, their readers (plain JSON; no numpy), and sha256 of files.

`conversion.json` is written by the converter (provenance), `verification.json` by the verifier
(the parity verdict). The card and the push step read them, and `--verify-only` reads the folder's
conversion.json; the checkpoint's sha256 goes into the first, every vouched file's into the second.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from convert.errors import ConversionError
from rnaernie.model import CONVERSION_RECORD  # the model side reads it too

VERIFICATION_RECORD = "verification.json"


def read_conversion_record(out_dir: Path) -> dict:
    path = Path(out_dir) / CONVERSION_RECORD
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConversionError(f"{out_dir} has no {CONVERSION_RECORD}; it was not made by rnaernie-convert. "
                              "Convert the checkpoint again into an empty folder.") from None


def read_verification(folder: Path) -> tuple[dict | None, str | None]:
    """Return (verification record or None, why the folder counts as unverified or None)."""
    path = Path(folder) / VERIFICATION_RECORD
    try:
        verification = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"has not been verified (no {VERIFICATION_RECORD})"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, f"has an unreadable {VERIFICATION_RECORD}"
    if not isinstance(verification, dict) or verification.get("verdict") not in ("pass", "fail"):
        return None, f"has a {VERIFICATION_RECORD} without a verdict"
    if verification["verdict"] != "pass":
        where = verification.get("failure") or f"first divergence at {verification.get('first_divergent_layer')}"
        return verification, f"failed verification ({where}; see {VERIFICATION_RECORD})"
    return verification, None


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
