"""The mapping table: every key mapped, every problem reported, tied copies checked."""

from __future__ import annotations

import numpy as np
import pytest

from convert.errors import MappingError
from convert.heads import MASKED_LM, detect_head
from convert.mapping import Transform, apply_transform, expand_rows, plan_mapping
from convert.paddle_config import ErnieConfig
from convert.vocabulary import build_vocabulary, official_vocab_path, read_vocab_file
from fixtures.generate import build_config, make_state

MLM_24 = MASKED_LM.layouts[0]
VOCAB = build_vocabulary(read_vocab_file(official_vocab_path()))
RAW = build_config("tiny")
CONFIG = ErnieConfig(**{k: RAW[k] for k in (
    "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
    "max_position_embeddings", "type_vocab_size", "pad_token_id")})


def state(layout="2.4", head="mlm"):
    tensors, _ = make_state(RAW, head=head, layout=layout)
    return dict(tensors)


@pytest.mark.parametrize("layout, tensors_expected", [("2.4", 45), ("2.5", 46)])
def test_every_tensor_of_both_layouts_is_mapped(layout, tensors_expected):
    tensors = state(layout)
    assert len(tensors) == tensors_expected
    detection = detect_head(set(tensors))
    assert (detection.head.name, detection.layout.name) == ("masked-lm", f"mlm-{layout}")
    plan = plan_mapping(tensors, detection.layout, CONFIG, VOCAB)
    assert len(plan.target_shapes) == 46  # 44 + decoder bias written under both transformers names
    assert plan.target_shapes["bert.embeddings.word_embeddings.weight"] == (10, 64)
    assert plan.target_shapes["bert.encoder.layer.1.intermediate.dense.weight"] == (128, 64)


def test_full_size_key_count_matches_the_official_file():
    full = build_config("full")
    tensors, names = make_state(full, head="mlm", layout="2.4")
    assert len(tensors) == 205 and len(names) == 205


def test_all_problems_are_reported_together():
    tensors = state()
    tensors["ernie.extra.weight"] = np.zeros(3, np.float32)
    del tensors["ernie.encoder.layers.1.norm2.bias"]
    tensors["ernie.encoder.layers.0.linear1.weight"] = tensors["ernie.encoder.layers.0.linear1.weight"].T.copy()
    with pytest.raises(MappingError) as caught:
        plan_mapping(tensors, MLM_24, CONFIG, VOCAB)
    problems = caught.value.problems
    assert any("unexpected tensor ernie.extra.weight" in p for p in problems)
    assert any("missing tensor ernie.encoder.layers.1.norm2.bias" in p for p in problems)
    assert any("linear1.weight has shape (128, 64), expected (64, 128) (stored transposed)" in p for p in problems)


def test_tied_decoder_must_equal_word_embeddings():
    tensors = state()
    tensors["cls.predictions.decoder_weight"] = tensors["cls.predictions.decoder_weight"] + 1
    with pytest.raises(MappingError, match="tied copy"):
        plan_mapping(tensors, MLM_24, CONFIG, VOCAB)


def test_wrong_vocabulary_size_is_named():
    tensors = state()
    tokens = list(read_vocab_file(official_vocab_path()))
    tokens.remove("vaultRNA")
    small = build_vocabulary(tuple(tokens))
    with pytest.raises(MappingError, match="vocabulary has 38 tokens"):
        plan_mapping(tensors, MLM_24, CONFIG, small)


def test_transforms():
    tensors = state()
    rows = {r.source: r for r in expand_rows(MLM_24.rows, CONFIG.num_hidden_layers)}
    q = tensors["ernie.encoder.layers.0.self_attn.q_proj.weight"]
    assert rows["ernie.encoder.layers.0.self_attn.q_proj.weight"].transform is Transform.TRANSPOSE
    np.testing.assert_array_equal(apply_transform(rows["ernie.encoder.layers.0.self_attn.q_proj.weight"], q, VOCAB, 0), q.T)
    word = tensors["ernie.embeddings.word_embeddings.weight"]
    assert np.abs(word[0]).sum() > 0  # the fixture stores a non-zero [PAD] row, like a trained model
    embedded = apply_transform(rows["ernie.embeddings.word_embeddings.weight"], word, VOCAB, 0)
    assert (embedded[0] == 0).all()  # zero: Paddle's padding_idx outputs zeros for [PAD]
    np.testing.assert_array_equal(embedded[1:], word[list(VOCAB.kept_source_ids[1:])])
    decoder = apply_transform(rows["cls.predictions.decoder_weight"], word, VOCAB, 0)
    np.testing.assert_array_equal(decoder, word[list(VOCAB.kept_source_ids)])  # keeps the stored [PAD] row
    np.testing.assert_array_equal(decoder[7], word[36])  # U is the official T row


def test_a_missing_decoder_bias_is_reported_once():
    tensors = state()
    del tensors["cls.predictions.decoder_bias"]  # feeds two transformers names
    with pytest.raises(MappingError) as caught:
        plan_mapping(tensors, MLM_24, CONFIG, VOCAB)
    assert caught.value.problems == ["missing tensor cls.predictions.decoder_bias"]
