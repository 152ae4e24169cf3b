"""Type-guided classification (issue 13): the dropped rows kept aside, stage one, stage two, the CLI.

The reference is `fixtures/golden/type-guided.npz`, made by real PaddleNLP 2.8.1 on the 133 nRC
test records (`fixtures/golden/make_type_golden.py`): `ErnieForMaskedLM` (tiny-mlm-2.4) as the
indicator, `ErnieForSequenceClassification` (tiny-seqcls-13) as the classifier.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.pdparams import load_pdparams
from convert.pipeline import convert_checkpoint
from convert.vocabulary import official_vocab_path, read_vocab_file
from rnaernie.type_guided_rows import RECORD_KEY, SIDE_FILE, read_type_guided_rows
from tests.conftest import FIXTURES, GOLDEN, require

require("transformers")
require("torch")

CLI = [sys.executable, "-m", "rnaernie.cli"]
TOLERANCE = 1e-5
# a few records of every kind for the command-line runs: short ones, the 508-nt one and the 3 longer ones
CLI_RECORDS = [0, 1, 20, 41, 62, 83, 103, 125]


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN / "type-guided.npz"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """The fixtures converted once; tests must not modify these (copy them first)."""
    names = ("tiny-mlm-2.4", "tiny-mlm-2.5", "tiny-seqcls-13", "tiny-seqcls-2")
    return {name: convert_checkpoint(FIXTURES / name / "model_state.pdparams",
                                     tmp_path_factory.mktemp(name) / "out").out_dir for name in names}


@pytest.fixture(scope="module")
def records_fasta(golden, tmp_path_factory) -> Path:
    indices = _cli_indices(golden)
    path = tmp_path_factory.mktemp("records") / "records.fa"
    path.write_text("".join(f">{golden['record_ids'][i]} from nRC\n{golden['sequences'][i]}\n" for i in indices))
    return path


def _cli_indices(golden) -> list[int]:
    return CLI_RECORDS + [i for i, s in enumerate(golden["sequences"]) if len(s) >= 508]


def run(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------------------------ the side file

@pytest.mark.parametrize("name, decoder", [("tiny-mlm-2.4", "cls.predictions.decoder_weight"),
                                           ("tiny-mlm-2.5", "cls.predictions.decoder.weight"),
                                           ("tiny-seqcls-13", None)])
def test_side_file_holds_the_dropped_rows_named_in_official_order(name, decoder, folders):
    source = load_pdparams(FIXTURES / name / "model_state.pdparams").tensors
    vocab = read_vocab_file(official_vocab_path())
    rows = read_type_guided_rows(folders[name])
    assert rows.class_tokens == vocab[7:35] and rows.class_tokens[0] == "RNaseMRPRNA"
    word = source["ernie.embeddings.word_embeddings.weight"]
    np.testing.assert_array_equal(rows.input_ind, word[6])
    np.testing.assert_array_equal(rows.input_classes, word[7:35])
    if decoder is None:
        assert rows.decoder_classes is None and rows.decoder_bias is None
    else:
        bias = source["cls.predictions.decoder_bias"]
        np.testing.assert_array_equal(rows.decoder_classes, source[decoder][7:35])
        np.testing.assert_array_equal(rows.decoder_bias, bias[7:35])


def test_conversion_record_describes_the_side_file(folders):
    record = json.loads((folders["tiny-mlm-2.4"] / "conversion.json").read_text())[RECORD_KEY]
    assert record["file"] == SIDE_FILE and record["role"] == "indicator" and record["dtype"] == "float32"
    assert record["tensors"] == {"input_embeddings.ind": [64], "input_embeddings.classes": [28, 64],
                                 "mlm_decoder.classes": [28, 64], "mlm_decoder_bias.classes": [28]}
    assert record["source_ids"]["[IND]"] == 6 and record["source_ids"]["vaultRNA"] == 34
    classifier = json.loads((folders["tiny-seqcls-13"] / "conversion.json").read_text())[RECORD_KEY]
    assert classifier["role"] == "classifier" and set(classifier["tensors"]) == {"input_embeddings.ind",
                                                                                  "input_embeddings.classes"}


def test_card_says_type_guided_classification_runs(folders):
    card = (folders["tiny-mlm-2.4"] / "README.md").read_text()
    assert SIDE_FILE in card and "rnaernie types" in card and "cannot run" not in card
    assert "pads every batch to 512 positions" in card  # the stated deviation, corrected
    assert "rnaernie classify" in (folders["tiny-seqcls-13"] / "README.md").read_text()


def test_plain_from_pretrained_ignores_the_side_file(folders, tmp_path):
    import torch
    from transformers import AutoModelForMaskedLM

    with_file, info = AutoModelForMaskedLM.from_pretrained(folders["tiny-mlm-2.4"], output_loading_info=True)
    assert not info.get("missing_keys") and not info.get("mismatched_keys")
    assert set(info.get("unexpected_keys", ())) <= {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in folders["tiny-mlm-2.4"].iterdir():
        if path.name != SIDE_FILE:
            (bare / path.name).write_bytes(path.read_bytes())
    without = AutoModelForMaskedLM.from_pretrained(bare).state_dict()
    assert all(torch.equal(tensor, without[key]) for key, tensor in with_file.state_dict().items())


# ------------------------------------------------------------------------------------ against PaddleNLP

@pytest.fixture(scope="module")
def indicator(folders):
    from rnaernie.type_guided import TypeIndicator

    return TypeIndicator.from_pretrained(str(folders["tiny-mlm-2.4"]), device="cpu")


@pytest.fixture(scope="module")
def predictions(indicator, golden):
    return indicator.predict(list(golden["sequences"]), top_k=3)


def test_type_probabilities_equal_paddlenlp_on_real_records(indicator, predictions, golden):
    assert list(indicator.class_tokens) == list(golden["class_tokens"])
    probabilities = np.array([[p.probabilities[t] for t in indicator.class_tokens] for p in predictions])
    assert np.abs(probabilities - golden["type_probabilities"]).max() <= TOLERANCE
    top_ids = np.array([[indicator.class_tokens.index(name) + 7 for name, _ in p.top] for p in predictions])
    np.testing.assert_array_equal(top_ids, golden["top_ids"])
    top = np.array([[value for _, value in p.top] for p in predictions])
    assert np.abs(top - golden["top_probabilities"]).max() <= TOLERANCE
    assert [p.truncated for p in predictions] == [len(s) > 508 for s in golden["sequences"]]


def test_two_stage_logits_equal_paddlenlp_on_real_records(folders, predictions, golden):
    from rnaernie.type_guided import TypeGuidedClassifier

    classifier = TypeGuidedClassifier.from_pretrained(str(folders["tiny-seqcls-13"]), device="cpu")
    sequences = list(golden["sequences"])
    for start in range(0, len(sequences), 32):
        chunk = slice(start, start + 32)
        per_type = classifier.logits_given_types(sequences[chunk], [[n for n, _ in p.top] for p in predictions[chunk]])
        assert np.abs(per_type.numpy() - golden["per_type_logits"][chunk]).max() <= TOLERANCE
        ensemble = classifier.two_stage_logits(sequences[chunk], predictions[chunk])
        assert np.abs(ensemble.numpy() - golden["two_stage_logits"][chunk]).max() <= TOLERANCE


def test_plain_and_chunked_logits_equal_paddlenlp(folders, golden):
    from rnaernie.classify import SequenceClassifier

    indices = _cli_indices(golden)
    sequences = [str(golden["sequences"][i]) for i in indices]
    plain = SequenceClassifier.from_pretrained(str(folders["tiny-seqcls-13"]), device="cpu").logits(sequences)
    assert np.abs(plain.numpy() - golden["plain_logits"][indices]).max() <= TOLERANCE
    chunked = SequenceClassifier.from_pretrained(str(folders["tiny-seqcls-2"]), device="cpu").logits(sequences, "chunk")
    assert np.abs(chunked.numpy() - golden["chunk_logits"][indices]).max() <= TOLERANCE


# ------------------------------------------------------------------------------------ the command line

def test_types_command_writes_the_documented_json(folders, golden, records_fasta, tmp_path):
    out = tmp_path / "types.json"
    proc = run("types", folders["tiny-mlm-2.4"], records_fasta, "-o", out, "--top-k", 3, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "3 longer than 508 nt were cut" in proc.stderr
    items = json.loads(out.read_text())
    indices = _cli_indices(golden)
    assert [item["id"] for item in items] == [golden["record_ids"][i] for i in indices]
    for item, i in zip(items, indices):
        assert set(item) == {"id", "probabilities", "top"}
        assert list(item["probabilities"]) == list(golden["class_tokens"])
        assert np.abs(np.array(list(item["probabilities"].values())) - golden["type_probabilities"][i]).max() <= TOLERANCE
        assert [name for name, _ in item["top"]] == [golden["class_tokens"][t - 7] for t in golden["top_ids"][i]]
        assert np.abs(np.array([p for _, p in item["top"]]) - golden["top_probabilities"][i]).max() <= TOLERANCE


@pytest.mark.parametrize("mode", ["two-stage", "truncate", "chunk"])
def test_classify_command_writes_labels_and_logits(mode, folders, golden, records_fasta, tmp_path):
    out = tmp_path / "labels.json"
    classifier, expected = folders["tiny-seqcls-13"], golden["two_stage_logits"]
    options = ["--two-stage", folders["tiny-mlm-2.4"]]
    if mode != "two-stage":
        options = ["--long", mode]
        expected = golden["plain_logits"] if mode == "truncate" else golden["chunk_logits"]
        classifier = folders["tiny-seqcls-13"] if mode == "truncate" else folders["tiny-seqcls-2"]
    proc = run("classify", classifier, records_fasta, "-o", out, *options, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    items = json.loads(out.read_text())
    indices = _cli_indices(golden)
    labels = json.loads((classifier / "config.json").read_text())["id2label"]
    for item, i in zip(items, indices, strict=True):
        assert set(item) == {"id", "label", "logits"} and item["id"] == golden["record_ids"][i]
        assert np.abs(np.array(item["logits"]) - expected[i]).max() <= TOLERANCE
        assert item["label"] == labels[str(int(np.argmax(item["logits"])))]


# ------------------------------------------------------------------------------------ bad input

@pytest.fixture
def mlm_copy(folders, tmp_path) -> Path:
    import shutil

    target = tmp_path / "mlm"
    shutil.copytree(folders["tiny-mlm-2.4"], target)
    return target


def test_folder_converted_before_the_side_file_says_to_reconvert(mlm_copy, records_fasta, tmp_path):
    (mlm_copy / SIDE_FILE).unlink()
    record = json.loads((mlm_copy / "conversion.json").read_text())
    del record[RECORD_KEY]
    (mlm_copy / "conversion.json").write_text(json.dumps(record))
    proc = run("types", mlm_copy, records_fasta, "-o", tmp_path / "out.json")
    assert_one_error_line(proc, "before the rows of [IND] and the class tokens were kept",
                          "convert the Paddle checkpoint again")
    assert not (tmp_path / "out.json").exists()


def test_missing_side_file_is_one_line(mlm_copy, records_fasta, tmp_path):
    (mlm_copy / SIDE_FILE).unlink()
    proc = run("types", mlm_copy, records_fasta, "-o", tmp_path / "out.json")
    assert_one_error_line(proc, f"has no {SIDE_FILE}, although its conversion.json lists it")


@pytest.mark.parametrize("damage, fragment", [
    (lambda path: path.write_bytes(b"not a safetensors file"), "is damaged"),
    (lambda path: path.write_bytes(path.read_bytes()[:-100]), "is damaged"),
])
def test_damaged_side_file_is_one_line(damage, fragment, mlm_copy, records_fasta, tmp_path):
    damage(mlm_copy / SIDE_FILE)
    assert_one_error_line(run("types", mlm_copy, records_fasta, "-o", tmp_path / "out.json"), fragment)


def test_side_file_of_another_model_is_refused(mlm_copy, records_fasta, tmp_path):
    from safetensors.numpy import save_file

    from convert.vocabulary import build_vocabulary
    from rnaernie.type_guided_rows import side_file_metadata

    vocab = build_vocabulary(read_vocab_file(official_vocab_path()))
    rows = {"input_embeddings.ind": np.zeros(32, np.float32), "input_embeddings.classes": np.zeros((28, 32), np.float32),
            "mlm_decoder.classes": np.zeros((28, 32), np.float32), "mlm_decoder_bias.classes": np.zeros(28, np.float32)}
    save_file(rows, mlm_copy / SIDE_FILE, side_file_metadata(vocab.class_tokens, {}))
    proc = run("types", mlm_copy, records_fasta, "-o", tmp_path / "out.json", "--device", "cpu")
    assert_one_error_line(proc, "rows of size 32 but the model's hidden size is 64")


@pytest.mark.parametrize("command, fragment", [
    (lambda f, fa, out: ["types", f["tiny-seqcls-13"], fa, "-o", out], "is a fine-tuned model"),
    (lambda f, fa, out: ["classify", f["tiny-mlm-2.4"], fa, "-o", out], "not a sequence classifier"),
    (lambda f, fa, out: ["classify", f["tiny-seqcls-13"], fa, "-o", out, "--two-stage", f["tiny-seqcls-2"]],
     "is a fine-tuned model"),
    (lambda f, fa, out: ["types", f["tiny-mlm-2.4"], fa, "-o", out, "--top-k", 0], "--top-k 0 is out of range"),
    (lambda f, fa, out: ["types", f["tiny-mlm-2.4"], fa, "-o", out, "--top-k", 29], "from 1 to 28"),
    (lambda f, fa, out: ["types", f["tiny-mlm-2.4"], fa, "-o", out, "--long", "error"], "--long 'error' is not known"),
    (lambda f, fa, out: ["classify", f["tiny-seqcls-13"], fa, "-o", out, "--long", "all"], "--long 'all'"),
    (lambda f, fa, out: ["types", f["tiny-mlm-2.4"], fa, "-o", out.with_suffix(".txt")], "end the file name with .json"),
    (lambda f, fa, out: ["types", f["tiny-mlm-2.4"], fa.with_name("absent.fa"), "-o", out], "absent.fa does not exist"),
    (lambda f, fa, out: ["types", fa.parent / "no-such-folder", fa, "-o", out], "does not exist"),
], ids=["classifier-as-indicator", "mlm-as-classifier", "classifier-as-two-stage-indicator", "top-k-0", "top-k-29",
        "types-long-error", "unknown-long-mode", "output-not-json", "missing-input", "missing-model"])
def test_bad_input_is_one_line_and_exit_2(command, fragment, folders, records_fasta, tmp_path):
    out = tmp_path / "out.json"
    assert_one_error_line(run(*command(folders, records_fasta, out), "--device", "cpu"), fragment)
    assert list(tmp_path.iterdir()) == []


def test_bad_record_midway_leaves_no_output(folders, records_fasta, tmp_path):
    broken = tmp_path / "broken.fa"
    broken.write_text(records_fasta.read_text() * 3 + ">empty\n>last\nACGU\n")
    out = tmp_path / "out.json"
    proc = run("types", folders["tiny-mlm-2.4"], broken, "-o", out, "--device", "cpu")
    assert_one_error_line(proc, "record 'empty' has no sequence")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.fa"]


# ------------------------------------------------------------------------------------ the verifier

def _edit_side_file(folder: Path, edit) -> None:
    from safetensors import safe_open
    from safetensors.numpy import save_file

    path = folder / SIDE_FILE
    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata()
        tensors = {name: handle.get_tensor(name).copy() for name in handle.keys()}
    edit(tensors)
    save_file(tensors, path, metadata)


def _swap_rows(name: str, first: int = 0, second: int = 1):
    def edit(tensors):
        rows = tensors[name]
        rows[[first, second]] = rows[[second, first]]
    return edit


def _perturb_ind(tensors):
    # not a constant shift: the embedding LayerNorm would cancel that, in Paddle as here
    tensors["input_embeddings.ind"] = tensors["input_embeddings.ind"][::-1].copy()


SIDE_FILE_CORRUPTIONS = {
    # name: (fixture, corruption, the first output the verifier must name)
    "two class rows of the MLM decoder swapped": ("tiny-mlm-2.4", _swap_rows("mlm_decoder.classes"), "type probabilities"),
    "two class biases of the MLM decoder swapped": ("tiny-mlm-2.5", _swap_rows("mlm_decoder_bias.classes"),
                                                    "type probabilities"),
    "the [IND] input row changed": ("tiny-mlm-2.4", _perturb_ind, "type-guided hidden states"),
    "two class input rows of the MLM swapped": ("tiny-mlm-2.4", _swap_rows("input_embeddings.classes", 3, 20),
                                                "type-guided hidden states"),
    "two class input rows of the classifier swapped": ("tiny-seqcls-13", _swap_rows("input_embeddings.classes", 0, 27),
                                                       "type-guided hidden states"),
}


@pytest.mark.parametrize("name", list(SIDE_FILE_CORRUPTIONS))
def test_verifier_catches_a_wrong_kept_row(name, folders, tmp_path):
    import shutil

    from convert.verify import builtin_probes
    from tests.helpers import compare_folder

    fixture, corrupt, first = SIDE_FILE_CORRUPTIONS[name]
    folder = tmp_path / "copy"
    shutil.copytree(folders[fixture], folder)
    intact = compare_folder(FIXTURES / fixture / "model_state.pdparams", folder, probes=builtin_probes())
    assert intact["verdict"] == "pass"
    _edit_side_file(folder, corrupt)
    verification = compare_folder(FIXTURES / fixture / "model_state.pdparams", folder, probes=builtin_probes())
    assert verification["verdict"] == "fail" and verification["first_divergent_layer"] == first


def test_verify_only_exits_1_on_a_corrupted_side_file(mlm_copy):
    _edit_side_file(mlm_copy, _swap_rows("mlm_decoder.classes", 5, 6))
    proc = subprocess.run([sys.executable, "-m", "convert.cli", str(FIXTURES / "tiny-mlm-2.4" / "model_state.pdparams"),
                           str(mlm_copy), "--verify-only"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "first divergence at type probabilities" in proc.stderr and "Traceback" not in proc.stderr
