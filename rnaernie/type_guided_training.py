"""Type-guided fine-tuning, RNAErnie's way: `rnaernie train MODEL DATA -o OUT --task sequence --type-guided IND`.

The official trainer (`SeqClsTrainer.train` with `--two_stage`) does, for each batch:
1. the frozen pre-trained masked LM (the indicator) reads `[CLS] seq [IND] <slot> [SEP]`; its scores
   at the slot over the class tokens, softmaxed, give the top k classes, renormalised to sum 1;
2. the classifier being trained reads `[CLS] seq [IND] <class> [SEP]` once per kept class;
3. the k logit vectors are summed weighted by those probabilities (`MajorityVoter`) and the loss is the
   plain cross-entropy of that sum (not `SeqClsLoss`'s `topk_probs` branch, which it never calls);
   evaluation takes the argmax of the same sum.

Here the indicator runs once, in eval mode, before training (`guided_examples`): frozen and without
dropout, its top-k of a record never changes, so every epoch would recompute the same numbers. The
classifier is a stock `BertForSequenceClassification`; its `[IND]` and class-token input rows (kept
in `type_guided.safetensors` beside a vocabulary without them) are trainable parameters of
`TypeGuidedSequenceClassifier` and are written back in the same format beside the trained model.
Sequences are cut to 508 nucleotides, so the prompt fits 512 positions (the layout of
`rnaernie classify --two-stage`); with `--long chunk`, the lncRNA layout instead (see
`rnaernie.type_guided`): the indicator's class scores are the maximum over a record's 512-token
chunks, and the classifier's logits for each kept class the mean over them, so one step runs
B·k·chunks rows. The optimiser decays every parameter, as Paddle's AdamW does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rnaernie.errors import InputError, ModelFolderError
from rnaernie.long_sequence import MAX_CHUNKED_NUCLEOTIDES
from rnaernie.sequences import MAX_NUCLEOTIDES, LongMode
from rnaernie.type_guided import (LONG_MODES, Prompt, check_indicator, check_top_k, guided_logits, make_prompt,
                                  prompt_batch)
from rnaernie.type_guided_rows import (DECODER_CLASSES, INPUT_CLASSES, INPUT_IND, SIDE_FILE, TypeGuidedRows,
                                       read_type_guided_rows, side_file_metadata)

# training.json's history: the official objective and the two-stage accuracy on --eval data are `loss` and
# `accuracy` (the names the issue and the official logs use); the training loss becomes `train_loss`
HISTORY_NAMES = {"loss": "train_loss", "eval_loss": "loss", "eval_accuracy": "accuracy"}


@dataclass(frozen=True)
class GuidedExample:
    """One labelled record with its prompt (one row, or its chunks) and the indicator's top-k classes."""

    id: str
    input_ids: list[int]  # the record's token ids as read ([CLS] ... [SEP]), which the fingerprint digests
    prompt: Prompt
    label: str
    top_classes: tuple[int, ...]  # indices into the class tokens, most likely first
    top_probabilities: tuple[float, ...]  # renormalised to sum 1
    pairs: tuple = ()  # (rnaernie.training_data.fingerprint reads it)


def build(settings, load_or_refuse):
    """(model, tokenizer, training examples, evaluation examples, extras) for `rnaernie.training.train`;
    `load_or_refuse(folder, loader, **options)` loads or raises one `ModelFolderError` line."""
    from rnaernie.model import declared_architectures

    indicator_rows = _indicator_rows(settings.type_guided)
    check_top_k(settings.top_k, len(indicator_rows.class_tokens))
    model_rows = read_type_guided_rows(settings.model)
    if model_rows.class_tokens != indicator_rows.class_tokens:
        raise ModelFolderError(f"{settings.model} and the indicator {settings.type_guided} have different class "
                               f"tokens in their {SIDE_FILE}; pass a MODEL converted from the same release.")
    starting_labels = None
    if "BertForSequenceClassification" in (declared_architectures(settings.model) or []):
        starting_labels = _id2label(settings.model)

    import transformers

    from rnaernie.training_data import sequence_examples

    long = LongMode.parse(settings.long, LONG_MODES)
    longest = MAX_CHUNKED_NUCLEOTIDES if long is LongMode.CHUNK else MAX_NUCLEOTIDES
    tokenizer = load_or_refuse(settings.model, transformers.AutoTokenizer.from_pretrained)
    train_records = sequence_examples(settings.data, tokenizer, longest)
    eval_records = sequence_examples(settings.eval_data, tokenizer, longest) if settings.eval_data else []
    labels = starting_labels or list(dict.fromkeys(e.label for e in train_records))
    for path, records, known in ((settings.data, train_records, starting_labels),
                                 (settings.eval_data, eval_records, labels)):
        for record in records:
            if known is not None and record.label not in known:
                whose = f"the classifier {settings.model}" if known is starting_labels else "the training data"
                raise InputError(f"{path}: record {record.id!r} has label {record.label!r}, which {whose} does not "
                                 f"have; its labels are {', '.join(known)}.")
    label2id = {label: i for i, label in enumerate(labels)}
    model = load_or_refuse(settings.model, transformers.AutoModelForSequenceClassification.from_pretrained,
                            num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id,
                            ignore_mismatched_sizes=True)  # a pre-trained folder gets a new classification layer
    train_set, eval_set = guided_examples(settings.type_guided, [train_records, eval_records], settings.top_k,
                                          settings.device, long)
    wrapped = TypeGuidedSequenceClassifier(model, model_rows)

    def accuracy(prediction) -> dict:
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    return wrapped, tokenizer, train_set, eval_set, {
        "collator": GuidedCollator(tokenizer, label2id), "compute_metrics": accuracy, "labels": labels,
        "trainer_class": _trainer_class(), "history_names": HISTORY_NAMES}


