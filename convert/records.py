"""The two records an output folder carries, by name, and their readers (plain JSON; no numpy).

`conversion.json` is written by the converter (provenance), `verification.json` by the verifier
(the parity verdict). The verifier, the card and the push step read them.
"""

from __future__ import annotations

import json
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
