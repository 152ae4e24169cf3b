"""The `Conversion`: what is known about converting one checkpoint, worked out once and passed on.

`read_conversion` reads the checkpoint (once, memory-mapped, hashed in the background), resolves its
config (`convert.heads.resolve_config`), builds the vocabulary, decides the kind and plans the mapping,
checking each against the others. A kind whose checkpoint holds no encoder (`convert.kinds.Backbone`:
the structure model) reads its `--backbone` beside it, once, into the same value. The writer, the
verifier and the release walk take the value and read nothing again. `conversion_of_folder`
(`--verify-only`) builds it through the same function.
"""

from __future__ import annotations

import datetime as _dt
import platform
import re
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from convert import __version__
from convert.errors import ConfigError, ConversionError, MappingError, NotConvertibleError
from convert.heads import (HEADS, Detection, Head, backbone_kind, detect_head, head_of, resolve_config,
                           type_guided_source_ids)
from convert.mapping import Plan, check_finite
from convert.paddle_config import ErnieConfig, load_paddle_config
from convert.pdparams import PaddleCheckpoint, load_pdparams
from convert.records import CONVERSION_RECORD, Sha256InBackground, read_conversion_record
from convert.vocabulary import Vocabulary, build_vocabulary, official_vocab_path, read_vocab_file
from rnaernie.type_guided_rows import IND_TOKEN, RECORD_KEY, SIDE_FILE

OFFICIAL_SHA256 = "e5f17a98af4f1051cabc929b4b1e7d20a8bc8f989b296ef1b515e19b19a3867b"


@dataclass(eq=False)
class Conversion:
    """One checkpoint's conversion, as the writer follows it and the verifier checks it."""

    checkpoint: Path
    source: PaddleCheckpoint  # memory-mapped, in the stored dtype; widened to float32 one tensor at a time
    config_file: Path
    config_note: str | None  # said when the config is not the user's (e.g. the bundled official one)
    paddle_config: ErnieConfig
    vocabulary: Vocabulary
    detection: Detection
    plan: Plan  # the rows from the checkpoint into the folder's files
    dtype: str  # of model.safetensors
    label_names: list[str] | None  # a classifier's labels
    hashing: Sha256InBackground = field(repr=False)
    started: float  # time.perf_counter() when reading began (the record's seconds)
    recorded: dict | None = None  # `--verify-only`: the folder's own conversion.json, which its card shows
    backbone: Path | None = None  # the pre-trained checkpoint that feeds a kind without an encoder (`--backbone`)
    backbone_hashing: Sha256InBackground | None = field(default=None, repr=False)

    @property
    def head(self) -> Head:
        return self.detection.head

    @property
    def sha256(self) -> str:
        return self.hashing.result()

    @cached_property
    def transformers_config(self) -> dict:
        """The folder's config.json."""
        return self.head.transformers_config(self.paddle_config, self.vocabulary, self.dtype, self.label_names)

    @cached_property
    def record(self) -> dict:
        """conversion.json: provenance, for the card, the push step and a later `--verify-only`."""
        return self.recorded if self.recorded is not None else _conversion_record(self)

    @property
    def found(self) -> str:
        """What the checkpoint was found to be, for the summary and the record."""
        return f"{self.head.description}, {self.detection.layout.description}"


