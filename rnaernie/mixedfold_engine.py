"""The folding engine of the official secondary-structure model (MixedFold): the best nested structure.

`fold(sequence, turner, positional)` runs a Zuker-style dynamic programme (`rnaernie.mixedfold_dp`)
that maximises the sum of two score sets over nested structures, and returns that structure and its
score. It computes what mxfold2's compiled engine (`interface.predict_mxfold`, mxfold2 0.1.1, which the
official code calls with its defaults: minimum hairpin 3, internal loops of at most 30 unpaired bases,
helix-length terms up to 30 pairs, no constraint) computes, with the same structure on ties; the tests
compare the two on recorded goldens (`fixtures/golden/make_engine_golden.py`).

**Turner scores** (`turner`): the checkpoint's `turner.score_*` tensors with `turner.` stripped, float32,
in kcal/mol negated (higher is better; `-inf` forbids): `score_stack` [8, 8],
`score_hairpin`, `score_bulge`, `score_internal` [31] (loop length 0..30; longer hairpins add
`score_lxc * log(n / 30)`), `score_mismatch_{external,hairpin,internal,internal_1n,internal_23,multi}`
[8, 5, 5], `score_int11` [8, 8, 5, 5], `score_int21` [8, 8, 5, 5, 5], `score_int22` [7, 7, 5, 5, 5, 5],
`score_dangle5`, `score_dangle3` [8, 5], and [1] each: `score_ml_base`, `score_ml_closing`,
`score_ml_intern`, `score_ninio`, `score_max_ninio`, `score_duplex_init` (unused), `score_terminalAU`
(not saved in the official checkpoint: the official value is -0.5), `score_lxc`. Pair types index the
first axes (CG 1, GC 2, GU 3, UG 4, AU 5, UA 6), bases the others (A 1, C 2, G 3, U 4, other 0).

**Positional scores** (`positional`): what mxfold2's `ZukerFold.make_param` returns, float32.
Matrices [L+1, L+1], 1-based (row and column 0 unused): `score_helix_stacking`,
`score_mismatch_{external,hairpin,internal,multi}`, `score_base_{hairpin,internal,multi,external}`,
`score_basepair`. Which cells are read: a pair (i, j) reads `[i, j]`; the inner pair (k, l) of a stack or
loop reads `[l, k]` (lower triangle); helix ends in a multi-loop or the exterior read
`score_mismatch_{multi,external}[j, i]`; an unpaired stretch i..j reads `score_base_*[i, j]`, and an
empty one `[i, i-1]`. Length tables: `score_hairpin_length`, `score_bulge_length`,
`score_internal_length`, `score_helix_length` [31], `score_internal_explicit` [5, 5] (short side, long
side), `score_internal_symmetry` [16], `score_internal_asymmetry` [29]; a length beyond a table's last
entry uses the last entry.

**Spelling** (as mxfold2): only A-U, G-C and G-U pairs form, in either case, with at least 3 bases
in a hairpin. `T` (or `t`) never pairs but scores as U in the Turner mismatch and dangle terms next to a
pair; `N` and other letters never pair and score as "other". Callers who want DNA letters to pair
replace T with U first (the structure model does).

Needs numba (the `structure` extra). Compiled functions are cached on disk (`cache=True`): the first
call of a fresh install compiles for a few seconds; numba writes its cache beside the module or, if
that folder is read-only, under the user's cache folder (`NUMBA_CACHE_DIR` overrides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from rnaernie.decoding import MIN_HAIRPIN  # mxfold2: at least 3 bases in a hairpin, as the contact decoder
from rnaernie.structures import Pairs, dot_bracket

MAX_INTERNAL_LENGTH = 30
MAX_HELIX_LENGTH = 30

PAIRING = ("au", "ua", "cg", "gc", "gu", "ug")
TURNER_CODES = {"a": 1, "c": 2, "g": 3, "u": 4, "t": 4}

TURNER_SHAPES = {
    "stack": (8, 8), "hairpin": (31,), "bulge": (31,), "internal": (31,),
    **{f"mismatch_{kind}": (8, 5, 5) for kind in ("external", "hairpin", "internal", "internal_1n",
                                                  "internal_23", "multi")},
    "int11": (8, 8, 5, 5), "int21": (8, 8, 5, 5, 5), "int22": (7, 7, 5, 5, 5, 5),
    "dangle5": (8, 5), "dangle3": (8, 5),
    **{name: (1,) for name in ("ml_base", "ml_closing", "ml_intern", "ninio", "max_ninio", "duplex_init",
                               "terminalAU", "lxc")},
}
POSITIONAL_MATRICES = ("basepair", "helix_stacking", "mismatch_external", "mismatch_hairpin",
                       "mismatch_internal", "mismatch_multi", "base_hairpin", "base_internal", "base_multi",
                       "base_external")
POSITIONAL_TABLE_SHAPES = {"hairpin_length": (31,), "bulge_length": (31,), "internal_length": (31,),
                           "internal_explicit": (5, 5), "internal_symmetry": (16,),
                           "internal_asymmetry": (29,), "helix_length": (31,)}


@dataclass(frozen=True)
class FoldResult:
    """The best structure: its score, its pairs (0-based `(i, j)`, `i < j`) and its dot-bracket text."""

    score: float
    pairs: Pairs
    structure: str


def fold(sequence: str, turner: Mapping[str, np.ndarray], positional: Mapping[str, np.ndarray], *,
         max_internal_length: int = MAX_INTERNAL_LENGTH, max_helix_length: int = MAX_HELIX_LENGTH) -> FoldResult:
    """The highest-scoring nested structure of `sequence` (see the module docstring for the inputs).

    A wrong or missing score tensor is a `ValueError` naming it.
    """
    from rnaernie.mixedfold_dp import fold_tables, trace_back
    from rnaernie.mixedfold_scores import POSITIONAL_NAMES, TURNER_NAMES, Positional, Turner

    length = len(sequence)
    t = Turner(*(_tensor(turner, "turner", name, TURNER_SHAPES[name]) for name in TURNER_NAMES))
    matrix = (length + 1, length + 1)
    p = Positional(*(_tensor(positional, "positional", name,
                             matrix if name in POSITIONAL_MATRICES else POSITIONAL_TABLE_SHAPES[name])
                     for name in POSITIONAL_NAMES))
    codes, allowed = _encode(sequence)
    tables = fold_tables(codes, allowed, t, p, max_internal_length, max_helix_length)
    partner, score = trace_back(codes, t, p, *tables)
    pairs = tuple((i - 1, int(j) - 1) for i, j in enumerate(partner) if i < j)
    return FoldResult(float(score), pairs, dot_bracket(pairs, length))


def _tensor(scores: Mapping[str, np.ndarray], group: str, name: str, shape: tuple[int, ...]) -> np.ndarray:
    key = f"score_{name}"
    if key not in scores:
        raise ValueError(f"the {group} scores lack {key} (shape {list(shape)}).")
    array = np.asarray(scores[key])
    if array.shape != shape:
        raise ValueError(f"{group} {key} has shape {list(array.shape)}, expected {list(shape)}.")
    return np.ascontiguousarray(array, dtype=np.float32)


def _encode(sequence: str) -> tuple[np.ndarray, np.ndarray]:
    """Turner base codes at 1..L (0 and L+1 unused), and which 1-based pairs (i, j) may form."""
    lower = sequence.lower()
    length = len(lower)
    codes = np.zeros(length + 2, dtype=np.int64)
    codes[1:length + 1] = [TURNER_CODES.get(base, 0) for base in lower]
    allowed = np.zeros((length + 2, length + 2), dtype=np.bool_)
    bases = np.array(list(lower), dtype="<U1") if length else np.zeros(0, dtype="<U1")
    for five, three in PAIRING:
        allowed[1:length + 1, 1:length + 1] |= (bases == five)[:, None] & (bases == three)[None, :]
    gap = np.subtract.outer(np.arange(length + 2), np.arange(length + 2))  # i - j
    allowed &= gap < -MIN_HAIRPIN
    return codes, allowed
