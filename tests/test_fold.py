"""`rnaernie fold` and `rnaernie score` through the real command line, on the tiny fixture with a contact head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rnaernie.cli import app
from rnaernie.decoding import decode
from rnaernie.sequences import read_records
from rnaernie.structures import Structure, read_structures, write_structures
from tests.conftest import ROOT, require
from tests.helpers import assert_one_error_line

torch = require("torch")
require("transformers")

EXAMPLES = ROOT / "examples" / "rna.fa"
RECORDS = list(read_records(EXAMPLES))
LONG_RECORD = next(r for r in RECORDS if len(r.sequence) > 510)


@pytest.fixture(scope="module")
def contact_folder(converted_dirs, tmp_path_factory) -> Path:
    """The converted tiny model with a seeded 'hidden' contact head, biased so some pairs are above 0.5."""
    from rnaernie.contact import RnaErnieForContactPrediction

    torch.manual_seed(0)
    model = RnaErnieForContactPrediction.from_pretrained(converted_dirs["2.4"], head="hidden")
    with torch.no_grad():
        model.head.regression.weight.mul_(20.0)
    folder = tmp_path_factory.mktemp("contact") / "model"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def alone(contact_folder) -> dict[str, np.ndarray]:
    """Each example record's probabilities computed by the contact model directly, one record a call."""
    from rnaernie.contact import RnaErnieForContactPrediction

    model = RnaErnieForContactPrediction.from_pretrained(contact_folder).eval()
    out = {}
    for record in RECORDS:
        batch = model.tokenizer([record.sequence[:510]], return_tensors="pt")
        out[record.id] = model.pair_probabilities(batch["input_ids"], batch["attention_mask"])[0].numpy()
    return out


