"""The contact model: both heads against the formulas they claim, masking, loss, save -> load.

The reference computations here are written out independently of `rnaernie.contact`: the explicit
`[B, L, L, H]` outer product for the hidden head, ESM's contact-head steps for the attention head.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import require

torch = require("torch")
transformers = require("transformers")

from rnaernie.contact import HEAD_FILE, RnaErnieForContactPrediction  # noqa: E402
from rnaernie.errors import ModelFolderError  # noqa: E402

SEQUENCES = ["GGGAAAUCCCAGCUUCGGCU", "ACGUN", "GCAUGCAUGCAUGC"]


@pytest.fixture(scope="module")
def folder(converted_dirs):
    return converted_dirs["2.4"]


def load(folder, head):
    torch.manual_seed(0)  # the untrained head's initial weights
    model = RnaErnieForContactPrediction.from_pretrained(folder, head=head).eval()
    with torch.no_grad():  # a visible bias, so a head that drops it differs
        model.head.regression.bias.fill_(0.3)
    return model


def batch_of(model, sequences=SEQUENCES):
    return model.tokenizer(sequences, padding=True, return_tensors="pt")


def test_hidden_head_equals_a_linear_layer_on_the_explicit_outer_product(folder):
    model = load(folder, "hidden")
    batch = batch_of(model)
    with torch.no_grad():
        logits = model(**batch).logits
        hidden = transformers.BertModel.from_pretrained(folder).eval()(**batch).last_hidden_state[:, 1:-1]
        outer = hidden[:, :, None, :] * hidden[:, None, :, :]           # [B, L, L, H]
        expected = model.head.regression(outer).squeeze(-1)             # Linear(H -> 1) on h_i * h_j
    for row, sequence in enumerate(SEQUENCES):
        n = len(sequence)
        assert torch.allclose(logits[row, :n, :n], expected[row, :n, :n], atol=1e-5, rtol=0)


def esm_contact_logits(attentions, input_ids, attention_mask, special, regression):
    """ESM's EsmContactPredictionHead steps (before its sigmoid), padding and special tokens zeroed."""
    maps = torch.stack(attentions, dim=1)                                  # [B, layers, heads, T, T]
    keep = (attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(special))).float()
    maps = maps * (keep.unsqueeze(1) * keep.unsqueeze(2))[:, None, None]
    maps = maps[..., 1:-1, 1:-1]
    b, layers, heads, length, _ = maps.shape
    maps = maps.reshape(b, layers * heads, length, length)
    maps = maps + maps.transpose(-1, -2)                                   # symmetrize
    a1 = maps.sum(-1, keepdims=True)
    a2 = maps.sum(-2, keepdims=True)
    a12 = maps.sum((-1, -2), keepdims=True)
    maps = maps - a1 * a2 / a12                                            # average product correction
    return regression(maps.permute(0, 2, 3, 1)).squeeze(3)


def test_attention_head_equals_esm_formulas_recomputed(folder):
    model = load(folder, "attention")
    batch = batch_of(model)
    encoder = transformers.BertModel.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(**batch).logits
        attentions = encoder(**batch, output_attentions=True).attentions
        expected = esm_contact_logits(attentions, batch["input_ids"], batch["attention_mask"],
                                      model.special_token_ids, model.head.regression)
    assert model.head.regression.in_features == len(attentions) * attentions[0].shape[1]
    for row, sequence in enumerate(SEQUENCES):
        n = len(sequence)
        assert torch.allclose(logits[row, :n, :n], expected[row, :n, :n], atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", ["hidden", "attention"])
def test_logits_cover_nucleotides_only_are_symmetric_and_masked(folder, head):
    model = load(folder, head)
    batch = batch_of(model)
    logits = model(**batch).logits.detach()
    longest = max(map(len, SEQUENCES))
    assert logits.shape == (len(SEQUENCES), longest, longest)
    assert torch.equal(logits, logits.transpose(1, 2))
    probabilities = model.pair_probabilities(**batch)
    lowest = torch.finfo(logits.dtype).min
    for row, sequence in enumerate(SEQUENCES):
        n = len(sequence)
        assert (logits[row, :n, :n] > lowest).all()
        assert (logits[row, n:, :] == lowest).all() and (logits[row, :, n:] == lowest).all()
        assert (probabilities[row, n:, :] == 0).all() and (probabilities[row, :, n:] == 0).all()
        assert ((probabilities[row, :n, :n] > 0) & (probabilities[row, :n, :n] < 1)).all()


@pytest.mark.parametrize("head", ["hidden", "attention"])
def test_a_sequence_alone_or_in_a_padded_batch_gets_the_same_logits(folder, head):
    model = load(folder, head)
    together = model.pair_probabilities(**batch_of(model))
    for row, sequence in enumerate(SEQUENCES):
        alone = model.pair_probabilities(**batch_of(model, [sequence]))[0]
        n = len(sequence)
        assert torch.allclose(alone, together[row, :n, :n], atol=1e-6, rtol=0)


def test_loss_is_the_cross_entropy_over_the_cells_that_count(folder):
    model = load(folder, "hidden")
    batch = batch_of(model)
    longest = max(map(len, SEQUENCES))
    generator = torch.Generator().manual_seed(1)
    labels = (torch.rand(len(SEQUENCES), longest, longest, generator=generator) < 0.2).long()
    labels[0, 2, 3] = -100
    out = model(**batch, labels=labels)
    assert out.to_tuple()[0] is out.loss  # Trainer reads the loss first
    cells = [(b, i, j) for b, s in enumerate(SEQUENCES) for i in range(len(s)) for j in range(len(s))
             if labels[b, i, j] != -100]
    picked_logits = torch.stack([out.logits[c] for c in cells])
    picked_labels = torch.stack([labels[c] for c in cells]).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(picked_logits, picked_labels)
    assert torch.allclose(out.loss, expected, atol=1e-6)


@pytest.mark.parametrize("head", ["hidden", "attention"])
def test_save_then_load_gives_identical_logits_and_a_stock_encoder_folder(folder, head, tmp_path):
    model = load(folder, head)
    with torch.no_grad():  # a head unlike any fresh one, so loading the side file is what makes them equal
        model.head.regression.weight.normal_()
    batch = batch_of(model)
    model.save_pretrained(tmp_path / "saved")
    loaded = RnaErnieForContactPrediction.from_pretrained(tmp_path / "saved").eval()
    assert loaded.head_kind == head
    assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "saved" / HEAD_FILE), framework="pt") as handle:
        settings = json.loads(handle.metadata()["rnaernie_contact_head"])
    assert settings["head"] == head and settings["special_token_ids"] == [2, 3, 0]
    stock = transformers.AutoModel.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():  # the attention head's encoder runs eager attention, stock AutoModel SDPA: last bits differ
        assert torch.allclose(stock(**batch).last_hidden_state, model.encoder(**batch).last_hidden_state, atol=1e-5)


def test_a_trained_head_of_the_other_kind_is_refused(folder, tmp_path):
    load(folder, "hidden").save_pretrained(tmp_path / "saved")
    with pytest.raises(ModelFolderError, match="holds a trained 'hidden' contact head"):
        RnaErnieForContactPrediction.from_pretrained(tmp_path / "saved", head="attention")


def test_a_damaged_head_file_is_one_clear_error(folder, tmp_path):
    load(folder, "hidden").save_pretrained(tmp_path / "saved")
    (tmp_path / "saved" / HEAD_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ModelFolderError, match="is damaged"):
        RnaErnieForContactPrediction.from_pretrained(tmp_path / "saved")
