"""Hostile and broken inputs (issue 5): the converter must be safe and kind on bad input.

Every bad input is generated here (nothing large is committed) and run through the real CLI in a
subprocess: `rnaernie-convert BAD OUT --no-verify`. Each must end with exit code 2, exactly one
`error: ...` line naming what is wrong, no traceback, no OUT_DIR and no `.OUT.partial-*` staging
folder left behind, and no side effect of a hostile payload: every payload tries to create the
file MARKER, which must not exist afterwards. Lying headers must fail fast without allocating.

Positive controls (the formats paddle.save really writes) check that the same loader still reads
every legitimate layout, equal to the arrays the generator pickled and to `paddle.load`.
"""

from __future__ import annotations

import builtins
import errno
import gzip
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from convert.errors import ConversionError, describe
from convert.pdparams import BIG_PARAM_KEY, NAME_TABLE_KEY, load_pdparams
from fixtures.generate import build_config, make_state, save_pdparams, write_checkpoint, write_config
from tests.conftest import require
from tests.helpers import signals_as_in_a_terminal

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("rnaernie-convert")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "convert.cli"]
MARKER_NAME = "PWNED"  # every hostile payload tries to create this file in its case folder
MAX_RSS_MB = 200  # the CLI needs ~50 MB here; a lying header must not make it allocate what it claims
FAST_CPU_SECONDS = 5.0  # CPU time, which a loaded machine does not inflate as it does wall-clock time
TINY = build_config("tiny")  # 2 layers, hidden 64, 4 heads, intermediate 128, vocab 39


# --------------------------------------------------------------------------------------------
# Running the CLI and checking the outcome


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    cpu_seconds: float
    max_rss_mb: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error: ")]


# A small launcher measures the CLI's CPU time and peak RSS: a child forked from pytest itself would
# count pytest's own memory (Linux carries the pre-exec high-water mark into ru_maxrss).
_LAUNCHER = """
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
"""


def run_cli(args: list, cwd: Path, timeout: float = 600, preexec_fn=None) -> Run:
    """Run the CLI; report its exit code, output, CPU time and peak RSS (its own, via os.wait4).
    `timeout` only guards against a hang: far beyond what the slowest machine needs."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report"
        proc = subprocess.run([sys.executable, "-c", _LAUNCHER, str(report), *CLI, *map(str, args)],
                              cwd=cwd, capture_output=True, preexec_fn=preexec_fn, timeout=timeout,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.returncode == 0 and report.exists(), f"launcher failed: {proc.stderr.decode()}"
        code, max_rss_kb, cpu_seconds = report.read_text().split()
    return Run(int(code), proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"),
               float(cpu_seconds), int(max_rss_kb) / 1024)


def leftovers(out: Path) -> list[Path]:
    """Staging or trash folders the writer may leave next to OUT_DIR."""
    return sorted(out.parent.glob(f".{out.name}.partial-*")) + sorted(out.parent.glob(f".{out.name}.old-*"))


def assert_refused(run: Run, expect: tuple[str, ...], out: Path, marker: Path, out_existed: bool = False) -> None:
    assert run.code == 2, f"exit code {run.code}, stderr:\n{run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
    assert len(run.error_lines) == 1, f"want exactly one error line, got:\n{run.stderr}"
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines[-1] == run.error_lines[0], f"the error must be the last line:\n{run.stderr}"
    others = [line for line in lines[:-1] if not line.startswith(("reading ", "writing "))]
    assert not others, f"unexpected stderr lines: {others}"
    line = run.error_lines[0]
    for text in expect:
        assert text in line, f"{text!r} not in {line!r}"
    assert not marker.exists(), "a hostile payload ran: the marker file exists"
    if not out_existed:
        assert not out.exists(), f"{out} was created"
    assert not leftovers(out), f"staging left behind: {leftovers(out)}"
    assert run.max_rss_mb < MAX_RSS_MB, f"peak RSS {run.max_rss_mb:.0f} MB"


# --------------------------------------------------------------------------------------------
# Building bad inputs


def tiny_state(**overrides) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    return make_state(build_config("tiny", **overrides), head="mlm", layout="2.4", seed=3)


def valid_checkpoint(folder: Path, **kwargs) -> Path:
    return write_checkpoint(folder, preset="tiny", head="mlm", layout="2.4", seed=3, **kwargs)


def with_config(folder: Path, data: bytes, name: str = "model_state.pdparams") -> Path:
    """A checkpoint file holding `data`, with a valid tiny config beside it (so only the file is wrong)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_config(TINY, "mlm", "2.4", folder)
    path = folder / name
    path.write_bytes(data)
    return path


def state_file(folder: Path, tensors: dict, names: dict | None = None, protocol: int = 4) -> Path:
    """Pickle `tensors` as paddle.save would (values may be anything), with a valid config beside it."""
    saved = dict(tensors)
    saved[NAME_TABLE_KEY] = dict(names or {})
    return with_config(folder, pickle.dumps(saved, protocol=protocol))


# Raw pickle opcodes, for the payloads Python's pickler would never write.
def op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def op_str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def op_bytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def op_call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"


