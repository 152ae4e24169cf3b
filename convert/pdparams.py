"""Read a Paddle `.pdparams` file without executing any code from it, and without Paddle.

`paddle.save(state_dict)` pickles a plain `dict[str, numpy.ndarray]` (plus a name table).
Unpickling normally lets the file call any importable function; here two layers stop that:

1. `scan_pickle` walks the opcode stream first, without building anything: only the opcodes a
   pickled dict of arrays needs are accepted, and every length field is checked against the
   bytes that remain, so a lying header fails before anything is allocated.
2. `_SafeUnpickler.find_class` hands out exactly the globals numpy's array pickling uses, each
   wrapped so that it only accepts the arguments numpy itself writes; BUILD applies only to those
   stand-ins, and dict keys must be strings (checked before hashing).
"""

from __future__ import annotations

import math
import mmap
import os
import pickle
import re
import reprlib
import struct
from dataclasses import dataclass, field
from pathlib import Path
from pickletools import (
    TAKEN_FROM_ARGUMENT1,
    TAKEN_FROM_ARGUMENT4,
    TAKEN_FROM_ARGUMENT4U,
    TAKEN_FROM_ARGUMENT8U,
    code2op,
)

import numpy as np

from convert.errors import CheckpointFormatError, UnsafeCheckpointError

NAME_TABLE_KEY = "StructuredToParameterName@@"
BIG_PARAM_KEY = "UnpackBigParamInfor@@"

# The opcodes Python's pickler emits for a dict of str -> ndarray at protocols 2-4.
ALLOWED_OPCODES = frozenset(
    "PROTO FRAME STOP MARK POP POP_MARK DUP "
    "EMPTY_DICT DICT SETITEM SETITEMS EMPTY_LIST LIST APPEND APPENDS "
    "EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 "
    "NONE NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 LONG4 BINFLOAT "
    "BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINBYTES SHORT_BINBYTES BINBYTES8 BINSTRING SHORT_BINSTRING "
    "BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET "
    "GLOBAL STACK_GLOBAL REDUCE BUILD".split()
)
SUPPORTED_PROTOCOLS = (2, 3, 4)
# A full-size RNAErnie state dict has about 5,000 records, 48 layers about 20,000; the cap keeps
# a hostile file of one-byte records from keeping the scan busy for minutes.
MAX_RECORDS = 1_000_000
_LENGTH_PREFIX = {
    TAKEN_FROM_ARGUMENT1: ("<B", 1),
    TAKEN_FROM_ARGUMENT4: ("<i", 4),
    TAKEN_FROM_ARGUMENT4U: ("<I", 4),
    TAKEN_FROM_ARGUMENT8U: ("<Q", 8),
}
# Hint shown with every format error: the user most likely gave us the wrong file.
_WHAT_TO_DO = "pass the model_state.pdparams file saved by paddle.save (PaddleNLP save_pretrained)"


def advise(mapping: mmap.mmap, flag: str, *region: int) -> None:
    """madvise where the platform has it (Linux, macOS); a memory-use hint only, so skipped elsewhere."""
    if hasattr(mapping, "madvise") and hasattr(mmap, flag):
        mapping.madvise(getattr(mmap, flag), *region)


