"""The commands the README and the docs site show are run, so a command that stops working fails CI.

A page's runnable commands are its ```console blocks: each line starting with `$ ` is a command (a line
ending in a backslash continues it), the lines after it are illustrative output. They run with bash, in a
scratch folder (the repository's top-level entries linked into it, so `fixtures/...` and `examples/...`
resolve and everything a command writes stays out of the checkout), with the venv's console scripts first on
PATH. Each page starts with an empty `out/` and runs its commands in order, so a page stands alone, as a reader
arriving on it would find it. ```bash blocks are not run: they
need what a test cannot have (full-size checkpoints, the Hub, GPUs, several machines).

The site itself builds with `mkdocs build --strict`, so a broken link or a page missing from the nav fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require

DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\S*)\s*$")


def console_commands(markdown: str) -> list[str]:
    """The `$ ` commands of every ```console block, in order, continuation lines joined."""
    commands, block, pending = [], None, None
    for line in markdown.splitlines():
        fence = FENCE.match(line)
        if fence:
            block = None if block is not None else fence.group(1)
            continue
        if block != "console":
            continue
        if pending is not None:
            pending += "\n" + line
        elif line.startswith("$ "):
            pending = line[2:]
        else:
            continue
        if not pending.endswith("\\"):
            commands.append(pending)
            pending = None
    return commands


def nav_pages() -> list[Path]:
    """README.md, then the docs pages in mkdocs.yml's nav order (each `- Title: page.md` entry)."""
    nav = re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?([\w./-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.MULTILINE)
    return [ROOT / "README.md", *(DOCS / page for page in nav)]


def test_the_nav_lists_every_docs_page():
    listed = {page.resolve() for page in nav_pages()}
    unlisted = [page.relative_to(ROOT) for page in DOCS.rglob("*.md") if page.resolve() not in listed]
    assert not unlisted, f"pages missing from mkdocs.yml's nav: {unlisted}"


def test_console_blocks_are_read_with_their_continuations():
    page = "```console\n$ echo a \\\n  b\nout\n$ true\n```\n```bash\nnot run\n```\n$ outside a block\n"
    assert console_commands(page) == ["echo a \\\n  b", "true"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("docs-workspace")
    for entry in ROOT.iterdir():
        if entry.name not in (".git", ".venv", "out"):
            (folder / entry.name).symlink_to(entry)
    return folder


def test_every_command_the_docs_show_runs(workspace):
    require("torch")
    require("paddle")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = 0
    for page in nav_pages():
        shutil.rmtree(workspace / "out", ignore_errors=True)
        for command in console_commands(page.read_text()):
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=workspace, env=env,
                                    capture_output=True, text=True)
            assert result.returncode == 0, (f"{page.relative_to(ROOT)}: `{command}` exited {result.returncode}\n"
                                            f"{result.stderr[-2000:]}")
            ran += 1
    assert ran >= 10, f"only {ran} commands found: the docs lost their examples"


def test_the_docs_site_builds_strictly(tmp_path):
    require("mkdocs")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