def op_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def op_array(shape: tuple[int, ...], code: str, raw: bytes, data_op: bytes | None = None) -> bytes:
    """One ndarray exactly as numpy pickles it (protocol 2): _reconstruct + BUILD(dtype) + BUILD(state)."""
    dtype = (op_call(op_global("numpy", "dtype"), op_str(code), b"\x89\x88")
             + b"(" + op_int(3) + op_str("<") + b"NNN" + op_int(-1) + op_int(-1) + op_int(0) + b"tb")
    head = op_call(op_global("numpy.core.multiarray", "_reconstruct"), op_global("numpy", "ndarray"),
                   op_int(0) + b"\x85", b"C\x01b")
    return head + b"(" + op_int(1) + b"(" + b"".join(op_int(d) for d in shape) + b"t" + dtype + b"\x89" \
        + (data_op if data_op is not None else op_bytes(raw)) + b"tb"


def op_dict(items: list[tuple[bytes, bytes]]) -> bytes:
    return b"}(" + b"".join(k + v for k, v in items) + b"u"


def one_array_file(shape, code, raw, data_op=None) -> bytes:
    return b"\x80\x02" + op_dict([(op_str("ernie.embeddings.word_embeddings.weight"),
                                   op_array(shape, code, raw, data_op))]) + b"."


class Payload:
    """Pickles as `func(*args)`: what an attacker puts in a file."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def reduce_file(func, *args, protocol: int = 4) -> bytes:
    return pickle.dumps(Payload(func, *args), protocol=protocol)


@dataclass
class Case:
    id: str
    build: Callable[[Path, Path], list]  # (case folder, marker) -> CLI args before --no-verify
    expect: tuple[str, ...]
    fast: bool = False  # a lying header: must fail within FAST_CPU_SECONDS of CPU time
    out_exists: bool = False  # OUT_DIR existed before the run and must be left alone


def _touch(marker: Path) -> str:
    return f"touch {marker}"


def _py_touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def _valid_bytes(folder: Path) -> bytes:
    return valid_checkpoint(folder / "src").read_bytes()


def _checkpoint_case(make: Callable[[Path, Path], bytes]):
    """A case whose only bad part is the checkpoint file's bytes."""
    return lambda folder, marker: [with_config(folder / "ck", make(folder, marker)), folder / "out"]


def _state_case(edit: Callable[[dict], None], protocol: int = 4):
    """A real tiny state dict, edited, saved like paddle.save, with its valid config."""
    def build(folder: Path, marker: Path) -> list:
        tensors, names = tiny_state()
        tensors = dict(tensors)
        edit(tensors)
        return [state_file(folder / "ck", tensors, names, protocol), folder / "out"]
    return build


def _config_case(edit: Callable[[dict], object] | None, raw: str | None = None, vocab: str | None = None):
    """A valid checkpoint with an edited config (or the raw config text given)."""
    def build(folder: Path, marker: Path) -> list:
        checkpoint = valid_checkpoint(folder / "ck")
        config_path = folder / "ck" / "model_config.json"
        if raw is not None:
            config_path.write_text(raw)
        elif edit is not None:
            body = json.loads(config_path.read_text())
            edit(body["init_args"][0])
            config_path.write_text(json.dumps(body))
        args = [checkpoint, folder / "out"]
        if vocab is not None:
            (folder / "vocab.txt").write_text(vocab)
            args += ["--vocab", folder / "vocab.txt"]
        return args
    return build


def _truncated(fraction: float | None = None, keep: int | None = None):
    def make(folder: Path, marker: Path) -> bytes:
        data = _valid_bytes(folder)
        n = keep if keep is not None else int(len(data) * fraction)
        return data[:n] if n >= 0 else data[:len(data) + n]
    return make


def _random_bytes(folder: Path, marker: Path) -> bytes:
    data = np.random.default_rng(20260525).bytes(4096)
    assert data[0] != 0x80
    return data


def _torch_zip(folder: Path, marker: Path) -> bytes:
    torch = require("torch")
    tensors, _ = tiny_state()
    torch.save({k: torch.from_numpy(v.copy()) for k, v in tensors.items()}, folder / "model.pt")
    return (folder / "model.pt").read_bytes()


def _safetensors(folder: Path, marker: Path) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [160], "data_offsets": [0, 640]}}).encode()
    header += b" " * (-len(header) % 8)
    data = struct.pack("<Q", len(header)) + header + bytes(640)
    assert data[0] != 0x80
    return data


def _safetensors_looking_like_pickle(folder: Path, marker: Path) -> bytes:
    """A safetensors file whose 8-byte header length starts with the pickle bytes 0x80 0x02."""
    size = 0x0280
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    header += b" " * (size - len(header))
    return struct.pack("<Q", size) + header + bytes(16)


def _protocol(protocol: int):
    def make(folder: Path, marker: Path) -> bytes:
        tensors, names = tiny_state()
        return pickle.dumps({**tensors, NAME_TABLE_KEY: names}, protocol=protocol)
    return make


