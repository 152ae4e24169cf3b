"""Prove the checks can fail: each deliberate corruption of a converted folder is caught, at every dtype.

Every corruption is one a naive converter makes (a missed transpose, Paddle's default LayerNorm
epsilon, the wrong activation, a non-zero [PAD] input row, a shifted vocabulary row, two
attention heads mixed up). Each must (a) move the outputs away from real PaddleNLP's golden
logits by far more than 1e-5 and (b) make the verifier fail at float32, float16 and bfloat16,
naming the place: the tensor (structure check), the config field (config check), and at float32
the first layer it breaks (parity).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import GOLDEN, TINY_MLM, require
from tests.helpers import kept_source_ids, run_converted

safetensors_torch = require("safetensors.torch")
require("paddle")

PARITY_ATOL = 1e-5  # the tolerance the parity tests assert
HEADS = 4  # tiny fixture: hidden 64, 4 heads
LAYER0 = "bert.encoder.layer.0"
DTYPES = ("float32", "float16", "bfloat16")


def _edit_weights(folder: Path, edit) -> None:
    """Apply `edit` to the weights as float32 numpy arrays (exact for every stored dtype: the edits only
    move values around) and store them back in the folder's dtype."""
    import torch

    path = folder / "model.safetensors"
    stored = safetensors_torch.load_file(path)
    dtype = next(iter(stored.values())).dtype
    tensors = {k: v.float().numpy().copy() for k, v in stored.items()}
    edit(tensors)
    safetensors_torch.save_file({k: torch.from_numpy(np.ascontiguousarray(v)).to(dtype) for k, v in tensors.items()},
                                path, metadata={"format": "pt"})


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


QUERY0, KEY0 = f"{LAYER0}.attention.self.query.weight", f"{LAYER0}.attention.self.key.weight"
NORM0, NORM1 = f"{LAYER0}.attention.output.LayerNorm.weight", f"{LAYER0}.output.LayerNorm.weight"
WORD, DECODER = "bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight"

CORRUPTIONS = {
    # name: (how to corrupt the folder, the tensors or config fields the verifier must name,
    #        the first layer parity must name at float32)
    "two heads' query rows swapped": (lambda f: _edit_weights(f, swap_query_heads), {QUERY0}, "layer 1"),
    "query and key weights swapped": (lambda f: _edit_weights(f, swap(QUERY0, KEY0)), {QUERY0, KEY0}, "layer 1"),
    "the two LayerNorms of a layer swapped": (lambda f: _edit_weights(f, swap(NORM0, NORM1)), {NORM0, NORM1},
                                              "layer 1"),
    "query not transposed": (lambda f: _edit_weights(f, untranspose(QUERY0)), {QUERY0}, "layer 1"),
    "pooler not transposed": (lambda f: _edit_weights(f, untranspose("bert.pooler.dense.weight")),
                              {"bert.pooler.dense.weight"}, "pooler"),
    "MLM transform not transposed": (lambda f: _edit_weights(f, untranspose("cls.predictions.transform.dense.weight")),
                                     {"cls.predictions.transform.dense.weight"}, "logits"),
    "LayerNorm epsilon 1e-5": (lambda f: _edit_config(f, layer_norm_eps=1e-5), {"layer_norm_eps"}, "embeddings"),
    "gelu instead of relu": (lambda f: _edit_config(f, hidden_act="gelu"), {"hidden_act"}, "layer 1"),
    "[PAD] input row not zeroed": (lambda f: _edit_weights(f, nonzero_pad_row), {WORD}, "embeddings"),
    "input vocabulary row shifted": (lambda f: _edit_weights(f, shift_vocab_row), {WORD}, "embeddings"),
    "decoder vocabulary row shifted": (lambda f: _edit_weights(f, shift_decoder_row), {DECODER}, "logits"),
}


def _named(verification: dict) -> set[str]:
    """The tensors and config fields the failed structure and config checks name."""
    checks = verification["checks"]
    return ({problem.split(":")[0] for problem in checks["structure"]["problems"]}
            | {problem["field"] for problem in checks["config"]["problems"]})


