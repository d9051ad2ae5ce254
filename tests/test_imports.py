"""The package's imports follow the layering of docs/architecture.md, at any depth.

Every ``import`` in every file counts: at module level, inside functions, under ``if TYPE_CHECKING:``. The
graph they form between the suite's own modules has no cycle, and every edge goes down the stated layers (or
stays within one). Imports sit at the top of the file; a function-level import only defers a heavy
third-party module, and says so with a ``# deferred: <why>`` comment.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "baselines")

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # floor to top: a module may import its own layer (no cycle) and the layers below. A module belongs to the
    # layer of its longest listed prefix; keep this list and docs/architecture.md in step.
    ("foundation", ("benchmark", "benchmark.errors", "benchmark.registry", "benchmark.seeding", "benchmark.io",
                    "benchmark.stats", "benchmark.study")),
    ("config", ("benchmark.config", "benchmark.overrides", "benchmark.system.profiles", "benchmark.workflow.names")),
    ("data, models, accounting", ("benchmark.data", "benchmark.models", "benchmark.accounting")),
    ("federation", ("benchmark.federation",)),
    ("methods", ("benchmark.sfprompt", "baselines", "benchmark.methods", "benchmark.method_refs",
                 "benchmark.method_catalog")),
    ("runs", ("benchmark.run", "benchmark.preflight", "benchmark.pretrain", "benchmark.backbone_cache",
              "benchmark.tuning", "benchmark.perf", "benchmark.analytic")),
    ("privacy, system", ("benchmark.privacy", "benchmark.system")),
    ("workflow", ("benchmark.workflow",)),
    ("report", ("benchmark.report",)),
    ("cli", ("benchmark.cli", "benchmark.__main__")),
]

DEFERRED_INTERNAL: dict[tuple[str, str], str] = {
    # (importer, imported) -> why a function-level import of the suite's own module is kept. Keep it tiny: each
    # entry is a module a light process (the Snakefile through the workflow, the data verb) imports, deferring
    # one that imports torch or pandas. Splitting tuning and backbone_cache into a light part (the workflow's) and a heavy one removes them.
    ("benchmark.tuning", "benchmark.run"): "the workflow imports tuning to parse its grid; run imports torch",
    ("benchmark.tuning", "benchmark.methods"): "the workflow imports tuning; methods imports torch",
    ("benchmark.backbone_cache", "benchmark.data.cache"): "the workflow imports backbone_cache; data.cache: torch",
    ("benchmark.backbone_cache", "benchmark.data.datasets"): "imported beside data.cache in the key computation",
    ("benchmark.backbone_cache", "benchmark.models.vit"): "the workflow imports backbone_cache; models.vit: timm",
    ("benchmark.backbone_cache", "benchmark.io"): "the workflow imports backbone_cache; io imports pandas",
    ("benchmark.data.sampling", "benchmark.seeding"): "seeding imports torch; the data verb and the workflow don't",
    ("benchmark.method_catalog", "benchmark.methods"): "the workflow's parse asks the catalogue; the registry: torch",
    ("benchmark.workflow.data", "benchmark.models.vit"): "timm's input size, for a profile without img_size: torch",
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    nested: bool  # inside a function or class body (an `if TYPE_CHECKING:` block at module level is not)
    where: str  # the file, relative to the root

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.where}:{self.line})"


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _resolve(name: str, modules: set[str]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(tree: ast.Module):
    """(node, nested) for every import statement; nested: inside a function or class body. Imports under a
    module-level ``if TYPE_CHECKING:`` (or any module-level ``if``/``try``) count as top-of-file imports."""

    def visit(node: ast.AST, nested: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, nested
            yield from visit(child, nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                 ast.ClassDef, ast.Lambda)))

    yield from visit(tree, False)


def edges(path: Path, modules: set[str], root: Path = ROOT) -> list[Edge]:
    """The suite's modules imported by one file, at any depth (``from pkg import mod`` counts as ``pkg.mod``)."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: list[Edge] = []
    for node, nested in _imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                kept = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(kept + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for t in {_resolve(t, modules) for t in targets} - {None, name}:
            found.append(Edge(name, t, node.lineno, nested, str(path.relative_to(root))))
    return found


def all_edges() -> list[Edge]:
    files = _files()
    modules = {_module_name(p) for p in files}
    return [e for p in files for e in edges(p, modules)]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {_module_name(p): set() for p in _files()}
    for e in all_edges():
        graph[e.source].add(e.target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules, or [] (depth-first search with colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if not state.get(nxt):
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if not state.get(node):
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the longest listed prefix of ``module`` (None: in no layer)."""
    best, where = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, where = len(p), i
    return where


def upward_edges(edge_list: list[Edge]) -> list[str]:
    return [f"{e}: layer '{LAYERS[layer_of(e.source)][0]}' imports layer '{LAYERS[layer_of(e.target)][0]}'"
            for e in edge_list if layer_of(e.target) > layer_of(e.source)]


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "benchmark.federation.method" in graph and "benchmark.methods" in graph
    cycle = find_cycle(graph)
    assert cycle == [], "import cycle (imports at any depth count): " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_the_method_base_class_does_not_import_its_subclasses():
    graph = import_graph()
    assert not graph["benchmark.federation.method"] & {"benchmark.methods", "benchmark.sfprompt", "baselines"}


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not unplaced, f"place these modules in a layer (tests/test_imports.py LAYERS, docs/architecture.md): {unplaced}"


def test_imports_go_down_the_layers():
    upward = upward_edges(all_edges())
    assert not upward, "imports that go up the layers of docs/architecture.md:\n" + "\n".join(upward)


def test_the_layer_check_sees_nested_and_type_checking_imports(tmp_path):
    pkg = tmp_path / "benchmark"
    (pkg / "report").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "report" / "__init__.py").write_text("")
    (pkg / "config.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from benchmark.report import tables\n")
    (pkg / "report" / "tables.py").write_text("def f():\n    from benchmark import config\n")
    modules = {"benchmark", "benchmark.config", "benchmark.report", "benchmark.report.tables"}
    found = [e for p in sorted(pkg.rglob("*.py")) for e in edges(p, modules, tmp_path)]
    graph: dict[str, set[str]] = {}
    for e in found:
        graph.setdefault(e.source, set()).add(e.target)
    assert find_cycle(graph) == ["benchmark.config", "benchmark.report.tables", "benchmark.config"]
    up = upward_edges([e for e in found if e.source == "benchmark.config"])
    assert len(up) == 1 and "benchmark.config -> benchmark.report.tables" in up[0] and "'report'" in up[0]


def _line(path: Path, lineno: int) -> str:
    return path.read_text().splitlines()[lineno - 1]


def test_no_function_level_import_of_the_suites_own_modules():
    nested = [e for e in all_edges() if e.nested and (e.source, e.target) not in DEFERRED_INTERNAL]
    assert not nested, ("import the suite's own modules at the top of the file (a module too heavy to import "
                        "there belongs in another module):\n" + "\n".join(map(str, nested)))


def _third_party_nested(path: Path, modules: set[str]):
    for node, nested in _imports(ast.parse(path.read_text())):
        if not nested:
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        if node.__class__ is ast.ImportFrom and node.level:
            continue
        if any(_resolve(n, modules) for n in names):
            continue
        yield node


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_function_level_import_says_why_it_is_deferred(path):
    modules = {_module_name(p) for p in _files()}
    bare = [f"{path.relative_to(ROOT)}:{n.lineno}: {_line(path, n.lineno).strip()}"
            for n in _third_party_nested(path, modules)
            if "# deferred" not in " ".join(_line(path, i) for i in range(n.lineno, n.end_lineno + 1))]
    assert not bare, ("a function-level import defers a heavy third-party module and says why on its line "
                      "(`# deferred: <why>`); otherwise it goes at the top:\n" + "\n".join(bare))


def test_parsing_the_workflow_imports_no_model_library():
    """A process that imports the method registry without building a model (the accounting, the report, the parse
    of a profile that names a method file) must not import timm (and with it torchvision and ``torch._dynamo``,
    ~3 s of what was a ~7 s parse) until a run builds one (benchmark/models/vit.py)."""
    code = ("import sys, benchmark.workflow.grid, benchmark.methods; "
            "print(' '.join(m for m in ('timm', 'torchvision', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the workflow's parse imported {out.stdout.strip()}"


def test_parsing_a_profile_of_built_in_methods_imports_neither_torch_nor_pandas():
    """Every Snakemake process parses the Snakefile (workflow/rules/common.smk imports these modules and loads the
    profile); for the package's own methods the parse checks names and ``method_params`` through
    :mod:`benchmark.method_catalog`, so it imports no torch, pandas or method registry (~2.5 s of a 3.5 s parse)."""
    code = ("import sys; from benchmark import prefork; from benchmark.errors import ConfigError; "
            "from benchmark.workflow.names import RULES; from benchmark.workflow.grid import load_workflow_file; "
            "wfs = [load_workflow_file(f'config/{p}.yaml') for p in ('smoke', 'default')]; "
            "assert all(wf.runs for wf in wfs); "
            "print(' '.join(m for m in ('torch', 'pandas', 'timm', 'benchmark.methods') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"parsing the smoke and default profiles imported {out.stdout.strip()}"
