"""What each side of the verification produces (typed records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


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
