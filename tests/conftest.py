"""Shared fixtures: paths to the committed checkpoints and converted copies of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
GOLDEN = FIXTURES / "golden"
TINY_MLM = {"2.4": FIXTURES / "tiny-mlm-2.4" / "model_state.pdparams",
            "2.5": FIXTURES / "tiny-mlm-2.5" / "model_state.pdparams"}


@pytest.fixture(scope="session")
def converted_dirs(tmp_path_factory) -> dict[str, Path]:
    """Each tiny MLM fixture converted once per session (float32). Tests must not modify these."""
    from convert.pipeline import convert_checkpoint

    out = {}
    for layout, checkpoint in TINY_MLM.items():
        out[layout] = tmp_path_factory.mktemp(f"converted-{layout}") / "out"
        convert_checkpoint(checkpoint, out[layout])
    return out


@pytest.fixture(scope="session")
def converted_by_dtype(converted_dirs, tmp_path_factory) -> dict[str, Path]:
    """The 2.4 fixture converted once per session at each output dtype. Tests must not modify these."""
    from convert.pipeline import convert_checkpoint

    out = {"float32": converted_dirs["2.4"]}
    for dtype in ("float16", "bfloat16"):
        out[dtype] = tmp_path_factory.mktemp(f"converted-{dtype}") / "out"
        convert_checkpoint(TINY_MLM["2.4"], out[dtype], dtype=dtype)
    return out


@pytest.fixture
def converted_copy(converted_dirs, tmp_path) -> Path:
    """A private copy of the converted 2.4 fixture, free to corrupt."""
    target = tmp_path / "copy"
    shutil.copytree(converted_dirs["2.4"], target)
    return target
