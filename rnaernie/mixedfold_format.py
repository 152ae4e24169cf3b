"""The side file `mixedfold.safetensors`: the official secondary-structure model's network and Turner tables.

The official structure model (`MixedFold`, mxfold2's design) is a network that turns the pre-trained
RNAErnie encoder's hidden states into positional folding scores, plus the Turner-2004 energy tables.
A converted folder holds the encoder as a stock `BertModel` (`AutoModel` loads it) and this file,
float32, under torch's own module names (`rnaernie.mixedfold` loads it with `load_state_dict`):

| tensor | shape | official (Paddle) name under `zuker.net.` / `zuker.` |
|---|---|---|
| `embedding.weight` | [6, E] | `embedding.embedding.weight` |
| `proj_head.dense.*`, `proj_head.projection.*` | [128, H], [128, 128] | `proj_head.*` (Paddle [in, out]) |
| `conv.{i}.conv.*`, `conv.{i}.norm.*` | [F, in, k], [F] | `encoder.conv.net.{i}.0.*`, `.2.*` |
| `lstm.weight_ih_l{n}` ... `_reverse` | as torch's `nn.LSTM` | `encoder.lstm.*` (stored twice there) |
| `lstm_norm.*` | [2U] | `encoder.lstm_ln.*` |
| `attention.{q,k,v,out}_proj.*` | [2U, 2U] | `encoder.att.*` (Paddle [in, out]) |
| `paired_conv.{i}.conv.*`, `paired_conv.{i}.norm.*` | [P, in, k, k], [P] | `fc_paired.conv.{i}.0.*`, `.1.*` |
| `paired_fc.{j}.*` | Linear / LayerNorm | `fc_paired.fc.{j}.*` |
| `length.score_<table>.*` | [1, n], [1] | `fc_length.score_<table>.net.0.*` |
| `turner.score_<name>` | Turner tables | `turner.score_<name>`, plus `score_terminalAU` = -0.5 |

`score_terminalAU` is not in the released checkpoint: the official class builds it from
`param_turner2004.py` and loading the file keeps it, so the conversion adds that value.

Metadata: `format` = "rnaernie-mixedfold", `format_version` = "1", and `settings`, a JSON object with
every size the network has (read from the checkpoint's shapes) and what the official code fixes.
This module imports neither torch nor transformers, so the converter can use it.
"""

from __future__ import annotations

from pathlib import Path

from rnaernie.errors import ModelFolderError
from rnaernie.model import read_side_file_settings, settings_metadata

SIDE_FILE = "mixedfold.safetensors"
FORMAT = "rnaernie-mixedfold"
FORMAT_VERSION = "1"
TERMINAL_AU = ("turner.score_terminalAU", -0.5)  # param_turner2004.py: 50 / -100
# What run_ssp.py / secondary_structure.py fix (not readable from the checkpoint's shapes).
FIXED = {
    "official_class": "MixedFold",
    "projection": 128,  # MlpProjector(768, 128): the output width is fixed, the input is the encoder's
    "num_att": 8,  # heads; they do not change the output (the attention runs over a length-1 axis)
    "dilation": 0,
    "exclude_diag": True,
    "max_helix_length": 30,
    "max_internal_length": 30,  # MixedFold.forward's default, the official evaluation's
    "bases": "ACGT",  # the base embedding: '0' + sequence, position 0 -> row 0 (padding), A C G T -> 1..4, else 5
}
# the official LengthLayer sizes: (table, indicator size, table shape)
LENGTH_TABLES = (("score_hairpin_length", 31, (31,)), ("score_bulge_length", 31, (31,)),
                 ("score_internal_length", 31, (31,)), ("score_internal_explicit", 25, (5, 5)),
                 ("score_internal_symmetry", 16, (16,)), ("score_internal_asymmetry", 29, (29,)),
                 ("score_helix_length", 31, (31,)))
