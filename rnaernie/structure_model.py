"""Folding with the official secondary-structure model: encoder -> network -> engine, one record at a time.

    predictor = MixedFoldPredictor("out/ssp")                 # a folder converted with --backbone
    for prediction in predictor.iter_predictions("input.fa"):
        prediction.structure, prediction.structure.score      # rnaernie.structures.Structure, its score

Each record is spelled as the model reads it (`rnaernie.mixedfold.normalise`: upper case, U for T),
scored by the network (`StructureScorer.positional`) and folded by the engine
(`rnaernie.mixedfold_engine.fold`, the official limits: internal loops of 30, helices of 30) with the
Turner tables of the folder. The structure keeps the record's own spelling; `N` and other letters never
pair. The encoder reads at most 510 nucleotides; longer records follow `--long` as `rnaernie fold`
does for contact models: `truncate` folds the first 510 (the rest unpaired), `chunk` folds consecutive
windows of 510 alone (no pair between windows; the score is the windows' sum), `error` refuses the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from rnaernie.errors import InputError
from rnaernie.folding import FoldStats
from rnaernie.sequences import MAX_NUCLEOTIDES, LongMode, Record, Shard, read_records
from rnaernie.structures import Structure


@dataclass
class StructurePrediction:
    id: str
    structure: Structure  # its `score`: the engine's, higher is better
    probabilities: None = None  # the structure model gives a structure, not pair probabilities


class MixedFoldPredictor:
    """A converted structure model (encoder, network, Turner tables), loaded once."""

    pseudoknots = False  # the engine's structures are nested

    def __init__(self, model: str | Path, *, long: str = "truncate", device: str = "auto"):
        from rnaernie.mixedfold import StructureScorer

        self.long = LongMode.parse(long)
        self.scorer = StructureScorer.from_pretrained(model, device=device)
        self.max_nucleotides = MAX_NUCLEOTIDES
        self.stats = FoldStats()

    def predict(self, sequences: Iterable[str]) -> list[StructurePrediction]:
        """Fold sequences held in memory (ids seq1, seq2, ...)."""
        if isinstance(sequences, str):
            raise InputError("predict() takes a list of sequences; wrap a single one as [sequence].")
        return list(self.iter_predictions([Record(f"seq{i}", s) for i, s in enumerate(sequences, start=1)]))

    def iter_predictions(self, records: str | Path | Iterable[Record], *, skip_empty: bool = False,
                         shard: tuple[int, int] | None = None) -> Iterator[StructurePrediction]:
        """One prediction per record, in input order."""
        if isinstance(records, (str, Path)):
            records = read_records(records, skip_empty=skip_empty)
        if shard is not None:
            records = Shard(*shard).select(records)
        for record in records:
            yield self._fold_record(record)

    def _fold_record(self, record: Record) -> StructurePrediction:
        from rnaernie.mixedfold import normalise
        from rnaernie.mixedfold_engine import fold

        sequence = "".join(record.sequence.split())
        if not sequence:
            raise InputError(f"record {record.id!r} is empty; remove it or pass --skip-empty.")
        limit = self.max_nucleotides
        self.long.check(record.id, len(sequence), limit)
        starts = self.long.window_starts(len(sequence), limit)
        pairs, score = [], 0.0
        settings = self.scorer.settings
        for start in starts:
            window = normalise(sequence[start:start + limit])
            result = fold(window, self.scorer.turner, self.scorer.positional(window),
                          max_internal_length=settings["max_internal_length"],
                          max_helix_length=settings["max_helix_length"])
            pairs += [(i + start, j + start) for i, j in result.pairs]
            score += result.score
        self.stats.truncated += self.long is LongMode.TRUNCATE and len(sequence) > limit
        self.stats.chunked += self.long is LongMode.CHUNK and len(sequence) > limit
        self.stats.records += 1
        self.stats.nucleotides += len(sequence)
        self.stats.pairs += len(pairs)
        return StructurePrediction(record.id, Structure(record.id, sequence, tuple(pairs), score=score))


def is_structure_model(model: str | Path) -> bool:
    """Whether MODEL is a local folder holding a converted structure model."""
    from rnaernie.mixedfold_format import SIDE_FILE

    return (Path(model) / SIDE_FILE).is_file()