def _hidden_in_state(folder: Path, marker: Path) -> bytes:
    """A real state dict with one tensor replaced by a call to os.system."""
    tensors, names = tiny_state()
    tensors = dict(tensors)
    tensors["ernie.encoder.layers.1.linear1.bias"] = Payload(os.system, _touch(marker))
    return pickle.dumps({**tensors, NAME_TABLE_KEY: names}, protocol=4)


def _getattr_chain(folder: Path, marker: Path) -> bytes:
    """getattr(__import__('os'), 'system')('touch MARKER'), spelled with GLOBAL and REDUCE only."""
    imported = op_call(op_global("builtins", "__import__"), op_str("os"))
    system = op_call(op_global("builtins", "getattr"), imported, op_str("system"))
    return b"\x80\x02" + op_call(system, op_str(_touch(marker))) + b"."


def _deep_tuple_key(folder: Path, marker: Path) -> bytes:
    """A dict key nested 900,000 tuples deep (just under the scan's record cap): hashing it would
    recurse in C (a segfault, not an error)."""
    return b"\x80\x02}" + b")" + b"\x85" * 900_000 + b"K\x01s."


def _build_on_global(folder: Path, marker: Path) -> bytes:
    """BUILD on an allowlisted global: would set attributes on the loader's own objects."""
    return b"\x80\x02" + op_global("numpy", "ndarray") + b"}" + op_str("__reduce__") + b"K\x01sb0" \
        + op_dict([(op_str("w"), op_global("numpy", "ndarray"))]) + b"."


def _object_array(folder: Path, marker: Path) -> bytes:
    return pickle.dumps({"ernie.embeddings.word_embeddings.weight": np.array([1, 2], dtype=object)}, protocol=2)


def _split(info: dict, parts: dict) -> bytes:
    tensors, names = tiny_state()
    saved = {**tensors, **parts, BIG_PARAM_KEY: info, NAME_TABLE_KEY: names}
    return pickle.dumps(saved, protocol=2)


def _lying_binbytes8(folder: Path, marker: Path) -> bytes:
    return b"\x80\x04}" + op_str("w") + b"\x8e" + struct.pack("<Q", 2**40) + bytes(64) + b"s."


def _lying_shape(folder: Path, marker: Path) -> bytes:
    return one_array_file((10**6, 10**6), "f4", bytes(16))  # 10**12 elements, 16 bytes of data


def _lying_frame(folder: Path, marker: Path) -> bytes:
    return b"\x80\x04\x95" + struct.pack("<Q", 2**36) + b"}."


def _lying_binunicode(folder: Path, marker: Path) -> bytes:
    return b"\x80\x02}X" + struct.pack("<I", 2**31) + b"ab" + b"K\x01s."


def _shape_is_huge_bytes(folder: Path, marker: Path) -> bytes:
    """_reconstruct's shape argument is a 64 MB byte string: tuple(shape) would make 64M ints."""
    bad = op_call(op_global("numpy.core.multiarray", "_reconstruct"), op_global("numpy", "ndarray"),
                  op_bytes(bytes(64 * 2**20)), b"C\x01b")
    return b"\x80\x02" + op_dict([(op_str("w"), bad)]) + b"."


def _dtype_state_with_fields(folder: Path, marker: Path) -> bytes:
    """A numpy dtype BUILD state that is not a byte order (e.g. fields): refused, not handed to numpy."""
    dtype = (op_call(op_global("numpy", "dtype"), op_str("f4"), b"\x89\x88")
             + b"(" + op_int(3) + op_str("<") + b"N" + b"(" + op_str("x") + b"t" + b"N" + op_int(8) + op_int(4)
             + op_int(0) + b"tb")
    head = op_call(op_global("numpy.core.multiarray", "_reconstruct"), op_global("numpy", "ndarray"),
                   op_int(0) + b"\x85", b"C\x01b")
    array = head + b"(" + op_int(1) + b"(" + op_int(2) + b"t" + dtype + b"\x89" + op_bytes(bytes(8)) + b"tb"
    return b"\x80\x02" + op_dict([(op_str("w"), array)]) + b"."


def _drop(key: str):
    return lambda tensors: tensors.pop(key)


def _set(key: str, value):
    return lambda tensors: tensors.__setitem__(key, value)


def _poison(key: str, value: float):
    def edit(tensors):
        array = tensors[key].copy()
        array.flat[7] = value
        tensors[key] = array
    return edit


def _transpose(key: str):
    return lambda tensors: tensors.__setitem__(key, np.ascontiguousarray(tensors[key].T))


def _nested_json(depth: int) -> str:
    return '{"init_args": [' + "[" * depth + "]" * depth + "]}"


VOCAB_LINES = (ROOT / "convert" / "data" / "vocab_1MER.txt").read_text().split("\n")
LINEAR1 = "ernie.encoder.layers.0.linear1.weight"

