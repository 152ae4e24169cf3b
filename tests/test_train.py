"""`rnaernie train`: it learns, the output loads with stock classes, runs resume, torchrun scales out, bad input.

The training data is fixtures/structures/nrc-mfe-24.dbn: ViennaRNA MFE structures of the 24
shortest records of the nRC sample (made by fixtures/make_structures.py). Every run is seeded and
single-threaded, so the numbers asserted here do not move between runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnaernie.cli import app
from tests.conftest import FIXTURES, ROOT, require
from tests.helpers import assert_one_error_line

torch = require("torch")
transformers = require("transformers")
require("accelerate")  # transformers' Trainer needs it

from rnaernie.contact import RnaErnieForContactPrediction  # noqa: E402
from rnaernie.training import contact_scores  # noqa: E402
from rnaernie.training_data import contact_examples  # noqa: E402

STRUCTURES = FIXTURES / "structures" / "nrc-mfe-24.dbn"
# 24 records in batches of 4: 6 steps an epoch; 24 epochs reach the F1 asserted below with margin
LEARNING = ["--epochs", "24", "--batch-size", "4", "--learning-rate", "5e-3"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def base(converted_dirs) -> Path:
    return converted_dirs["2.4"]


def invoke(*args):
    return CliRunner().invoke(app, ["train", *map(str, args), "--device", "cpu"])


def training_set_f1(folder: Path, head: str | None = None, seed: int = 0) -> float:
    torch.manual_seed(seed)
    model = RnaErnieForContactPrediction.from_pretrained(folder, head=head)
    examples, _ = contact_examples(str(STRUCTURES), model.tokenizer)
    return contact_scores(model, examples)["f1"]


@pytest.fixture(scope="module")
def learned(base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("learned") / "contact"
    torch.set_num_threads(1)
    result = invoke(base, STRUCTURES, "-o", out, "--task", "contact", *LEARNING)
    assert result.exit_code == 0, result.stderr
    return out


# ---- data ------------------------------------------------------------------------------------------------

def test_contact_labels_mark_each_pair_in_both_triangles_and_ignore_what_lies_outside_a_record():
    from rnaernie.training_data import ContactCollator, Example

    batch = ContactCollator(pad_token_id=0)([Example("a", [2, 9, 9, 6, 8, 8, 3], pairs=((0, 4), (1, 3))),
                                             Example("b", [2, 6, 9, 3], pairs=())])
    assert batch["input_ids"].tolist() == [[2, 9, 9, 6, 8, 8, 3], [2, 6, 9, 3, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1] * 7, [1, 1, 1, 1, 0, 0, 0]]
    labels = batch["labels"]
    assert labels.shape == (2, 5, 5)
    assert {(i, j) for i in range(5) for j in range(5) if labels[0, i, j] == 1} == {(0, 4), (4, 0), (1, 3), (3, 1)}
    assert (labels[0] >= 0).all()
    assert (labels[1, :2, :2] == 0).all() and (labels[1, 2:, :] == -100).all() and (labels[1, :, 2:] == -100).all()


# ---- it learns ---------------------------------------------------------------------------------------------

def test_fine_tuning_brings_the_training_set_f1_from_near_zero_to_at_least_one_half(base, learned):
    before = training_set_f1(base, "hidden")
    after = training_set_f1(learned)
    assert before < 0.1, before
    assert after >= 0.5, after


def test_the_contact_output_is_a_stock_encoder_folder_with_the_trained_head(base, learned):
    assert sorted(p.name for p in learned.iterdir()) == ["config.json", "contact_head.safetensors", "model.safetensors",
                                                        "tokenizer.json", "tokenizer_config.json", "training.json"]
    assert not (learned.parent / "contact.checkpoints").exists()  # removed once the output is complete
    encoder = transformers.AutoModel.from_pretrained(learned)
    assert type(encoder).__name__ == "BertModel"
    original = transformers.AutoModel.from_pretrained(base)
    assert not torch.equal(encoder.embeddings.word_embeddings.weight, original.embeddings.word_embeddings.weight)
    model = RnaErnieForContactPrediction.from_pretrained(learned)
    assert model.head_kind == "hidden" and model.positive_weight == 10.0
    record = json.loads((learned / "training.json").read_text())
    assert record["steps"] == 24 * 6 and record["settings"]["learning_rate"] == 5e-3
    assert [entry["epoch"] for entry in record["history"]] == [float(e) for e in range(1, 25)]


def test_eval_scores_before_training_and_after_each_epoch(base, tmp_path):
    out = tmp_path / "out"
    result = invoke(base, STRUCTURES, "-o", out, "--task", "contact", "--epochs", "2", "--batch-size", "8",
                    "--eval", STRUCTURES)
    assert result.exit_code == 0, result.stderr
    history = json.loads((out / "training.json").read_text())["history"]
    assert [entry["epoch"] for entry in history] == [0.0, 1.0, 2.0]
    assert all({"eval_f1", "eval_precision", "eval_recall", "eval_mcc", "eval_loss"} <= set(e) for e in history)
    assert "loss" not in history[0] and "loss" in history[1]
    # epoch 0 is the untrained head, scored as rnaernie fold + rnaernie score would
    assert history[0]["eval_f1"] == pytest.approx(training_set_f1(base, "hidden"), abs=1e-9)
    assert "epoch 0 (step 0): eval loss" in result.stderr and "epoch 2 (step 6): loss" in result.stderr


def test_the_attention_head_trains_and_is_saved_as_such(base, tmp_path):
    out = tmp_path / "out"
    result = invoke(base, STRUCTURES, "-o", out, "--task", "contact", "--head", "attention", "--max-steps", "2",
                    "--batch-size", "4")
    assert result.exit_code == 0, result.stderr
    model = RnaErnieForContactPrediction.from_pretrained(out)
    assert model.head_kind == "attention"
    assert json.loads((out / "training.json").read_text())["steps"] == 2


def test_freeze_encoder_trains_the_head_only(base, tmp_path):
    out = tmp_path / "out"
    assert invoke(base, STRUCTURES, "-o", out, "--task", "contact", "--max-steps", "3", "--batch-size", "4",
                  "--freeze-encoder").exit_code == 0
    trained = transformers.AutoModel.from_pretrained(out).state_dict()
    original = transformers.AutoModel.from_pretrained(base).state_dict()
    assert all(torch.equal(trained[name], original[name]) for name in original)
    assert not torch.equal(RnaErnieForContactPrediction.from_pretrained(out).head.regression.weight,
                           _fresh_head_weight(base))


def _fresh_head_weight(base):
    transformers.set_seed(0)
    return RnaErnieForContactPrediction.from_pretrained(base, head="hidden").head.regression.weight


# ---- resuming ----------------------------------------------------------------------------------------------

def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_weights(base, tmp_path, monkeypatch):
    options = ["--task", "contact", "--epochs", "3", "--batch-size", "8"]  # 3 steps an epoch
    straight = tmp_path / "straight"
    assert invoke(base, STRUCTURES, "-o", straight, *options).exit_code == 0

    out = tmp_path / "resumed"
    original_step = transformers.Trainer.training_step
    calls = []

    def interrupted_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # in epoch 2, after epoch 1's checkpoint was saved
            raise KeyboardInterrupt
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", interrupted_step)
    result = invoke(base, STRUCTURES, "-o", out, *options)
    assert result.exit_code == 130
    assert "checkpoints are kept in" in result.stderr and "run the same command to resume" in result.stderr
    assert not out.exists()
    checkpoints = tmp_path / "resumed.checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-3"]
    steps_after_resuming = []

    def counted_step(self, *args, **kwargs):
        steps_after_resuming.append(1)
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", counted_step)
    result = invoke(base, STRUCTURES, "-o", out, *options)
    assert result.exit_code == 0, result.stderr
    assert "resumed from checkpoint-3" in result.stderr
    assert len(steps_after_resuming) == 9 - 3  # only the steps after the checkpoint run again
    assert not checkpoints.exists()
    resumed_weights = transformers.AutoModel.from_pretrained(out).state_dict()
    straight_weights = transformers.AutoModel.from_pretrained(straight).state_dict()
    assert all(torch.equal(resumed_weights[name], straight_weights[name]) for name in straight_weights)
    from safetensors.torch import load_file

    assert all(torch.equal(a, b) for a, b in zip(load_file(out / "contact_head.safetensors").values(),
                                                 load_file(straight / "contact_head.safetensors").values()))


def test_a_failure_while_writing_the_output_leaves_no_output_and_keeps_the_checkpoints(base, tmp_path, monkeypatch):
    import errno

    def full_disk(self, folder):
        (Path(folder) / "config.json").write_text("{}")  # part of the folder is written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(RnaErnieForContactPrediction, "save_pretrained", full_disk)
    out = tmp_path / "out"
    result = invoke(base, STRUCTURES, "-o", out, "--task", "contact", "--epochs", "1", "--batch-size", "8", "-q")
    assert_one_error_line(result, "out of disk space")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.checkpoints"]  # no OUT, no staging folder
    assert (tmp_path / "out.checkpoints" / "checkpoint-3").is_dir()


def test_checkpoints_of_another_run_are_refused(base, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def interrupted_step(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(transformers.Trainer, "training_step", interrupted_step)
    assert invoke(base, STRUCTURES, "-o", out, "--task", "contact", "--epochs", "1").exit_code == 130
    monkeypatch.undo()
    result = invoke(base, STRUCTURES, "-o", out, "--task", "contact", "--epochs", "1", "--learning-rate", "1e-4")
    assert_one_error_line(result, "out.checkpoints holds checkpoints of another run", "learning_rate",
                          "delete the folder to start afresh")
    assert not out.exists()


# ---- the sequence task -------------------------------------------------------------------------------------

@pytest.fixture
def labelled(tmp_path) -> Path:
    """The 24 records as nRC-style FASTA: '>id class'."""
    path = tmp_path / "labelled.fa"
    with open(STRUCTURES) as handle:
        lines = handle.read().splitlines()
    path.write_text("".join(f"{lines[k].rsplit(' ', 1)[0]}\n{lines[k + 1]}\n" for k in range(0, len(lines), 3)))
    return path


def test_the_sequence_task_writes_a_stock_classifier_that_rnaernie_classify_loads(base, labelled, tmp_path):
    out = tmp_path / "classifier"
    result = invoke(base, labelled, "-o", out, "--task", "sequence", "--epochs", "1", "--batch-size", "8",
                    "--eval", labelled)
    assert result.exit_code == 0, result.stderr
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out)
    assert type(model).__name__ == "BertForSequenceClassification"
    classes = [line.split()[1] for line in STRUCTURES.read_text().splitlines() if line.startswith(">")]
    first_appearance = list(dict.fromkeys(classes))
    assert [model.config.id2label[i] for i in range(len(first_appearance))] == first_appearance
    history = json.loads((out / "training.json").read_text())["history"]
    assert [e["epoch"] for e in history] == [0.0, 1.0] and all("eval_accuracy" in e for e in history)
    classified = CliRunner().invoke(app, ["classify", str(out), str(labelled), "-o", str(tmp_path / "labels.json"),
                                          "--device", "cpu"])
    assert classified.exit_code == 0, classified.stderr
    labels = json.loads((tmp_path / "labels.json").read_text())
    assert len(labels) == 24 and {item["label"] for item in labels} <= set(first_appearance)


def test_csv_and_fasta_give_the_same_training_data(base, labelled, tmp_path):
    from rnaernie.training_data import fingerprint, sequence_examples

    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    rows = ["id,sequence,label"]
    text = labelled.read_text().splitlines()
    for header, sequence in zip(text[::2], text[1::2]):
        record_id, label = header[1:].split()
        rows.append(f"{record_id},{sequence},{label}")
    csv_path = tmp_path / "labelled.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    assert fingerprint(sequence_examples(str(csv_path), tokenizer)) == \
        fingerprint(sequence_examples(str(labelled), tokenizer))


# ---- bad input: one line, exit 2, nothing written -----------------------------------------------------------

def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "unbalanced.dbn": ">r1\nGGGAAACCC\n(((...))\n",
        "length.dbn": ">r1\nGGGAAACCC\n(((...)))..\n",
        "empty.dbn": ">r1\n",
        "twice.bpseq": "1 G 9\n2 G 8\n3 G 9\n4 A 0\n5 A 0\n6 A 0\n7 C 0\n8 C 2\n9 C 1\n",
        "nolabel.fa": ">r1\nACGU\n",
        "nocolumn.csv": "id,sequence\nr1,ACGU\n",
        "emptylabel.csv": "id,sequence,label\nr1,ACGU,\n",
        "otherlabel.fa": ">r1 never_seen\nACGU\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return {name: tmp_path / name for name in files}


@pytest.mark.parametrize("case, arguments, fragments", [
    ("unknown task", ["--task", "structure"], ["--task 'structure' is not known", "contact", "sequence"]),
    ("unknown head", ["--task", "contact", "--head", "outer"], ["--head 'outer' is not known"]),
    ("zero epochs", ["--task", "contact", "--epochs", "0"], ["--epochs 0 must be at least 1"]),
    ("negative learning rate", ["--task", "contact", "--learning-rate", "-1"], ["--learning-rate -1.0 must be above 0"]),
    ("unbalanced brackets", ["--task", "contact", "DATA=unbalanced.dbn"], ["unbalanced.dbn"]),
    ("length mismatch", ["--task", "contact", "DATA=length.dbn"], ["length.dbn", "11 characters", "9 nt"]),
    ("empty record", ["--task", "contact", "DATA=empty.dbn"], ["empty.dbn"]),
    ("base paired twice", ["--task", "contact", "DATA=twice.bpseq"], ["twice.bpseq", "paired twice"]),
    ("missing data", ["--task", "contact", "DATA=missing.dbn"], ["missing.dbn does not exist"]),
    ("FASTA without labels", ["--task", "sequence", "DATA=nolabel.fa"], ["nolabel.fa", "'r1' has no label"]),
    ("CSV without a label column", ["--task", "sequence", "DATA=nocolumn.csv"], ["nocolumn.csv, line 1", "label"]),
    ("CSV with an empty label", ["--task", "sequence", "DATA=emptylabel.csv"], ["emptylabel.csv, line 2",
                                                                              "the label is empty"]),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(base, tmp_path, labelled, case, arguments, fragments):
    files = _bad_files(tmp_path)
    data = STRUCTURES
    rest = []
    for argument in arguments:
        if argument.startswith("DATA="):
            name = argument.removeprefix("DATA=")
            data = files.get(name, tmp_path / name)
        else:
            rest.append(argument)
    out = tmp_path / "out"
    result = invoke(base, data, "-o", out, *rest)
    assert_one_error_line(result, *fragments)
    assert not out.exists() and not (tmp_path / "out.checkpoints").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_eval_label_the_training_data_never_uses_is_refused(base, labelled, tmp_path):
    other = _bad_files(tmp_path)["otherlabel.fa"]
    result = invoke(base, labelled, "-o", tmp_path / "out", "--task", "sequence", "--eval", other)
    assert_one_error_line(result, "record 'r1' has label 'never_seen'", "tRNA")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("problem", ["not empty", "no model"])
def test_an_unusable_output_or_model_folder_is_refused_before_training(base, tmp_path, problem):
    out = tmp_path / "out"
    model = base
    if problem == "not empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        fragments = ["exists and is not empty"]
    else:
        model = tmp_path / "nothing-here"
        fragments = ["does not exist"]
    result = invoke(model, STRUCTURES, "-o", out, "--task", "contact")
    assert_one_error_line(result, *fragments)
    assert not (tmp_path / "out.checkpoints").exists()
    if problem == "not empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]


# ---- torchrun ----------------------------------------------------------------------------------------------

def test_torchrun_with_two_cpu_processes_trains_once_and_exits_0(base, tmp_path):
    out = tmp_path / "out"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "rnaernie.cli", "train", str(base), str(STRUCTURES), "-o", str(out), "--task", "contact",
               "--epochs", "2", "--batch-size", "4", "--device", "cpu"]
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    record = json.loads((out / "training.json").read_text())
    # each process takes 4 of the 24 records a step: 3 steps an epoch, half the single-process count
    assert record["steps"] == 6
    assert finished.stderr.count("trained a contact model") == 1  # rank 0 reports and writes, once
    assert RnaErnieForContactPrediction.from_pretrained(out).head_kind == "hidden"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_training_closes_the_process_group_it_ran_in(base, tmp_path):
    """Left open, a torchrun process can abort at exit (DOWNSTREAM.md); train() closes it when done."""
    from rnaernie.training import TrainSettings, train

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        train(TrainSettings(model=str(base), data=str(STRUCTURES), output=str(tmp_path / "out"), task="contact",
                            max_steps=1, device="cpu", quiet=True))
        assert not torch.distributed.is_initialized()
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
