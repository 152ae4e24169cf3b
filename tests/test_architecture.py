"""The layout rules the code keeps: no import cycle, small modules, kind dispatch in the registry alone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("convert", "rnaernie")
MAX_LINES = 450


def _sources() -> dict[str, Path]:
    """Module name -> file, for every module of the two packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Project modules `path` imports, at any depth: a function's import runs too, and one under
    `if TYPE_CHECKING:` still ties the two modules together."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from package import module`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name in known and name != module}


def import_graph(sources: dict[str, Path]) -> dict[str, set[str]]:
    known = set(sources)
    return {module: _imports(path, module, known) for module, path in sources.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def walk(module: str) -> list[str] | None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := walk(target)):
                return cycle
        state[module] = "done"
        stack.pop()
        return None

    for module in sorted(graph):
        if module not in state and (cycle := walk(module)):
            return cycle
    return None


def test_no_import_cycle_in_convert_or_rnaernie():
    assert find_cycle(import_graph(_sources())) is None


def test_the_cycle_finder_finds_a_cycle():
    """The guard itself: mapping importing heads for `KeyLayout` (as it did, under TYPE_CHECKING) is reported."""
    graph = import_graph(_sources())
    graph["convert.mapping"] = graph["convert.mapping"] | {"convert.heads"}
    cycle = find_cycle(graph)
    assert cycle is not None and {"convert.heads", "convert.mapping"} <= set(cycle)


def test_the_verifier_depends_on_the_mapping_not_the_orchestrator():
    graph = import_graph(_sources())
    verifier = [module for module in graph if module.startswith("convert.verify")]
    assert verifier and not [m for m in verifier if "convert.pipeline" in graph[m]]


@pytest.mark.parametrize("module", sorted(_sources()))
def test_no_module_is_over_450_lines(module):
    lines = len(_sources()[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"


REGISTRY = ("convert.heads", "convert.kinds")
KIND_WORDS = ("masked-lm", "sequence-classifier", "token-classifier", "encoder", "vocabulary", "sequence-labels",
              "token-labels", "indicator", "classifier")


def test_no_string_comparison_on_a_kind_outside_the_registry():
    """`x == "masked-lm"`, `role == "indicator"`, `logits != "vocabulary"`...: kinds are asked, never tested."""
    comparison = re.compile(r"""(==|!=|\bin\b)\s*\(?\s*["'](%s)["']|["'](%s)["']\s*(==|!=)"""
                            % ("|".join(KIND_WORDS), "|".join(KIND_WORDS)))
    found = [f"{module}: {line.strip()}" for module, path in _sources().items() if module not in REGISTRY
             for line in path.read_text(encoding="utf-8").splitlines() if comparison.search(line)]
    assert not found, found
