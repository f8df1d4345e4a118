"""LCB code generation in the real sandbox: fixture references pass, mutants fail as expected
under both comparison modes, verdict details, resumption, and where LCB's grader differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrm_codegen.data.lcb import load_lcb_codegen
from hrm_codegen.evaluation.lcb import LCBRunSettings, evaluate_lcb_codegen
from hrm_codegen.evaluation.results import read_jsonl

FIXTURES = Path(__file__).parent / "fixtures" / "lcb"
SOLUTIONS = json.loads((FIXTURES / "solutions.json").read_text())
FAST = {"timeout_per_test": 1.0, "progress": False, "memory_mb": 512}


def _problems():
    return load_lcb_codegen(FIXTURES / "code_generation.jsonl")


FUNCTIONAL = {"3001", "3100"}


def _all_samples(mode: str) -> tuple[list[dict], list[tuple[str, str, dict]]]:
    """Every reference and mutant as samples, and what each one is. The comparison mode only
    matters for stdout, so the tolerant run leaves out functional problems and timeouts."""
    samples, what = [], []
    for qid, entry in SOLUTIONS.items():
        if mode == "tolerant" and qid in FUNCTIONAL:
            continue
        cases = [("reference", entry["reference"], {"lcb": "passed", "tolerant": "passed"})]
        cases += [(name, m["code"], m) for name, m in entry["mutants"].items()]
        for name, code, expect in cases:
            if mode == "tolerant" and expect["lcb"] == "timeout":
                continue
            samples.append({"task_id": qid, "completion": code})
            what.append((qid, name, expect))
    return samples, what


@pytest.fixture(scope="module")
def judged(tmp_path_factory) -> dict[str, tuple]:
    """Both modes judged once for the whole module (the sandbox runs are the slow part)."""
    runs = {}
    for mode in ("lcb", "tolerant"):
        samples, what = _all_samples(mode)
        out = tmp_path_factory.mktemp(mode)
        problems = [p for p in _problems() if mode == "lcb" or p.question_id not in FUNCTIONAL]
        summary = evaluate_lcb_codegen(
            problems, samples, ks=(1,), settings=LCBRunSettings(compare=mode, **FAST),
            output_dir=out,
        )  # fmt: skip
        records = {(r["task_id"], r["sample_index"]): r for r in read_jsonl(out / "results.jsonl")}
        runs[mode] = (summary, records, out, samples, what)
    return runs


def _by_sample(judged, mode: str) -> list[tuple[str, str, str, dict]]:
    _, records, _, _, what = judged[mode]
    index: dict[str, int] = {}
    rows = []
    for qid, name, expect in what:
        number = index.get(qid, 0)
        index[qid] = number + 1
        rows.append((qid, name, expect[mode], records[(qid, number)]))
    return rows


@pytest.mark.parametrize("mode", ["lcb", "tolerant"])
def test_references_pass_and_mutants_fail_as_expected(judged, mode: str) -> None:
    for qid, name, expected, record in _by_sample(judged, mode):
        assert record["status"] == expected, (mode, qid, name, record["detail"])
        assert record["passed"] is (expected == "passed")


def test_lcb_exact_decimals_versus_tolerant_floats(judged) -> None:
    """LCB compares decimals exactly: `0.333333` for `0.3333333333` is a wrong answer there
    and a pass under --compare tolerant (3.3e-7 away). Our default follows LCB."""
    rows = {(q, n): r for q, n, _, r in _by_sample(judged, "lcb")}
    tolerant = {(q, n): r for q, n, _, r in _by_sample(judged, "tolerant")}
    assert rows[("abc350_b", "six decimals")]["status"] == "wrong_answer"
    assert tolerant[("abc350_b", "six decimals")]["status"] == "passed"
    for mode in (rows, tolerant):  # a float printed for a big integer fails in both modes
        assert mode[("1900A", "float repr")]["status"] == "wrong_answer"


def test_verdict_details_name_the_failing_test(judged) -> None:
    rows = {(q, n): r for q, n, _, r in _by_sample(judged, "lcb")}
    off = rows[("abc300_a", "off by one")]  # right on the public test, wrong on private test 0
    assert off["failed_test"] == 1
    assert off["input"] == "1\n-5 5\n" and off["expected"] == "0\n" and off["got"].strip() == "1"
    assert off["failure_cause"] == "wrong_answer"
    eof = rows[("abc300_a", "reads too much")]
    assert eof["failed_test"] == 0 and "EOFError" in eof["stderr_tail"]
    assert eof["failure_cause"] == "other_exception"
    big = rows[("1900A", "through floats")]
    assert big["failed_test"] == 1 and big["expected"].startswith("1267650600228229401496703205376")
    assert rows[("1900A", "spins")]["status"] == "timeout"
    assert rows[("1900A", "spins")]["failure_cause"] == "timeout"
    wrong = rows[("3001", "max twice")]
    assert wrong["failed_test"] == 0 and wrong["got"] == "10"
    assert wrong["input"] == "[1, 5, 3]" and wrong["expected"] == "8"
    assert rows[("3001", "undefined name")]["failure_cause"] == "name_error"
    spins = rows[("3001", "spins")]  # stopped by the per-test alarm, not the whole-sample cap
    assert spins["status"] == "timeout" and spins["failed_test"] == 0
    assert spins["duration"] < 5
    assert rows[("3001", "syntax")]["failure_cause"] == "syntax_error"
    assert rows[("3100", "strings")]["got"] == "['12', '34', '5']"


def test_summary_counts_by_verdict_cause_and_difficulty(judged) -> None:
    summary, records, out, _, _ = judged["lcb"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["benchmark"] == "lcb_codegeneration" and saved["num_tasks"] == 5
    assert saved["counts"] == {
        "passed": 5, "wrong_answer": 8, "runtime_error": 3, "timeout": 2, "error": 0,
    }  # fmt: skip
    assert saved["failures"]["wrong_answer"] == 8 and saved["failures"]["name_error"] == 1
    assert sum(saved["failures"].values()) == len(records) - 5
    levels = saved["breakdown"]["difficulty"]
    assert list(levels) == ["easy", "medium", "hard"]
    assert levels["easy"]["tasks"] == 2 and levels["hard"]["tasks"] == 1
    assert levels["hard"]["counts"]["timeout"] == 1
    # 1900A: 1 of 4 samples passes -> pass@1 = 0.25
    assert levels["hard"]["pass_at_k"]["pass@1"] == pytest.approx(0.25)
    assert summary.settings["compare"] == "lcb" and summary.settings["timeout_per_test_s"] == 1.0


def test_a_rerun_judges_nothing_again(judged, capsys) -> None:
    summary, _, out, samples, _ = judged["tolerant"]
    before = (out / "results.jsonl").read_text()
    again = evaluate_lcb_codegen(
        [p for p in _problems() if p.question_id not in FUNCTIONAL], samples,
        settings=LCBRunSettings(compare="tolerant", **FAST),
        output_dir=out,
    )  # fmt: skip
    assert "already judged; running 0" in capsys.readouterr().out
    assert (out / "results.jsonl").read_text() == before
    assert again.pass_at_k == summary.pass_at_k


PAIRS_READ = "n = int(input())\nfor _ in range(n):\n    a, b = map(int, input().split())\n"


@pytest.mark.parametrize(
    "case, code, ours",
    [
        # LCB replaces sys.stdin with a StringIO: `sys.stdin.buffer` raises there (runtime
        # error in LCB); here the program reads a real pipe and passes.
        (
            "sys.stdin.buffer",
            "import sys\ndata = sys.stdin.buffer.read().split()\nn = int(data[0])\n"
            "print('\\n'.join(str(int(data[1 + 2 * i]) + int(data[2 + 2 * i])) for i in range(n)))\n",
            "passed",
        ),
        # LCB wraps a stdin program's top level in a function, so `global n` finds no module
        # global there (NameError in LCB); here the program runs as a module and passes.
        (
            "global at top level",
            "def main():\n    global n\n    for _ in range(n):\n        a, b = map(int, input().split())\n"
            "        print(a + b)\nn = int(input())\nmain()\n",
            "passed",
        ),
        # LCB catches SystemExit and judges the output so far (a pass there); a non-zero exit
        # status is a runtime error here, as on a real judge.
        (
            "exit status 1",
            PAIRS_READ + "    print(a + b)\nimport sys\nsys.exit(1)\n",
            "runtime_error",
        ),
        ("exit()", PAIRS_READ + "    print(a + b)\nexit()\n", "passed"),  # same in both
    ],
    ids=["stdin-buffer", "global-at-top-level", "exit-status-1", "exit-call"],
)
def test_where_lcbs_in_process_grader_differs_we_follow_a_real_process(
    case: str, code: str, ours: str
) -> None:
    problem = [p for p in _problems() if p.question_id == "abc300_a"]
    summary = evaluate_lcb_codegen(
        problem, [{"task_id": "abc300_a", "completion": code}], settings=LCBRunSettings(**FAST)
    )
    assert summary.counts[ours] == 1, case


def test_samples_of_unknown_problems_are_refused() -> None:
    with pytest.raises(ValueError, match="not among the 5 lcb_codegeneration tasks"):
        evaluate_lcb_codegen(_problems(), [{"task_id": "nope", "completion": "pass"}])


def test_stdin_bench_reports_samples_per_second() -> None:
    from hrm_codegen.evaluation.lcb.bench import bench_lcb_stdin

    row = bench_lcb_stdin(repeat=2, tests_per_sample=2, workers=2)
    assert row["passed"] == 2 and row["samples"] == 2 and row["samples_per_s"] > 0


@pytest.mark.parametrize(
    "code, passed",
    [
        # no `class Solution`: the function itself is called, as in LCB
        ("def maxPairSum(nums):\n    return sum(sorted(nums)[-2:])\n", True),
        # a result whose comparison lies is not a pass (trusted comparison in the sandbox)
        (
            "class Liar:\n    def __eq__(self, other):\n        return True\n"
            "class Solution:\n    def maxPairSum(self, nums):\n        return Liar()\n",
            False,
        ),
    ],
    ids=["plain-function", "lying-eq"],
)
def test_functional_entry_points_and_lying_results(code: str, passed: bool) -> None:
    problem = [p for p in _problems() if p.question_id == "3001"]
    summary = evaluate_lcb_codegen(
        problem, [{"task_id": "3001", "completion": code}], settings=LCBRunSettings(**FAST)
    )
    assert summary.counts["passed"] == int(passed)
