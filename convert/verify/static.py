"""The static checks: the folder's files against what the converter derives from the checkpoint.

They prove the folder is the converter's output for this checkpoint (structure: the weights and side
files, bit for bit; config: `config.json`, field by field; tokenizer: its files, byte for byte, and
the official ids, checked on the torch side), not that the mapping
is right: a wrong mapping row gives the same wrong tensor on both sides. Only parity (`scoring`)
checks the mapping independently, against the original network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.mapping import Row, mapped_tensor
from convert.verify.prepare import Setup

MODEL_FILE = "model.safetensors"
# Written by transformers' save_pretrained; says nothing about the network.
CONFIG_FIELDS_IGNORED = ("transformers_version",)


@dataclass(frozen=True)
class StaticProblems:
    """What the static checks found (empty lists: the folder is the converter's output)."""

    structure: list[str]
    config: list[dict]  # {"field", "folder", "expected"}
    tokenizer: list[str]

    def __bool__(self) -> bool:
        return bool(self.structure or self.config or self.tokenizer)


def static_checks(setup: Setup, mapping: dict[str, np.ndarray]) -> StaticProblems:
    return StaticProblems(check_structure(setup, mapping), check_config(setup), check_tokenizer_files(setup))


def float32_mapping(setup: Setup, rows: list[Row] | None = None) -> dict[str, np.ndarray]:
    """The converter's own mapping of the checkpoint (of `rows`, default the main file's), in float32."""
    pad_id = setup.conversion.paddle_config.pad_token_id
    return {row.target: mapped_tensor(row, setup.conversion.source.tensors, setup.conversion.vocabulary, pad_id)
            for row in (setup.conversion.plan.rows if rows is None else rows)}


def check_structure(setup: Setup, mapping: dict[str, np.ndarray]) -> list[str]:
    """Problems found comparing `model.safetensors` with `mapping` cast to the stored dtype, and each side
    file with its rows' mapping, bit for bit."""
    source = setup.conversion.source
    source_of = {row.target: source.tensors[row.source] for row in setup.conversion.plan.rows}
    problems = _compare_file(setup.out_dir / MODEL_FILE, mapping, setup.conversion.dtype, "the conversion record says",
                             lambda name: source.release(source_of[name]))  # compared: its pages may go
    for name, (rows, _) in setup.conversion.plan.side_files.items():
        if _predates_side_files(setup.conversion.record):
            break
        found = _compare_file(setup.out_dir / name, float32_mapping(setup, rows), _side_dtype(setup, name),
                              "the converter writes")
        problems += [problem if problem.startswith(name) else f"{name} {problem}" for problem in found]  # name the file
    return problems


def _predates_side_files(record: dict) -> bool:
    """Folders converted before side files existed have no `type_guided` entry at all (not even null)."""
    return "type_guided" not in record


def _side_dtype(setup: Setup, name: str) -> str:
    return next(side.dtype for side in setup.conversion.detection.layout.side_files if side.name == name)


def _compare_file(path: Path, mapping: dict[str, np.ndarray], dtype: str, dtype_source: str,
                  compared=lambda name: None) -> list[str]:
    import torch
    from safetensors import SafetensorError, safe_open

    from convert.writer import to_dtype

    problems: list[str] = []
    file = path.name
    if not path.is_file():
        return [f"{file}: missing from the folder"]
    try:
        with safe_open(str(path), framework="pt") as stored:
            names = set(stored.keys())
            problems += [f"{name}: missing from {file}" for name in mapping if name not in names]
            problems += [f"{name}: in {file} but not in the checkpoint's mapping" for name in sorted(names - set(mapping))]
            for name in (name for name in mapping if name in names):
                tensor = stored.get_tensor(name)
                if tensor.dtype != getattr(torch, dtype):
                    problems.append(f"{name}: stored as {str(tensor.dtype).removeprefix('torch.')}, {dtype_source} {dtype}")
                    continue
                want = to_dtype(mapping[name], dtype)
                if tuple(tensor.shape) != want.shape:
                    problems.append(f"{name}: shape {tuple(tensor.shape)}, the mapping gives {want.shape}")
                    continue
                # bit patterns, not values: -0.0 is not 0.0 here, and bfloat16 has no numpy dtype
                bits = f"u{want.itemsize}"
                got = tensor.view({4: torch.int32, 2: torch.int16}[want.itemsize]).numpy().view(bits)
                differ = got != want.view(bits)
                if differ.any():
                    first = tuple(int(i) for i in np.argwhere(differ)[0])
                    problems.append(f"{name}: {int(differ.sum())} of {differ.size} values differ from the "
                                    f"checkpoint's float32 mapping cast to {dtype} (first at {list(first)})")
                compared(name)
    except (OSError, SafetensorError) as exc:
        problems.append(f"{file}: unreadable ({exc})")
    return problems


def check_tokenizer_files(setup: Setup) -> list[str]:
    """Tokenizer files that are not, byte for byte, the ones the converter writes for this vocabulary."""
    from convert.vocabulary import tokenizer_files

    problems = []
    for name, text in tokenizer_files(setup.conversion.vocabulary).items():
        path = setup.out_dir / name
        try:
            same = path.read_bytes() == text.encode("utf-8")
        except FileNotFoundError:
            problems.append(f"{name}: missing from the folder")
            continue
        except OSError as exc:
            problems.append(f"{name}: unreadable ({exc.strerror or exc})")
            continue
        if not same:
            problems.append(f"{name}: differs from the one the converter writes for this vocabulary")
    return problems


def check_config(setup: Setup) -> list[dict]:
    """Fields of the folder's config.json that differ from the config the converter derives from the checkpoint.

    Label names are the user's choice (`--labels`), so the folder's are kept when their number fits.
    """
    folder = setup.folder_config
    names = None
    if setup.conversion.plan.num_labels is not None:
        id2label = folder.get("id2label")
        keys = [str(i) for i in range(setup.conversion.plan.num_labels)]
        names = ([str(id2label[k]) for k in keys] if isinstance(id2label, dict) and sorted(id2label) == sorted(keys)
                 else [f"LABEL_{i}" for i in range(setup.conversion.plan.num_labels)])
    conversion = setup.conversion
    derived = conversion.detection.head.transformers_config(conversion.paddle_config, conversion.vocabulary,
                                                             conversion.dtype, names)
    expected = json.loads(json.dumps(derived))
    problems = []
    for key in sorted(set(expected) | set(folder)):
        if key in CONFIG_FIELDS_IGNORED or folder.get(key, ...) == expected.get(key, ...):
            continue
        problems.append({"field": key, "folder": folder.get(key, "(absent)"),
                         "expected": expected.get(key, "(absent)")})
    return problems