@dataclass
class PaddleCheckpoint:
    """The arrays of a `.pdparams` file, by structured name (e.g. `ernie.embeddings.word_embeddings.weight`)."""

    tensors: dict[str, np.ndarray]
    parameter_names: dict[str, str] = field(default_factory=dict)  # structured name -> Paddle's own name
    protocol: int = 4
    mapping: mmap.mmap | None = None  # the file mapping the arrays view

    def release(self, array: np.ndarray) -> None:
        """Drop `array`'s pages from this process's memory once it has been used (they stay in the
        page cache and are read back if touched again), so peak memory stays near one tensor."""
        if self.mapping is None or array.size == 0:
            return
        base = np.frombuffer(self.mapping, dtype=np.uint8, count=1).ctypes.data
        start = array.__array_interface__["data"][0] - base
        if not 0 <= start < len(self.mapping):
            return  # not a view of the file (copied, e.g. protocol 2)
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        end = (start + array.nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > first:
            advise(self.mapping, "MADV_DONTNEED", first, end - first)


def _describe_magic(head: bytes) -> str:
    """Say what a non-pickle file most likely is, from its first bytes."""
    if not head:
        return "the file is empty"
    if head[:2] == b"\x1f\x8b":
        return "the file is gzip-compressed; decompress it first"
    if head[:4] == b"PK\x03\x04":
        return "the file is a zip archive (a torch .pt/.bin or a .zip); this tool reads Paddle .pdparams"
    if len(head) >= 9 and head[8:9] == b"{":
        return "the file looks like a safetensors file; it is already converted"
    if head[:1] in (b"(", b"}", b"]", b")", b"c"):
        return "the file looks like a protocol 0/1 pickle, which paddle.save never writes"
    return "the file is not a pickle"


def _an(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _show(obj: object) -> str:
    """A short repr for messages: bounded depth and length, never raises."""
    try:
        return reprlib.repr(obj)
    except Exception:  # noqa: BLE001 - e.g. an int too long to print
        return f"<{type(obj).__name__}>"


def check_checkpoint_path(path: Path) -> None:
    """Refuse a checkpoint path that is not a regular file, before any other work."""
    if path.is_dir():
        raise CheckpointFormatError(f"{path} is a directory; pass the model_state.pdparams file inside it.")
    if not path.exists():
        raise CheckpointFormatError(f"{path} does not exist; check the path.")
    if not path.is_file():
        raise CheckpointFormatError(f"{path} is not a regular file; {_WHAT_TO_DO}.")


def scan_pickle(buf: memoryview, source: str) -> int:
    """Validate the opcode stream of `buf`; return the pickle protocol. Raises CheckpointFormatError."""
    size = len(buf)
    head = bytes(buf[:16])
    # safetensors first: its 8-byte header length may well start with the bytes 0x80 0x02
    looks_safetensors = head[8:10] == b'{"' and struct.unpack_from("<Q", head)[0] <= size - 8
    if size < 2 or buf[0] != 0x80 or looks_safetensors:
        raise CheckpointFormatError(f"{source}: {_describe_magic(head)}; {_WHAT_TO_DO}.")
    protocol = buf[1]
    if protocol not in SUPPORTED_PROTOCOLS:
        raise CheckpointFormatError(
            f"{source}: pickle protocol {protocol} is not one paddle.save writes (2-4); {_WHAT_TO_DO}."
        )
    pos = 0
    for count in range(MAX_RECORDS + 1):
        if pos >= size:
            break
        if count == MAX_RECORDS:
            raise CheckpointFormatError(
                f"{source}: more than {MAX_RECORDS:,} pickle records; a Paddle state dict has a few thousand, "
                f"so this is not one: {_WHAT_TO_DO}.")
        op = code2op.get(chr(buf[pos]))
        if op is None:
            raise CheckpointFormatError(f"{source}: corrupt pickle (bad opcode at byte {pos}); {_WHAT_TO_DO}.")
        if op.name not in ALLOWED_OPCODES:
            raise UnsafeCheckpointError(
                f"{source}: refused: the pickle uses opcode {op.name} (byte {pos}), which a Paddle state dict "
                "never contains; the file may be malicious or is not a .pdparams."
            )
        pos += 1
        if op.name == "STOP":
            return protocol
        if op.name == "GLOBAL":  # two newline-terminated strings: module, name
            for _ in range(2):
                end = bytes(buf[pos : pos + 512]).find(b"\n")
                if end < 0:
                    raise CheckpointFormatError(f"{source}: corrupt pickle (bad GLOBAL at byte {pos}).")
                pos += end + 1
            continue
        n = op.arg.n if op.arg is not None else 0
        if op.name == "FRAME":  # the unpickler reads the whole frame at once: check its length, then
            n = TAKEN_FROM_ARGUMENT8U  # scan the opcodes inside it like any others
        if n >= 0:
            pos += n
        elif n in _LENGTH_PREFIX:
            fmt, width = _LENGTH_PREFIX[n]
            if pos + width > size:
                break
            (length,) = struct.unpack_from(fmt, buf, pos)
            pos += width
            if length < 0 or length > size - pos:
                raise CheckpointFormatError(
                    f"{source}: truncated or corrupt: a {op.name} record at byte {pos} claims {length} bytes "
                    f"but only {size - pos} remain; re-download the checkpoint."
                )
            if op.name != "FRAME":
                pos += length
        else:  # text-mode arguments never appear in a binary-protocol state dict
            raise UnsafeCheckpointError(f"{source}: refused: unexpected text opcode {op.name} at byte {pos}.")
    raise CheckpointFormatError(f"{source}: truncated: the pickle ends before its STOP opcode; re-download the file.")


class _ArraySpec:
    """What `numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')` stands for; the pickle's BUILD
    then hands it `(version, shape, dtype, is_fortran, raw_bytes)`, exactly as numpy writes it.
    The array is built over the raw bytes without copying them (a view of the memory-mapped file)."""

    array: np.ndarray | None = None

    def __setstate__(self, state) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise UnsafeCheckpointError("refused: unexpected array state in the pickle.")
        _, shape, dtype, is_fortran, raw = state
        if not isinstance(dtype, _DtypeSpec) or not isinstance(raw, (bytes, memoryview)):
            raise CheckpointFormatError("corrupt array record (dtype or data of the wrong type)")
        dtype = dtype.dtype
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and 0 <= d < 2**62 for d in shape)):
            raise CheckpointFormatError(f"corrupt array record (shape {_show(shape)})")
        count = 1
        for d in shape:
            count *= d
        if count * dtype.itemsize != len(raw):  # checked before anything is allocated
            raise CheckpointFormatError(
                f"an array header claims shape {shape} ({count * dtype.itemsize} bytes) but holds {len(raw)} bytes")
        flat = np.frombuffer(raw, dtype=dtype, count=count)
        self.array = flat.reshape(shape, order="F" if is_fortran else "C")