TURNER_SHAPES = {
    "score_bulge": (31,), "score_dangle3": (8, 5), "score_dangle5": (8, 5), "score_duplex_init": (1,),
    "score_hairpin": (31,), "score_int11": (8, 8, 5, 5), "score_int21": (8, 8, 5, 5, 5),
    "score_int22": (7, 7, 5, 5, 5, 5), "score_internal": (31,), "score_lxc": (1,), "score_max_ninio": (1,),
    "score_mismatch_external": (8, 5, 5), "score_mismatch_hairpin": (8, 5, 5), "score_mismatch_internal": (8, 5, 5),
    "score_mismatch_internal_1n": (8, 5, 5), "score_mismatch_internal_23": (8, 5, 5),
    "score_mismatch_multi": (8, 5, 5), "score_ml_base": (1,), "score_ml_closing": (1,), "score_ml_intern": (1,),
    "score_ninio": (1,), "score_stack": (8, 8), "score_terminalAU": (1,),
}


def tensor_shapes(s: dict) -> dict[str, tuple[int, ...]]:
    """Torch names of the side file's tensors with their shapes, for settings `s`."""
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (6, s["embed_size"])}
    p = s["projection"]
    shapes.update({"proj_head.dense.weight": (p, s["hidden_size"]), "proj_head.dense.bias": (p,),
                   "proj_head.projection.weight": (p, p), "proj_head.projection.bias": (p,)})
    width = s["embed_size"] + p
    for i, (filters, kernel) in enumerate(zip(s["num_filters"], s["filter_size"])):
        shapes.update({f"conv.{i}.conv.weight": (filters, width, kernel), f"conv.{i}.conv.bias": (filters,),
                       f"conv.{i}.norm.weight": (filters,), f"conv.{i}.norm.bias": (filters,)})
        width = filters
    units = s["num_lstm_units"]
    for layer in range(s["num_lstm_layers"]):
        for suffix in ("", "_reverse"):
            shapes.update({f"lstm.weight_ih_l{layer}{suffix}": (4 * units, width),
                           f"lstm.weight_hh_l{layer}{suffix}": (4 * units, units),
                           f"lstm.bias_ih_l{layer}{suffix}": (4 * units,),
                           f"lstm.bias_hh_l{layer}{suffix}": (4 * units,)})
        width = 2 * units
    shapes.update({"lstm_norm.weight": (width,), "lstm_norm.bias": (width,)})
    for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
        shapes.update({f"attention.{proj}.weight": (width, width), f"attention.{proj}.bias": (width,)})
    for i, (filters, kernel) in enumerate(zip(s["num_paired_filters"], s["paired_filter_size"])):
        shapes.update({f"paired_conv.{i}.conv.weight": (filters, width, kernel, kernel),
                       f"paired_conv.{i}.conv.bias": (filters,),
                       f"paired_conv.{i}.norm.weight": (filters,), f"paired_conv.{i}.norm.bias": (filters,)})
        width = filters
    for j, units in enumerate(s["num_hidden_units"]):  # Linear, LayerNorm, CELU, Dropout
        shapes.update({f"paired_fc.{4 * j}.weight": (units, width), f"paired_fc.{4 * j}.bias": (units,),
                       f"paired_fc.{4 * j + 1}.weight": (units,), f"paired_fc.{4 * j + 1}.bias": (units,)})
        width = units
    last = 4 * len(s["num_hidden_units"])
    shapes.update({f"paired_fc.{last}.weight": (3, width), f"paired_fc.{last}.bias": (3,)})
    for table, size, _ in LENGTH_TABLES:
        shapes.update({f"length.{table}.weight": (1, size), f"length.{table}.bias": (1,)})
    shapes.update({f"turner.{name}": shape for name, shape in TURNER_SHAPES.items()})
    return shapes


def metadata(settings: dict) -> dict[str, str]:
    return settings_metadata(FORMAT, FORMAT_VERSION, settings)


def read_settings(folder: str | Path) -> dict:
    """The settings recorded in a folder's side file, or `ModelFolderError` saying what to do."""
    path = Path(folder) / SIDE_FILE
    settings = read_side_file_settings(folder, SIDE_FILE, FORMAT, FORMAT_VERSION, kind="a converted structure model",
                                       contents="a structure network",
                                       how="convert the official MixedFold checkpoint (output_ft/ssp/...) with "
                                           "rnaernie-convert --backbone")
    try:
        tensor_shapes(settings)
    except (KeyError, ValueError, TypeError):
        raise ModelFolderError(f"{path} has no readable settings; convert the checkpoint again.") from None
    if any(settings.get(key) != value for key, value in FIXED.items()):
        raise ModelFolderError(f"{path} records settings this version does not run; convert the checkpoint again "
                               "with the current rnaernie-convert.")
    return settings
