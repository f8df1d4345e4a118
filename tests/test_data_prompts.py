"""Prompt templates: what the model sees, what it must produce, and how output is cut back."""

from __future__ import annotations

from pathlib import Path

from hrm_codegen.data import build_program, load_benchmark
from hrm_codegen.data.execution import check_programs
from hrm_codegen.data.prompts import (
    extract_completion,
    format_prompt,
    format_target,
    stop_sequences,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _tasks(name: str, filename: str):
    return {t.task_id: t for t in load_benchmark(name, path=FIXTURES / filename)}


def test_mbpp_prompt_holds_description_then_tests_with_unix_newlines():
    task = _tasks("mbpp", "mbpp_tiny.jsonl")["Mbpp/3"]
    assert format_prompt(task) == (
        '"""\nWrite a function to add two numbers.\n'
        "assert add_two(1, 2) == 3\nassert add_two(-1, 1) == 0\nassert add_two(0, 0) == 0\n"
        '"""\n'
    )
    # \r\n becomes \n, the tab stays, the target ends in exactly one newline
    assert format_target(task) == "def add_two(a, b):\n\treturn a + b\n"
    shuffled = (task.tests[2], task.tests[0], task.tests[1])
    assert format_prompt(task, tests=shuffled).splitlines()[2:5] == list(shuffled)


def test_sanitized_prompt_shows_test_imports_before_tests():
    task = _tasks("mbpp_sanitized", "sanitized_mbpp_tiny.json")["Mbpp/602"]
    lines = format_prompt(task).splitlines()
    assert lines[1] == "Write a function to compute the area of a circle."
    assert lines[2] == "import math"
    assert lines[3].startswith("assert math.isclose")


def test_humaneval_prompt_is_the_prompt_and_target_the_body():
    task = _tasks("humaneval", "humaneval_tiny.jsonl")["HumanEval/0"]
    assert format_prompt(task) == task.prompt
    assert format_target(task) == "    return 2 * x\n"
    crlf = task.__class__(**{**task.__dict__, "prompt": task.prompt.replace("\n", "\r\n")})
    assert format_prompt(crlf) == task.prompt


def test_extract_completion_cuts_mbpp_output_at_stop_sequences():
    task = _tasks("mbpp", "mbpp_tiny.jsonl")["Mbpp/3"]
    for stop in stop_sequences(task):
        generated = "def add_two(a, b):\n\treturn a + b\n" + stop + " trailing junk"
        assert extract_completion(task, generated) == "def add_two(a, b):\n\treturn a + b\n"
    # output ending without any stop (token limit) is kept whole
    assert extract_completion(task, "def add_two(a, b):\r\n\treturn a") == (
        "def add_two(a, b):\n\treturn a\n"
    )


def test_extract_completion_ends_humaneval_body_at_first_unindented_line():
    task = _tasks("humaneval", "humaneval_tiny.jsonl")["HumanEval/1"]
    body = "    if n % 2 == 0:\n        return True\n\n    return False\n"
    assert extract_completion(task, body + "\nfoo = 1\n") == body
    assert extract_completion(task, body + "\ndef other():\n    pass\n") == body
    assert extract_completion(task, body + "<|endoftext|>\n    junk") == body
    # a blank line inside the body does not end it
    assert extract_completion(task, body) == body


def test_target_through_extract_completion_passes_tests_on_fixtures():
    tasks = [
        *load_benchmark("mbpp", path=FIXTURES / "mbpp_tiny.jsonl"),
        *load_benchmark("mbpp_sanitized", path=FIXTURES / "sanitized_mbpp_tiny.json"),
        *load_benchmark("humaneval", path=FIXTURES / "humaneval_tiny.jsonl"),
    ]
    programs = [
        build_program(t, extract_completion(t, format_target(t) + stop_sequences(t)[0] + "x"))
        for t in tasks
    ]
    assert check_programs(programs, workers=2) == [True] * len(tasks)


def test_lcb_base_prompt_has_one_example_of_the_same_kind_then_the_question():
    from hrm_codegen.data.prompts import LCB_STOP, format_lcb_prompt

    stdin = format_lcb_prompt("Print the sum of A and B.\r\n")
    assert stdin.count("### Question\n") == 2 and "### Starter Code" not in stdin
    assert stdin.endswith("### Question\nPrint the sum of A and B.\n\n### Answer\n\n")
    assert "\r" not in stdin
    starter = "class Solution:\n    def f(self, x: int) -> int:\n        "
    functional = format_lcb_prompt("Return x.", starter)
    assert functional.count("### Starter Code\n") == 2  # the example has starter code too
    assert functional.endswith(f"### Starter Code\n{starter.rstrip()}\n\n### Answer\n\n")
    assert "class Solution" in functional.split("### Question")[1]  # the worked example
    assert "###" in LCB_STOP


def test_extract_lcb_code_cuts_at_the_next_section_and_unwraps_fences():
    from hrm_codegen.data.prompts import extract_lcb_code

    assert extract_lcb_code("print(1)\n\n### Question\nnext") == "print(1)\n"
    assert extract_lcb_code("```python\nprint(2)\n```\nsome words") == "print(2)\n"
    assert extract_lcb_code("print(3)\n```\n") == "print(3)\n"
    assert extract_lcb_code("  x = 1\r\nprint(x)<|endoftext|>junk") == "x = 1\nprint(x)\n"


def test_lcb_prediction_prompts_end_where_the_answer_goes():
    from hrm_codegen.data.prompts import (
        format_lcb_call,
        format_lcb_execution_prompt,
        format_lcb_repair_prompt,
        format_lcb_testoutput_prompt,
    )

    assert format_lcb_call("f", '"ab"\n3') == 'f("ab", 3)'
    testoutput = format_lcb_testoutput_prompt("Q", "class Solution: ...", "f", "[1]\n2")
    assert testoutput.endswith("### Test\nassert f([1], 2) == ")
    execution = format_lcb_execution_prompt("def f(s):\n    return s\n", "f(s = 'a')")
    assert execution.endswith("[ANSWER]\nassert f(s = 'a') == ")
    assert "assert f(s = 'a') == ??" in execution
    repair = format_lcb_repair_prompt("Q", "", "print(0)", "The above code is incorrect.")
    assert repair == (
        "### Question\nQ\n\n### Answer\n\nprint(0)\n\n### Feedback\nThe above code is "
        "incorrect.\n\n### Fixed Answer\n\n"
    )
