"""Rewards from running the code: the evaluator's sandbox verdict, nothing the policy can talk to.

A completion's reward is 1.0 when the program pass@k judges (`program_parts`: the candidate and the
trusted tests, run as a `SandboxProgram`) passes, else 0.0. Options:

- `partial_credit`: a failing program earns the fraction of the task's asserts that pass when each
  runs alone (MBPP-style tasks; HumanEval's single `check` function stays binary). Capped below
  1.0, so only a fully passing program gets the full reward.
- `format_penalty`: subtracted when the completion is not valid Python or the generation ran out
  of tokens without ending (EOS or a stop string).

Because the verdict comes from `run_programs` (fresh sandboxed interpreter, per-run random
completion sentinel), whatever cannot fool the evaluator cannot be exploited by RL either.
"""

from __future__ import annotations

import ast
import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from hrm_codegen.data import CodeTask
from hrm_codegen.data.tasks import program_parts
from hrm_codegen.evaluation.sandbox import (
    DEFAULT_MEMORY_MB,
    ExecResult,
    SandboxProgram,
    run_programs,
)

# The most a program that failed as a whole earns from its asserts one at a time.
PARTIAL_CREDIT_CAP = 0.99


@dataclass(frozen=True)
class RewardConfig:
    """How completions are scored; see the module docstring."""

    partial_credit: bool = False
    format_penalty: float = 0.0
    timeout: float = 5.0
    memory_mb: int = DEFAULT_MEMORY_MB
    workers: int | None = None
    sandbox: str = "auto"

    def __post_init__(self) -> None:
        if self.format_penalty < 0:
            raise ValueError(
                f"format_penalty={self.format_penalty} must be >= 0 (it is subtracted)"
            )


@dataclass(frozen=True)
class Reward:
    """One completion's reward and the verdicts behind it."""

    value: float
    passed: bool  # the whole program passed (what pass@k counts)
    status: str  # ExecResult.status of the whole program
    assert_fraction: float | None = None  # partial credit: asserts passing alone, else None
    malformed: bool = False  # format penalty applied


def is_valid_python(completion: str) -> bool:
    """Whether the completion parses (a cheap format check run before the sandbox)."""
    with warnings.catch_warnings():  # e.g. "invalid decimal literal" in sampled garbage
        warnings.simplefilter("ignore", SyntaxWarning)
        try:
            ast.parse(completion)
        except (SyntaxError, ValueError):
            return False
    return True


def _program(task: CodeTask, completion: str) -> SandboxProgram:
    """Candidate and tests apart, so the tests run against pristine built-ins and compare
    trusted types only: a policy cannot learn to fake a pass (see the sandbox's docstring)."""
    return SandboxProgram(*program_parts(task, completion))


def _single_assert_programs(task: CodeTask, completion: str) -> list[SandboxProgram]:
    return [_program(dataclasses.replace(task, tests=(test,)), completion) for test in task.tests]


def compute_rewards(
    tasks: Sequence[CodeTask],
    completions: Sequence[str],
    config: RewardConfig,
    *,
    truncated: Sequence[bool] | None = None,
) -> list[Reward]:
    """Reward of `completions[i]` for `tasks[i]` (one sandbox batch for all of them).

    `truncated[i]`: the generation hit its token limit without ending (format penalty).
    """
    if len(tasks) != len(completions):
        raise ValueError(
            f"{len(tasks)} tasks for {len(completions)} completions: pass one task per completion"
        )
    truncated = list(truncated) if truncated is not None else [False] * len(completions)
    run = dict(
        timeout=config.timeout,
        memory_mb=config.memory_mb,
        workers=config.workers,
        backend=config.sandbox,
        progress=False,
    )
    results = run_programs(
        [_program(t, c) for t, c in zip(tasks, completions)], desc="rewards", **run
    )
    fractions: dict[int, float] = {}
    if config.partial_credit:
        fractions = _assert_fractions(tasks, completions, results, run)
    rewards = []
    for index, (completion, result) in enumerate(zip(completions, results)):
        value = 1.0 if result.passed else fractions.get(index, 0.0)
        malformed = bool(truncated[index]) or not is_valid_python(completion)
        if malformed:
            value -= config.format_penalty
        rewards.append(Reward(value, result.passed, result.status, fractions.get(index), malformed))
    return rewards


def _assert_fractions(
    tasks: Sequence[CodeTask],
    completions: Sequence[str],
    results: Sequence[ExecResult],
    run: dict,
) -> dict[int, float]:
    """For each failed MBPP-style completion that parses: the fraction of asserts passing alone."""
    programs: list[str] = []
    owners: list[int] = []
    for index, (task, completion, result) in enumerate(zip(tasks, completions, results)):
        if result.passed or task.is_function_completion or len(task.tests) < 2:
            continue
        if not is_valid_python(completion):
            continue  # cannot pass any assert; no need to start a sandbox per test
        single = _single_assert_programs(task, completion)
        programs += single
        owners += [index] * len(single)
    fractions = {i: 0.0 for i in set(owners)}
    counts = {i: 0 for i in set(owners)}
    for owner, result in zip(owners, run_programs(programs, desc="asserts", **run)):
        counts[owner] += 1
        fractions[owner] += float(result.passed)
    return {i: min(PARTIAL_CREDIT_CAP, fractions[i] / counts[i]) for i in fractions}
