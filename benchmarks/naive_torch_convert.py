"""The obvious torch-based converter, the baseline of issue 24's default-command target (never for users).

    python benchmarks/naive_torch_convert.py model_state.pdparams OUT_DIR

What a user would first write: `pickle.load` the whole file (it runs any code in it: only for our own
generated checkpoints), rename and transpose with numpy, turn the arrays into torch tensors and write them
with `safetensors.torch.save_file`, build the tokenizer with `tokenizers` (the official vocabulary, one token
a character) and the config with transformers' `BertConfig`. It builds no model and makes no checks: no
vocabulary pruning, no verification. The lean baseline (`naive_numpy_convert.py`) shares its reading and
renaming.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from naive_numpy_convert import read_state, renamed
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BertConfig

VOCAB = Path(__file__).resolve().parents[1] / "convert" / "data" / "vocab_1MER.txt"


def main(checkpoint: str, out_dir: str) -> None:
    arrays = renamed(read_state(checkpoint), lambda array: array, lambda array: np.ascontiguousarray(array.T))
    weights = {name: torch.from_numpy(np.array(array)) for name, array in arrays.items()}
    paddle = json.loads((Path(checkpoint).parent / "model_config.json").read_text())["init_args"][0]
    config = BertConfig(**{key: paddle[key] for key in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                        "num_attention_heads", "intermediate_size", "hidden_act",
                                                        "max_position_embeddings", "type_vocab_size", "pad_token_id")},
                        layer_norm_eps=1e-12, tie_word_embeddings=False, architectures=["BertForMaskedLM"])
    vocab = {token: index for index, token in enumerate(VOCAB.read_text().split())}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(out)
    tokenizer.save(str(out / "tokenizer.json"))


if __name__ == "__main__":
    main(*sys.argv[1:3])
