"""What both sides need beyond the `Conversion`: the probes in ids, their batches, and the kind's further inputs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convert.conversion import Conversion
from convert.errors import ConversionError
from convert.verify.probes import ProbeBatch, probe_batches

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
    check_inputs: dict[str, Any] = field(default_factory=dict)  # the kind's checks: name -> inputs (`KindCheck`)

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
