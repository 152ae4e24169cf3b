"""Convert the fixtures with the CLI, load them with stock transformers only, match real PaddleNLP."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import GOLDEN, TINY_MLM, require
from tests.helpers import kept_source_ids, run_converted

require("transformers")
require("torch")

PARITY_ATOL = 1e-5


def test_cli_converts_and_summarises(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "convert.cli", str(TINY_MLM["2.4"]), str(out), "--no-verify"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "46 tensors" in proc.stderr and "dropped 29 vocabulary tokens" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "conversion.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json", "type_guided.safetensors", "vocab.txt"]


STOCK_ONLY = textwrap.dedent("""
    import importlib.abc, json, sys
    class Block(importlib.abc.MetaPathFinder):  # prove the folder needs nothing from this project
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("convert", "rnaernie"):
                raise ImportError("project code must not be needed: " + name)
    sys.meta_path.insert(0, Block())
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer, pipeline
    folder = sys.argv[1]
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    base = AutoModel.from_pretrained(folder, trust_remote_code=False)
    mlm = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    fill = pipeline("fill-mask", model=folder, trust_remote_code=False)
    batch = tok(["acgtAC", "GGU"], padding=True, return_tensors="pt")
    result = {
        "model_type": config.model_type, "pooler": base.pooler is not None,
        "pooled": list(base(**batch).pooler_output.shape),
        "logits": list(mlm(**batch).logits.shape),
        "fill": [r["token_str"] for r in fill("ACG[MASK]U", top_k=3)],
        "decoded": tok.decode(batch["input_ids"][0], skip_special_tokens=True),
    }
    print(json.dumps(result))
""")


def test_loads_with_stock_transformers_alone(converted_dirs):
    proc = subprocess.run([sys.executable, "-c", STOCK_ONLY, str(converted_dirs["2.4"])],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["model_type"] == "bert" and result["pooler"]
    assert result["pooled"] == [2, 64] and result["logits"] == [2, 8, 10]
    assert len(result["fill"]) == 3
    assert result["decoded"] == "ACGUAC"


def test_safetensors_metadata_and_config(converted_dirs):
    from safetensors import safe_open

    folder = converted_dirs["2.4"]
    with safe_open(folder / "model.safetensors", framework="np") as f:
        assert f.metadata() == {"format": "pt"}
        assert f.get_tensor("bert.embeddings.word_embeddings.weight").shape == (10, 64)
    config = json.loads((folder / "config.json").read_text())
    for key, value in {"hidden_act": "relu", "layer_norm_eps": 1e-12, "vocab_size": 10, "hidden_size": 64,
                       "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
                       "max_position_embeddings": 513, "type_vocab_size": 2, "tie_word_embeddings": False,
                       "pad_token_id": 0, "position_embedding_type": "absolute"}.items():
        assert config[key] == value, key


@pytest.mark.parametrize("batch", ["", "long_"])
@pytest.mark.parametrize("layout", ["2.4", "2.5"])
def test_parity_with_real_paddlenlp_at_every_position(layout, batch, converted_dirs):
    """Golden outputs made by PaddleNLP 2.8.1 itself (fixtures/golden/make_golden.py), padded positions
    included; the `long_` batch holds a 510-nt sequence (512 positions) and a short one padded to it."""
    golden = np.load(GOLDEN / f"tiny-mlm-{layout}.npz")
    input_ids = golden[f"{batch}input_ids"]
    folder = converted_dirs[layout]
    out = run_converted(folder, input_ids)
    assert (input_ids == 0).any(), "the golden batch must contain padded positions"
    kept = kept_source_ids(folder)
    assert np.abs(out["logits"] - golden[f"{batch}logits"][..., kept]).max() <= PARITY_ATOL
    assert out["hidden_states"].shape == golden[f"{batch}hidden_states"].shape
    for layer, (ours, theirs) in enumerate(zip(out["hidden_states"], golden[f"{batch}hidden_states"])):
        assert np.abs(ours - theirs).max() <= PARITY_ATOL, f"hidden state {layer}"
    assert np.abs(out["pooled"] - golden[f"{batch}pooled_output"]).max() <= PARITY_ATOL


@pytest.mark.parametrize("dtype, numpy_dtype, atol", [("float16", np.float16, 5e-2), ("bfloat16", None, 5e-1)])
def test_half_precision_outputs(dtype, numpy_dtype, atol, tmp_path):
    import torch
    from safetensors.torch import load_file

    from convert.pipeline import convert_checkpoint

    out = tmp_path / dtype
    convert_checkpoint(TINY_MLM["2.4"], out, dtype=dtype)
    tensors = load_file(out / "model.safetensors")
    assert all(t.dtype == getattr(torch, dtype) for t in tensors.values())
    golden = np.load(GOLDEN / "tiny-mlm-2.4.npz")
    logits = run_converted(out, golden["input_ids"])["logits"]
    diff = np.abs(logits - golden["logits"][..., kept_source_ids(out)]).max()
    assert 0 < diff <= atol
