"""`rnaernie fold` with a converted structure model: encoder -> network -> engine, written as today.

The tiny structure model (fixtures/tiny-mixedfold with the tiny backbone) has random weights whose
unpaired scores win: it folds real sequences into open chains. A second folder with the paired-score
layer's biases moved (helix stacking up, unpaired bases down) makes structures with pairs, for the
spelling rule (N never pairs; DNA letters and lower case fold as U-spelled upper case).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, GOLDEN, require

require("torch")
require("numba")
safetensors_numpy = require("safetensors.numpy")

GOLD = np.load(GOLDEN / "mixedfold-tiny.npz")
SIDE = "mixedfold.safetensors"
HAIRPINS = ("GGGGCCAAAAGGCCCC", "GCGCGNAAAUUUCGCGC")


def rnaernie(*args):
    return subprocess.run([sys.executable, "-m", "rnaernie.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def structure_model(tmp_path_factory) -> Path:
    from convert.pipeline import convert_checkpoint

    out = tmp_path_factory.mktemp("ssp") / "model"
    convert_checkpoint(FIXTURES / "tiny-mixedfold" / "model_state.pdparams", out,
                       backbone=FIXTURES / "tiny-mlm-2.4" / "model_state.pdparams")
    return out


@pytest.fixture(scope="module")
def pairing_model(structure_model, tmp_path_factory) -> Path:
    from safetensors import safe_open

    folder = tmp_path_factory.mktemp("pairing") / "model"
    shutil.copytree(structure_model, folder)
    tensors = safetensors_numpy.load_file(folder / SIDE)
    tensors["paired_fc.4.bias"] = np.array([4.0, 0.0, -4.0], dtype=np.float32)  # stacking up, unpaired down
    with safe_open(str(structure_model / SIDE), "np") as handle:
        metadata = handle.metadata()
    safetensors_numpy.save_file(tensors, folder / SIDE, metadata=metadata)
    return folder


def test_fold_gives_the_engines_structure_and_score_on_the_official_networks_scores(structure_model):
    from rnaernie.mixedfold import positional_dict
    from rnaernie.mixedfold_engine import fold
    from rnaernie.structure_model import MixedFoldPredictor

    predictor = MixedFoldPredictor(structure_model, device="cpu")
    turner = {key[len("turner_"):]: GOLD[key] for key in GOLD.files if key.startswith("turner_")}
    lengths = {key: GOLD[key] for key in GOLD.files if key.startswith("score_")}
    for k in range(5):
        sequence = str(GOLD[f"sequence{k}"].reshape(-1)[0])
        paired = np.stack([GOLD[f"helix_stacking{k}"], GOLD[f"mismatch{k}"], GOLD[f"base{k}"]], axis=-1)
        official = fold(sequence, turner, positional_dict(paired, lengths))
        [ours] = predictor.predict([sequence])
        assert ours.structure.pairs == official.pairs
        assert ours.structure.score == pytest.approx(official.score, abs=1e-3)  # network rounding: ~1e-5 a cell


def test_fold_writes_dbn_with_scores_bpseq_and_ct_and_score_reads_them(pairing_model, tmp_path):
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">h{i}\n{s}\n" for i, s in enumerate(HAIRPINS)))
    result = rnaernie("fold", pairing_model, fasta, "-o", tmp_path / "out.dbn", "--quiet")
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "out.dbn").read_text().splitlines()
    assert lines[0].startswith(">h0 score=") and lines[3].startswith(">h1 score=")
    assert "(" in lines[2] and lines[1] == HAIRPINS[0]
    assert lines[5][HAIRPINS[1].index("N")] == "."  # N never pairs
    for format in ("bpseq", "ct"):
        assert rnaernie("fold", pairing_model, fasta, "-o", tmp_path / format, "--format", format,
                        "--quiet").returncode == 0
        assert len(list((tmp_path / format).iterdir())) == 2
    scored = rnaernie("score", tmp_path / "out.dbn", tmp_path / "out.dbn")
    assert scored.returncode == 0, scored.stderr


def test_dna_letters_and_lower_case_fold_as_the_rna_spelling(pairing_model):
    from rnaernie.structure_model import MixedFoldPredictor

    predictor = MixedFoldPredictor(pairing_model, device="cpu")
    rna, dna = predictor.predict([HAIRPINS[0], HAIRPINS[0].lower().replace("u", "t")])
    assert rna.structure.pairs and dna.structure.pairs == rna.structure.pairs
    assert dna.structure.score == rna.structure.score and dna.structure.sequence == HAIRPINS[0].lower()


def test_long_records_follow_long(pairing_model):
    from rnaernie.errors import InputError
    from rnaernie.structure_model import MixedFoldPredictor

    record = HAIRPINS[0] * 40  # 640 nt
    truncated = MixedFoldPredictor(pairing_model, device="cpu", long="truncate")
    [prediction] = truncated.predict([record])
    assert len(prediction.structure.sequence) == 640 and max(j for _, j in prediction.structure.pairs) < 510
    assert truncated.stats.truncated == 1
    with pytest.raises(InputError, match="640 nucleotides.*--long"):
        MixedFoldPredictor(pairing_model, device="cpu", long="error").predict([record])


@pytest.mark.parametrize("args, says", [
    (["-o", "{tmp}/out.npz"], "not pair probabilities"),
    (["-o", "{tmp}/out.dbn", "--threshold", "0.3"], "--threshold applies to contact models"),
    (["-o", "{tmp}/out.dbn", "--pseudoknots"], "--pseudoknots applies to contact models"),
])
def test_contact_model_options_are_one_line(structure_model, tmp_path, args, says):
    fasta = tmp_path / "in.fa"
    fasta.write_text(">a\nGGGAAACCC\n")
    result = rnaernie("fold", structure_model, fasta, *(a.format(tmp=tmp_path) for a in args))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and says in lines[0], result.stderr
