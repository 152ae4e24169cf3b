"""Contact (base-pair) prediction on a converted RNAErnie folder: the stock encoder plus a small head.

    model = RnaErnieForContactPrediction.from_pretrained("out/example", head="hidden")
    batch = model.tokenizer(["GGGAAACCC", "ACGU"], padding=True, return_tensors="pt")
    probabilities = model.pair_probabilities(batch["input_ids"], batch["attention_mask"])   # [2, 9, 9]

The encoder is the folder's stock `BertModel`; the head turns it into one logit per pair of
nucleotides. Two heads:

- `hidden`: a bilinear form on the last hidden states, `logit_ij = sum_k w_k h_ik h_jk + b`. This is
  exactly a `Linear(hidden -> 1)` on the elementwise product `h_i * h_j` (the usual contact head of
  BERT-style RNA models), but computed as `(h * w) @ h^T`, so the `[L, L, hidden]` tensor is never
  built: memory grows with L^2, not L^2 * hidden.
- `attention`: ESM's recipe on every layer's attention maps (the encoder runs with eager
  attention to return them): the rows and columns of `[CLS]`, `[SEP]` and padding are zeroed, the
  first and last positions dropped, each map symmetrised (`A + A^T`) and APC-corrected
  (`A - rowsum * colsum / total`), and one `Linear(layers * heads -> 1)` reads the stacked maps.

Positions: the input is the tokenizer's `[CLS] seq [SEP] [PAD]...`; the logits cover input positions
1 .. T-2, so row/column i is nucleotide i (0-based) of each sequence, and a sequence of n nucleotides
owns the top-left `n x n` block. Cells outside it (its `[SEP]`, padding) are masked. The head is a
side file in the folder (`contact_head.safetensors`, its settings in the file's metadata); the rest
of the folder is a stock `BertModel` folder that `AutoModel.from_pretrained` loads as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from transformers.modeling_outputs import ModelOutput

from rnaernie.errors import ModelFolderError

HEAD_FILE = "contact_head.safetensors"
HEAD_KINDS = ("hidden", "attention")
_SETTINGS_KEY = "rnaernie_contact_head"
IGNORE_INDEX = -100


@dataclass
class ContactPredictionOutput(ModelOutput):
    """`loss` (when labels were given) comes first, as transformers' Trainer expects."""

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None


class HiddenStateContactHead(nn.Module):
    """`Linear(hidden -> 1)` on `h_i * h_j`, computed as a bilinear form (no `[L, L, hidden]` tensor)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.regression = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [B, L, H] (nucleotide positions) -> logits [B, L, L]."""
        weighted = hidden * self.regression.weight[0]
        return torch.matmul(weighted, hidden.transpose(1, 2)) + self.regression.bias[0]


