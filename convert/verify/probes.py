"""The probe sequences both sides run, and their batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnaernie.sequences import MAX_NUCLEOTIDES


def builtin_probes() -> list[str]:
    """Deterministic RNA probes: 1 to 510 nt, lowercase, T, N, gaps, IUPAC codes, [MASK] positions."""
    rng = np.random.default_rng(20240601)

    def rna(n: int) -> str:
        return "".join(rng.choice(list("ACGU"), size=n))

    masked = list(rna(60))
    for i in range(3, 60, 9):
        masked[i] = "[MASK]"
    return [
        "A",
        "GC",
        rna(7).lower(),
        rna(20).replace("U", "T"),
        "CGAUUCNCGUUCCC--CCGCCUCCA",
        "AUGRYKMSWBDHVN..augc",
        "".join(masked),
        rna(45),
        rna(MAX_NUCLEOTIDES),
    ]


def read_probe_file(path: Path) -> list[str]:
    """FASTA (optionally gzipped) or one sequence a line (`rnaernie.sequences` reads both)."""
    from rnaernie.sequences import read_records

    return [record.sequence for record in read_records(path)]


@dataclass(frozen=True)
class ProbeBatch:
    """Probe ids [B, L] in the converted vocabulary, padded with 0 ([PAD] in both vocabularies)."""

    ids: np.ndarray
    attention: np.ndarray  # [B, L] bool: True at real tokens


def _batch_indices(encoded: list[list[int]], max_tokens: int = 256) -> list[list[int]]:
    """Group probe indices so each padded batch stays small; sorted by length to limit padding,
    but every batch of more than one sequence still has padded positions."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    batches: list[list[int]] = [[]]
    for i in order:
        width = len(encoded[i])
        if batches[-1] and width * (len(batches[-1]) + 1) > max_tokens:
            batches.append([])
        batches[-1].append(i)
    return batches


def probe_batches(encoded: list[list[int]]) -> list[ProbeBatch]:
    batches = []
    for batch in _batch_indices(encoded):
        width = max(len(encoded[i]) for i in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        for row, i in enumerate(batch):
            ids[row, : len(encoded[i])] = encoded[i]
        batches.append(ProbeBatch(ids, ids != 0))
    return batches
