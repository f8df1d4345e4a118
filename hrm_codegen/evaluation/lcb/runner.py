"""LCB's four scenarios on the harness: samples -> sandboxed (or ast-graded) verdicts -> summary.

Same files as MBPP/HumanEval, written through the same run store (`store.RunStore`:
`samples.jsonl`, `results.jsonl` appended as verdicts come, `summary.json`), the same
resumption (samples already judged in the folder are not rerun), and the
same `EvalSummary`, with LCB's extras: counts by verdict (`passed`, `wrong_answer`,
`runtime_error`, `timeout`, `error`; `invalid_answer` for the prediction scenarios), failures by
cause, and pass@k with counts per difficulty under `breakdown["difficulty"]`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrm_codegen.data.lcb import CodeExecutionProblem, LCBProblem, TestOutputProblem
from hrm_codegen.evaluation.lcb.compare import comparator
from hrm_codegen.evaluation.lcb.grading import PREDICTION_VERDICTS, grade_answer
from hrm_codegen.evaluation.lcb.programs import (
    LCB_VERDICTS,
    Verdict,
    functional_program,
    sample_timeout,
    stdio_job,
    verdict_from_exec,
    verdict_from_stdio,
)
from hrm_codegen.evaluation.passk import check_ks, mean_pass_at_k, parse_ks
from hrm_codegen.evaluation.results import EvalSummary, summarize_records
from hrm_codegen.evaluation.store import RunStore, judging_timings
from hrm_codegen.evaluation.store import number_samples as _number_samples

LCB_TIMEOUT_PER_TEST_S = 6.0  # LCB's per-test limit


@dataclass(frozen=True)
class LCBRunSettings:
    """How programs run: comparison mode, LCB's limits (6 s per test; whole-sample cap
    (per-test + 1) x tests + 5 s unless `total_timeout` is given), sandbox options."""

    compare: str = "lcb"
    timeout_per_test: float = LCB_TIMEOUT_PER_TEST_S
    total_timeout: float | None = None
    memory_mb: int | None = None
    workers: int | None = None
    sandbox: str = "auto"
    progress: bool = True

    def as_dict(self, backend: str, workers: int) -> dict[str, Any]:
        return {
            "sandbox": backend,
            "compare": self.compare,
            "timeout_per_test_s": self.timeout_per_test,
            "total_timeout_s": self.total_timeout,
            "memory_mb": self.memory_mb,
            "workers": workers,
        }


def number_samples(
    task_ids: Sequence[str], samples: Sequence[Mapping[str, Any]], scenario: str
) -> list[dict[str, Any]]:
    """`{task_id, sample_index, completion}` per sample (task ids as strings, indices in order
    of appearance); samples of unknown tasks and tasks without samples are errors."""
    return _number_samples(
        samples,
        task_ids,
        what=f"{scenario} tasks selected",
        unknown_hint="check --data and the filters",
        missing_hint="narrow the selection (--limit, dates) or complete the samples file",
    )


def _start_run(
    task_ids: Sequence[str],
    samples: Sequence[Mapping[str, Any]],
    scenario: str,
    ks: tuple[int, ...],
    output_dir: str | Path | None,
) -> tuple[list[dict[str, Any]], RunStore, dict[tuple, dict]]:
    """(numbered samples, the run store, verdicts already there): every scenario's first
    steps, with samples.jsonl written (or checked against the folder's)."""
    numbered = number_samples(task_ids, samples, scenario)
    check_ks(ks, Counter(s["task_id"] for s in numbered))
    store = RunStore.open(output_dir)
    store.keep_samples(numbered)
    return numbered, store, store.judged(numbered)


def judge_codegen(
    problems: Mapping[str, LCBProblem],
    samples: Sequence[Mapping[str, Any]],
    settings: LCBRunSettings,
    on_verdict: Callable[[int, Verdict], None],
    *,
    backend: str,
    workers: int,
    desc: str = "judging lcb",
) -> None:
    """Run every sample's program: stdin problems as piped processes, functional ones as test
    programs; `on_verdict(position in samples, verdict)` as each finishes."""
    from hrm_codegen.evaluation.sandbox import (
        DEFAULT_MEMORY_MB,
        run_programs,
        run_stdio_programs,
    )

    memory_mb = settings.memory_mb or DEFAULT_MEMORY_MB
    compare = comparator(settings.compare)
    stdin = [i for i, s in enumerate(samples) if not problems[s["task_id"]].is_functional]
    functional = [i for i, s in enumerate(samples) if problems[s["task_id"]].is_functional]
    if stdin:
        jobs = [
            stdio_job(problems[samples[i]["task_id"]], samples[i]["completion"], compare)
            for i in stdin
        ]
        run_stdio_programs(
            jobs,
            timeout_per_test=settings.timeout_per_test,
            total_timeout=settings.total_timeout,
            memory_mb=memory_mb,
            workers=workers,
            backend=backend,
            on_result=lambda j, result: on_verdict(stdin[j], verdict_from_stdio(result)),
            progress=settings.progress,
            desc=f"{desc} (stdin)",
        )
    groups: dict[float, list[int]] = defaultdict(list)  # one run_programs call per time limit
    for i in functional:
        problem = problems[samples[i]["task_id"]]
        limit = settings.total_timeout or sample_timeout(problem, settings.timeout_per_test)
        groups[limit].append(i)
    for limit, members in sorted(groups.items()):
        programs = [
            functional_program(
                problems[samples[i]["task_id"]], samples[i]["completion"], settings.timeout_per_test
            )
            for i in members
        ]
        run_programs(
            programs,
            timeout=limit,
            memory_mb=memory_mb,
            workers=workers,
            backend=backend,
            on_result=lambda j, result, members=members: on_verdict(
                members[j], verdict_from_exec(result)
            ),
            progress=settings.progress,
            desc=f"{desc} (functional)",
        )


def summarize(
    benchmark: str,
    task_ids: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    *,
    ks: tuple[int, ...],
    verdicts: Sequence[str],
    difficulty: Mapping[str, str],
    timings: dict[str, float],
    settings: dict[str, Any],
) -> EvalSummary:
    """The harness's summary plus pass@k and counts per difficulty."""
    per_task = {task_id: [0, 0] for task_id in task_ids}
    by_level: dict[str, Counter] = defaultdict(lambda: Counter(dict.fromkeys(verdicts, 0)))
    for record in records:
        per_task[record["task_id"]][0] += 1
        per_task[record["task_id"]][1] += bool(record["passed"])
        by_level[difficulty.get(record["task_id"]) or "unknown"][record["status"]] += 1
    breakdown: dict[str, Any] = {"difficulty": {}}
    for level in sorted(
        by_level,
        key=lambda name: (
            ("easy", "medium", "hard").index(name) if name in ("easy", "medium", "hard") else 3
        ),
    ):
        members = {
            t: tuple(nc) for t, nc in per_task.items() if (difficulty.get(t) or "unknown") == level
        }
        usable = tuple(k for k in ks if k <= min(n for n, _ in members.values()))
        breakdown["difficulty"][level] = {
            "tasks": len(members),
            "pass_at_k": mean_pass_at_k(members, usable) if usable else {},
            "counts": dict(by_level[level]),
        }
    return summarize_records(
        benchmark,
        task_ids,
        records,
        ks=ks,
        statuses=verdicts,
        timings=timings,
        settings=settings,
        breakdown=breakdown,
    )


def evaluate_lcb_codegen(
    problems: Sequence[LCBProblem],
    samples: Sequence[Mapping[str, Any]],
    *,
    ks: Sequence[int] | str = (1,),
    settings: LCBRunSettings | None = None,
    output_dir: str | Path | None = None,
    benchmark: str = "lcb_codegeneration",
    carried: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
    timings: dict[str, float] | None = None,
) -> EvalSummary:
    """Judge code generation samples (`{task_id: question_id, completion: program}`).

    `carried` holds verdicts taken over as they are (self-repair: samples that already
    passed), keyed by (task_id, sample_index) of `samples`.
    """
    from hrm_codegen.evaluation.sandbox import default_workers, resolve_backend

    settings = settings or LCBRunSettings()
    comparator(settings.compare)  # a wrong mode fails before anything runs
    ks = parse_ks(ks)
    by_id = {problem.question_id: problem for problem in problems}
    numbered, store, judged = _start_run(list(by_id), samples, benchmark, ks, output_dir)
    backend = resolve_backend(settings.sandbox)
    workers = default_workers() if settings.workers is None else settings.workers
    carry = {key: r for key, r in (carried or {}).items() if key not in judged}
    done = {*judged, *carry}
    pending = [s for s in numbered if (s["task_id"], s["sample_index"]) not in done]
    if len(pending) < len(numbered):
        print(f"{len(numbered) - len(pending)} sample(s) already judged; running {len(pending)}")

    def run(emit: Callable[[dict[str, Any]], None]) -> None:
        for key, record in carry.items():
            emit({**record, "task_id": key[0], "sample_index": key[1], "carried_over": True})
        judge_codegen(
            by_id,
            pending,
            settings,
            lambda position, verdict: emit(
                {**pending[position], **verdict.record(by_id[pending[position]["task_id"]])}
            ),
            backend=backend,
            workers=workers,
            desc=f"judging {benchmark}",
        )

    seconds = store.judge(run, judged)
    summary = summarize(
        benchmark,
        list(by_id),
        list(judged.values()),
        ks=ks,
        verdicts=LCB_VERDICTS,
        difficulty={t: p.difficulty for t, p in by_id.items()},
        timings=judging_timings(timings or {}, seconds, len(pending)),
        settings={**settings.as_dict(backend, workers), "ks": list(ks)},
    )
    store.write_summary(summary)
    return summary


def evaluate_lcb_predictions(
    scenario: str,
    problems: Sequence[TestOutputProblem] | Sequence[CodeExecutionProblem],
    samples: Sequence[Mapping[str, Any]],
    *,
    ks: Sequence[int] | str = (1,),
    output_dir: str | Path | None = None,
    timings: dict[str, float] | None = None,
) -> EvalSummary:
    """Grade test-output-prediction (`lcb_testoutput`) or code-execution (`lcb_execution`,
    `exec`) answers by parsing them (`grading.grade_answer`, by the problems' kind); nothing is
    executed. `scenario` names the benchmark in the summary."""
    ks = parse_ks(ks)
    by_id = {problem.task_id: problem for problem in problems}
    if len(by_id) != len(problems):
        raise ValueError(f"the {scenario} file holds duplicate task ids; pass each record once")
    numbered, store, judged = _start_run(list(by_id), samples, scenario, ks, output_dir)
    pending = [s for s in numbered if (s["task_id"], s["sample_index"]) not in judged]

    def line(sample: dict[str, Any]) -> dict[str, Any]:
        problem = by_id[sample["task_id"]]
        result = grade_answer(problem, sample["completion"])
        return {
            **sample,
            "passed": result.passed,
            "status": result.status,
            "detail": result.detail,
            "answer": result.answer[:300],
            "failure_cause": result.failure_cause,
            "difficulty": problem.difficulty,
        }

    def run(emit: Callable[[dict[str, Any]], None]) -> None:
        for sample in pending:
            emit(line(sample))

    seconds = store.judge(run, judged)
    summary = summarize(
        scenario,
        list(by_id),
        list(judged.values()),
        ks=ks,
        verdicts=PREDICTION_VERDICTS,
        difficulty={t: p.difficulty for t, p in by_id.items()},
        timings=dict(timings or {}, grading_s=seconds),
        settings={"ks": list(ks), "grader": "ast literal"},
    )
    store.write_summary(summary)
    return summary
