"""The official secondary-structure network (MixedFold's `zuker.net` and `fc_length`) in torch.

It turns a sequence into the positional scores mxfold2's folding engine adds to the Turner energies
(`ZukerFold.make_param`): 1-based `[N+1, N+1]` float32 matrices plus the loop-length tables. It
reproduces the official Paddle network (RNAErnie `secondary_structure.py`), quirks included:
- the encoder reads `[CLS]` + one token per base, without the final `[SEP]` (the official path drops it
  before running the encoder), so hidden state k is base k;
- the base embedding reads `'0' + sequence` (A C G T -> rows 1-4, anything else -> row 5) and Paddle's
  `padding_idx=0` makes row 0's output zeros whatever the stored row holds;
- the attention runs over a length-1 axis (the official code hands a `(N, B, C)` tensor to a batch-first
  layer), so each position attends only to itself: its output is `out_proj(v_proj(x))`;
- the left/right split takes even and odd *channels*, the odd ones reversed;
- `PairedLayer` rebuilds its lower triangle from the upper one's `tril`, which is always zero, so only the
  strict upper triangle carries conv features and every other cell gets the `fc` of zeros;
- the loop-length tables are a `Linear` applied to lower-triangular indicator matrices, in float32.

Spelling rule: each sequence is written in upper case with `U` before the model (`normalise`). The
official embedding then maps `U` to its "other" row 5, as RNAStrAlign's U-spelled training data did;
`N` and any other letter also take row 5 (and `[UNK]` in the encoder), and the engine never pairs them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnaernie.errors import InputError
from rnaernie.mixedfold_format import FIXED, LENGTH_TABLES, SIDE_FILE, read_settings
from rnaernie.sequences import MAX_NUCLEOTIDES

MISMATCH = ("score_mismatch_external", "score_mismatch_hairpin", "score_mismatch_internal", "score_mismatch_multi")
BASE = ("score_base_hairpin", "score_base_internal", "score_base_multi", "score_base_external")


def normalise(sequence: str) -> str:
    """The spelling the model is given: upper case, U for T."""
    return sequence.upper().replace("T", "U")


def base_rows(sequence: str) -> list[int]:
    """The official base embedding's rows for `'0' + sequence` (sequence already normalised)."""
    rows = {letter: i for i, letter in enumerate(FIXED["bases"], start=1)}
    return [0] + [rows.get(letter, 5) for letter in sequence]


