"""The command line itself: start-up cost, usage errors, a missing verify dependency."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from typer.testing import CliRunner

from convert.cli import app
from tests.conftest import TINY_MLM


def test_help_imports_nothing_heavy():
    code = ("import sys; from convert.cli import app; "
            "heavy = [m for m in ('numpy', 'torch', 'paddle', 'transformers', 'huggingface_hub') if m in sys.modules]; "
            "print(heavy, sorted(m for m in sys.modules if m.startswith('rnaernie.cli')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[] []"  # nor the `rnaernie` command modules: convert.cli imports what it uses
    help_text = subprocess.run([sys.executable, "-m", "convert.cli", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "CHECKPOINT" in help_text.stdout and "--verify-only" in help_text.stdout


def test_usage_errors_exit_2(tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, [str(TINY_MLM["2.4"])]).exit_code == 2  # OUT_DIR missing
    result = runner.invoke(app, [str(TINY_MLM["2.4"]), str(tmp_path / "out"), "--verify-only", "--no-verify"])
    assert result.exit_code == 2 and "contradict" in result.output
    result = runner.invoke(app, [str(TINY_MLM["2.4"]), str(tmp_path / "out"), "--no-verify", "--dtype", "int8"])
    assert result.exit_code == 2 and "--dtype 'int8' is not supported" in result.output
    assert not (tmp_path / "out").exists()


def test_missing_paddle_stops_before_writing(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "paddle" else real_find_spec(name, *a))
    result = CliRunner().invoke(app, [str(TINY_MLM["2.4"]), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "verification needs paddle, not installed" in result.output and "--no-verify" in result.output
    assert not (tmp_path / "out").exists()


def test_a_text_file_as_the_checkpoint_is_refused_before_any_config_in_one_line(tmp_path):
    """Not a pickle: said at once, whether or not a config is given, never a request for --config first."""
    from tests.helpers import assert_one_error_line

    text = tmp_path / "notes.txt"
    text.write_text("these are my notes, not a checkpoint\n")
    for extra in ([], ["--config", str(TINY_MLM["2.4"].parent / "model_config.json")], ["--no-verify"]):
        result = subprocess.run([sys.executable, "-m", "convert.cli", str(text), str(tmp_path / "out"), *extra],
                                capture_output=True, text=True)
        assert_one_error_line(result, "notes.txt: the file is not a pickle")
        assert "--config" not in result.stderr
        assert not (tmp_path / "out").exists()