def invoke(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def test_fold_writes_the_decoded_optimum_of_the_models_probabilities(contact_folder, alone, tmp_path):
    result = invoke("fold", contact_folder, EXAMPLES, "-o", tmp_path / "out.dbn")
    assert result.exit_code == 0, result.stderr
    assert "folded 5 records" in result.stderr and "1 record over 510 nt folded on the first 510" in result.stderr
    folded = read_structures(tmp_path / "out.dbn")
    assert [s.id for s in folded] == [r.id for r in RECORDS]
    total = 0
    for record, structure in zip(RECORDS, folded):
        assert structure.sequence == record.sequence
        length = len(record.sequence)
        matrix = np.zeros((length, length), dtype=np.float32)
        kept = min(length, 510)
        matrix[:kept, :kept] = alone[record.id][:kept, :kept]
        assert structure.pairs == decode(matrix, record.sequence)
        total += len(structure.pairs)
    assert total > 50  # the head is not silent: the test compares real structures


def test_probabilities_are_the_same_alone_or_in_any_batch(contact_folder, alone, tmp_path):
    for budget in (512, 100_000):  # one record a batch ... everything in one batch
        out = tmp_path / f"p{budget}.npz"
        result = invoke("fold", contact_folder, EXAMPLES, "-o", out, "--batch-tokens", budget)
        assert result.exit_code == 0, result.stderr
        saved = np.load(out)
        assert saved["ids"].tolist() == [r.id for r in RECORDS] and saved["index"].tolist() == list(range(5))
        offsets = saved["offsets"]
        for i, record in enumerate(RECORDS):
            length = len(record.sequence)
            matrix = saved["probabilities"][offsets[i]:offsets[i + 1]].reshape(length, length)
            kept = min(length, 510)
            np.testing.assert_allclose(matrix[:kept, :kept], alone[record.id][:kept, :kept], rtol=0, atol=1e-5)
            assert not matrix[kept:].any() and not matrix[:, kept:].any()
            np.testing.assert_array_equal(matrix, matrix.T)


def test_long_chunk_folds_windows_alone(contact_folder, tmp_path):
    out = tmp_path / "chunk.npz"
    assert invoke("fold", contact_folder, EXAMPLES, "-o", out, "--long", "chunk").exit_code == 0
    saved = np.load(out)
    i = saved["ids"].tolist().index(LONG_RECORD.id)
    length = len(LONG_RECORD.sequence)
    matrix = saved["probabilities"][saved["offsets"][i]:saved["offsets"][i + 1]].reshape(length, length)
    assert not matrix[:510, 510:].any() and matrix[510:, 510:].any()
    result = invoke("fold", contact_folder, EXAMPLES, "-o", tmp_path / "x.dbn", "--long", "error")
    assert_one_error_line(result, f"record {LONG_RECORD.id!r} has 573 nucleotides")
    assert not (tmp_path / "x.dbn").exists()


@pytest.mark.parametrize("format", ["bpseq", "ct"])
def test_folder_formats_and_decoding_options(contact_folder, tmp_path, format):
    require("networkx")
    options = ["--pseudoknots", "--any-pairs", "--threshold", "0.7"]
    assert invoke("fold", contact_folder, EXAMPLES, "-o", tmp_path / "ref.dbn", *options).exit_code == 0
    result = invoke("fold", contact_folder, EXAMPLES, "-o", tmp_path / "out", "--format", format, *options)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{r.id}.{format}" for r in RECORDS)
    expected = {s.id: s for s in read_structures(tmp_path / "ref.dbn")}
    assert {s.id: s for s in read_structures(tmp_path / "out")} == expected
    crossing = any(i < k < j < l for s in expected.values() for i, j in s.pairs for k, l in s.pairs)
    assert crossing  # --pseudoknots reached the decoder


def test_a_dot_bracket_input_folds_its_sequences(contact_folder, tmp_path):
    reference = ROOT / "fixtures" / "structures" / "nrc-mfe-24.dbn"
    result = invoke("fold", contact_folder, reference, "-o", tmp_path / "out.dbn", "-q")
    assert result.exit_code == 0, result.stderr
    folded, expected = read_structures(tmp_path / "out.dbn"), read_structures(reference)
    assert [(s.id, s.sequence) for s in folded] == [(s.id, s.sequence) for s in expected]
    assert invoke("score", tmp_path / "out.dbn", reference).exit_code == 0


def test_shards_cover_the_input_once(contact_folder, tmp_path):
    for k in (1, 2):
        assert invoke("fold", contact_folder, EXAMPLES, "-o", tmp_path / f"{k}.npz", "--shard", f"{k}/2",
                      "-q").exit_code == 0
    first, second = np.load(tmp_path / "1.npz"), np.load(tmp_path / "2.npz")
    assert first["index"].tolist() == [0, 2, 4] and second["index"].tolist() == [1, 3]
    assert second["ids"].tolist() == [RECORDS[1].id, RECORDS[3].id]


def test_plots_one_png_per_record(contact_folder, tmp_path):
    require("matplotlib")
    result = invoke("fold", contact_folder, EXAMPLES, "-o", tmp_path / "out.dbn", "--plot", tmp_path / "plots")
    assert result.exit_code == 0, result.stderr
    pictures = sorted((tmp_path / "plots").iterdir())
    assert [p.name for p in pictures] == sorted(f"{r.id}.png" for r in RECORDS)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pictures)
    result = invoke("score", tmp_path / "out.dbn", tmp_path / "out.dbn", "--plot", tmp_path / "scored")
    assert result.exit_code == 0, result.stderr
    assert len(list((tmp_path / "scored").iterdir())) == 5


