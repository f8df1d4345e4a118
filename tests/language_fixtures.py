"""A tiny two-language source tree (Python and Go), written by the tests that need one."""

from __future__ import annotations

from pathlib import Path

PYTHON_NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
GO_NAMES = ["india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]


def python_module(name: str, index: int) -> str:
    """A distinct, ordinary Python module (each differs enough not to be a near-duplicate)."""
    return (
        f'"""Module {name}: helpers number {index}."""\n\n\n'
        f"def {name}_sum(values):\n"
        f"    total = {index}\n"
        f"    for value in values:\n"
        f"        total += value * {index + 1}\n"
        f"    return total\n\n\n"
        f"class {name.title()}Counter:\n"
        f"    def __init__(self):\n"
        f"        self.{name}_count = {index * 3}\n\n"
        f"    def bump_{name}(self, step={index}):\n"
        f"        self.{name}_count += step\n"
        f"        return self.{name}_count\n"
    )


def go_file(name: str, index: int) -> str:
    """A distinct, ordinary Go file."""
    return (
        f"// Package {name} sums things, variant {index}.\n"
        f"package {name}\n\n"
        f'import "fmt"\n\n'
        f"// {name.title()}Sum adds the values with an offset.\n"
        f"func {name.title()}Sum(values []int) int {{\n"
        f"\ttotal := {index}\n"
        f"\tfor _, value := range values {{\n"
        f"\t\ttotal += value * {index + 2}\n"
        f"\t}}\n"
        f"\treturn total\n"
        f"}}\n\n"
        f"func Print{name.title()}(count int) {{\n"
        f'\tfmt.Println("{name}", count, {index * 5})\n'
        f"}}\n"
    )


def write_two_language_tree(root: Path) -> Path:
    """Eight Python modules and eight Go files under `root`; returns `root`."""
    for index, name in enumerate(PYTHON_NAMES):
        (root / "py").mkdir(parents=True, exist_ok=True)
        (root / "py" / f"{name}.py").write_text(python_module(name, index))
    for index, name in enumerate(GO_NAMES):
        (root / "go").mkdir(parents=True, exist_ok=True)
        (root / "go" / f"{name}.go").write_text(go_file(name, index))
    return root
