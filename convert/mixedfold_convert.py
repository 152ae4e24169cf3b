"""Converting the official structure model (MixedFold) with the pre-trained checkpoint that feeds it.

`convert_structure_model` writes the backbone's converted folder (the single-checkpoint pipeline) and adds
`mixedfold.safetensors` (the mapping of `convert.mixedfold`) and the `structure_model` part of
`conversion.json` before the folder is committed; with verification, the encoder is verified as any
pre-trained model, then `convert.mixedfold_check` compares the network with the official one rebuilt in Paddle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from convert.errors import ConversionError
from convert.mixedfold import check_backbone, is_mixedfold, lstm_copies, network_tensors, sha256
from rnaernie.mixedfold_format import TERMINAL_AU

if TYPE_CHECKING:
    import numpy as np


BACKBONE_HINT = ("pass the pre-trained checkpoint of the same variant with --backbone "
                 "(output/<variant>/checkpoint_final/model_state.pdparams of the official release)")


def backbone_hidden_size(tensors: dict[str, np.ndarray], backbone: Path) -> tuple[int, str]:
    """(hidden size, the encoder's key prefix) of a pre-trained checkpoint, read from its word embeddings."""
    for prefix in ("ernie.", "", "extractor."):
        word = tensors.get(prefix + "embeddings.word_embeddings.weight")
        if word is not None and word.ndim == 2:
            return int(word.shape[1]), prefix
    raise ConversionError(f"--backbone {backbone} holds no RNAErnie encoder (no embeddings.word_embeddings.weight); "
                          f"{BACKBONE_HINT}.")


def convert_structure_model(checkpoint: str | Path, out_dir: str | Path, backbone: str | Path | None, *,
                            config: str | Path | None = None, vocab: str | Path | None = None, force: bool = False,
                            verify: bool = True, atol: float | None = None, say=lambda message: None):
    """Convert the official MixedFold checkpoint with the pre-trained checkpoint that feeds it.

    OUT_DIR is the pre-trained model's converted folder (a stock transformers folder; `AutoModel` loads its
    encoder) plus `mixedfold.safetensors`, with `conversion.json` recording both sources. With `verify`, the
    encoder is verified as any pre-trained model, then the structure check (`convert.mixedfold_check`) runs
    on the staged folder; a parity failure still writes the folder, for inspection, and raises `ParityError`.
    """
    from safetensors.numpy import save_file

    from convert.errors import ParityError
    from convert.mixedfold_check import verify_structure_model
    from convert.pdparams import load_pdparams
    from convert.pipeline import convert_checkpoint
    from convert.records import CONVERSION_RECORD
    from convert.vocabulary import official_vocab_path, read_vocab_file
    from convert.writer import write_json
    from rnaernie.mixedfold_format import SIDE_FILE, metadata

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if backbone is None:
        raise ConversionError(f"{checkpoint} is the official secondary-structure model (MixedFold), which holds no "
                              f"encoder: {BACKBONE_HINT}.")
    backbone = Path(backbone)
    if not backbone.is_file():
        raise ConversionError(f"--backbone {backbone} is not a file; {BACKBONE_HINT}.")
    source = load_pdparams(checkpoint)
    tensors = dict(source.tensors)
    side, settings = network_tensors(tensors, str(checkpoint))
    backbone_tensors = dict(load_pdparams(backbone).tensors)
    if is_mixedfold(backbone_tensors):
        raise ConversionError(f"--backbone {backbone} is a structure model itself; {BACKBONE_HINT}.")
    hidden, prefix = backbone_hidden_size(backbone_tensors, backbone)
    check_backbone(settings, hidden, str(backbone))
    if verify:
        from convert.verify import require_verify_dependencies

        require_verify_dependencies()  # before writing anything
    source_tokens = read_vocab_file(vocab or official_vocab_path())
    parity: list[ParityError] = []

    def finish(folder: Path) -> None:
        save_file(side, str(folder / SIDE_FILE), metadata=metadata(settings))
        record_path = folder / CONVERSION_RECORD
        record = json.loads(record_path.read_text(encoding="utf-8"))
        record["structure_model"] = {
            "source": {"file": checkpoint.name, "path": str(checkpoint), "sha256": sha256(checkpoint)},
            "backbone": {"file": backbone.name, "path": str(backbone)},
            "official_class": "MixedFold", "side_file": SIDE_FILE, "settings": settings,
            "tensors": len(tensors), "written": len(side), "added": [TERMINAL_AU[0]],
            "lstm_copies_checked": len(lstm_copies(settings))}
        write_json(record_path, record)  # before the verdict, which binds conversion.json's digest
        if verify:
            try:
                verify_structure_model(folder, checkpoint, tensors, settings, backbone, backbone_tensors, prefix, config, source_tokens,
                        atol, say, staged_for=out_dir)
            except ParityError as exc:
                parity.append(exc)

    result = convert_checkpoint(backbone, out_dir, config=config, vocab=vocab, force=force, progress=say,
                                before_commit=finish)
    if parity:
        raise parity[0]
    return result, settings