@pytest.mark.parametrize("arguments, fragments", [
    (["-o", "{tmp}/out.txt"], ["cannot tell the output format from 'out.txt'"]),
    (["-o", "{tmp}/out", "--format", "svg"], ["--format 'svg' is not known"]),
    (["-o", "{tmp}/out.dbn", "--format", "ct"], ["--format ct writes a folder, but 'out.dbn' names a .dbn file"]),
    (["-o", "{tmp}/out.dbn", "--threshold", "1.5"], ["--threshold 1.5 is outside [0, 1)"]),
    (["-o", "{tmp}/out.dbn", "--long", "split"], ["--long 'split' is not known"]),
    (["-o", "{tmp}/out.dbn", "--shard", "3/2"], ["--shard 3/2: K must be between 1 and N"]),
    (["-o", "{tmp}/busy", "--format", "ct"], ["busy exists and is not empty"]),
    (["-o", "{tmp}/out.dbn", "--plot", "{tmp}/busy"], ["busy exists and is not empty"]),
])
def test_bad_fold_options_are_one_line_and_write_nothing(contact_folder, tmp_path, arguments, fragments):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = invoke("fold", contact_folder, EXAMPLES, *[a.format(tmp=tmp_path) for a in arguments])
    assert_one_error_line(result, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_plots_without_matplotlib_say_what_to_install(contact_folder, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for command in (["fold", contact_folder, EXAMPLES, "-o", tmp_path / "out.dbn"],
                    ["score", EXAMPLES, EXAMPLES]):
        assert_one_error_line(invoke(*command, "--plot", tmp_path / "plots"),
                              "--plot needs matplotlib; install it with pip install 'rnaernie-convert[plot]'")
    assert list(tmp_path.iterdir()) == []


def test_fold_refuses_a_folder_without_contact_head_and_bad_input(converted_dirs, contact_folder, tmp_path):
    result = invoke("fold", converted_dirs["2.4"], EXAMPLES, "-o", tmp_path / "out.dbn")
    assert_one_error_line(result, "has no contact head (contact_head.safetensors)", "rnaernie train")
    empty = tmp_path / "empty.fa"
    empty.write_text(">a\nGGGAAACCC\n>b\n>c\nACGU\n")
    assert_one_error_line(invoke("fold", contact_folder, empty, "-o", tmp_path / "out.dbn"),
                          "line 3: record 'b' has no sequence")
    assert invoke("fold", contact_folder, empty, "-o", tmp_path / "out.dbn", "--skip-empty", "-q").exit_code == 0
    assert [s.id for s in read_structures(tmp_path / "out.dbn")] == ["a", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.fa", "out.dbn"]


# ---- rnaernie score ---------------------------------------------------------------------------------------------

def test_score_json_equals_viennarna_per_record_and_mean(contact_folder, tmp_path):
    RNA = require("RNA")
    import json

    assert invoke("fold", contact_folder, EXAMPLES, "-o", tmp_path / "pred.dbn", "--threshold", "0.3").exit_code == 0
    references = []
    for record in RECORDS:
        sequence = record.sequence.upper().replace("T", "U")
        references.append((record.id, record.sequence, RNA.fold(sequence)[0]))
    (tmp_path / "ref").mkdir()
    write_structures(tmp_path / "ref" / "mfe.dbn", [Structure.from_dot_bracket(*r) for r in references])
    predicted = {s.id: s.dot_bracket() for s in read_structures(tmp_path / "pred.dbn")}
    result = invoke("score", tmp_path / "pred.dbn", tmp_path / "ref", "--json", tmp_path / "s.json", "--shift", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("5 records, mean over records: precision ")
    saved = json.loads((tmp_path / "s.json").read_text())
    assert [row["id"] for row in saved["records"]] == [r.id for r in RECORDS]
    for row, (record_id, _, mfe) in zip(saved["records"], references):
        theirs = RNA.compare_structure(mfe, predicted[record_id])
        assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (theirs.TP, theirs.FP, theirs.FN, theirs.TN)
        assert [row[k] for k in ("precision", "recall", "f1", "mcc")] == pytest.approx(
            [theirs.PPV, theirs.TPR, theirs.F1, theirs.MCC], abs=1e-12)
        assert row["shifted"]["tp"] >= row["tp"]
    assert saved["mean"]["f1"] == pytest.approx(np.mean([row["f1"] for row in saved["records"]]))
    assert sum(row["tp"] for row in saved["records"]) > 0 and "shifted" in saved["mean"]


def test_score_names_missing_records_and_bad_files(tmp_path):
    (tmp_path / "pred.dbn").write_text(">a\nGGGAAACCC\n(((...)))\n>b\nGC\n..\n")
    (tmp_path / "ref.dbn").write_text(">a\nGGGAAACCC\n((.....))\n>c\nGC\n..\n")
    assert_one_error_line(invoke("score", tmp_path / "pred.dbn", tmp_path / "ref.dbn"),
                          "1 record missing from the prediction: 'c'; 1 record missing from the reference: 'b'")
    (tmp_path / "bad.dbn").write_text(">a\nGGGAAACCC\n(((...))\n")
    assert_one_error_line(invoke("score", tmp_path / "bad.dbn", tmp_path / "ref.dbn"),
                          "bad.dbn, line 3: record 'a': the structure has 8 characters but the sequence 9 nt")
    (tmp_path / "short.dbn").write_text(">a\nGGGAAAC\n((...))\n>c\nGC\n..\n")
    assert_one_error_line(invoke("score", tmp_path / "short.dbn", tmp_path / "ref.dbn", "--json", tmp_path / "s.json"),
                          "record 'a': the prediction has 7 bases, the reference 9")
    assert_one_error_line(invoke("score", tmp_path / "ref.dbn", tmp_path / "ref.dbn", "--shift", "2"),
                          "--shift 2 is not supported")
    assert not (tmp_path / "s.json").exists()
    result = invoke("score", tmp_path / "ref.dbn", tmp_path / "ref.dbn")
    assert result.exit_code == 0 and "2 records" in result.stdout and "F1 0.5000" in result.stdout
