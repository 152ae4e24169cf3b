"""Paddle -> PyTorch tensor names, as one table. An unknown, missing or mis-shaped tensor is an error.

Each row: Paddle name, transformers name, the Paddle-side shape in config symbols, and the
transform. Symbols: H hidden, I intermediate, V source vocab, P max positions, T type vocab,
C classifier labels. `{layer}` expands to 0..num_hidden_layers-1. Encoder rows are written
without the `ernie.` prefix that task models add (the bare ErnieModel saves without it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable

import numpy as np

from convert.errors import MappingError
from rnaernie.config import ErnieConfig
from rnaernie.tokenizer import Vocabulary


class Transform(Enum):
    COPY = "copy"
    TRANSPOSE = "transpose"  # Paddle nn.Linear stores [in, out]; torch wants [out, in]
    VOCAB_ROWS = "vocab_rows"  # keep the converted vocabulary's rows, in its order
    INPUT_EMBEDDING = "input_embedding"  # VOCAB_ROWS, and the [PAD] row zeroed like padding_idx does


@dataclass(frozen=True)
class Row:
    source: str
    target: str
    shape: tuple[str, ...]
    transform: Transform


@dataclass(frozen=True)
class Head:
    """A model kind: which rows it has, which Paddle keys are tied copies, what transformers class loads it."""

    name: str
    description: str  # what was found, in words, for the summary and the card
    architecture: str  # transformers class written to config.json
    rows: tuple[Row, ...]
    source_prefix: str  # "ernie." for task models, "" for a bare ErnieModel
    tied_copies: tuple[tuple[str, str], ...] = ()  # (alias Paddle key, Paddle key it must equal)
    left_out: tuple[str, ...] = ()  # Paddle keys known but deliberately not converted


_T, _C = Transform.TRANSPOSE, Transform.COPY

ENCODER_ROWS = (
    Row("embeddings.word_embeddings.weight", "bert.embeddings.word_embeddings.weight", ("V", "H"), Transform.INPUT_EMBEDDING),
    Row("embeddings.position_embeddings.weight", "bert.embeddings.position_embeddings.weight", ("P", "H"), _C),
    Row("embeddings.token_type_embeddings.weight", "bert.embeddings.token_type_embeddings.weight", ("T", "H"), _C),
    Row("embeddings.layer_norm.weight", "bert.embeddings.LayerNorm.weight", ("H",), _C),
    Row("embeddings.layer_norm.bias", "bert.embeddings.LayerNorm.bias", ("H",), _C),
    Row("encoder.layers.{layer}.self_attn.q_proj.weight", "bert.encoder.layer.{layer}.attention.self.query.weight", ("H", "H"), _T),
    Row("encoder.layers.{layer}.self_attn.q_proj.bias", "bert.encoder.layer.{layer}.attention.self.query.bias", ("H",), _C),
    Row("encoder.layers.{layer}.self_attn.k_proj.weight", "bert.encoder.layer.{layer}.attention.self.key.weight", ("H", "H"), _T),
    Row("encoder.layers.{layer}.self_attn.k_proj.bias", "bert.encoder.layer.{layer}.attention.self.key.bias", ("H",), _C),
    Row("encoder.layers.{layer}.self_attn.v_proj.weight", "bert.encoder.layer.{layer}.attention.self.value.weight", ("H", "H"), _T),
    Row("encoder.layers.{layer}.self_attn.v_proj.bias", "bert.encoder.layer.{layer}.attention.self.value.bias", ("H",), _C),
    Row("encoder.layers.{layer}.self_attn.out_proj.weight", "bert.encoder.layer.{layer}.attention.output.dense.weight", ("H", "H"), _T),
    Row("encoder.layers.{layer}.self_attn.out_proj.bias", "bert.encoder.layer.{layer}.attention.output.dense.bias", ("H",), _C),
    Row("encoder.layers.{layer}.norm1.weight", "bert.encoder.layer.{layer}.attention.output.LayerNorm.weight", ("H",), _C),
    Row("encoder.layers.{layer}.norm1.bias", "bert.encoder.layer.{layer}.attention.output.LayerNorm.bias", ("H",), _C),
    Row("encoder.layers.{layer}.linear1.weight", "bert.encoder.layer.{layer}.intermediate.dense.weight", ("H", "I"), _T),
    Row("encoder.layers.{layer}.linear1.bias", "bert.encoder.layer.{layer}.intermediate.dense.bias", ("I",), _C),
    Row("encoder.layers.{layer}.linear2.weight", "bert.encoder.layer.{layer}.output.dense.weight", ("I", "H"), _T),
    Row("encoder.layers.{layer}.linear2.bias", "bert.encoder.layer.{layer}.output.dense.bias", ("H",), _C),
    Row("encoder.layers.{layer}.norm2.weight", "bert.encoder.layer.{layer}.output.LayerNorm.weight", ("H",), _C),
    Row("encoder.layers.{layer}.norm2.bias", "bert.encoder.layer.{layer}.output.LayerNorm.bias", ("H",), _C),
    Row("pooler.dense.weight", "bert.pooler.dense.weight", ("H", "H"), _T),
    Row("pooler.dense.bias", "bert.pooler.dense.bias", ("H",), _C),
)

_MLM_TRANSFORM_ROWS = (
    Row("cls.predictions.transform.weight", "cls.predictions.transform.dense.weight", ("H", "H"), _T),
    Row("cls.predictions.transform.bias", "cls.predictions.transform.dense.bias", ("H",), _C),
    Row("cls.predictions.layer_norm.weight", "cls.predictions.transform.LayerNorm.weight", ("H",), _C),
    Row("cls.predictions.layer_norm.bias", "cls.predictions.transform.LayerNorm.bias", ("H",), _C),
)
# transformers 4.x reads cls.predictions.bias; 5.x (untied) reads cls.predictions.decoder.bias: write both.
_MLM_DECODER_BIAS_TARGETS = ("cls.predictions.bias", "cls.predictions.decoder.bias")
_WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


def _mlm_rows(decoder_weight: str, decoder_bias: str) -> tuple[Row, ...]:
    return (
        *_MLM_TRANSFORM_ROWS,
        Row(decoder_weight, "cls.predictions.decoder.weight", ("V", "H"), Transform.VOCAB_ROWS),
        *(Row(decoder_bias, target, ("V",), Transform.VOCAB_ROWS) for target in _MLM_DECODER_BIAS_TARGETS),
    )


def _prefixed(rows: tuple[Row, ...], prefix: str) -> tuple[Row, ...]:
    return tuple(Row(prefix + r.source, r.target, r.shape, r.transform) for r in rows)


_MLM_24 = _prefixed(ENCODER_ROWS, "ernie.") + _mlm_rows("cls.predictions.decoder_weight", "cls.predictions.decoder_bias")
_MLM_25 = _prefixed(ENCODER_ROWS, "ernie.") + _mlm_rows("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
_TIED_24 = (("cls.predictions.decoder_weight", "ernie." + _WORD_EMBEDDINGS),)
# PaddleNLP >= 2.5 also saves decoder_bias as an alias of decoder.bias
_TIED_25 = (("cls.predictions.decoder.weight", "ernie." + _WORD_EMBEDDINGS),
            ("cls.predictions.decoder_bias", "cls.predictions.decoder.bias"))
# RNAErnie's ad-hoc pre-training adds a type indicator over the 28 class tokens on [CLS]; those
# classes are not in the converted vocabulary and transformers has no such head.
_IND_CLS = ("ind_cls.weight", "ind_cls.bias")

HEADS = {
    "mlm-2.4": Head("mlm-2.4", "masked LM (PaddleNLP 2.4 key names, as released)", "BertForMaskedLM",
                    _MLM_24, "ernie.", _TIED_24),
    "mlm-2.5": Head("mlm-2.5", "masked LM (PaddleNLP >= 2.5 key names)", "BertForMaskedLM",
                    _MLM_25, "ernie.", _TIED_25),
    "mlm-2.4+ind_cls": Head("mlm-2.4+ind_cls", "masked LM with the ad-hoc ind_cls head (PaddleNLP 2.4 keys)",
                            "BertForMaskedLM", _MLM_24, "ernie.", _TIED_24, _IND_CLS),
    "mlm-2.5+ind_cls": Head("mlm-2.5+ind_cls", "masked LM with the ad-hoc ind_cls head (PaddleNLP >= 2.5 keys)",
                            "BertForMaskedLM", _MLM_25, "ernie.", _TIED_25, _IND_CLS),
    "encoder": Head("encoder", "bare encoder (ErnieModel)", "BertModel", ENCODER_ROWS, ""),
    "encoder-prefixed": Head("encoder-prefixed", "bare encoder (ErnieModel, ernie.-prefixed keys)", "BertModel",
                             _prefixed(ENCODER_ROWS, "ernie."), "ernie."),
    "seqcls": Head("seqcls", "sequence classifier (ErnieForSequenceClassification)", "BertForSequenceClassification",
                   _prefixed(ENCODER_ROWS, "ernie.") + (
                       Row("classifier.weight", "classifier.weight", ("H", "C"), _T),
                       Row("classifier.bias", "classifier.bias", ("C",), _C)),
                   "ernie."),
}


def expand_rows(head: Head, num_layers: int) -> list[Row]:
    """The head's rows with `{layer}` replaced by every layer index."""
    rows = []
    for row in head.rows:
        layers = range(num_layers) if "{layer}" in row.source else [None]
        for i in layers:
            fill = (lambda s: s.replace("{layer}", str(i))) if i is not None else (lambda s: s)
            rows.append(Row(fill(row.source), fill(row.target), row.shape, row.transform))
    return rows


