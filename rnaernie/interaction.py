"""RNA-RNA (miRNA-target) interaction from a converted RNAErnie folder: pairs in, two logits per pair out.

What a pair's logits are (the contract, checked against the official `ErnieRRInter` in
tests/test_interact.py):

* Letters: case-insensitive; `U` is read as `T` (the official code raises on `U`); `N` is the
  token track's id 0 and `[UNK]` for the encoder, as officially. Any other character (IUPAC codes,
  `-`, spaces) is refused, naming the pair: the official code raises on it too, and there is no
  id it could stand for.
* Two input tracks of 66 positions each: the token track (`N A T C G` -> 0..4) and the encoder's
  token ids (without `[CLS]`/`[SEP]`), both `a` followed by `b`, `b` cut or padded (with 0,
  `[PAD]`) to 40, the whole cut or padded with 0 to 66. So `a` is never padded itself, and when `a`
  is longer than 26 nt the tail of `b` is lost, exactly as in the official code.
* The encoder (the folder's stock `BertModel`) runs with `attention_mask = input_ids != [PAD]`
  (PaddleNLP builds that mask itself); its last hidden states go through `proj_head` (dense, ReLU,
  projection). The token track goes through its own embedding. Both, channels first, are
  concatenated (token track first) into [B, 128, 66] -> Conv1d(kernel 12) -> ReLU -> MaxPool(2) ->
  [B, 320, 27], which the bidirectional LSTM reads as 320 time steps of 27 features; the output at
  the last step (both directions, [B, 64]) goes through ReLU -> Linear(64, 16) -> Linear(16, 2).
  Class 1 is "interacts"; `probability` is its softmax probability.

The head runs in float32 whatever `dtype` the encoder uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from rnaernie.errors import InputError
from rnaernie.interaction_head import SETTINGS, SIDE_FILE, read_settings
from rnaernie.sequences import read_table

if TYPE_CHECKING:
    import numpy as np

COLUMNS = ("a_name", "a_seq", "b_name", "b_seq")
LABEL = "label"
DEFAULT_BATCH_SIZE = 256  # the official evaluation batch; the LSTM runs faster on large batches
_READ_AS = {"U": "T"}


@dataclass(frozen=True)
class Pair:
    a_name: str
    a_seq: str
    b_name: str
    b_seq: str
    label: int | None = None
    where: str = ""  # e.g. "pairs.csv, line 3", for messages


def read_pairs(source: str | Path) -> Iterator[Pair]:
    """Stream the pairs of a CSV or TSV file (`-`: stdin) with the official columns; `label` optional."""
    for values, where in read_table(source, COLUMNS, (LABEL,)):
        yield Pair(values["a_name"], values["a_seq"], values["b_name"], values["b_seq"],
                   _label(values.get(LABEL), where), where)


def _label(text: str | None, where: str) -> int | None:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if value not in (0.0, 1.0):
        raise InputError(f"{where}: label {text!r} is not 0 or 1; fix it or leave the column out.")
    return int(value)


def encode_pair(pair: Pair, token_ids: dict[str, int]) -> tuple[list[int], list[int]]:
    """The pair's (token track, encoder ids), 66 positions each (see the module docstring)."""
    s = SETTINGS
    letters = s["letters"]
    tracks = []
    for side, sequence in (("a", pair.a_seq), ("b", pair.b_seq)):
        if not sequence:
            raise InputError(f"{pair.where}: {side}_seq is empty; give both sequences of every pair.")
        cleaned = sequence.upper()
        cleaned = "".join(_READ_AS.get(letter, letter) for letter in cleaned)
        bad = next((letter for letter in cleaned if letter not in letters), None)
        if bad is not None:
            shown = sequence[cleaned.index(bad)]
            raise InputError(f"{pair.where}: {side}_seq has {shown!r}, which the interaction model cannot read; "
                             "use A, C, G, T/U or N only.")
        tracks.append(cleaned)
    a, b = tracks
    b = b[:s["max_b"]]
    b_padding = [0] * (s["max_b"] - len(b))
    tokens = [letters.index(x) for x in a] + [letters.index(x) for x in b] + b_padding
    ids = [token_ids[x] for x in a] + [token_ids[x] for x in b] + b_padding
    length = s["length"]
    return ((tokens + [0] * length)[:length], (ids + [0] * length)[:length])


