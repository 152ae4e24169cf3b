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

`long="chunk"` is the lncRNA classifiers' layout instead (`LongSeqClsCollator`, then
`get_input_ids_ind_topk` on its 512-token chunks, which never have room): each chunk of
`rnaernie.long_sequence.chunk_input_ids` gets `[IND]` over its position 509 and the slot at 510
(511 is the chunk's own `[SEP]`). For the indicator the slot keeps the chunk's own token (a
nucleotide, or an empty `[PAD]` in a short last chunk); its class scores are the maximum over the
chunks, before the softmax. The classifier reads every chunk with each kept class in the slot and
averages its logits over chunks (`ErnieForLongSequenceClassification`), grouped as the official code
groups them (`guided_logits`). A record has its own number of chunks (at most 6), whatever it is
batched with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rnaernie.classify import SequenceClassifier, load_classifier
from rnaernie.errors import InputError, ModelFolderError
from rnaernie.long_sequence import CHUNK, MAX_CHUNKED_NUCLEOTIDES, chunk_input_ids
from rnaernie.sequences import MAX_NUCLEOTIDES, LongMode
from rnaernie.type_guided_rows import DECODER_CLASSES, SIDE_FILE, TypeGuidedRows, read_type_guided_rows

MAX_PROMPT_NUCLEOTIDES = MAX_NUCLEOTIDES - 2  # [CLS] + 508 nt + [IND] + slot + [SEP] = 512 positions
CHUNK_SLOT = CHUNK - 2  # a 512-token chunk (seq_len 512 > 510): [IND] at 509, the slot at 510, [SEP] at 511
DEFAULT_TOP_K = 3
LONG_MODES = (LongMode.TRUNCATE, LongMode.CHUNK)
PROMPT_ROWS = 48  # prompt rows (of at most 512 tokens) per forward pass: 16 short records with k = 3


@dataclass(frozen=True)
class TypePrediction:
    probabilities: dict[str, float]  # every class token, softmax over the class tokens
    top: list[tuple[str, float]]  # the k most likely, probabilities renormalised to sum 1
    truncated: bool = False  # the sequence was longer than the prompt holds (508 nt; chunks: 3060)


@dataclass(frozen=True)
class Prompt:
    """One record's prompt rows, `[IND]` and the slot not filled in yet: `[CLS] body [PAD] [PAD] [SEP]`
    (truncate), or its 512-token chunks (chunk); the slot position is the same in every row."""

    rows: tuple[tuple[int, ...], ...]
    slot: int
    truncated: bool  # the record was longer than the layout holds


def make_prompt(tokenizer, ids: list[int], long: LongMode = LongMode.TRUNCATE) -> Prompt:
    """The prompt of a sequence's token ids (no `[CLS]`/`[SEP]`), in the `long` layout."""
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    if long is LongMode.CHUNK:
        chunks = chunk_input_ids([cls, *ids, sep], cls, sep, pad)
        return Prompt(tuple(map(tuple, chunks)), CHUNK_SLOT, len(ids) > MAX_CHUNKED_NUCLEOTIDES)
    body = ids[:MAX_PROMPT_NUCLEOTIDES]
    return Prompt(((cls, *body, pad, pad, sep),), len(body) + 2, len(ids) > MAX_PROMPT_NUCLEOTIDES)


def prompt_of(tokenizer, sequence: str, long: LongMode = LongMode.TRUNCATE) -> Prompt:
    return make_prompt(tokenizer, tokenizer(sequence, add_special_tokens=False)["input_ids"], long)


def prompt_batch(prompts, pad_id: int):
    """input_ids [R, L] (every prompt row, padded on the right with [PAD]), slot positions [R] and the index of
    the prompt each row belongs to [R]."""
    import torch

    rows = [(row, prompt.slot, owner) for owner, prompt in enumerate(prompts) for row in prompt.rows]
    input_ids = torch.full((len(rows), max(len(row) for row, _, _ in rows)), pad_id, dtype=torch.long)
    for i, (row, _, _) in enumerate(rows):
        input_ids[i, :len(row)] = torch.tensor(row)
    return input_ids, torch.tensor([slot for _, slot, _ in rows]), torch.tensor([owner for _, _, owner in rows])


def prompt_inputs(model, input_ids, slots, ind_row, slot_rows, pad_id: int):
    """`inputs_embeds` [R, L, H] and `attention_mask` [R, L] of prompt rows: `[IND]` at `slots - 1` and
    `slot_rows` [R, H] at `slots`, or, with `slot_rows` None, the slot keeps its own token.

    [PAD] is hidden from attention (PaddleNLP masks it) and embeds as zeros (the converter zeroes its row, as
    Paddle's padding_idx does), which matters for an empty slot: the masked LM reads its output there.
    Differentiable in the rows (training).
    """
    import torch

    n = torch.arange(len(input_ids), device=input_ids.device)
    attention = (input_ids != pad_id).long()
    attention[n, slots - 1] = 1
    embeds = model.get_input_embeddings()(input_ids)
    embeds = embeds.index_put((n, slots - 1), ind_row.to(embeds.dtype).expand(len(n), -1))
    if slot_rows is not None:
        attention[n, slots] = 1
        embeds = embeds.index_put((n, slots), slot_rows.to(embeds.dtype))
    return embeds, attention


def record_groups(prompts, rows_each: int = 1):
    """Consecutive slices of `prompts` whose rows (times `rows_each` per row) fill at most one forward pass."""
    start, used = 0, 0
    for i, prompt in enumerate(prompts):
        rows = len(prompt.rows) * rows_each
        if i > start and used + rows > PROMPT_ROWS:
            yield slice(start, i)
            start, used = i, 0
        used += rows
    if start < len(prompts):
        yield slice(start, len(prompts))


def guided_logits(classifier, input_ids, slots, owners, top_classes, ind_row, class_rows, pad_id: int):
    """Per-type logits [B, k, C] of prompt rows (`prompt_batch`, a record's rows consecutive): each row read
    with each of its record's k classes (`top_classes` [B, k], indices into `class_rows`) in the slot, and
    averaged in groups as the official long path averages them (`ErnieForLongSequenceClassification`).

    A record's R·k prompts, in (chunk, class) order, are averaged in k consecutive groups of R: the official
    `get_input_ids_ind_topk` reshapes its [record·chunk, class] prompts straight to [record, class, chunk]
    without moving the axes. With one row (every truncate record) group j is class j; with several chunks
    and k > 1, group j mixes chunks read with different classes (with 2 chunks and k = 3: chunk 1 with
    classes 1 and 2, then chunk 1 with class 3 and chunk 2 with class 1, ...). The lncRNA classifiers were
    trained and evaluated that way, so it is kept (docs/type-guided-training.md)."""
    import torch

    records, k = top_classes.shape
    ids, slot = input_ids.repeat_interleave(k, dim=0), slots.repeat_interleave(k)
    embeds, attention = prompt_inputs(classifier, ids, slot, ind_row, class_rows[top_classes[owners].reshape(-1)],
                                      pad_id)
    logits = classifier(inputs_embeds=embeds, attention_mask=attention,
                        token_type_ids=torch.zeros_like(attention)).logits  # [R·k, C], (row, class) order
    rows_of = torch.bincount(owners, minlength=records)  # each record's rows (chunks)
    owner = owners.repeat_interleave(k)  # each logit row's record
    first = (torch.cumsum(rows_of, 0) - rows_of)[owner] * k  # the record's first logit row
    group = (torch.arange(len(owner), device=owner.device) - first) // rows_of[owner]
    summed = logits.new_zeros((records * k, logits.shape[-1])).index_add(0, owner * k + group, logits)
    return (summed / rows_of.repeat_interleave(k).to(summed.dtype)[:, None]).reshape(records, k, -1)


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

    def probabilities(self, sequences: Sequence[str], long: str = "truncate"):
        """Class-token probabilities at the slot after `[IND]`, [len(sequences), N] (float32, CPU)."""
        mode = LongMode.parse(long, LONG_MODES)
        return self.probabilities_of_prompts([prompt_of(self.tokenizer, s, mode) for s in sequences])

    def probabilities_of_prompts(self, prompts: Sequence[Prompt]):
        """As `probabilities`, of prompts (`make_prompt`): the class scores' maximum over a prompt's rows."""
        import torch

        parts = []
        for group in record_groups(prompts):
            ids, slots, owners = prompt_batch(prompts[group], self.tokenizer.pad_token_id)
            ids, slots = ids.to(self.model.device), slots.to(self.model.device)
            with torch.no_grad():
                embeds, attention = prompt_inputs(self.model, ids, slots, self._ind, None, self.tokenizer.pad_token_id)
                hidden = self.model.bert(inputs_embeds=embeds, attention_mask=attention,
                                         token_type_ids=torch.zeros_like(attention)).last_hidden_state
                at_slot = hidden[torch.arange(len(ids), device=hidden.device), slots]
                scores = (self.model.cls.predictions.transform(at_slot) @ self._decoder.T + self._bias).float().cpu()
            counts = torch.bincount(owners).tolist()
            parts += [chunks.max(dim=0).values for chunks in scores.split(counts)]
        return torch.softmax(torch.stack(parts), dim=-1)

    def predict(self, sequences: Sequence[str], top_k: int = DEFAULT_TOP_K, long: str = "truncate"
                ) -> list[TypePrediction]:
        check_top_k(top_k, len(self.class_tokens))
        mode = LongMode.parse(long, LONG_MODES)
        if not sequences:
            return []
        prompts = [prompt_of(self.tokenizer, s, mode) for s in sequences]
        predictions = []
        for row, prompt in zip(self.probabilities_of_prompts(prompts), prompts):
            predictions.append(TypePrediction({t: float(p) for t, p in zip(self.class_tokens, row)},
                                              top_classes(row, self.class_tokens, top_k), prompt.truncated))
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


def renormalised_top_k(probabilities, top_k: int):
    """(probabilities, indices) of the k most likely classes along the last axis, the probabilities renormalised
    to sum 1 (as the official code does)."""
    import torch

    values, indices = torch.topk(probabilities, top_k, dim=-1)
    return values / values.sum(dim=-1, keepdim=True), indices


def top_classes(probabilities, class_tokens: Sequence[str], top_k: int) -> list[tuple[str, float]]:
    """The k most likely classes of one probability row, by name, renormalised (`renormalised_top_k`)."""
    values, indices = renormalised_top_k(probabilities, top_k)
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

    def logits_given_types(self, sequences: Sequence[str], class_tokens: Sequence[Sequence[str]],
                           long: str = "truncate"):
        """Logits [len(sequences), k, num_labels]: for each sequence, its prompt with each of its k classes in
        the slot (`class_tokens[i]` lists sequence i's classes; every sequence has the same k)."""
        import torch

        unknown = sorted({t for tokens in class_tokens for t in tokens} - set(self.rows.class_tokens))
        if unknown:
            raise ModelFolderError(f"{self.model.config.name_or_path}: its {SIDE_FILE} has no row for "
                                   f"{', '.join(unknown)}; the indicator and the classifier use different class "
                                   "tokens. Pass a classifier fine-tuned from the same pre-trained model.")
        mode = LongMode.parse(long, LONG_MODES)
        prompts = [prompt_of(self.tokenizer, s, mode) for s in sequences]
        classes = torch.tensor([[self.rows.class_index(t) for t in tokens] for tokens in class_tokens])
        parts = []
        for group in record_groups(prompts, classes.shape[1]):
            ids, slots, owners = (t.to(self.model.device) for t in prompt_batch(prompts[group],
                                                                                self.tokenizer.pad_token_id))
            with torch.no_grad():
                parts.append(guided_logits(self.model, ids, slots, owners, classes[group].to(self.model.device),
                                           self._ind, self._classes, self.tokenizer.pad_token_id).float().cpu())
        return torch.cat(parts)

    def two_stage_logits(self, sequences: Sequence[str], predictions: Sequence[TypePrediction], long: str = "truncate"):
        """The official ensemble (`MajorityVoter`): for each sequence, the logits given each of its top classes,
        weighted by the classes' renormalised probabilities. [len(sequences), num_labels] (float32, CPU)."""
        import torch

        per_type = self.logits_given_types(sequences, [[name for name, _ in p.top] for p in predictions], long)
        weights = torch.tensor([[p for _, p in prediction.top] for prediction in predictions], dtype=per_type.dtype)
        return torch.einsum("ijk,ij->ik", per_type, weights)
