"""One task type for every code benchmark, the benchmarks declared once (`CODE_BENCHMARKS`), and
the one place a runnable program is assembled.

The trainer, generation and the evaluator all see a benchmark as a list of `CodeTask`; only
`build_program` knows how each benchmark glues a completion to its tests, so evaluation of
reference solutions, model samples and augmented training variants can never drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CodeBenchmark:
    """A benchmark of `CodeTask`s as data/ describes it; each is declared once, in
    `CODE_BENCHMARKS`, and everything else (prompts, programs, augmentation, rewards, the
    evaluation registry's entry) follows from its row, never from a test on its name.

    `function_completion`: the prompt is a function's signature and docstring, the model writes
    the body, and the tests are a module defining `check`, called on the entry point
    (HumanEval). Otherwise the prompt is a description above the task's asserts and the model
    writes the whole program (MBPP). `about` and `default_split` are what `scripts/evaluate.py`
    shows and defaults to (hrm_codegen/evaluation/registry.py reads them); `aliases` are the
    other spellings `canonical_benchmark` accepts. Its loader is `data.LOADERS[name]`.
    """

    name: str
    id_prefix: str  # canonical task ids are `<id_prefix>/<number>`
    about: str
    aliases: tuple[str, ...] = ()
    function_completion: bool = False
    default_split: str | None = "test"


CODE_BENCHMARKS: dict[str, CodeBenchmark] = {
    entry.name: entry
    for entry in (
        CodeBenchmark(
            "mbpp",
            "Mbpp",
            "MBPP, 974 Python tasks checked by asserts (default: the test split)",
            aliases=("mbpp_full", "mbpp-full"),
        ),
        # both MBPP variants share the original numbering
        CodeBenchmark(
            "mbpp_sanitized",
            "Mbpp",
            "MBPP's hand-checked subset of 427 tasks (default: test split)",
            aliases=("mbpp-sanitized", "sanitized-mbpp", "sanitized_mbpp"),
        ),
        CodeBenchmark(
            "humaneval",
            "HumanEval",
            "HumanEval, 164 function bodies checked by a check()",
            aliases=("human_eval", "human-eval", "openai_humaneval"),
            function_completion=True,
            default_split=None,
        ),
        CodeBenchmark(  # generated in code: data/toy_tasks.py
            "toy",
            "Toy",
            "29 generated tiny tasks (plus_K, times_K, ...) a CPU model learns",
        ),
    )
}
BENCHMARKS = tuple(CODE_BENCHMARKS)
_BENCHMARK_ALIASES = {
    alias: entry.name
    for entry in CODE_BENCHMARKS.values()
    for alias in (entry.name, *entry.aliases)
}


@dataclass(frozen=True)
class CodeTask:
    """A benchmark problem: what the model is shown, a known-good answer, and how to check one.

    For MBPP `prompt` is the natural-language description and `reference_solution` the full
    program; for HumanEval `prompt` is the signature + docstring and `reference_solution` the
    function body. Texts are kept byte for byte as the dataset ships them (MBPP uses `\\r\\n`);
    `hrm_codegen.data.prompts` normalises them for the model.
    """

    task_id: str
    benchmark: str
    prompt: str
    reference_solution: str
    tests: tuple[str, ...]
    entry_point: str | None
    setup_code: str = ""
    test_imports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.benchmark not in BENCHMARKS:
            raise ValueError(
                f"CodeTask.benchmark={self.benchmark!r} is not one of {BENCHMARKS}; "
                "pass the canonical name"
            )
        if not isinstance(self.tests, tuple) or not isinstance(self.test_imports, tuple):
            raise TypeError(
                f"CodeTask {self.task_id}: tests and test_imports must be tuples "
                f"(got {type(self.tests).__name__}, {type(self.test_imports).__name__}); "
                "wrap lists in tuple(...) so the dataclass stays hashable"
            )

    @property
    def is_function_completion(self) -> bool:
        """Whether the model completes a function the prompt declares, checked by the tests'
        `check` (HumanEval), rather than writing a whole program checked by asserts (MBPP)."""
        return CODE_BENCHMARKS[self.benchmark].function_completion

    @property
    def number(self) -> int:
        """The integer part of the task id (MBPP splits are defined on it)."""
        return int(self.task_id.rsplit("/", 1)[1])


def canonical_benchmark(name: str) -> str:
    """Map a benchmark name or accepted alias (`mbpp-sanitized`, `HumanEval`, ...) to its canonical form."""
    key = name.strip().lower()
    if key not in _BENCHMARK_ALIASES:
        raise ValueError(
            f"unknown benchmark {name!r}; use one of {BENCHMARKS} "
            "(MBPP's full variant is 'mbpp', the sanitized one 'mbpp_sanitized')"
        )
    return _BENCHMARK_ALIASES[key]


_TASK_ID = re.compile(r"^\s*(?:([A-Za-z_\-]+)/)?(\d+)\s*$")


def normalize_task_id(benchmark: str, raw: int | str) -> str:
    """Turn `601`, `"601"`, `"Mbpp/601"` or `"MBPP/601"` into the canonical `"Mbpp/601"`.

    Results files, configs and the datasets themselves spell ids differently; every lookup goes
    through here so that `"MBPP/601"` in a samples file matches the loaded task.
    """
    bench = canonical_benchmark(benchmark)
    prefix = CODE_BENCHMARKS[bench].id_prefix
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise TypeError(f"task id must be an int or str, got {raw!r} ({type(raw).__name__})")
    if isinstance(raw, int):
        if raw < 0:
            raise ValueError(f"task id {raw} is negative; ids are non-negative integers")
        return f"{prefix}/{raw}"
    match = _TASK_ID.match(raw)
    if match is None:
        raise ValueError(
            f"cannot read task id {raw!r} for {bench}; expected e.g. 12, '12' or '{prefix}/12'"
        )
    given_prefix, number = match.groups()
    if given_prefix is not None and given_prefix.lower() != prefix.lower():
        raise ValueError(
            f"task id {raw!r} has prefix {given_prefix!r}, but benchmark {bench!r} uses "
            f"'{prefix}/N'; did you pass the wrong benchmark?"
        )
    return f"{prefix}/{int(number)}"


def program_parts(task: CodeTask, completion: str) -> tuple[str, str, str | None]:
    """(candidate, tests, entry point) of the program that checks `completion`.

    The candidate is the untrusted part (HumanEval: prompt + completion; MBPP: the completion),
    the tests the trusted part; `candidate + "\\n" + tests` is `build_program`'s text, so the
    sandbox can run the tests against pristine built-ins and modules
    (`hrm_codegen.evaluation.sandbox.SandboxProgram`) with the same line numbers.
    MBPP: the setup code goes *after* the solution because tasks 367 and 927 build test trees
    from the solution's own `Node` class; the sanitized variant's `test_imports` go after the
    solution too, so a solution cannot lean on them by accident. HumanEval: the test module,
    then `check(entry_point)`.
    """
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    if task.is_function_completion:
        if not task.entry_point:
            raise ValueError(f"{task.task_id}: HumanEval task has no entry_point to check")
        test_code = "\n".join(task.tests)
        tests = f"\n{test_code}\n\ncheck({task.entry_point})\n"
        return f"{task.prompt}{completion}", tests, task.entry_point
    tests = "\n".join([task.setup_code, *task.test_imports, *task.tests]) + "\n"
    return completion, tests, task.entry_point


def build_program(task: CodeTask, completion: str) -> str:
    """The program that checks `completion` against the task's tests, as one text.

    The candidate, then the tests (see `program_parts`, which the evaluator uses to keep the
    two apart).
    """
    candidate, tests, _ = program_parts(task, completion)
    return f"{candidate}\n{tests}"
