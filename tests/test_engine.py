"""The structure model's folding engine: mxfold2's structures and scores, valid structures, honest scores.

Goldens (`fixtures/golden/engine-cases.npz`) come from mxfold2's compiled engine on the same float32
tensors (`fixtures/golden/make_engine_golden.py`). Structures must be identical. Scores must agree to
1e-5 relative (1e-5 absolute near 0): both engines add the same float32 terms in the same order, so
today they agree bit for bit; the margin only allows a platform's `log` (hairpins over 30 bases) to
differ in its last bit, and is still a thousand times finer than any loop term.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fixtures.engine_scores import network_positional, random_positional, zero_positional, zero_turner
from tests.conftest import GOLDEN, require

require("numba")
from rnaernie.mixedfold_engine import fold  # noqa: E402

REL = 1e-5
LIMIT_BONUS = np.float32(20.0)  # make_engine_golden.py's `limits` mode


def load_cases() -> tuple[dict[str, np.ndarray], list[dict]]:
    with np.load(GOLDEN / "engine-turner2004.npz") as data:
        turner = {key: data[key] for key in data.files}
    with np.load(GOLDEN / "engine-cases.npz") as data:
        table = {key: data[key] for key in data.files}
    cases = []
    for n, name in enumerate(table["name"]):
        row = {key: table[key][n] for key in ("name", "sequence", "mode", "seed", "scale", "max_internal",
                                              "max_helix", "structure", "score", "checksum")}
        row["partners"] = table["partners"][table["offsets"][n]:table["offsets"][n + 1]]
        row["stored"] = {key.split("/", 1)[1]: table[key] for key in table if key.startswith(f"{name}/")}
        cases.append(row)
    return turner, cases


TURNER, CASES = load_cases()


def scores_of(case: dict) -> tuple[dict, dict]:
    """The tensors the golden script gave mxfold2 for this case, rebuilt from the seed."""
    length = len(str(case["sequence"]))
    mode = str(case["mode"])
    if mode == "stored":
        arrays = case["stored"]
        return network_positional(arrays["helix_stacking"], arrays["mismatch"], arrays["base"], arrays), TURNER
    if mode == "turner":
        return zero_positional(length), TURNER
    positional = random_positional(int(case["seed"]), length, float(case["scale"]))
    if mode == "limits":
        top = int(case["max_internal"])
        for key in ("score_internal_length", "score_bulge_length"):
            positional[key][top - 2:top + 1] += LIMIT_BONUS
    return positional, zero_turner(TURNER) if mode == "positional" else TURNER


def fold_case(case: dict):
    positional, turner = scores_of(case)
    regenerated = sum(np.sum(value, dtype=np.float64) for value in positional.values())
    assert regenerated == case["checksum"], "the regenerated tensors differ from those mxfold2 folded (numpy's stream?)"
    return fold(str(case["sequence"]), turner, positional, max_internal_length=int(case["max_internal"]),
                max_helix_length=int(case["max_helix"]))


def test_the_goldens_cover_every_mode_and_the_edge_cases():
    modes = {str(case["mode"]) for case in CASES}
    assert {"mixed", "turner", "positional", "limits", "weak", "stored"} <= modes
    lengths = [len(str(case["sequence"])) for case in CASES]
    assert set(range(6)) <= set(lengths) and max(lengths) > 300


@pytest.mark.parametrize("case", CASES, ids=[str(case["name"]) for case in CASES])
def test_same_structure_and_score_as_mxfold2(case):
    result = fold_case(case)
    assert result.structure == str(case["structure"])
    partners = np.zeros(len(result.structure), dtype=np.int64)
    for i, j in result.pairs:
        partners[i], partners[j] = j + 1, i + 1
    assert partners.tolist() == case["partners"].tolist()
    assert result.score == pytest.approx(float(case["score"]), rel=REL, abs=REL)


def test_scores_agree_bit_for_bit_today():
    """Not a requirement (see the module docstring), but a change that alters the arithmetic shows here."""
    small = [case for case in CASES if len(str(case["sequence"])) <= 120]
    assert len(small) > 40 and all(np.float32(fold_case(case).score) == case["score"] for case in small)


# ---- properties on random problems: a valid structure whose score an independent scorer reproduces ---------

PAIRS = {("A", "U"), ("U", "A"), ("C", "G"), ("G", "C"), ("G", "U"), ("U", "G")}


def random_problem(seed: int):
    rng = np.random.default_rng(seed)
    length = int(rng.integers(1, 90))
    sequence = "".join(rng.choice(list("ACGUACGUacguNT"), length))
    turner = TURNER if seed % 3 else zero_turner(TURNER)
    positional = random_positional(seed, length, float(rng.choice([0.0, 0.3, 1.0])))
    return sequence, turner, positional


@pytest.mark.parametrize("seed", range(40))
def test_structure_is_nested_canonical_with_hairpins_of_three(seed):
    sequence, turner, positional = random_problem(seed)
    result = fold(sequence, turner, positional)
    seen = [p for pair in result.pairs for p in pair]
    assert len(seen) == len(set(seen))
    for i, j in result.pairs:
        assert (sequence[i].upper(), sequence[j].upper()) in PAIRS and j - i > 3
    for (i, j) in result.pairs:
        assert not any(i < k < j < l for k, l in result.pairs)


@pytest.mark.parametrize("seed", range(40))
def test_score_is_the_independent_score_of_the_structure(seed):
    sequence, turner, positional = random_problem(seed)
    result = fold(sequence, turner, positional)
    expected = structure_score(sequence, result.pairs, turner, positional)
    assert result.score == pytest.approx(expected, rel=1e-5, abs=1e-4)


def test_a_better_structure_would_have_been_found():
    """The optimum: no single pair added to or removed from the result scores higher."""
    sequence, turner, positional = random_problem(7)
    result = fold(sequence, turner, positional)
    best = structure_score(sequence, result.pairs, turner, positional)
    for pairs in neighbours(sequence, result.pairs):
        assert structure_score(sequence, pairs, turner, positional) <= best + 1e-4


def test_bad_tensors_are_named():
    sequence = "GGGAAACCC"
    positional = zero_positional(len(sequence))
    with pytest.raises(ValueError, match="score_helix_stacking has shape"):
        fold(sequence, TURNER, positional | {"score_helix_stacking": np.zeros((3, 3), np.float32)})
    with pytest.raises(ValueError, match="lack score_stack"):
        fold(sequence, {k: v for k, v in TURNER.items() if k != "score_stack"}, positional)


def neighbours(sequence, pairs):
    used = {p for pair in pairs for p in pair}
    for n in range(len(pairs)):
        yield pairs[:n] + pairs[n + 1:]
    for i in range(len(sequence)):
        for j in range(i + 4, len(sequence)):
            if i in used or j in used or (sequence[i].upper(), sequence[j].upper()) not in PAIRS:
                continue
            if not any(i < k < j < l or k < i < l < j for k, l in pairs):
                yield tuple(sorted(pairs + ((i, j),)))


# ---- an independent scorer: the model's definition loop by loop, in plain Python float64 -------------------

BASE = {"A": 1, "C": 2, "G": 3, "U": 4, "T": 4}
TYPE = {("C", "G"): 1, ("G", "C"): 2, ("G", "U"): 3, ("U", "G"): 4, ("A", "U"): 5, ("U", "A"): 6}


def structure_score(sequence: str, pairs, t, p) -> float:
    """The mixed score of a nested structure with helices of at most 30 pairs (0-based pairs)."""
    n = len(sequence)
    s = " " + sequence.upper()  # 1-based
    b = [BASE.get(c, 0) for c in s]
    partner = [0] * (n + 2)
    for i, j in pairs:
        partner[i + 1], partner[j + 1] = j + 1, i + 1
    kind = lambda i, j: TYPE.get((s[i], s[j]), 0)  # noqa: E731
    T = {k[len("score_"):]: v.astype(np.float64) for k, v in t.items()}
    P = {k[len("score_"):]: v.astype(np.float64) for k, v in p.items()}
    cap = lambda table, m: table[min(m, len(table) - 1)]  # noqa: E731

    def branch(i, j, mismatch):  # Turner: mismatch, or a dangle at the sequence's end, and AU
        e = 0.0
        if i > 1 and j < n:
            e += mismatch[kind(i, j), b[i - 1], b[j + 1]]
        elif i > 1:
            e += T["dangle5"][kind(i, j), b[i - 1]]
        elif j < n:
            e += T["dangle3"][kind(i, j), b[j + 1]]
        return e + (T["terminalAU"][0] if kind(i, j) > 2 else 0.0)

    def turner_length(table, m):
        return table[m] if m <= 30 else table[30] + T["lxc"][0] * math.log(m / 30)

    def loop(i, j):
        """The loop closed by (i, j): its score, then the pairs inside it."""
        inner, k = [], i + 1
        while k < j:
            if partner[k] > k:
                inner.append((k, partner[k]))
                k = partner[k] + 1
            else:
                k += 1
        if not inner:  # hairpin
            m = j - i - 1
            e = turner_length(T["hairpin"], m)
            e += (T["terminalAU"][0] if kind(i, j) > 2 else 0.0) if m == 3 else \
                T["mismatch_hairpin"][kind(i, j), b[i + 1], b[j - 1]]
            e += cap(P["hairpin_length"], m) + P["base_hairpin"][i + 1, j - 1] + P["mismatch_hairpin"][i, j]
            return e + P["basepair"][i, j], inner
        if len(inner) == 1:
            k, l = inner[0]
            return interior(i, j, k, l), inner
        e = T["mismatch_multi"][kind(j, i), b[j - 1], b[i + 1]] + (T["terminalAU"][0] if kind(j, i) > 2 else 0)
        e += T["ml_intern"][0] + T["ml_closing"][0] + P["mismatch_multi"][i, j] + P["basepair"][i, j]
        first = inner[0][0]
        e += T["ml_base"][0] * (first - i - 1) + P["base_multi"][i + 1, first - 1]  # leading bases: one interval
        for u in range(first, j):  # every later unpaired base on its own
            if not any(k <= u <= l for k, l in inner):
                e += T["ml_base"][0] + P["base_multi"][u, u]
        for k, l in inner:
            e += branch(k, l, T["mismatch_multi"]) + T["ml_intern"][0] + P["mismatch_multi"][l, k]
        return e, inner

    def interior(i, j, k, l):
        left, right = k - i - 1, j - l - 1
        short, long_ = sorted((left, right))
        t1, t2 = kind(i, j), kind(l, k)
        if long_ == 0:
            e = T["stack"][t1, t2]
            return e + P["helix_stacking"][i, j] + P["helix_stacking"][l, k] + P["basepair"][i, j]
        if short == 0:
            e = turner_length(T["bulge"], long_)
            e += T["stack"][t1, t2] if long_ == 1 else T["terminalAU"][0] * ((t1 > 2) + (t2 > 2))
            e += cap(P["bulge_length"], long_)
        else:
            if (short, long_) == (1, 1):
                e = T["int11"][t1, t2, b[i + 1], b[j - 1]]
            elif (left, right) == (2, 1):
                e = T["int21"][t2, t1, b[l + 1], b[i + 1], b[k - 1]]
            elif (left, right) == (1, 2):
                e = T["int21"][t1, t2, b[i + 1], b[l + 1], b[j - 1]]
            elif (short, long_) == (2, 2):
                e = T["int22"][t1, t2, b[i + 1], b[k - 1], b[l + 1], b[j - 1]]
            else:
                mismatch = {1: "mismatch_internal_1n", 2: "mismatch_internal_23"}.get(short, "mismatch_internal")
                if mismatch == "mismatch_internal_23" and long_ != 3:
                    mismatch = "mismatch_internal"
                size = long_ + 1 if short == 1 else short + long_
                e = turner_length(T["internal"], size)
                e += max(T["max_ninio"][0], (long_ - short) * T["ninio"][0])
                e += T[mismatch][t1, b[i + 1], b[j - 1]] + T[mismatch][t2, b[l + 1], b[k - 1]]
            e += cap(P["internal_length"], short + long_) + cap(cap(P["internal_explicit"], short), long_)
            e += cap(P["internal_symmetry"], long_) if short == long_ else 0.0
            e += cap(P["internal_asymmetry"], long_ - short)
        e += P["base_internal"][i + 1, k - 1] + P["base_internal"][l + 1, j - 1]
        return e + P["mismatch_internal"][i, j] + P["mismatch_internal"][l, k] + P["basepair"][i, j]

    total = 0.0
    # exterior loop
    for u in range(1, n + 1):
        if not partner[u] and not any(k < u < partner[k] for k in range(1, u)):
            total += P["base_external"][u, u]
    outer = [(k, partner[k]) for k in range(1, n + 1) if partner[k] > k
             and not any(i < k < partner[i] for i in range(1, k))]
    for i, j in outer:
        total += branch(i, j, T["mismatch_external"]) + P["mismatch_external"][j, i]
    todo = list(outer)
    while todo:  # each helix from its outer pair: stacks with the helix-length term, then its closing loop
        i, j = todo.pop()
        m = 1
        while partner[i + m] == j - m and j - m > i + m:
            m += 1
        for step in range(m - 1):
            total += T["stack"][kind(i + step, j - step), kind(j - step - 1, i + step + 1)]
            total += P["helix_stacking"][i + step, j - step] + P["helix_stacking"][j - step - 1, i + step + 1]
            total += P["basepair"][i + step, j - step]
        total += cap(P["helix_length"], m)
        score, inner = loop(i + m - 1, j - m + 1)
        total += score
        todo.extend(inner)
    return total
