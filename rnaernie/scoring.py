"""Scores of a predicted secondary structure against a reference, in ViennaRNA's conventions.

Over the base pairs `(i, j)`, `i < j`, of one structure of length L (`RNA.compare_structure(reference,
prediction)`; tests/test_scoring.py checks every figure against it):

* TP pairs in both, FP predicted only, FN reference only, TN = L(L-1)/2 - TP - FP - FN;
* precision TP/(TP+FP) and recall TP/(TP+FN), each 0 when its denominator is;
* F1 = 2 precision recall / (precision + recall), 0 when both are 0 (so 0 when neither side has a pair);
* MCC = sqrt(PPV TPR TNR NPV) - sqrt(FDR FNR FPR FOR), the same as the usual formula wherever that is
  defined, and 0 when there is no pair on either side.

`shift=1` is the ±1-tolerant score UFold and E2Efold report: a reference pair (i, j) counts as found
when (i, j), (i±1, j) or (i, j±1) is predicted; FN are the reference pairs not found, FP the predicted
pairs minus TP (at least 0). Means are over records (each structure weighs the same), as RNAErnie's
and MXfold2's evaluations average per sequence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from rnaernie.errors import StructureError
from rnaernie.structures import Structure

METRICS = ("precision", "recall", "f1", "mcc")
SHIFTS = (0, 1)


@dataclass(frozen=True)
class Score:
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float
    recall: float
    f1: float
    mcc: float

    def as_dict(self) -> dict:
        return asdict(self)


def confusion_score(tp: int, fp: int, fn: int, tn: int) -> Score:
    """The rates of one confusion matrix, exactly as ViennaRNA's `vrna_score_from_confusion_matrix` defines them."""
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0  # TPR
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0  # PPV
    false_positive_rate = fp / (tn + fp) if tn + fp > 0 else 0.0
    false_omission_rate = fn / (tn + fn) if tn + fn > 0 else 0.0
    f1 = 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0
    mcc = (math.sqrt(precision * recall * (1 - false_positive_rate) * (1 - false_omission_rate))
           - math.sqrt((1 - precision) * (1 - recall) * false_positive_rate * false_omission_rate))
    return Score(tp, fp, fn, tn, precision, recall, f1, mcc)


def score_pairs(predicted: Iterable[tuple[int, int]], reference: Iterable[tuple[int, int]], length: int,
                shift: int = 0) -> Score:
    """Score the pairs of a prediction against a reference's, both of one structure of `length` bases."""
    check_shift(shift)
    predicted = {(min(i, j), max(i, j)) for i, j in predicted}
    reference = {(min(i, j), max(i, j)) for i, j in reference}
    if shift == 0:
        tp = len(predicted & reference)
    else:
        tp = sum(1 for i, j in reference
                 if any(pair in predicted for pair in ((i, j), (i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1))))
    fp = max(len(predicted) - tp, 0)
    fn = len(reference) - tp
    tn = length * (length - 1) // 2 - tp - fp - fn
    return confusion_score(tp, fp, fn, tn)


def check_shift(shift: int) -> None:
    if shift not in SHIFTS:
        raise StructureError(f"--shift {shift} is not supported; use 0 (exact) or 1 (±1-tolerant).")


def score_structure(predicted: Structure, reference: Structure, shift: int = 0) -> Score:
    if len(predicted.sequence) != len(reference.sequence):
        raise StructureError(f"record {reference.id!r}: the prediction has {len(predicted.sequence)} bases, the "
                             f"reference {len(reference.sequence)}; score structures of the same sequence.")
    return score_pairs(predicted.pairs, reference.pairs, len(reference.sequence), shift)


def match_records(predicted: Sequence[Structure], reference: Sequence[Structure]) -> list[tuple[Structure, Structure]]:
    """(prediction, reference) pairs by id, in the reference's order; any id on one side only is an error."""
    by_id = {structure.id: structure for structure in predicted}
    reference_ids = {structure.id for structure in reference}
    problems = []
    for side, ids in (("the prediction", [s.id for s in reference if s.id not in by_id]),
                      ("the reference", [s.id for s in predicted if s.id not in reference_ids])):
        if ids:
            shown = ", ".join(repr(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            problems.append(f"{len(ids)} record{'s' if len(ids) > 1 else ''} missing from {side}: {shown}")
    if problems:
        raise StructureError("; ".join(problems) + "; give both sides the same record ids.")
    return [(by_id[structure.id], structure) for structure in reference]


def mean_scores(scores: Sequence[Score]) -> dict:
    """Each metric's mean over records (and the total TP/FP/FN/TN)."""
    if not scores:
        raise StructureError("no records to score; pass files that hold structures.")
    totals = {name: sum(getattr(score, name) for score in scores) for name in ("tp", "fp", "fn", "tn")}
    means = {name: sum(getattr(score, name) for score in scores) / len(scores) for name in METRICS}
    return {"records": len(scores), **means, **totals}
