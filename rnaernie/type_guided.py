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

One deliberate difference: the official nRC pipeline pads every batch to 512 positions, so a
sequence of up to 508 nucleotides always gets the layout with room, whatever it is batched with,
but a longer one gets `[IND]` written over its own nucleotide at position 509. Here every sequence
is cut to its first 508 nucleotides, so the prompt always has room in the 512 positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rnaernie.classify import SequenceClassifier, load_classifier
from rnaernie.errors import InputError, ModelFolderError
from rnaernie.sequences import MAX_NUCLEOTIDES
from rnaernie.type_guided_rows import DECODER_CLASSES, SIDE_FILE, TypeGuidedRows, read_type_guided_rows

MAX_PROMPT_NUCLEOTIDES = MAX_NUCLEOTIDES - 2  # [CLS] + 508 nt + [IND] + slot + [SEP] = 512 positions
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
    return ids[:MAX_PROMPT_NUCLEOTIDES], len(ids) > MAX_PROMPT_NUCLEOTIDES


def prompt_inputs(model, tokenizer, bodies: list[list[int]], ind_row, slot_rows: list):
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


def _on(model, rows):
    """Kept rows as a tensor on the model's device, in its dtype."""
    import torch

    return torch.from_numpy(rows).to(model.device, model.dtype)


def _ind_row(rows: TypeGuidedRows, model):
    """The `[IND]` row on the model's device, once the rows are known to belong to `model` (same hidden size)."""
    if rows.hidden_size != model.config.hidden_size:
        raise ModelFolderError(f"{model.config.name_or_path}: {SIDE_FILE} has rows of size {rows.hidden_size} but the "
                               f"model's hidden size is {model.config.hidden_size}; the side file belongs to another "
                               "model. Copy the converted folder again.")
    return _on(model, rows.input_ind)


class TypeIndicator:
    """Stage one on a converted pre-trained (`BertForMaskedLM`) folder and its kept class-token rows."""

    def __init__(self, tokenizer, model, rows: TypeGuidedRows):
        check_indicator(model.config.name_or_path, getattr(model.config, "architectures", None) or [])
        self._ind = _ind_row(rows, model)
        self.tokenizer = tokenizer
        self.model = model
        self.rows = rows
        self._decoder = _on(model, rows.decoder_classes)
        self._bias = _on(model, rows.decoder_bias)

    @classmethod
    def from_pretrained(cls, model: str, device: str = "auto", dtype: str = "float32") -> "TypeIndicator":
        from rnaernie.model import declared_architectures, load

        rows = read_type_guided_rows(model)  # the cheap checks first: nothing is loaded for a wrong folder
        if rows.decoder_classes is None:
            raise ModelFolderError(f"{model} is a fine-tuned model (its {SIDE_FILE} has no {DECODER_CLASSES} rows); "
                                   "the type indicator is the converted pre-trained ErnieForMaskedLM folder.")
        declared = declared_architectures(model)
        if declared is not None:
            check_indicator(str(model), declared)
        tokenizer, loaded = load(model, "AutoModelForMaskedLM", device, dtype)
        return cls(tokenizer, loaded, rows)

    @property
    def class_tokens(self) -> tuple[str, ...]:
        return self.rows.class_tokens

    def probabilities(self, sequences: Sequence[str]):
        """Class-token probabilities at the slot after `[IND]`, [len(sequences), N] (float32, CPU)."""
        return self.probabilities_of_ids([prompt_body(self.tokenizer, s)[0] for s in sequences])

    def probabilities_of_ids(self, bodies: list[list[int]]):
        """As `probabilities`, from each sequence's token ids (no `[CLS]`/`[SEP]`, at most 508)."""
        import torch

        embeds, attention, slots = prompt_inputs(self.model, self.tokenizer, bodies, self._ind, [None] * len(bodies))
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
        for row, cut in zip(self.probabilities_of_ids(list(bodies)), truncated):
            predictions.append(TypePrediction({t: float(p) for t, p in zip(self.class_tokens, row)},
                                              top_classes(row, self.class_tokens, top_k), cut))
        return predictions


def check_indicator(where: str, architectures: list[str]) -> None:
    if "BertForMaskedLM" not in architectures:
        raise ModelFolderError(f"{where} is not the pre-trained masked LM; the type indicator is the converted "
                               "ErnieForMaskedLM checkpoint (the official release).")


def check_top_k(top_k: int, num_classes: int | None = None) -> None:
    """Refuse a k outside 1..num_classes (only k < 1 while the number of classes is not known yet)."""
    if top_k < 1 or (num_classes is not None and top_k > num_classes):
        allowed = f"a number from 1 to {num_classes}" if num_classes is not None else "1 or more"
        raise InputError(f"--top-k {top_k} is out of range; pass {allowed}.")


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
        self._ind = _ind_row(rows, model)
        self.rows = rows
        self._classes = _on(model, rows.input_classes)

    @classmethod
    def from_pretrained(cls, model: str, device: str = "auto", dtype: str = "float32") -> "TypeGuidedClassifier":
        rows = read_type_guided_rows(model)
        return cls(*load_classifier(model, device, dtype), rows)

    def logits_given_types(self, sequences: Sequence[str], class_tokens: Sequence[Sequence[str]]):
        """Logits [len(sequences), k, num_labels]: for each sequence, `[CLS] seq [IND] <class> [SEP]` with each
        of its k classes (`class_tokens[i]` lists sequence i's classes; every sequence has the same k)."""
        import torch

        unknown = sorted({t for tokens in class_tokens for t in tokens} - set(self.rows.class_tokens))
        if unknown:
            raise ModelFolderError(f"{self.model.config.name_or_path}: its {SIDE_FILE} has no row for "
                                   f"{', '.join(unknown)}; the indicator and the classifier use different class "
                                   "tokens. Pass a classifier fine-tuned from the same pre-trained model.")
        bodies, slot_rows = [], []
        for sequence, tokens in zip(sequences, class_tokens):
            body, _ = prompt_body(self.tokenizer, sequence)
            bodies += [body] * len(tokens)
            slot_rows += [self._classes[self.rows.class_index(t)] for t in tokens]
        embeds, attention, _ = prompt_inputs(self.model, self.tokenizer, bodies, self._ind, slot_rows)
        with torch.no_grad():
            logits = self.model(inputs_embeds=embeds, attention_mask=attention,
                                token_type_ids=torch.zeros_like(attention)).logits.float().cpu()
        return logits.reshape(len(sequences), -1, logits.shape[-1])

    def two_stage_logits(self, sequences: Sequence[str], predictions: Sequence[TypePrediction]):
        """The official ensemble (`MajorityVoter`): for each sequence, the logits given each of its top classes,
        weighted by the classes' renormalised probabilities. [len(sequences), num_labels] (float32, CPU)."""
        import torch

        per_type = self.logits_given_types(sequences, [[name for name, _ in p.top] for p in predictions])
        weights = torch.tensor([[p for _, p in prediction.top] for prediction in predictions], dtype=per_type.dtype)
        return torch.einsum("ijk,ij->ik", per_type, weights)

