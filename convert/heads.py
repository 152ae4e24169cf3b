"""Every model kind the converter knows, one registry entry each.

An entry (`Head`) says everything about its kind in one place: how it is recognised (the tensor
names of each key layout, and the PaddleNLP class a config may name), the transformers class and
Auto class that load the result, its mapping rows, its Paddle reference head for the verifier,
what its logits are, its Hub pipeline tag and card usage, whether the long-sequence mode
applies, and its part in type-guided classification with the dropped rows it keeps aside for it. The pipeline, the mapper, the verifier and the card read these entries; adding a kind
means adding an entry here (and its tests).

`detect_head` decides the kind of a checkpoint and says how it decided: an explicit `--head`, the
config's architecture, the tensor names, or, where the names fit several kinds and the config is
silent (the official legacy files), the official kind, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from convert.errors import ConversionError
from convert.mapping import ENCODER_ROWS, TYPE_GUIDED_INPUT_ROWS, Row, Transform, prefixed
from rnaernie.type_guided_rows import DECODER_BIAS_CLASSES, DECODER_CLASSES

_T, _C = Transform.TRANSPOSE, Transform.COPY

# Official class names (RNAErnie run_seq_cls.py): nRC has 13 classes; lncRNA_H / lncRNA_M use lnc, pc.
NRC_LABELS = ("5S_rRNA", "5_8S_rRNA", "tRNA", "ribozyme", "CD-box", "Intron_gpI", "Intron_gpII", "riboswitch",
              "IRES", "HACA-box", "scaRNA", "leader", "miRNA")
LNCRNA_LABELS = ("lnc", "pc")


@dataclass(frozen=True)
class KeyLayout:
    """One way a kind's tensors are named in a `.pdparams` file."""

    name: str  # recorded in conversion.json, e.g. "mlm-2.4"
    description: str  # what was found, in words
    marker: str  # a tensor name present in this layout (with `source_prefix` where it applies)
    rows: tuple[Row, ...]
    source_prefix: str  # "ernie." for task models, "" for a bare ErnieModel
    tied_copies: tuple[tuple[str, str], ...] = ()  # (alias Paddle key, Paddle key it must equal)
    # rows the converted vocabulary drops, kept aside in the type-guided side file
    type_guided_rows: tuple[Row, ...] = ()


@dataclass(frozen=True)
class Head:
    name: str  # the value of --head, e.g. "masked-lm"
    description: str  # in words, for the summary and the card
    paddle_classes: tuple[str, ...]  # PaddleNLP classes a config's architectures / init_class may name
    architecture: str  # transformers class written to config.json
    auto_class: str  # transformers Auto class that loads the folder
    layouts: tuple[KeyLayout, ...]
    # "vocabulary": per-position logits over the vocabulary; "sequence-labels": [B, C];
    # "token-labels": [B, L, C]; None: no logits (bare encoder)
    logits: str | None
    pipeline_tag: str
    usage: str  # card snippet; MODEL stands for the repository id or path
    # builds the Paddle reference head: (tensors, config, layout) -> callable(states, pooled) -> logits
    reference: Callable | None = None
    default_labels: Callable[[int], tuple[str, ...] | None] = lambda num_labels: None
    long_sequence: bool = False  # the official 512-token chunked mode applies
    # its part in type-guided classification: "indicator" (names likely classes after [IND]),
    # "classifier" (reads [IND] and a class token as input), or None
    type_guided: str | None = None
    fallback: bool = False  # recognised only when no other kind's marker is present
    default_when_ambiguous: bool = False  # the official kind, chosen when the names fit several


@dataclass(frozen=True)
class LeftOut:
    """Tensors known but deliberately not converted, and why (said in the summary and the card)."""

    name: str
    keys: tuple[str, ...]
    reason: str


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
    return KeyLayout(name, description, decoder_weight, rows, "ernie.", tied, type_guided)


def _mlm_reference(tensors, config, layout):
    from convert.paddle_reference import masked_lm_head

    decoder_weight, decoder_bias = (row.source for row in layout.rows[-3:-1])
    return masked_lm_head(tensors, config, decoder_weight, decoder_bias)


