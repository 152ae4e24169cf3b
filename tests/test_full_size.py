"""Slow: a full-size (12 layers, hidden 768, vocab 39; 86M parameters) checkpoint, end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fixtures.generate import write_checkpoint
from tests.conftest import require

pytestmark = pytest.mark.slow
require("paddle")


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("full"), preset="full", seed=7)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "convert.cli", *map(str, args)], capture_output=True, text=True)


def test_full_size_converts_and_verifies(full_checkpoint, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(full_checkpoint, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "86,649,620 parameters" in proc.stderr
    verification = json.loads((out / "verification.json").read_text())
    assert verification["verdict"] == "pass"
    assert verification["max_abs_logit_diff"] < 3e-5
    assert [row["name"] for row in verification["layers"]][:13] == ["embeddings"] + [f"layer {i}" for i in range(1, 13)]
    assert verification["probe"]["max_length"] == 510

    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.num_hidden_layers == 12 and model.config.hidden_size == 768
    assert tokenizer("ACGUT")["input_ids"] == [2, 6, 8, 9, 7, 7, 3]

    # a corrupted copy of the same folder fails and names the layer
    from safetensors.numpy import load_file, save_file

    tensors = load_file(out / "model.safetensors")
    tensors["bert.pooler.dense.weight"] = tensors["bert.pooler.dense.weight"].T.copy()
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    proc = run_cli(full_checkpoint, out, "--verify-only")
    assert proc.returncode == 1
    assert "first divergence at pooler" in proc.stderr
