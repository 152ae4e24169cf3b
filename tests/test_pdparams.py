"""The safe reader on files written by the real `paddle.save` (not only by our generator)."""

from __future__ import annotations

import numpy as np
import pytest

from convert.pdparams import NAME_TABLE_KEY, load_pdparams
from tests.conftest import require

paddle = require("paddle")


@pytest.fixture(scope="module")
def layer():
    paddle.seed(3)
    model = paddle.nn.Sequential(paddle.nn.Embedding(39, 16, padding_idx=0), paddle.nn.LayerNorm(16),
                                 paddle.nn.Linear(16, 24))
    return model


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_reads_what_paddle_save_writes(layer, tmp_path, protocol):
    path = tmp_path / "model_state.pdparams"
    state = layer.state_dict()
    state["extra.bf16"] = paddle.to_tensor(np.linspace(-2, 2, 6, dtype=np.float32)).astype("bfloat16")
    state["extra.int64"] = paddle.to_tensor(np.arange(5, dtype=np.int64))
    paddle.save(state, str(path), protocol=protocol)

    checkpoint = load_pdparams(path)
    expected = paddle.load(str(path), return_numpy=True)  # trusted: we just wrote it
    assert set(checkpoint.tensors) == set(expected) - {NAME_TABLE_KEY}
    for key, array in checkpoint.tensors.items():
        np.testing.assert_array_equal(array, expected[key], err_msg=key)
        assert array.dtype == expected[key].dtype, key
    assert checkpoint.tensors["extra.bf16"].dtype == np.uint16  # Paddle stores bfloat16 as its bit pattern
    assert checkpoint.parameter_names["0.weight"] == layer[0].weight.name
    assert checkpoint.protocol == protocol


def test_bfloat16_weights_widen_exactly():
    from convert.mapping import as_float32

    values = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # exactly representable in bfloat16
    np.testing.assert_array_equal(as_float32(bits), values)


def test_a_paddle_saved_model_converts_and_verifies(tmp_path):
    """A model built and saved by Paddle itself (its own initialisation, its own paddle.save)."""
    from convert.paddle_reference import ErnieReference, _MaskedLMHead
    from convert.pipeline import convert_checkpoint
    from convert.verify import verify_conversion
    from convert.paddle_config import load_paddle_config
    from fixtures.generate import build_config, write_config

    raw = build_config("tiny")
    write_config(raw, "mlm", "2.4", tmp_path)
    config = load_paddle_config(tmp_path / "model_config.json")
    paddle.seed(5)
    encoder, head = ErnieReference(config), _MaskedLMHead(config)
    state = {f"ernie.{k}": v for k, v in encoder.state_dict().items()}
    state.update({f"cls.predictions.{k}": v for k, v in head.state_dict().items()})
    state["cls.predictions.decoder_weight"] = state["ernie.embeddings.word_embeddings.weight"]  # tied, as saved
    paddle.save(state, str(tmp_path / "model_state.pdparams"))

    out = tmp_path / "out"
    convert_checkpoint(tmp_path / "model_state.pdparams", out)
    record = verify_conversion(tmp_path / "model_state.pdparams", out, say=lambda m: None)
    assert record["verdict"] == "pass" and record["max_abs_logit_diff"] < 1e-5
