"""Every model kind the converter knows, one registry entry each: the one place where kinds differ.

An entry (`Head`, its fields defined in `convert.kinds`) says everything about its kind: how it is
recognised (the tensor names of each key layout, and the PaddleNLP class a config may name), the
transformers class and Auto class that load the result, its mapping rows and side files, its Paddle
reference head for the verifier, its logits (`Logits`), widget, card section, Hub pipeline tag and
card usage, its part in type-guided classification (`TypeGuidedRole`), and its own verifier checks
(`KindCheck`). The pipeline, the mapper, the verifier and the card ask the entry, never test the kind.

To add a kind:
1. add its name to `convert.kinds.Kind`;
2. in a module of its own (it imports `convert.kinds` and `convert.mapping`, never this registry),
   build its `Head`: its `KeyLayout`s (rows into model.safetensors, plus `SideFile`s for tensors
   stock transformers cannot hold, which the plan checks and the verifier compares bit for bit);
3. give the `Head` a `reference` builder (its Paddle head for the verifier, in its own module like
   `convert.paddle_reference`) and `logits`, or `checks`: `KindCheck` objects with their own probes,
   a Paddle-side run (in the verifier's child process) and a torch-side run (on the folder as users
   load it, e.g. through model-side code in `rnaernie/`); their outputs are scored like every layer;
   a kind whose checkpoint holds no encoder gives a `Backbone` (`--backbone`, e.g. `convert.mixedfold`);
4. list it in `HEADS` below (`registry` refuses an entry that collides with another), and add its tests.
Nothing outside the registry and the kind's own modules changes. Every lookup goes by `Kind` (what
conversion.json records), never by transformers class, which two kinds may share (`BertModel`).

A kind whose checkpoint holds no encoder (the official MixedFold structure model) says so with a
`Backbone`: it is converted with the pre-trained checkpoint that feeds it (`--backbone`), and
`backbone_kind` recognises it by its own tensors before any config is looked for.

`detect_head` decides the kind of a checkpoint and says how it decided: an explicit `--head`, the
config's architecture, the tensor names, or, where the names fit several kinds and the config is
silent (the official legacy files), the official kind, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from convert import widget
from convert.errors import ConversionError
from convert.kinds import Head, Kind, KindCheck, LeftOut, Logits, TypeGuidedRole
from convert.interaction import RR_INTERACTION
from convert.mixedfold import STRUCTURE_MODEL
from convert.mapping import (ENCODER_ROWS, TYPE_GUIDED_INPUT_ROWS, KeyLayout, Plan, Row, SideFile, Transform,
                             plan_mapping, prefixed)
from convert.paddle_config import ErnieConfig
from convert.verify.kind_checks import LONG_SEQUENCE, TYPE_GUIDED
from convert.vocabulary import Vocabulary
from rnaernie.type_guided_rows import DECODER_BIAS_CLASSES, DECODER_CLASSES, IND_TOKEN, SIDE_FILE, side_file_metadata

if TYPE_CHECKING:
    import numpy as np

__all__ = ["HEADS", "head_of", "registry", "backbone_kind", "Detection", "detect_head", "Head", "Kind", "KindCheck",
           "LeftOut", "Logits", "TypeGuidedRole", "NRC_LABELS", "LNCRNA_LABELS", "type_guided_source_ids"]

_T, _C = Transform.TRANSPOSE, Transform.COPY

# Official class names (RNAErnie run_seq_cls.py): nRC has 13 classes; lncRNA_H / lncRNA_M use lnc, pc.
NRC_LABELS = ("5S_rRNA", "5_8S_rRNA", "tRNA", "ribozyme", "CD-box", "Intron_gpI", "Intron_gpII", "riboswitch",
              "IRES", "HACA-box", "scaRNA", "leader", "miRNA")
LNCRNA_LABELS = ("lnc", "pc")


# ------------------------------------------------------------------------------- type-guided side file

def type_guided_source_ids(vocab: Vocabulary) -> dict[str, int]:
    """Source id of [IND] and of each class token (the side file's metadata and conversion.json)."""
    return {IND_TOKEN: vocab.ind_source_id, **{vocab.source_tokens[i]: i for i in vocab.class_source_ids}}


def _type_guided_file(rows: tuple[Row, ...]) -> SideFile:
    return SideFile(SIDE_FILE, rows, needs_dropped_tokens=True,
                    metadata=lambda vocab, tensors: side_file_metadata(vocab.class_tokens, type_guided_source_ids(vocab)))


# ------------------------------------------------------------------------------- masked LM

_MLM_TRANSFORM_ROWS = (
    Row("cls.predictions.transform.weight", "cls.predictions.transform.dense.weight", ("H", "H"), _T),
    Row("cls.predictions.transform.bias", "cls.predictions.transform.dense.bias", ("H",), _C),
    Row("cls.predictions.layer_norm.weight", "cls.predictions.transform.LayerNorm.weight", ("H",), _C),
    Row("cls.predictions.layer_norm.bias", "cls.predictions.transform.LayerNorm.bias", ("H",), _C),
)
# transformers 4.x reads cls.predictions.bias; 5.x (untied) reads cls.predictions.decoder.bias: write both.
_MLM_DECODER_BIAS_TARGETS = ("cls.predictions.bias", "cls.predictions.decoder.bias")
_WORD_EMBEDDINGS = "ernie.embeddings.word_embeddings.weight"


def _mlm_layout(name: str, description: str, decoder_weight: str, decoder_bias: str,
                tied: tuple[tuple[str, str], ...]) -> KeyLayout:
    rows = (
        *prefixed(ENCODER_ROWS, "ernie."),
        *_MLM_TRANSFORM_ROWS,
        Row(decoder_weight, "cls.predictions.decoder.weight", ("V", "H"), Transform.VOCAB_ROWS),
        *(Row(decoder_bias, target, ("V",), Transform.VOCAB_ROWS) for target in _MLM_DECODER_BIAS_TARGETS),
    )
    type_guided = (*prefixed(TYPE_GUIDED_INPUT_ROWS, "ernie."),
                   Row(decoder_weight, DECODER_CLASSES, ("V", "H"), Transform.CLASS_ROWS),
                   Row(decoder_bias, DECODER_BIAS_CLASSES, ("V",), Transform.CLASS_ROWS))
    return KeyLayout(name, description, decoder_weight, rows, "ernie.", tied, (_type_guided_file(type_guided),))


def _mlm_reference(tensors, config, layout):
    from convert.paddle_reference import masked_lm_head

    decoder_weight, decoder_bias = (next(row.source for row in layout.rows if row.target == target)
                                    for target in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias"))
    return masked_lm_head(tensors, config, decoder_weight, decoder_bias)


MASKED_LM = Head(
    kind=Kind.MASKED_LM,
    description="masked LM (ErnieForMaskedLM)",
    paddle_classes=("ErnieForMaskedLM", "ErnieForPretraining"),
    architecture="BertForMaskedLM",
    auto_class="AutoModelForMaskedLM",
    layouts=(
        _mlm_layout("mlm-2.4", "PaddleNLP 2.4 key names, as released", "cls.predictions.decoder_weight",
                    "cls.predictions.decoder_bias", (("cls.predictions.decoder_weight", _WORD_EMBEDDINGS),)),
        # PaddleNLP >= 2.5 also saves decoder_bias as an alias of decoder.bias
        _mlm_layout("mlm-2.5", "PaddleNLP >= 2.5 key names", "cls.predictions.decoder.weight",
                    "cls.predictions.decoder.bias", (("cls.predictions.decoder.weight", _WORD_EMBEDDINGS),
                                                     ("cls.predictions.decoder_bias", "cls.predictions.decoder.bias"))),
    ),
    logits=Logits("[B, L, V]: every position over the vocabulary", over_vocabulary=True, per_position=True),
    pipeline_tag="fill-mask",
    reference=_mlm_reference,
    type_guided=TypeGuidedRole.INDICATOR,
    checks=(TYPE_GUIDED,),
    widget=widget.fill_mask_examples,
    card_section=widget.card_section,
    usage="""```python
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, pipeline

tokenizer = AutoTokenizer.from_pretrained(MODEL)
fill = pipeline("fill-mask", model=MODEL)
print(fill("AUGGCU[MASK]AGCUAGG"))

# embeddings: always pass the attention_mask the tokenizer returns when batching with padding
encoder = AutoModel.from_pretrained(MODEL)
batch = tokenizer(["AUGGCUAGCU", "GGAUCC"], padding=True, return_tensors="pt")
hidden = encoder(**batch).last_hidden_state  # [batch, tokens, hidden]
```""",
)

# ------------------------------------------------------------------------------- classifiers

CLASSIFIER_WEIGHT, CLASSIFIER_BIAS = "classifier.weight", "classifier.bias"  # the same names in transformers
_CLASSIFIER_ROWS = (Row(CLASSIFIER_WEIGHT, CLASSIFIER_WEIGHT, ("H", "C"), _T),
                    Row(CLASSIFIER_BIAS, CLASSIFIER_BIAS, ("C",), _C))
_CLASSIFIER_LAYOUT = KeyLayout("classifier", "ernie.-prefixed encoder and classifier.weight/bias", CLASSIFIER_WEIGHT,
                               prefixed(ENCODER_ROWS, "ernie.") + _CLASSIFIER_ROWS, "ernie.",
                               side_files=(_type_guided_file(prefixed(TYPE_GUIDED_INPUT_ROWS, "ernie.")),))


def _official_labels(num_labels: int) -> tuple[str, ...] | None:
    return {len(NRC_LABELS): NRC_LABELS, len(LNCRNA_LABELS): LNCRNA_LABELS}.get(num_labels)


def _sequence_classifier_reference(tensors, config, layout):
    from convert.paddle_reference import classifier_head

    return classifier_head(tensors[CLASSIFIER_WEIGHT], tensors[CLASSIFIER_BIAS], on_pooled=True)


def _token_classifier_reference(tensors, config, layout):
    from convert.paddle_reference import classifier_head

    return classifier_head(tensors[CLASSIFIER_WEIGHT], tensors[CLASSIFIER_BIAS], on_pooled=False)


SEQUENCE_CLASSIFIER = Head(
    kind=Kind.SEQUENCE_CLASSIFIER,
    description="sequence classifier (ErnieForSequenceClassification)",
    paddle_classes=("ErnieForSequenceClassification",),
    architecture="BertForSequenceClassification",
    auto_class="AutoModelForSequenceClassification",
    layouts=(_CLASSIFIER_LAYOUT,),
    logits=Logits("[B, C]: one row of label logits per sequence"),
    pipeline_tag="text-classification",
    reference=_sequence_classifier_reference,
    labels_tensor=CLASSIFIER_WEIGHT,
    default_labels=_official_labels,
    type_guided=TypeGuidedRole.CLASSIFIER,
    checks=(LONG_SEQUENCE, TYPE_GUIDED),  # the official 512-token chunked mode, then the kept rows
    default_when_ambiguous=True,  # every official fine-tuned file (nRC, lncRNA_H, lncRNA_M) is one
    usage="""```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(MODEL)
model = AutoModelForSequenceClassification.from_pretrained(MODEL)
batch = tokenizer(["AUGGCUAGCU"], return_tensors="pt")
label = model.config.id2label[int(model(**batch).logits.argmax(-1))]

# sequences longer than 510 nt: the original averages logits over 512-token chunks
from rnaernie.long_sequence import classify_long  # pip install rnaernie-convert
logits = classify_long(model, tokenizer, "AUGG..." * 500)
```""",
)

TOKEN_CLASSIFIER = Head(
    kind=Kind.TOKEN_CLASSIFIER,
    description="token classifier (ErnieForTokenClassification)",
    paddle_classes=("ErnieForTokenClassification",),
    architecture="BertForTokenClassification",
    auto_class="AutoModelForTokenClassification",
    layouts=(_CLASSIFIER_LAYOUT,),
    logits=Logits("[B, L, C]: label logits at every position", per_position=True),
    pipeline_tag="token-classification",
    reference=_token_classifier_reference,
    labels_tensor=CLASSIFIER_WEIGHT,
    checks=(TYPE_GUIDED,),
    usage="""```python
from transformers import AutoModelForTokenClassification, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(MODEL)
model = AutoModelForTokenClassification.from_pretrained(MODEL)
batch = tokenizer(["AUGGCUAGCU", "GGAUCC"], padding=True, return_tensors="pt")
labels = model(**batch).logits.argmax(-1)  # one label per token, [CLS] and [SEP] included
```""",
)

# ------------------------------------------------------------------------------- bare encoder

ENCODER = Head(
    kind=Kind.ENCODER,
    description="bare encoder (ErnieModel)",
    paddle_classes=("ErnieModel",),
    architecture="BertModel",
    auto_class="AutoModel",
    layouts=(
        KeyLayout("encoder", "unprefixed keys", "embeddings.word_embeddings.weight", ENCODER_ROWS, "",
                  side_files=(_type_guided_file(TYPE_GUIDED_INPUT_ROWS),)),
        KeyLayout("encoder-prefixed", "ernie.-prefixed keys", "ernie.embeddings.word_embeddings.weight",
                  prefixed(ENCODER_ROWS, "ernie."), "ernie.",
                  side_files=(_type_guided_file(prefixed(TYPE_GUIDED_INPUT_ROWS, "ernie.")),)),
    ),
    logits=None,
    pipeline_tag="feature-extraction",
    checks=(TYPE_GUIDED,),
    fallback=True,  # every task model has the encoder's tensors too
    usage="""```python
from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(MODEL)
model = AutoModel.from_pretrained(MODEL)
out = model(**tokenizer(["AUGGCUAGCU"], return_tensors="pt"))
```""",
)

def registry(*heads: Head) -> dict[Kind, Head]:
    """The entries by `Kind`, refusing two that would collide: the same kind, a PaddleNLP class claimed
    twice (the config could not decide), or the same tensor marker in two kinds of the same tier unless
    exactly one of them is the official kind taken when the names fit several (`default_when_ambiguous`)."""
    by_kind: dict[Kind, Head] = {}
    for head in heads:
        if head.kind in by_kind:
            raise ValueError(f"two registry entries for the kind {head.name}")
        by_kind[head.kind] = head
    claimed = [name for head in heads for name in head.paddle_classes]
    if len(claimed) != len(set(claimed)):
        raise ValueError(f"two registry entries claim the PaddleNLP class(es) "
                         f"{sorted({name for name in claimed if claimed.count(name) > 1})}")
    sharing: dict[tuple[bool, str], dict[Kind, Head]] = {}
    for head in heads:
        for layout in head.layouts:
            sharing.setdefault((head.fallback, layout.marker), {})[head.kind] = head
    for (_, marker), kinds in sharing.items():
        if len(kinds) > 1 and sum(head.default_when_ambiguous for head in kinds.values()) != 1:
            raise ValueError(f"{', '.join(sorted(kind.value for kind in kinds))} are all recognised by {marker} and "
                             "none (or more than one) is the default: detection could not tell them apart")
    return by_kind


HEADS: dict[Kind, Head] = registry(MASKED_LM, SEQUENCE_CLASSIFIER, TOKEN_CLASSIFIER, ENCODER, RR_INTERACTION,
                                   STRUCTURE_MODEL)


def head_of(kind: Kind | str) -> Head:
    """The entry of `kind` (a `Kind` or the name conversion.json records). Raises ValueError for an unknown name."""
    return HEADS[Kind(kind)]


# RNAErnie's ad-hoc pre-training adds a type indicator over the 28 class tokens on [CLS]; those
# classes are not in the converted vocabulary and transformers has no such head.
IND_CLS = LeftOut("ind_cls", ("ind_cls.weight", "ind_cls.bias"),
                  "RNAErnie's ad-hoc type indicator over the 28 class tokens; its classes are not in the converted "
                  "vocabulary and transformers has no such head")
LEFT_OUT = (IND_CLS,)

def backbone_kind(keys: set[str]) -> Head | None:
    """The kind converted with `--backbone` whose own tensors these are (None: the checkpoint is no such kind)."""
    return next((head for head in HEADS.values() if head.backbone
                 and any(layout.marker in keys for layout in head.layouts)), None)


@dataclass(frozen=True)
class Detection:
    """The kind a checkpoint was converted as, and how that was decided."""

    head: Head
    layout: KeyLayout
    left_out: tuple[LeftOut, ...]
    decided_by: str  # a sentence for the summary, conversion.json and the card
    assumed: bool = False  # True when the names fit several kinds and the default was taken

    @property
    def left_out_keys(self) -> tuple[str, ...]:
        return tuple(key for extra in self.left_out for key in extra.keys)

    def mapping_plan(self, tensors: dict[str, np.ndarray], config: ErnieConfig, vocabulary: Vocabulary,
                     source: str) -> Plan:
        """The checked table of rows that maps this checkpoint (the writer and the verifier both follow it)."""
        return plan_mapping(tensors, self.layout, config, vocabulary, self.head.num_labels(tensors),
                            self.left_out_keys, source)


def detect_head(keys: set[str], config_architecture: str | None = None, override: str | None = None,
                source: str = "the checkpoint") -> Detection:
    """Decide the kind of a checkpoint from its tensor names, its config and `--head`."""
    if override is not None and override not in {kind.value for kind in HEADS}:
        raise ConversionError(f"--head {override!r} is not a known kind; use one of "
                              f"{', '.join(kind.value for kind in HEADS)}.")
    left_out = tuple(extra for extra in LEFT_OUT if any(key in keys for key in extra.keys))
    matches = [(head, layout) for head in HEADS.values() if not head.fallback
               for layout in head.layouts if layout.marker in keys]
    matches = matches or [(head, layout) for head in HEADS.values() if head.fallback
                          for layout in head.layouts if layout.marker in keys]
    if not matches:
        sample = ", ".join(sorted(keys)[:6]) or "no tensors"
        raise ConversionError(
            f"{source} does not look like an RNAErnie/ERNIE checkpoint (no word embeddings found; keys: {sample}); "
            f"pass a model_state.pdparams of one of: {', '.join(h.description for h in HEADS.values())}.")
    fitting = " or ".join(dict.fromkeys(head.description for head, _ in matches))
    if override is not None:
        chosen = [match for match in matches if match[0].name == override]
        if not chosen:
            raise ConversionError(f"--head {override} contradicts {source}: its tensor names are those of a {fitting}; "
                                  "drop --head or pass the right checkpoint.")
        return Detection(*chosen[0], left_out, f"--head {override} chose it")
    named = [match for match in matches if config_architecture in match[0].paddle_classes]
    if named:
        return Detection(*named[0], left_out, f"the config names {config_architecture}")
    if len({head.name for head, _ in matches}) == 1:
        return Detection(*matches[0], left_out, "the tensor names identify it")
    default = next(match for match in matches if match[0].default_when_ambiguous)
    others = ", ".join(f"--head {head.name}" for head, _ in matches if head is not default[0])
    return Detection(*default, left_out,
                     f"assumed: the tensor names fit a {fitting} alike and the config does not say which, so the "
                     f"official kind was taken; pass {others} for the other", assumed=True)


def resolve_config(checkpoint: Path, config: Path | None, tensors: dict[str, np.ndarray],
                   override: str | None = None) -> tuple[Path, str | None]:
    """The config file to read, and a sentence when it is not the user's: `--config`, else the one beside the
    checkpoint, else the kind's own default (`Head.default_config`), else the request for `--config`.
    `tensors`: the checkpoint, already read (a file that is not one is refused before any config is looked for)."""
    from convert.errors import ConfigError
    from convert.paddle_config import find_config_file

    if config:
        return Path(config), None
    try:
        return find_config_file(checkpoint), None
    except ConfigError as missing:
        try:
            head = detect_head(set(tensors), None, override, str(checkpoint)).head
        except ConversionError:
            raise missing from None  # the mapping reports what is wrong with the file itself
        if head.default_config is None:
            raise
        return head.default_config(tensors, checkpoint)
