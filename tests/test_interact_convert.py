"""Converting the official interaction model (ErnieRRInter), and the verifier's coverage of its head.

Each corruption is one a converter could make (LSTM directions swapped, the gate blocks in another
order, the conv kernel read backwards, the two input tracks swapped). Each must move the logits away
from the official code's (goldens made by make_rrinter_golden.py) by far more than the tolerance, and
make the verifier fail, naming the place.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import FIXTURES, GOLDEN, require
from tests.helpers import assert_one_error_line

safetensors_numpy = require("safetensors.numpy")
require("paddle")
require("torch")

TINY = FIXTURES / "tiny-rrinter"
CONFIG = TINY / "pretrained" / "model_config.json"
GOLD = np.load(GOLDEN / "rrinter-tiny.npz")
SIDE = "interaction_head.safetensors"
TOLERANCE = 1e-4


def convert_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "convert.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """The tiny fixture converted and verified through the real command line."""
    out = tmp_path_factory.mktemp("rr") / "out"
    result = convert_cli(TINY / "model_state.pdparams", out, "--config", CONFIG)
    assert result.returncode == 0, result.stderr
    return out


def test_the_folder_holds_a_stock_bert_model_and_the_head_under_torch_names(converted):
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel

    from rnaernie.interaction_head import SETTINGS, tensor_shapes

    assert AutoConfig.from_pretrained(converted).architectures == ["BertModel"]
    AutoModel.from_pretrained(converted)  # loads the encoder alone
    with safe_open(str(converted / SIDE), "np") as handle:
        shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
        metadata = handle.metadata()
    assert shapes == tensor_shapes(64)
    assert "lstm.weight_ih_l0_reverse" in shapes and json.loads(metadata["settings"]) == SETTINGS
    record = json.loads((converted / "conversion.json").read_text())
    assert record["head"] == "rr-interaction"
    verification = json.loads((converted / "verification.json").read_text())
    assert verification["verdict"] == "pass"


def test_head_tensors_are_the_official_ones(converted):
    from convert.pdparams import load_pdparams

    source = load_pdparams(TINY / "model_state.pdparams").tensors
    head = safetensors_numpy.load_file(converted / SIDE)
    assert np.array_equal(head["lstm.weight_hh_l0_reverse"], source["cnn_lstm.5.weight_hh_l0_reverse"])
    assert np.array_equal(head["proj_head.dense.weight"], source["proj_head.dense.weight"].T)  # Paddle: [in, out]
    assert np.array_equal(head["conv.weight"], source["cnn_lstm.0.weight"])


def test_without_config_a_small_checkpoint_asks_for_one(tmp_path):
    checkpoint = tmp_path / "rr" / "model_state.pdparams"
    checkpoint.parent.mkdir()
    shutil.copy(TINY / "model_state.pdparams", checkpoint)
    out = tmp_path / "out"
    line = assert_one_error_line(convert_cli(checkpoint, out, "--no-verify", "-q"))
    assert "--config" in line and "model_config.json" in line
    assert not out.exists()


def test_lstm_copies_that_disagree_are_refused_naming_both(tmp_path):
    from convert.pdparams import load_pdparams
    from fixtures.generate import save_pdparams

    tensors = {key: np.array(value) for key, value in load_pdparams(TINY / "model_state.pdparams").tensors.items()}
    tensors["cnn_lstm.5.0.cell_bw.bias_hh"] = tensors["cnn_lstm.5.0.cell_bw.bias_hh"] + 1
    checkpoint = tmp_path / "model_state.pdparams"
    save_pdparams(tensors, {key: key for key in tensors}, checkpoint)
    out = tmp_path / "out"
    line = assert_one_error_line(convert_cli(checkpoint, out, "--config", CONFIG, "--no-verify", "-q"))
    assert "cnn_lstm.5.0.cell_bw.bias_hh" in line and "cnn_lstm.5.bias_hh_l0_reverse" in line
    assert not out.exists()


# -- mutations ----------------------------------------------------------------------------------------

def _edit_head(folder: Path, edit) -> None:
    from rnaernie.interaction_head import metadata

    path = folder / SIDE
    tensors = {key: value.copy() for key, value in safetensors_numpy.load_file(path).items()}
    edit(tensors)
    safetensors_numpy.save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path, metadata=metadata())


def swap_directions(t):
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        t[f"lstm.{name}_l0"], t[f"lstm.{name}_l0_reverse"] = t[f"lstm.{name}_l0_reverse"], t[f"lstm.{name}_l0"]


def reorder_gates(t):  # Paddle and torch both order the gates input, forget, cell, output; a converter
    for key in [k for k in t if k.startswith("lstm.")]:  # assuming i, f, o, g (Keras) gets this
        i, f, g, o = np.split(t[key], 4, axis=0)
        t[key] = np.concatenate([i, f, o, g], axis=0)


def flip_kernel(t):
    t["conv.weight"] = t["conv.weight"][:, :, ::-1]


LSTM = {f"lstm.{name}_l0{suffix}" for suffix in ("", "_reverse")
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
CORRUPTIONS = {  # name: (corruption of the side file, tensors the structure check must name)
    "LSTM directions swapped": (swap_directions, LSTM),
    "LSTM gate blocks reordered": (reorder_gates, LSTM),
    "conv kernel flipped": (flip_kernel, {"conv.weight"}),
}


def swapped_tracks(monkeypatch):
    """The model side concatenating the encoder track before the token track (a code mutation)."""
    import torch

    import rnaernie.interaction as interaction

    build = interaction._head_module

    def mutated():
        head = build()

        class Swapped(head):
            def forward(self, tokens, states):
                x = torch.cat([self.proj_head(states).transpose(1, 2), self.embedder(tokens).transpose(1, 2)], dim=1)
                x, _ = self.lstm(torch.max_pool1d(torch.relu(self.conv(x)), self.pool))
                return self.classifier(x[:, -1, :])
        return Swapped
    monkeypatch.setattr(interaction, "_head_module", mutated)


ROWS = np.r_[0:60, len(GOLD["a_seq"]) - 5:len(GOLD["a_seq"])]  # 60 real pairs and the 5 edge pairs


def _golden_diff(folder: Path) -> float:
    from rnaernie.interaction import InteractionModel

    logits = InteractionModel.from_pretrained(folder, device="cpu")(list(zip(GOLD["a_seq"][ROWS], GOLD["b_seq"][ROWS])))
    return float(np.abs(logits - GOLD["logits"][ROWS]).max())


def _verify(folder: Path) -> dict:
    from convert.verify import builtin_probes
    from tests.helpers import compare_folder

    return compare_folder(TINY / "model_state.pdparams", folder, config=CONFIG, probes=builtin_probes()[:3])


@pytest.fixture
def copy(converted, tmp_path) -> Path:
    folder = Path(shutil.copytree(converted, tmp_path / "copy"))
    return folder


def test_intact_folder_passes_with_margin(copy):
    verification = _verify(copy)
    assert verification["verdict"] == "pass", verification["failure"]
    layers = {layer["name"]: layer["max_abs"] for layer in verification["layers"]}
    assert layers["interaction: logits"] < TOLERANCE / 100
    assert _golden_diff(copy) < TOLERANCE / 100


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_moves_the_logits_and_the_verifier_names_it(name, copy):
    corrupt, place = CORRUPTIONS[name]
    _edit_head(copy, corrupt)
    assert _golden_diff(copy) > 10 * TOLERANCE, f"{name} went unnoticed by the goldens"
    verification = _verify(copy)
    assert verification["verdict"] == "fail"
    named = {problem.split(":")[0].split()[-1] for problem in verification["checks"]["structure"]["problems"]}  # after the file name
    assert named == place, verification["failure"]
    assert verification["first_divergent_layer"] == "interaction: logits"


def test_swapped_tracks_fail_the_goldens_and_the_verifier(copy, monkeypatch):
    swapped_tracks(monkeypatch)
    assert _golden_diff(copy) > 10 * TOLERANCE
    verification = _verify(copy)
    assert verification["verdict"] == "fail"
    assert verification["checks"]["structure"]["passed"]  # the files are right; the code is not
    assert verification["first_divergent_layer"] == "interaction: logits"


def test_tolerance_has_room_on_both_sides(converted, tmp_path):
    """The measured noise is far below the tolerance, and the smallest corruption far above it."""
    smallest = []
    for name, (corrupt, _) in CORRUPTIONS.items():
        folder = Path(shutil.copytree(converted, tmp_path / name.replace(" ", "-")))
        _edit_head(folder, corrupt)
        smallest.append(_golden_diff(folder))
    assert _golden_diff(converted) * 100 < TOLERANCE < min(smallest) / 10


def test_the_verifiers_paddle_head_is_the_official_one():
    """The reference the verifier compares with (the head rebuilt in paddle.nn on the rebuilt encoder) gives the
    official code's logits, on the official code's own input tracks."""
    from convert.interaction import PREFIX, paddle_logits, source_inputs
    from convert.mapping import as_float32
    from convert.paddle_config import load_paddle_config
    from convert.paddle_reference import build_encoder
    from convert.pdparams import load_pdparams

    tensors = {k: as_float32(v) for k, v in load_pdparams(TINY / "model_state.pdparams").tensors.items()}
    config = load_paddle_config(CONFIG)
    encoder = build_encoder(tensors, config, PREFIX)
    tokens, ids = GOLD["tokens"].astype(np.int64), GOLD["input_ids"].astype(np.int64)
    _, logits = paddle_logits(encoder, tensors, config.hidden_size, tokens, ids)
    assert np.abs(logits - GOLD["logits"]).max() < 1e-5
    # and its own input tracks are the official collator's
    vocab = [line.rstrip("\n") for line in open(FIXTURES.parent / "convert" / "data" / "vocab_1MER.txt")]
    mine = source_inputs(zip(GOLD["a_seq"], GOLD["b_seq"]), {x: vocab.index(x) for x in "ATCG"}, vocab.index("[UNK]"))
    assert np.array_equal(mine[0], tokens) and np.array_equal(mine[1], ids)
