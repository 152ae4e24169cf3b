"""A verified folder changed afterwards: `--verify-only` gives a failed verdict naming what differs (exit 1),
records it in place of the old pass, and `rnaernie-push` refuses a folder changed since its verification.

Every tampering goes through the real command line, in a fresh process, on a folder that passed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_MLM, require

safetensors_torch = require("safetensors.torch")
require("paddle")
require("transformers")

CHECKPOINT = TINY_MLM["2.4"]
SIDE = "type_guided.safetensors"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def verified_folder(tmp_path_factory) -> Path:
    """The tiny 2-layer masked LM, converted and verified (its verification.json says pass)."""
    from convert.pipeline import convert_checkpoint
    from convert.verify import verify_conversion

    folder = tmp_path_factory.mktemp("verified") / "out"
    convert_checkpoint(CHECKPOINT, folder)
    verify_conversion(CHECKPOINT, folder, say=lambda message: None)
    assert _verdict(folder) == "pass"
    return folder


@pytest.fixture
def folder(verified_folder, tmp_path) -> Path:
    return Path(shutil.copytree(verified_folder, tmp_path / "folder"))


def _verdict(folder: Path) -> str:
    return json.loads((folder / "verification.json").read_text())["verdict"]


def _edit_json(folder: Path, name: str, edit) -> None:
    path = folder / name
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def config(**changes):
    return lambda folder: _edit_json(folder, "config.json", lambda data: data.update(changes))


def flip_last_data_byte(name: str):
    def edit(folder: Path) -> None:
        data = bytearray((folder / name).read_bytes())
        data[-1] ^= 0x01  # the last byte of the last tensor's data
        (folder / name).write_bytes(bytes(data))
    return edit


def swap_a_and_u(folder: Path) -> None:
    def edit(tokenizer: dict) -> None:
        vocab = tokenizer["model"]["vocab"]
        vocab["A"], vocab["U"] = vocab["U"], vocab["A"]
    _edit_json(folder, "tokenizer.json", edit)


def edit_tensors(edit):
    def apply(folder: Path) -> None:
        path = folder / "model.safetensors"
        tensors = safetensors_torch.load_file(path)
        edit(tensors)
        safetensors_torch.save_file(tensors, path, metadata={"format": "pt"})
    return apply


def _drop(tensors):
    del tensors["bert.encoder.layer.1.output.dense.bias"]


def _add(tensors):
    tensors["bert.encoder.layer.2.output.dense.bias"] = tensors["bert.encoder.layer.1.output.dense.bias"].clone()


def remove(name: str):
    return lambda folder: (folder / name).unlink()


def append_line(name: str, line: str):
    return lambda folder: (folder / name).write_text((folder / name).read_text() + line)


TAMPERINGS = {
    # name: (the change, what the failure must say)
    "num_hidden_layers 1 in a 2-layer folder": (config(num_hidden_layers=1), "config.json num_hidden_layers is 1"),
    "hidden_size halved": (config(hidden_size=32), "config.json hidden_size is 32"),
    "num_attention_heads changed": (config(num_attention_heads=2), "config.json num_attention_heads is 2"),
    "num_attention_heads that does not divide the width": (config(num_attention_heads=3),
                                                          "config.json num_attention_heads is 3"),
    "vocab_size changed": (config(vocab_size=12), "config.json vocab_size is 12"),
    "layer_norm_eps changed": (config(layer_norm_eps=1e-5), "config.json layer_norm_eps is 1e-05"),
    "one data byte of model.safetensors": (flip_last_data_byte("model.safetensors"), "values differ from the checkpoint"),
    "a tensor removed": (edit_tensors(_drop), "bert.encoder.layer.1.output.dense.bias: missing from model.safetensors"),
    "a tensor added": (edit_tensors(_add), "bert.encoder.layer.2.output.dense.bias: in model.safetensors but not"),
    "A and U swapped in tokenizer.json": (swap_a_and_u, "tokenizer: tokenizer.json: differs from the one the converter"),
    "vocab.txt extended": (append_line("vocab.txt", "X\n"), "vocab.txt: differs from the one the converter"),
    "one data byte of the side file": (flip_last_data_byte(SIDE), f"{SIDE} mlm_decoder_bias.classes: 1 of"),
    "the side file removed": (remove(SIDE), f"{SIDE}: missing from the folder"),
}


def _verify_only(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convert.cli", str(CHECKPOINT), str(folder), "--verify-only"],
                          capture_output=True, text=True, timeout=600, env=ENV, cwd=ROOT)


def _error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[-1]


@pytest.mark.parametrize("name", list(TAMPERINGS))
def test_verify_only_fails_a_tampered_folder_naming_what_differs(name, folder):
    tamper, says = TAMPERINGS[name]
    tamper(folder)
    proc = _verify_only(folder)
    assert proc.returncode == 1, proc.stderr
    assert says in _error_line(proc.stderr)
    verification = json.loads((folder / "verification.json").read_text())
    assert verification["verdict"] == "fail" and says in verification["failure"]  # the old pass is gone
    assert "FAILED" in (folder / "README.md").read_text()


def test_fewer_layers_fail_parity_too_where_the_folder_gives_no_output(folder):
    """With num_hidden_layers 1 the folder's model has no layer 2: a missing output counts as divergent."""
    config(num_hidden_layers=1)(folder)
    assert _verify_only(folder).returncode == 1
    parity = json.loads((folder / "verification.json").read_text())["checks"]["parity"]
    assert not parity["passed"] and parity["first_divergent_layer"] == "layer 2"
    assert parity["why"] == "missing from the folder's outputs"