def _compare(folder: Path, probes: list[str] | None = None) -> dict:
    from convert.verify import builtin_probes
    from tests.helpers import compare_folder

    return compare_folder(TINY_MLM["2.4"], folder, probes=probes or builtin_probes())


@pytest.fixture
def copy_of(converted_by_dtype, tmp_path):
    """copy_of(dtype): a private copy of the 2.4 fixture converted at `dtype`, free to corrupt."""
    def make(dtype: str) -> Path:
        return Path(shutil.copytree(converted_by_dtype[dtype], tmp_path / dtype))
    return make


@pytest.fixture(scope="module")
def golden():
    path = GOLDEN / "tiny-mlm-2.4.npz"
    if not path.exists():
        pytest.fail(f"{path} is missing: run fixtures/golden/make_golden.py")
    return dict(np.load(path))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_breaks_parity_with_real_paddlenlp(name, converted_copy, golden):
    corrupt = CORRUPTIONS[name][0]
    corrupt(converted_copy)
    out = run_converted(converted_copy, golden["input_ids"])
    kept = kept_source_ids(converted_copy)
    worst = max(np.abs(out["logits"] - golden["logits"][..., kept]).max(),
                np.abs(out["pooled"] - golden["pooled_output"]).max(),
                np.abs(out["hidden_states"] - golden["hidden_states"]).max())
    assert worst > 10 * PARITY_ATOL, f"{name} went unnoticed: max diff {worst:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_verifier_fails_and_names_the_place_at_every_dtype(name, dtype, copy_of):
    corrupt, place, layer = CORRUPTIONS[name]
    folder = copy_of(dtype)
    corrupt(folder)
    # structure and config do not depend on the probes: at half precision, three short ones keep this fast
    verification = _compare(folder, None if dtype == "float32" else ["GC", "AUGRYKMSWBDHVN..augc", "ACGU" * 30])
    assert verification["verdict"] == "fail"
    assert _named(verification) == place, verification["failure"]
    assert all(item in verification["failure"] for item in place)
    if dtype == "float32":  # the folder's weights are what parity runs: it names the layer too
        assert verification["first_divergent_layer"] == layer


def test_intact_folder_passes_with_margin(converted_dirs):
    from convert.verify import builtin_probes
    from tests.helpers import compare_folder

    for layout, checkpoint in TINY_MLM.items():
        verification = compare_folder(checkpoint, converted_dirs[layout], probes=builtin_probes())
        assert verification["verdict"] == "pass", layout
        assert verification["failed_checks"] == [] and verification["failure"] is None
        assert verification["max_abs_logit_diff"] < 1e-5
        assert verification["masked_argmax_agreement"] == 1.0
        assert "stored_parity" not in verification["checks"]  # float32: the stored weights are the mapping


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_faithful_half_precision_folder_passes(dtype, converted_by_dtype):
    from convert.verify import STORED_RTOL

    verification = _compare(converted_by_dtype[dtype])
    assert verification["verdict"] == "pass", verification["failure"]
    checks = verification["checks"]
    assert checks["structure"]["dtype"] == dtype and checks["structure"]["tensors"] == 46
    assert verification["max_abs_logit_diff"] < 1e-5  # the float32 mapping, at the float32 tolerance
    stored = checks["stored_parity"]
    assert stored["passed"] and stored["rtol"] == STORED_RTOL[dtype]
    worst = max(row["max_rel"] for row in stored["layers"])
    assert 0 < worst < STORED_RTOL[dtype]  # the rounding error is there, and measured


def test_stored_parity_fails_beyond_its_tolerance(converted_by_dtype, monkeypatch):
    import convert.verify

    monkeypatch.setitem(convert.verify.STORED_RTOL, "float16", 1e-6)
    verification = _compare(converted_by_dtype["float16"])
    assert verification["failed_checks"] == ["stored_parity"]
    assert verification["first_divergent_layer"] == "embeddings"
    assert "float16 folder as stored: first divergence at embeddings" in verification["failure"]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_missing_or_extra_tensor_is_named(dtype, copy_of):
    folder = copy_of(dtype)

    def edit(tensors):
        tensors["bert.extra.weight"] = tensors.pop("bert.pooler.dense.bias")

    _edit_weights(folder, edit)
    problems = _compare(folder)["checks"]["structure"]["problems"]
    assert problems == ["bert.pooler.dense.bias: missing from model.safetensors",
                        "bert.extra.weight: in model.safetensors but not in the checkpoint's mapping"]


