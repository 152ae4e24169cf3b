"""The verdict bound to the folder's bytes: verification.json records the sha256 of every file it vouches for.

Those are every file of the folder a push would send (hidden paths aside), except the verdict
itself and the model card the verifier rewrites with it: the weights, the config, the tokenizer
files, side files and `conversion.json`. `changed_since_verification` tells whether the folder
is still the one verified. Light on purpose (hashlib only): the push runs it before anything else.
"""

from __future__ import annotations

from pathlib import Path

from convert.records import VERIFICATION_RECORD, sha256_file

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
