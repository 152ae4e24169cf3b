"""The side file `interaction_head.safetensors`: the head of RNAErnie's miRNA-target interaction model.

The official interaction model (`ErnieRRInter`) is an ERNIE encoder plus a head that is no stock
transformers class. A converted folder holds the encoder as a stock `BertModel` (`AutoModel` loads
it alone) and the head here, under torch's own module names (`rnaernie.interaction.InteractionHead`
loads it with `load_state_dict`):

| tensor | shape | official (Paddle) name |
|---|---|---|
| `proj_head.dense.weight`, `.bias` | [64, H], [64] | `proj_head.dense` (Paddle stores [H, 64]) |
| `proj_head.projection.weight`, `.bias` | [64, 64], [64] | `proj_head.projection` |
| `embedder.weight` | [5, 64] | `embedder.weight` |
| `conv.weight`, `conv.bias` | [320, 128, 12], [320] | `cnn_lstm.0` |
| `lstm.weight_ih_l0`, `lstm.weight_hh_l0`, `lstm.bias_ih_l0`, `lstm.bias_hh_l0`, and `_reverse` | [128, 27], [128, 32], [128], [128] | `cnn_lstm.5.*` (= `cnn_lstm.5.0.cell_fw.*` / `cell_bw.*`) |
| `classifier.2.weight`, `.bias` | [16, 64], [16] | `classifier.2` |
| `classifier.4.weight`, `.bias` | [2, 16], [2] | `classifier.4` |

Metadata: `format` = "rnaernie-interaction-head", `format_version` = "1", and `settings`, a JSON
object with every size and input rule the forward pass needs (`SETTINGS`), so that nothing is
guessed at load time. Float32 always (the head is small; its output is the model's answer).

This module names the format and the input rules, and reads the metadata; it imports neither torch
nor transformers, so the converter can use it.
"""

from __future__ import annotations

from pathlib import Path

from rnaernie.errors import ModelFolderError
from rnaernie.model import read_side_file_settings, settings_metadata

SIDE_FILE = "interaction_head.safetensors"
FORMAT = "rnaernie-interaction-head"
FORMAT_VERSION = "1"

# Everything the official code fixes (rna_rna_interaction.py, run_rr_inter.py for MirTarRAW).
SETTINGS = {
    "official_class": "ErnieRRInter",
    "letters": "NATCG",  # the token track's alphabet: letter i -> id i
    "max_a": 26,  # documented by the official code; `a` is never cut or padded itself
    "max_b": 40,  # `b` is cut or padded (id 0 / [PAD]) to this many positions
    "length": 66,  # both tracks are then cut or padded with 0 to this many positions
    "embedding_dim": 64,
    "proj_size": 64,
    "num_filters": 320,
    "kernel_size": 12,
    "pool": 2,
    "lstm_input": 27,  # (66 - 12 + 1) // 2 positions become the LSTM's features
    "lstm_hidden": 32,
    "classifier_hidden": 16,
    "num_labels": 2,
    "positive_label": 1,  # class 1 is "interacts"
}

# Torch names of the head's tensors with their shapes; "H" is the encoder's hidden size.
LSTM_TENSORS = tuple(f"lstm.{name}_l0{suffix}" for suffix in ("", "_reverse")
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def tensor_shapes(hidden: int, settings: dict = SETTINGS) -> dict[str, tuple[int, ...]]:
    s = settings
    gates = 4 * s["lstm_hidden"]
    lstm = {"weight_ih": (gates, s["lstm_input"]), "weight_hh": (gates, s["lstm_hidden"]),
            "bias_ih": (gates,), "bias_hh": (gates,)}
    return {
        "proj_head.dense.weight": (s["proj_size"], hidden), "proj_head.dense.bias": (s["proj_size"],),
        "proj_head.projection.weight": (s["proj_size"], s["proj_size"]),
        "proj_head.projection.bias": (s["proj_size"],),
        "embedder.weight": (len(s["letters"]), s["embedding_dim"]),
        "conv.weight": (s["num_filters"], s["embedding_dim"] + s["proj_size"], s["kernel_size"]),
        "conv.bias": (s["num_filters"],),
        **{name: lstm[name.split(".")[1].rsplit("_l0", 1)[0]] for name in LSTM_TENSORS},
        "classifier.2.weight": (s["classifier_hidden"], 2 * s["lstm_hidden"]),
        "classifier.2.bias": (s["classifier_hidden"],),
        "classifier.4.weight": (s["num_labels"], s["classifier_hidden"]),
        "classifier.4.bias": (s["num_labels"],),
    }


def metadata() -> dict[str, str]:
    return settings_metadata(FORMAT, FORMAT_VERSION, SETTINGS)


def read_settings(folder: str | Path) -> dict:
    """The settings recorded in a folder's side file, or `ModelFolderError` saying what to do."""
    path = Path(folder) / SIDE_FILE
    settings = read_side_file_settings(folder, SIDE_FILE, FORMAT, FORMAT_VERSION, kind="a converted interaction model",
                                       contents="an interaction head",
                                       how="convert the official ErnieRRInter checkpoint (output_ft/rr_inter/...) "
                                           "with rnaernie-convert")
    if settings != SETTINGS:
        raise ModelFolderError(f"{path} records settings this version does not run ({settings}); convert the "
                               "checkpoint again with the current rnaernie-convert.")
    return settings
