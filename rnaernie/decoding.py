"""From a matrix of pair probabilities to one valid secondary structure.

A pair (i, j), i < j, may be chosen when its probability (the upper triangle of the matrix) is above
the threshold, its bases are a canonical pair (AU, GC or GU, either order; T reads as U; any two
bases with `any_pairs`), and at least `min_hairpin` (3) bases lie between them. Each base gets at
most one partner. Among the structures made of such pairs, the decoder returns one that maximises

    sum over the chosen pairs of (p_ij - threshold),

the expected number of correct pairs minus `threshold` times the number of pairs (the usual
maximum-expected-accuracy trade-off, threshold = 1 / (1 + gamma)): a pair adds to it exactly when
its probability is above the threshold.

* nested (default): no two pairs cross, so the structure is plain dot-bracket. A Nussinov-style
  dynamic programme over intervals finds the optimum: F[i, j] (bases i .. j-1) is the best of leaving
  i unpaired, F[i+1, j], or pairing i with an allowed k < j, w_ik + F[i+1, k] + F[k+1, j]. Each row
  of F is computed with numpy over all j at once, one vector operation per allowed partner of i.
* pseudoknots: crossing pairs are allowed; the optimum is then a maximum-weight matching on the
  graph of allowed pairs, which networkx's `max_weight_matching` (Edmonds' blossom algorithm) finds
  exactly. It needs networkx: `pip install 'rnaernie-convert[fold]'`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnaernie.errors import InputError

if TYPE_CHECKING:
    import numpy as np

CANONICAL = {("A", "U"), ("U", "A"), ("G", "C"), ("C", "G"), ("G", "U"), ("U", "G")}
MIN_HAIRPIN = 3
DEFAULT_THRESHOLD = 0.5

Pairs = tuple[tuple[int, int], ...]


def allowed_pairs(probabilities: "np.ndarray", sequence: str, threshold: float = DEFAULT_THRESHOLD,
                  any_pairs: bool = False, min_hairpin: int = MIN_HAIRPIN) -> list[tuple[int, int, float]]:
    """(i, j, p_ij - threshold) for every pair the decoder may choose, in (i, j) order."""
    import numpy as np

    check_threshold(threshold)
    length = len(sequence)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (length, length):
        raise InputError(f"the probability matrix is {probabilities.shape}, the sequence {length} nt; give an "
                         f"[{length}, {length}] matrix.")
    rows, columns = np.nonzero(np.triu(probabilities > threshold, k=min_hairpin + 1))
    bases = sequence.upper().replace("T", "U")
    return [(int(i), int(j), float(probabilities[i, j] - threshold)) for i, j in zip(rows, columns)
            if any_pairs or (bases[i], bases[j]) in CANONICAL]


def decode(probabilities: "np.ndarray", sequence: str, *, threshold: float = DEFAULT_THRESHOLD,
           pseudoknots: bool = False, any_pairs: bool = False, min_hairpin: int = MIN_HAIRPIN) -> Pairs:
    """The best valid structure (module docstring) as sorted 0-based pairs."""
    candidates = allowed_pairs(probabilities, sequence, threshold, any_pairs, min_hairpin)
    if pseudoknots:
        return max_weight_matching(candidates)
    return nested_mea(len(sequence), candidates)


def nested_mea(length: int, candidates: list[tuple[int, int, float]]) -> Pairs:
    """The non-crossing set of candidate pairs (one partner per base) of greatest total weight."""
    import numpy as np

    partners: list[list[tuple[int, float]]] = [[] for _ in range(length)]
    for i, j, weight in candidates:
        partners[i].append((j, weight))
    # best[i, j]: the best total weight within bases i .. j-1 (0 for an empty interval)
    best = np.zeros((length + 2, length + 1))
    for i in range(length - 1, -1, -1):
        row = best[i + 1].copy()
        for k, weight in partners[i]:
            np.maximum(row[k + 1:], weight + best[i + 1, k] + best[k + 1, k + 1:], out=row[k + 1:])
        best[i] = row
    pairs = []
    intervals = [(0, length)]
    while intervals:
        i, j = intervals.pop()
        if j - i < 2:
            continue
        options = [(best[i + 1, j], None)] + [(weight + best[i + 1, k] + best[k + 1, j], k)
                                              for k, weight in partners[i] if k < j]
        _, k = max(options, key=lambda option: option[0])  # the first of equal optima: the same as the pass above
        if k is None:
            intervals.append((i + 1, j))
        else:
            pairs.append((i, k))
            intervals += [(i + 1, k), (k + 1, j)]
    return tuple(sorted(pairs))


def max_weight_matching(candidates: list[tuple[int, int, float]]) -> Pairs:
    """The set of candidate pairs (one partner per base, crossing allowed) of greatest total weight."""
    networkx = require_networkx()
    graph = networkx.Graph()
    graph.add_weighted_edges_from(candidates)
    return tuple(sorted((min(i, j), max(i, j)) for i, j in networkx.max_weight_matching(graph)))


def require_networkx():
    """networkx, or the one-line hint to install it."""
    try:
        import networkx
    except ImportError:
        raise InputError("--pseudoknots needs networkx; install it with pip install 'rnaernie-convert[fold]' "
                         "(or pip install networkx).") from None
    return networkx


def check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold < 1.0:
        raise InputError(f"--threshold {threshold} is outside [0, 1); pair probabilities above it are kept, "
                         "0.5 is the usual choice.")
