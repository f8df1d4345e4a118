"""Prepare a SandboxProgram's tests, outside the sandbox, for a run that the candidate cannot game.

Every comparison in the tests (`==`, `<`, `in`, chains...) becomes a call of the bootstrap's
`compare`, which first checks that both sides are exact built-in value types, so an object
whose `__eq__` always says True, or a str subclass that lies about equality, fails instead of
passing. The rewritten tests are compiled here (same interpreter as the sandbox's) and sent as
a marshalled code object, with the names of the modules they import so that the bootstrap can
import them before the candidate runs and hand the tests those pristine copies.
"""

from __future__ import annotations

import ast
import functools
import marshal

COMPARE_NAME = "__hrm_sandbox_compare__"
CALL_NAME = "__hrm_sandbox_call__"
CALL_METHOD_NAME = "__hrm_sandbox_call_method__"
# Built-ins that read their caller's frame: a call through a helper would change their meaning.
_FRAME_BUILTINS = frozenset({"super", "locals", "vars", "globals", "dir", "eval", "exec"})
# Modules whose value types (Counter, OrderedDict, defaultdict, deque, Decimal) the tests may
# compare: loaded before a candidate that names them, so that their classes are pristine.
TRUSTED_CONTAINER_MODULES = ("collections", "decimal")
# Index of each operator in the bootstrap's _OPERATORS table (0 and 1, identity, are unchecked).
_OPERATOR_INDEX = {
    ast.Is: 0,
    ast.IsNot: 1,
    ast.Eq: 2,
    ast.NotEq: 3,
    ast.Lt: 4,
    ast.LtE: 5,
    ast.Gt: 6,
    ast.GtE: 7,
    ast.In: 8,
    ast.NotIn: 9,
}


class _ComparisonRewriter(ast.NodeTransformer):
    """`a == b` -> `compare((2,), a, b)`; `a < b < c` -> `compare((4, 4), a, lambda: b, ...)`."""

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        operators = ast.Tuple(
            elts=[ast.Constant(_OPERATOR_INDEX[type(op)]) for op in node.ops], ctx=ast.Load()
        )
        rights: list[ast.expr] = list(node.comparators)
        if len(rights) > 1:
            empty = ast.arguments(
                posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]
            )
            rights = [ast.Lambda(args=empty, body=right) for right in rights]
        call = ast.Call(
            func=ast.Name(id=COMPARE_NAME, ctx=ast.Load()),
            args=[operators, node.left, *rights],
            keywords=[],
        )
        return ast.copy_location(call, node)


class _CallRewriter(ast.NodeTransformer):
    """`f(x)` -> `call(f, x)`, `a.m(x)` -> `call_method(a, "m", x)`: state restored around each."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        function = node.func
        if isinstance(function, ast.Name) and function.id in _FRAME_BUILTINS | {
            COMPARE_NAME,
            CALL_NAME,
            CALL_METHOD_NAME,
        }:
            return node
        if isinstance(function, ast.Attribute):
            helper = ast.Name(id=CALL_METHOD_NAME, ctx=ast.Load())
            args = [function.value, ast.Constant(function.attr), *node.args]
        else:
            helper = ast.Name(id=CALL_NAME, ctx=ast.Load())
            args = [function, *node.args]
        return ast.copy_location(ast.Call(func=helper, args=args, keywords=node.keywords), node)


def imported_modules(tree: ast.AST) -> list[str]:
    """Absolute module names the code imports anywhere (`import a.b`, `from c import d`)."""
    names: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(dict.fromkeys(alias.name for alias in node.names))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names[node.module] = None
    return list(names)


@functools.lru_cache(maxsize=512)  # a benchmark has a few hundred distinct tests
def prepare_tests(tests: str, first_line: int) -> tuple[bytes, tuple[str, ...]] | None:
    """(marshalled rewritten code, modules to import first), or None when `tests` do not parse.

    `first_line` is the line the tests start at in the program file, so that tracebacks and
    failure details name the line of the whole program. Cached: a benchmark judges many
    samples against the same tests.
    """
    try:
        tree = ast.parse(tests, filename="program.py")
    except (SyntaxError, ValueError):
        return None
    ast.increment_lineno(tree, first_line - 1)
    modules = tuple(imported_modules(tree))
    tree = _CallRewriter().visit(_ComparisonRewriter().visit(tree))
    tree = ast.fix_missing_locations(tree)
    code = compile(tree, "program.py", "exec", dont_inherit=True)
    return marshal.dumps(code), modules
