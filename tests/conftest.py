"""Shared fixtures: paths to the committed checkpoints and converted copies of them, and `require`."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
GOLDEN = FIXTURES / "golden"
TINY_MLM = {"2.4": FIXTURES / "tiny-mlm-2.4" / "model_state.pdparams",
            "2.5": FIXTURES / "tiny-mlm-2.5" / "model_state.pdparams"}


def in_ci() -> bool:
    """CI=true (GitHub, GitLab, .ci/run) or any value other than empty, 0, false, no."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(module: str) -> ModuleType:
    """Import an optional dependency the calling tests need (Paddle, torch, transformers, ...).

    A user who runs the tests without the extras gets a polite skip. Under CI a missing or broken
    dependency fails instead: a CI run must not go green by skipping the checks that matter.
    Works at module level (skips or fails the whole module) and inside a test.
    """
    __tracebackhide__ = True  # pytest reports the caller's line, not this one
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        problem = f"{module} cannot be imported ({exc})"
    # outside the except block, so the report is one message rather than a chained traceback
    if in_ci():
        pytest.fail(f"{problem} and CI is set: these tests must run in CI; "
                    "install the extras: pip install -e '.[verify,hub,test]'", pytrace=False)
    pytest.skip(f"{problem}; install the extras to run these tests: pip install -e '.[verify,hub,test]'",
                allow_module_level=True)


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (training runs give the same numbers whatever the machine's cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