CASES = [
    # --- not a .pdparams at all
    Case("empty-file", _checkpoint_case(lambda f, m: b""), ("model_state.pdparams", "the file is empty")),
    Case("random-bytes", _checkpoint_case(_random_bytes), ("model_state.pdparams", "not a pickle")),
    Case("truncated-10-bytes", _checkpoint_case(_truncated(keep=10)), ("truncated",)),
    Case("truncated-half", _checkpoint_case(_truncated(0.5)), ("truncated",)),
    Case("truncated-last-byte", _checkpoint_case(_truncated(keep=-1)), ("truncated",)),
    Case("gzip", _checkpoint_case(lambda f, m: gzip.compress(_valid_bytes(f))), ("gzip-compressed",)),
    Case("torch-zip", _checkpoint_case(_torch_zip), ("zip archive",)),
    Case("safetensors", _checkpoint_case(_safetensors), ("safetensors",)),
    Case("safetensors-0x80", _checkpoint_case(_safetensors_looking_like_pickle), ("safetensors",)),
    Case("pickle-protocol-0", _checkpoint_case(_protocol(0)), ("protocol 0/1",)),
    Case("pickle-protocol-1", _checkpoint_case(_protocol(1)), ("protocol 0/1",)),
    Case("pickle-protocol-5", _checkpoint_case(_protocol(5)), ("pickle protocol 5",)),
    # --- code execution attempts
    Case("os.system", _checkpoint_case(
        lambda f, m: b"\x80\x02" + op_call(op_global("os", "system"), op_str(_touch(m))) + b"."), ("os.system",)),
    Case("posix.system", _checkpoint_case(lambda f, m: reduce_file(os.system, _touch(m))), ("posix.system",)),
    Case("subprocess.Popen", _checkpoint_case(
        lambda f, m: reduce_file(subprocess.Popen, ["sh", "-c", _touch(m)])), ("subprocess.Popen",)),
    Case("subprocess.check_output", _checkpoint_case(
        lambda f, m: reduce_file(subprocess.check_output, ["touch", str(m)], protocol=2)),
        ("commands.check_output",)),  # protocol 2 spells subprocess as Python 2's `commands`
    Case("builtins.eval", _checkpoint_case(
        lambda f, m: reduce_file(builtins.eval, f"__import__('os').system({_touch(m)!r})")), ("builtins.eval",)),
    Case("builtins.exec", _checkpoint_case(
        lambda f, m: reduce_file(builtins.exec, _py_touch(m), protocol=3)), ("builtins.exec",)),
    Case("builtins.getattr-chain", _checkpoint_case(_getattr_chain), ("builtins.getattr",)),
    Case("py2-__builtin__.eval", _checkpoint_case(
        lambda f, m: b"\x80\x02" + op_call(op_global("__builtin__", "eval"),
                                           op_str(f"__import__('os').system({_touch(m)!r})")) + b"."),
        ("__builtin__.eval",)),
    Case("numpy-runstring", _checkpoint_case(
        lambda f, m: reduce_file(__import__("numpy.testing._private.utils", fromlist=["x"]).runstring,
                                 _py_touch(m), {})), ("numpy.testing._private.utils.runstring",)),
    Case("os.system-hidden-in-state", _checkpoint_case(_hidden_in_state), ("posix.system",)),
    Case("obj-opcode", _checkpoint_case(
        lambda f, m: b"\x80\x02(" + op_global("os", "system") + op_str(_touch(m)) + b"o."), ("opcode OBJ",)),
    Case("build-on-allowed-global", _checkpoint_case(_build_on_global), ("refused", "state")),
    Case("object-array", _checkpoint_case(_object_array), ("numpy dtype",)),
    Case("dtype-state-not-byte-order", _checkpoint_case(_dtype_state_with_fields), ("refused", "dtype")),
    Case("deep-tuple-key", _checkpoint_case(_deep_tuple_key), ("not a string",)),
    # --- not a state dict
    Case("top-level-list", _checkpoint_case(lambda f, m: pickle.dumps(list(tiny_state()[0].values()), protocol=4)),
         ("holds a list, not a state dict",)),
    Case("value-is-int", _state_case(_set(LINEAR1, 7)), (repr(LINEAR1), "is an int, not an array")),
    Case("value-is-str", _state_case(_set(LINEAR1, "weights")), (repr(LINEAR1), "is a str, not an array")),
    Case("key-not-a-string", _state_case(_set(7, np.zeros(3, np.float32))), ("key 7", "not a string")),
    Case("split-missing-slice", _checkpoint_case(lambda f, m: _split(
        {"ernie.extra": {"OriginShape": [4], "slices": ["ernie.extra@@.0", "ernie.extra@@.1"]}},
        {"ernie.extra@@.0": np.zeros(2, np.float32)})), ("split parameter 'ernie.extra'", "ernie.extra@@.1")),
    Case("split-no-slices", _checkpoint_case(lambda f, m: _split(
        {"ernie.extra": {"OriginShape": [4], "slices": []}}, {})), ("split parameter 'ernie.extra'",)),
    Case("split-wrong-size", _checkpoint_case(lambda f, m: _split(
        {"ernie.extra": {"OriginShape": [10**6, 10**6], "slices": ["ernie.extra@@.0"]}},
        {"ernie.extra@@.0": np.zeros(2, np.float32)})), ("split parameter 'ernie.extra'", "(1000000, 1000000)")),
    # --- weights that do not match the layout
    Case("missing-key", _state_case(_drop("ernie.encoder.layers.1.linear2.bias")),
         ("missing tensor ernie.encoder.layers.1.linear2.bias",)),
    Case("unexpected-key", _state_case(_set("ernie.encoder.layers.0.adapter.weight", np.zeros((4, 4), np.float32))),
         ("unexpected tensor ernie.encoder.layers.0.adapter.weight (4, 4)",)),
    Case("transposed-linear1", _state_case(_transpose(LINEAR1)),
         (f"{LINEAR1} has shape (128, 64), expected (64, 128) (stored transposed)",)),
    Case("nan-weight", _state_case(_poison("ernie.encoder.layers.1.self_attn.v_proj.weight", np.nan)),
         ("ernie.encoder.layers.1.self_attn.v_proj.weight contains NaN or Inf",)),
    Case("inf-weight", _state_case(_poison("cls.predictions.transform.weight", -np.inf)),
         ("cls.predictions.transform.weight contains NaN or Inf",)),
    Case("integer-weight", _state_case(_set(LINEAR1, np.zeros((64, 128), np.int32))),
         (LINEAR1, "dtype int32")),
    Case("scalar-word-embeddings", _state_case(_set("ernie.embeddings.word_embeddings.weight",
                                                    np.array(1.0, np.float32))),
         ("ernie.embeddings.word_embeddings.weight has shape ()",)),
    # --- config and vocabulary that disagree with the weights
    Case("vocab-too-short", _config_case(None, vocab="\n".join(VOCAB_LINES[:7] + VOCAB_LINES[35:])),
         ("the vocabulary has 11 tokens but the model has 39 rows", "--vocab")),
    Case("config-malformed-json", _config_case(None, raw='{"init_args": [{"hidden_size": 64,'),
         ("model_config.json is not valid JSON",)),
    Case("config-deeply-nested-json", _config_case(None, raw=_nested_json(100_000)),
         ("model_config.json is not valid JSON",)),
    Case("config-layers", _config_case(lambda c: c.update(num_hidden_layers=3)),
         ("num_hidden_layers 3 in the config but 2 in the weights",)),
    Case("config-hidden-size", _config_case(lambda c: c.update(hidden_size=128)),
         ("hidden_size 128 in the config but 64 in the weights",)),
    Case("config-heads-not-dividing", _config_case(lambda c: c.update(num_attention_heads=6)),
         ("hidden_size 64 is not divisible by num_attention_heads 6",)),
    Case("config-unknown-activation", _config_case(lambda c: c.update(hidden_act="leaky_relu")),
         ("hidden_act 'leaky_relu' is not supported",)),
    Case("config-activation-not-a-string", _config_case(lambda c: c.update(hidden_act=["relu"])),
         ("hidden_act ['relu'] is not supported",)),
    Case("config-pad-token-not-kept", _config_case(lambda c: c.update(pad_token_id=6)),
         ("pad_token_id 6",)),
    Case("config-pad-token-out-of-range", _config_case(lambda c: c.update(pad_token_id=1000)),
         ("pad_token_id 1000",)),
    # --- lying headers: fail fast, allocate nothing
    Case("binbytes8-claims-1TB", _checkpoint_case(_lying_binbytes8), ("claims 1099511627776 bytes",), fast=True),
    Case("million-one-byte-records", _checkpoint_case(lambda f, m: b"\x80\x04" + b"N0" * 600_000 + b"."),
         ("more than 1,000,000 pickle records",), fast=True),
    Case("shape-claims-1e12-elements", _checkpoint_case(_lying_shape), ("(1000000, 1000000)",), fast=True),
    Case("frame-claims-64GB", _checkpoint_case(_lying_frame), ("FRAME", "68719476736"), fast=True),
    Case("binunicode-claims-2GB", _checkpoint_case(_lying_binunicode), ("claims 2147483648 bytes",), fast=True),
    Case("shape-is-64MB-bytes", _checkpoint_case(_shape_is_huge_bytes), ("_reconstruct",), fast=True),
    # --- paths
    # a folder is read as a release (every checkpoint under it); one without any is refused
    Case("checkpoint-is-directory", lambda f, m: [_empty_dir(f / "ck"), f / "out"], ("holds no model_state.pdparams",)),
    Case("checkpoint-missing", lambda f, m: [f / "nowhere" / "model_state.pdparams", f / "out"],
         ("does not exist",)),
    Case("out-is-a-file", lambda f, m: [valid_checkpoint(f / "ck"), _file(f / "out")],
         ("exists and is a file",), out_exists=True),
    Case("out-not-empty", lambda f, m: [valid_checkpoint(f / "ck"), _nonempty_dir(f / "out")],
         ("exists and is not empty", "--force"), out_exists=True),
]


