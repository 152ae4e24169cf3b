"""Paddle -> PyTorch tensor names, as tables of rows. An unknown, missing or mis-shaped tensor is an error.

This module holds the encoder's rows and the machinery (rows, key layouts, side files, the checked
plan, the transforms); each head's own rows and layouts are in its `convert.heads` entry, which
imports this module (never the other way round). Each row: Paddle name, transformers name, the Paddle-side shape in config symbols, and the
transform. Symbols: H hidden, I intermediate, V source vocab, P max positions, T type vocab,
C classifier labels. `{layer}` expands to 0..num_hidden_layers-1. Encoder rows are written
without the `ernie.` prefix that task models add (the bare ErnieModel saves without it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Callable

from convert.errors import MappingError
from convert.paddle_config import ErnieConfig
from convert.vocabulary import Vocabulary
from rnaernie.type_guided_rows import INPUT_CLASSES, INPUT_IND

if TYPE_CHECKING:  # numpy is imported where it is used: the card and the push read the table without it
    import numpy as np


class Transform(Enum):
    COPY = "copy"
    TRANSPOSE = "transpose"  # Paddle nn.Linear stores [in, out]; torch wants [out, in]
    VOCAB_ROWS = "vocab_rows"  # keep the converted vocabulary's rows, in its order
    INPUT_EMBEDDING = "input_embedding"  # VOCAB_ROWS, and the [PAD] row zeroed like padding_idx does
    # kept aside in the type-guided side file: the vocabulary rows the converted model drops
    IND_ROW = "ind_row"  # the [IND] row of a vocabulary table
    CLASS_ROWS = "class_rows"  # the ncRNA class-token rows of a vocabulary table, in source order


@dataclass(frozen=True)
class Row:
    source: str
    target: str
    shape: tuple[str | int, ...]  # config symbols (see above) or fixed sizes
    transform: Transform


@dataclass(frozen=True)
class SideFile:
    """Tensors written beside model.safetensors in a file of their own, which stock `from_pretrained` ignores.

    The plan checks its rows' sources like the main rows'; the structure check compares the file
    with them bit for bit; the verdict vouches for its bytes.
    """

    name: str  # file name in the output folder
    rows: tuple[Row, ...]
    dtype: str = "float32"  # kept as stored whatever --dtype says
    needs_dropped_tokens: bool = False  # written only when the vocabulary has [IND] and class tokens to keep
    # safetensors metadata: (vocabulary, the checkpoint's tensors) -> {key: text}
    metadata: Callable[[Vocabulary, dict], dict[str, str]] | None = None
    # a network whose sizes only its tensors tell: (tensors, source) -> (its rows, its tied copies), instead of
    # `rows`; raises MappingError for a layer numbered out of order
    rows_of: Callable[[dict, str], tuple[tuple[Row, ...], tuple[tuple[str, str], ...]]] | None = None


@dataclass(frozen=True)
class KeyLayout:
    """One way a kind's tensors are named in a `.pdparams` file."""

    name: str  # recorded in conversion.json, e.g. "mlm-2.4"
    description: str  # what was found, in words
    marker: str  # a tensor name present in this layout (with `source_prefix` where it applies)
    rows: tuple[Row, ...]  # what goes into model.safetensors
    source_prefix: str  # "ernie." for task models, "" for a bare ErnieModel
    tied_copies: tuple[tuple[str, str], ...] = ()  # (alias Paddle key, Paddle key it must equal)
    side_files: tuple[SideFile, ...] = ()


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
# Rows the converted vocabulary drops but type-guided classification needs, written to the side
# file (`rnaernie.type_guided_rows`) rather than model.safetensors: every model's input rows of
# [IND] and the class tokens; masked LMs add their decoder rows (see `convert.heads`).
TYPE_GUIDED_INPUT_ROWS = (
    Row("embeddings.word_embeddings.weight", INPUT_IND, ("V", "H"), Transform.IND_ROW),
    Row("embeddings.word_embeddings.weight", INPUT_CLASSES, ("V", "H"), Transform.CLASS_ROWS),
)

