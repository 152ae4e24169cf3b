"""Embeddings from a converted RNAErnie folder: sequences in, one vector (or one matrix) per record out.

What a record's embedding is (the contract of `rnaernie embed`, checked against PaddleNLP's
`ErnieModel` in tests/test_embed.py):

* The sequence is tokenized by the folder's tokenizer (official rules: case-insensitive, T and U
  alike, anything else `[UNK]`) into nucleotide tokens, then cut into segments `[CLS] w [SEP]`:
  `truncate` keeps the first 510 nucleotides, `chunk` cuts consecutive windows of 510 (the last one
  shorter), `error` refuses a longer record.
* `layer` indexes `hidden_states`: 0 the embedding output, i the output of encoder layer i, -1 the last.
* `cls` is the `[CLS]` state (chunk: the mean over windows); `mean` the mean over nucleotide states
  only (not `[CLS]`, `[SEP]` or padding; chunk: over all windows); `none` the nucleotide states
  (chunk: windows concatenated), one [length, hidden] matrix per record.

How it runs fast: records are read in windows of a few batches' worth of tokens, each window's
segments are sorted by length and packed into batches under a token budget (padding is then
minimal), the encoder is cut after the requested layer and runs without its pooler under
`torch.inference_mode`, with the attention mask, in eval mode; for `cls` pooling the last layer
needed runs for the `[CLS]` query alone. Results leave each window in input order, so memory
depends on the window, not on the number of records.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from rnaernie.errors import InputError
from rnaernie.sequences import LongMode, Record, Shard, read_records

if TYPE_CHECKING:
    import numpy as np

DEFAULT_BATCH_TOKENS = 4096  # on CPU larger batches gain nothing once padding is gone
WINDOW_BATCHES = 8  # a window holds about this many batches: enough to sort by length, little memory


class Pooling(str, Enum):
    """`--pooling`: what a record's hidden states become. A record is one segment, or several with
    `--long chunk`: `of_segment` keeps what each contributes, `combine` joins them."""

    CLS = "cls"  # the [CLS] state (chunk: the mean over windows)
    MEAN = "mean"  # the mean over nucleotide states (chunk: over all windows)
    NONE = "none"  # the nucleotide states, one [length, hidden] matrix (chunk: windows concatenated)

    @classmethod
    def parse(cls, text: str) -> Pooling:
        if text not in [mode.value for mode in cls]:
            raise InputError(f"--pooling {text!r} is not known; use one of {', '.join(m.value for m in cls)}.")
        return cls(text)

    def of_segment(self, states: np.ndarray, length: int):
        """What one segment's states [padded length, hidden] (`length` real tokens) contribute."""
        import numpy as np

        nucleotides = states[1:length - 1]
        if self is Pooling.CLS:
            return states[0].copy()
        if self is Pooling.MEAN:
            return nucleotides.sum(axis=0, dtype=np.float64), len(nucleotides)
        return nucleotides.copy()

    def combine(self, results: list) -> np.ndarray:
        """The record's embedding (float32) from its segments' contributions, in order."""
        import numpy as np

        if self is Pooling.CLS:
            return np.mean(results, axis=0, dtype=np.float64).astype(np.float32)
        if self is Pooling.MEAN:
            total = np.sum([summed for summed, _ in results], axis=0)
            return (total / sum(count for _, count in results)).astype(np.float32)
        return results[0] if len(results) == 1 else np.concatenate(results)


@dataclass
class EmbedStats:
    """What an `Embedder` has seen so far (it adds up over calls); the command prints it as its summary."""

    records: int = 0
    nucleotides: int = 0  # nucleotide tokens embedded (after truncation)
    unknown: int = 0  # [UNK] tokens among them
    unknown_records: int = 0
    truncated: int = 0  # records cut to their first window (--long truncate)
    chunked: int = 0  # records embedded as several windows (--long chunk)


@dataclass
class _Pending:
    """A record of the current window: its segments, and their results as they come back."""

    id: str
    segments: list[list[int]]
    results: list