def _empty_dir(path: Path) -> Path:
    path.mkdir()
    return path


def _file(path: Path) -> Path:
    path.write_text("precious")
    return path


def _nonempty_dir(path: Path) -> Path:
    path.mkdir()
    (path / "keep.txt").write_text("precious")
    return path


def _snapshot(path: Path) -> object:
    if path.is_file():
        return path.read_bytes()
    if path.is_dir():
        return sorted((p.relative_to(path).as_posix(), p.read_bytes() if p.is_file() else None)
                      for p in path.rglob("*"))
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_kindly(case: Case, tmp_path: Path) -> None:
    marker = tmp_path / MARKER_NAME
    args = case.build(tmp_path, marker)
    out = Path(args[1])
    before = _snapshot(out)
    run = run_cli([*args, "--no-verify"], cwd=tmp_path)
    assert_refused(run, case.expect, out, marker, out_existed=case.out_exists)
    if case.out_exists:
        assert _snapshot(out) == before, "an existing OUT_DIR was modified"
    if case.fast:
        assert run.cpu_seconds < FAST_CPU_SECONDS, f"took {run.cpu_seconds:.1f} s of CPU time"


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    checkpoint = with_config(tmp_path / "ck", b"")
    run = run_cli([checkpoint, tmp_path / "out", "--no-verify", "--debug"], cwd=tmp_path)
    assert run.code != 0
    assert "Traceback" in run.stderr and "the file is empty" in run.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# Output folders that cannot be written


