"""Decoding pair probabilities: every structure is valid, and it is the optimum (checked by brute force)."""

from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnaernie.decoding import CANONICAL, allowed_pairs, decode
from rnaernie.errors import InputError
from tests.conftest import require


@st.composite
def problems(draw, max_length=60):
    """A sequence (with the odd N and T) and a symmetric probability matrix, mostly low, some cells high."""
    length = draw(st.integers(1, max_length))
    sequence = "".join(draw(st.lists(st.sampled_from("ACGUUGCAGTN"), min_size=length, max_size=length)))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    matrix = rng.random((length, length)) ** draw(st.sampled_from([0.3, 1.0, 4.0]))
    return sequence, (matrix + matrix.T) / 2


def crossing(pairs) -> bool:
    return any(i < k < j < l for (i, j), (k, l) in itertools.permutations(pairs, 2))


def weight(pairs, matrix, threshold=0.5) -> float:
    return sum(matrix[i, j] - threshold for i, j in pairs)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(problems(), st.booleans(), st.booleans(), st.sampled_from([0.0, 0.3, 0.5, 0.9]))
def test_decoded_structures_are_valid(problem, pseudoknots, any_pairs, threshold):
    if pseudoknots:
        require("networkx")
    sequence, matrix = problem
    pairs = decode(matrix, sequence, threshold=threshold, pseudoknots=pseudoknots, any_pairs=any_pairs)
    bases = [base for pair in pairs for base in pair]
    assert len(bases) == len(set(bases))  # one partner per base
    rna = sequence.upper().replace("T", "U")
    for i, j in pairs:
        assert 0 <= i < j < len(sequence) and j - i - 1 >= 3  # hairpins of at least 3 nt
        assert matrix[i, j] > threshold
        assert any_pairs or (rna[i], rna[j]) in CANONICAL
    assert pseudoknots or not crossing(pairs)


def brute_force_best(length, candidates, nested) -> float:
    """The best total weight over every set of candidate pairs with one partner per base (and no crossing)."""
    best = 0.0
    for size in range(1, length // 2 + 1):
        for chosen in itertools.combinations(candidates, size):
            bases = [b for i, j, _ in chosen for b in (i, j)]
            if len(bases) != len(set(bases)) or (nested and crossing([(i, j) for i, j, _ in chosen])):
                continue
            best = max(best, sum(w for _, _, w in chosen))
    return best


@pytest.mark.parametrize("pseudoknots", [False, True])
def test_decoding_finds_the_optimum_of_small_problems(pseudoknots):
    if pseudoknots:
        require("networkx")
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(150):
        length = int(rng.integers(5, 13))
        sequence = "".join(rng.choice(list("ACGU"), size=length))
        matrix = rng.random((length, length))
        matrix = (matrix + matrix.T) / 2
        candidates = allowed_pairs(matrix, sequence, any_pairs=True)
        if len(candidates) > 14:
            continue  # keeps the brute force quick
        pairs = decode(matrix, sequence, any_pairs=True, pseudoknots=pseudoknots)
        assert weight(pairs, matrix) == pytest.approx(brute_force_best(length, candidates, not pseudoknots),
                                                      abs=1e-9)
        checked += 1
    assert checked > 100


def test_crossing_pairs_need_pseudoknot_mode():
    require("networkx")
    sequence = "GAAAAGAAAACAAAAC"
    matrix = np.zeros((16, 16))
    for (i, j), p in {(0, 10): 0.9, (5, 15): 0.8, (0, 15): 0.6}.items():
        matrix[i, j] = matrix[j, i] = p
    assert decode(matrix, sequence, any_pairs=True) == ((0, 10),)  # the best pair alone: the other two cross it or share a base
    assert decode(matrix, sequence, any_pairs=True, pseudoknots=True) == ((0, 10), (5, 15))


def test_rules_on_a_hand_made_matrix():
    sequence = "GAAACNAAAAU"
    matrix = np.full((11, 11), 0.99)
    # G0-C4 is canonical but its loop has 3 nt: allowed; N5 pairs with nothing canonical; A-U fine
    pairs = decode(matrix, sequence)
    assert (0, 4) in pairs or (0, 10) in pairs
    assert all(5 not in pair for pair in pairs)
    assert decode(matrix, sequence, threshold=0.995) == ()
    assert allowed_pairs(np.full((6, 6), 0.5), "GAAAAU") == []  # a probability at the threshold is not above it
    assert decode(np.full((5, 5), 0.9), "gccct") == ((0, 4),)  # case-insensitive, T is U: a GU pair
    tight = "GAACAAU"  # G0-C3 has a 2-nt loop: never chosen, even with --any-pairs
    assert (0, 3) not in decode(np.full((7, 7), 0.99), tight, any_pairs=True)


def test_bad_decoding_input_is_one_line():
    with pytest.raises(InputError, match=r"--threshold 1.0 is outside \[0, 1\)"):
        decode(np.zeros((4, 4)), "ACGU", threshold=1.0)
    with pytest.raises(InputError, match=r"the probability matrix is \(3, 3\), the sequence 4 nt"):
        decode(np.zeros((3, 3)), "ACGU")


def test_pseudoknots_without_networkx_say_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "networkx", None)  # import networkx now raises ImportError
    with pytest.raises(InputError, match=r"--pseudoknots needs networkx; install it with pip install "
                                         r"'rnaernie-convert\[fold\]'"):
        decode(np.zeros((4, 4)), "ACGU", pseudoknots=True)
