"""Everything both sides need, read once: the records, the checkpoint's weights, the plan and the probe ids."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.digests import Sha256InBackground
from convert.errors import ConversionError
from convert.heads import HEADS, Detection, detect_head, head_of, resolve_config
from convert.mapping import Plan, as_float32
from convert.paddle_config import ErnieConfig
from convert.pdparams import PaddleCheckpoint
from convert.verify.probes import ProbeBatch, TypeGuidedProbes, long_probe, probe_batches, type_guided_probes
from convert.vocabulary import Vocabulary

PARITY_ATOL = 1e-4  # float32 mapping vs Paddle; a correct conversion reaches about 1e-5


@dataclass
class Setup:
    checkpoint: Path
    out_dir: Path
    record: dict  # the folder's conversion.json
    paddle_config: ErnieConfig
    tensors: dict[str, np.ndarray]  # name -> float32 array (views of the memory-mapped file where possible)
    detection: Detection
    vocab: Vocabulary
    probes: list[str]
    encoded: list[list[int]]  # official ids of each probe, converted vocabulary
    batches: list[ProbeBatch]
    atol: float
    sha: Sha256InBackground  # of the checkpoint
    source: PaddleCheckpoint  # the mapped file, whose pages can be released
    plan: Plan  # the rows the converter follows for this checkpoint
    folder_config: dict  # the folder's config.json
    long_sequence: str | None = None  # kinds with a long-sequence mode: a 3-chunk probe
    long_chunks: np.ndarray | None = None
    type_guided: TypeGuidedProbes | None = None  # folders with a type_guided.safetensors
    check_inputs: dict[str, Any] | None = None  # a kind's own checks: name -> inputs (see `KindCheck`)


def prepare(checkpoint: Path, out_dir: Path, *, config: Path | None, probes: list[str], atol: float | None) -> Setup:
    """Read the folder's record and the checkpoint; decide the kind; tokenize and batch the probes."""
    from convert.paddle_config import load_paddle_config
    from convert.pdparams import load_pdparams
    from convert.records import read_conversion_record
    from convert.vocabulary import build_vocabulary, official_input_ids
    from rnaernie.long_sequence import chunk_input_ids

    record = read_conversion_record(out_dir)
    _check_record(record, out_dir)
    if record.get("head") not in {kind.value for kind in HEADS}:
        raise ConversionError(f"{out_dir} was made by an older rnaernie-convert (head {record.get('head')!r}); "
                              "convert the checkpoint again, then verify.")
    source = load_pdparams(checkpoint)
    paddle_config = load_paddle_config(resolve_config(checkpoint, config, source.tensors, record.get("head"))[0])
    sha = Sha256InBackground(checkpoint)
    tensors = {key: as_float32(array) for key, array in source.tensors.items()}
    try:
        detection = detect_head(set(tensors), paddle_config.architecture, record["head"], str(checkpoint))
    except ConversionError:
        found = detect_head(set(tensors), paddle_config.architecture, None, str(checkpoint))
        raise ConversionError(f"{out_dir} was converted from a {head_of(record['head']).description} but {checkpoint} "
                              f"is a {found.head.description}; pass the checkpoint the folder was made from.") from None
    vocab = build_vocabulary(tuple(_source_tokens(record)), "the conversion record")
    encoded = [official_input_ids(seq, vocab) for seq in probes]
    plan = detection.mapping_plan(tensors, paddle_config, vocab, str(checkpoint))
    head = detection.head
    setup = Setup(checkpoint, out_dir, record, paddle_config, tensors, detection, vocab, probes, encoded,
                  probe_batches(encoded), PARITY_ATOL if atol is None else atol, sha, source, plan,
                  _read_folder_config(out_dir))
    reads_slot = bool(head.type_guided and head.type_guided.reads_slot_probabilities)
    setup.type_guided = type_guided_probes(record.get("type_guided"), reads_slot, encoded)
    if head.long_sequence:  # lncRNA-style input: several 512-token chunks
        setup.long_sequence = long_probe()
        ids = official_input_ids(setup.long_sequence, vocab, max_nucleotides=10**9)
        setup.long_chunks = np.asarray(chunk_input_ids(ids, vocab.id("[CLS]"), vocab.id("[SEP]")))
    setup.check_inputs = {check.name: check.inputs(setup) for check in head.checks}
    return setup


def _check_record(record: object, out_dir: Path) -> None:
    """The fields of conversion.json the verifier reads, with the types it reads them as."""
    from convert.writer import SAFETENSORS_DTYPES

    damaged = f"{out_dir / 'conversion.json'} is damaged"
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


def _read_folder_config(out_dir: Path) -> dict:
    try:
        config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"cannot read {out_dir / 'config.json'} ({exc}); convert the checkpoint again.") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{out_dir / 'config.json'} is not a JSON object; convert the checkpoint again.")
    return config


def _source_tokens(record: dict) -> list[str]:
    """Rebuild the source vocabulary order from the record (kept tokens at their source ids)."""
    vocabulary = record["vocabulary"]
    size = len(vocabulary["tokens"]) + len(vocabulary["dropped"])
    tokens: list[str | None] = [None] * size
    for token, source_id in zip(vocabulary["tokens"], vocabulary["source_ids"]):
        tokens[source_id] = "T" if token == "U" else token
    dropped = iter(vocabulary["dropped"])
    return [t if t is not None else next(dropped) for t in tokens]