def expected_shape(row: Row, config: ErnieConfig, source_vocab: int, num_labels: int | None) -> tuple[int, ...]:
    sizes = {"H": config.hidden_size, "I": config.intermediate_size, "V": source_vocab,
             "P": config.max_position_embeddings, "T": config.type_vocab_size, "C": num_labels}
    return tuple(sizes[s] for s in row.shape)


def target_shape(row: Row, source_shape: tuple[int, ...], vocab: Vocabulary) -> tuple[int, ...]:
    if row.transform is Transform.TRANSPOSE:
        return source_shape[::-1]
    if row.transform in (Transform.VOCAB_ROWS, Transform.INPUT_EMBEDDING):
        return (len(vocab.kept_source_ids), *source_shape[1:])
    return source_shape


def apply_transform(row: Row, array: np.ndarray, vocab: Vocabulary, pad_id: int) -> np.ndarray:
    """Return the tensor in the transformers layout (a view where possible)."""
    if row.transform is Transform.TRANSPOSE:
        out = array.T
        assert out.shape == array.shape[::-1]
        return out
    if row.transform is Transform.COPY:
        return array
    out = array[list(vocab.kept_source_ids)]
    if row.transform is Transform.INPUT_EMBEDDING:
        # Paddle's nn.Embedding(padding_idx=pad) outputs zeros for the pad id whatever row it stores;
        # a torch embedding returns the row, so the row itself must be zero.
        out[vocab.kept_source_ids.index(pad_id)] = 0
    return out


