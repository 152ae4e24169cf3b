"""`rnaernie interact` and `rnaernie.interaction`: exact against the official ErnieRRInter, every format, bad input.

The goldens (fixtures/golden/rrinter-*.npz, made by make_rrinter_golden.py with the official
`ErnieRRInter`, `convert_instance_to_rr` and `RRDataCollator` on PaddleNLP 2.8.1) hold the 400
MirTarRAW sample pairs and 5 edge pairs (a over 26 nt, b over 40 and of 7 nt, N in both).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rnaernie.cli import app
from tests.conftest import FIXTURES, GOLDEN, require

require("torch")
require("transformers")

TOLERANCE = 1e-4  # the bound; measured: 3.1e-7 (tiny), 5.4e-7 (full size)
TINY = FIXTURES / "tiny-rrinter"
GOLD = np.load(GOLDEN / "rrinter-tiny.npz")
LABELLED = GOLD["label"] >= 0


def pairs_csv(path: Path, rows=None, delimiter=",", label=True) -> Path:
    rows = range(len(GOLD["a_seq"])) if rows is None else rows
    columns = ["a_name", "a_seq", "b_name", "b_seq"] + (["label"] if label else [])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(columns)
        for i in rows:
            values = [GOLD[column][i] for column in columns]
            writer.writerow(["" if column == "label" and v < 0 else str(v) for column, v in zip(columns, values)])
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from convert.pipeline import convert_checkpoint

    out = tmp_path_factory.mktemp("rrinter") / "out"
    convert_checkpoint(TINY / "model_state.pdparams", out, config=TINY / "pretrained" / "model_config.json")
    return out


def invoke(*args, input=None):
    return CliRunner().invoke(app, ["interact", *map(str, args)], input=input)


def assert_one_error_line(result, *fragments):
    code = result.exit_code if hasattr(result, "exit_code") else result.returncode
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert code == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def tensors_sha256(checkpoint: Path) -> str:
    """make_rrinter_golden.tensors_sha256, of the file as the converter reads it."""
    from convert.pdparams import load_pdparams

    digest = hashlib.sha256()
    for key, array in load_pdparams(checkpoint).tensors.items():
        digest.update(f"{key} {array.dtype.str} {array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def test_goldens_belong_to_the_fixture():
    assert GOLD["fixture_sha256"][0] == hashlib.sha256((TINY / "model_state.pdparams").read_bytes()).hexdigest()
    assert GOLD["tensors_sha256"][0] == tensors_sha256(TINY / "model_state.pdparams")
    assert len(GOLD["a_seq"]) == 405 and LABELLED.sum() == 400


# -- exactness against the official code ----------------------------------------------------------

def test_logits_match_the_official_model(model):
    from rnaernie.interaction import InteractionModel

    scorer = InteractionModel.from_pretrained(model, device="cpu")
    logits = scorer.predict(list(zip(GOLD["a_seq"], GOLD["b_seq"])), batch_size=37)
    assert np.abs(logits - GOLD["logits"]).max() <= TOLERANCE


def test_both_tracks_are_built_as_the_official_collator_builds_them(model):
    from rnaernie.interaction import InteractionModel, Pair

    scorer = InteractionModel.from_pretrained(model, device="cpu")
    tokens, ids = scorer.encode(Pair("a", a, "b", b) for a, b in zip(GOLD["a_seq"], GOLD["b_seq"]))
    assert np.array_equal(np.array(tokens), GOLD["tokens"])
    kept = json.loads((model / "conversion.json").read_text())["vocabulary"]["source_ids"]
    assert np.array_equal(np.array(kept)[np.array(ids)], GOLD["input_ids"])  # the same tokens, converted ids


def test_u_and_lower_case_read_as_the_official_dna_letters(model):
    from rnaernie.interaction import InteractionModel

    scorer = InteractionModel.from_pretrained(model, device="cpu")
    rows = slice(0, 40)
    dna = scorer(list(zip(GOLD["a_seq"][rows], GOLD["b_seq"][rows])))
    rna = scorer([(a.replace("T", "U"), b.lower().replace("t", "u")) for a, b in zip(GOLD["a_seq"][rows],
                                                                                      GOLD["b_seq"][rows])])
    assert np.array_equal(dna, rna)


def test_cli_writes_the_official_scores_in_input_order(model, tmp_path):
    out = tmp_path / "scores.csv"
    result = invoke(model, pairs_csv(tmp_path / "pairs.csv"), "-o", out, "--batch-size", 64)
    assert result.exit_code == 0, result.stderr
    rows = read_csv(out)
    assert list(rows[0]) == ["a_name", "b_name", "probability", "prediction", "logit_0", "logit_1"]
    assert [r["a_name"] for r in rows] == GOLD["a_name"].tolist()
    logits = np.array([[float(r["logit_0"]), float(r["logit_1"])] for r in rows])
    assert np.abs(logits - GOLD["logits"]).max() <= TOLERANCE
    probability = np.array([float(r["probability"]) for r in rows])
    expected = np.exp(GOLD["logits"][:, 1]) / np.exp(GOLD["logits"]).sum(axis=1)
    assert np.abs(probability - expected).max() <= TOLERANCE
    assert [int(r["prediction"]) for r in rows] == (probability > 0.5).astype(int).tolist()
    assert "scored 405 pairs" in result.stderr


def test_threshold_sets_the_prediction(model, tmp_path):
    out = tmp_path / "scores.csv"
    pairs = pairs_csv(tmp_path / "p.csv", rows=range(40))
    assert invoke(model, pairs, "-o", out, "--threshold", 0.999).exit_code == 0
    assert {r["prediction"] for r in read_csv(out)} == {"0"}
    assert invoke(model, pairs, "-o", out, "--threshold", 0).exit_code == 0
    assert {r["prediction"] for r in read_csv(out)} == {"1"}


def test_metrics_are_the_official_ones(model, tmp_path):
    result = invoke(model, pairs_csv(tmp_path / "pairs.csv", rows=np.flatnonzero(LABELLED)), "-o",
                    tmp_path / "s.csv")
    assert result.exit_code == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("metrics"))
    printed = dict(zip(["accuracy", "precision", "recall", "f1", "auc"],
                       [float(part.split()[-1]) for part in line.split("(")[0].split(":", 1)[1].split(",")]))
    official = dict(zip(GOLD["metric_names"].tolist(), GOLD["metrics"].tolist()))
    for name, value in official.items():  # scikit-learn in the golden run, on the official logits
        assert printed[name] == pytest.approx(value, abs=6e-5), (name, line)


def test_no_labels_no_metrics(model, tmp_path):
    result = invoke(model, pairs_csv(tmp_path / "p.csv", rows=range(10), label=False), "-o", tmp_path / "s.csv")
    assert result.exit_code == 0 and "predicted to interact" in result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("metrics")]


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_json_and_parquet_hold_the_same_rows(model, tmp_path, suffix):
    pairs = pairs_csv(tmp_path / "p.csv", rows=range(50))
    assert invoke(model, pairs, "-o", tmp_path / "s.csv").exit_code == 0
    expected = read_csv(tmp_path / "s.csv")
    out = tmp_path / f"s{suffix}"
    assert invoke(model, pairs, "-o", out).exit_code == 0
    if suffix == ".json":
        rows = json.loads(out.read_text())
    else:
        rows = require("pyarrow.parquet").read_table(out).to_pylist()
    assert [r["b_name"] for r in rows] == [r["b_name"] for r in expected]
    assert np.allclose([r["logit_1"] for r in rows], [float(r["logit_1"]) for r in expected], atol=1e-6)
    assert [r["prediction"] for r in rows] == [int(r["prediction"]) for r in expected]


def test_tsv_and_stdin(model, tmp_path):
    tsv = pairs_csv(tmp_path / "p.tsv", rows=range(20), delimiter="\t")
    assert invoke(model, tsv, "-o", tmp_path / "a.csv").exit_code == 0
    result = invoke(model, "-", "-o", tmp_path / "b.csv", input=tsv.read_text())
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert len(read_csv(tmp_path / "a.csv")) == 20


def test_shards_together_are_the_whole_input(model, tmp_path):
    pairs = pairs_csv(tmp_path / "p.csv", rows=range(30))
    assert invoke(model, pairs, "-o", tmp_path / "all.csv").exit_code == 0
    whole = read_csv(tmp_path / "all.csv")
    merged = []
    for k in (1, 2, 3):
        assert invoke(model, pairs, "-o", tmp_path / f"{k}.csv", "--shard", f"{k}/3").exit_code == 0
        merged += read_csv(tmp_path / f"{k}.csv")
    merged.sort(key=lambda row: int(row["index"]))
    assert [int(r["index"]) for r in merged] == list(range(30))
    assert [r["b_name"] for r in merged] == [r["b_name"] for r in whole]
    # other batches, other last bits: the values agree to rounding
    for column in ("probability", "logit_0", "logit_1"):
        assert np.allclose([float(r[column]) for r in merged], [float(r[column]) for r in whole], atol=1e-6)


def test_input_is_streamed(model, tmp_path):
    """The first pairs are scored before the input ends: the command reads one batch at a time."""
    process = subprocess.Popen([sys.executable, "-m", "rnaernie.cli", "interact", str(model), "-", "-o",
                                str(tmp_path / "s.csv"), "--batch-size", "2"],
                               stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    header = "a_name,a_seq,b_name,b_seq\n"
    process.stdin.write(header + "".join(f"m{i},ACGTACGTAGCTAGCTA,t{i},GGCATTACG\n" for i in range(4)))
    process.stdin.flush()
    # still open: with the whole input read first, this would hang until the timeout below
    process.stdin.write("bad,ACGXT,t,ACG\n")
    process.stdin.close()
    assert process.wait(timeout=300) == 2
    assert "stdin, line 6" in process.stderr.read()
    assert not (tmp_path / "s.csv").exists()


# -- bad input: one line naming the row, exit 2, no output file ------------------------------------

@pytest.mark.parametrize("content, fragments", [
    ("a_name,a_seq,b_name\nx,ACGT,y\n", ("no column b_seq",)),
    ("a_name,a_seq,b_name,b_seq\nx,ACGT,y,ACGT\nx2,,y2,ACGT\n", ("line 3", "a_seq is empty")),
    ("a_name,a_seq,b_name,b_seq\nx,ACGT,y,ACGT\nx2,ACGT,y2,ACRYT\n", ("line 3", "b_seq has 'R'", "A, C, G, T/U or N")),
    ("a_name,a_seq,b_name,b_seq,label\nx,ACGT,y,ACGT,2\n", ("line 2", "label '2'")),
    ("a_name,a_seq,b_name,b_seq\nx,ACGT,y\n", ("line 2", "3 fields")),
    ("", ("no column",)),
])
def test_bad_pairs_are_refused_by_row(model, tmp_path, content, fragments):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(content)
    out = tmp_path / "scores.csv"
    assert_one_error_line(invoke(model, pairs, "-o", out), *fragments)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["pairs.csv"]


def test_bad_row_after_many_batches_leaves_no_output(model, tmp_path):
    pairs = pairs_csv(tmp_path / "pairs.csv", rows=range(200))
    pairs.write_text(pairs.read_text() + "late,ACGT-A,t,ACGT,1\n")
    out = tmp_path / "scores.parquet"
    assert_one_error_line(invoke(model, pairs, "-o", out, "--batch-size", 16), "line 202", "'-'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.csv"]


def test_a_folder_without_the_head_is_refused(converted_dirs, tmp_path):
    pairs = pairs_csv(tmp_path / "p.csv", rows=range(3))
    assert_one_error_line(invoke(converted_dirs["2.4"], pairs, "-o", tmp_path / "s.csv"),
                          "interaction_head.safetensors", "rnaernie-convert")


def test_a_damaged_head_is_refused(model, tmp_path):
    import shutil

    broken = tmp_path / "model"
    shutil.copytree(model, broken)
    (broken / "interaction_head.safetensors").write_bytes(b"\x00" * 64)
    assert_one_error_line(invoke(broken, pairs_csv(tmp_path / "p.csv", rows=range(3)), "-o", tmp_path / "s.csv"),
                          "interaction_head.safetensors")


@pytest.mark.parametrize("args, fragments", [
    (["--threshold", "1.5"], ("--threshold",)),
    (["--batch-size", "0"], ("--batch-size",)),
    (["--shard", "3/2"], ("--shard",)),
])
def test_bad_options_are_refused_before_the_model_loads(tmp_path, args, fragments):
    pairs = pairs_csv(tmp_path / "p.csv", rows=range(3))
    assert_one_error_line(invoke(tmp_path / "nowhere", pairs, "-o", tmp_path / "s.csv", *args), *fragments)


def test_unknown_output_extension(model, tmp_path):
    assert_one_error_line(invoke(model, pairs_csv(tmp_path / "p.csv"), "-o", tmp_path / "s.txt"),
                          ".csv, .parquet, .json")


def test_bad_input_through_the_console_script(model, tmp_path):
    """The real command line, not the in-process runner: one line, exit 2, no traceback."""
    pairs = tmp_path / "p.csv"
    pairs.write_text("a_name,a_seq,b_name,b_seq\nm,ACGU,t,AC GU\n")
    result = subprocess.run([sys.executable, "-m", "rnaernie.cli", "interact", str(model), str(pairs), "-o",
                             str(tmp_path / "s.csv")], capture_output=True, text=True, timeout=300)
    assert_one_error_line(result, "p.csv, line 2", "' '")
    assert "Traceback" not in result.stderr and not (tmp_path / "s.csv").exists()


# -- full size (slow) --------------------------------------------------------------------------------

@pytest.mark.slow
def test_full_size_converts_without_config_and_scores_as_the_official_code(tmp_path):
    """The official layout: no config beside the checkpoint; the bundled official config serves, and says so."""
    from fixtures.generate import write_checkpoint

    gold = np.load(GOLDEN / "rrinter-full.npz")
    checkpoint = write_checkpoint(tmp_path / "rr_inter", preset="full", head="rrinter", seed=1919)
    assert tensors_sha256(checkpoint) == gold["tensors_sha256"][0], "regenerate with make_rrinter_golden.py"
    shutil.rmtree(checkpoint.parent / "pretrained")  # as released: nothing beside the weights
    out = tmp_path / "out"
    converted = subprocess.run([sys.executable, "-m", "convert.cli", str(checkpoint), str(out)], capture_output=True,
                               text=True, timeout=1800)
    assert converted.returncode == 0, converted.stderr
    assert "official pre-trained model_config.json (bundled) was used" in converted.stderr
    assert json.loads((out / "verification.json").read_text())["verdict"] == "pass"
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["a_name", "a_seq", "b_name", "b_seq"])
        writer.writerows(zip(gold["a_name"], gold["a_seq"], gold["b_name"], gold["b_seq"]))
    result = invoke(out, pairs, "-o", tmp_path / "scores.csv", "--batch-size", 256)
    assert result.exit_code == 0, result.stderr
    rows = read_csv(tmp_path / "scores.csv")
    logits = np.array([[float(r["logit_0"]), float(r["logit_1"])] for r in rows])
    assert np.abs(logits - gold["logits"]).max() <= TOLERANCE
