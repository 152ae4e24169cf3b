"""Sequence classification with a converted RNAErnie classifier, as the official code runs it.

`long="truncate"` reads the first 510 nucleotides (`[CLS] ... [SEP]`, the nRC classifier's input);
`long="chunk"` reads the whole sequence in 512-token chunks and averages the logits over chunks
(the lncRNA classifiers' input, see `rnaernie.long_sequence`). Both run one sequence at a time in
effect: sequences batched together are padded and the padding is masked from attention.
"""

from __future__ import annotations

from typing import Sequence

from rnaernie.errors import ModelFolderError
from rnaernie.long_sequence import classify_long
from rnaernie.sequences import MAX_NUCLEOTIDES, LongMode

LONG_MODES = (LongMode.TRUNCATE, LongMode.CHUNK)  # a classifier has no use for --long error


def check_classifier(where: str, architectures: list[str]) -> None:
    if "BertForSequenceClassification" not in architectures:
        kind = f"a {architectures[0]}" if architectures else "a model without an architecture"
        raise ModelFolderError(f"{where} is {kind}, not a sequence classifier; pass a folder converted from a "
                               "fine-tuned ErnieForSequenceClassification checkpoint.")


class SequenceClassifier:
    """A converted `BertForSequenceClassification` folder, in eval mode."""

    def __init__(self, tokenizer, model):
        check_classifier(model.config.name_or_path, getattr(model.config, "architectures", None) or [])
        self.tokenizer = tokenizer
        self.model = model

    @classmethod
    def from_pretrained(cls, model: str, device: str = "auto", dtype: str = "float32") -> "SequenceClassifier":
        return cls(*load_classifier(model, device, dtype))

    @property
    def labels(self) -> list[str]:
        id2label = self.model.config.id2label
        return [str(id2label[i]) for i in range(len(id2label))]

    def logits(self, sequences: Sequence[str], long: str = "truncate"):
        """Logits [len(sequences), num_labels] (float32, CPU)."""
        import torch

        if LongMode.parse(long, LONG_MODES) is LongMode.CHUNK:
            return torch.stack([classify_long(self.model, self.tokenizer, s).float().cpu() for s in sequences])
        batch = self.tokenizer(list(sequences), padding=True, truncation=True, max_length=MAX_NUCLEOTIDES + 2,
                               return_tensors="pt").to(self.model.device)
        with torch.no_grad():
            return self.model(**batch).logits.float().cpu()

    def label_of(self, logits) -> str:
        return self.labels[int(logits.argmax())]


def load_classifier(model: str, device: str, dtype: str):
    """(tokenizer, model) of a converted classifier; a local folder of another kind is refused before loading."""
    from rnaernie.model import declared_architectures, load

    declared = declared_architectures(model)
    if declared is not None:
        check_classifier(str(model), declared)
    return load(model, "AutoModelForSequenceClassification", device, dtype)