def _without_dac_override() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE from the bounding set, so that root obeys
    file modes after exec (everything here is root-owned, so the rest stays readable)."""
    import ctypes

    pr_capbset_drop, cap_dac_override = 24, 1
    if ctypes.CDLL(None, use_errno=True).prctl(pr_capbset_drop, cap_dac_override, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unwritable_out_parent(tmp_path: Path) -> None:
    """chmod 555 on OUT_DIR's parent. Root ignores modes, so as root the CLI runs without CAP_DAC_OVERRIDE."""
    checkpoint = valid_checkpoint(tmp_path / "ck")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    preexec = _without_dac_override if os.geteuid() == 0 else None
    try:
        probe = subprocess.run([sys.executable, "-c", f"import os; os.mkdir({str(locked / 'probe')!r})"],
                               preexec_fn=preexec, capture_output=True)
        if probe.returncode == 0:
            pytest.skip("cannot make a folder unwritable here (root with CAP_DAC_OVERRIDE that cannot be dropped)")
        out = locked / "out"
        run = run_cli([checkpoint, out, "--no-verify"], cwd=tmp_path, preexec_fn=preexec)
        assert_refused(run, ("cannot write in", str(locked)), out, tmp_path / MARKER_NAME)
    finally:
        locked.chmod(0o755)


def test_out_parent_on_unwritable_filesystem(tmp_path: Path) -> None:
    """/sys refuses new folders even to root (EPERM, or EROFS where it is mounted read-only)."""
    if not Path("/sys").is_dir():
        pytest.skip("no /sys on this system")
    out = Path("/sys/rnaernie-convert-hostile-test-out")
    checkpoint = valid_checkpoint(tmp_path / "ck")
    run = run_cli([checkpoint, out, "--no-verify"], cwd=tmp_path)
    assert_refused(run, ("cannot write in /sys",), out, tmp_path / MARKER_NAME)


def test_out_of_disk_space_while_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up halfway through model.safetensors: clear message, exit 2, nothing left."""
    from convert import writer
    from convert.pipeline import convert_checkpoint

    checkpoint = valid_checkpoint(tmp_path / "ck")
    writes = []
    real_open = builtins.open

    class FullDisk:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data) -> int:
            size = memoryview(data).nbytes
            if self.written + size > 200_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += size
            writes.append(size)
            return self.handle.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def full_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return FullDisk(handle) if "w" in mode and str(path).endswith(".safetensors") else handle

    monkeypatch.setattr(writer, "open", full_open, raising=False)
    out = tmp_path / "out"
    with pytest.raises(OSError) as caught:
        convert_checkpoint(checkpoint, out)
    assert writes, "the simulated disk was never written to: the writer no longer uses open()"
    message, code = describe(caught.value)
    assert code == 2
    assert message.startswith("out of disk space") and str(out) in message, message
    assert "\n" not in message
    assert not out.exists()
    assert not leftovers(out)


# --------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM at every moment of a run
#
# The invariant: whatever moment a SIGINT or SIGTERM arrives, either the run exits 0 and OUT_DIR is
# complete, or it exits non-zero (130 / 143) and OUT_DIR is exactly as before. `tests/interrupt.py`
# runs the CLI with the function that marks a named moment patched to send the process the signal
# there, so each moment is hit every time, with no timing involved and no hook in the code under test.

# The run's code must be this tree's, whatever console script is installed.
THIS_TREE_CLI = [sys.executable, "-m", "convert.cli"]
BEFORE_COMMIT = ("start", "staged", "writing", "written")  # the run must stop and leave OUT_DIR as it was
FROM_COMMIT = ("published", "done")  # OUT_DIR is final: the run completes (the swap itself: tests/test_signals.py)
SIGNALS = {"SIGINT": (130, "interrupted"), "SIGTERM": (143, "terminated")}


def snapshot(folder: Path) -> dict[str, bytes] | None:
    """Every file under `folder`, byte for byte (None when there is no folder)."""
    if not folder.exists():
        return None
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def signal_case(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """A tiny checkpoint and the folder an uninterrupted --no-verify run makes of it."""
    root = tmp_path_factory.mktemp("signals")
    checkpoint = valid_checkpoint(root / "ck")
    out = root / "reference"
    run = subprocess.run([*THIS_TREE_CLI, checkpoint, out, "--no-verify", "-q"], cwd=root, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr
    return checkpoint, snapshot(out)


def old_folder(out: Path) -> dict[str, bytes]:
    """An existing OUT_DIR for --force to replace: an earlier conversion's files, different bytes."""
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"an older model")
    (out / "config.json").write_text('{"old": true}\n')
    (out / "notes").mkdir()
    (out / "notes" / "kept.txt").write_text("the user's own file\n")
    return snapshot(out)


