"""Under CI a missing Paddle, torch, transformers or huggingface_hub fails the suite; without CI it is a
polite skip.

Each case runs pytest in a subprocess on test modules that need one dependency, with that
dependency hidden by a `sitecustomize` import blocker (nothing is uninstalled).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT

BLOCKER = textwrap.dedent("""
    import importlib.abc, os, sys
    HIDDEN = set(os.environ["HIDE_MODULES"].split(","))
    class Hide(importlib.abc.MetaPathFinder):  # as if the package were not installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, Hide())
""")

# (hidden module, test modules that need it)
CASES = [("paddle", ["tests/test_pdparams.py", "tests/test_paddle_reference.py"]),
         ("torch", ["tests/test_end_to_end.py", "tests/test_embed.py"]),
         ("transformers", ["tests/test_tokenizer.py"]),
         ("huggingface_hub", ["tests/test_hub.py"])]
# dependencies that come with a hidden module: a user without it may lack them too (pyyaml with huggingface_hub)
HIDDEN_WITH = {"huggingface_hub": ["yaml"]}


def run_pytest_without(module: str, test_files: list[str], tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env.update(HIDE_MODULES=",".join([module, *HIDDEN_WITH.get(module, [])]), PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *test_files],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_all_skipped(run: subprocess.CompletedProcess, modules: int) -> None:
    # pytest exits 5 ("no tests collected") when every module skipped itself: that is not a failure
    assert run.returncode in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED), run.stdout + run.stderr
    assert run.stdout.splitlines()[-1].startswith(f"{modules} skipped in"), run.stdout


@pytest.mark.parametrize("module,test_files", CASES, ids=[module for module, _ in CASES])
def test_missing_dependency_fails_under_ci(module: str, test_files: list[str], tmp_path: Path) -> None:
    run = run_pytest_without(module, test_files, tmp_path, ci="true")
    assert run.returncode != 0, run.stdout
    assert f"No module named '{module}') and CI is set" in run.stdout, run.stdout
    assert "skipped" not in run.stdout.splitlines()[-1], run.stdout


@pytest.mark.parametrize("module,test_files", CASES, ids=[module for module, _ in CASES])
def test_missing_dependency_skips_politely_without_ci(module: str, test_files: list[str], tmp_path: Path) -> None:
    run = run_pytest_without(module, test_files, tmp_path, ci=None)
    assert_all_skipped(run, len(test_files))
    assert f"No module named '{module}'); install the extras" in run.stdout, run.stdout


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_ci_set_to_false_is_not_ci(value: str, tmp_path: Path) -> None:
    assert_all_skipped(run_pytest_without("paddle", ["tests/test_pdparams.py"], tmp_path, ci=value), 1)