@dataclass(frozen=True)
class Plan:
    """What the mapper will do: validated rows with their source and target shapes."""

    head: Head
    rows: list[Row]
    source_shapes: dict[str, tuple[int, ...]]
    target_shapes: dict[str, tuple[int, ...]]
    num_labels: int | None


def plan_mapping(tensors: dict[str, np.ndarray], head: Head, config: ErnieConfig, vocab: Vocabulary,
                 num_labels: int | None = None, source: str = "the checkpoint") -> Plan:
    """Check every tensor against the table; collect all problems and raise them together."""
    problems: list[str] = []
    rows = expand_rows(head, config.num_hidden_layers)
    tied_aliases = {alias for alias, _ in head.tied_copies}
    mapped_sources = {r.source for r in rows} | tied_aliases | set(head.left_out)
    for key in sorted(set(tensors) - mapped_sources):
        problems.append(f"unexpected tensor {key} {tuple(tensors[key].shape)}")
    source_vocab = len(vocab.source_tokens)
    source_shapes: dict[str, tuple[int, ...]] = {}
    target_shapes: dict[str, tuple[int, ...]] = {}
    for row in rows:
        array = tensors.get(row.source)
        if array is None:
            if row.source not in source_shapes:
                problems.append(f"missing tensor {row.source}")
            continue
        want = expected_shape(row, config, source_vocab, num_labels)
        if tuple(array.shape) != want:
            problems.append(f"{row.source} has shape {tuple(array.shape)}, expected {want}"
                            + _shape_hint(row, array.shape, want, source_vocab))
            continue
        source_shapes[row.source] = tuple(array.shape)
        target_shapes[row.target] = target_shape(row, tuple(array.shape), vocab)
    for alias, original in head.tied_copies:
        if alias not in tensors:
            if alias not in {r.source for r in rows}:
                continue  # an optional alias (decoder_bias in >= 2.5) may be absent
        elif original in tensors and not np.array_equal(tensors[alias], tensors[original]):
            problems.append(f"{alias} should be a tied copy of {original} but differs")
    if problems:
        raise MappingError(problems, source)
    return Plan(head, rows, source_shapes, target_shapes, num_labels)


def _shape_hint(row: Row, got: tuple[int, ...], want: tuple[int, ...], source_vocab: int) -> str:
    if row.shape and row.shape[0] == "V" and got[1:] == want[1:]:
        return f" (the vocabulary has {source_vocab} tokens; pass the vocab the model was trained with via --vocab)"
    if len(got) == 2 and tuple(got) == want[::-1]:
        return " (stored transposed)"
    return ""


def check_finite(tensors: dict[str, np.ndarray], source: str,
                 release: Callable[[np.ndarray], None] = lambda array: None) -> None:
    """Refuse NaN/Inf weights, naming every bad tensor. `release(array)` runs after each check."""
    bad = []
    for key, array in tensors.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad.append(f"{key} contains NaN or Inf values")
        release(array)
    if bad:
        raise MappingError(bad, source)