def _modules():
    """The network's torch modules (built here so that importing this file needs no torch)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class ProjectionHead(nn.Module):  # the official MlpProjector
        def __init__(self, hidden: int, size: int):
            super().__init__()
            self.dense, self.projection = nn.Linear(hidden, size), nn.Linear(size, size)

        def forward(self, states):
            return self.projection(torch.relu(self.dense(states)))

    class ConvNorm(nn.Module):  # Conv, GroupNorm(1, C), CELU; the dropout after it is off at inference
        def __init__(self, conv: nn.Module, channels: int):
            super().__init__()
            self.conv, self.norm = conv, nn.GroupNorm(1, channels)

        def forward(self, x):
            return F.celu(self.norm(self.conv(x)))

    class SelfOnlyAttention(nn.Module):
        """Paddle's MultiHeadAttention as the official code calls it: over a length-1 axis, so each
        position's single attention weight is softmax of one score, i.e. 1, and q/k change nothing."""

        def __init__(self, width: int, heads: int):
            super().__init__()
            self.heads = heads
            self.q_proj, self.k_proj = nn.Linear(width, width), nn.Linear(width, width)
            self.v_proj, self.out_proj = nn.Linear(width, width), nn.Linear(width, width)

        def forward(self, x):  # [B, N, C]
            shape = (*x.shape[:-1], self.heads, x.shape[-1] // self.heads)
            q, k, v = (proj(x).reshape(shape) for proj in (self.q_proj, self.k_proj, self.v_proj))
            scores = (q * k).sum(-1, keepdim=True) * (shape[-1] ** -0.5)  # one key per query
            return self.out_proj((torch.softmax(scores, dim=-1) * v).reshape(x.shape))

    class MixedFoldNetwork(nn.Module):
        """Hidden states and base rows in, the paired score channels `[B, N+1, N+1, 3]` out."""

        def __init__(self, s: dict):
            super().__init__()
            self.embedding = nn.Embedding(6, s["embed_size"])
            self.proj_head = ProjectionHead(s["hidden_size"], s["projection"])
            width, dilation = s["embed_size"] + s["projection"], 2 ** s["dilation"]
            self.conv = nn.ModuleList()
            for filters, kernel in zip(s["num_filters"], s["filter_size"]):
                conv = nn.Conv1d(width, filters, kernel, dilation=dilation, padding=dilation * (kernel // 2))
                self.conv.append(ConvNorm(conv, filters))
                width = filters
            self.lstm = nn.LSTM(width, s["num_lstm_units"], num_layers=s["num_lstm_layers"], batch_first=True,
                                bidirectional=True)
            width = 2 * s["num_lstm_units"]
            self.lstm_norm = nn.LayerNorm(width)
            self.attention = SelfOnlyAttention(width, s["num_att"])
            self.paired_conv = nn.ModuleList()
            for filters, kernel in zip(s["num_paired_filters"], s["paired_filter_size"]):
                self.paired_conv.append(ConvNorm(nn.Conv2d(width, filters, kernel, padding=kernel // 2), filters))
                width = filters
            fc: list[nn.Module] = []
            for units in s["num_hidden_units"]:  # the official Sequential: Linear, LayerNorm, CELU, Dropout
                fc += [nn.Linear(width, units), nn.LayerNorm(units), nn.CELU(), nn.Identity()]
                width = units
            self.paired_fc = nn.Sequential(*fc, nn.Linear(width, 3))
            self.diagonal = 1 if s["exclude_diag"] else 0
            self.length = nn.ModuleDict({table: nn.Linear(size, 1) for table, size, _ in LENGTH_TABLES})

        @staticmethod
        def _residual(x, x_a):  # the official resnet rule: add when the widths agree
            return x + x_a if x.shape[1] == x_a.shape[1] else x_a

        def forward(self, rows, states):  # rows [B, N+1] int64, states [B, N+1, H]
            base = self.embedding(rows) * (rows != 0).unsqueeze(-1)  # padding_idx: zeros for row 0
            x = torch.cat([base, self.proj_head(states)], dim=-1).transpose(1, 2)  # [B, C, N+1]
            for layer in self.conv:
                x = self._residual(x, layer(x))
            x = x.transpose(1, 2)  # [B, N+1, C]
            x_a, _ = self.lstm(x)
            x_a = F.celu(self.lstm_norm(x_a))
            x = x + x_a if x.shape[2] == x_a.shape[2] else x_a
            x = x + self.attention(x)
            left, right = x[:, :, 0::2], x[:, :, 1::2].flip(-1)
            n = x.shape[1]
            pairs = torch.cat([left.unsqueeze(2).expand(-1, n, n, -1), right.unsqueeze(1).expand(-1, n, n, -1)],
                              dim=-1).permute(0, 3, 1, 2)  # [B, C, N+1, N+1]
            x = torch.triu(pairs, diagonal=self.diagonal)
            for layer in self.paired_conv:  # the lower-triangle branch is computed officially, then discarded
                x = self._residual(x, layer(x))
            x = torch.triu(x, diagonal=self.diagonal)  # the lower triangle stays zero (the official tril bug)
            return self.paired_fc(x.permute(0, 2, 3, 1))

        def length_tables(self) -> dict:
            """The loop-length tables: each `Linear` applied to its lower-triangular indicator matrix."""
            tables = {}
            for table, size, shape in LENGTH_TABLES:
                layer = self.length[table]
                if shape == (size,):
                    indicator = torch.tril(torch.ones(size, size, device=layer.weight.device))
                else:  # (i, j) cells: 1 where k <= i and l <= j
                    i, j, k, m = np.indices((*shape, *shape))
                    indicator = torch.from_numpy(((k <= i) & (m <= j)).reshape(size, size).astype(np.float32))
                    indicator = indicator.to(layer.weight.device)
                tables[table] = layer(indicator).reshape(shape)
            return tables

    return MixedFoldNetwork


class StructureScorer:
    """A converted structure-model folder: the encoder, the network and the Turner tables, loaded once.

    >>> scorer = StructureScorer.from_pretrained("out/ssp")
    >>> positional = scorer.positional("GGGAAACCC")   # numpy float32, the engine's 'positional' dict
    >>> scorer.turner                                  # the engine's 'turner' dict
    """

    def __init__(self, tokenizer, encoder, network, turner: dict[str, np.ndarray], settings: dict, device: str):
        self.tokenizer, self.encoder, self.network, self.device = tokenizer, encoder, network, device
        self.turner, self.settings = turner, settings
        vocab = tokenizer.get_vocab()
        self.cls_id, self.unk_id = tokenizer.cls_token_id, tokenizer.unk_token_id
        self.token_ids = {letter: vocab[letter] for letter in "ACGU"}  # the converted vocabulary spells T as U

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "auto") -> "StructureScorer":
        from rnaernie.model import load, resolve_model

        where = resolve_model(folder)
        if not Path(where).is_dir():  # a Hub id: fetch the side file along with the folder
            from huggingface_hub import snapshot_download

            where = snapshot_download(where)
        settings = read_settings(where)  # before loading the encoder: a folder without the network fails fast
        tokenizer, encoder = load(where, "AutoModel", device, "float32")
        network, turner = load_network(where, settings, encoder.device)
        return cls(tokenizer, encoder, network, turner, settings, str(encoder.device))

    def input_ids(self, sequence: str) -> list[int]:
        """`[CLS]` + one token per base of the normalised sequence, no `[SEP]` (the official path)."""
        return [self.cls_id] + [self.token_ids.get(letter, self.unk_id) for letter in sequence]

    def hidden_states(self, sequence: str):
        """The encoder's last hidden states `[1, N+1, H]` (torch, on the model's device)."""
        import torch

        ids = torch.tensor([self.input_ids(sequence)], device=self.device)
        return self.encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state

    def positional(self, sequence: str) -> dict[str, np.ndarray]:
        """The positional scores for one sequence (normalised here), as `ZukerFold.make_param` gives them."""
        import torch

        sequence = normalise(sequence)
        if not 0 < len(sequence) <= MAX_NUCLEOTIDES:
            raise InputError(f"the structure model reads 1 to {MAX_NUCLEOTIDES} nucleotides, not {len(sequence)}; "
                             "fold longer records with MixedFoldPredictor (its --long policy).")
        with torch.inference_mode():
            rows = torch.tensor([base_rows(sequence)], device=self.device)
            paired = self.network(rows, self.hidden_states(sequence))[0].float().cpu().numpy()
            lengths = {name: table.float().cpu().numpy() for name, table in self.network.length_tables().items()}
        return positional_dict(paired, lengths)


def positional_dict(paired: np.ndarray, lengths: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """make_param's naming: channel 0 helix stacking, channel 1 every mismatch, channel 2 every unpaired base."""
    helix, mismatch, base = (np.ascontiguousarray(paired[:, :, c], dtype=np.float32) for c in range(3))
    scores = {"score_basepair": np.zeros_like(helix), "score_helix_stacking": helix}
    scores.update({name: mismatch for name in MISMATCH})
    scores.update({name: base for name in BASE})
    scores.update({name: np.asarray(table, dtype=np.float32) for name, table in lengths.items()})
    return scores


def load_network(folder: str | Path, settings: dict, device="cpu"):
    """(the folder's network as a torch module in eval mode, its Turner tables as float32 numpy arrays)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from rnaernie.errors import ModelFolderError

    path = Path(folder) / SIDE_FILE
    network = _modules()(settings)
    try:
        tensors = load_file(str(path))
        turner = {key.split(".", 1)[1]: tensors.pop(key).numpy() for key in list(tensors) if key.startswith("turner.")}
        network.load_state_dict(tensors)
    except (RuntimeError, OSError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelFolderError(f"{path} does not fit this model ({first}); convert the checkpoint again with "
                               "rnaernie-convert.") from None
    return network.to(device=device, dtype=torch.float32).eval(), turner
