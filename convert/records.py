"""The two records an output folder carries, their readers, and the verdict bound to the folder's bytes.

`conversion.json` is written by the converter (provenance, with the checkpoint's sha256),
`verification.json` by the verifier (the parity verdict). The card and the push step read them, and
`--verify-only` reads the folder's conversion.json. The verdict records the sha256 of every file it
vouches for: every file a push would send (hidden paths aside), except the verdict itself and the card
the verifier rewrites with it; `changed_since_verification` tells whether the folder is still the one
verified. Light on purpose (json, hashlib): the push runs it before anything else.
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


CARD = "README.md"
NOT_VOUCHED = (VERIFICATION_RECORD, CARD)  # written together by the verifier, after the files it vouches for
FILES_KEY = "files"  # verification.json: {relative path: sha256}


def vouched_files(folder: Path) -> list[str]:
    """Relative paths (posix) of the files a verdict of `folder` vouches for."""
    names = []
    for path in sorted(Path(folder).rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            if relative.as_posix() not in NOT_VOUCHED:
                names.append(relative.as_posix())
    return names


def folder_digests(folder: Path) -> dict[str, str]:
    return {name: sha256_file(Path(folder) / name) for name in vouched_files(folder)}


def changed_since_verification(folder: Path, verification: dict) -> str | None:
    """Why `folder` is not the folder `verification` vouches for (a phrase naming the file), or None."""
    recorded = verification.get(FILES_KEY)
    if not isinstance(recorded, dict) or not recorded:
        return (f"has a {VERIFICATION_RECORD} that does not record its files' sha256 (written by an older "
                "rnaernie-convert), so it cannot show the folder is the one verified")
    current = vouched_files(folder)
    for name in sorted(recorded):
        if name not in current:
            return f"changed since verification ({name} was removed)"
        if sha256_file(Path(folder) / name) != recorded[name]:
            return f"changed since verification ({name} is not the file that was verified)"
    added = [name for name in current if name not in recorded]
    if added:
        return f"changed since verification ({added[0]} was added)"
    return None
