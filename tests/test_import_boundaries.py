"""Package boundaries: training and evaluation never import each other, the checkpoint format
module imports no model file (the registry does) and no run-folder code, the run layout imports
nothing of the package, and no module of the package is part of an import cycle.

Every import statement counts, also those inside functions (a lazy import is still a dependency):
the source files are parsed, not just imported.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hrm_codegen"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, text: str | None = None) -> set[str]:
    """Every module an `import`/`from ... import`/`importlib.import_module("...")` anywhere in the
    file names (relative imports resolved against `path`), plus `module.name` for each name taken
    from a module (it may be a submodule). `text` replaces the file's contents."""
    tree = ast.parse(path.read_text() if text is None else text, filename=str(path))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    )
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def sources(subpackage: str) -> list[Path]:
    return sorted((PACKAGE / subpackage).rglob("*.py"))


def offending(files: list[Path], forbidden: str) -> dict[str, list[str]]:
    found = {}
    for path in files:
        bad = sorted(
            name
            for name in imported_modules(path)
            if name == forbidden or name.startswith(forbidden + ".")
        )
        if bad:
            found[module_name(path)] = bad
    return found


def test_the_import_walker_sees_lazy_relative_and_dynamic_imports():
    source = (
        "import os\n"
        "def f():\n"
        "    from hrm_codegen.evaluation.harness import evaluate_model\n"
        "    from ..evaluation import passk\n"
        "    importlib.import_module('hrm_codegen.evaluation.sandbox')\n"
    )
    names = imported_modules(PACKAGE / "training" / "trainer.py", text=source)
    assert {"os", "hrm_codegen.evaluation.harness", "hrm_codegen.evaluation.passk"} <= names
    assert "hrm_codegen.evaluation.sandbox" in names
    found = offending_text(source)
    assert found == [
        "hrm_codegen.evaluation",
        "hrm_codegen.evaluation.harness",
        "hrm_codegen.evaluation.harness.evaluate_model",
        "hrm_codegen.evaluation.passk",
        "hrm_codegen.evaluation.sandbox",
    ]


def offending_text(source: str) -> list[str]:
    names = imported_modules(PACKAGE / "training" / "trainer.py", text=source)
    return sorted(n for n in names if n.startswith("hrm_codegen.evaluation"))


def test_training_never_imports_evaluation():
    assert offending(sources("training"), "hrm_codegen.evaluation") == {}


def test_evaluation_never_imports_training():
    assert offending(sources("evaluation"), "hrm_codegen.training") == {}


def test_the_checkpoint_format_module_imports_no_model_file_and_no_run_folder_code():
    """model/checkpoint.py (the base class and folder format) ships in Hugging Face exports: it
    imports no other model file, not even inside a function, and no run-folder layout."""
    names = imported_modules(PACKAGE / "model" / "checkpoint.py")
    assert sorted(name for name in names if name.startswith("hrm_codegen.model")) == []
    assert not any(name.startswith("hrm_codegen.run_layout") for name in names)


def test_the_run_layout_module_imports_nothing_of_the_package():
    """Every package reads run folders through hrm_codegen/run_layout.py: importing only the
    standard library, it can close no cycle."""
    names = imported_modules(PACKAGE / "run_layout.py")
    assert sorted(n for n in names if n.startswith("hrm_codegen")) == []
    assert "torch" not in names


def import_graph(subpackage: str, collapse: tuple[str, ...] = ()) -> dict[str, set[str]]:
    """{module: the package's modules it imports} over every `.py` file of the subpackage,
    imports inside functions included; a name taken from a module counts as that module (or
    as the submodule it names). Each package in `collapse` counts as one module."""

    def node(name: str) -> str:
        return next((c for c in collapse if name == c or name.startswith(c + ".")), name)

    modules = {module_name(path): path for path in sources(subpackage)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(node(name), set())
        for imported in imported_modules(path):
            parts = imported.split(".")
            known = [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
            target = next((m for m in known if m in modules), None)
            if target is not None and node(target) != node(name):
                edges.add(node(target))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph`: its strongly connected components of two or more modules
    (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_cycle_finder_sees_a_cycle_closed_inside_a_function():
    a = "import hrm_codegen.evaluation.b\n"
    b = "def f():\n    from hrm_codegen.evaluation import a\n"
    graph = {
        "hrm_codegen.evaluation.a": imported_modules(PACKAGE / "evaluation" / "a.py", text=a),
        "hrm_codegen.evaluation.b": imported_modules(PACKAGE / "evaluation" / "b.py", text=b),
        "hrm_codegen.evaluation.c": set(),
    }
    graph = {k: {m for m in v if m in graph and m != k} for k, v in graph.items()}
    assert cycles(graph) == [["hrm_codegen.evaluation.a", "hrm_codegen.evaluation.b"]]


def test_the_model_package_has_no_import_cycle():
    """The registry imports the model files, the FLOP formulas and model/hf_models.py; none of
    them imports it back (not even inside a function), and `load_model` sits on top."""
    assert cycles(import_graph("model")) == []


def test_the_evaluation_package_has_no_import_cycle():
    """Every benchmark, the run store, sampling and the sandbox import one way: a cycle,
    even one closed by an import inside a function, means two modules share a concern. The
    sandbox counts as one module here; its own cycle is the test below."""
    graph = import_graph("evaluation", collapse=("hrm_codegen.evaluation.sandbox",))
    assert cycles(graph) == []


def test_the_sandbox_has_no_import_cycle():
    """Layers, each importing only those below it: limits, trusted, cgroups, bwrap (the command
    line), runner (one program, the backend and its probe), forkserver, pool (many programs),
    stdio. The package's `__init__` re-exports them and none of them imports it."""
    assert cycles(import_graph("evaluation/sandbox")) == []


def test_the_study_package_has_no_import_cycle():
    """Each runner writes its report, so the reports read a runner through a Protocol of their
    own; what both read of a run (its key, files, status, model facts) is runs.py below them."""
    assert cycles(import_graph("study")) == []


def test_the_whole_package_has_no_import_cycle():
    """Every module of hrm_codegen, subpackages and the links between them included."""
    assert cycles(import_graph(".")) == []


@pytest.mark.parametrize("package", ["training", "evaluation", "model"])
def test_every_module_of_the_package_imports(package):
    for path in sources(package):
        importlib.import_module(module_name(path))
    importlib.import_module("hrm_codegen.train_cli")
