"""What users install: the wheel and the sdist built from this tree, as a packager builds them.

One build per module (`python -m build --no-isolation`: the sdist, then the wheel from the sdist,
with the setuptools already installed, so no network) from a clean copy of the tree: an
*.egg-info left by an earlier build would otherwise feed its file list into the sdist. Every
package and data file of the tree is in the wheel, the sdist carries what is needed to run the
tests, and `twine check` passes on both.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, require

require("build")  # the `test` extra
require("twine")

PACKAGES = ("convert", "rnaernie")
# What a downstream packager needs from the sdist to run the tests: the tests, the fixtures and their
# goldens, the docs the docs test runs, and what the tests and docs read from benchmarks/ and examples/.
SDIST_FOLDERS = ("tests", "fixtures", "docs", "benchmarks", "examples")


def source_files(folder: Path) -> list[str]:
    """The files under `folder` as paths relative to the repository root (no byte code or *.tmp,
    which MANIFEST.in leaves out)."""
    return sorted(path.relative_to(ROOT).as_posix() for path in folder.rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".tmp"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    out, tree = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("tree") / "source"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".git", ".venv", "*.egg-info", "build", "dist", "out",
                                                               "__pycache__", ".pytest_cache", ".hypothesis"))
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(tree)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def wheel_files(dist) -> set[str]:
    with zipfile.ZipFile(dist["wheel"]) as archive:
        return set(archive.namelist())


@pytest.fixture(scope="module")
def sdist_files(dist) -> set[str]:
    with tarfile.open(dist["sdist"]) as archive:
        # members are "<name>-<version>/<path>"
        return {member.name.split("/", 1)[1] for member in archive.getmembers() if member.isfile()}


def test_every_package_of_the_tree_is_in_the_wheel(wheel_files):
    packages = [path.parent.relative_to(ROOT).as_posix()
                for name in PACKAGES for path in (ROOT / name).rglob("__init__.py")]
    assert {"convert", "convert/verify", "rnaernie", "rnaernie/cli"} <= set(packages)  # the walk finds them
    missing = [package for package in packages if f"{package}/__init__.py" not in wheel_files]
    assert missing == [], f"packages missing from the wheel: {missing}"


def test_every_module_and_data_file_is_in_the_wheel(wheel_files):
    expected = [path for name in PACKAGES for path in source_files(ROOT / name)]
    assert "convert/data/vocab_1MER.txt" in expected
    missing = [path for path in expected if path not in wheel_files]
    assert missing == [], f"files missing from the wheel: {missing}"


def test_the_wheel_holds_only_the_packages(wheel_files):
    """No tests, fixtures or build leftovers installed into site-packages."""
    tops = {name.split("/", 1)[0] for name in wheel_files}
    assert {top for top in tops if not top.endswith(".dist-info")} == set(PACKAGES), tops


def test_the_wheel_declares_the_three_console_scripts(dist, wheel_files):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"rnaernie-convert", "rnaernie-push", "rnaernie"}
    (entry_points,) = [name for name in wheel_files if name.endswith(".dist-info/entry_points.txt")]
    with zipfile.ZipFile(dist["wheel"]) as archive:
        text = archive.read(entry_points).decode()
    for name, target in scripts.items():
        assert f"{name} = {target}" in text, text


def test_the_sdist_holds_what_running_the_tests_needs(sdist_files):
    expected = ["README.md", "pyproject.toml", "MANIFEST.in"]
    for folder in (*PACKAGES, *SDIST_FOLDERS):
        expected += source_files(ROOT / folder)
    assert "fixtures/tiny-mlm-2.4/model_state.pdparams" in expected and "tests/conftest.py" in expected
    assert any(path.startswith("fixtures/golden/") for path in expected)
    missing = [path for path in expected if path not in sdist_files]
    assert missing == [], f"files missing from the sdist: {missing}"


def test_twine_check_passes(dist):
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(dist["wheel"]), str(dist["sdist"])],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