def read_conversion(checkpoint: str | Path, *, config: str | Path | None = None,
                    vocab: str | Path | tuple[str, ...] | None = None, dtype: str = "float32",
                    labels: str | Path | tuple[str, ...] | None = None, head: str | None = None,
                    folder: Path | None = None, recorded: dict | None = None,
                    backbone: str | Path | None = None) -> Conversion:
    """Read `checkpoint` and work out its conversion; raises `ConversionError` (or a subclass) for bad input.

    `vocab`: a vocabulary file, or its tokens (default: the official vocab_1MER.txt). `labels`: a file of
    classifier label names, one a line, or the names. `head`: the kind, where the tensor names cannot tell.
    `folder`, `recorded`: the existing folder and its conversion.json (see `conversion_of_folder`).
    `backbone`: the pre-trained checkpoint that feeds a kind whose checkpoint holds no encoder (`Head.backbone`).
    """
    started, checkpoint = time.perf_counter(), Path(checkpoint)
    source = load_pdparams(checkpoint)  # first: a file that is not a checkpoint is refused before any config
    hashing = Sha256InBackground(checkpoint)  # the file is in the page cache now; hash it while we work
    config_from, config_tensors, backbone_hashing = checkpoint, source.tensors, None
    fed = backbone_kind(set(source.tensors))
    if fed is None and backbone is not None:
        raise ConversionError(f"--backbone applies to a model without an encoder of its own (the secondary-structure "
                              f"model), and {checkpoint} is a checkpoint with one; drop --backbone.")
    if fed is not None:  # before any config is looked for: the config is the backbone's
        if backbone is None:
            raise NotConvertibleError(str(checkpoint), f"a {fed.description}", fed.backbone.missing)
        backbone = Path(backbone)
        backbone_source = load_pdparams(backbone)
        backbone_hashing = Sha256InBackground(backbone)
        source = fed.backbone.read(source, backbone_source, str(backbone))
        config_from, config_tensors = backbone, backbone_source.tensors
    tensors = source.tensors
    config_file, config_note = resolve_config(config_from, Path(config) if config else None, config_tensors,
                                              None if fed else head)
    paddle_config = load_paddle_config(config_file)
    if isinstance(vocab, tuple):
        vocabulary = build_vocabulary(vocab, "the conversion record")
    else:
        vocab_path = Path(vocab) if vocab else official_vocab_path()
        vocabulary = build_vocabulary(read_vocab_file(vocab_path), str(vocab_path))
    check_dtypes(tensors, str(checkpoint))
    detection = _detect(tensors, paddle_config, head, checkpoint, folder)
    _check_config_matches(tensors, detection.layout.source_prefix, paddle_config, vocabulary, config_file, checkpoint)
    plan = detection.mapping_plan(tensors, paddle_config, vocabulary, str(checkpoint))
    check_finite({row.source: tensors[row.source] for row in plan.rows}, str(checkpoint), source.release)
    names = None if plan.num_labels is None else _labels(
        plan.num_labels, labels if isinstance(labels, tuple) else Path(labels) if labels else None, detection.head)
    return Conversion(checkpoint, source, config_file, config_note, paddle_config, vocabulary, detection, plan, dtype,
                      names, hashing, started, recorded, backbone, backbone_hashing)


def conversion_of_folder(checkpoint: str | Path, folder: str | Path, config: str | Path | None = None,
                         backbone: str | Path | None = None) -> Conversion:
    """The conversion an existing folder was made by (`--verify-only`): its kind, vocabulary and dtype from its
    conversion.json, everything else from `checkpoint` (and `backbone`), through `read_conversion`."""
    folder = Path(folder)
    record = read_conversion_record(folder)
    _check_record(record, folder)
    if record.get("head") not in {kind.value for kind in HEADS}:
        raise ConversionError(f"{folder} was made by an older rnaernie-convert (head {record.get('head')!r}); "
                              "convert the checkpoint again, then verify.")
    return read_conversion(checkpoint, config=config, vocab=tuple(_source_tokens(record)), dtype=record["dtype"],
                           head=record["head"], folder=folder, recorded=record, backbone=backbone)


def _detect(tensors: dict[str, np.ndarray], config: ErnieConfig, head: str | None, checkpoint: Path,
            folder: Path | None) -> Detection:
    """`detect_head`; for an existing folder, a checkpoint of another kind is named as such."""
    try:
        return detect_head(set(tensors), config.architecture, head, str(checkpoint))
    except ConversionError:
        if folder is None:
            raise
        found = detect_head(set(tensors), config.architecture, None, str(checkpoint))
        raise ConversionError(f"{folder} was converted from a {head_of(head).description} but {checkpoint} is a "
                              f"{found.head.description}; pass the checkpoint the folder was made from.") from None


