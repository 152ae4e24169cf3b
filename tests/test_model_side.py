"""`rnaernie/` is the model-side library: it runs with torch, transformers, tokenizers and numpy
alone, and imports nothing of the converter or of Paddle."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import textwrap


import rnaernie
from tests.conftest import ROOT, require

FORBIDDEN = ("convert", "paddle", "paddlenlp")


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(rnaernie.__path__, "rnaernie."))


def test_no_model_side_source_imports_the_converter_or_paddle():
    for path in sorted((ROOT / "rnaernie").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.split(".")[0] in FORBIDDEN], f"{path.name} imports {names}"


def test_model_side_works_where_convert_and_paddle_cannot_be_imported(converted_dirs, tmp_path):
    """Every rnaernie module imports, and the long-sequence helper runs on a converted folder,
    in a subprocess whose import system refuses `convert`, `paddle` and `paddlenlp`."""
    require("transformers")
    require("torch")
    blocker = tmp_path / "sitecustomize.py"
    blocker.write_text(textwrap.dedent(f"""
        import sys

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {FORBIDDEN!r}:
                    raise ImportError(f"{{name}} is blocked in this test")

        sys.meta_path.insert(0, Refuse())
    """))
    folder = str(converted_dirs["2.4"])
    script = textwrap.dedent(f"""
        import importlib
        for name in {_modules()!r}:
            importlib.import_module(name)
        from rnaernie.long_sequence import chunk_input_ids
        from rnaernie.model import load
        tokenizer, model = load({folder!r}, "AutoModelForMaskedLM", device="cpu")
        ids = tokenizer("ACGU" * 300, add_special_tokens=True)["input_ids"]
        assert len(chunk_input_ids(ids, tokenizer.cls_token_id, tokenizer.sep_token_id)) == 3
        try:
            import convert
        except ImportError:
            print("convert blocked")
    """)
    env_path = f"{tmp_path}:{ROOT}"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "convert blocked"
