"""The shape of a registry entry: what a model kind must say about itself (see `convert.heads`).

`Kind` names every kind; `Head` is one kind's entry, with the parts that differ between kinds as
data and hooks: `Logits` (what they are, how the verifier compares them), `TypeGuidedRole`,
`KindCheck` (a kind's own verifier comparisons: type-guided, long-sequence, interaction, structure),
`Backbone` (a kind converted with the pre-trained checkpoint that feeds it). Kept apart from the
registry so that a kind defined in a module of its own can build its entry from these without
importing the registry.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from convert.mapping import KeyLayout
from convert.paddle_config import ErnieConfig, to_transformers_config
from convert.vocabulary import Vocabulary

if TYPE_CHECKING:
    import numpy as np


class Kind(Enum):
    """The kinds, by the name `--head` takes and conversion.json records."""

    MASKED_LM = "masked-lm"
    SEQUENCE_CLASSIFIER = "sequence-classifier"
    TOKEN_CLASSIFIER = "token-classifier"
    ENCODER = "encoder"
    RR_INTERACTION = "rr-interaction"
    STRUCTURE_MODEL = "structure-model"


class TypeGuidedRole(Enum):
    """A kind's part in RNAErnie's type-guided classification."""

    INDICATOR = "indicator"  # the pre-trained model: names likely classes after [IND]
    CLASSIFIER = "classifier"  # a classifier fine-tuned to read [IND] and a class token

    @property
    def reads_slot_probabilities(self) -> bool:
        """The verifier compares the type probabilities after [IND] (which read the decoder's class rows)."""
        return self is TypeGuidedRole.INDICATOR

    @property
    def reads_prompt_logits(self) -> bool:
        """The verifier compares the classifier's logits on `[CLS] seq [IND] <class> [SEP]`."""
        return self is TypeGuidedRole.CLASSIFIER

    @property
    def more_kept_rows(self) -> str:
        """What the side file keeps beyond the input rows, in words for the card."""
        return ", and the MLM decoder's class-token rows and bias" if self is TypeGuidedRole.INDICATOR else ""


@dataclass(frozen=True)
class Logits:
    """What a kind's logits are, and how the verifier compares the two sides' on the probe batches."""

    shape: str  # in words, e.g. "[B, L, V]"
    over_vocabulary: bool = False  # Paddle's columns are the source vocabulary's: compare the kept ones
    per_position: bool = False  # one row per token: padded positions are reported apart

    def kept_columns(self, logits: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """The Paddle side's logits in the converted vocabulary's columns (unchanged for label logits)."""
        return logits[..., kept] if self.over_vocabulary else logits

    def padded(self, attention: np.ndarray) -> np.ndarray | None:
        """The positions counted as padded in the comparison (None: the logits have no positions)."""
        return ~attention if self.per_position else None

    @property
    def masked_argmax(self) -> bool:
        """The verifier reports how often both sides predict the same token at [MASK]."""
        return self.over_vocabulary


@dataclass(frozen=True)
class PaddleModel:
    """The original network, as a kind's `KindCheck.run_paddle` gets it (in the verifier's Paddle process)."""

    encoder: Any  # convert.paddle_reference.ErnieReference
    head: Callable | None  # (sequence_output, pooled) -> logits, from the entry's `reference`
    tensors: dict[str, np.ndarray]  # the checkpoint's float32 weights
    config: ErnieConfig
    detection: Any  # convert.heads.Detection (not imported: the registry imports this module)


@dataclass(frozen=True)
class FolderModel:
    """The converted folder as users load it, as a kind's `KindCheck.run_torch` gets it."""

    model: Any  # the entry's Auto class, float32, eval mode
    tokenizer: Any
    out_dir: Path
    setup: Any  # convert.verify.prepare.Setup


class KindCheck(Protocol):
    """A comparison a kind runs beyond the probe batches: its own probes and outputs (e.g. logits on pairs).

    `inputs` (main process) returns something picklable, or None when the check does not apply to the
    folder; `run_paddle` gets it in the Paddle child with the reference network, `run_torch` with the
    folder as users load it. Both return {name among `outputs`: one array per batch}, scored like a
    layer. `stored_too`: a half-precision folder is also run as stored (else with the float32 mapping).
    """

    name: str
    outputs: tuple[str, ...]
    stored_too: bool

    def inputs(self, setup: Any) -> Any: ...  # setup: convert.verify.prepare.Setup

    def run_paddle(self, inputs: Any, paddle: PaddleModel) -> dict[str, list[np.ndarray]]: ...

    def run_torch(self, inputs: Any, folder: FolderModel) -> dict[str, list[np.ndarray]]: ...


def _no_card_section(record: dict, verification: dict | None) -> str:
    return ""


@dataclass(frozen=True)
class Backbone:
    """A kind whose checkpoint holds no encoder: it is converted with the pre-trained checkpoint that feeds it
    (`--backbone`), read and hashed once beside it. `combine` makes the two files one tensor table, which the
    plan, the writer and both sides of the verifier read as they read any checkpoint's."""

    missing: str  # the reason said (one line, naming --backbone) when no backbone is given
    # (own tensors, the backbone's tensors, the backbone's name for messages) -> the conversion's tensors;
    # raises ConversionError naming --backbone when the backbone cannot feed this model
    combine: Callable[[dict, dict, str], dict]

    def read(self, own: Any, backbone: Any, name: str) -> Any:
        """One `convert.pdparams.PaddleCheckpoint` of both files: `combine`'s table, whose encoder weights are
        the backbone's pages (released as the backbone's)."""
        return replace(backbone, tensors=self.combine(own.tensors, backbone.tensors, name))


@dataclass(frozen=True)
class Head:
    kind: Kind
    description: str  # in words, for the summary and the card
    paddle_classes: tuple[str, ...]  # PaddleNLP classes a config's architectures / init_class may name
    architecture: str  # transformers class written to config.json
    auto_class: str  # transformers Auto class that loads the folder
    layouts: tuple[KeyLayout, ...]
    logits: Logits | None  # None: no logits (bare encoder)
    pipeline_tag: str
    usage: str  # card snippet; MODEL stands for the repository id or path
    # builds the Paddle reference head: (tensors, config, layout) -> callable(states, pooled) -> logits
    reference: Callable | None = None
    labels_tensor: str | None = None  # a classifier's weight [H, C]: its columns are the labels
    default_labels: Callable[[int], tuple[str, ...] | None] = lambda num_labels: None
    type_guided: TypeGuidedRole | None = None
    widget: Callable[[Any, Any], list[dict]] | None = None  # (model, tokenizer) -> the card's widget examples
    card_section: Callable[[dict, dict | None], str] = _no_card_section  # (record, verification) -> card text
    checks: tuple[KindCheck, ...] = ()  # the kind's own comparisons, beyond the probe batches, in order
    # (tensors, checkpoint) -> (config file, a sentence for the summary) when none is beside the checkpoint and
    # no --config is given; raises ConfigError saying what to pass. None: ask for --config.
    default_config: Callable[[dict, Path], tuple[Path, str]] | None = None
    backbone: Backbone | None = None  # the checkpoint holds no encoder: converted with --backbone
    fallback: bool = False  # recognised only when no other kind's marker is present
    default_when_ambiguous: bool = False  # the official kind, chosen when the names fit several

    @property
    def name(self) -> str:
        return self.kind.value

    def num_labels(self, tensors: dict[str, np.ndarray]) -> int | None:
        array = tensors.get(self.labels_tensor) if self.labels_tensor else None
        return None if array is None else int(array.shape[-1])

    def transformers_config(self, paddle_config: ErnieConfig, vocabulary: Vocabulary, dtype: str,
                            label_names: list[str] | None) -> dict:
        """The `config.json` the converter writes (the verifier compares the folder's to it)."""
        labels: dict = {}
        if label_names is not None:
            labels = {"id2label": dict(enumerate(label_names)), "label2id": {n: i for i, n in enumerate(label_names)}}
        return to_transformers_config(paddle_config, len(vocabulary.tokens), self.architecture, dtype, labels)


@dataclass(frozen=True)
class LeftOut:
    """Tensors known but deliberately not converted, and why (said in the summary and the card)."""

    name: str
    keys: tuple[str, ...]
    reason: str
