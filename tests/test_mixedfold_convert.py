"""Converting the official structure model (MixedFold) with its backbone, and the verifier's check of it.

The conversion runs through the real command line once per module. Each tampering (a swapped LSTM
direction, a transposed projection, a changed Turner value) is one a converter could make; verifying the
tampered folder must fail, the static structure check naming the tensor of mixedfold.safetensors and the
structure model's `KindCheck` naming the score that moved.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, require
from tests.helpers import assert_one_error_line

safetensors_numpy = require("safetensors.numpy")
require("paddle")
require("torch")

SSP = FIXTURES / "tiny-mixedfold" / "model_state.pdparams"
BACKBONE = FIXTURES / "tiny-mlm-2.4" / "model_state.pdparams"
SIDE = "mixedfold.safetensors"


def convert_cli(*args):
    return subprocess.run([sys.executable, "-m", "convert.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ssp") / "out"
    result = convert_cli(SSP, out, "--backbone", BACKBONE)
    assert result.returncode == 0, result.stderr
    assert "verification OK" in result.stderr and "structure: score_helix_stacking" in result.stderr
    return out


def test_the_folder_holds_the_encoder_for_automodel_and_the_network_in_torch_layout(converted):
    from safetensors import safe_open
    from transformers import AutoModel

    from convert.pdparams import load_pdparams
    from convert.records import sha256_file
    from rnaernie.mixedfold_format import tensor_shapes

    assert AutoModel.from_pretrained(converted).config.hidden_size == 64
    with safe_open(str(converted / SIDE), "np") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        settings = json.loads(handle.metadata()["settings"])
    assert shapes == tensor_shapes(settings)
    assert settings["num_filters"] == [16, 16] and settings["hidden_size"] == 64 and settings["num_att"] == 8
    side = safetensors_numpy.load_file(converted / SIDE)
    source = load_pdparams(SSP).tensors
    assert np.array_equal(side["proj_head.dense.weight"], source["zuker.net.proj_head.dense.weight"].T)
    assert np.array_equal(side["lstm.weight_hh_l1_reverse"], source["zuker.net.encoder.lstm.weight_hh_l1_reverse"])
    assert np.array_equal(side["turner.score_int22"], source["turner.score_int22"])
    assert side["turner.score_terminalAU"].tolist() == [-0.5]  # built by the official class, absent from the file
    assert len(side) == len(source) - 16 + 1  # every tensor once (the 16 LSTM second copies not), terminalAU added
    record = json.loads((converted / "conversion.json").read_text())  # both sources, read and hashed once
    assert record["head"] == "structure-model" and record["architecture"] == "BertModel"
    assert record["source"]["sha256"] == sha256_file(SSP) and record["backbone"]["sha256"] == sha256_file(BACKBONE)
    verification = json.loads((converted / "verification.json").read_text())
    assert verification["verdict"] == "pass"
    structure = {row["name"]: row["max_abs"] for row in verification["layers"] if row["name"].startswith("structure")}
    assert len(structure) == 11 and structure["structure: Turner tables (bits)"] == 0.0
    assert SIDE in verification["files"]  # the verdict vouches for the side file's bytes
    card = (converted / "README.md").read_text()
    assert "## The secondary-structure model" in card and record["backbone"]["sha256"] in card


def test_verify_only_rebuilds_the_conversion_with_its_backbone(converted, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(converted, folder)
    line = assert_one_error_line(convert_cli(SSP, folder, "--verify-only"))
    assert "--backbone" in line
    result = convert_cli(SSP, folder, "--verify-only", "--backbone", BACKBONE)
    assert result.returncode == 0, result.stderr
    assert json.loads((folder / "verification.json").read_text())["verdict"] == "pass"


def test_the_full_size_layout_maps_all_153_tensors(tmp_path):
    from convert.mapping import Transform
    from convert.mixedfold import rows_of, settings_from
    from convert.pdparams import load_pdparams
    from fixtures.generate import write_checkpoint
    from rnaernie.mixedfold_format import TERMINAL_AU, tensor_shapes

    source = dict(load_pdparams(write_checkpoint(tmp_path, preset="full", head="mixedfold")).tensors)
    assert len(source) == 153 and "turner.score_terminalAU" not in source
    rows, copies = rows_of(source, "full")
    settings = settings_from(source, "full")
    assert len(rows) == 153 - 16 + 1 and len(copies) == 16
    assert {row.source for row in rows} | {alias for alias, _ in copies} == set(source) | {TERMINAL_AU[0]}
    assert {row.target: row.shape[::-1] if row.transform is Transform.TRANSPOSE else row.shape
            for row in rows} == tensor_shapes(settings)
    assert settings["hidden_size"] == 768 and settings["num_filters"] == [64] * 8
    assert settings["filter_size"] == [5, 3] * 4 and settings["num_hidden_units"] == [32]


def test_without_backbone_one_line_names_the_flag(tmp_path):
    line = assert_one_error_line(convert_cli(SSP, tmp_path / "out"))
    assert "--backbone" in line and "MixedFold" in line
    assert not (tmp_path / "out").exists()


def test_a_backbone_of_another_hidden_size_is_one_line_naming_the_flag(tmp_path):
    from fixtures.generate import write_checkpoint

    other = write_checkpoint(tmp_path / "narrow", hidden_size=32, intermediate_size=64)
    line = assert_one_error_line(convert_cli(SSP, tmp_path / "out", "--backbone", other))
    assert "--backbone" in line and "hidden size 32" in line and "64" in line
    assert not (tmp_path / "out").exists()


def test_backbone_for_another_kind_is_refused(tmp_path):
    line = assert_one_error_line(convert_cli(BACKBONE, tmp_path / "out", "--backbone", BACKBONE))
    assert "--backbone applies to a model without an encoder" in line


def tampered(converted: Path, tmp_path: Path, change) -> Path:
    from safetensors import safe_open

    folder = tmp_path / "tampered"
    shutil.copytree(converted, folder)
    tensors = safetensors_numpy.load_file(folder / SIDE)
    change(tensors)
    with safe_open(str(converted / SIDE), "np") as handle:
        metadata = handle.metadata()
    safetensors_numpy.save_file(tensors, folder / SIDE, metadata=metadata)
    return folder


def swap_lstm_directions(t):
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        t[f"lstm.{name}_l0"], t[f"lstm.{name}_l0_reverse"] = t[f"lstm.{name}_l0_reverse"], t[f"lstm.{name}_l0"]


def transpose_projection(t):
    t["proj_head.projection.weight"] = np.ascontiguousarray(t["proj_head.projection.weight"].T)


def change_turner(t):
    t["turner.score_stack"] = t["turner.score_stack"].copy()
    t["turner.score_stack"][1, 1] += np.float32(0.1)


@pytest.mark.parametrize("change, tensor, output", [
    (swap_lstm_directions, "lstm.weight_ih_l0", "structure: score_helix_stacking"),
    (transpose_projection, "proj_head.projection.weight", "structure: score_base_hairpin"),
    (change_turner, "turner.score_stack", "structure: Turner tables (bits)"),
], ids=["lstm-directions", "transposed-projection", "turner-value"])
def test_tampering_fails_the_verification_naming_the_tensor_and_the_score(converted, tmp_path, change, tensor,
                                                                         output):
    from convert.errors import ParityError
    from convert.verify import verify_conversion

    with pytest.raises(ParityError) as failed:
        verify_conversion(SSP, tampered(converted, tmp_path, change), backbone=BACKBONE, say=lambda message: None)
    verification = failed.value.verification
    assert any(problem.startswith(f"{SIDE} {tensor}:") for problem in verification["checks"]["structure"]["problems"])
    moved = {row["name"]: row["max_abs"] for row in verification["layers"]}
    assert not moved[output] <= verification["atol"], moved


def combined_plan(tensors):
    from convert.mapping import plan_mapping
    from convert.mixedfold import STRUCTURE_MODEL, combine
    from convert.paddle_config import load_paddle_config
    from convert.pdparams import load_pdparams
    from convert.vocabulary import build_vocabulary, official_vocab_path, read_vocab_file

    table = combine(tensors, dict(load_pdparams(BACKBONE).tensors), "backbone")
    vocabulary = build_vocabulary(read_vocab_file(official_vocab_path()), "vocab")
    return plan_mapping(table, STRUCTURE_MODEL.layouts[0], load_paddle_config(BACKBONE.parent / "model_config.json"),
                        vocabulary, source="ssp")


def test_lstm_copies_that_differ_stop_the_conversion_naming_both():
    from convert.errors import MappingError
    from convert.pdparams import load_pdparams

    tensors = dict(load_pdparams(SSP).tensors)
    assert len(combined_plan(tensors).side_files[SIDE][0]) == len(tensors) - 16 + 1
    cell = "zuker.net.encoder.lstm.1.cell_bw.weight_hh"
    tensors[cell] = tensors[cell] + np.float32(1e-3)
    with pytest.raises(MappingError, match=r"lstm\.1\.cell_bw\.weight_hh should be a tied copy of "
                                           r".*lstm\.weight_hh_l1_reverse but differs"):
        combined_plan(tensors)
    del tensors["zuker.net.encoder.lstm.weight_hh_l1_reverse"]
    with pytest.raises(MappingError, match="missing tensor zuker.net.encoder.lstm.weight_hh_l1_reverse"):
        combined_plan(tensors)
