"""The lean obvious converter, a second baseline for the benchmark (never for users).

    python benchmarks/naive_numpy_convert.py model_state.pdparams OUT_DIR

What a careful first attempt without torch looks like: `pickle.load` the whole file (it runs any
code in it: only for our own generated checkpoints), rename every array and transpose the Linear
weights with numpy, and write them with `safetensors.numpy.save_file`, with a `config.json` made from
the `model_config.json` beside the checkpoint. No model is built; no vocabulary pruning, no checks,
no verification. The torch baseline (`naive_torch_convert.py`) shares its reading and renaming.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

RENAMES = (("self_attn.q_proj", "attention.self.query"), ("self_attn.k_proj", "attention.self.key"),
           ("self_attn.v_proj", "attention.self.value"), ("self_attn.out_proj", "attention.output.dense"),
           ("norm1", "attention.output.LayerNorm"), ("linear1", "intermediate.dense"),
           ("linear2", "output.dense"), ("norm2", "output.LayerNorm"), ("layer_norm", "LayerNorm"),
           ("cls.predictions.transform.weight", "cls.predictions.transform.dense.weight"),
           ("cls.predictions.transform.bias", "cls.predictions.transform.dense.bias"),
           ("cls.predictions.LayerNorm", "cls.predictions.transform.LayerNorm"))


def transformers_name(key: str) -> str:
    """A PaddleNLP 2.4 ERNIE key as transformers' BERT names it."""
    name = key.replace("ernie.", "bert.", 1).replace("encoder.layers.", "encoder.layer.")
    for old, new in RENAMES:
        name = name.replace(old, new)
    return name


def is_linear_weight(key: str, array) -> bool:
    """Paddle stores Linear weights [in, out], transformers [out, in]."""
    return array.ndim == 2 and "embeddings" not in key and key != "cls.predictions.decoder_weight"


def read_state(checkpoint: str) -> dict:
    with open(checkpoint, "rb") as handle:
        state = pickle.load(handle, encoding="latin1")
    state.pop("StructuredToParameterName@@", None)
    return state


def renamed(state: dict, wrap, transpose) -> dict:
    """transformers' names for `state`'s arrays, each wrapped by `wrap`, Linear weights by `transpose`."""
    weights = {}
    for key, array in state.items():
        if key == "cls.predictions.decoder_weight":
            weights["cls.predictions.decoder.weight"] = wrap(array)
        elif key == "cls.predictions.decoder_bias":
            weights["cls.predictions.bias"] = weights["cls.predictions.decoder.bias"] = wrap(array)  # both names in use
        else:
            weights[transformers_name(key)] = transpose(wrap(array)) if is_linear_weight(key, array) else wrap(array)
    return weights


def main(checkpoint: str, out_dir: str) -> None:
    weights = renamed(read_state(checkpoint), lambda array: array, lambda array: np.ascontiguousarray(array.T))
    paddle = json.loads((Path(checkpoint).parent / "model_config.json").read_text())["init_args"][0]
    config = {key: paddle[key] for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                           "intermediate_size", "hidden_act", "max_position_embeddings",
                                           "type_vocab_size", "pad_token_id")}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    save_file(weights, str(Path(out_dir) / "model.safetensors"), metadata={"format": "pt"})
    (Path(out_dir) / "config.json").write_text(json.dumps(
        {**config, "architectures": ["BertForMaskedLM"], "model_type": "bert", "layer_norm_eps": 1e-12,
         "tie_word_embeddings": False}, indent=2))


if __name__ == "__main__":
    main(*sys.argv[1:3])
