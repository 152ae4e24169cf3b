"""The verifier's Paddle side reproduces real PaddleNLP (golden outputs) — and would notice if it did not."""

from __future__ import annotations

import numpy as np
import pytest

from convert.heads import detect_head
from convert.paddle_config import find_config_file, load_paddle_config
from convert.pdparams import load_pdparams
from tests.conftest import FIXTURES, GOLDEN, require

paddle = require("paddle")

from convert.paddle_reference import build_reference, run_reference  # noqa: E402

ATOL = 1e-5
GOLDEN_FIXTURES = sorted(p.stem for p in GOLDEN.glob("tiny-*.npz"))


def reference_outputs(name: str, input_ids: np.ndarray, epsilon: float | None = None):
    checkpoint = FIXTURES / name / "model_state.pdparams"
    tensors = load_pdparams(checkpoint).tensors
    config = load_paddle_config(find_config_file(checkpoint))
    ernie, top = build_reference(tensors, config, detect_head(set(tensors), config.architecture))
    if epsilon is not None:
        for layer in ernie.sublayers():
            if isinstance(layer, paddle.nn.LayerNorm):
                layer._epsilon = epsilon
    return run_reference(ernie, top, input_ids)


def test_golden_outputs_exist_for_every_kind():
    assert {"tiny-mlm-2.4", "tiny-mlm-2.5", "tiny-encoder", "tiny-seqcls-13", "tiny-seqcls-2"} <= set(GOLDEN_FIXTURES)


@pytest.mark.parametrize("batch", ["", "long_"])
@pytest.mark.parametrize("name", GOLDEN_FIXTURES)
def test_reference_matches_real_paddlenlp(name, batch):
    golden = np.load(GOLDEN / f"{name}.npz")
    ref = reference_outputs(name, golden[f"{batch}input_ids"])
    for layer, (ours, theirs) in enumerate(zip(ref.hidden_states, golden[f"{batch}hidden_states"])):
        assert np.abs(ours - theirs).max() <= ATOL, f"hidden state {layer}"
    assert np.abs(ref.pooled - golden[f"{batch}pooled_output"]).max() <= ATOL
    if f"{batch}logits" in golden:
        assert np.abs(ref.logits - golden[f"{batch}logits"]).max() <= ATOL


def test_golden_files_match_the_committed_fixtures():
    import hashlib

    for name in GOLDEN_FIXTURES:
        recorded = str(np.load(GOLDEN / f"{name}.npz")["fixture_sha256"].reshape(-1)[0])
        actual = hashlib.sha256((FIXTURES / name / "model_state.pdparams").read_bytes()).hexdigest()
        assert recorded == actual, f"{name}: regenerate the golden with fixtures/golden/make_golden.py"


def test_paddle_default_epsilon_would_be_caught():
    golden = np.load(GOLDEN / "tiny-mlm-2.4.npz")
    ref = reference_outputs("tiny-mlm-2.4", golden["input_ids"], epsilon=1e-5)
    assert np.abs(ref.hidden_states[0] - golden["hidden_states"][0]).max() > 10 * ATOL
