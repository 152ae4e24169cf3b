"""The side file `type_guided.safetensors`: the vocabulary rows the conversion drops, kept for type guidance.

The converted vocabulary leaves out `[IND]` and the ncRNA class tokens, so their rows are not in
`model.safetensors`. RNAErnie's type-guided classification needs them: the pre-trained masked LM
names likely classes at the position after `[IND]` (decoder rows and bias of the class tokens),
and a classifier fine-tuned that way reads `[IND]` and a class token as input (input rows). The
converter writes those rows here; plain `from_pretrained` never opens this file.

Format (safetensors, always float32, the source's values):
- `input_embeddings.ind` [H], `input_embeddings.classes` [N, H]: rows of the input embedding;
- masked-LM checkpoints only: `mlm_decoder.classes` [N, H] and `mlm_decoder_bias.classes` [N];
- metadata: `format` = "rnaernie-type-guided-rows", `format_version` = "1", `ind_token`,
  `class_tokens` (JSON list of the N class-token names, in the source vocabulary's order and spelling),
  `source_ids` (JSON object: token -> id in the source vocabulary).

This module only names the format and reads it (with numpy: no torch, so a bad file fails fast).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rnaernie.errors import ModelFolderError
from rnaernie.model import CONVERSION_RECORD

if TYPE_CHECKING:
    import numpy as np

SIDE_FILE = "type_guided.safetensors"
FORMAT = "rnaernie-type-guided-rows"
FORMAT_VERSION = "1"
IND_TOKEN = "[IND]"
INPUT_IND = "input_embeddings.ind"
INPUT_CLASSES = "input_embeddings.classes"
DECODER_CLASSES = "mlm_decoder.classes"
DECODER_BIAS_CLASSES = "mlm_decoder_bias.classes"
RECORD_KEY = "type_guided"  # the entry of conversion.json that describes the side file
REINSTALL_HINT = "convert the Paddle checkpoint again with the current rnaernie-convert"


@dataclass(frozen=True)
class TypeGuidedRows:
    """The kept rows of one converted folder (float32 numpy arrays)."""

    class_tokens: tuple[str, ...]
    input_ind: np.ndarray  # [H]
    input_classes: np.ndarray  # [N, H]
    decoder_classes: np.ndarray | None = None  # [N, H], masked-LM folders only
    decoder_bias: np.ndarray | None = None  # [N]
    source_ids: dict | None = None  # token -> id in the source vocabulary (the metadata's `source_ids`)

    @property
    def hidden_size(self) -> int:
        return int(self.input_ind.shape[0])

    def class_index(self, token: str) -> int:
        return self.class_tokens.index(token)


def side_file_metadata(class_tokens: tuple[str, ...], source_ids: dict[str, int]) -> dict[str, str]:
    """The side file's safetensors metadata (the converter writes it, `read_type_guided_rows` checks it)."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "ind_token": IND_TOKEN,
            "class_tokens": json.dumps(list(class_tokens)), "source_ids": json.dumps(source_ids)}


def read_type_guided_rows(model: str | Path) -> TypeGuidedRows:
    """Read the side file of a converted folder (or Hub id); any problem is one `ModelFolderError` line."""
    return _read(_locate(model))


def _locate(model: str | Path) -> Path:
    from rnaernie.model import resolve_model

    folder = Path(resolve_model(model))  # a converted folder, or else a Hub id
    if folder.is_dir():
        path = folder / SIDE_FILE
        if path.is_file():
            return path
        raise ModelFolderError(_missing_message(str(model), _local_record(folder)))
    return _download(str(model))


def _local_record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / CONVERSION_RECORD).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _missing_message(where: str, record: dict | None) -> str:
    """Why the side file is absent: an older conversion (reconvert) or a removed file (restore it)."""
    if record is not None and RECORD_KEY not in record:
        version = record.get("tool_version", "an older version")
        return (f"{where} was converted by rnaernie-convert {version}, before the rows of {IND_TOKEN} and the class "
                f"tokens were kept ({SIDE_FILE}); {REINSTALL_HINT} to use type-guided classification.")
    if record is not None:
        return (f"{where} has no {SIDE_FILE}, although its {CONVERSION_RECORD} lists it; copy the whole converted "
                f"folder again, or {REINSTALL_HINT}.")
    return (f"{where} has no {SIDE_FILE} (the rows of {IND_TOKEN} and the class tokens) and no {CONVERSION_RECORD}; "
            f"pass a folder made by rnaernie-convert, or {REINSTALL_HINT}.")