class Embedder:
    """A converted model ready to embed; keeps the model loaded between calls.

    >>> embedder = Embedder("out/example", pooling="mean")
    >>> vectors = embedder.embed(["ACGU", "GGCAUU"])          # numpy float32 [2, hidden]
    >>> for record_id, vector in embedder.iter_embeddings("input.fa"): ...
    """

    def __init__(self, model: str | Path, *, pooling: str = "cls", layer: int = -1, long: str = "truncate",
                 batch_tokens: int = DEFAULT_BATCH_TOKENS, device: str = "auto", dtype: str = "float32"):
        self.pooling, self.long = Pooling.parse(pooling), LongMode.parse(long)
        check_batch_tokens(batch_tokens)
        from rnaernie.model import load

        self.batch_tokens = batch_tokens
        self.tokenizer, self.model = load(model, "AutoModel", device, dtype)
        config = self.model.config
        self.layer = resolve_layer(layer, config.num_hidden_layers)
        self.hidden_size = config.hidden_size
        # Work the requested output does not need is not done: later layers and the pooler are dropped,
        # and for `cls` the last layer needed runs for the [CLS] query alone (see `_layer_at_cls`).
        layers = self.model.encoder.layer[:self.layer]
        self.cls_layer = layers[-1] if self.pooling is Pooling.CLS and len(layers) else None
        self.model.encoder.layer = layers[:-1] if self.cls_layer is not None else layers
        self.model.pooler = None
        self.max_nucleotides = min(self.tokenizer.model_max_length, config.max_position_embeddings - 1) - 2
        self.stats = EmbedStats()

    def embed(self, sequences: Iterable[str]) -> np.ndarray | list[np.ndarray]:
        """Embed sequences held in memory: float32 [N, hidden], or (pooling none) a list of [L_i, hidden]."""
        import numpy as np

        if isinstance(sequences, str):
            raise InputError("embed() takes a list of sequences; wrap a single one as [sequence].")
        records = [Record(f"seq{i}", sequence) for i, sequence in enumerate(sequences, start=1)]
        arrays = [array for _, array in self.iter_embeddings(records)]
        if self.pooling is Pooling.NONE:
            return arrays
        return np.stack(arrays) if arrays else np.zeros((0, self.hidden_size), dtype=np.float32)

    def iter_embeddings(self, records: str | Path | Iterable[Record | tuple[str, str]], *,
                        skip_empty: bool = False, shard: tuple[int, int] | None = None
                        ) -> Iterator[tuple[str, np.ndarray]]:
        """Yield (id, float32 array) per record, in input order, streaming.

        `records`: a FASTA / sequence-list path ('-' is stdin; see `rnaernie.sequences`) or an iterable
        of `Record`s or (id, sequence) pairs. `shard=(k, n)` keeps records k-1, k-1+n, k-1+2n, ...
        """
        if isinstance(records, (str, Path)):
            records = read_records(records, skip_empty=skip_empty)
        if shard is not None:
            records = Shard(*shard).select(records)
        window: list[_Pending] = []
        window_tokens = 0
        for record in records:
            record_id, sequence = record if isinstance(record, tuple) else (record.id, record.sequence)
            pending = _Pending(record_id, self._segments(record_id, sequence), [])
            window.append(pending)
            window_tokens += sum(len(segment) for segment in pending.segments)
            if window_tokens >= WINDOW_BATCHES * self.batch_tokens:
                yield from self._finish_window(window)
                window, window_tokens = [], 0
        yield from self._finish_window(window)

    # -- one record -> segments of token ids ---------------------------------------------------

    def _segments(self, record_id: str, sequence: str) -> list[list[int]]:
        tokenizer, limit = self.tokenizer, self.max_nucleotides
        ids = nucleotide_ids(tokenizer, record_id, sequence, self.long, limit)
        windows = [ids[start:start + limit] for start in self.long.window_starts(len(ids), limit)]
        if len(ids) > limit:
            self.stats.truncated += self.long is LongMode.TRUNCATE
            self.stats.chunked += self.long is LongMode.CHUNK
        unknown = sum(window.count(tokenizer.unk_token_id) for window in windows)
        self.stats.unknown += unknown
        self.stats.unknown_records += unknown > 0
        self.stats.nucleotides += sum(len(window) for window in windows)
        self.stats.records += 1
        return [[tokenizer.cls_token_id, *window, tokenizer.sep_token_id] for window in windows]

    # -- a window of records -> batches -> results in input order ----------------------------------

    def _finish_window(self, window: list[_Pending]) -> Iterator[tuple[str, np.ndarray]]:
        segments = [(pending, index) for pending in window for index in range(len(pending.segments))]
        for pending in window:
            pending.results = [None] * len(pending.segments)
        segments.sort(key=lambda item: len(item[0].segments[item[1]]), reverse=True)
        batch: list[tuple[_Pending, int]] = []
        for item in segments:  # longest first, so the first member of a batch sets its padded length
            longest = len(batch[0][0].segments[batch[0][1]]) if batch else len(item[0].segments[item[1]])
            if batch and (len(batch) + 1) * longest > self.batch_tokens:
                self._run(batch)
                batch = []
            batch.append(item)
        if batch:
            self._run(batch)
        for pending in window:
            yield pending.id, self.pooling.combine(pending.results)

    def _run(self, batch: list[tuple[_Pending, int]]) -> None:
        import numpy as np
        import torch

        rows = [pending.segments[index] for pending, index in batch]
        lengths = [len(row) for row in rows]
        input_ids = np.full((len(rows), max(lengths)), self.tokenizer.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros_like(input_ids)
        for i, row in enumerate(rows):
            input_ids[i, :len(row)] = row
            attention_mask[i, :len(row)] = 1
        device = self.model.device
        with torch.inference_mode():
            ids = torch.from_numpy(input_ids).to(device)
            mask = torch.from_numpy(attention_mask).to(device)
            hidden = self.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
            if self.cls_layer is not None:
                hidden = _layer_at_cls(self.cls_layer, hidden, mask)
            hidden = hidden.float().cpu().numpy()
        for (pending, index), states, length in zip(batch, hidden, lengths):
            pending.results[index] = self.pooling.of_segment(states, length)


def _layer_at_cls(layer, hidden, attention_mask):
    """A transformers `BertLayer` computed for the [CLS] position only: [B, L, H] -> [B, 1, H].

    Keys and values still come from every position, but the query, attention output and
    feed-forward run on one row instead of L: for `cls` pooling the last layer costs about a sixth.
    """
    import torch.nn.functional as F

    attention = layer.attention.self
    batch = hidden.shape[0]
    heads, size = attention.num_attention_heads, attention.attention_head_size

    def split_heads(states):
        return states.view(batch, -1, heads, size).transpose(1, 2)

    context = F.scaled_dot_product_attention(
        split_heads(attention.query(hidden[:, :1])), split_heads(attention.key(hidden)),
        split_heads(attention.value(hidden)), attn_mask=attention_mask[:, None, None, :].bool())
    attended = layer.attention.output(context.transpose(1, 2).reshape(batch, 1, heads * size), hidden[:, :1])
    return layer.output(layer.intermediate(attended), attended)


def embed(model: str | Path, sequences: Iterable[str], **options) -> np.ndarray | list[np.ndarray]:
    """Embed in-memory sequences: float32 [N, hidden] (`pooling="none"`: a list of [L_i, hidden]).

    Options as `Embedder`: pooling, layer, long, batch_tokens, device, dtype.
    """
    return Embedder(model, **options).embed(sequences)


def iter_embed(model: str | Path, records, *, skip_empty: bool = False, shard: tuple[int, int] | None = None,
               **options) -> Iterator[tuple[str, np.ndarray]]:
    """Stream (id, float32 array) for a FASTA path, '-', or an iterable of records; see `Embedder`."""
    return Embedder(model, **options).iter_embeddings(records, skip_empty=skip_empty, shard=shard)


def nucleotide_ids(tokenizer, record_id: str, sequence: str, long: LongMode, limit: int) -> list[int]:
    """A record's token ids without [CLS] and [SEP]; an empty record, or a long one under `--long error`, refused."""
    if not sequence:
        raise InputError(f"record {record_id!r} is empty; remove it or pass --skip-empty.")
    ids = tokenizer(sequence, add_special_tokens=False, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
    if not ids:
        raise InputError(f"record {record_id!r} has no nucleotides (only characters the tokenizer ignores, "
                         "such as spaces); remove it.")
    long.check(record_id, len(ids), limit)
    return ids


def check_batch_tokens(batch_tokens: int) -> None:
    """The batch budget, shared by every command that runs the encoder on records."""
    if batch_tokens < 512:
        raise InputError(f"--batch-tokens {batch_tokens} is too small: a 510-nt sequence needs 512; "
                         "use 512 or more.")


def resolve_layer(layer: int, num_layers: int) -> int:
    """`hidden_states` index (negative from the end) -> how many encoder layers to run."""
    if not -(num_layers + 1) <= layer <= num_layers:
        raise InputError(f"--layer {layer} does not exist: this model has {num_layers} layers, so use 0 "
                         f"(embedding output) to {num_layers}, or -1 (last) to {-(num_layers + 1)}.")
    return layer % (num_layers + 1)