def _numpy_reconstruct(subtype, shape, dtype_code):
    """`_reconstruct` for a plain ndarray, and nothing else."""
    # (shape is checked as a tuple, never converted: tuple() of a mapped byte string would be huge)
    if subtype is not _NDARRAY_MARKER or not isinstance(shape, tuple) or shape != (0,) \
            or dtype_code not in (b"b", "b"):
        raise UnsafeCheckpointError("refused: unexpected arguments to numpy's _reconstruct.")
    return _ArraySpec()


_NUMERIC_DTYPE_CODE = re.compile(r"b1|[iu][1248]|f[248]|c(8|16)")


class _DtypeSpec:
    """`numpy.dtype(code, False, True)`, as numpy pickles a plain numeric dtype. The pickle's BUILD
    then sets its byte order: `(3, '<' | '>' | '|', None, None, None, -1, -1, 0)`. That state is
    checked here and never handed to numpy's own `dtype.__setstate__`."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype

    def __setstate__(self, state) -> None:
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and state[1] in ("<", ">", "|", "=")
                and state[2:] == (None, None, None, -1, -1, 0)):
            raise UnsafeCheckpointError("refused: unexpected numpy dtype state in the pickle.")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


def _numpy_dtype(spec, align=False, copy=True):
    """`numpy.dtype(spec, align, copy)` for plain numeric dtype codes only."""
    if not isinstance(spec, str) or not _NUMERIC_DTYPE_CODE.fullmatch(spec):
        raise UnsafeCheckpointError(f"refused: numpy dtype {_show(spec)} is not a plain numeric type.")
    return _DtypeSpec(np.dtype(spec))


def _codecs_encode(text, encoding="utf-8"):
    """Protocol 2 spells bytes as `_codecs.encode(latin1_text, 'latin1')`."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError("refused: unexpected _codecs.encode call in the pickle.")
    return text.encode("latin1")


def _empty_bytes(*args):
    """Protocol 2 spells an empty byte string (the data of an empty array) as `bytes()`."""
    if args:
        raise UnsafeCheckpointError("refused: unexpected bytes() call in the pickle.")
    return b""