@pytest.mark.parametrize("damage, says", [
    (lambda folder: (folder / "config.json").write_text("{not json"), "cannot read"),
    (remove("conversion.json"), "has no conversion.json"),
    (lambda folder: _edit_json(folder, "conversion.json", lambda record: record.pop("vocabulary")),
     "conversion.json is damaged (its vocabulary cannot be read)"),
])
def test_an_unreadable_folder_is_one_line_exit_2_and_its_old_pass_is_withdrawn(damage, says, folder):
    damage(folder)
    proc = _verify_only(folder)
    assert proc.returncode == 2, proc.stderr
    assert says in _error_line(proc.stderr) and len(proc.stderr.strip().splitlines()) <= 3
    verification = json.loads((folder / "verification.json").read_text())
    assert verification["verdict"] == "fail" and "did not finish" in verification["failure"]


def test_a_crash_while_verifying_withdraws_the_old_pass(folder, monkeypatch):
    """Whatever stops the verifier, the folder no longer claims the pass it had."""
    import convert.verify.run as run
    from convert.verify import verify_conversion

    def crash(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(run, "compare", crash)
    with pytest.raises(RuntimeError):
        verify_conversion(CHECKPOINT, folder, say=lambda message: None)
    assert _verdict(folder) == "fail"


# ------------------------------------------------------------------------------------- the push

HELD_OUT = {
    "layer_norm_eps in config.json": (config(layer_norm_eps=1e-5), "config.json"),
    "one data byte of model.safetensors": (flip_last_data_byte("model.safetensors"), "model.safetensors"),
    "A and U swapped in tokenizer.json": (swap_a_and_u, "tokenizer.json"),
    "a file added": (lambda folder: (folder / "notes.txt").write_text("hello"), "notes.txt was added"),
    "a file removed": (remove("vocab.txt"), "vocab.txt was removed"),
}


def _push(folder: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convert.push_cli", str(folder), "my-lab/rnaernie", "--dry-run",
                           *options], capture_output=True, text=True, timeout=600, env=ENV, cwd=ROOT)


def test_push_dry_run_accepts_the_verified_folder_as_it_is(folder):
    proc = _push(folder)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", list(HELD_OUT))
def test_push_refuses_a_folder_changed_since_verification(name, folder):
    tamper, names = HELD_OUT[name]
    tamper(folder)
    proc = _push(folder)
    assert proc.returncode == 2
    line = _error_line(proc.stderr)
    assert "changed since verification" in line and names in line
    assert "--verify-only" in line and "--allow-unverified" in line


def test_allow_unverified_pushes_a_changed_folder_with_a_card_that_says_so(folder):
    config(layer_norm_eps=1e-5)(folder)
    proc = _push(folder, "--allow-unverified")
    assert proc.returncode == 0, proc.stderr
    assert "unverified" in proc.stdout and "parity-verified" not in proc.stdout


def test_a_verdict_without_file_digests_is_not_taken_for_a_pass(folder):
    """A verification.json written before verdicts were bound to the files cannot vouch for them."""
    _edit_json(folder, "verification.json", lambda data: data.pop("files"))
    proc = _push(folder)
    assert proc.returncode == 2 and "does not record its files' sha256" in _error_line(proc.stderr)
