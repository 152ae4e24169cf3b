"""The dynamic programme of the mixed folding model: fill the tables, then trace the best structure back.

Tables (1-based, `[L+2, L+2]` float32, "no structure" = the most negative float32):

- `N[i, j]`: (i, j) pairs and closes a loop: a hairpin, a stack/bulge/internal loop around an inner
  pair (k, l) that starts a helix (`C[k, l]`), or a multi-loop `M[i+1, u-1] + M1[u, j-1]`.
- `E[i, j]`: (i, j) is inside a helix longer than the helix-length table: stacks down to some
  `N`, each stack scored as a loop, with no helix-length term.
- `C[i, j]`: (i, j) is the outer pair of a helix of m pairs (i..i+m-1 with j..j-m+1) whose inner pair
  closes a loop (`N`): the helix's stacks plus the helix-length term of m. Helices of more than
  `max_helix` pairs continue in `E` after their first `max_helix` stacks.
- `M[i, j]`: i..j inside a multi-loop, at least one branch; `M1[i, j]`: exactly one branch starting
  at i, then unpaired bases up to j.
- `F[i]`: the exterior loop from i to L.

Candidates are tried in a fixed order and a later one replaces the best only if strictly better (and
not "no structure"), so ties go to the first: this order is what makes equal-scoring structures come
out as mxfold2's engine gives them. Sparse lists keep the branch points that have a structure:
`C` cells by their 3' end (5' ends descending) and by their 5' end (3' ends ascending), `M1` cells by
their 3' end (5' ends descending).

The traceback walks the chosen candidates breadth first from `F[1]` and sums the loop scores of the
structure in float64 in that order; that sum, rounded to float32, is the score reported. The score of a
chosen bulge or internal loop is kept from the fill (`n_loop`): it is defined only in the search that
found it (`rnaernie.mixedfold_interior`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rnaernie.mixedfold_interior import FLOOR, NO_STRUCTURE, best_interior, interior_tables
from rnaernie.mixedfold_scores import (external_branch, external_unpaired, hairpin, multi_branch, multi_closing,
                                       multi_unpaired, positional_stack_sum, stack_loop, turner_stack)


# What each table cell chose (its traceback): one code per kind of candidate, with up to two integers.
N_HAIRPIN, N_INTERNAL, N_MULTI = 1, 2, 3
E_STACK, E_LOOP = 1, 2
C_ISOLATED, C_HELIX, C_LONG_HELIX = 1, 2, 3
M_BRANCH, M_BRANCHES, M_UNPAIRED = 1, 2, 3
M1_BRANCH, M1_UNPAIRED = 1, 2
F_END, F_UNPAIRED, F_BRANCH = 1, 2, 3
# Table ids in the traceback queue.
T_N, T_E, T_C, T_M, T_M1, T_F = 0, 1, 2, 3, 4, 5


@njit(cache=True)
def _better(best, candidate):
    return best < candidate and FLOOR < candidate


@njit(cache=True)
def fold_tables(codes, allowed, t, p, max_internal, max_helix):
    """Fill every table. `allowed[i, j]`: (i, j) may pair (canonical, hairpin of at least 3)."""
    length = codes.shape[0] - 2
    size = length + 2
    nv = np.full((size, size), NO_STRUCTURE, dtype=np.float32)
    ev = nv.copy()
    cv = nv.copy()
    mv = nv.copy()
    m1v = nv.copy()
    fv = np.full(size, NO_STRUCTURE, dtype=np.float32)
    # traceback: kind and two integers per cell
    nt = np.zeros((size, size, 3), dtype=np.int32)
    n_loop = np.zeros((size, size), dtype=np.float32)  # the loop score of an N cell's internal loop
    et = np.zeros((size, size), dtype=np.int8)
    ct = np.zeros((size, size, 2), dtype=np.int32)
    mt = np.zeros((size, size, 2), dtype=np.int32)
    m1t = np.zeros((size, size), dtype=np.int8)
    ft = np.zeros((size, 2), dtype=np.int32)
    c_by_end = np.zeros((size, size), dtype=np.int32)    # 5' ends of C cells ending at j, descending
    c_by_end_n = np.zeros(size, dtype=np.int64)
    c_by_start = np.zeros((size, size), dtype=np.int32)  # 3' ends of C cells starting at i, ascending
    c_by_start_n = np.zeros(size, dtype=np.int64)
    m1_by_end = np.zeros((size, size), dtype=np.int32)   # 5' ends of M1 cells ending at j, descending
    m1_by_end_n = np.zeros(size, dtype=np.int64)
    # the terms the cubic loops add, computed once per cell
    branch, unpaired = _multi_terms(codes, allowed, t, p)
    x = interior_tables(codes, t, p, max_internal)

    for i in range(length, 0, -1):
        for j in range(i + 1, length + 1):
            if allowed[i, j]:
                best = NO_STRUCTURE
                kind, a, b = 0, 0, 0
                s = hairpin(codes, t, p, i, j)
                if _better(best, s):
                    best, kind = s, N_HAIRPIN
                s, loop, k, l = best_interior(i, j, codes, allowed, x, cv, max_internal)
                if _better(best, s):
                    best, kind, a, b = s, N_INTERNAL, k, l
                    n_loop[i, j] = loop
                closing = multi_closing(codes, t, p, i, j)
                for n in range(m1_by_end_n[j - 1]):
                    u = m1_by_end[j - 1, n]
                    if i + 1 > u - 1:
                        break
                    s = mv[i + 1, u - 1] + m1v[u, j - 1] + closing
                    if _better(best, s):
                        best, kind, a = s, N_MULTI, u
                nv[i, j] = best
                nt[i, j, 0], nt[i, j, 1], nt[i, j, 2] = kind, a, b

                if i + 1 < j - 1 and allowed[i + 1, j - 1]:
                    s = ev[i + 1, j - 1] + stack_loop(codes, t, p, i, j)
                    if _better(ev[i, j], s):
                        ev[i, j], et[i, j] = s, E_STACK
                if _better(ev[i, j], nv[i, j]):
                    ev[i, j], et[i, j] = nv[i, j], E_LOOP

                if _fill_helix(i, j, codes, allowed, t, p, max_helix, nv, ev, cv, ct):
                    c_by_end[j, c_by_end_n[j]] = i
                    c_by_end_n[j] += 1
                    c_by_start[i, c_by_start_n[i]] = j
                    c_by_start_n[i] += 1

            # M: a branch (u, j) after unpaired i..u-1, or after more branches M[i, u-1], or j unpaired
            unpaired_j = unpaired[j, j]
            for n in range(c_by_end_n[j]):
                u = c_by_end[j, n]
                if i > u:
                    break
                s = cv[u, j] + unpaired[i, u - 1] + branch[u, j]
                if _better(mv[i, j], s):
                    mv[i, j], mt[i, j, 0], mt[i, j, 1] = s, M_BRANCH, u
            for n in range(c_by_end_n[j]):
                u = c_by_end[j, n]
                if i >= u:
                    break
                s = mv[i, u - 1] + cv[u, j] + branch[u, j]
                if _better(mv[i, j], s):
                    mv[i, j], mt[i, j, 0], mt[i, j, 1] = s, M_BRANCHES, u
            s = mv[i, j - 1] + unpaired_j
            if _better(mv[i, j], s):
                mv[i, j], mt[i, j, 0] = s, M_UNPAIRED

            updated = False
            if allowed[i, j]:
                s = cv[i, j] + branch[i, j]
                if _better(m1v[i, j], s):
                    m1v[i, j], m1t[i, j], updated = s, M1_BRANCH, True
            s = m1v[i, j - 1] + unpaired_j
            if _better(m1v[i, j], s):
                m1v[i, j], m1t[i, j], updated = s, M1_UNPAIRED, True
            if updated:
                m1_by_end[j, m1_by_end_n[j]] = i
                m1_by_end_n[j] += 1

    fv[length + 1] = 0.0
    ft[length + 1, 0] = F_END
    for i in range(length, 0, -1):
        s = fv[i + 1] + external_unpaired(p, i)
        if _better(fv[i], s):
            fv[i], ft[i, 0] = s, F_UNPAIRED
        for n in range(c_by_start_n[i]):
            k = c_by_start[i, n]
            s = cv[i, k] + fv[k + 1] + external_branch(codes, t, p, i, k, length)
            if _better(fv[i], s):
                fv[i], ft[i, 0], ft[i, 1] = s, F_BRANCH, k
    return nt, n_loop, et, ct, mt, m1t, ft


@njit(cache=True)
def _multi_terms(codes, allowed, t, p):
    """`branch[u, j]`: a helix (u, j) in a multi-loop; `unpaired[i, j]`: bases i..j (j >= i-1) unpaired there."""
    length = codes.shape[0] - 2
    size = length + 2
    branch = np.zeros((size, size), dtype=np.float32)
    unpaired = np.zeros((size, size), dtype=np.float32)
    for i in range(1, length + 1):
        for j in range(i - 1, length + 1):
            unpaired[i, j] = multi_unpaired(t, p, i, j)
            if allowed[i, j]:
                branch[i, j] = multi_branch(codes, t, p, i, j, length)
    return branch, unpaired


@njit(cache=True)
def _fill_helix(i, j, codes, allowed, t, p, max_helix, nv, ev, cv, ct):
    """C[i, j]: helices of 1..max_helix pairs ending in a loop, then the longer ones through E."""
    updated = False
    if max_helix <= 0:  # no helix-length term: every pair is its own helix, scored by E
        if _better(cv[i, j], ev[i, j]):
            cv[i, j], ct[i, j, 0], ct[i, j, 1], updated = ev[i, j], C_LONG_HELIX, 1, True
        return updated
    s = nv[i, j] + (np.float32(0.0) + _helix_length(p, 1))
    if _better(cv[i, j], s):
        cv[i, j], ct[i, j, 0], updated = s, C_ISOLATED, True
    turner = np.float32(0.0)
    positional = np.float32(0.0)
    m = 2
    while m <= max_helix:
        if i + m - 1 >= j - m + 1 or not allowed[i + m - 1, j - m + 1]:
            break
        turner += turner_stack(codes, t, i + m - 2, j - m + 2)
        positional = positional_stack_sum(p, i + m - 2, j - m + 2, positional)
        s = nv[i + m - 1, j - m + 1] + (turner + (positional + _helix_length(p, m)))
        if _better(cv[i, j], s):
            cv[i, j], ct[i, j, 0], ct[i, j, 1], updated = s, C_HELIX, m, True
        m += 1
    if m > max_helix and i + m - 1 < j - m + 1 and allowed[i + m - 1, j - m + 1]:
        turner += turner_stack(codes, t, i + m - 2, j - m + 2)
        positional = positional_stack_sum(p, i + m - 2, j - m + 2, positional)
        s = ev[i + m - 1, j - m + 1] + (turner + (positional + _helix_length(p, m)))
        if _better(cv[i, j], s):
            cv[i, j], ct[i, j, 0], ct[i, j, 1], updated = s, C_LONG_HELIX, m, True
    return updated


@njit(cache=True)
def _helix_length(p, m):
    return p.helix_length[min(m, p.helix_length.shape[0] - 1)]


@njit(cache=True)
def trace_back(codes, t, p, nt, n_loop, et, ct, mt, m1t, ft):
    """The chosen structure as 1-based partners (0 unpaired) and its score, summed breadth first."""
    length = codes.shape[0] - 2
    partner = np.zeros(length + 1, dtype=np.int64)
    capacity = 8 * length + 16  # every cell is queued once: at most ~4.5 per base
    queue = np.zeros((capacity, 3), dtype=np.int64)
    queue[0, 0], queue[0, 1], queue[0, 2] = T_F, 1, length
    head, tail = 0, 1
    score = 0.0
    while head < tail:
        table, i, j = queue[head, 0], queue[head, 1], queue[head, 2]
        head += 1
        if table == T_F:
            kind = ft[i, 0]
            if kind == F_END:
                score += 0.0
            elif kind == F_UNPAIRED:
                score += external_unpaired(p, i)
                tail = _push(queue, tail, T_F, i + 1, j)
            else:
                k = ft[i, 1]
                score += external_branch(codes, t, p, i, k, length)
                tail = _push(queue, tail, T_C, i, k)
                tail = _push(queue, tail, T_F, k + 1, j)
        elif table == T_N:
            kind = nt[i, j, 0]
            partner[i], partner[j] = j, i
            if kind == N_HAIRPIN:
                score += hairpin(codes, t, p, i, j)
            elif kind == N_INTERNAL:
                k, l = nt[i, j, 1], nt[i, j, 2]
                score += n_loop[i, j]
                tail = _push(queue, tail, T_C, k, l)
            else:
                u = nt[i, j, 1]
                score += multi_closing(codes, t, p, i, j)
                tail = _push(queue, tail, T_M, i + 1, u - 1)
                tail = _push(queue, tail, T_M1, u, j - 1)
        elif table == T_E:
            if et[i, j] == E_STACK:
                tail = _push(queue, tail, T_E, i + 1, j - 1)
                score += stack_loop(codes, t, p, i, j)
                partner[i], partner[j] = j, i
            else:
                tail = _push(queue, tail, T_N, i, j)
        elif table == T_C:
            kind, m = ct[i, j, 0], ct[i, j, 1]
            if kind == C_ISOLATED:
                tail = _push(queue, tail, T_N, i, j)
                score += np.float32(0.0) + _helix_length(p, 1)
            else:
                inner = T_N if kind == C_HELIX else T_E
                tail = _push(queue, tail, inner, i + m - 1, j - m + 1)
                # mxfold2 marks the pairs before the inner cell: m-1 of them for a helix ending in a
                # loop, but only m-2 for a long helix, whose pair (i+m-2, j-m+2) is scored, not marked
                marked = m - 1 if kind == C_HELIX else m - 2
                for step in range(marked):
                    partner[i + step], partner[j - step] = j - step, i + step
                score += _helix_score(codes, t, p, i, j, m)
        elif table == T_M:
            kind, u = mt[i, j, 0], mt[i, j, 1]
            if kind == M_BRANCH:
                score += multi_branch(codes, t, p, u, j, length) + multi_unpaired(t, p, i, u - 1)
                tail = _push(queue, tail, T_C, u, j)
            elif kind == M_BRANCHES:
                score += multi_branch(codes, t, p, u, j, length)
                tail = _push(queue, tail, T_M, i, u - 1)
                tail = _push(queue, tail, T_C, u, j)
            else:
                score += multi_unpaired(t, p, j, j)
                tail = _push(queue, tail, T_M, i, j - 1)
        else:
            if m1t[i, j] == M1_BRANCH:
                score += multi_branch(codes, t, p, i, j, length)
                tail = _push(queue, tail, T_C, i, j)
            else:
                score += multi_unpaired(t, p, j, j)
                tail = _push(queue, tail, T_M1, i, j - 1)
    return partner, np.float32(score)


@njit(cache=True)
def _push(queue, tail, table, i, j):
    queue[tail, 0], queue[tail, 1], queue[tail, 2] = table, i, j
    return tail + 1


@njit(cache=True)
def _helix_score(codes, t, p, i, j, m):
    """A helix of m pairs from (i, j): its stacks and its length term, as the fill adds them."""
    turner = np.float32(0.0)
    positional = np.float32(0.0)
    for step in range(m - 1):
        turner += turner_stack(codes, t, i + step, j - step)
        positional = positional_stack_sum(p, i + step, j - step, positional)
    return turner + (positional + _helix_length(p, m))
