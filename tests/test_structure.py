"""The package's shape stays readable (DESIGN.md: modules readable in one sitting; the workflow's vocabulary in one
names module): no source file over 500 lines, and the report and the privacy package import from the workflow's
package only its names module (they read what the workflow wrote; they never build a grid)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500
SOURCES = sorted(p for pkg in ("benchmark", "baselines") for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_source_file_is_over_500_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (> {MAX_LINES}): split it by concern"


def workflow_imports(path: Path) -> set[str]:
    """The ``benchmark.workflow*`` modules ``path`` imports, at any depth (functions, ``TYPE_CHECKING`` blocks)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("benchmark.workflow")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("benchmark.workflow"):
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module == "benchmark":
            found |= {f"benchmark.{a.name}" for a in node.names if a.name == "workflow"}
    return found


READERS = sorted(p for pkg in ("report", "privacy") for p in (ROOT / "benchmark" / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", READERS, ids=[str(p.relative_to(ROOT)) for p in READERS])
def test_the_report_and_privacy_import_only_the_workflow_names(path):
    stray = workflow_imports(path) - {"benchmark.workflow.names"}
    assert not stray, f"{path.relative_to(ROOT)} imports {sorted(stray)}; import the vocabulary from " \
                      f"benchmark.workflow.names (roles, variant names, formats, ARCH_KEYS) instead"


def test_the_import_reader_sees_nested_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from benchmark.workflow.grid import load_workflow\n"
                 "if True:\n    import benchmark.workflow.runs\nfrom benchmark import workflow\n")
    assert workflow_imports(f) == {"benchmark.workflow.grid", "benchmark.workflow.runs", "benchmark.workflow"}


def test_the_method_under_study_and_the_baseline_are_registered_methods():
    """benchmark/study.py declares them once, by registry name; a rename of either method must follow there."""
    from benchmark.methods import METHODS
    from benchmark.study import BASELINE, UNDER_STUDY

    assert UNDER_STUDY in METHODS and BASELINE in METHODS and UNDER_STUDY != BASELINE