def binary_metrics(labels: np.ndarray, predictions: np.ndarray, logit_1: np.ndarray) -> dict[str, float]:
    """The official RNAErnie metrics (base_classes.BaseMetrics): accuracy, and precision, recall and F1 averaged
    over both classes ("macro"), of the predictions; AUC ranks the pairs by logit 1, as the official code does
    (through a sigmoid, which keeps the order)."""
    import numpy as np

    labels, predictions = labels.astype(np.int64), predictions.astype(np.int64)
    scores = {"accuracy": float((predictions == labels).mean())}
    precisions, recalls, f1s = [], [], []
    for cls in (0, 1):
        tp = int(((predictions == cls) & (labels == cls)).sum())
        fp = int(((predictions == cls) & (labels != cls)).sum())
        fn = int(((predictions != cls) & (labels == cls)).sum())
        precisions.append(tp / (tp + fp) if tp + fp else 0.0)  # 0 when undefined, as scikit-learn reports it
        recalls.append(tp / (tp + fn) if tp + fn else 0.0)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    scores.update(precision=float(np.mean(precisions)), recall=float(np.mean(recalls)), f1=float(np.mean(f1s)))
    scores["auc"] = _auc(labels, logit_1.astype(np.float64))
    return scores


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); NaN with one class only."""
    import numpy as np

    positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
    if not positives or not negatives:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average rank over ties
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _head_module():
    """The head as a torch module (built here so that importing this file needs no torch)."""
    import torch
    from torch import nn

    class ProjectionHead(nn.Module):
        def __init__(self, hidden: int, size: int):
            super().__init__()
            self.dense, self.projection = nn.Linear(hidden, size), nn.Linear(size, size)

        def forward(self, states):
            return self.projection(torch.relu(self.dense(states)))

    class InteractionHead(nn.Module):
        """ErnieRRInter's head in torch; state-dict names are those of `interaction_head.tensor_shapes`."""

        def __init__(self, hidden: int, s: dict = SETTINGS):
            super().__init__()
            self.pool = s["pool"]
            self.proj_head = ProjectionHead(hidden, s["proj_size"])
            self.embedder = nn.Embedding(len(s["letters"]), s["embedding_dim"])
            self.conv = nn.Conv1d(s["embedding_dim"] + s["proj_size"], s["num_filters"], s["kernel_size"])
            self.lstm = nn.LSTM(s["lstm_input"], s["lstm_hidden"], batch_first=True, bidirectional=True)
            self.classifier = nn.Sequential(nn.ReLU(), nn.Identity(), nn.Linear(2 * s["lstm_hidden"],
                                            s["classifier_hidden"]), nn.Identity(),
                                            nn.Linear(s["classifier_hidden"], s["num_labels"]))  # Identity: dropout

        def forward(self, tokens, states):
            x = torch.cat([self.embedder(tokens).transpose(1, 2), self.proj_head(states).transpose(1, 2)], dim=1)
            x = torch.max_pool1d(torch.relu(self.conv(x)), self.pool)  # [B, filters, 27]
            x, _ = self.lstm(x)  # the filters are the time steps
            return self.classifier(x[:, -1, :])

    return InteractionHead


