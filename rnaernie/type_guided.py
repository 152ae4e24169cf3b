"""RNAErnie's type-guided ("two-stage") classification on converted folders, with stock transformers.

Stage one, `TypeIndicator`: the pre-trained masked LM reads `[CLS] seq [IND] <slot> [SEP]`. The
slot is an empty `[PAD]`: zero input and hidden from attention, as PaddleNLP treats `[PAD]`. The
MLM head's scores at the slot for the class tokens only, softmaxed, give each class a probability;
the top k are renormalised to sum 1, as the official code does.

Stage two, `TypeGuidedClassifier`: a classifier fine-tuned this way reads `[CLS] seq [IND] <class>
[SEP]` once for each of the indicator's top-k classes, and the k logit vectors are summed weighted
by the renormalised probabilities (the official `MajorityVoter`).

`[IND]` and the class tokens are not in the converted vocabulary: their rows come from the folder's
`type_guided.safetensors` and enter the stock model through `inputs_embeds`.

One deliberate difference: the official batch code writes `[IND]` at the end of each sequence
when the padded batch has room, and over the last nucleotides of the longest sequences when it has
not, so its result depends on batching. Here every sequence gets the layout with room, as if run
alone: at most 508 nucleotides, so the prompt fits the 512 positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rnaernie.classify import SequenceClassifier
from rnaernie.errors import InputError, ModelFolderError
from rnaernie.type_guided_rows import DECODER_CLASSES, SIDE_FILE, TypeGuidedRows, read_type_guided_rows

MAX_NUCLEOTIDES = 508  # [CLS] + 508 nt + [IND] + slot + [SEP] = 512 positions
DEFAULT_TOP_K = 3


@dataclass(frozen=True)
class TypePrediction:
    probabilities: dict[str, float]  # every class token, softmax over the class tokens
    top: list[tuple[str, float]]  # the k most likely, probabilities renormalised to sum 1
    truncated: bool = False  # the sequence was longer than the 508 nucleotides the prompt holds


def prompt_body(tokenizer, sequence: str) -> tuple[list[int], bool]:
    """The sequence's token ids without `[CLS]`/`[SEP]`, cut to the 508 nucleotides the prompt has room
    for, and whether it was cut."""
    ids = tokenizer(sequence, add_special_tokens=False)["input_ids"]
    return ids[:MAX_NUCLEOTIDES], len(ids) > MAX_NUCLEOTIDES


def _prompt_inputs(model, tokenizer, bodies: list[list[int]], ind_row, slot_rows: list):
    """`inputs_embeds` [B, L, H], `attention_mask` [B, L] and slot positions [B] for
    `[CLS] body [IND] <slot> [SEP]`, one row per body, padded on the right and masked.

    `slot_rows[i]` is the input row to put in the slot, or None for an empty `[PAD]` slot.
    """
    import torch

    device = model.device
    pad, cls, sep = tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id
    width = max(len(body) for body in bodies) + 4
    ids = torch.full((len(bodies), width), pad, dtype=torch.long)
    attention = torch.zeros((len(bodies), width), dtype=torch.long)
    for i, body in enumerate(bodies):
        ids[i, : len(body) + 4] = torch.tensor([cls, *body, pad, pad, sep])
        attention[i, : len(body) + 4] = 1
    slots = torch.tensor([len(body) + 2 for body in bodies])
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids.to(device))
        for i, slot in enumerate(slots.tolist()):
            embeds[i, slot - 1] = ind_row
            if slot_rows[i] is None:
                embeds[i, slot] = 0  # Paddle's padding_idx embeds [PAD] as zeros
                attention[i, slot] = 0  # and PaddleNLP hides [PAD] keys from attention
            else:
                embeds[i, slot] = slot_rows[i]
    return embeds, attention.to(device), slots.to(device)


def _check_rows(rows: TypeGuidedRows, model, where: str) -> None:
    if rows.hidden_size != model.config.hidden_size:
        raise ModelFolderError(f"{where}: {SIDE_FILE} has rows of size {rows.hidden_size} but the model's hidden size "
                               f"is {model.config.hidden_size}; the side file belongs to another model. Copy the "
                               "converted folder again.")


class TypeIndicator:
    """Stage one on a converted pre-trained (`BertForMaskedLM`) folder and its kept class-token rows."""

    def __init__(self, tokenizer, model, rows: TypeGuidedRows):
        where = model.config.name_or_path
        if "BertForMaskedLM" not in (getattr(model.config, "architectures", None) or []):
            raise ModelFolderError(f"{where} is not the pre-trained masked LM; the type indicator is the converted "
                                   "ErnieForMaskedLM checkpoint (the official release).")
        _check_rows(rows, model, where)
        self.tokenizer = tokenizer
        self.model = model
        self.rows = rows
        self._ind = rows.input_ind.to(model.device, model.dtype)
        self._decoder = rows.decoder_classes.to(model.device, model.dtype)
        self._bias = rows.decoder_bias.to(model.device, model.dtype)

    @classmethod
    def from_pretrained(cls, model: str, device: str = "auto", dtype: str = "float32") -> "TypeIndicator":
        from rnaernie.model import load

        rows = read_type_guided_rows(model)  # the cheap check first: no model load if the rows are missing
        if rows.decoder_classes is None:
            raise ModelFolderError(f"{model} is a fine-tuned model (its {SIDE_FILE} has no {DECODER_CLASSES} rows); "
                                   "the type indicator is the converted pre-trained ErnieForMaskedLM folder.")
        tokenizer, loaded = load(model, "AutoModelForMaskedLM", device, dtype)
        return cls(tokenizer, loaded, rows)

    @property
    def class_tokens(self) -> tuple[str, ...]:
        return self.rows.class_tokens

    def probabilities(self, sequences: Sequence[str]):
        """Class-token probabilities at the slot after `[IND]`, [len(sequences), N] (float32, CPU)."""
        return self._probabilities([prompt_body(self.tokenizer, s)[0] for s in sequences])

    def _probabilities(self, bodies: list[list[int]]):
        import torch

        embeds, attention, slots = _prompt_inputs(self.model, self.tokenizer, bodies, self._ind, [None] * len(bodies))
        with torch.no_grad():
            hidden = self.model.bert(inputs_embeds=embeds, attention_mask=attention,
                                     token_type_ids=torch.zeros_like(attention)).last_hidden_state
            at_slot = hidden[torch.arange(len(bodies), device=hidden.device), slots]
            transformed = self.model.cls.predictions.transform(at_slot)
            scores = transformed @ self._decoder.T + self._bias
        return torch.softmax(scores.float(), dim=-1).cpu()

    def predict(self, sequences: Sequence[str], top_k: int = DEFAULT_TOP_K) -> list[TypePrediction]:
        check_top_k(top_k, len(self.class_tokens))
        if not sequences:
            return []
        bodies, truncated = zip(*(prompt_body(self.tokenizer, s) for s in sequences))
        predictions = []
        for row, cut in zip(self._probabilities(list(bodies)), truncated):
            predictions.append(TypePrediction({t: float(p) for t, p in zip(self.class_tokens, row)},
                                              top_classes(row, self.class_tokens, top_k), cut))
        return predictions


def check_top_k(top_k: int, num_classes: int) -> None:
    if not 1 <= top_k <= num_classes:
        raise InputError(f"--top-k {top_k} is out of range; pass a number from 1 to {num_classes}.")


def top_classes(probabilities, class_tokens: Sequence[str], top_k: int) -> list[tuple[str, float]]:
    """The k most likely classes, their probabilities renormalised to sum 1 (as the official code does)."""
    import torch

    values, indices = torch.topk(probabilities, top_k)
    values = values / values.sum()
    return [(class_tokens[int(i)], float(v)) for v, i in zip(values, indices)]


class TypeGuidedClassifier(SequenceClassifier):
    """Stage two: a converted classifier fine-tuned with type guidance, and its kept `[IND]`/class rows."""

    def __init__(self, tokenizer, model, rows: TypeGuidedRows):
        super().__init__(tokenizer, model)
        _check_rows(rows, model, model.config.name_or_path)
        self.rows = rows
        self._ind = rows.input_ind.to(model.device, model.dtype)
        self._classes = rows.input_classes.to(model.device, model.dtype)

    @classmethod
    def from_pretrained(cls, model: str, device: str = "auto", dtype: str = "float32") -> "TypeGuidedClassifier":
        from rnaernie.model import load

        rows = read_type_guided_rows(model)
        tokenizer, loaded = load(model, "AutoModelForSequenceClassification", device, dtype)
        return cls(tokenizer, loaded, rows)

    def logits_given_types(self, sequence: str, class_tokens: Sequence[str]):
        """Logits [len(class_tokens), num_labels] for `[CLS] seq [IND] <class> [SEP]`, one row per class."""
        import torch

        unknown = [t for t in class_tokens if t not in self.rows.class_tokens]
        if unknown:
            raise ModelFolderError(f"{self.model.config.name_or_path}: its {SIDE_FILE} has no row for "
                                   f"{', '.join(unknown)}; the indicator and the classifier use different class "
                                   "tokens. Pass a classifier fine-tuned from the same pre-trained model.")
        body, _ = prompt_body(self.tokenizer, sequence)
        slot_rows = [self._classes[self.rows.class_index(t)] for t in class_tokens]
        embeds, attention, _ = _prompt_inputs(self.model, self.tokenizer, [body] * len(slot_rows), self._ind,
                                              slot_rows)
        with torch.no_grad():
            return self.model(inputs_embeds=embeds, attention_mask=attention,
                              token_type_ids=torch.zeros_like(attention)).logits.float().cpu()

    def two_stage_logits(self, sequence: str, prediction: TypePrediction):
        """The official ensemble: logits given each top class, weighted by its renormalised probability."""
        import torch

        names = [name for name, _ in prediction.top]
        weights = [p for _, p in prediction.top]
        per_type = self.logits_given_types(sequence, names)
        return torch.einsum("kc,k->c", per_type, torch.tensor(weights, dtype=per_type.dtype))


def classify_two_stage(indicator: TypeIndicator, classifier: TypeGuidedClassifier, sequences: Sequence[str],
                       top_k: int = DEFAULT_TOP_K):
    """Two-stage logits [len(sequences), num_labels] (float32, CPU)."""
    import torch

    predictions = indicator.predict(sequences, top_k)
    return torch.stack([classifier.two_stage_logits(s, p) for s, p in zip(sequences, predictions)])