def _check_record(record: object, folder: Path) -> None:
    """The fields of a folder's conversion.json that `conversion_of_folder` reads, with the types it reads them as."""
    from convert.writer import SAFETENSORS_DTYPES

    damaged = f"{folder / CONVERSION_RECORD} is damaged"
    if not isinstance(record, dict):
        raise ConversionError(f"{damaged} (not a JSON object); convert the checkpoint again.")
    vocabulary, source = record.get("vocabulary"), record.get("source")
    fields = {"dtype": record.get("dtype") in SAFETENSORS_DTYPES, "source": isinstance(source, dict),
              "vocabulary": isinstance(vocabulary, dict) and all(
                  isinstance(vocabulary.get(key), list) for key in ("tokens", "source_ids", "dropped"))}
    if isinstance(vocabulary, dict) and fields["vocabulary"]:
        size = len(vocabulary["tokens"]) + len(vocabulary["dropped"])
        fields["vocabulary"] = (len(vocabulary["source_ids"]) == len(vocabulary["tokens"])
                                and all(isinstance(i, int) and 0 <= i < size for i in vocabulary["source_ids"])
                                and len(set(vocabulary["source_ids"])) == len(vocabulary["source_ids"]))
    bad = [name for name, ok in fields.items() if not ok]
    if bad:
        raise ConversionError(f"{damaged} (its {', '.join(bad)} cannot be read); convert the checkpoint again.")


def _source_tokens(record: dict) -> list[str]:
    """The source vocabulary, in order, from a folder's record: kept tokens at their source ids (`U` spelled `T`
    again, as the source has it), the dropped ones in the gaps."""
    vocabulary = record["vocabulary"]
    size = len(vocabulary["tokens"]) + len(vocabulary["dropped"])
    tokens: list[str | None] = [None] * size
    for token, source_id in zip(vocabulary["tokens"], vocabulary["source_ids"]):
        tokens[source_id] = "T" if token == "U" else token
    dropped = iter(vocabulary["dropped"])
    return [t if t is not None else next(dropped) for t in tokens]


def _check_config_matches(tensors: dict[str, np.ndarray], prefix: str, config: ErnieConfig, vocab: Vocabulary,
                          config_path: Path, checkpoint: Path) -> None:
    """Say plainly when the config and the weights describe different models."""
    word = tensors[prefix + "embeddings.word_embeddings.weight"]
    if word.ndim != 2:
        raise MappingError([f"{prefix}embeddings.word_embeddings.weight has shape {word.shape}, expected "
                            f"({config.vocab_size}, {config.hidden_size})"], str(checkpoint))
    layer_ids = {int(m.group(1)) for k in tensors if (m := re.match(re.escape(prefix) + r"encoder\.layers\.(\d+)\.", k))}
    found = {"hidden_size": word.shape[1], "num_hidden_layers": len(layer_ids), "vocab_size": word.shape[0]}
    wanted = {"hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
              "vocab_size": config.vocab_size}
    wrong = [f"{k} {wanted[k]} in the config but {found[k]} in the weights" for k in wanted if wanted[k] != found[k]]
    if wrong:
        raise ConfigError(f"{config_path} does not describe {checkpoint}: {'; '.join(wrong)}; "
                          "pass the config saved with these weights via --config.")
    if len(vocab.source_tokens) != config.vocab_size:
        raise ConfigError(
            f"the vocabulary has {len(vocab.source_tokens)} tokens but the model has {config.vocab_size} rows; "
            "pass the vocab the model was trained with via --vocab.")
    if config.pad_token_id not in vocab.kept_source_ids:
        where = (f"is {vocab.source_tokens[config.pad_token_id]}, which the converted vocabulary drops"
                 if config.pad_token_id < len(vocab.source_tokens) else "is outside the vocabulary")
        raise ConfigError(f"{config_path}: pad_token_id {config.pad_token_id} {where}; "
                          "pass the config saved with these weights via --config.")


