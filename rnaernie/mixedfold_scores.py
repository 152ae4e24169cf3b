"""Loop scores of the mixed folding model: Turner-2004 nearest-neighbour terms plus positional terms.

Every function scores one loop of a candidate structure, as a float32, higher is better. The folding
engine (`rnaernie.mixedfold_dp`) adds them up; `rnaernie.mixedfold_engine` explains the inputs.

Indices are 1-based positions of the sequence: `codes[1..L]` are the bases (0 other, 1 A, 2 C, 3 G,
4 U; T counts as U here, see the engine's spelling rule) and the positional matrices are `[L+1, L+1]`
with row and column 0 unused. A pair `(i, j)` has `i < j`; an inner pair `(k, l)` of a loop closed by
`(i, j)` has `i < k < l < j`.

Arithmetic follows mxfold2's engine, whose structures and scores this model reproduces: its loop
scores are float32, but a few of them (hairpin, bulge, generic internal loop, multi-loop closing and
branch, external branch) add their Turner or positional terms in float64 and round once at the end.
Keeping the same order and precision makes equal-scoring alternatives tie (or not) exactly as there,
so the same structure wins. Integer counts are converted to float32 before they multiply a float32,
as C++ does.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

# Pair type of (5' base, 3' base): CG 1, GC 2, GU 3, UG 4, AU 5, UA 6, anything else 0. Types above 2
# (a pair with U) take the terminal-AU term.
PAIR_TYPE = np.zeros((5, 5), dtype=np.int64)
for _five, _three, _type in ((2, 3, 1), (3, 2, 2), (3, 4, 3), (4, 3, 4), (1, 4, 5), (4, 1, 6)):
    PAIR_TYPE[_five, _three] = _type

# Turner's loop-length tables hold lengths 0..30; longer hairpins extrapolate with `lxc * log(n / 30)`.
TURNER_MAX_LOOP = 30

# The checkpoint's `turner.score_*` names without `score_`, in one order (a tuple numba can pass on).
TURNER_NAMES = ("stack", "hairpin", "bulge", "internal", "mismatch_external", "mismatch_hairpin",
                "mismatch_internal", "mismatch_internal_1n", "mismatch_internal_23", "mismatch_multi",
                "int11", "int21", "int22", "dangle5", "dangle3", "ml_base", "ml_closing", "ml_intern",
                "ninio", "max_ninio", "duplex_init", "terminalAU", "lxc")
# The positional `score_*` names without `score_`.
POSITIONAL_NAMES = ("basepair", "helix_stacking", "mismatch_external", "mismatch_hairpin",
                    "mismatch_internal", "mismatch_multi", "base_hairpin", "base_internal", "base_multi",
                    "base_external", "hairpin_length", "bulge_length", "internal_length", "internal_explicit",
                    "internal_symmetry", "internal_asymmetry", "helix_length")
Turner = namedtuple("Turner", TURNER_NAMES)
Positional = namedtuple("Positional", POSITIONAL_NAMES)
# Per ordered pair (a, b) of positions: the pair type, and the Turner mismatch of a loop that (a, b) closes
# from outside, mismatch[type(a, b), base a+1, base b-1]. A loop's outer pair (i, j) reads [i, j], its inner
# pair (k, l) reads [l, k]. Looked up once per pair rather than once per loop (the internal loops' hot path).
PairTables = namedtuple("PairTables", ("kind", "internal", "internal_1n", "internal_23"))

F32_ZERO = np.float32(0.0)


@njit(cache=True)
def pair_tables(codes, t):
    """The `PairTables` of a sequence."""
    size = codes.shape[0]
    kind = np.zeros((size, size), dtype=np.int64)
    internal = np.zeros((size, size), dtype=np.float32)
    internal_1n = np.zeros((size, size), dtype=np.float32)
    internal_23 = np.zeros((size, size), dtype=np.float32)
    for a in range(1, size - 1):
        for b in range(1, size - 1):
            kind[a, b] = k = PAIR_TYPE[codes[a], codes[b]]
            internal[a, b] = t.mismatch_internal[k, codes[a + 1], codes[b - 1]]
            internal_1n[a, b] = t.mismatch_internal_1n[k, codes[a + 1], codes[b - 1]]
            internal_23[a, b] = t.mismatch_internal_23[k, codes[a + 1], codes[b - 1]]
    return PairTables(kind, internal, internal_1n, internal_23)


@njit(cache=True, inline="always")
def _turner_length(table, lxc, n):
    """A Turner loop-length term in float64: the table up to 30, then the log extrapolation."""
    if n <= TURNER_MAX_LOOP:
        return np.float64(table[n])
    return np.float64(table[TURNER_MAX_LOOP]) + np.float64(lxc[0]) * math.log(n / 30.0)


@njit(cache=True, inline="always")
def _capped(n, table):
    """Index into a positional length table: lengths beyond its last entry share the last entry."""
    return min(n, table.shape[0] - 1)


@njit(cache=True)
def hairpin(codes, t, p, i, j):
    """Hairpin loop closed by (i, j)."""
    n = j - i - 1
    e = _turner_length(t.hairpin, t.lxc, n)
    if n >= 3:
        kind = PAIR_TYPE[codes[i], codes[j]]
        if n == 3:
            e += np.float64(t.terminalAU[0] if kind > 2 else F32_ZERO)
        else:
            e += np.float64(t.mismatch_hairpin[kind, codes[i + 1], codes[j - 1]])
    turner = np.float32(e)

    e = 0.0
    e += p.hairpin_length[_capped(n, p.hairpin_length)]
    e += p.base_hairpin[i + 1, j - 1]
    e += p.mismatch_hairpin[i, j]
    e += p.basepair[i, j]
    return turner + np.float32(e)


@njit(cache=True, inline="always")
def single_loop(codes, t, p, q, i, j, k, l):
    """Stack, bulge or internal loop closed by (i, j) around the inner pair (k, l); `q`: `PairTables`."""
    return _turner_single(codes, t, q, i, j, k, l) + _positional_single(p, i, j, k, l)


@njit(cache=True, inline="always")
def _turner_single(codes, t, q, i, j, k, l):
    outer = q.kind[i, j]
    inner = q.kind[l, k]  # the inner pair read from the loop's side: (l, k)
    left, right = k - i - 1, j - l - 1
    short, long_ = min(left, right), max(left, right)
    if long_ == 0:
        return t.stack[outer, inner]
    if short == 0:  # bulge
        e = _turner_length(t.bulge, t.lxc, long_)
        if long_ == 1:
            e += np.float64(t.stack[outer, inner])
        else:
            if outer > 2:
                e += np.float64(t.terminalAU[0])
            if inner > 2:
                e += np.float64(t.terminalAU[0])
        return np.float32(e)
    if long_ == 1:  # 1x1
        return t.int11[outer, inner, codes[i + 1], codes[j - 1]]
    if left == 2 and right == 1:
        return t.int21[inner, outer, codes[l + 1], codes[i + 1], codes[k - 1]]
    if left == 1 and right == 2:
        return t.int21[outer, inner, codes[i + 1], codes[l + 1], codes[j - 1]]
    asymmetry = max(t.max_ninio[0], np.float32(long_ - short) * t.ninio[0])
    if short == 1:  # 1xn
        e = _turner_length(t.internal, t.lxc, long_ + 1)
        e += np.float64(asymmetry)
        e += np.float64(q.internal_1n[i, j] + q.internal_1n[l, k])
        return np.float32(e)
    if short == 2 and long_ == 2:
        return t.int22[outer, inner, codes[i + 1], codes[k - 1], codes[l + 1], codes[j - 1]]
    if short == 2 and long_ == 3:  # float32 throughout, the Ninio term at its fixed size
        f = t.internal[5] + t.ninio[0]
        f += q.internal_23[i, j] + q.internal_23[l, k]
        return f
    e = _turner_length(t.internal, t.lxc, short + long_)
    e += np.float64(asymmetry)
    e += np.float64(q.internal[i, j] + q.internal[l, k])
    return np.float32(e)


@njit(cache=True, inline="always")
def _positional_single(p, i, j, k, l):
    left, right = k - i - 1, j - l - 1
    short, long_ = min(left, right), max(left, right)
    if long_ == 0:
        f = p.helix_stacking[i, j]
        f += p.helix_stacking[l, k]  # the inner pair's stacking term sits in the lower triangle
        f += p.basepair[i, j]
        return f
    if short == 0:
        f = p.bulge_length[_capped(long_, p.bulge_length)]
    else:
        f = p.internal_length[_capped(short + long_, p.internal_length)]
    # an empty side reads the cell (i+1, i) or (j, j-1), just below the diagonal
    f += p.base_internal[i + 1, k - 1] + p.base_internal[l + 1, j - 1]
    if short > 0:
        f += p.internal_explicit[_capped(short, p.internal_explicit), _capped(long_, p.internal_explicit)]
        if short == long_:
            f += p.internal_symmetry[_capped(long_, p.internal_symmetry)]
        f += p.internal_asymmetry[_capped(long_ - short, p.internal_asymmetry)]
    f += p.mismatch_internal[i, j] + p.mismatch_internal[l, k]
    f += p.basepair[i, j]
    return f


@njit(cache=True)
def turner_stack(codes, t, i, j):
    """Turner stacking of the pair (i, j) on (i+1, j-1): one step of a helix."""
    return t.stack[PAIR_TYPE[codes[i], codes[j]], PAIR_TYPE[codes[j - 1], codes[i + 1]]]


@njit(cache=True)
def positional_stack_sum(p, i, j, running):
    """Add the positional terms of the step from (i, j) to (i+1, j-1) to a helix's running float32 sum."""
    running += p.helix_stacking[i, j]
    running += p.helix_stacking[j - 1, i + 1]
    running += p.basepair[i, j]
    return running


