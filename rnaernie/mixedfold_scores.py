"""Loop scores of the mixed folding model: Turner-2004 nearest-neighbour terms plus positional terms.

Every function scores one loop of a candidate structure, as a float32, higher is better. The folding
engine (`rnaernie.mixedfold_dp`) adds them up; `rnaernie.mixedfold_engine` explains the inputs. Bulges
and internal loops, the engine's hot loop, are scored in `rnaernie.mixedfold_interior`.

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
F32_ZERO = np.float32(0.0)


@njit(cache=True, inline="always")
def turner_length(table, lxc, n):
    """A Turner loop-length term in float64: the table up to 30, then the log extrapolation."""
    if n <= TURNER_MAX_LOOP:
        return np.float64(table[n])
    return np.float64(table[TURNER_MAX_LOOP]) + np.float64(lxc[0]) * math.log(n / 30.0)


@njit(cache=True, inline="always")
def capped(n, table):
    """Index into a positional length table: lengths beyond its last entry share the last entry."""
    return min(n, table.shape[0] - 1)


@njit(cache=True)
def hairpin(codes, t, p, i, j):
    """Hairpin loop closed by (i, j)."""
    n = j - i - 1
    e = turner_length(t.hairpin, t.lxc, n)
    if n >= 3:
        kind = PAIR_TYPE[codes[i], codes[j]]
        if n == 3:
            e += np.float64(t.terminalAU[0] if kind > 2 else F32_ZERO)
        else:
            e += np.float64(t.mismatch_hairpin[kind, codes[i + 1], codes[j - 1]])
    turner = np.float32(e)

    e = 0.0
    e += p.hairpin_length[capped(n, p.hairpin_length)]
    e += p.base_hairpin[i + 1, j - 1]
    e += p.mismatch_hairpin[i, j]
    e += p.basepair[i, j]
    return turner + np.float32(e)


@njit(cache=True)
def stack_loop(codes, t, p, i, j):
    """The stack of (i, j) on (i+1, j-1), scored as a loop (a helix beyond its length table)."""
    return turner_stack(codes, t, i, j) + positional_stack_sum(p, i, j, F32_ZERO)


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
