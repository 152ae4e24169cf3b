"""What both sides need beyond the `Conversion`: the probes in ids, their batches, and the kind's further inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.conversion import Conversion
from convert.errors import ConversionError
from convert.verify.probes import ProbeBatch, TypeGuidedProbes, long_probe, probe_batches, type_guided_probes

PARITY_ATOL = 1e-4  # float32 mapping vs Paddle; a correct conversion reaches about 1e-5


@dataclass
class Setup:
    conversion: Conversion  # the checkpoint, its config, vocabulary, kind, plan and record
    out_dir: Path  # the folder checked
    probes: list[str]
    encoded: list[list[int]]  # official ids of each probe, converted vocabulary
    batches: list[ProbeBatch]
    atol: float
    folder_config: dict  # the folder's config.json (what the config check compares)
    long_sequence: str | None = None  # kinds with a long-sequence mode: a 3-chunk probe
    long_chunks: np.ndarray | None = None
    type_guided: TypeGuidedProbes | None = None  # folders with a type_guided.safetensors
    check_inputs: dict[str, Any] = field(default_factory=dict)  # a kind's own checks: name -> inputs (`KindCheck`)

    @property
    def detection(self):
        return self.conversion.detection

    @property
    def vocab(self):
        return self.conversion.vocabulary

    @property
    def paddle_config(self):
        return self.conversion.paddle_config

    @property
    def plan(self):
        return self.conversion.plan

    @property
    def record(self) -> dict:
        return self.conversion.record


def prepare(conversion: Conversion, out_dir: Path, *, probes: list[str], atol: float | None) -> Setup:
    """Tokenize and batch the probes; the inputs of the kind's further checks."""
    from convert.vocabulary import official_input_ids
    from rnaernie.long_sequence import chunk_input_ids

    vocab, head = conversion.vocabulary, conversion.head
    encoded = [official_input_ids(seq, vocab) for seq in probes]
    setup = Setup(conversion, out_dir, probes, encoded, probe_batches(encoded), PARITY_ATOL if atol is None else atol,
                  _read_folder_config(out_dir))
    reads_slot = bool(head.type_guided and head.type_guided.reads_slot_probabilities)
    setup.type_guided = type_guided_probes(conversion.record.get("type_guided"), reads_slot, encoded)
    if head.long_sequence:  # lncRNA-style input: several 512-token chunks
        setup.long_sequence = long_probe()
        ids = official_input_ids(setup.long_sequence, vocab, max_nucleotides=10**9)
        setup.long_chunks = np.asarray(chunk_input_ids(ids, vocab.id("[CLS]"), vocab.id("[SEP]")))
    setup.check_inputs = {check.name: check.inputs(setup) for check in head.checks}
    return setup


def _read_folder_config(out_dir: Path) -> dict:
    try:
        config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"cannot read {out_dir / 'config.json'} ({exc}); convert the checkpoint again.") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{out_dir / 'config.json'} is not a JSON object; convert the checkpoint again.")
    return config