def check_dtypes(tensors: dict[str, np.ndarray], source: str) -> None:
    bad = [f"{key} has dtype {array.dtype}, expected a floating-point weight"
           for key, array in tensors.items() if array.dtype != np.uint16 and array.dtype.kind != "f"]
    if bad:
        raise MappingError(bad, source)


def _labels(num_labels: int, labels: Path | tuple[str, ...] | None, head: Head) -> list[str]:
    if isinstance(labels, tuple):  # names the caller knows (the release walk: from the dataset's folder name)
        if len(labels) != num_labels:
            raise ConfigError(f"the classifier has {num_labels} outputs but {len(labels)} label names were expected "
                              f"({', '.join(labels)}); pass the right checkpoint, or convert it alone with --labels.")
        return list(labels)
    if labels is not None:
        try:
            names = [line.strip() for line in labels.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read labels file {labels} ({exc}); pass a text file, one label a line.") from None
        if len(names) != num_labels:
            raise ConfigError(f"{labels} has {len(names)} labels but the classifier has {num_labels} outputs.")
        return names
    return list(head.default_labels(num_labels) or (f"LABEL_{i}" for i in range(num_labels)))


def _side_file_record(conversion: Conversion) -> dict | None:
    """conversion.json's description of the type-guided side file (None: the vocabulary had no rows to keep aside)."""
    if SIDE_FILE not in conversion.plan.side_files:
        return None
    vocab, role = conversion.vocabulary, conversion.head.type_guided
    return {
        "file": SIDE_FILE,
        "purpose": f"the rows of {IND_TOKEN} and the ncRNA class tokens that the converted vocabulary drops, for "
                   "RNAErnie's type-guided classification (rnaernie types / rnaernie classify --two-stage)",
        "role": role.value if role else None,
        "dtype": "float32",
        "tensors": {name: list(shape) for name, shape in conversion.plan.side_files[SIDE_FILE][1].items()},
        "class_tokens": list(vocab.class_tokens),
        "source_ids": type_guided_source_ids(vocab),
    }


def _conversion_record(conversion: Conversion) -> dict:
    detection, plan, vocab = conversion.detection, conversion.plan, conversion.vocabulary
    sha256 = conversion.sha256
    return {
        "tool": "rnaernie-convert",
        "tool_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"file": conversion.checkpoint.name, "bytes": conversion.checkpoint.stat().st_size,
                   "config_file": conversion.config_file.name, "config_note": conversion.config_note,
                   "sha256": sha256, "is_official_release": sha256 == OFFICIAL_SHA256},
        **({} if conversion.backbone is None else {"backbone": {
            "file": conversion.backbone.name, "bytes": conversion.backbone.stat().st_size,
            "sha256": conversion.backbone_hashing.result()}}),
        "paddle_config": conversion.paddle_config.__dict__,
        "head": detection.head.name,
        "key_layout": detection.layout.name,
        "head_description": conversion.found,
        "head_decided_by": detection.decided_by,
        "head_assumed": detection.assumed,
        "left_out": list(detection.left_out_keys),
        "left_out_reason": "; ".join(extra.reason for extra in detection.left_out),
        "architecture": detection.head.architecture,
        "dtype": conversion.dtype,
        "num_labels": plan.num_labels,
        "tensors": len(plan.target_shapes),
        "parameters": int(sum(int(np.prod(s)) for s in plan.target_shapes.values())),
        "vocabulary": {"tokens": list(vocab.tokens), "source_ids": list(vocab.kept_source_ids),
                       "dropped": list(vocab.dropped_tokens)},
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
        RECORD_KEY: _side_file_record(conversion),
        "seconds": round(time.perf_counter() - conversion.started, 3),
    }