MASKED_LM = Head(
    name="masked-lm",
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
    logits="vocabulary",
    pipeline_tag="fill-mask",
    reference=_mlm_reference,
    type_guided="indicator",
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

_CLASSIFIER_ROWS = (Row("classifier.weight", "classifier.weight", ("H", "C"), _T),
                    Row("classifier.bias", "classifier.bias", ("C",), _C))
_CLASSIFIER_LAYOUT = KeyLayout("classifier", "ernie.-prefixed encoder and classifier.weight/bias", "classifier.weight",
                               prefixed(ENCODER_ROWS, "ernie.") + _CLASSIFIER_ROWS, "ernie.",
                               type_guided_rows=prefixed(TYPE_GUIDED_INPUT_ROWS, "ernie."))


def _official_labels(num_labels: int) -> tuple[str, ...] | None:
    return {len(NRC_LABELS): NRC_LABELS, len(LNCRNA_LABELS): LNCRNA_LABELS}.get(num_labels)


def _sequence_classifier_reference(tensors, config, layout):
    from convert.paddle_reference import classifier_head

    return classifier_head(tensors, on="pooled")


def _token_classifier_reference(tensors, config, layout):
    from convert.paddle_reference import classifier_head

    return classifier_head(tensors, on="tokens")


SEQUENCE_CLASSIFIER = Head(
    name="sequence-classifier",
    description="sequence classifier (ErnieForSequenceClassification)",
    paddle_classes=("ErnieForSequenceClassification",),
    architecture="BertForSequenceClassification",
    auto_class="AutoModelForSequenceClassification",
    layouts=(_CLASSIFIER_LAYOUT,),
    logits="sequence-labels",
    pipeline_tag="text-classification",
    reference=_sequence_classifier_reference,
    default_labels=_official_labels,
    long_sequence=True,
    type_guided="classifier",
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
    name="token-classifier",
    description="token classifier (ErnieForTokenClassification)",
    paddle_classes=("ErnieForTokenClassification",),
    architecture="BertForTokenClassification",
    auto_class="AutoModelForTokenClassification",
    layouts=(_CLASSIFIER_LAYOUT,),
    logits="token-labels",
    pipeline_tag="token-classification",
    reference=_token_classifier_reference,
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
    name="encoder",
    description="bare encoder (ErnieModel)",
    paddle_classes=("ErnieModel",),
    architecture="BertModel",
    auto_class="AutoModel",
    layouts=(
        KeyLayout("encoder", "unprefixed keys", "embeddings.word_embeddings.weight", ENCODER_ROWS, "",
                  type_guided_rows=TYPE_GUIDED_INPUT_ROWS),
        KeyLayout("encoder-prefixed", "ernie.-prefixed keys", "ernie.embeddings.word_embeddings.weight",
                  prefixed(ENCODER_ROWS, "ernie."), "ernie.", type_guided_rows=prefixed(TYPE_GUIDED_INPUT_ROWS, "ernie.")),
    ),
    logits=None,
    pipeline_tag="feature-extraction",
    fallback=True,  # every task model has the encoder's tensors too
    usage="""```python
from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(MODEL)
model = AutoModel.from_pretrained(MODEL)
out = model(**tokenizer(["AUGGCUAGCU"], return_tensors="pt"))
```""",
)

HEADS: dict[str, Head] = {head.name: head for head in (MASKED_LM, SEQUENCE_CLASSIFIER, TOKEN_CLASSIFIER, ENCODER)}
BY_ARCHITECTURE: dict[str, Head] = {head.architecture: head for head in HEADS.values()}

# RNAErnie's ad-hoc pre-training adds a type indicator over the 28 class tokens on [CLS]; those
# classes are not in the converted vocabulary and transformers has no such head.
IND_CLS = LeftOut("ind_cls", ("ind_cls.weight", "ind_cls.bias"),
                  "RNAErnie's ad-hoc type indicator over the 28 class tokens; its classes are not in the converted "
                  "vocabulary and transformers has no such head")
LEFT_OUT = (IND_CLS,)


@dataclass(frozen=True)
class Detection:
    """The kind a checkpoint was converted as, and how that was decided."""

    head: Head
    layout: KeyLayout
    left_out: tuple[LeftOut, ...]
    decided_by: str  # a sentence for the summary, conversion.json and the card
    assumed: bool = False  # True when the names fit several kinds and the default was taken


def detect_head(keys: set[str], config_architecture: str | None = None, override: str | None = None,
                source: str = "the checkpoint") -> Detection:
    """Decide the kind of a checkpoint from its tensor names, its config and `--head`."""
    if override is not None and override not in HEADS:
        raise ConversionError(f"--head {override!r} is not a known kind; use one of {', '.join(HEADS)}.")
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
