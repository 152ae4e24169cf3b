"""`convert_checkpoint`: read -> map -> write. The CLI is a thin layer over this function."""

from __future__ import annotations

import datetime as _dt
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from convert import __version__, interruptions
from convert.card import render_card
from convert.errors import ConfigError, MappingError
from convert.digests import Sha256InBackground
from convert.heads import Detection, Head, detect_head, resolve_config, type_guided_source_ids
from convert.mapping import Plan, check_finite, mapped_tensor
from convert.paddle_config import ErnieConfig, load_paddle_config, to_transformers_config
from convert.pdparams import load_pdparams
from convert.records import CONVERSION_RECORD
from convert.vocabulary import Vocabulary, build_vocabulary, official_vocab_path, read_vocab_file, tokenizer_files
from convert.writer import check_dtype, check_output_dir, staged_output, write_json, write_safetensors
from rnaernie.type_guided_rows import IND_TOKEN, RECORD_KEY, SIDE_FILE

OFFICIAL_SHA256 = "e5f17a98af4f1051cabc929b4b1e7d20a8bc8f989b296ef1b515e19b19a3867b"


@dataclass
class ConversionResult:
    out_dir: Path
    head: str
    head_description: str
    left_out: tuple[str, ...]
    architecture: str
    num_tensors: int
    num_parameters: int
    dropped_tokens: tuple[str, ...]
    head_decided_by: str
    files: dict[str, int] = field(default_factory=dict)  # file name -> bytes
    config_note: str | None = None  # said when the config is not the user's (the bundled official one)


def _check_config_matches(tensors: dict[str, np.ndarray], prefix: str, config: ErnieConfig, vocab: Vocabulary,
                          config_path: Path, checkpoint: Path) -> None:
    """Say plainly when the config and the weights describe different models."""
    word = tensors[prefix + "embeddings.word_embeddings.weight"]
    if word.ndim != 2:
        raise MappingError([f"{prefix}embeddings.word_embeddings.weight has shape {word.shape}, expected "
                            f"({config.vocab_size}, {config.hidden_size})"], str(checkpoint))
    layer_ids = {int(m.group(1)) for k in tensors if (m := re.match(re.escape(prefix) + r"encoder\.layers\.(\d+)\.", k))}
    found = {"hidden_size": word.shape[1], "num_hidden_layers": len(layer_ids),
             "vocab_size": word.shape[0]}
    wanted = {"hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
              "vocab_size": config.vocab_size}
    wrong = [f"{k} {wanted[k]} in the config but {found[k]} in the weights" for k in wanted if wanted[k] != found[k]]
    if wrong:
        raise ConfigError(f"{config_path} does not describe {checkpoint}: {'; '.join(wrong)}; "
                          "pass the config saved with these weights via --config.")
    if len(vocab.source_tokens) != config.vocab_size:
        raise ConfigError(
            f"the vocabulary has {len(vocab.source_tokens)} tokens but the model has {config.vocab_size} rows; "
            "pass the vocab the model was trained with via --vocab."
        )
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
    labels_file = labels
    if labels_file is not None:
        try:
            names = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read labels file {labels_file} ({exc}); pass a text file, one label a line.") from None
        if len(names) != num_labels:
            raise ConfigError(f"{labels_file} has {len(names)} labels but the classifier has {num_labels} outputs.")
        return names
    return list(head.default_labels(num_labels) or (f"LABEL_{i}" for i in range(num_labels)))


