"""Folding: RNA sequences in, pair probabilities and a decoded structure per record out.

    folder = StructurePredictor("out/contact")               # a folder with a trained contact head
    for prediction in folder.iter_predictions("input.fa"):   # streamed, input order
        prediction.probabilities                              # float32 [L, L], symmetric
        prediction.structure                                  # rnaernie.structures.Structure

Records are read as `rnaernie embed` reads them (`rnaernie.sequences`), and long ones follow the
same `--long` policy: `truncate` folds the first 510 nucleotides (the rest stays unpaired, its
probabilities 0), `chunk` folds consecutive windows of 510 alone (no pair between two windows),
`error` refuses the record. Within a window of records, segments are sorted by length and packed
into batches under a token budget; the attention mask keeps padding out, so a sequence folded
alone or in a batch gets the same probabilities (to float rounding). Each record's matrix is then
decoded by `rnaernie.decoding`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from rnaernie.decoding import DEFAULT_THRESHOLD, check_threshold, decode
from rnaernie.embedding import WINDOW_BATCHES, check_batch_tokens, nucleotide_ids
from rnaernie.errors import InputError, ModelFolderError
from rnaernie.sequences import LongMode, Record, Shard, read_records
from rnaernie.structures import Structure

if TYPE_CHECKING:
    import numpy as np

DEFAULT_FOLD_BATCH_TOKENS = 2048  # probabilities grow with length squared: smaller batches than embed's


@dataclass
class Prediction:
    id: str
    probabilities: "np.ndarray"  # float32 [L, L]
    structure: Structure


@dataclass
class FoldStats:
    records: int = 0
    nucleotides: int = 0
    pairs: int = 0
    truncated: int = 0
    chunked: int = 0


class StructurePredictor:
    """A contact model, loaded once, with the decoding settings of `rnaernie fold`."""

    def __init__(self, model: str | Path, *, threshold: float = DEFAULT_THRESHOLD, pseudoknots: bool = False,
                 any_pairs: bool = False, long: str = "truncate", batch_tokens: int = DEFAULT_FOLD_BATCH_TOKENS,
                 device: str = "auto"):
        check_fold_options(threshold, long, batch_tokens)
        from rnaernie.contact import HEAD_FILE, RnaErnieForContactPrediction, read_head_file
        from rnaernie.model import pick_device, resolve_model

        where = Path(resolve_model(model))
        if not where.is_dir() or read_head_file(where) is None:
            raise ModelFolderError(f"{model} has no contact head ({HEAD_FILE}); fine-tune one with rnaernie train "
                                   "MODEL DATA -o OUT --task contact, then fold with OUT.")
        self.model = RnaErnieForContactPrediction.from_pretrained(where).to(pick_device(device)).eval()
        self.tokenizer = self.model.tokenizer
        self.threshold, self.pseudoknots, self.any_pairs = threshold, pseudoknots, any_pairs
        self.long, self.batch_tokens = LongMode(long), batch_tokens
        config = self.model.config
        self.max_nucleotides = min(self.tokenizer.model_max_length, config.max_position_embeddings - 1) - 2
        self.stats = FoldStats()

    def predict(self, sequences: Iterable[str]) -> list[Prediction]:
        """Fold sequences held in memory (ids seq1, seq2, ...)."""
        if isinstance(sequences, str):
            raise InputError("predict() takes a list of sequences; wrap a single one as [sequence].")
        return list(self.iter_predictions([Record(f"seq{i}", s) for i, s in enumerate(sequences, start=1)]))

    def iter_predictions(self, records: str | Path | Iterable[Record], *, skip_empty: bool = False,
                         shard: tuple[int, int] | None = None) -> Iterator[Prediction]:
        """Yield one `Prediction` per record, in input order, streaming (see the module docstring)."""
        if isinstance(records, (str, Path)):
            records = read_records(records, skip_empty=skip_empty)
        if shard is not None:
            records = Shard(*shard).select(records)
        window: list[tuple[Record, list[int]]] = []
        tokens = 0
        for record in records:
            ids = nucleotide_ids(self.tokenizer, record.id, record.sequence, self.long, self.max_nucleotides)
            window.append((record, ids))
            tokens += len(ids)
            if tokens >= WINDOW_BATCHES * self.batch_tokens:
                yield from self._fold_window(window)
                window, tokens = [], 0
        yield from self._fold_window(window)

    def _fold_window(self, window: list[tuple[Record, list[int]]]) -> Iterator[Prediction]:
        import numpy as np

        limit = self.max_nucleotides
        matrices = [np.zeros((len(ids), len(ids)), dtype=np.float32) for _, ids in window]
        segments = []  # (record position, start, token ids)
        for position, (_, ids) in enumerate(window):
            segments += [(position, start, ids[start:start + limit])
                         for start in self.long.window_starts(len(ids), limit)]
            self.stats.truncated += self.long is LongMode.TRUNCATE and len(ids) > limit
            self.stats.chunked += self.long is LongMode.CHUNK and len(ids) > limit
        segments.sort(key=lambda segment: len(segment[2]), reverse=True)
        batch: list = []
        for segment in segments:  # longest first, so the first of a batch sets its padded length
            if batch and (len(batch) + 1) * (len(batch[0][2]) + 2) > self.batch_tokens:
                self._run(batch, matrices)
                batch = []
            batch.append(segment)
        if batch:
            self._run(batch, matrices)
        for (record, ids), matrix in zip(window, matrices):
            sequence = "".join(record.sequence.split())
            if len(sequence) != len(ids):  # e.g. a literal [MASK]: spell the structure's sequence by tokens
                sequence = "".join(token if len(token) == 1 else "N"
                                   for token in self.tokenizer.convert_ids_to_tokens(ids))
            pairs = decode(matrix, sequence, threshold=self.threshold, pseudoknots=self.pseudoknots,
                           any_pairs=self.any_pairs)
            self.stats.records += 1
            self.stats.nucleotides += len(ids)
            self.stats.pairs += len(pairs)
            yield Prediction(record.id, matrix, Structure(record.id, sequence, pairs))

    def _run(self, batch: list, matrices: list) -> None:
        import numpy as np
        import torch

        tokenizer = self.tokenizer
        width = len(batch[0][2]) + 2
        input_ids = np.full((len(batch), width), tokenizer.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros_like(input_ids)
        for row, (_, _, ids) in enumerate(batch):
            input_ids[row, :len(ids) + 2] = [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]
            attention_mask[row, :len(ids) + 2] = 1
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            ids = torch.from_numpy(input_ids).to(device)
            probabilities = self.model.pair_probabilities(ids, torch.from_numpy(attention_mask).to(device),
                                                          token_type_ids=torch.zeros_like(ids)).cpu().numpy()
        for row, (position, start, ids) in enumerate(batch):
            end = start + len(ids)
            matrices[position][start:end, start:end] = probabilities[row, :len(ids), :len(ids)]


def check_fold_options(threshold: float, long: str, batch_tokens: int) -> None:
    check_threshold(threshold)
    LongMode.parse(long)
    check_batch_tokens(batch_tokens)
