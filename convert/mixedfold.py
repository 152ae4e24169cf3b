"""The official secondary-structure model (`MixedFold`): its mapping into `mixedfold.safetensors`.

The released checkpoint (`output_ft/ssp/RNAStrAlign/<variant>/model_state.pdparams`) holds the
Turner-2004 tables (`turner.*`) and the network (`zuker.*`), no encoder and no config: the official
script runs the pre-trained model of the same variant in front of it (`--backbone`). The network's
sizes are read from the tensors' shapes; what shapes cannot tell is what `run_ssp.py` fixes
(`rnaernie.mixedfold_format.FIXED`). The mapping:
* Paddle `Linear` weights are `[in, out]`: transposed; convolutions, norms, embeddings, the LSTM copied;
* each LSTM tensor is saved twice (`lstm.weight_ih_l0` and `lstm.0.cell_fw.weight_ih`, ...): both must
  hold the same values, else the conversion stops naming both; one copy is written;
* `turner.score_terminalAU` (-0.5), which the official class builds and the file lacks, is added.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from convert.errors import ConversionError, MappingError
from convert.mapping import Row, Transform
from rnaernie.mixedfold_format import FIXED, TERMINAL_AU, tensor_shapes

if TYPE_CHECKING:
    import numpy as np

_T, _C = Transform.TRANSPOSE, Transform.COPY
NET, LENGTH = "zuker.net.", "zuker.fc_length."
MARKERS = ("turner.score_stack", NET + "proj_head.dense.weight")


def is_mixedfold(keys) -> bool:
    return all(marker in keys for marker in MARKERS)


def _indices(keys, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for key in keys if (m := re.fullmatch(re.escape(NET) + pattern, key))})


def _count(keys, pattern: str, source: str) -> int:
    found = _indices(keys, pattern)
    if found != list(range(len(found))):
        raise MappingError([f"the layers {pattern} are numbered {found}, not 0..n-1"], source)
    return len(found)


def settings_from(tensors: dict[str, np.ndarray], source: str) -> dict:
    """The network's sizes, read from the checkpoint's shapes, with what run_ssp.py fixes."""
    keys = set(tensors)
    missing = [key for key in MARKERS if key not in keys]
    if missing:
        raise MappingError([f"it is not a MixedFold checkpoint: it has no {missing[0]}"], source)
    conv = f"{NET}encoder.conv.net.{{}}.0.weight"
    paired = f"{NET}fc_paired.conv.{{}}.0.weight"
    n_conv = _count(keys, r"encoder\.conv\.net\.(\d+)\.0\.weight", source)
    n_paired = _count(keys, r"fc_paired\.conv\.(\d+)\.0\.weight", source)
    n_lstm = _count(keys, r"encoder\.lstm\.weight_ih_l(\d+)", source)
    # fc_paired.fc: (Linear, LayerNorm, CELU, Dropout) per hidden layer, then the last Linear
    fc = [tensors[f"{NET}fc_paired.fc.{i}.weight"] for i in _indices(keys, r"fc_paired\.fc\.(\d+)\.weight")]
    linears = [weight for weight in fc if weight.ndim == 2]
    if not linears or linears[-1].shape[1] != 3:
        raise MappingError(["the paired layer does not end in a Linear giving the 3 scores MixedFold reads"], source)
    return {
        **FIXED,
        "hidden_size": int(tensors[NET + "proj_head.dense.weight"].shape[0]),
        "embed_size": int(tensors[NET + "embedding.embedding.weight"].shape[1]),
        "num_filters": [int(tensors[conv.format(i)].shape[0]) for i in range(n_conv)],
        "filter_size": [int(tensors[conv.format(i)].shape[2]) for i in range(n_conv)],
        "num_lstm_layers": n_lstm,
        "num_lstm_units": int(tensors[NET + "encoder.lstm.weight_hh_l0"].shape[1]),
        "num_paired_filters": [int(tensors[paired.format(i)].shape[0]) for i in range(n_paired)],
        "paired_filter_size": [int(tensors[paired.format(i)].shape[2]) for i in range(n_paired)],
        "num_hidden_units": [int(weight.shape[1]) for weight in linears[:-1]],
    }


def rows(settings: dict) -> tuple[Row, ...]:
    """Paddle name -> torch name in mixedfold.safetensors, with the Paddle-side shape and the transform."""
    out = []
    for target, shape in tensor_shapes(settings).items():
        source, transform = _source(target)
        if target == TERMINAL_AU[0]:
            continue  # added, not mapped
        paddle_shape = tuple(reversed(shape)) if transform is _T else shape
        out.append(Row(source, target, paddle_shape, transform))
    return tuple(out)


def _source(target: str) -> tuple[str, Transform]:
    """The Paddle name of a torch tensor of the side file, and how it is carried over."""
    if target.startswith("turner."):
        return target, _C
    layer, rest = target.split(".", 1)
    if layer == "length":
        table, what = rest.rsplit(".", 1)
        return f"{LENGTH}{table}.net.0.{what}", _T if what == "weight" else _C
    index, part = (rest.split(".", 1) + [""])[:2] if layer in ("conv", "paired_conv", "paired_fc") else ("", rest)
    linear = part.endswith("weight") and layer in ("proj_head", "attention")
    if layer == "embedding":
        return NET + "embedding.embedding.weight", _C
    if layer == "proj_head":
        return f"{NET}proj_head.{rest}", _T if linear else _C
    if layer == "conv":
        return f"{NET}encoder.conv.net.{index}.{part.replace('conv.', '0.').replace('norm.', '2.')}", _C
    if layer == "lstm":
        return f"{NET}encoder.lstm.{rest}", _C
    if layer == "lstm_norm":
        return f"{NET}encoder.lstm_ln.{rest}", _C
    if layer == "attention":
        return f"{NET}encoder.att.{rest}", _T if linear else _C
    if layer == "paired_conv":
        return f"{NET}fc_paired.conv.{index}.{part.replace('conv.', '0.').replace('norm.', '1.')}", _C
    if layer == "paired_fc":  # Linear weights at 0, 4, ...; LayerNorms at 1, 5, ...
        return f"{NET}fc_paired.fc.{index}.{part}", _T if part == "weight" and int(index) % 4 == 0 else _C
    raise AssertionError(target)


def lstm_copies(settings: dict) -> tuple[tuple[str, str], ...]:
    """(the cell's own name, the flat name it must equal) for every LSTM tensor."""
    return tuple((f"{NET}encoder.lstm.{layer}.{cell}.{name}", f"{NET}encoder.lstm.{name}_l{layer}{suffix}")
                 for layer in range(settings["num_lstm_layers"]) for suffix, cell in (("", "cell_fw"),
                                                                                        ("_reverse", "cell_bw"))
                 for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


def network_tensors(tensors: dict[str, np.ndarray], source: str) -> tuple[dict[str, np.ndarray], dict]:
    """(the side file's float32 tensors under torch names, the settings) from the checkpoint's tensors.
    Every tensor of the checkpoint is used exactly once (the LSTM's second copies are compared, not written)."""
    import numpy as np

    settings = settings_from(tensors, source)
    plan = rows(settings)
    copies = lstm_copies(settings)
    expected = {row.source for row in plan} | {alias for alias, _ in copies}
    unknown, missing = sorted(set(tensors) - expected), sorted(expected - set(tensors))
    if missing or unknown:
        raise MappingError([f"missing {key}" for key in missing] + [f"unexpected {key}" for key in unknown], source)
    for alias, original in copies:
        if not np.array_equal(tensors[alias], tensors[original]):
            raise MappingError([f"{alias} and {original} are saved copies of one LSTM tensor but differ"], source)
    out = {}
    for row in plan:
        value = np.asarray(tensors[row.source])
        if tuple(value.shape) != row.shape:
            raise MappingError([f"{row.source} has shape {list(value.shape)}, expected {list(row.shape)}"], source)
        if value.dtype != np.float32:
            raise MappingError([f"{row.source} is {value.dtype}, the official model stores float32"], source)
        out[row.target] = np.ascontiguousarray(value.T if row.transform is _T else value)
    out[TERMINAL_AU[0]] = np.array([TERMINAL_AU[1]], dtype=np.float32)
    return out, settings


def check_backbone(settings: dict, hidden: int, backbone: str) -> None:
    """The pre-trained checkpoint must feed this network: its hidden size is proj_head's input."""
    if hidden != settings["hidden_size"]:
        raise ConversionError(f"--backbone {backbone} has hidden size {hidden}, but the structure model's proj_head "
                              f"reads {settings['hidden_size']}; pass the pre-trained checkpoint of the same variant.")


def sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
