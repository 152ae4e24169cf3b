"""Load a converted folder (or a Hub id) with stock transformers, ready for inference.

One place decides the device (`auto`: CUDA, then Apple MPS, then CPU), puts the model in eval
mode (dropout off: forgetting `eval()` makes embeddings random) and turns loading failures into
one `ModelFolderError` line. torch and transformers are imported here, not at module import time.
The settings a side file records for its network (interaction head, structure network) are written
and read here too, once for every kind.
"""

from __future__ import annotations

import re
from pathlib import Path

from rnaernie.errors import ModelFolderError

CONVERSION_RECORD = "conversion.json"  # every converted folder's provenance record, written by rnaernie-convert
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "float16", "bfloat16")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


def pick_device(device: str = "auto") -> str:
    import torch

    if device not in DEVICES:
        raise ModelFolderError(f"--device {device!r} is not known; use one of {', '.join(DEVICES)}.")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if not available[device]:
        raise ModelFolderError(f"--device {device} is not available on this machine; use --device auto or cpu.")
    return device


def resolve_model(model: str | Path) -> str:
    """A local folder path, or a Hub id; refuse what is neither with a line saying what to pass."""
    path = Path(model)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelFolderError(f"{path} has no config.json, so it is not a converted model folder; pass a folder "
                                   "made by rnaernie-convert.")
        return str(path)
    if path.exists():
        raise ModelFolderError(f"{path} is a file; pass the folder made by rnaernie-convert (or a Hub id).")
    # ORG/NAME is a Hub id unless ORG is a folder here (then it is a mistyped local path)
    if _HUB_ID.fullmatch(str(model)) and not path.parent.is_dir():
        return str(model)
    raise ModelFolderError(f"model folder {model} does not exist; pass a folder made by rnaernie-convert or a "
                           "Hub id such as ORG/NAME.")


def declared_architectures(model: str | Path) -> list[str] | None:
    """The architectures a local folder's config.json names, read before loading anything (None: unknown yet)."""
    import json

    try:
        config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return architectures if isinstance(architectures, list) else None


def load(model: str | Path, auto_class: str = "AutoModel", device: str = "auto", dtype: str = "float32"):
    """(tokenizer, model) from a converted folder or Hub id; the model in eval mode on `device`."""
    import torch
    import transformers

    if dtype not in DTYPES:
        raise ModelFolderError(f"--dtype {dtype!r} is not known; use one of {', '.join(DTYPES)}.")
    where = resolve_model(model)
    target = pick_device(device)
    transformers.logging.set_verbosity_error()  # load reports would drown the command's own output
    transformers.logging.disable_progress_bar()
    import huggingface_hub

    huggingface_hub.utils.logging.set_verbosity_error()  # its retry chatter would too
    from safetensors import SafetensorError

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(where)
        loaded = getattr(transformers, auto_class).from_pretrained(where)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:  # a damaged weights file is a SafetensorError
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFolderError(f"cannot load {model} ({first_line}); pass a folder made by rnaernie-convert, or a "
                               "Hub id that is reachable (offline: a local folder).") from None
    loaded = loaded.to(device=target, dtype=getattr(torch, dtype)).eval()
    return tokenizer, loaded


def settings_metadata(file_format: str, version: str, settings: dict) -> dict[str, str]:
    """The safetensors metadata of a side file holding a network: its format, version and the settings the
    network is built from (`read_side_file_settings` reads them back)."""
    import json

    return {"format": file_format, "format_version": version, "settings": json.dumps(settings, sort_keys=True)}


def read_side_file_settings(folder: str | Path, side_file: str, file_format: str, version: str, *, kind: str,
                            contents: str, how: str) -> dict:
    """The settings recorded in a folder's side file, or one `ModelFolderError` saying what to do. `kind`
    names the folder ("a converted structure model"), `contents` the file's network ("a structure
    network"), `how` how to make such a folder."""
    import json

    from safetensors import SafetensorError, safe_open

    path = Path(folder) / side_file
    if not path.is_file():
        raise ModelFolderError(f"{folder} has no {side_file}, so it is not {kind}; {how}.")
    try:
        with safe_open(str(path), "np") as handle:
            meta = handle.metadata() or {}
    except (OSError, SafetensorError) as exc:
        raise ModelFolderError(f"cannot read {path} ({exc}); convert the checkpoint again with "
                               "rnaernie-convert.") from None
    if meta.get("format") != file_format or meta.get("format_version") != version:
        raise ModelFolderError(f"{path} is not {contents} this version reads (format {meta.get('format')!r} version "
                               f"{meta.get('format_version')!r}); convert the checkpoint again with the current "
                               "rnaernie-convert.")
    try:
        settings = json.loads(meta["settings"])
    except (KeyError, ValueError):
        settings = None
    if not isinstance(settings, dict):
        raise ModelFolderError(f"{path} has no readable settings; convert the checkpoint again.")
    return settings