def _download(repo_id: str) -> Path:
    """The side file of a Hub repository (cached by huggingface_hub)."""
    try:
        import huggingface_hub
        from huggingface_hub.utils import EntryNotFoundError
    except ImportError:
        raise ModelFolderError(f"{repo_id} is not a local folder and huggingface_hub is not installed; pass a local "
                               "folder or pip install huggingface_hub.") from None
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, SIDE_FILE))
    except EntryNotFoundError:
        record = None
        try:
            record = json.loads(Path(huggingface_hub.hf_hub_download(repo_id, CONVERSION_RECORD)).read_text("utf-8"))
        except Exception:  # noqa: BLE001 - any failure here just means "no record to explain it"
            pass
        raise ModelFolderError(_missing_message(repo_id, record if isinstance(record, dict) else None)) from None
    except Exception as exc:  # noqa: BLE001 - network, auth and repository errors have no common base
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFolderError(f"cannot fetch {SIDE_FILE} of {repo_id} ({first_line}); check the id and your "
                               "connection, or pass a local folder.") from None


def _read(path: Path) -> TypeGuidedRows:
    import numpy as np
    from safetensors import SafetensorError, safe_open

    def damaged(why: str) -> ModelFolderError:
        return ModelFolderError(f"{path} is damaged ({why}); {REINSTALL_HINT}, or copy the folder again.")

    try:
        with safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise damaged(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if metadata.get("format") != FORMAT:
        raise damaged(f"its metadata does not say format {FORMAT!r}")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFolderError(f"{path} has format version {metadata.get('format_version')!r}, this rnaernie reads "
                               f"{FORMAT_VERSION!r}; install the rnaernie-convert version that made the folder.")
    try:
        class_tokens = json.loads(metadata.get("class_tokens", ""))
    except json.JSONDecodeError:
        raise damaged("its class_tokens metadata is not JSON") from None
    if (not isinstance(class_tokens, list) or not class_tokens or len(set(class_tokens)) != len(class_tokens)
            or not all(isinstance(token, str) and token for token in class_tokens)):
        raise damaged("its class_tokens metadata is not a list of distinct names")
    for name in (INPUT_IND, INPUT_CLASSES):
        if name not in tensors:
            raise damaged(f"it lacks {name}")
    n = len(class_tokens)
    hidden = tensors[INPUT_IND].shape[0] if tensors[INPUT_IND].ndim == 1 else 0
    expected = {INPUT_IND: (hidden,), INPUT_CLASSES: (n, hidden), DECODER_CLASSES: (n, hidden),
                DECODER_BIAS_CLASSES: (n,)}
    unknown = sorted(set(tensors) - set(expected))
    if unknown:
        raise damaged(f"unexpected tensors {', '.join(unknown)}")
    if (DECODER_CLASSES in tensors) != (DECODER_BIAS_CLASSES in tensors):
        raise damaged(f"it holds only one of {DECODER_CLASSES} and {DECODER_BIAS_CLASSES}")
    for name, tensor in tensors.items():
        if hidden < 1 or tuple(tensor.shape) != expected[name]:
            raise damaged(f"{name} has shape {tuple(tensor.shape)}, expected {expected[name]} for "
                          f"{n} class tokens")
        if not np.isfinite(tensor).all():
            raise damaged(f"{name} contains NaN or Inf values")
    rows = [tensors[name].astype(np.float32) if name in tensors else None
            for name in (INPUT_IND, INPUT_CLASSES, DECODER_CLASSES, DECODER_BIAS_CLASSES)]
    try:
        source_ids = json.loads(metadata.get("source_ids", "null"))
    except json.JSONDecodeError:
        raise damaged("its source_ids metadata is not JSON") from None
    return TypeGuidedRows(tuple(class_tokens), *rows, source_ids=source_ids if isinstance(source_ids, dict) else None)
