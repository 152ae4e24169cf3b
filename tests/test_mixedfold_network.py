"""The structure model's network in torch (`rnaernie.mixedfold`) gives the official network's scores.

Goldens: fixtures/golden/mixedfold-tiny.npz, made by the official Paddle classes (make_mixedfold_golden.py)
from fixtures/tiny-mixedfold and the tiny backbone fixtures/tiny-mlm-2.4, on real nRC sequences and
one with lower case and N. Float32 rounding in a different library's kernels (conv, LSTM, GroupNorm)
moves the scores by up to about 5e-6 here; the tolerance is 1e-5. The length tables and the Turner
tables are compared exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rnaernie.mixedfold import base_rows, normalise
from tests.conftest import FIXTURES, GOLDEN, require

torch = require("torch")
safetensors_numpy = require("safetensors.numpy")

TINY = FIXTURES / "tiny-mixedfold" / "model_state.pdparams"
GOLD = np.load(GOLDEN / "mixedfold-tiny.npz")
RECORDS = range(5)
TOLERANCE = 1e-5
ENGINE_KEYS = {"score_basepair", "score_helix_stacking", "score_mismatch_external", "score_mismatch_hairpin",
               "score_mismatch_internal", "score_mismatch_multi", "score_base_hairpin", "score_base_internal",
               "score_base_multi", "score_base_external", "score_hairpin_length", "score_bulge_length",
               "score_internal_length", "score_internal_explicit", "score_internal_symmetry",
               "score_internal_asymmetry", "score_helix_length"}
LENGTH_KEYS = sorted(key for key in ENGINE_KEYS if key.endswith(("_length", "_explicit", "_symmetry", "_asymmetry")))


def golden_sequence(k: int) -> str:
    return str(GOLD[f"sequence{k}"].reshape(-1)[0])


@pytest.fixture(scope="module")
def structure_folder(tmp_path_factory) -> Path:
    """The tiny structure model converted with the tiny backbone (not verified: the network is what is tested)."""
    from convert.pipeline import convert_checkpoint

    folder = tmp_path_factory.mktemp("ssp") / "model"
    convert_checkpoint(TINY, folder, backbone=FIXTURES / "tiny-mlm-2.4" / "model_state.pdparams")
    return folder


@pytest.fixture(scope="module")
def scorer(structure_folder):
    from rnaernie.mixedfold import StructureScorer

    return StructureScorer.from_pretrained(structure_folder, device="cpu")


def test_the_network_gives_the_official_scores_from_the_official_hidden_states(scorer):
    for k in RECORDS:
        with torch.inference_mode():
            paired = scorer.network(torch.tensor([base_rows(golden_sequence(k))]),
                                    torch.from_numpy(GOLD[f"hidden{k}"])[None])[0].numpy()
        for channel, name in enumerate(("helix_stacking", "mismatch", "base")):
            np.testing.assert_allclose(paired[:, :, channel], GOLD[f"{name}{k}"], rtol=0, atol=TOLERANCE,
                                       err_msg=f"{name} of record {k}")


def test_a_sequence_gives_the_official_encoder_states_and_positional_scores_whatever_its_spelling(scorer):
    for k in RECORDS:
        sequence = golden_sequence(k)
        for spelling in (sequence, sequence.lower().replace("u", "t")):  # DNA letters, lower case: one model input
            states = scorer.hidden_states(normalise(spelling))[0].detach().numpy()
            np.testing.assert_allclose(states, GOLD[f"hidden{k}"], rtol=0, atol=TOLERANCE)
            scores = scorer.positional(spelling)
            np.testing.assert_allclose(scores["score_helix_stacking"], GOLD[f"helix_stacking{k}"], rtol=0,
                                       atol=TOLERANCE)
            np.testing.assert_allclose(scores["score_mismatch_multi"], GOLD[f"mismatch{k}"], rtol=0, atol=TOLERANCE)
            np.testing.assert_allclose(scores["score_base_external"], GOLD[f"base{k}"], rtol=0, atol=TOLERANCE)


def test_the_positional_dict_is_the_engines_contract(scorer):
    scores = scorer.positional("GGGAAACCCN")
    assert set(scores) == ENGINE_KEYS
    for key, value in scores.items():
        assert value.dtype == np.float32 and value.flags.c_contiguous, key
    assert scores["score_helix_stacking"].shape == (11, 11)  # 1-based: row and column 0 line up with [CLS]
    assert not scores["score_basepair"].any()
    assert scores["score_mismatch_external"] is scores["score_mismatch_hairpin"]  # one channel, four names
    assert scores["score_base_multi"] is scores["score_base_hairpin"]
    # the lower triangle carries no conv features: one constant per channel there (the official tril bug)
    lower = scores["score_helix_stacking"][np.tril_indices(11)]
    assert np.all(lower == lower[0])


def test_loop_length_and_turner_tables_are_the_official_ones_exactly(scorer):
    scores = scorer.positional(golden_sequence(0))
    for key in LENGTH_KEYS:
        assert np.array_equal(scores[key], GOLD[key]), key
    assert set(scorer.turner) == {key[len("turner_"):] for key in GOLD.files if key.startswith("turner_")}
    for key, value in scorer.turner.items():
        assert value.dtype == np.float32 and np.array_equal(value, GOLD[f"turner_{key}"]), key
    assert scorer.turner["score_terminalAU"].tolist() == [-0.5]


def test_n_and_other_letters_take_the_other_row_and_unk(scorer):
    assert normalise("acgtNx") == "ACGUNX"
    assert base_rows("ACGUNX") == [0, 1, 2, 3, 5, 5, 5]
    assert scorer.input_ids("ACGUNX")[-2:] == [scorer.tokenizer.unk_token_id] * 2


def test_a_folder_without_the_side_file_is_one_line_saying_what_to_convert(converted_dirs):
    from rnaernie.errors import ModelFolderError
    from rnaernie.mixedfold import StructureScorer

    with pytest.raises(ModelFolderError, match="mixedfold.safetensors.*--backbone"):
        StructureScorer.from_pretrained(converted_dirs["2.4"], device="cpu")