@njit(cache=True)
def multi_closing(codes, t, p, i, j):
    """The pair (i, j) closing a multi-loop, seen from inside the loop (as the pair (j, i))."""
    kind = PAIR_TYPE[codes[j], codes[i]]
    e = 0.0
    e += np.float64(t.mismatch_multi[kind, codes[j - 1], codes[i + 1]])
    if kind > 2:
        e += np.float64(t.terminalAU[0])
    e += np.float64(t.ml_intern[0])
    e += np.float64(t.ml_closing[0])
    return np.float32(e) + (p.mismatch_multi[i, j] + p.basepair[i, j])


@njit(cache=True)
def _turner_branch(codes, mismatch, t, i, j, length):
    """Turner terms of a helix end (i, j) facing a multi-loop or the exterior: mismatch or dangle, AU."""
    kind = PAIR_TYPE[codes[i], codes[j]]
    e = 0.0
    if i > 1 and j < length:
        e += np.float64(mismatch[kind, codes[i - 1], codes[j + 1]])
    elif i > 1:
        e += np.float64(t.dangle5[kind, codes[i - 1]])
    elif j < length:
        e += np.float64(t.dangle3[kind, codes[j + 1]])
    if kind > 2:
        e += np.float64(t.terminalAU[0])
    return e


@njit(cache=True)
def multi_branch(codes, t, p, i, j, length):
    """A helix (i, j) branching off a multi-loop."""
    e = _turner_branch(codes, t.mismatch_multi, t, i, j, length)
    e += np.float64(t.ml_intern[0])
    return np.float32(e) + p.mismatch_multi[j, i]


@njit(cache=True)
def multi_unpaired(t, p, i, j):
    """Bases i..j unpaired inside a multi-loop (j = i - 1: none, which still reads the cell (i, i-1))."""
    return t.ml_base[0] * np.float32(j - i + 1) + p.base_multi[i, j]


@njit(cache=True)
def external_branch(codes, t, p, i, j, length):
    """A helix (i, j) in the exterior loop."""
    e = _turner_branch(codes, t.mismatch_external, t, i, j, length)
    return np.float32(e) + p.mismatch_external[j, i]


@njit(cache=True)
def external_unpaired(p, i):
    """Base i unpaired in the exterior loop (Turner gives it nothing)."""
    return F32_ZERO + p.base_external[i, i]
