"""Property-based fuzzing of the safe `.pdparams` reader (issue 5).

Valid small checkpoints (every layout paddle.save writes) are mutated: byte flips, truncation,
insertion, deletion, opcodes spliced in, length fields rewritten, segments duplicated or taken
from another file. Whatever comes out, `load_pdparams` must either return a PaddleCheckpoint of
string-keyed arrays or raise `ConversionError` (CheckpointFormatError / UnsafeCheckpointError):
never another exception, never a crash, never a hang (a per-example CPU-time budget), never a
memory blow-up (a per-example peak). Derandomized: CI runs the same examples every time.
"""

from __future__ import annotations

import pickle
import pickletools
import signal
import struct
import tempfile
import tracemalloc
import warnings
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import numpy as np
import pytest

from convert.errors import ConversionError
from convert.pdparams import NAME_TABLE_KEY, PaddleCheckpoint, load_pdparams
from fixtures.generate import build_config, make_state, save_pdparams
from tests.conftest import require

require("hypothesis")  # the `test` extra
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# CPU seconds, not wall-clock seconds: a loaded machine makes an example wait longer, not compute longer.
# An example costs milliseconds; a loader that loops forever reaches the budget whatever the load.
CPU_SECONDS_PER_EXAMPLE = 5
PEAK_BYTES_PER_EXAMPLE = 64 * 2**20  # the inputs are a few kB
FUZZ = settings(max_examples=500, derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def _seed_files() -> list[bytes]:
    """Small valid checkpoints in every layout the loader accepts."""
    config = build_config("tiny", hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2,
                          max_position_embeddings=4)
    tensors, names = make_state(config, head="encoder", seed=1)
    rng = np.random.default_rng(2)
    mixed = {
        "a.float32": rng.standard_normal((2, 3)).astype(np.float32),
        "a.big_endian": rng.standard_normal(3).astype(">f4"),
        "a.fortran": np.asfortranarray(rng.standard_normal((2, 2))),
        "a.bool": rng.random(3) > 0.5,
        "a.uint16": rng.integers(0, 2**16, 4, dtype=np.uint16),
        "a.empty": np.zeros((0, 2), np.float32),
        "a.scalar": np.array(3.0, np.float32),
    }
    variants = [
        (tensors, names, dict(protocol=4)),
        (tensors, names, dict(protocol=2)),
        (tensors, names, dict(protocol=3, numpy_names=1)),
        (tensors, names, dict(protocol=2, split_threshold_bytes=64)),
        (mixed, {}, dict(protocol=4)),
        (mixed, {}, dict(protocol=2)),
    ]
    seeds = []
    with tempfile.TemporaryDirectory() as folder:
        for i, (arrays, table, kwargs) in enumerate(variants):
            path = Path(folder) / f"{i}.pdparams"
            save_pdparams(arrays, table, path, **kwargs)
            seeds.append(path.read_bytes())
    return seeds


SEEDS = _seed_files()
LENGTHS = [0, 1, 2, 7, 8, 255, 256, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**40, 2**63 - 1, 2**64 - 1]
# Opcodes and fragments worth splicing in: dangerous globals, stack and memo abuse, lying lengths.
DEEP_TUPLE = b")" + b"\x85" * 300_000  # hashing a key this deep recurses in C: a crash, unless refused first
SNIPPETS = [
    DEEP_TUPLE,
    b"cos\nsystem\n", b"cbuiltins\neval\n", b"c__builtin__\ngetattr\n", b"\x8c\x02os\x8c\x06system\x93",
    b"cnumpy\nndarray\n", b"cnumpy\ndtype\n", b"c_codecs\nencode\n", b"c__builtin__\nbytes\n",
    b"cnumpy.core.multiarray\n_reconstruct\n", b"\x8c\x15numpy._core.multiarray\x8c\x0c_reconstruct\x93",
    b"R", b"b", b"(", b")", b"t", b"\x85", b"\x86", b"\x87", b"\x85" * 3000, b"}", b"]", b"s", b"u", b"a", b"e",
    b"l", b"d", b"2", b"0", b"1", b"N", b"\x88", b"\x89", b"K\x00", b"K\x03", b"J\xff\xff\xff\xff", b"M\xff\xff",
    b"h\x00", b"h\x05", b"j\x00\x00\x00\x00", b"q\x00", b"r\xff\xff\xff\x7f", b"\x94",
    b"\x95" + struct.pack("<Q", 2**40),
    b"\x8e" + struct.pack("<Q", 2**40), b"B\xff\xff\xff\x7f", b"X\xff\xff\xff\xff", b"\x8a\x01\x00",
    b"\x8b\xff\xff\xff\x7f", b"G" + bytes(8), b"i", b"o", b"\x81", b"\x82\x01", b"P0\n", b"Q", b"\x92", b".",
    b"\x80\x05", b"\x80\x02", b"X\x01\x00\x00\x00<", b"X\x02\x00\x00\x00f4", b"X\x02\x00\x00\x00O8",
    b"C\x01b", b"C\x00", b"\x8c\x06latin1", b"(K\x03X\x01\x00\x00\x00>NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t",
]


def _ops(data: bytes) -> list[tuple[pickletools.OpcodeInfo, int]]:
    """The opcodes that still parse, with their offsets (a mutated stream parses up to the damage)."""
    found = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # genops decodes text opcodes the mutations may break
        try:
            for op, _, pos in pickletools.genops(data):
                found.append((op, pos))
        except Exception:  # noqa: BLE001 - the damage itself
            pass
    return found


def _boundaries(data: bytes) -> list[int]:
    return sorted({pos for _, pos in _ops(data)} | {0, len(data)})


def _length_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, width) of every length prefix (and FRAME size) in the stream."""
    widths = {-1: 1, -2: 4, -3: 4, -4: 4, -5: 8}  # pickletools' TAKEN_FROM_ARGUMENT* codes
    fields = []
    for op, pos in _ops(data):
        if op.name == "FRAME":
            fields.append((pos + 1, 8))
        elif op.arg is not None and op.arg.n in widths:
            fields.append((pos + 1, widths[op.arg.n]))
    return fields


OPCODE_BYTES = sorted(set(b"().0123abdehjqrstuBCGJKMNRX\x85\x86\x87\x88\x89\x8c\x8e\x93\x94\x95"))


@st.composite
def mutated_checkpoints(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "snippet", "length", "length",
                                     "duplicate", "cross", "opcode"]))
        index = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[index] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[index:]
        elif kind == "insert":
            data[index:index] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[index:index + draw(st.integers(1, 64))]
        elif kind == "snippet":
            at = draw(st.sampled_from(_boundaries(bytes(data))))
            data[at:at] = draw(st.sampled_from(SNIPPETS))
        elif kind == "length":
            fields = _length_fields(bytes(data))
            if fields:
                offset, width = draw(st.sampled_from(fields))
                value = draw(st.one_of(st.sampled_from(LENGTHS), st.integers(0, 2**64 - 1)))
                data[offset:offset + width] = (value % 2 ** (8 * width)).to_bytes(width, "little")
        elif kind in ("duplicate", "cross"):
            source = bytes(data) if kind == "duplicate" else draw(st.sampled_from(SEEDS))
            cuts = _boundaries(source)
            start = draw(st.sampled_from(cuts))
            end = draw(st.sampled_from([c for c in cuts if c >= start]))
            at = draw(st.sampled_from(_boundaries(bytes(data))))
            data[at:at] = source[start:end]
        elif kind == "opcode":
            positions = [pos for _, pos in _ops(bytes(data))]
            if positions:
                data[draw(st.sampled_from(positions))] = draw(st.sampled_from(OPCODE_BYTES))
    return bytes(data)


# Random programs over the opcodes the scanner allows, with small arguments: these get past the
# opcode scan and exercise the unpickler itself (stack, memo, REDUCE and BUILD on the allowlist).
TOKENS = [s for s in SNIPPETS
          if s != DEEP_TUPLE and s[:1] not in (b"i", b"o", b"\x81", b"\x82", b"P", b"Q", b"\x92", b".", b"\x80")] + [
    b"X\x01\x00\x00\x00w", b"X\x1b\x00\x00\x00StructuredToParameterName@@", b"X\x15\x00\x00\x00UnpackBigParamInfor@@",
    b"X\x0b\x00\x00\x00OriginShape", b"X\x06\x00\x00\x00slices", b"X\x04\x00\x00\x00w@@0", b"B\x04\x00\x00\x00abcd",
    b"C\x08" + bytes(8), b"K\x02", b"K\x04", b"]", b"\x8c\x01x",
]


@st.composite
def opcode_programs(draw) -> bytes:
    protocol = draw(st.sampled_from([b"\x80\x02", b"\x80\x03", b"\x80\x04"]))
    body = b"".join(draw(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=40)))
    return protocol + b"}" + body + b"."


class _Hang(BaseException):
    pass


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets this process's peak RSS (VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@contextmanager
def _limits():
    """Fail an example that uses more than CPU_SECONDS_PER_EXAMPLE of CPU time or grows memory by more
    than the cap: the peak RSS where Linux can reset it (cheap), else tracemalloc's peak (slow, Python
    heap only).

    The CPU timer (ITIMER_PROF: this process's user + system time) keeps firing every 0.5 CPU s past
    the budget, so a loop is interrupted even if one interruption lands where Python ignores
    exceptions (a finalizer); and the example fails on the record `fired`, not only by the exception.
    """
    fired = []

    def on_budget_spent(signum, frame):
        fired.append(signum)
        raise _Hang(f"load_pdparams used more than {CPU_SECONDS_PER_EXAMPLE} s of CPU time")

    previous = signal.signal(signal.SIGPROF, on_budget_spent)
    signal.setitimer(signal.ITIMER_PROF, CPU_SECONDS_PER_EXAMPLE, 0.5)
    by_rss = _reset_peak_rss()
    before = _rss_kb("VmRSS") * 1024 if by_rss else 0
    if not by_rss:
        tracemalloc.start()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
        if by_rss:
            grown = _rss_kb("VmHWM") * 1024 - before
        else:
            grown = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert not fired, f"load_pdparams used more than {CPU_SECONDS_PER_EXAMPLE} s of CPU time"
        assert grown < PEAK_BYTES_PER_EXAMPLE, f"memory grew by {grown / 2**20:.0f} MB"


_names = count()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _load_or_refuse(data: bytes, folder: Path) -> None:
    # a new file each time: a mapping of an earlier example must never see its file rewritten
    path = folder / f"{next(_names)}.pdparams"
    path.write_bytes(data)
    try:
        with _limits():
            try:
                result = load_pdparams(path)
            except ConversionError:
                return
        assert isinstance(result, PaddleCheckpoint)
        assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in result.tensors.items())
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.parameter_names.items())
        for array in result.tensors.values():
            array.sum()  # the data is readable
    finally:
        path.unlink()


@FUZZ
@given(data=mutated_checkpoints())
def test_mutated_checkpoints_load_or_are_refused(data: bytes, scratch: Path) -> None:
    _load_or_refuse(data, scratch)


@settings(FUZZ, max_examples=300)
@given(data=opcode_programs())
def test_random_opcode_programs_load_or_are_refused(data: bytes, scratch: Path) -> None:
    _load_or_refuse(data, scratch)


@settings(FUZZ, max_examples=200)
@given(header=st.sampled_from([b"", b"\x80\x02", b"\x80\x04\x95"]), tail=st.binary(max_size=256))
def test_random_bytes_load_or_are_refused(header: bytes, tail: bytes, scratch: Path) -> None:
    _load_or_refuse(header + tail, scratch)


@pytest.mark.parametrize("program", [
    b"}" + DEEP_TUPLE + b"K\x01s",  # SETITEM
    b"}(" + DEEP_TUPLE + b"K\x01u",  # SETITEMS
    b"(" + DEEP_TUPLE + b"K\x01d",  # DICT
], ids=["SETITEM", "SETITEMS", "DICT"])
def test_deeply_nested_keys_are_refused_not_hashed(program: bytes, scratch: Path) -> None:
    """Too deep for the fuzz to hit often (0.3 s each), and a crash of the interpreter if hashed."""
    path = scratch / "deep.pdparams"
    path.write_bytes(b"\x80\x02" + program + b".")
    with pytest.raises(ConversionError, match="is not a string"):
        load_pdparams(path)


def test_seeds_are_valid(scratch: Path) -> None:
    """The fuzz starts from files that load (otherwise it would only test the first check)."""
    for data in SEEDS:
        path = scratch / "seed.pdparams"
        path.write_bytes(data)
        assert load_pdparams(path).tensors
    assert pickle.loads(SEEDS[4])[NAME_TABLE_KEY] == {}