def interrupted_run(checkpoint: Path, out: Path, point: str, sig: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.interrupt", f"{point}:{sig}", "convert.cli", checkpoint, out,
                           "-q", *args], cwd=out.parent, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=signals_as_in_a_terminal)


def assert_complete(out: Path, reference: dict[str, bytes], *, verified: bool = False) -> None:
    got = snapshot(out)
    assert got is not None, f"{out} is missing"
    expected = set(reference) | ({"verification.json"} if verified else set())
    assert set(got) == expected, sorted(got)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "vocab.txt"):
        assert got[name] == reference[name], f"{name} differs from an uninterrupted run's"


def assert_stopped(run: subprocess.CompletedProcess, sig: str, out: Path, before: dict[str, bytes] | None) -> None:
    code, word = SIGNALS[sig]
    assert run.returncode == code, f"exit {run.returncode}:\n{run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"error: {word}; "), run.stderr
    assert snapshot(out) == before, f"{out} changed although the run failed"
    assert not leftovers(out), leftovers(out)


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", BEFORE_COMMIT)
def test_signal_before_the_commit_leaves_the_old_folder_byte_for_byte(signal_case, tmp_path: Path, point: str,
                                                                      sig: str) -> None:
    checkpoint, _ = signal_case
    out = tmp_path / "out"
    before = old_folder(out)
    assert_stopped(interrupted_run(checkpoint, out, point, sig, "--no-verify", "--force"), sig, out, before)


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", ("staged", "writing"))
def test_signal_while_writing_a_new_folder_leaves_nothing(signal_case, tmp_path: Path, point: str, sig: str) -> None:
    checkpoint, _ = signal_case
    out = tmp_path / "out"
    assert_stopped(interrupted_run(checkpoint, out, point, sig, "--no-verify"), sig, out, None)


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", FROM_COMMIT)
def test_signal_from_the_commit_on_completes_the_run(signal_case, tmp_path: Path, point: str, sig: str) -> None:
    """During the --force swap, after it, during the old folder's removal, before exit: exit 0, complete."""
    checkpoint, reference = signal_case
    out = tmp_path / "out"
    old_folder(out)
    run = interrupted_run(checkpoint, out, point, sig, "--no-verify", "--force")
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert_complete(out, reference)
    assert not leftovers(out), leftovers(out)


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_after_the_rename_of_a_new_folder_completes_the_run(signal_case, tmp_path: Path, sig: str) -> None:
    checkpoint, reference = signal_case
    out = tmp_path / "out"
    run = interrupted_run(checkpoint, out, "published", sig, "--no-verify")
    assert run.returncode == 0, run.stderr
    assert_complete(out, reference)
    assert not leftovers(out), leftovers(out)


def test_a_command_run_inside_another_program_leaves_its_ctrl_c_alone(signal_case, tmp_path: Path) -> None:
    """Absorbing signals after the commit is for a process that exits right after it; a command run
    in-process (CliRunner, a notebook) must give the host program its Ctrl-C back."""
    from typer.testing import CliRunner

    from convert.cli import app

    checkpoint, _ = signal_case
    result = CliRunner().invoke(app, [str(checkpoint), str(tmp_path / "out"), "--no-verify", "-q"])
    assert result.exit_code == 0, result.output
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("point", ("verifying", "verified"))
def test_signal_while_verifying_leaves_the_old_folder(signal_case, tmp_path: Path, point: str, sig: str) -> None:
    """The default command verifies in the staging folder, before the commit: OUT_DIR must still be
    untouched, with no staging folder left (and the verifier's Paddle process stopped)."""
    require("paddle")
    checkpoint, _ = signal_case
    out = tmp_path / "out"
    before = old_folder(out)
    assert_stopped(interrupted_run(checkpoint, out, point, sig, "--force"), sig, out, before)


# --------------------------------------------------------------------------------------------
# Positive controls: every layout paddle.save writes still loads, equal to what was pickled


