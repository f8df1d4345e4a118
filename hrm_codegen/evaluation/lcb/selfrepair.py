"""Self-repair: every failed code generation sample gets one repair prompt with its feedback.

The feedback is built as LCB builds it from its grader's metadata (wrong answer: input,
generated output, expected; time limit: input, expected; runtime error: input, expected, the
error; a program that does not compile: the error), from the verdict our judge recorded in the
previous run's results.jsonl. Samples that passed carry over with their verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrm_codegen.data.lcb import LCBProblem
from hrm_codegen.data.prompts import format_lcb_repair_prompt
from hrm_codegen.evaluation.lcb.programs import truncate
from hrm_codegen.evaluation.results import RESULTS_FILE, SUMMARY_FILE, read_jsonl


@dataclass(frozen=True)
class RepairItem:
    task_id: str
    sample_index: int
    previous_completion: str
    feedback: str
    prompt: str


def feedback_message(record: Mapping[str, Any]) -> str:
    """LCB's check message for a failed verdict (what the repair prompt shows the model)."""
    status = record.get("status")
    test = f"Input: {record.get('input', '')}\nExpected: {record.get('expected', '')}"
    error = (record.get("stderr_tail") or record.get("detail") or "").strip()
    if record.get("failure_cause") == "syntax_error":
        return f"The above code is incorrect and got the following compilation error.\n{error}"
    if status == "wrong_answer":
        return (
            "The above code is incorrect and got a wrong answer.\n"
            f"Input: {record.get('input', '')}\nGenerated Output: {record.get('got', '')}\n"
            f"Expected: {record.get('expected', '')}"
        )
    if status == "timeout":
        return f"The above code is incorrect and got time limit exceeded.\n{record.get('detail', '')}\n{test}"
    return f"The above code is incorrect and got a runtime error.\n{test}\n{truncate(error, 1000)}"


def read_previous_run(previous: str | Path) -> list[dict[str, Any]]:
    """The verdicts of a previous `lcb_codegeneration` output folder, in file order."""
    folder = Path(previous)
    if not (folder / RESULTS_FILE).is_file():
        raise FileNotFoundError(
            f"--previous {folder} has no {RESULTS_FILE}; pass the --output folder of an "
            "lcb_codegeneration run"
        )
    if (folder / SUMMARY_FILE).is_file():
        import json

        benchmark = json.loads((folder / SUMMARY_FILE).read_text()).get("benchmark")
        if benchmark not in ("lcb_codegeneration", "lcb_selfrepair"):
            raise ValueError(
                f"--previous {folder} holds a {benchmark} run; self-repair starts from an "
                "lcb_codegeneration output folder"
            )
    records = read_jsonl(folder / RESULTS_FILE)
    keys = [(r.get("task_id"), r.get("sample_index")) for r in records]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{folder / RESULTS_FILE} holds a sample twice; is the run corrupt?")
    return records


def plan_repairs(
    problems: Mapping[str, LCBProblem], previous: Sequence[Mapping[str, Any]]
) -> tuple[dict[tuple[str, int], dict[str, Any]], list[RepairItem]]:
    """(verdicts carried over, one repair item per failed sample) for the selected problems."""
    carried: dict[tuple[str, int], dict[str, Any]] = {}
    repairs: list[RepairItem] = []
    for record in previous:
        task_id = str(record["task_id"])
        problem = problems.get(task_id)
        if problem is None:
            continue
        key = (task_id, int(record["sample_index"]))
        if record.get("passed"):
            carried[key] = dict(record)
            continue
        feedback = feedback_message(record)
        prompt = format_lcb_repair_prompt(
            problem.question_content, problem.starter_code, record["completion"], feedback
        )
        repairs.append(RepairItem(task_id, key[1], record["completion"], feedback, prompt))
    if not carried and not repairs:
        raise ValueError(
            "the previous run holds no sample of the selected problems; check --data, the "
            "filters and --previous"
        )
    return carried, repairs
