"""The obvious torch-based converter, as a baseline for the benchmark (never for users).

    python benchmarks/naive_torch_convert.py model_state.pdparams OUT_DIR

What a first attempt looks like: `pickle.load` the whole file (it runs any code in it: only for our
own generated checkpoints), turn every array into a torch tensor, rename and transpose it, build a
stock `BertForMaskedLM` from a config, `load_state_dict`, and `save_pretrained`. No vocabulary
pruning, no checks, no verification: it is the floor the real command's cost is measured against.
"""

from __future__ import annotations

import sys

import torch
from naive_numpy_convert import read_state, renamed
from transformers import BertConfig, BertForMaskedLM


def main(checkpoint: str, out_dir: str) -> None:
    weights = renamed(read_state(checkpoint), torch.from_numpy, lambda tensor: tensor.T.contiguous())
    hidden = weights["bert.embeddings.word_embeddings.weight"].shape[1]
    config = BertConfig(vocab_size=weights["bert.embeddings.word_embeddings.weight"].shape[0], hidden_size=hidden,
                        num_hidden_layers=sum(k.endswith("attention.self.query.weight") for k in weights),
                        num_attention_heads=hidden // 64, intermediate_size=4 * hidden, hidden_act="relu",
                        max_position_embeddings=weights["bert.embeddings.position_embeddings.weight"].shape[0],
                        layer_norm_eps=1e-12, tie_word_embeddings=False)
    model = BertForMaskedLM(config)
    model.load_state_dict(weights, strict=False)
    model.save_pretrained(out_dir)


if __name__ == "__main__":
    main(*sys.argv[1:3])
