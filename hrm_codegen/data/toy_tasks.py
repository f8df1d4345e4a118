"""A learnable toy benchmark: generated one-line arithmetic functions with tests (benchmark `toy`).

Why: reinforcement learning on MBPP with a CPU-sized model earns almost no reward, so nothing
shows whether the GSPO loop itself works. These tasks are small enough that a tiny model learns the
format from a few supervised examples and then raises its reward by sampling and reinforcement
within minutes. They are ordinary `CodeTask`s in MBPP's layout (the completion is the whole
function, the tests are asserts), so prompts, programs and the sandbox treat them like MBPP.

Families (K = 2..9): `plus_K(x)` returns x + K, `times_K(x)` x * K, `minus_K(x)` x - K, and the
two-argument `add`, `sub`, `mul`, `maximum`, `minimum`. Task ids `Toy/1` ... are numbered so the
families alternate (a prefix of the train split covers all of them). Splits: `validation` holds
K = 5, `test` K = 8, `train` everything else.
"""

from __future__ import annotations

from hrm_codegen.data.tasks import CodeTask

BENCHMARK = "toy"
CONSTANTS = (2, 3, 4, 5, 6, 7, 8, 9)
VALIDATION_CONSTANT = 5
TEST_CONSTANT = 8
SPLITS = ("train", "validation", "test")
UNARY_INPUTS = (1, 4, 10)
BINARY_INPUTS = ((1, 2), (7, 3), (4, 9))
# (name prefix, phrase in the description, operator)
UNARY_FAMILIES = (("plus", "plus", "+"), ("times", "times", "*"), ("minus", "minus", "-"))
# (function name, description, body expression, Python evaluation of the expected value)
BINARY_FAMILIES = (
    ("add", "the sum of a and b", "a + b", lambda a, b: a + b),
    ("sub", "a minus b", "a - b", lambda a, b: a - b),
    ("mul", "the product of a and b", "a * b", lambda a, b: a * b),
    ("maximum", "the larger of a and b", "max(a, b)", max),
    ("minimum", "the smaller of a and b", "min(a, b)", min),
)
_APPLY = {"+": lambda x, k: x + k, "*": lambda x, k: x * k, "-": lambda x, k: x - k}


def _unary_task(number: int, prefix: str, phrase: str, operator: str, k: int) -> CodeTask:
    name = f"{prefix}_{k}"
    tests = tuple(f"assert {name}({x}) == {_APPLY[operator](x, k)}" for x in UNARY_INPUTS)
    return _function_task(number, name, "x", f"x {phrase} {k}", f"x {operator} {k}", tests)


def _binary_task(number: int, name: str, description: str, body: str, expected) -> CodeTask:
    tests = tuple(f"assert {name}({a}, {b}) == {expected(a, b)}" for a, b in BINARY_INPUTS)
    return _function_task(number, name, "a, b", description, body, tests)


def _function_task(
    number: int, name: str, params: str, description: str, body: str, tests: tuple[str, ...]
) -> CodeTask:
    """Task `Toy/<number>`: write `name(params)` returning `body` (`description` in words)."""
    return CodeTask(
        task_id=f"Toy/{number}",
        benchmark=BENCHMARK,
        prompt=f"Write a function {name}({params}) that returns {description}.",
        reference_solution=f"def {name}({params}):\n    return {body}\n",
        tests=tests,
        entry_point=name,
    )


def split_of(task: CodeTask) -> str:
    """The split of a toy task: by its constant K (validation K=5, test K=8), else train."""
    name = task.entry_point or ""
    suffix = name.rsplit("_", 1)[-1]
    if suffix.isdigit():
        k = int(suffix)
        if k == VALIDATION_CONSTANT:
            return "validation"
        if k == TEST_CONSTANT:
            return "test"
    return "train"


def toy_tasks() -> list[CodeTask]:
    """Every toy task in id order: the constants interleaved across families, then the binaries."""
    tasks: list[CodeTask] = []
    for index, k in enumerate(CONSTANTS):
        for prefix, phrase, operator in UNARY_FAMILIES:
            tasks.append(_unary_task(len(tasks) + 1, prefix, phrase, operator, k))
        if index < len(BINARY_FAMILIES):  # one binary after each of the first constants
            tasks.append(_binary_task(len(tasks) + 1, *BINARY_FAMILIES[index]))
    return tasks


def load_toy(split: str | None = None) -> list[CodeTask]:
    """The toy tasks of `split` (`train`, `validation`, `test`; None = all), in id order."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"toy benchmark split {split!r} is not one of {SPLITS} (or None for all)")
    return [task for task in toy_tasks() if split is None or split_of(task) == split]