class _NdarrayMarker:
    """Stands in for `numpy.ndarray` so the pickle can name it but never call it."""


_NDARRAY_MARKER = _NdarrayMarker()

ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,  # numpy 1.x
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,  # numpy 2.x
    ("numpy", "ndarray"): _NDARRAY_MARKER,
    ("numpy", "dtype"): _numpy_dtype,
    ("_codecs", "encode"): _codecs_encode,
    ("__builtin__", "bytes"): _empty_bytes,  # protocol 2 names builtins as Python 2 did
    ("builtins", "bytes"): _empty_bytes,
}


class _SafeUnpickler(pickle._Unpickler):  # the pure-Python unpickler, so large payloads can be mapped
    """Allowlisted globals only; large byte strings become views of the memory-mapped file."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, handle, mapped: mmap.mmap):
        super().__init__(handle, encoding="latin1")
        self._handle = handle
        self._mapped = mapped

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(
                f"refused: the checkpoint asks to import {module}.{name}, which a Paddle state dict never "
                "needs; the file may be malicious. Nothing from it was executed."
            ) from None

    def _payload(self, size: int):
        """The next `size` bytes: copied when inside a (small) protocol-4 frame, else mapped in place."""
        frame = self._unframer.current_frame
        if frame is not None and frame.tell() < len(frame.getbuffer()):
            return self.read(size)
        self._unframer.current_frame = None
        start = self._handle.tell()
        if start + size > len(self._mapped):
            raise CheckpointFormatError("truncated: a byte string runs past the end of the file")
        self._handle.seek(size, os.SEEK_CUR)
        return memoryview(self._mapped)[start:start + size]

    def _load_counted_bytes(self, fmt: str, width: int) -> None:
        (size,) = struct.unpack(fmt, self.read(width))
        self.append(self._payload(size))

    def _load_build(self) -> None:
        """BUILD only on the array and dtype stand-ins: never on an allowlisted function or marker."""
        target = self.stack[-2]
        if not isinstance(target, (_ArraySpec, _DtypeSpec)):
            what = "numpy.ndarray" if target is _NDARRAY_MARKER else _an(type(target).__name__)
            raise UnsafeCheckpointError(
                f"refused: the pickle sets the state of {what}, which a Paddle state dict never does; "
                "the file may be malicious. Nothing from it was executed."
            )
        pickle._Unpickler.load_build(self)

    def _check_keys(self, keys: list) -> None:
        """Dict keys must be strings, checked before they are hashed: hashing a key nested a million
        tuples deep recurses in C and crashes the interpreter."""
        for key in keys:
            if type(key) is not str:
                raise CheckpointFormatError(
                    f"dictionary key {_show(key)} is not a string (a Paddle state dict has string keys only); "
                    f"{_WHAT_TO_DO}."
                )

    def _load_setitem(self) -> None:
        self._check_keys(self.stack[-2:-1])
        pickle._Unpickler.load_setitem(self)

    def _load_setitems(self) -> None:
        self._check_keys(self.stack[0::2])  # the items since the last MARK
        pickle._Unpickler.load_setitems(self)

    def _load_dict(self) -> None:
        self._check_keys(self.stack[0::2])
        pickle._Unpickler.load_dict(self)

    dispatch[pickle.BINBYTES[0]] = lambda self: self._load_counted_bytes("<I", 4)
    dispatch[pickle.BINBYTES8[0]] = lambda self: self._load_counted_bytes("<Q", 8)
    dispatch[pickle.BUILD[0]] = _load_build
    dispatch[pickle.SETITEM[0]] = _load_setitem
    dispatch[pickle.SETITEMS[0]] = _load_setitems
    dispatch[pickle.DICT[0]] = _load_dict


def _validate_state(obj: object, source: str) -> PaddleCheckpoint:
    if not isinstance(obj, dict):
        raise CheckpointFormatError(
            f"{source}: the pickle holds {_an(type(obj).__name__)}, not a state dict; {_WHAT_TO_DO}."
        )
    tensors: dict[str, np.ndarray] = {}
    names: dict[str, str] = {}
    big: dict = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise CheckpointFormatError(f"{source}: state dict key {_show(key)} is not a string; {_WHAT_TO_DO}.")
        if key == NAME_TABLE_KEY and isinstance(value, dict):
            if not all(isinstance(v, str) for v in value.values()):
                raise CheckpointFormatError(f"{source}: the name table {key} holds non-text values; {_WHAT_TO_DO}.")
            names = dict(value)
        elif key == BIG_PARAM_KEY and isinstance(value, dict):
            big = value
        elif isinstance(value, _ArraySpec) and value.array is not None:
            tensors[key] = value.array
        else:
            raise CheckpointFormatError(
                f"{source}: entry {key!r} is {_an(type(value).__name__)}, not an array; {_WHAT_TO_DO}."
            )
    _join_big_params(tensors, big, source)
    return PaddleCheckpoint(tensors=tensors, parameter_names=names)


def _join_big_params(tensors: dict[str, np.ndarray], info: dict, source: str) -> None:
    """Reassemble arrays that paddle.save (protocol 2/3) split into `name@@.0`, `name@@.1`, ..."""
    for name, spec in info.items():
        problem = _split_problem(name, spec, tensors)
        if problem:
            raise CheckpointFormatError(f"{source}: split parameter {name!r} {problem}; re-download the checkpoint.")
        parts = [tensors.pop(part) for part in spec["slices"]]
        tensors[name] = np.concatenate([p.reshape(-1) for p in parts]).reshape(tuple(spec["OriginShape"]))


def _split_problem(name: str, spec: object, tensors: dict[str, np.ndarray]) -> str | None:
    """What is wrong with one `UnpackBigParamInfor@@` entry; checked before anything is allocated."""
    if not (isinstance(spec, dict) and isinstance(spec.get("slices"), list)
            and isinstance(spec.get("OriginShape"), (list, tuple))):
        return "is not described by an OriginShape and a list of slices"
    shape, slices = tuple(spec["OriginShape"]), spec["slices"]
    if not all(isinstance(d, int) and 0 <= d < 2**62 for d in shape):
        return f"has an invalid shape {_show(shape)}"
    if not slices:
        return "lists no slices"
    missing = [part for part in slices if not isinstance(part, str) or part not in tensors]
    if missing:
        return f"is incomplete: its slice {_show(missing[0])} is not in the file"
    if len(set(slices)) != len(slices) or name in tensors:
        return "lists a slice twice or is also stored whole"
    parts = [tensors[part] for part in slices]
    if len({p.dtype for p in parts}) != 1:
        return "has slices of different dtypes"
    count, need = sum(p.size for p in parts), math.prod(shape)
    if count != need:
        return f"has {count} elements but its shape {shape} needs {need}"
    return None


def load_pdparams(path: str | os.PathLike) -> PaddleCheckpoint:
    """Read `path` safely. Raises CheckpointFormatError / UnsafeCheckpointError on any bad input."""
    path = Path(path)
    source = str(path)
    check_checkpoint_path(path)
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise CheckpointFormatError(f"{source}: the file is empty; {_WHAT_TO_DO}.")
        # The arrays stay views of this mapping (no second copy of the weights in memory);
        # it is released when the last array is.
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        advise(mapped, "MADV_RANDOM")  # the scan touches a few bytes per record: no read-ahead
        with memoryview(mapped) as view:
            protocol = scan_pickle(view, source)
        advise(mapped, "MADV_DONTNEED")  # forget the pages the scan touched
        advise(mapped, "MADV_SEQUENTIAL")
        try:
            obj = _SafeUnpickler(handle, mapped).load()
        except CheckpointFormatError as exc:
            raise type(exc)(f"{source}: {exc}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                AttributeError, OverflowError, UnicodeDecodeError, RecursionError, struct.error) as exc:
            raise CheckpointFormatError(
                f"{source}: corrupt checkpoint ({type(exc).__name__}: {exc}); re-download it or {_WHAT_TO_DO}."
            ) from None
    checkpoint = _validate_state(obj, source)
    checkpoint.protocol = protocol
    checkpoint.mapping = mapped
    return checkpoint
