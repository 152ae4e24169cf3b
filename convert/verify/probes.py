"""The probe sequences both sides run, their batches, and the inputs that reach the type-guided rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnaernie.sequences import MAX_NUCLEOTIDES
TYPE_GUIDED_PROBE_NUCLEOTIDES = 25  # the longest probe the type-guided checks use (6 of the 9 built-in ones)


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


def long_probe() -> str:
    """A 1300-nt sequence: three 512-token chunks for the long-sequence classifier check."""
    rng = np.random.default_rng(7)
    return "".join(rng.choice(list("ACGU"), size=1300))


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


@dataclass(frozen=True)
class PromptSet:
    """`[CLS] body [IND] <class> [SEP]` rows: one class token per body (converted-vocabulary ids)."""

    bodies: list[list[int]]
    classes: list[str]


@dataclass(frozen=True)
class TypeGuidedProbes:
    """Inputs that reach the rows kept aside in the side file.

    `prompt_sets`: every class token on the shortest probe, then each short probe with one class in
    turn, so every kept input row is read; two sets, each one padded batch, so the short class
    prompts are not padded to the probes' length. `bodies` (the indicator only): every probe with
    an empty slot, whose type probabilities read the [IND] row and the decoder rows.
    """

    class_tokens: tuple[str, ...]
    prompt_sets: list[PromptSet]  # short probes only
    bodies: list[list[int]]


def type_guided_probes(side_record: dict | None, reads_slot: bool, encoded: list[list[int]]) -> TypeGuidedProbes | None:
    """The type-guided inputs for a folder whose conversion.json describes a side file (`side_record`)."""
    if not side_record:
        return None  # converted before the side file existed, or a vocabulary without [IND]
    # the kept rows read the same at any length: short probes reach them all, at a small cost
    bodies = [ids[1:-1] for ids in encoded if len(ids) - 2 <= TYPE_GUIDED_PROBE_NUCLEOTIDES]
    classes = tuple(side_record["class_tokens"])
    shortest = min(range(len(bodies)), key=lambda i: len(bodies[i]))
    prompt_sets = [PromptSet([bodies[shortest]] * len(classes), list(classes)),
                   PromptSet(bodies, [classes[i % len(classes)] for i in range(len(bodies))])]
    return TypeGuidedProbes(classes, prompt_sets, bodies if reads_slot else [])