def _indicator_rows(indicator: str) -> TypeGuidedRows:
    """The indicator's kept rows, once it is known to be a converted pre-trained masked LM (cheap checks)."""
    from rnaernie.model import declared_architectures, resolve_model

    resolve_model(indicator)
    declared = declared_architectures(indicator)
    if declared is not None:
        check_indicator(f"--type-guided {indicator}", declared)
    rows = read_type_guided_rows(indicator)
    if rows.decoder_classes is None:
        raise ModelFolderError(f"--type-guided {indicator} is a fine-tuned model (its {SIDE_FILE} has no "
                               f"{DECODER_CLASSES} rows); the indicator is the converted pre-trained ErnieForMaskedLM "
                               "folder.")
    return rows


def _id2label(model: str) -> list[str]:
    import json

    config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    return [str(id2label[str(i)]) for i in range(len(id2label))]


def guided_examples(indicator: str, record_sets: list[list], top_k: int, device: str,
                    long: LongMode = LongMode.TRUNCATE) -> list[list[GuidedExample]]:
    """Each set of `rnaernie.training_data.Example`s with its prompt in the `long` layout and the indicator's
    top-k classes (eval mode, no dropout)."""
    from rnaernie.type_guided import TypeIndicator, renormalised_top_k

    model = TypeIndicator.from_pretrained(indicator, device)
    guided = []
    for records in record_sets:
        prompts = [make_prompt(model.tokenizer, record.input_ids[1:-1], long) for record in records]
        if not prompts:
            guided.append([])
            continue
        values, indices = renormalised_top_k(model.probabilities_of_prompts(prompts), top_k)  # batched inside
        guided.append([GuidedExample(record.id, record.input_ids, prompt, record.label, tuple(i), tuple(p))
                       for record, prompt, p, i in zip(records, prompts, values.tolist(), indices.tolist())])
    return guided


class GuidedCollator:
    """Every prompt row of the batch (`[IND]` and the slot left for the model to fill in), its slot position and
    record, the records' top-k classes and probabilities, and their label ids."""

    def __init__(self, tokenizer, label2id: dict[str, int]):
        self.pad = tokenizer.pad_token_id
        self.label2id = label2id

    def __call__(self, examples: list[GuidedExample]) -> dict:
        input_ids, slots, owners = prompt_batch([e.prompt for e in examples], self.pad)
        return {"input_ids": input_ids, "slots": slots, "owners": owners,
                "top_classes": torch.tensor([e.top_classes for e in examples]),
                "top_probabilities": torch.tensor([e.top_probabilities for e in examples], dtype=torch.float32),
                "labels": torch.tensor([self.label2id[e.label] for e in examples])}


class TypeGuidedSequenceClassifier(torch.nn.Module):
    """A stock `BertForSequenceClassification` plus its `[IND]` and class-token input rows as parameters.

    `forward` returns the combined logits Σₖ pₖ·logitsₖ and (with labels) their cross-entropy, the
    official objective; `save_pretrained` writes the stock folder and the trained rows' side file.
    """

    def __init__(self, classifier, rows: TypeGuidedRows):
        super().__init__()
        if rows.hidden_size != classifier.config.hidden_size:
            raise ModelFolderError(f"{classifier.config.name_or_path}: {SIDE_FILE} has rows of size "
                                   f"{rows.hidden_size} but the model's hidden size is "
                                   f"{classifier.config.hidden_size}; copy the converted folder again.")
        self.classifier = classifier
        self.config = classifier.config  # Trainer reads it
        self.ind_row = torch.nn.Parameter(torch.from_numpy(rows.input_ind.copy()))
        self.class_rows = torch.nn.Parameter(torch.from_numpy(rows.input_classes.copy()))
        self.class_tokens = rows.class_tokens
        self.source_ids = rows.source_ids or {}

    @property
    def bert(self):
        return self.classifier.bert  # what --freeze-encoder freezes

    def forward(self, input_ids, slots, owners, top_classes, top_probabilities, labels=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        per_type = guided_logits(self.classifier, input_ids, slots, owners, top_classes, self.ind_row,
                                 self.class_rows, self.config.pad_token_id)
        combined, loss = official_objective(per_type, top_probabilities, labels)
        return SequenceClassifierOutput(loss=loss, logits=combined)

    def save_pretrained(self, folder) -> None:
        """The stock classifier folder, and `type_guided.safetensors` with the trained rows (float32)."""
        from safetensors.torch import save_file

        self.classifier.save_pretrained(folder)
        rows = {INPUT_IND: self.ind_row.detach().float().cpu().contiguous(),
                INPUT_CLASSES: self.class_rows.detach().float().cpu().contiguous()}
        save_file(rows, str(Path(folder) / SIDE_FILE), metadata=side_file_metadata(self.class_tokens, self.source_ids))


def official_objective(per_type, top_probabilities, labels=None):
    """(combined logits [B, C], loss): `MajorityVoter`'s Σₖ pₖ·logitsₖ of per-type logits [B, k, C], and the
    cross-entropy of that sum (what the official `train()` minimises; None without labels)."""
    combined = torch.einsum("ijk,ij->ik", per_type, top_probabilities.to(per_type.dtype))
    loss = None if labels is None else torch.nn.functional.cross_entropy(combined.float(), labels)
    return combined, loss


def _trainer_class():
    """`Trainer` whose AdamW decays every parameter, biases and LayerNorm included, as Paddle's AdamW does
    (run_seq_cls.py passes it all the parameters and no `apply_decay_param_fun`)."""
    import transformers

    class PaddleDecayTrainer(transformers.Trainer):
        def get_decay_parameter_names(self, model) -> list[str]:
            return [name for name, _ in model.named_parameters()]

    return PaddleDecayTrainer
