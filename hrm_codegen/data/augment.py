"""Semantics-preserving variants of MBPP training solutions (off by default).

A variant renames local variables and parameters consistently (through `ast`, edited in place
so the original formatting survives) and shows the tests in a different order. Renaming is
conservative: any name that is global, imported, a builtin, a keyword-argument name, an
attribute of a class body, mentioned by the tests or the setup code, or the entry point stays
as it is, and code using `locals()`/`eval`-like introspection is left alone. Every variant is
then executed against the task's tests by the caller, and kept only if it passes.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import random
import re
from dataclasses import dataclass

from hrm_codegen.data.prompts import normalize_newlines
from hrm_codegen.data.tasks import CodeTask

_IDENTIFIER = re.compile(r"[^\W\d]\w*")
_INTROSPECTION = {"locals", "vars", "globals", "eval", "exec", "__import__", "getattr", "setattr"}
# Plausible replacement names, so variants still read like code a person wrote.
NAME_POOL = (
    "a", "b", "c", "d", "e", "f", "g", "h", "k", "m", "n", "p", "q", "r", "s", "t", "u", "v", "w",
    "x", "y", "z", "acc", "arr", "best", "buf", "cnt", "count", "cur", "data", "elem", "first",
    "flag", "high", "idx", "item", "items", "j", "key", "last", "left", "length", "lo", "low",
    "lst", "mid", "nums", "num", "out", "pos", "prev", "res", "result", "right", "second",
    "seq", "size", "step", "temp", "text", "total", "val", "value", "values", "word", "xs",
)  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """One augmented training example: the solution and the test order its prompt shows."""

    solution: str
    tests: tuple[str, ...]


class _ScopeWalker(ast.NodeVisitor):
    """Collect renamable names (bound inside functions) and names that must never change."""

    def __init__(self) -> None:
        self.candidates: set[str] = set()
        self.protected: set[str] = set()
        self.scopes: list[str] = ["module"]

    def _bind(self, name: str) -> None:
        if self.scopes[-1] == "function":
            self.candidates.add(name)
        else:  # module globals and class attributes are reachable from outside the function
            self.protected.add(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._bind(node.id)

    def visit_arg(self, node: ast.arg) -> None:
        self.candidates.add(node.arg)
        self.generic_visit(node)

    def _visit_scope(self, node: ast.AST, kind: str) -> None:
        self.scopes.append(kind)
        self.generic_visit(node)
        self.scopes.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.protected.add(node.name)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.scopes.append("function")
        self.visit(node.args)
        for statement in node.body:
            self.visit(statement)
        if node.returns is not None:
            self.visit(node.returns)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._visit_scope(node, "function")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.protected.add(node.name)
        self._visit_scope(node, "class")

    def visit_Global(self, node: ast.Global | ast.Nonlocal) -> None:
        self.protected.update(node.names)

    visit_Nonlocal = visit_Global

    def visit_alias(self, node: ast.alias) -> None:
        self.protected.add((node.asname or node.name).split(".")[0])

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:  # a bare string in the tree, so it cannot be edited in place
            self.protected.add(node.name)
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg:  # f(n=3) would break if the callee's parameter n were renamed
            self.protected.add(node.arg)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs | ast.MatchStar) -> None:
        if node.name:  # match-statement captures are bare strings too
            self.protected.add(node.name)
        self.generic_visit(node)

    visit_MatchStar = visit_MatchAs

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.protected.add(node.rest)
        self.generic_visit(node)


def _apply_mapping_to_tree(tree: ast.AST, mapping: dict[str, str]) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in mapping:
            node.id = mapping[node.id]
        elif isinstance(node, ast.arg) and node.arg in mapping:
            node.arg = mapping[node.arg]
    return tree


def rename_locals(code: str, mapping: dict[str, str]) -> str | None:
    """Apply `mapping` to Name and parameter nodes by editing the source text in place.

    Returns None when an edit does not land where the tree says (so the variant is skipped
    rather than risked); the result is checked to parse to exactly the renamed tree.
    """
    code = normalize_newlines(code)
    tree = ast.parse(code)
    lines = [line.encode("utf-8") for line in code.split("\n")]
    edits: list[tuple[int, int, str, str]] = []  # line index, byte column, old, new
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in mapping:
            edits.append((node.lineno - 1, node.col_offset, node.id, mapping[node.id]))
        elif isinstance(node, ast.arg) and node.arg in mapping:
            edits.append((node.lineno - 1, node.col_offset, node.arg, mapping[node.arg]))
    for line_index, column, old, new in sorted(set(edits), reverse=True):
        line = lines[line_index]
        old_bytes = old.encode("utf-8")
        if line[column : column + len(old_bytes)] != old_bytes:
            return None
        lines[line_index] = line[:column] + new.encode("utf-8") + line[column + len(old_bytes) :]
    renamed = b"\n".join(lines).decode("utf-8")
    expected = ast.dump(_apply_mapping_to_tree(ast.parse(code), mapping))
    try:
        if ast.dump(ast.parse(renamed)) != expected:
            return None
    except SyntaxError:
        return None
    return renamed


def renamable_names(task: CodeTask) -> tuple[list[str], set[str]] | None:
    """Names that may be renamed in the task's solution, and every identifier already in use.

    None when the solution does not parse or uses introspection that could see local names.
    """
    code = normalize_newlines(task.reference_solution)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    in_use = set(_IDENTIFIER.findall(code))
    if in_use & _INTROSPECTION:
        return None
    walker = _ScopeWalker()
    walker.visit(tree)
    test_text = "\n".join([task.setup_code, *task.test_imports, *task.tests])
    protected = (
        walker.protected
        | set(_IDENTIFIER.findall(test_text))
        | set(dir(builtins))
        | set(keyword.kwlist)
        | set(keyword.softkwlist)
        | {"self", "cls"}
    )
    if task.entry_point:
        protected.add(task.entry_point)
    names = sorted(name for name in walker.candidates - protected if not name.startswith("__"))
    return names, in_use | protected


def make_variants(task: CodeTask, k: int, rng: random.Random) -> list[Variant]:
    """Up to `k` distinct variants of the task (renamed locals, shuffled tests), unverified."""
    if task.is_function_completion:
        raise ValueError(
            f"{task.task_id}: augmentation rewrites whole MBPP solutions; HumanEval bodies "
            "depend on parameter names fixed by the prompt"
        )
    found = renamable_names(task)
    names, in_use = found if found is not None else ([], set())
    pool = [name for name in NAME_POOL if name not in in_use]
    original_solution = normalize_newlines(task.reference_solution)
    seen = {(original_solution, task.tests)}
    variants: list[Variant] = []
    for _ in range(4 * k):
        if len(variants) == k:
            break
        solution = original_solution
        if names:
            fresh = rng.sample(pool, len(names)) if len(pool) >= len(names) else None
            if fresh is None:  # more locals than pool names: number them instead
                fresh = [f"v{i}" for i in range(len(names))]
                if set(fresh) & in_use:
                    fresh = None
            renamed = rename_locals(solution, dict(zip(names, fresh))) if fresh else None
            solution = renamed if renamed is not None else solution
        tests = tuple(rng.sample(task.tests, len(task.tests)))
        if (solution, tests) not in seen:
            seen.add((solution, tests))
            variants.append(Variant(solution=solution, tests=tests))
    return variants
