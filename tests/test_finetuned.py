"""Fine-tuned classifiers, the bare encoder and the ind_cls variant: detect, convert, verify."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert.errors import ConfigError, ConversionError
from convert.heads import LNCRNA_LABELS, NRC_LABELS, detect_head
from convert.pipeline import convert_checkpoint
from fixtures.generate import write_checkpoint
from rnaernie.long_sequence import chunk_input_ids
from tests.conftest import FIXTURES, GOLDEN, require
from tests.helpers import run_converted

require("transformers")
require("torch")

KINDS = {  # fixture -> (head found, transformers class)
    "tiny-seqcls-13": ("sequence-classifier", "BertForSequenceClassification"),
    "tiny-seqcls-2": ("sequence-classifier", "BertForSequenceClassification"),
    "tiny-tokcls-5": ("token-classifier", "BertForTokenClassification"),  # its config.json names the class
    "tiny-encoder": ("encoder", "BertModel"),
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return {name: convert_checkpoint(FIXTURES / name / "model_state.pdparams",
                                     tmp_path_factory.mktemp(name) / "out") for name in KINDS}


@pytest.mark.parametrize("name", list(KINDS))
def test_kind_is_detected_and_loads_with_its_stock_class(name, converted):
    head, architecture = KINDS[name]
    result = converted[name]
    assert (result.head, result.architecture) == (head, architecture)
    config = json.loads((result.out_dir / "config.json").read_text())
    assert config["architectures"] == [architecture]


@pytest.mark.parametrize("batch", ["", "long_"])
@pytest.mark.parametrize("name", list(KINDS))
def test_matches_real_paddlenlp(name, batch, converted):
    golden = np.load(GOLDEN / f"{name}.npz")
    out = run_converted(converted[name].out_dir, golden[f"{batch}input_ids"])
    assert np.abs(out["hidden_states"] - golden[f"{batch}hidden_states"]).max() <= 1e-5
    assert np.abs(out["pooled"] - golden[f"{batch}pooled_output"]).max() <= 1e-5
    if f"{batch}logits" in golden:
        assert out["logits"].shape == golden[f"{batch}logits"].shape
        assert np.abs(out["logits"] - golden[f"{batch}logits"]).max() <= 1e-5


def test_official_label_orders(converted):
    from transformers import AutoConfig

    nrc = AutoConfig.from_pretrained(converted["tiny-seqcls-13"].out_dir)
    assert [nrc.id2label[i] for i in range(13)] == list(NRC_LABELS)
    assert nrc.label2id["miRNA"] == 12
    lnc = AutoConfig.from_pretrained(converted["tiny-seqcls-2"].out_dir)
    assert [lnc.id2label[i] for i in range(2)] == list(LNCRNA_LABELS) == ["lnc", "pc"]


def test_labels_file(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("coding\nnoncoding\n")
    result = convert_checkpoint(FIXTURES / "tiny-seqcls-2" / "model_state.pdparams", tmp_path / "out", labels=labels)
    config = json.loads((result.out_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "coding", "1": "noncoding"}
    labels.write_text("a\nb\nc\n")
    with pytest.raises(ConfigError, match="has 3 labels but the classifier has 2 outputs"):
        convert_checkpoint(FIXTURES / "tiny-seqcls-2" / "model_state.pdparams", tmp_path / "out2", labels=labels)


def test_prefixed_encoder_and_ind_cls_variants(tmp_path):
    assert detect_head({"ernie.embeddings.word_embeddings.weight"}).layout.name == "encoder-prefixed"
    checkpoint = write_checkpoint(tmp_path / "adhoc", head="indcls")
    result = convert_checkpoint(checkpoint, tmp_path / "out")
    assert result.head == "masked-lm" and result.left_out == ("ind_cls.weight", "ind_cls.bias")
    assert "`ind_cls.weight`" in (result.out_dir / "README.md").read_text()


def test_unrecognised_checkpoint_lists_its_keys():
    with pytest.raises(ConversionError, match="no word embeddings found; keys: bert.foo, head.bar"):
        detect_head({"bert.foo", "head.bar"})


def test_chunk_layout_matches_the_official_collator():
    # [CLS] 1..1100 [SEP] -> 3 chunks: [CLS] 510 nt [SEP] | [CLS] 510 nt [SEP] | [CLS] rest [SEP] pad... [SEP]
    ids = [2] + list(range(10, 1110)) + [3]
    chunks = chunk_input_ids(ids, cls_id=2, sep_id=3)
    assert [len(c) for c in chunks] == [512, 512, 512]
    assert chunks[0] == [2] + list(range(10, 520)) + [3]
    assert chunks[1] == [2] + list(range(520, 1030)) + [3]
    tail = list(range(1030, 1110)) + [3]
    assert chunks[2] == [2] + tail + [0] * (512 - 2 - len(tail)) + [3]
    assert chunk_input_ids([2, 5, 3], 2, 3) == [[2, 5, 3] + [0] * 508 + [3]]
    assert len(chunk_input_ids([2] + [5] * 5000 + [3], 2, 3)) == 6  # at most 6 chunks, as in the paper's runs


def test_long_sequence_classification_matches_paddle(converted):
    require("paddle")
    from convert.verify import builtin_probes
    from tests.helpers import compare_folder

    for name in ("tiny-seqcls-13", "tiny-seqcls-2"):
        verification = compare_folder(FIXTURES / name / "model_state.pdparams", converted[name].out_dir, probes=builtin_probes())
        assert verification["verdict"] == "pass"
        rows = {row["name"]: row for row in verification["layers"]}
        assert rows["long-sequence logits"]["max_abs"] <= 1e-5 and rows["logits"]["max_abs"] <= 1e-5