def convert_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, config: str | Path | None = None,
                       vocab: str | Path | None = None, dtype: str = "float32", force: bool = False,
                       labels: str | Path | tuple[str, ...] | None = None, head: str | None = None,
                       progress: Callable[[str], None] | None = None,
                       before_commit: Callable[[Path], None] | None = None) -> ConversionResult:
    """Convert a Paddle RNAErnie checkpoint into a Hugging Face folder at `out_dir`.

    `head` forces the kind (a `convert.heads.HEADS` name) where the tensor names cannot tell it.
    `labels`: a file of classifier label names, one a line, or the names themselves as a tuple.
    Raises `convert.errors.ConversionError` (or a subclass) for any bad input; `out_dir` is
    then left untouched. See `convert.errors.describe` for turning errors into messages.
    `before_commit(folder)` runs on the complete folder before it becomes `out_dir` (the CLI
    verifies there, so OUT_DIR never appears unverified); files it adds are committed too.
    """
    started = time.perf_counter()
    say = progress or (lambda message: None)
    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    check_dtype(dtype)
    check_output_dir(out_dir, force)
    source = load_pdparams(checkpoint)  # first: a file that is not a checkpoint is refused before any config
    sha = Sha256InBackground(checkpoint)  # the file is in the page cache now; hash it while we convert
    tensors = source.tensors  # memory-mapped, in the stored dtype; widened to float32 one tensor at a time
    config_path, config_note = resolve_config(checkpoint, config, tensors, head)
    paddle_config = load_paddle_config(config_path)
    vocab_path = Path(vocab) if vocab else official_vocab_path()
    vocabulary = build_vocabulary(read_vocab_file(vocab_path), str(vocab_path))
    check_dtypes(tensors, str(checkpoint))
    detection = detect_head(set(tensors), paddle_config.architecture, head, str(checkpoint))
    _check_config_matches(tensors, detection.layout.source_prefix, paddle_config, vocabulary, config_path, checkpoint)
    plan = detection.mapping_plan(tensors, paddle_config, vocabulary, str(checkpoint))
    check_finite({row.source: tensors[row.source] for row in plan.rows}, str(checkpoint), source.release)

    names = None if plan.num_labels is None else _labels(
        plan.num_labels, labels if isinstance(labels, tuple) else Path(labels) if labels else None, detection.head)
    hf_config = detection.head.transformers_config(paddle_config, vocabulary, dtype, names)
    rows_by_target = {row.target: row for row in plan.rows}
    pad_id = paddle_config.pad_token_id
    record = _conversion_record(checkpoint, config_path, paddle_config, vocabulary, plan, detection, dtype)
    record["source"]["config_note"] = config_note
    record[RECORD_KEY] = _side_file_record(vocabulary, plan, detection.head)

    with staged_output(out_dir, force) as staging:
        say(f"writing {len(plan.target_shapes)} tensors to model.safetensors ({dtype})")
        write_safetensors(
            staging / "model.safetensors", plan.target_shapes, dtype,
            lambda name: mapped_tensor(rows_by_target[name], tensors, vocabulary, pad_id),
            metadata={"format": "pt"},
            on_tensor=lambda name: (source.release(source.tensors[rows_by_target[name].source]),
                                    interruptions.signal_point("writing")),
        )
        for side in detection.layout.side_files:  # in their own dtype whatever --dtype says
            if side.name in plan.side_files:
                side_rows, side_shapes = plan.side_files[side.name]
                by_target = {row.target: row for row in side_rows}
                write_safetensors(staging / side.name, side_shapes, side.dtype,
                                  lambda name: mapped_tensor(by_target[name], tensors, vocabulary, pad_id),
                                  metadata=side.metadata(vocabulary) if side.metadata else {})
        write_json(staging / "config.json", hf_config)
        for name, text in tokenizer_files(vocabulary).items():
            (staging / name).write_text(text, encoding="utf-8")
        record["source"]["sha256"] = sha.result()
        record["source"]["is_official_release"] = record["source"]["sha256"] == OFFICIAL_SHA256
        record["seconds"] = round(time.perf_counter() - started, 3)
        write_json(staging / CONVERSION_RECORD, record)
        (staging / "README.md").write_text(render_card(record, verification=None), encoding="utf-8")
        interruptions.signal_point("written")
        if before_commit:
            before_commit(staging)
        files = {p.name: p.stat().st_size for p in sorted(staging.iterdir())}

    return ConversionResult(
        out_dir=out_dir, head=detection.head.name, head_description=_found(detection),
        left_out=detection.left_out_keys,
        head_decided_by=detection.decided_by, architecture=detection.head.architecture,
        num_tensors=len(plan.target_shapes), num_parameters=record["parameters"],
        dropped_tokens=vocabulary.dropped_tokens, files=files, config_note=config_note,
    )


def _side_file_record(vocab: Vocabulary, plan: Plan, head: Head) -> dict | None:
    """conversion.json's description of the type-guided side file (None: the vocabulary had no rows to keep aside)."""
    if SIDE_FILE not in plan.side_files:
        return None
    shapes = plan.side_files[SIDE_FILE][1]
    return {
        "file": SIDE_FILE,
        "purpose": f"the rows of {IND_TOKEN} and the ncRNA class tokens that the converted vocabulary drops, for "
                   "RNAErnie's type-guided classification (rnaernie types / rnaernie classify --two-stage)",
        "role": head.type_guided.value if head.type_guided else None,
        "dtype": "float32",
        "tensors": {name: list(shape) for name, shape in shapes.items()},
        "class_tokens": list(vocab.class_tokens),
        "source_ids": type_guided_source_ids(vocab),
    }


def _found(detection: Detection) -> str:
    return f"{detection.head.description}, {detection.layout.description}"


def _conversion_record(checkpoint: Path, config_path: Path, config: ErnieConfig, vocab: Vocabulary, plan: Plan,
                       detection: Detection, dtype: str) -> dict:
    """Provenance kept in OUT_DIR/conversion.json: the verifier, the card and the push step read it."""
    return {
        "tool": "rnaernie-convert",
        "tool_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": {"file": checkpoint.name, "bytes": checkpoint.stat().st_size, "config_file": config_path.name},
        "paddle_config": config.__dict__,
        "head": detection.head.name,
        "key_layout": detection.layout.name,
        "head_description": _found(detection),
        "head_decided_by": detection.decided_by,
        "head_assumed": detection.assumed,
        "left_out": list(detection.left_out_keys),
        "left_out_reason": "; ".join(extra.reason for extra in detection.left_out),
        "architecture": detection.head.architecture,
        "dtype": dtype,
        "num_labels": plan.num_labels,
        "tensors": len(plan.target_shapes),
        "parameters": int(sum(int(np.prod(s)) for s in plan.target_shapes.values())),
        "vocabulary": {"tokens": list(vocab.tokens), "source_ids": list(vocab.kept_source_ids),
                       "dropped": list(vocab.dropped_tokens)},
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
    }