class InteractionModel:
    """A converted interaction model ready to score pairs; keeps the model loaded between calls.

    >>> model = InteractionModel.from_pretrained("out/rrinter")
    >>> logits = model([("UGAGGUAGUAGGUUGUAUAGUU", "AACUAUACAACCUACUACCUCA")])   # numpy float32 [1, 2]
    >>> for pair, logits in model.iter_logits(read_pairs("pairs.csv")): ...
    """

    def __init__(self, tokenizer, encoder, head, device: str):
        self.tokenizer, self.encoder, self.head, self.device = tokenizer, encoder, head, device
        vocab = tokenizer.get_vocab()
        # the converted vocabulary spells T as U; N is [UNK], as the official tokenizer makes it
        self.token_ids = {"A": vocab["A"], "T": vocab["U"], "C": vocab["C"], "G": vocab["G"],
                          "N": tokenizer.unk_token_id}

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "auto", dtype: str = "float32") -> "InteractionModel":
        from rnaernie.model import load, resolve_model

        where = resolve_model(folder)
        if not Path(where).is_dir():  # a Hub id: fetch the side file along with the folder
            from huggingface_hub import snapshot_download

            where = snapshot_download(where)
        read_settings(where)  # before loading the encoder: a folder without the head fails fast
        tokenizer, encoder = load(where, "AutoModel", device, dtype)
        head = load_head(where, encoder.config.hidden_size, encoder.device)
        return cls(tokenizer, encoder, head, str(encoder.device))

    def encode(self, pairs: Iterable[Pair]) -> tuple[list[list[int]], list[list[int]]]:
        tokens, ids = [], []
        for pair in pairs:
            t, i = encode_pair(pair, self.token_ids)
            tokens.append(t)
            ids.append(i)
        return tokens, ids

    def logits(self, tokens: list[list[int]], ids: list[list[int]]) -> np.ndarray:
        """Logits float32 [B, 2] for encoded pairs (one batch)."""
        return self.outputs(tokens, ids)[1]

    def outputs(self, tokens: list[list[int]], ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """(the encoder's last hidden states [B, 66, H], logits [B, 2]) for encoded pairs, float32."""
        import torch

        with torch.inference_mode():
            tokens_t = torch.tensor(tokens, dtype=torch.long, device=self.device)
            ids_t = torch.tensor(ids, dtype=torch.long, device=self.device)
            states = self.encoder(input_ids=ids_t, attention_mask=ids_t != 0).last_hidden_state.float()
            return states.cpu().numpy(), self.head(tokens_t, states).cpu().numpy()

    def iter_logits(self, pairs: Iterable[Pair],
                    batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[tuple[Pair, np.ndarray]]:
        """(pair, logits [2]) in input order, reading `pairs` one batch at a time."""
        batch: list[Pair] = []
        for pair in pairs:
            batch.append(pair)
            if len(batch) == batch_size:
                yield from zip(batch, self.logits(*self.encode(batch)))
                batch = []
        if batch:
            yield from zip(batch, self.logits(*self.encode(batch)))

    def predict(self, pairs: Iterable, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Logits float32 [N, 2] for `(a_seq, b_seq)` tuples or `Pair`s."""
        import numpy as np

        as_pairs = (p if isinstance(p, Pair) else Pair("a", p[0], "b", p[1], where=f"pair {n}")
                    for n, p in enumerate(pairs, start=1))
        rows = [logits for _, logits in self.iter_logits(as_pairs, batch_size)]
        return np.stack(rows) if rows else np.zeros((0, SETTINGS["num_labels"]), dtype=np.float32)

    __call__ = predict


def load_head(folder: str | Path, hidden: int, device="cpu"):
    """The folder's interaction head as a torch module, float32, eval mode; `ModelFolderError` if it does not fit."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from rnaernie.errors import ModelFolderError

    path = Path(folder) / SIDE_FILE
    head = _head_module()(hidden, read_settings(folder))
    try:
        head.load_state_dict(load_file(str(path)))
    except (RuntimeError, OSError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelFolderError(f"{path} does not fit this model ({first}); convert the checkpoint again with "
                               "rnaernie-convert.") from None
    return head.to(device=device, dtype=torch.float32).eval()


def probability(logits: np.ndarray) -> np.ndarray:
    """Softmax probability of class 1 ("interacts") from logits [..., 2], computed stably."""
    import numpy as np

    return 1.0 / (1.0 + np.exp(logits[..., 0].astype(np.float64) - logits[..., 1]))