class AttentionContactHead(nn.Module):
    """ESM's contact regression: symmetrised, APC-corrected attention maps -> one logistic regression."""

    def __init__(self, channels: int):
        super().__init__()
        self.regression = nn.Linear(channels, 1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """maps [B, channels, L, L] (special and padded rows and columns already zero) -> logits [B, L, L]."""
        maps = maps + maps.transpose(-1, -2)
        row = maps.sum(-1, keepdim=True)
        column = maps.sum(-2, keepdim=True)
        total = maps.sum((-1, -2), keepdim=True)
        corrected = maps - row * column / total
        return self.regression(corrected.permute(0, 2, 3, 1)).squeeze(-1)


class RnaErnieForContactPrediction(nn.Module):
    """A converted RNAErnie encoder with a contact head; works with transformers' `Trainer` unchanged.

    Attributes: `encoder` (stock `BertModel`), `head`, `head_kind` ("hidden" or "attention"),
    `tokenizer` (the folder's, when loaded with `from_pretrained`), `special_token_ids`
    ([CLS], [SEP], [PAD] ids: positions that are never nucleotides), `positive_weight` (the loss's
    weight on paired cells, BCE's `pos_weight`: 1 is plain cross-entropy; pairs are about 1 cell in L,
    and a model trained with weight 1 learns to call nothing paired before it learns pairing).
    """

    def __init__(self, encoder, head_kind: str = "hidden", special_token_ids: tuple[int, ...] = (2, 3, 0),
                 tokenizer=None, positive_weight: float = 1.0):
        super().__init__()
        if head_kind not in HEAD_KINDS:
            raise ModelFolderError(f"contact head {head_kind!r} is not known; use one of {', '.join(HEAD_KINDS)}.")
        config = encoder.config
        if head_kind == "attention" and config._attn_implementation != "eager":
            raise ValueError("the attention head needs the encoder loaded with attn_implementation='eager'")
        self.encoder = encoder
        self.head_kind = head_kind
        self.special_token_ids = tuple(int(i) for i in special_token_ids)
        self.tokenizer = tokenizer
        self.positive_weight = float(positive_weight)
        if head_kind == "hidden":
            self.head = HiddenStateContactHead(config.hidden_size)
        else:
            self.head = AttentionContactHead(config.num_hidden_layers * config.num_attention_heads)
        pooler = getattr(encoder, "pooler", None)
        if pooler is not None:  # kept for the folder's sake (sequence heads read it), never trained here
            pooler.requires_grad_(False)

    @property
    def config(self):
        return self.encoder.config

    @property
    def settings(self) -> dict:
        """What the side file records besides the weights."""
        return {"head": self.head_kind, "special_token_ids": list(self.special_token_ids),
                "positive_weight": self.positive_weight,
                "hidden_size": self.config.hidden_size, "num_hidden_layers": self.config.num_hidden_layers,
                "num_attention_heads": self.config.num_attention_heads}

    # ---- loading and saving ------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: str | Path, head: str | None = None) -> "RnaErnieForContactPrediction":
        """Load a converted folder (any kind: masked LM, encoder, classifier) or one saved by this class.

        A folder with `contact_head.safetensors` gets its trained head back (and `head`, when given,
        must match it); otherwise a new, untrained head of kind `head` (default "hidden") is added.
        """
        import transformers

        from rnaernie.model import resolve_model

        transformers.logging.set_verbosity_error()  # the report on the unused MLM weights is noise here
        transformers.logging.disable_progress_bar()

        where = Path(resolve_model(folder))
        saved = read_head_file(where)
        if saved is not None and head is not None and head != saved[0]["head"]:
            raise ModelFolderError(f"{where} holds a trained {saved[0]['head']!r} contact head, not {head!r}; "
                                   f"pass --head {saved[0]['head']} or a folder without {HEAD_FILE}.")
        kind = saved[0]["head"] if saved is not None else (head or "hidden")
        if kind not in HEAD_KINDS:
            raise ModelFolderError(f"contact head {kind!r} is not known; use one of {', '.join(HEAD_KINDS)}.")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(where))
            # eager attention returns the maps the attention head reads; the hidden head keeps the fast kernel
            encoder = transformers.BertModel.from_pretrained(
                str(where), **({"attn_implementation": "eager"} if kind == "attention" else {}))
        except (OSError, ValueError, KeyError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFolderError(f"cannot load {folder} ({first_line}); pass a folder made by rnaernie-convert "
                                   "or by rnaernie train.") from None
        special = (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id)
        model = cls(encoder, kind, special, tokenizer)
        if saved is not None:
            settings, tensors = saved
            expected = model.settings
            if any(settings.get(k) != expected[k] for k in ("hidden_size", "num_hidden_layers",
                                                            "num_attention_heads")):
                raise ModelFolderError(f"{where / HEAD_FILE} was trained on another encoder size; keep the head "
                                       "with the encoder it was saved with.")
            model.head.load_state_dict(tensors)
            model.special_token_ids = tuple(settings["special_token_ids"])
            model.positive_weight = float(settings.get("positive_weight", 1.0))
        return model

    def save_pretrained(self, folder: str | Path) -> None:
        """Write the encoder as a stock `BertModel` folder (plus the tokenizer) and the head beside it."""
        from safetensors.torch import save_file

        folder = Path(folder)
        self.encoder.save_pretrained(str(folder))
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(folder))
        tensors = {name: value.detach().contiguous().cpu() for name, value in self.head.state_dict().items()}
        save_file(tensors, str(folder / HEAD_FILE), metadata={"format": "pt", _SETTINGS_KEY: json.dumps(self.settings)})

    # ---- computing ---------------------------------------------------------------------------

    def nucleotide_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """[B, T-2] bool: which logit rows are nucleotides (not [CLS], [SEP] or padding)."""
        return self._token_mask(input_ids, attention_mask)[:, 1:-1]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                ) -> ContactPredictionOutput:
        """Logits [B, T-2, T-2] over nucleotide pairs, symmetric; masked cells hold the dtype's lowest value.

        `labels` [B, T-2, T-2]: 1 paired, 0 not paired, -100 ignored (so are masked cells). The loss
        is the binary cross-entropy with logits (paired cells weighted by `positive_weight`), averaged
        over the cells that count. `token_type_ids`
        (what the tokenizer returns, all 0) is passed to the encoder, so `model(**batch)` works.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        tokens = self._token_mask(input_ids, attention_mask)
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if self.head_kind == "hidden":
            logits = self.head(self.encoder(**inputs).last_hidden_state[:, 1:-1])
        else:
            attentions = self.encoder(**inputs, output_attentions=True).attentions
            maps = torch.cat(attentions, dim=1)  # [B, layers * heads, T, T], layer-major as ESM stacks them
            keep = tokens.to(maps.dtype)
            maps = maps * (keep[:, :, None] * keep[:, None, :])[:, None]
            logits = self.head(maps[..., 1:-1, 1:-1])
        logits = (logits + logits.transpose(1, 2)) / 2  # symmetric to the last bit (matmul rounding is not)
        nucleotides = tokens[:, 1:-1]
        cells = nucleotides[:, :, None] & nucleotides[:, None, :]
        logits = logits.masked_fill(~cells, torch.finfo(logits.dtype).min)
        loss = None
        if labels is not None:
            counted = cells & (labels != IGNORE_INDEX)
            weight = torch.tensor(self.positive_weight, dtype=logits.dtype, device=logits.device)
            loss = nn.functional.binary_cross_entropy_with_logits(logits[counted], labels[counted].to(logits.dtype),
                                                                  pos_weight=weight)
        return ContactPredictionOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def pair_probabilities(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                           token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Pair probabilities [B, T-2, T-2] (float32, sigmoid of the logits, masked cells 0), in eval mode.

        Sequence b's n nucleotides own `[b, :n, :n]`; the matrix is symmetric. Call `model.eval()`
        first if the model was training (dropout changes the numbers otherwise).
        """
        logits = self.forward(input_ids, attention_mask, token_type_ids=token_type_ids).logits.float()
        cells = self.nucleotide_mask(input_ids, attention_mask)
        cells = cells[:, :, None] & cells[:, None, :]
        return torch.sigmoid(logits).masked_fill(~cells, 0.0)

    def _token_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        special = torch.tensor(self.special_token_ids, device=input_ids.device)
        tokens = ~torch.isin(input_ids, special)
        return tokens if attention_mask is None else tokens & attention_mask.bool()


def read_head_file(folder: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(settings, head tensors) of a folder's contact head, or None when it has none."""
    from safetensors import SafetensorError, safe_open

    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            settings = json.loads((handle.metadata() or {})[_SETTINGS_KEY])
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise ModelFolderError(f"{path} is damaged ({type(exc).__name__}); train the contact head again or "
                               f"remove {HEAD_FILE}.") from None
    if settings.get("head") not in HEAD_KINDS:
        raise ModelFolderError(f"{path} names an unknown contact head {settings.get('head')!r}; train it again.")
    return settings, tensors