def prefixed(rows: tuple[Row, ...], prefix: str) -> tuple[Row, ...]:
    """The same rows with `prefix` before every Paddle name (task models save the encoder under `ernie.`)."""
    return tuple(Row(prefix + r.source, r.target, r.shape, r.transform) for r in rows)


def expand_rows(rows_with_layers: tuple[Row, ...], num_layers: int) -> list[Row]:
    """The rows with `{layer}` replaced by every layer index."""
    rows = []
    for row in rows_with_layers:
        layers = range(num_layers) if "{layer}" in row.source else [None]
        for i in layers:
            fill = (lambda s: s.replace("{layer}", str(i))) if i is not None else (lambda s: s)
            rows.append(Row(fill(row.source), fill(row.target), row.shape, row.transform))
    return rows


def expected_shape(row: Row, config: ErnieConfig, source_vocab: int, num_labels: int | None) -> tuple[int, ...]:
    sizes = {"H": config.hidden_size, "I": config.intermediate_size, "V": source_vocab,
             "P": config.max_position_embeddings, "T": config.type_vocab_size, "C": num_labels}
    return tuple(sizes[s] if isinstance(s, str) else s for s in row.shape)


def target_shape(row: Row, source_shape: tuple[int, ...], vocab: Vocabulary) -> tuple[int, ...]:
    if row.transform is Transform.TRANSPOSE:
        return source_shape[::-1]
    if row.transform in (Transform.VOCAB_ROWS, Transform.INPUT_EMBEDDING):
        return (len(vocab.kept_source_ids), *source_shape[1:])
    if row.transform is Transform.IND_ROW:
        return source_shape[1:]
    if row.transform is Transform.CLASS_ROWS:
        return (len(vocab.class_source_ids), *source_shape[1:])
    return source_shape


def apply_transform(row: Row, array: np.ndarray, vocab: Vocabulary, pad_id: int) -> np.ndarray:
    """Return the tensor in the transformers layout (a view where possible)."""
    if row.transform is Transform.TRANSPOSE:
        out = array.T
        assert out.shape == array.shape[::-1]
        return out
    if row.transform is Transform.COPY:
        return array
    if row.transform is Transform.IND_ROW:
        return array[vocab.ind_source_id]
    if row.transform is Transform.CLASS_ROWS:
        return array[list(vocab.class_source_ids)]
    out = array[list(vocab.kept_source_ids)]
    if row.transform is Transform.INPUT_EMBEDDING:
        # Paddle's nn.Embedding(padding_idx=pad) outputs zeros for the pad id whatever row it stores;
        # a torch embedding returns the row, so the row itself must be zero.
        out[vocab.kept_source_ids.index(pad_id)] = 0
    return out


@dataclass(frozen=True)
class Plan:
    """What the mapper will do: validated rows with their source and target shapes."""

    rows: list[Row]
    source_shapes: dict[str, tuple[int, ...]]
    target_shapes: dict[str, tuple[int, ...]]
    num_labels: int | None
    # side file name -> (its rows, their target shapes); a file with nothing to keep is absent
    side_files: dict[str, tuple[list[Row], dict[str, tuple[int, ...]]]] = field(default_factory=dict)


