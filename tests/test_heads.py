"""Deciding a checkpoint's kind: the config decides where it names one, --head overrides, and the
ambiguous legacy case (classifier keys, config silent) says what it assumed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from convert.errors import ConversionError
from convert.heads import HEADS, detect_head
from tests.conftest import FIXTURES, require

CLASSIFIER_KEYS = {"ernie.embeddings.word_embeddings.weight", "classifier.weight", "classifier.bias"}
CLI = [sys.executable, "-m", "convert.cli"]


def convert_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args), "--no-verify"], capture_output=True, text=True)


def test_every_kind_has_what_the_pipeline_verifier_and_card_read():
    for head in HEADS.values():
        assert head.layouts and head.architecture.startswith("Bert") and head.auto_class.startswith("AutoModel")
        assert head.pipeline_tag and head.usage.startswith("```python") and head.paddle_classes
        assert (head.reference is None) == (head.logits is None)
    assert [h.name for h in HEADS.values() if h.default_when_ambiguous] == ["sequence-classifier"]


def test_the_config_names_the_kind_when_the_keys_cannot():
    token = detect_head(CLASSIFIER_KEYS, "ErnieForTokenClassification")
    assert token.head.name == "token-classifier" and not token.assumed
    assert token.decided_by == "the config names ErnieForTokenClassification"
    sequence = detect_head(CLASSIFIER_KEYS, "ErnieForSequenceClassification")
    assert sequence.head.name == "sequence-classifier" and not sequence.assumed


def test_a_silent_config_takes_the_official_kind_and_says_so():
    # the official fine-tuned files carry a copy of the pre-training config: ErnieForMaskedLM
    for architecture in (None, "ErnieForMaskedLM"):
        detection = detect_head(CLASSIFIER_KEYS, architecture)
        assert detection.head.name == "sequence-classifier" and detection.assumed
        assert "--head token-classifier" in detection.decided_by


def test_head_option_overrides_and_is_refused_when_the_keys_contradict_it():
    assert detect_head(CLASSIFIER_KEYS, None, "token-classifier").head.name == "token-classifier"
    with pytest.raises(ConversionError, match="--head masked-lm contradicts .* sequence classifier"):
        detect_head(CLASSIFIER_KEYS, None, "masked-lm")
    with pytest.raises(ConversionError, match="not a known kind; use one of masked-lm, "):
        detect_head(CLASSIFIER_KEYS, None, "tokcls")


def test_keys_win_over_a_config_naming_another_kind():
    mlm_keys = {"ernie.embeddings.word_embeddings.weight", "cls.predictions.decoder_weight"}
    detection = detect_head(mlm_keys, "ErnieForTokenClassification")
    assert detection.head.name == "masked-lm" and detection.decided_by == "the tensor names identify it"


def official_style_classifier(tmp_path):
    """A fine-tuned classifier as released: its model_config.json is the pre-training one (ErnieForMaskedLM)."""
    folder = tmp_path / "nRC"
    shutil.copytree(FIXTURES / "tiny-seqcls-2", folder)
    config = json.loads((folder / "model_config.json").read_text())
    config["init_class"] = "ErnieForMaskedLM"
    (folder / "model_config.json").write_text(json.dumps(config))
    return folder / "model_state.pdparams"


def test_legacy_classifier_summary_and_record_say_what_was_assumed(tmp_path):
    proc = convert_cli(official_style_classifier(tmp_path), tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "assumed" in proc.stderr and "pass --head token-classifier for the other" in proc.stderr
    record = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert record["head"] == "sequence-classifier" and record["head_assumed"] is True
    assert "--head token-classifier" in (tmp_path / "out" / "README.md").read_text()


def test_head_option_through_the_cli(tmp_path):
    proc = convert_cli(official_style_classifier(tmp_path), tmp_path / "out", "--head", "token-classifier")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    record = json.loads((tmp_path / "out" / "conversion.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert record["head_decided_by"] == "--head token-classifier chose it"
    assert "pipeline_tag: token-classification" in (tmp_path / "out" / "README.md").read_text()

    refused = convert_cli(FIXTURES / "tiny-mlm-2.4" / "model_state.pdparams", tmp_path / "out2",
                          "--head", "sequence-classifier")
    assert refused.returncode == 2 and refused.stderr.count("error:") == 1 and "Traceback" not in refused.stderr
    assert "contradicts" in refused.stderr and not (tmp_path / "out2").exists()


def test_token_classifier_config_decides_and_verifies(tmp_path):
    require("paddle")
    checkpoint = FIXTURES / "tiny-tokcls-5" / "model_state.pdparams"
    proc = subprocess.run([*CLI, str(checkpoint), str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "token classifier (ErnieForTokenClassification)" in proc.stderr
    assert "the config names ErnieForTokenClassification" in proc.stderr
    verification = json.loads((tmp_path / "out" / "verification.json").read_text())
    logits = next(row for row in verification["layers"] if row["name"] == "logits")
    assert logits["max_abs"] <= 1e-5 and logits["padded_max_abs"] <= 1e-5


def test_verifier_compares_per_token_logits_of_a_token_classifier(tmp_path):
    """A token classifier checked as a sequence classifier would pass a broken per-token head."""
    require("paddle")
    from safetensors.numpy import load_file, save_file

    from convert.pipeline import convert_checkpoint
    from convert.verify import builtin_probes
    from tests.helpers import compare_folder

    checkpoint = FIXTURES / "tiny-tokcls-5" / "model_state.pdparams"
    out = tmp_path / "out"
    convert_checkpoint(checkpoint, out)
    tensors = load_file(out / "model.safetensors")
    tensors["classifier.weight"] = tensors["classifier.weight"][::-1].copy()  # labels' rows reversed
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    verification = compare_folder(checkpoint, out, probes=builtin_probes())
    assert verification["verdict"] == "fail" and verification["first_divergent_layer"] == "logits"


def test_a_folder_converted_as_another_kind_is_refused_by_the_verifier(tmp_path):
    require("paddle")
    from convert.pipeline import convert_checkpoint
    from tests.helpers import compare_folder

    out = tmp_path / "out"
    convert_checkpoint(FIXTURES / "tiny-encoder" / "model_state.pdparams", out)
    shutil.copy(FIXTURES / "tiny-mlm-2.4" / "model_config.json", tmp_path / "model_config.json")
    shutil.copy(FIXTURES / "tiny-mlm-2.4" / "model_state.pdparams", tmp_path / "model_state.pdparams")
    with pytest.raises(ConversionError, match="was converted from a bare encoder .* is a masked LM"):
        compare_folder(tmp_path / "model_state.pdparams", out, probes=["ACGU"])


def test_the_registry_refuses_entries_that_would_collide():
    import dataclasses

    from convert.heads import ENCODER, MASKED_LM, RR_INTERACTION, SEQUENCE_CLASSIFIER, TOKEN_CLASSIFIER, Kind, registry

    assert set(registry(*HEADS.values())) == set(Kind)
    with pytest.raises(ValueError, match="two registry entries for the kind masked-lm"):
        registry(MASKED_LM, dataclasses.replace(ENCODER, kind=Kind.MASKED_LM))
    with pytest.raises(ValueError, match="claim the PaddleNLP class"):
        registry(MASKED_LM, dataclasses.replace(ENCODER, paddle_classes=("ErnieForMaskedLM",)))
    # the two classifiers share their tensor names: detection tells them apart only by the official default
    with pytest.raises(ValueError, match="sequence-classifier, token-classifier are all recognised by"):
        registry(dataclasses.replace(SEQUENCE_CLASSIFIER, default_when_ambiguous=False), TOKEN_CLASSIFIER)
    with pytest.raises(ValueError, match="masked-lm, rr-interaction are all recognised by cnn_lstm.0.weight"):
        registry(RR_INTERACTION, dataclasses.replace(ENCODER, kind=Kind.MASKED_LM, paddle_classes=(),
                                                     fallback=False, layouts=RR_INTERACTION.layouts))


@pytest.mark.parametrize("fixture, kind, config", [
    ("tiny-mlm-2.4", "masked-lm", None),
    ("tiny-seqcls-2", "sequence-classifier", None),
    ("tiny-tokcls-5", "token-classifier", None),
    ("tiny-encoder", "encoder", None),
    ("tiny-rrinter", "rr-interaction", "pretrained/model_config.json"),
])
def test_each_kinds_card_is_its_own(tmp_path, fixture, kind, config):
    """Usage, pipeline tag and sections come from the folder's own kind (two kinds share BertModel)."""
    from convert.heads import head_of

    extra = ["--config", FIXTURES / fixture / config] if config else []
    proc = convert_cli(FIXTURES / fixture / "model_state.pdparams", tmp_path / "out", *extra)
    assert proc.returncode == 0, proc.stderr
    card = (tmp_path / "out" / "README.md").read_text()
    own = head_of(kind)
    assert f"pipeline_tag: {own.pipeline_tag}\n" in card and own.usage in card
    for other in HEADS.values():
        if other.kind.value != kind and other.usage != own.usage:
            assert other.usage not in card, f"{kind}'s card shows {other.name}'s usage"
    assert ("## The interaction head" in card) == (kind == "rr-interaction")
    assert ("InteractionModel" in card) == (kind == "rr-interaction")
    assert ("## Type-guided classification" in card) == (own.type_guided is not None)