def _control_state() -> tuple[dict[str, np.ndarray], dict[str, str]]:
    tensors, names = make_state(build_config("tiny"), head="mlm", layout="2.5", seed=11)
    tensors = dict(tensors)
    rng = np.random.default_rng(5)
    # a few dtypes and memory orders Paddle state dicts can hold
    tensors["extra.bf16_as_uint16"] = rng.integers(0, 2**16, size=(3, 5), dtype=np.uint16)
    tensors["extra.int64"] = rng.integers(-5, 5, size=(4,), dtype=np.int64)
    tensors["extra.bool"] = rng.random(6) > 0.5
    tensors["extra.float64"] = rng.standard_normal((2, 3))
    tensors["extra.fortran"] = np.asfortranarray(rng.standard_normal((3, 4)).astype(np.float32))
    tensors["extra.big_endian"] = rng.standard_normal(5).astype(">f4")
    tensors["extra.scalar"] = np.array(2.5, dtype=np.float32)
    tensors["extra.empty"] = np.zeros((0, 3), dtype=np.float32)
    return tensors, names


CONTROLS = [
    dict(protocol=2), dict(protocol=3), dict(protocol=4),
    dict(protocol=2, numpy_names=1), dict(protocol=3, numpy_names=1), dict(protocol=4, numpy_names=1),
    dict(protocol=2, split_threshold_bytes=4096), dict(protocol=3, split_threshold_bytes=1000),
]


def _control_id(kwargs: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in kwargs.items())


@pytest.fixture(scope="module")
def control_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("controls")
    tensors, names = _control_state()
    files = {}
    for kwargs in CONTROLS:
        path = folder / f"{_control_id(kwargs)}.pdparams"
        save_pdparams(tensors, names, path, **kwargs)
        files[_control_id(kwargs)] = path
    return files


@pytest.mark.parametrize("kwargs", CONTROLS, ids=_control_id)
def test_legitimate_layouts_load_exactly(kwargs: dict, control_files: dict[str, Path]) -> None:
    path = control_files[_control_id(kwargs)]
    data = path.read_bytes()
    assert data[1] == kwargs["protocol"]
    if kwargs.get("numpy_names") == 1:
        assert b"numpy.core.multiarray" in data and b"numpy._core" not in data
    else:
        assert b"numpy._core.multiarray" in data
    if "split_threshold_bytes" in kwargs:
        assert BIG_PARAM_KEY.encode() in data and b"@@.1" in data
    tensors, names = _control_state()
    loaded = load_pdparams(path)
    assert loaded.protocol == kwargs["protocol"]
    assert loaded.parameter_names == names
    assert sorted(loaded.tensors) == sorted(tensors)
    for key, want in tensors.items():
        got = loaded.tensors[key]
        assert got.shape == want.shape and got.dtype.newbyteorder("=") == want.dtype.newbyteorder("="), key
        np.testing.assert_array_equal(got, want, err_msg=key)


_PADDLE_LOAD = """
import sys, numpy as np, paddle
out = {}
for i, path in enumerate(sys.argv[2:]):
    state = paddle.load(path, return_numpy=True)
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            out[f"{i}/{key}"] = value
np.savez(sys.argv[1], **out)
"""


def test_legitimate_layouts_match_paddle_load(control_files: dict[str, Path], tmp_path: Path) -> None:
    """paddle.load (a plain pickle.load: only for our own trusted files) gives the same arrays."""
    require("paddle")
    paths = [control_files[_control_id(kwargs)] for kwargs in CONTROLS]
    npz = tmp_path / "paddle.npz"
    subprocess.run([sys.executable, "-c", _PADDLE_LOAD, str(npz), *map(str, paths)], check=True,
                   capture_output=True, timeout=300)
    reference = np.load(npz)
    for i, path in enumerate(paths):
        ours = load_pdparams(path).tensors
        theirs = {key.split("/", 1)[1]: reference[key] for key in reference.files if key.startswith(f"{i}/")}
        assert sorted(theirs) == sorted(ours), path.name
        for key, array in theirs.items():
            np.testing.assert_array_equal(ours[key], array, err_msg=f"{path.name}: {key}")


def test_split_layout_converts_end_to_end(tmp_path: Path) -> None:
    tensors, names = make_state(build_config("tiny"), head="mlm", layout="2.4", seed=3)
    folder = tmp_path / "ck"
    folder.mkdir()
    write_config(build_config("tiny"), "mlm", "2.4", folder)
    save_pdparams(tensors, names, folder / "model_state.pdparams", protocol=2, split_threshold_bytes=4096)
    run = run_cli([folder / "model_state.pdparams", tmp_path / "out", "--no-verify", "--quiet"], cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_handcrafted_array_record_is_valid(tmp_path: Path) -> None:
    """The hand-written array pickles above are refused only for what they are meant to test."""
    raw = np.arange(6, dtype="<f4").tobytes()
    path = with_config(tmp_path, one_array_file((2, 3), "f4", raw))
    loaded = load_pdparams(path).tensors["ernie.embeddings.word_embeddings.weight"]
    np.testing.assert_array_equal(loaded, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_load_errors_are_conversion_errors(tmp_path: Path) -> None:
    """Python API users catch one type: every case above raises ConversionError from load_pdparams."""
    with pytest.raises(ConversionError):
        load_pdparams(with_config(tmp_path, _lying_frame(tmp_path, tmp_path / MARKER_NAME)))
