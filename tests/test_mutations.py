"""Prove the checks can fail: each deliberate corruption of a converted folder is caught.

Every corruption is one a naive converter makes (a missed transpose, Paddle's default LayerNorm
epsilon, the wrong activation, a non-zero [PAD] input row, a shifted vocabulary row, two
attention heads mixed up). Each must (a) move the outputs away from real PaddleNLP's golden
logits by far more than 1e-5 and (b) make the verifier fail, naming the first layer it breaks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import GOLDEN, TINY_MLM
from tests.helpers import kept_source_ids, run_converted

safetensors_numpy = pytest.importorskip("safetensors.numpy")
pytest.importorskip("paddle")

PARITY_ATOL = 1e-5  # the tolerance the parity tests assert
HEADS = 4  # tiny fixture: hidden 64, 4 heads
LAYER0 = "bert.encoder.layer.0"


def _edit_weights(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    tensors = {k: v.copy() for k, v in safetensors_numpy.load_file(path).items()}
    edit(tensors)
    safetensors_numpy.save_file(tensors, path, metadata={"format": "pt"})


def _edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def swap_query_heads(t):
    q = t[f"{LAYER0}.attention.self.query.weight"]
    d = q.shape[0] // HEADS
    q[:d], q[d:2 * d] = q[d:2 * d].copy(), q[:d].copy()


def swap(first, second):
    def edit(t):
        t[first], t[second] = t[second].copy(), t[first].copy()
    return edit


def untranspose(name):
    def edit(t):
        t[name] = np.ascontiguousarray(t[name].T)
    return edit


def nonzero_pad_row(t):
    t["bert.embeddings.word_embeddings.weight"][0] = t["cls.predictions.decoder.weight"][0]


def shift_vocab_row(t):
    w = t["bert.embeddings.word_embeddings.weight"]
    w[6:] = np.roll(w[6:], 1, axis=0)  # A, U, C, G each take their neighbour's row


def shift_decoder_row(t):
    w = t["cls.predictions.decoder.weight"]
    w[6:] = np.roll(w[6:], 1, axis=0)


CORRUPTIONS = {
    # name: (how to corrupt the folder, the first layer the verifier must name)
    "two heads' query rows swapped": (lambda f: _edit_weights(f, swap_query_heads), "layer 1"),
    "query and key weights swapped": (lambda f: _edit_weights(f, swap(
        f"{LAYER0}.attention.self.query.weight", f"{LAYER0}.attention.self.key.weight")), "layer 1"),
    "the two LayerNorms of a layer swapped": (lambda f: _edit_weights(f, swap(
        f"{LAYER0}.attention.output.LayerNorm.weight", f"{LAYER0}.output.LayerNorm.weight")), "layer 1"),
    "query not transposed": (lambda f: _edit_weights(f, untranspose(f"{LAYER0}.attention.self.query.weight")), "layer 1"),
    "pooler not transposed": (lambda f: _edit_weights(f, untranspose("bert.pooler.dense.weight")), "pooler"),
    "MLM transform not transposed": (
        lambda f: _edit_weights(f, untranspose("cls.predictions.transform.dense.weight")), "logits"),
    "LayerNorm epsilon 1e-5": (lambda f: _edit_config(f, layer_norm_eps=1e-5), "embeddings"),
    "gelu instead of relu": (lambda f: _edit_config(f, hidden_act="gelu"), "layer 1"),
    "[PAD] input row not zeroed": (lambda f: _edit_weights(f, nonzero_pad_row), "embeddings"),
    "input vocabulary row shifted": (lambda f: _edit_weights(f, shift_vocab_row), "embeddings"),
    "decoder vocabulary row shifted": (lambda f: _edit_weights(f, shift_decoder_row), "logits"),
}


@pytest.fixture(scope="module")
def golden():
    path = GOLDEN / "tiny-mlm-2.4.npz"
    if not path.exists():
        pytest.fail(f"{path} is missing: run fixtures/golden/make_golden.py")
    return dict(np.load(path))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_breaks_parity_with_real_paddlenlp(name, converted_copy, golden):
    corrupt, _ = CORRUPTIONS[name]
    corrupt(converted_copy)
    out = run_converted(converted_copy, golden["input_ids"])
    kept = kept_source_ids(converted_copy)
    worst = max(np.abs(out["logits"] - golden["logits"][..., kept]).max(),
                np.abs(out["pooled"] - golden["pooled_output"]).max(),
                np.abs(out["hidden_states"] - golden["hidden_states"]).max())
    assert worst > 10 * PARITY_ATOL, f"{name} went unnoticed: max diff {worst:.2e}"


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_verifier_names_the_broken_layer(name, converted_copy):
    from convert.verify import builtin_probes, compare

    corrupt, layer = CORRUPTIONS[name]
    corrupt(converted_copy)
    verification = compare(TINY_MLM["2.4"], converted_copy, probes=builtin_probes(), atol=None, say=lambda m: None)
    assert verification["verdict"] == "fail"
    assert verification["first_divergent_layer"] == layer


def test_intact_folder_passes_with_margin(converted_dirs):
    from convert.verify import builtin_probes, compare

    for layout, checkpoint in TINY_MLM.items():
        verification = compare(checkpoint, converted_dirs[layout], probes=builtin_probes(), atol=None,
                               say=lambda m: None)
        assert verification["verdict"] == "pass", layout
        assert verification["max_abs_logit_diff"] < 1e-5
        assert verification["masked_argmax_agreement"] == 1.0


def test_cli_exits_1_and_names_the_layer(converted_copy, tmp_path):
    CORRUPTIONS["pooler not transposed"][0](converted_copy)
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "convert.cli", str(TINY_MLM["2.4"]), str(converted_copy), "--verify-only",
         "--report", str(report)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "first divergence at pooler" in proc.stderr
    assert "Traceback" not in proc.stderr
    saved = json.loads(report.read_text())
    assert saved["verdict"] == "fail" and saved["first_divergent_layer"] == "pooler"
    assert json.loads((converted_copy / "verification.json").read_text())["verdict"] == "fail"
    assert "FAILED" in (converted_copy / "README.md").read_text()


def test_python_api_raises_parity_error(converted_copy):
    from convert.errors import ParityError, describe
    from convert.verify import verify_conversion

    CORRUPTIONS["gelu instead of relu"][0](converted_copy)
    with pytest.raises(ParityError, match="first divergence at layer 1") as caught:
        verify_conversion(TINY_MLM["2.4"], converted_copy, say=lambda m: None)
    assert describe(caught.value)[1] == 1


def test_a_tokenizer_that_breaks_the_official_rules_fails(converted_copy):
    from convert.verify import builtin_probes, compare

    path = converted_copy / "tokenizer.json"
    tokenizer = json.loads(path.read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab["A"], vocab["U"] = vocab["U"], vocab["A"]
    path.write_text(json.dumps(tokenizer))
    verification = compare(TINY_MLM["2.4"], converted_copy, probes=builtin_probes(), atol=None, say=lambda m: None)
    assert verification["verdict"] == "fail"
    assert verification["first_divergent_layer"] is None  # the weights are fine; the tokenizer is not
    assert verification["tokenizer"]["mismatched_probes"]
