"""Scores equal ViennaRNA's `RNA.compare_structure`; the shifted score equals UFold/E2Efold's formula."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rnaernie.errors import StructureError
from rnaernie.scoring import match_records, mean_scores, score_pairs, score_structure
from rnaernie.sequences import read_records
from rnaernie.structures import Structure, parse_dot_bracket
from tests.conftest import ROOT, require


def random_pairs(length: int, rng: random.Random) -> list[tuple[int, int]]:
    bases = list(range(length))
    rng.shuffle(bases)
    return [tuple(sorted(bases[2 * k:2 * k + 2])) for k in range(rng.randint(0, length // 2))]


def vienna(RNA, predicted, reference, length):
    def table(pairs):
        entries = [length] + [0] * length
        for i, j in pairs:
            entries[i + 1], entries[j + 1] = j + 1, i + 1
        return RNA.IntVector(entries)

    return RNA.compare_structure(table(reference), table(predicted), 0)


def assert_same_as_vienna(ours, theirs):
    assert (ours.tp, ours.fp, ours.fn, ours.tn) == (theirs.TP, theirs.FP, theirs.FN, theirs.TN)
    assert (ours.precision, ours.recall, ours.f1, ours.mcc) == pytest.approx(
        (theirs.PPV, theirs.TPR, theirs.F1, theirs.MCC), abs=1e-12)


def test_random_structures_with_pseudoknots_score_as_viennarna():
    RNA = require("RNA")
    rng = random.Random(20)
    for _ in range(3000):
        length = rng.randint(2, 40)
        reference = random_pairs(length, rng)
        # some predictions share pairs with the reference, some are subsets, some are unrelated
        predicted = (reference[:rng.randint(0, len(reference))] + random_pairs(length, rng)[:1]
                     if rng.random() < 0.5 else random_pairs(length, rng))
        predicted = list({p for p in predicted if not any(set(p) & set(q) for q in predicted if q != p)})
        assert_same_as_vienna(score_pairs(predicted, reference, length), vienna(RNA, predicted, reference, length))


def test_real_records_mfe_against_mea_and_centroid_score_as_viennarna():
    RNA = require("RNA")
    for record in read_records(ROOT / "examples" / "rna.fa"):
        sequence = record.sequence.upper().replace("T", "U")[:300]
        compound = RNA.fold_compound(sequence)
        mfe, energy = compound.mfe()
        compound.exp_params_rescale(energy)
        compound.pf()
        for other in (compound.MEA()[0], compound.centroid()[0], "." * len(sequence)):
            ours = score_structure(Structure("p", sequence, parse_dot_bracket(other)),
                                   Structure("r", sequence, parse_dot_bracket(mfe)))
            assert_same_as_vienna(ours, RNA.compare_structure(mfe, other))


def test_no_pair_on_either_side_is_f1_0_and_mcc_0():
    score = score_pairs([], [], 10)
    assert (score.tp, score.fp, score.fn, score.tn) == (0, 0, 0, 45)
    assert (score.precision, score.recall, score.f1, score.mcc) == (0.0, 0.0, 0.0, 0.0)
    perfect = score_pairs([(0, 9)], [(0, 9)], 10)
    assert (perfect.f1, perfect.mcc) == (1.0, 1.0)


def e2efold_shifted(predicted, reference, length):
    """UFold / E2Efold's `evaluate_shifted`, recomputed on full symmetric 0/1 matrices: (precision, recall, F1)."""
    def matrix(pairs):
        m = np.zeros((length, length))
        for i, j in pairs:
            m[i, j] = m[j, i] = 1
        return m

    pred, true = matrix(predicted), matrix(reference)
    padded = np.pad(pred, 1)  # a plus-shaped 3x3 kernel, 'same' size
    filtered = (padded[1:-1, 1:-1] + padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:])
    fn = np.sum((true - filtered) == 1)
    tp = true.sum() - fn
    fp = pred.sum() - tp
    return tp / (tp + fp), tp / (tp + fn), 2 * tp / (2 * tp + fp + fn)


def test_shifted_score_counts_a_pair_one_base_off_and_no_further():
    reference = [(2, 20), (3, 19)]
    exact, shifted = score_pairs([(3, 20)], reference, 30), score_pairs([(3, 20)], reference, 30, shift=1)
    assert exact.tp == 0 and (shifted.tp, shifted.fp, shifted.fn) == (2, 0, 0)  # (3, 20) is beside both
    assert score_pairs([(4, 19)], reference, 30, shift=1).tp == 1
    assert score_pairs([(4, 20)], reference, 30, shift=1).tp == 0  # diagonal neighbours do not count
    assert score_pairs([(5, 22)], reference, 30, shift=1).tp == 0
    with pytest.raises(StructureError, match="--shift 2 is not supported"):
        score_pairs([], reference, 30, shift=2)


def test_shifted_score_equals_e2efolds_formula():
    rng = random.Random(1)
    compared = 0
    for _ in range(1000):
        length = rng.randint(8, 40)
        reference = random_pairs(length, rng)
        # predictions near the reference: its pairs moved by -1, 0 or +1 on one side, some dropped, some random
        moved = {(i + rng.choice((-1, 0, 1)), j) if rng.random() < 0.5 else (i, j + rng.choice((-1, 0, 1)))
                 for i, j in reference if rng.random() < 0.8}
        predicted = [p for p in moved | set(random_pairs(length, rng)[:2]) if 0 <= p[0] < p[1] < length]
        predicted = [p for p in predicted if sum(1 for q in predicted if set(p) & set(q)) == 1]  # one partner each
        ours = score_pairs(predicted, reference, length, shift=1)
        if not predicted or not reference or ours.fp != len(predicted) - ours.tp:
            continue  # their formula divides by zero, or lets FP go below 0 where ours stops at 0
        compared += 1
        assert (ours.precision, ours.recall, ours.f1) == pytest.approx(e2efold_shifted(predicted, reference, length),
                                                                       abs=1e-12)
    assert compared > 800


def test_records_match_by_id_and_missing_ones_are_named():
    a, b, c = (Structure(name, "GGAAACC", ((0, 6),)) for name in "abc")
    assert [(p.id, r.id) for p, r in match_records([b, a], [a, b])] == [("a", "a"), ("b", "b")]
    with pytest.raises(StructureError, match=r"1 record missing from the prediction: 'c'; 1 record missing from "
                                             r"the reference: 'a'"):
        match_records([a, b], [b, c])
    many = [Structure(f"r{k}", "GC", ()) for k in range(8)]
    with pytest.raises(StructureError, match=r"8 records missing from the prediction: 'r0', .*'r4' and 3 more"):
        match_records([], many)
    with pytest.raises(StructureError, match="record 'a': the prediction has 2 bases, the reference 7"):
        score_structure(Structure("a", "GC", ()), a)


def test_mean_is_over_records():
    scores = [score_pairs([(0, 9)], [(0, 9)], 10), score_pairs([], [(0, 9)], 10), score_pairs([(1, 8)], [], 10)]
    mean = mean_scores(scores)
    assert mean["f1"] == pytest.approx(1 / 3) and mean["precision"] == pytest.approx(1 / 3)
    assert (mean["records"], mean["tp"], mean["fp"], mean["fn"]) == (3, 1, 1, 1)
    with pytest.raises(StructureError, match="no records to score"):
        mean_scores([])