def plan_mapping(tensors: dict[str, np.ndarray], layout: KeyLayout, config: ErnieConfig, vocab: Vocabulary,
                 num_labels: int | None = None, left_out: tuple[str, ...] = (),
                 source: str = "the checkpoint") -> Plan:
    """Check every tensor against the layout's rows; collect all problems and raise them together.

    `left_out` names tensors that are known and deliberately not converted.
    """
    import numpy as np

    problems: list[str] = []
    rows = expand_rows(layout.rows, config.num_hidden_layers)
    tied_copies = list(layout.tied_copies)
    side_files = []
    for side in layout.side_files:
        if side.needs_dropped_tokens and (vocab.ind_source_id is None or not vocab.class_source_ids):
            continue
        if side.rows_of is None:
            side_files.append((side, expand_rows(side.rows, config.num_hidden_layers)))
        else:
            side_rows, side_copies = side.rows_of(tensors, source)
            side_files.append((side, list(side_rows)))
            tied_copies += side_copies
    tied_aliases = {alias for alias, _ in tied_copies}
    every_row = rows + [row for _, side_rows in side_files for row in side_rows]
    mapped_sources = {r.source for r in every_row} | tied_aliases | set(left_out)
    for key in sorted(set(tensors) - mapped_sources):
        problems.append(f"unexpected tensor {key} {tuple(tensors[key].shape)}")
    source_vocab = len(vocab.source_tokens)
    source_shapes: dict[str, tuple[int, ...]] = {}
    target_shapes: dict[str, dict[str, tuple[int, ...]]] = {"": {}, **{side.name: {} for side, _ in side_files}}
    # a source may feed several targets (the MLM decoder bias): report each missing one once
    problems += [f"missing tensor {name}" for name in dict.fromkeys(r.source for r in every_row) if name not in tensors]
    for file, file_rows in [("", rows), *((side.name, side_rows) for side, side_rows in side_files)]:
        for row in file_rows:
            array = tensors.get(row.source)
            if array is None:
                continue
            want = expected_shape(row, config, source_vocab, num_labels)
            if tuple(array.shape) != want:
                problems.append(f"{row.source} has shape {tuple(array.shape)}, expected {want}"
                                + _shape_hint(row, array.shape, want, source_vocab))
                continue
            source_shapes[row.source] = tuple(array.shape)
            target_shapes[file][row.target] = target_shape(row, tuple(array.shape), vocab)
    for alias, original in tied_copies:  # an absent alias is fine (decoder_bias is optional in >= 2.5)
        if alias in tensors and original in tensors and not np.array_equal(tensors[alias], tensors[original]):
            problems.append(f"{alias} should be a tied copy of {original} but differs")
    if problems:
        raise MappingError(list(dict.fromkeys(problems)), source)  # a side row may repeat a main row's problem
    return Plan(rows, source_shapes, target_shapes[""], num_labels,
                {side.name: (side_rows, target_shapes[side.name]) for side, side_rows in side_files})


def as_float32(array: np.ndarray) -> np.ndarray:
    """One weight as float32 (Paddle saves bfloat16 as uint16 bit patterns); float32 stays a view."""
    import numpy as np

    if array.dtype == np.uint16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array if array.dtype == np.float32 else array.astype(np.float32)


def mapped_tensor(row: Row, tensors: dict[str, np.ndarray], vocab: Vocabulary, pad_id: int) -> np.ndarray:
    """One tensor of the converted model in float32, before the cast to the output dtype."""
    return apply_transform(row, as_float32(tensors[row.source]), vocab, pad_id)


def _shape_hint(row: Row, got: tuple[int, ...], want: tuple[int, ...], source_vocab: int) -> str:
    if row.shape and row.shape[0] == "V" and got[1:] == want[1:]:
        return f" (the vocabulary has {source_vocab} tokens; pass the vocab the model was trained with via --vocab)"
    if len(got) == 2 and tuple(got) == want[::-1]:
        return " (stored transposed)"
    return ""


def check_finite(tensors: dict[str, np.ndarray], source: str,
                 release: Callable[[np.ndarray], None] = lambda array: None) -> None:
    """Refuse NaN/Inf weights, naming every bad tensor. `release(array)` runs after each check.

    bfloat16 arrives as uint16 bit patterns: NaN and Inf are those with every exponent bit set.
    """
    import numpy as np

    bad = []
    for key, array in tensors.items():
        finite = ((array & 0x7F80) != 0x7F80).all() if array.dtype == np.uint16 else np.isfinite(array).all()
        if not finite:
            bad.append(f"{key} contains NaN or Inf values")
        release(array)
    if bad:
        raise MappingError(bad, source)
