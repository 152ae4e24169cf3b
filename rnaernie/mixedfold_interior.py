"""Bulges and internal loops of the mixed folding model: the DP's hot loop.

For each pair (i, j), the dynamic programme (`rnaernie.mixedfold_dp`) looks for the best inner pair
(k, l) with at most `max_internal` unpaired bases between them: about a million loop scores at
200 nt, most of the engine's time. The loop score is therefore defined once, here, inside that search,
and the search returns the chosen loop's score so that the traceback need not recompute it.

Speed: the search reads plain arrays, unpacked once per cell from `Interior` tables gathered once per
sequence. Calling a helper with arrays (or tuples of arrays) inside the loop, even one numba inlines,
made numba count references to every array at every candidate, several times slower than the
arithmetic itself.

Arithmetic, as in mxfold2's engine (see `rnaernie.mixedfold_scores`): the Turner part is float32,
except bulges, 1xn and generic internal loops, which add their terms in float64 and round once; the
positional part adds float32 terms in mxfold2's order; then Turner + positional.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from rnaernie.mixedfold_scores import PAIR_TYPE, capped, turner_length

NO_STRUCTURE = np.float32(np.finfo(np.float32).min)
# A candidate must also exceed this to count (sums with a "no structure" operand stay below it).
FLOOR = np.float32(float(np.finfo(np.float32).min) / 1e10)

# A bulge or internal loop by its unpaired stretches (left, right): Turner scores each shape its own way.
BULGE_1, BULGE, INT11, INT21, INT12, INT1N, INT22, INT23, INTERNAL = range(1, 10)
# What a loop score reads:
# - per ordered pair (a, b) of positions: its pair type `kind`, and the Turner mismatches of a loop that (a, b)
#   closes from outside, `mismatch*[a, b]` = table[type(a, b), base a+1, base b-1] (a loop's outer pair (i, j)
#   reads [i, j], its inner pair (k, l) reads [l, k]);
# - per (left, right): the `shape`, the Turner part that depends on the lengths only (`turner`, float64 as
#   mxfold2 adds it), and the positional length terms `lengths[left, right]`: length, explicit, symmetry,
#   asymmetry (0 where the shape has none: adding 0 changes no sum);
# - the Turner tables of the special shapes, and the positional matrices.
Interior = namedtuple("Interior", ("kind", "mismatch", "mismatch_1n", "mismatch_23", "shape", "turner", "lengths",
                                   "stack", "int11", "int21", "int22", "terminal_au", "base_internal",
                                   "mismatch_internal", "basepair"))


@njit(cache=True)
def interior_tables(codes, t, p, max_internal):
    """The `Interior` tables of a sequence, for loops of at most `max_internal` unpaired bases."""
    size = codes.shape[0]
    kind = np.zeros((size, size), dtype=np.int64)
    mismatch = np.zeros((size, size), dtype=np.float32)
    mismatch_1n = np.zeros((size, size), dtype=np.float32)
    mismatch_23 = np.zeros((size, size), dtype=np.float32)
    for a in range(1, size - 1):
        for b in range(1, size - 1):
            kind[a, b] = k = PAIR_TYPE[codes[a], codes[b]]
            mismatch[a, b] = t.mismatch_internal[k, codes[a + 1], codes[b - 1]]
            mismatch_1n[a, b] = t.mismatch_internal_1n[k, codes[a + 1], codes[b - 1]]
            mismatch_23[a, b] = t.mismatch_internal_23[k, codes[a + 1], codes[b - 1]]
    n = max(max_internal, 0) + 1
    shape = np.zeros((n, n), dtype=np.int64)
    turner = np.zeros((n, n), dtype=np.float64)
    lengths = np.zeros((n, n, 4), dtype=np.float32)
    for left in range(n):
        for right in range(n - left):
            short, long_ = min(left, right), max(left, right)
            if long_ == 0:
                continue  # a stack, scored by the helices (`mixedfold_scores.stack_loop`)
            if short == 0:
                shape[left, right] = BULGE_1 if long_ == 1 else BULGE
                turner[left, right] = turner_length(t.bulge, t.lxc, long_)
                lengths[left, right, 0] = p.bulge_length[capped(long_, p.bulge_length)]
                continue
            lengths[left, right, 0] = p.internal_length[capped(short + long_, p.internal_length)]
            lengths[left, right, 1] = p.internal_explicit[capped(short, p.internal_explicit),
                                                          capped(long_, p.internal_explicit)]
            if short == long_:
                lengths[left, right, 2] = p.internal_symmetry[capped(long_, p.internal_symmetry)]
            lengths[left, right, 3] = p.internal_asymmetry[capped(long_ - short, p.internal_asymmetry)]
            asymmetry = np.float64(max(t.max_ninio[0], np.float32(long_ - short) * t.ninio[0]))
            if long_ == 1:
                shape[left, right] = INT11
            elif short == 1 and long_ == 2:
                shape[left, right] = INT21 if left == 2 else INT12
            elif short == 1:
                shape[left, right] = INT1N
                turner[left, right] = turner_length(t.internal, t.lxc, long_ + 1) + asymmetry
            elif short == 2 and long_ == 2:
                shape[left, right] = INT22
            elif short == 2 and long_ == 3:  # float32 throughout, the Ninio term at its fixed size
                shape[left, right] = INT23
                turner[left, right] = t.internal[5] + t.ninio[0]
            else:
                shape[left, right] = INTERNAL
                turner[left, right] = turner_length(t.internal, t.lxc, short + long_) + asymmetry
    return Interior(kind, mismatch, mismatch_1n, mismatch_23, shape, turner, lengths, t.stack, t.int11, t.int21,
                    t.int22, t.terminalAU[0], p.base_internal, p.mismatch_internal, p.basepair)


@njit(cache=True)
def best_interior(i, j, codes, allowed, x, cv, max_internal):
    """The best bulge or internal loop closed by (i, j) around a helix `cv[k, l]`: total, loop score, k, l.

    Inner pairs are tried k ascending, then l descending; a later one wins only if strictly better (and
    not "no structure"), so ties go to the first, as in mxfold2.
    """
    (kind, mismatch, mismatch_1n, mismatch_23, shape, turner, lengths, stack, int11, int21, int22, terminal_au,
     base_internal, mismatch_internal, basepair) = x
    best, best_loop, best_k, best_l = NO_STRUCTURE, NO_STRUCTURE, 0, 0
    outer = kind[i, j]
    k = i + 1
    while k < j and k - i - 1 <= max_internal:
        left = k - i - 1
        l = j - 1
        while k < l and left + (j - l - 1) <= max_internal:
            right = j - l - 1
            if left + right > 0 and allowed[k, l]:
                loop = shape[left, right]
                inner = kind[l, k]  # the inner pair read from the loop's side: (l, k)
                if loop == BULGE_1:
                    f = np.float32(turner[left, right] + np.float64(stack[outer, inner]))
                elif loop == BULGE:
                    e = turner[left, right]
                    if outer > 2:
                        e += np.float64(terminal_au)
                    if inner > 2:
                        e += np.float64(terminal_au)
                    f = np.float32(e)
                elif loop == INT11:
                    f = int11[outer, inner, codes[i + 1], codes[j - 1]]
                elif loop == INT21:
                    f = int21[inner, outer, codes[l + 1], codes[i + 1], codes[k - 1]]
                elif loop == INT12:
                    f = int21[outer, inner, codes[i + 1], codes[l + 1], codes[j - 1]]
                elif loop == INT22:
                    f = int22[outer, inner, codes[i + 1], codes[k - 1], codes[l + 1], codes[j - 1]]
                elif loop == INT23:
                    f = np.float32(turner[left, right])
                    f += mismatch_23[i, j] + mismatch_23[l, k]
                elif loop == INT1N:
                    f = np.float32(turner[left, right] + np.float64(mismatch_1n[i, j] + mismatch_1n[l, k]))
                else:
                    f = np.float32(turner[left, right] + np.float64(mismatch[i, j] + mismatch[l, k]))
                # positional; an empty side reads the cell (i+1, i) or (j, j-1), just below the diagonal
                g = lengths[left, right, 0]
                g += base_internal[i + 1, k - 1] + base_internal[l + 1, j - 1]
                g += lengths[left, right, 1]
                g += lengths[left, right, 2]
                g += lengths[left, right, 3]
                g += mismatch_internal[i, j] + mismatch_internal[l, k]
                g += basepair[i, j]
                score = f + g
                s = cv[k, l] + score
                if best < s and FLOOR < s:
                    best, best_loop, best_k, best_l = s, score, k, l
            l -= 1
        k += 1
    return best, best_loop, best_k, best_l
