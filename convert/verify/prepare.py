"""What both sides need beyond the `Conversion` (the probes, in ids and batches; the kind's further inputs), and what
each side gives back (`Outputs`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.conversion import Conversion
from convert.errors import ConversionError
from rnaernie.sequences import MAX_NUCLEOTIDES

PARITY_ATOL = 1e-4  # float32 mapping vs Paddle; a correct conversion reaches about 1e-5


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


@dataclass(frozen=True)
class BatchOutputs:
    """One model's outputs on one probe batch, in the converted vocabulary's columns."""

    hidden_states: list[np.ndarray]  # the embedding output, then each layer's: [B, L, H]
    pooled: np.ndarray  # [B, H]
    logits: np.ndarray | None  # None for a kind without logits


@dataclass
class Outputs:
    """One model's outputs on every probe batch, and on the inputs of the further checks."""

    batches: list[BatchOutputs] = field(default_factory=list)
    # output name -> one array per batch: long-sequence logits, type-guided outputs, a kind's own checks
    extra: dict[str, list[np.ndarray]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    widget: list[dict] | None = None  # the card's examples, computed by this model (kinds with a widget)


@dataclass
class Setup:
    conversion: Conversion  # the checkpoint, its config, vocabulary, kind, plan and record
    out_dir: Path  # the folder checked
    probes: list[str]
    encoded: list[list[int]]  # official ids of each probe, converted vocabulary
    batches: list[ProbeBatch]
    atol: float
    folder_config: dict  # the folder's config.json (what the config check compares)
    check_inputs: dict[str, Any] = field(default_factory=dict)  # the kind's checks: name -> inputs (`KindCheck`)


def prepare(conversion: Conversion, out_dir: Path, *, probes: list[str], atol: float | None) -> Setup:
    """Tokenize and batch the probes; the inputs of the kind's checks (`KindCheck.inputs`)."""
    from convert.vocabulary import official_input_ids

    encoded = [official_input_ids(seq, conversion.vocabulary) for seq in probes]
    setup = Setup(conversion, out_dir, probes, encoded, probe_batches(encoded), PARITY_ATOL if atol is None else atol,
                  _read_folder_config(out_dir))
    setup.check_inputs = {check.name: check.inputs(setup) for check in conversion.head.checks}
    return setup


def _read_folder_config(out_dir: Path) -> dict:
    try:
        config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"cannot read {out_dir / 'config.json'} ({exc}); convert the checkpoint again.") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{out_dir / 'config.json'} is not a JSON object; convert the checkpoint again.")
    return config