def test_weights_stored_in_another_dtype_are_named(converted_by_dtype, tmp_path):
    folder = Path(shutil.copytree(converted_by_dtype["float16"], tmp_path / "f"))
    shutil.copy(converted_by_dtype["bfloat16"] / "model.safetensors", folder / "model.safetensors")
    verification = _compare(folder)
    assert verification["failed_checks"][0] == "structure"
    assert "stored as bfloat16, the conversion record says float16" in verification["failure"]


@pytest.mark.parametrize("changes", [{"max_position_embeddings": 600}, {"type_vocab_size": 3},
                                     {"num_hidden_layers": 3}, {"position_embedding_type": "relative_key"},
                                     {"vocab_size": 40}])
def test_a_config_field_that_changes_the_model_fails_by_name(changes, converted_copy):
    """Even where transformers cannot build the model from it, the config check names the field."""
    _edit_config(converted_copy, **changes)
    verification = _compare(converted_copy)
    assert verification["verdict"] == "fail"
    assert {problem["field"] for problem in verification["checks"]["config"]["problems"]} == set(changes)


def test_a_config_field_added_or_removed_fails(converted_copy):
    config = json.loads((converted_copy / "config.json").read_text())
    del config["pad_token_id"]
    config["chunk_size_feed_forward"] = 16
    (converted_copy / "config.json").write_text(json.dumps(config))
    problems = _compare(converted_copy)["checks"]["config"]["problems"]
    assert problems == [{"field": "chunk_size_feed_forward", "folder": 16, "expected": "(absent)"},
                        {"field": "pad_token_id", "folder": "(absent)", "expected": 0}]


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


@pytest.mark.parametrize("name, dtype, says", [
    ("two heads' query rows swapped", "float16", f"structure: {QUERY0}: "),
    ("LayerNorm epsilon 1e-5", "float16", "config: config.json layer_norm_eps is 1e-05, the checkpoint gives 1e-12"),
    ("query not transposed", "bfloat16", f"structure: {QUERY0}: "),
    ("gelu instead of relu", "bfloat16", "config: config.json hidden_act is 'gelu', the checkpoint gives 'relu'"),
])
def test_cli_fails_a_corrupted_half_precision_folder(name, dtype, says, copy_of):
    folder = copy_of(dtype)
    CORRUPTIONS[name][0](folder)
    proc = subprocess.run([sys.executable, "-m", "convert.cli", str(TINY_MLM["2.4"]), str(folder), "--verify-only"],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
    saved = json.loads((folder / "verification.json").read_text())
    assert saved["verdict"] == "fail" and says in saved["failure"]


def test_python_api_raises_parity_error(converted_copy):
    from convert.errors import ParityError, describe
    from convert.verify import verify_conversion

    CORRUPTIONS["gelu instead of relu"][0](converted_copy)
    with pytest.raises(ParityError, match="hidden_act .*; parity: first divergence at layer 1") as caught:
        verify_conversion(TINY_MLM["2.4"], converted_copy, say=lambda m: None)
    assert describe(caught.value)[1] == 1


def test_a_tokenizer_that_breaks_the_official_rules_fails(converted_copy):
    path = converted_copy / "tokenizer.json"
    tokenizer = json.loads(path.read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab["A"], vocab["U"] = vocab["U"], vocab["A"]
    path.write_text(json.dumps(tokenizer))
    verification = _compare(converted_copy)
    assert verification["failed_checks"] == ["tokenizer"]  # the weights and config are fine; the tokenizer is not
    assert verification["first_divergent_layer"] is None
    assert verification["checks"]["tokenizer"]["mismatched_probes"]
