"""Converting the official structure model (MixedFold) with its backbone, and the verifier's check of it.

The conversion runs through the real command line once per module. Each tampering (a swapped LSTM
direction, a transposed projection, a changed Turner value) is one a converter could make; the
structure check must fail on it, naming the tensor.
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

safetensors_numpy = require("safetensors.numpy")
require("paddle")
require("torch")

SSP = FIXTURES / "tiny-mixedfold" / "model_state.pdparams"
BACKBONE = FIXTURES / "tiny-mlm-2.4" / "model_state.pdparams"
SIDE = "mixedfold.safetensors"


def convert_cli(*args):
    return subprocess.run([sys.executable, "-m", "convert.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ssp") / "out"
    result = convert_cli(SSP, out, "--backbone", BACKBONE)
    assert result.returncode == 0, result.stderr
    assert "structure model OK" in result.stderr
    return out


def test_the_folder_holds_the_encoder_for_automodel_and_the_network_in_torch_layout(converted):
    from safetensors import safe_open
    from transformers import AutoModel

    from convert.pdparams import load_pdparams
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
    record = json.loads((converted / "conversion.json").read_text())["structure_model"]
    assert record["tensors"] == len(source) and record["added"] == ["turner.score_terminalAU"]
    verification = json.loads((converted / "verification.json").read_text())
    assert verification["verdict"] == "pass" and verification["checks"]["structure-model"]["verdict"] == "pass"
    assert "secondary-structure model" in (converted / "README.md").read_text()


def test_the_full_size_layout_maps_all_153_tensors(tmp_path):
    from convert.mixedfold import network_tensors
    from convert.pdparams import load_pdparams
    from fixtures.generate import write_checkpoint
    from rnaernie.mixedfold_format import tensor_shapes

    source = dict(load_pdparams(write_checkpoint(tmp_path, preset="full", head="mixedfold")).tensors)
    assert len(source) == 153 and "turner.score_terminalAU" not in source
    side, settings = network_tensors(source, "full")
    assert len(side) == 153 - 16 + 1 and {key: value.shape for key, value in side.items()} == tensor_shapes(settings)
    assert settings["hidden_size"] == 768 and settings["num_filters"] == [64] * 8
    assert settings["filter_size"] == [5, 3] * 4 and settings["num_hidden_units"] == [32]


def test_without_backbone_one_line_names_the_flag(tmp_path):
    line = one_error_line(convert_cli(SSP, tmp_path / "out"))
    assert "--backbone" in line and "MixedFold" in line
    assert not (tmp_path / "out").exists()


def test_a_backbone_of_another_hidden_size_is_one_line_naming_the_flag(tmp_path):
    from fixtures.generate import write_checkpoint

    other = write_checkpoint(tmp_path / "narrow", hidden_size=32, intermediate_size=64)
    line = one_error_line(convert_cli(SSP, tmp_path / "out", "--backbone", other))
    assert "--backbone" in line and "hidden size 32" in line and "64" in line
    assert not (tmp_path / "out").exists()


def test_backbone_for_another_kind_is_refused(tmp_path):
    line = one_error_line(convert_cli(BACKBONE, tmp_path / "out", "--backbone", BACKBONE))
    assert "--backbone applies to the secondary-structure model" in line


def structure_check(folder: Path) -> dict:
    from convert.mixedfold import network_tensors
    from convert.mixedfold_check import run_check
    from convert.paddle_config import load_paddle_config
    from convert.pdparams import load_pdparams
    from convert.vocabulary import official_vocab_path, read_vocab_file

    ssp = dict(load_pdparams(SSP).tensors)
    settings = network_tensors(ssp, str(SSP))[1]
    return run_check(ssp, settings, dict(load_pdparams(BACKBONE).tensors),
                     load_paddle_config(BACKBONE.parent / "model_config.json"), "ernie.",
                     read_vocab_file(official_vocab_path()), folder, 1e-4)


def tampered(converted: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "tampered"
    shutil.copytree(converted, folder)
    tensors = safetensors_numpy.load_file(folder / SIDE)
    change(tensors)
    from safetensors import safe_open

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


@pytest.mark.parametrize("change, names", [
    (swap_lstm_directions, {"lstm.weight_ih_l0 (stored)", "score_helix_stacking"}),
    (transpose_projection, {"proj_head.projection.weight (stored)", "score_base_hairpin"}),
    (change_turner, {"turner.score_stack (stored)"}),
], ids=["lstm-directions", "transposed-projection", "turner-value"])
def test_tampering_fails_the_structure_check_naming_the_tensor(converted, tmp_path, change, names):
    assert structure_check(converted)["verdict"] == "pass"
    check = structure_check(tampered(converted, tmp_path, change))
    assert check["verdict"] == "fail"
    assert names <= set(check["differs"]), check["differs"]


def test_lstm_copies_that_differ_stop_the_conversion_naming_both():
    from convert.errors import MappingError
    from convert.mixedfold import network_tensors
    from convert.pdparams import load_pdparams

    tensors = dict(load_pdparams(SSP).tensors)
    cell = "zuker.net.encoder.lstm.1.cell_bw.weight_hh"
    tensors[cell] = tensors[cell] + np.float32(1e-3)
    with pytest.raises(MappingError, match=r"lstm\.1\.cell_bw\.weight_hh and .*lstm\.weight_hh_l1_reverse"):
        network_tensors(tensors, "ssp")
    del tensors[cell]
    with pytest.raises(MappingError, match="missing zuker.net.encoder.lstm.1.cell_bw.weight_hh"):
        network_tensors(tensors, "ssp")
