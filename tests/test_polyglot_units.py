"""Polyglot's pure parts: exercise loading, the two edit formats, output trimming, metrics.

No toolchain and no sandbox here; every test is a few milliseconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hrm_codegen.evaluation.polyglot import (
    ExerciseError,
    MalformedResponseError,
    apply_response,
    evaluate_polyglot,
    install_polyglot_toolchains,
    load_exercises,
    parse_diff,
    parse_whole,
    read_responses,
    replace_first,
    second_prompt,
    trim_output,
)
from hrm_codegen.evaluation.polyglot.benchmark import summarize
from hrm_codegen.evaluation.polyglot.exercises import example_solution
from hrm_codegen.evaluation.polyglot.runner import resolve_sandbox

FIXTURES = Path(__file__).parent / "fixtures" / "polyglot"


# --------------------------------------------------------------------------------------------------
# Exercises


def test_fixture_exercises_load_in_the_exercism_layout() -> None:
    exercises = load_exercises(FIXTURES)
    assert [e.task_id for e in exercises] == [
        "cpp/leap", "go/leap", "java/leap", "java/reverse-string", "javascript/leap",
        "python/leap", "rust/leap",
    ]  # fmt: skip
    java = next(e for e in exercises if e.task_id == "java/leap")
    assert java.solution_files == ("src/main/java/Leap.java",)
    assert java.test_files == ("src/test/java/LeapTest.java",)
    assert "return year % 4 == 0" in example_solution(java)["src/main/java/Leap.java"]
    rust = next(e for e in exercises if e.language == "rust")
    solution = example_solution(rust)
    assert "year % 400" in solution["src/lib.rs"] and "[package]" in solution["Cargo.toml"]
    python = next(e for e in exercises if e.language == "python")
    assert python.instructions.endswith("Return a `bool`.\n")  # instructions.append.md


def test_selection_flags() -> None:
    assert [e.task_id for e in load_exercises(FIXTURES, languages=["go", "rust"])] == [
        "go/leap",
        "rust/leap",
    ]
    assert [e.task_id for e in load_exercises(FIXTURES, exercises=["python/leap"])] == [
        "python/leap"
    ]
    assert len(load_exercises(FIXTURES, exercises=["leap"], limit=2)) == 2
    assert [e.task_id for e in load_exercises(FIXTURES, languages=["java"])] == [
        "java/leap",
        "java/reverse-string",
    ]
    with pytest.raises(ValueError, match="--languages cobol: not in"):
        load_exercises(FIXTURES, languages=["cobol"])
    with pytest.raises(ValueError, match="--exercises bob: no such exercise"):
        load_exercises(FIXTURES, exercises=["bob"])
    with pytest.raises(ValueError, match="--limit 0"):
        load_exercises(FIXTURES, limit=0)
    with pytest.raises(FileNotFoundError, match="--data"):
        load_exercises(FIXTURES / "missing")


def _copy_python(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(FIXTURES / "python", root / "python")
    return root / "python" / "exercises" / "practice" / "leap"


def test_broken_exercises_are_errors_naming_the_file(tmp_path: Path) -> None:
    folder = _copy_python(tmp_path)
    config = folder / ".meta" / "config.json"
    config.write_text("{not json")
    with pytest.raises(ExerciseError, match=r"config\.json is not valid JSON"):
        load_exercises(tmp_path / "data")
    config.write_text(json.dumps({"files": {"solution": ["leap.py"], "test": ["gone_test.py"]}}))
    with pytest.raises(ExerciseError, match=r"gone_test\.py is named in .*config\.json"):
        load_exercises(tmp_path / "data")
    config.write_text(json.dumps({"files": {"solution": ["../x.py"], "test": ["leap_test.py"]}}))
    with pytest.raises(ExerciseError, match="leaves the exercise"):
        load_exercises(tmp_path / "data")
    config.unlink()
    with pytest.raises(ExerciseError, match=r"config\.json does not exist"):
        load_exercises(tmp_path / "data")
    with pytest.raises(ExerciseError, match="no <language>/exercises/practice/"):
        load_exercises(folder)


# --------------------------------------------------------------------------------------------------
# whole


def test_whole_takes_the_file_name_from_the_line_above_the_fence() -> None:
    response = "Sure.\n\n**src/lib.rs**\n```rust\nfn a() {}\n```\n\nCargo.toml\n```\n[x]\n```\n"
    edits = parse_whole(response, ["src/lib.rs", "Cargo.toml"])
    assert [(e.file, e.replace) for e in edits] == [
        ("src/lib.rs", "fn a() {}\n"),
        ("Cargo.toml", "[x]\n"),
    ]
    # one solution file: a block without a name is that file; with two it is malformed
    assert parse_whole("```\nx = 1\n```", ["a.py"])[0].file == "a.py"
    with pytest.raises(MalformedResponseError, match="no file name"):
        parse_whole("Here you go:\n```\nx = 1\n```", ["a.py", "b.py"])
    with pytest.raises(MalformedResponseError, match="never closes"):
        parse_whole("a.py\n```\nx = 1\n", ["a.py"])
    with pytest.raises(MalformedResponseError, match="no file name followed by"):
        parse_whole("I cannot help with that.", ["a.py"])


def test_a_longer_fence_holds_a_shorter_one() -> None:
    response = "README.md\n````\n```\ncode\n```\n````\n"
    assert parse_whole(response, ["README.md"])[0].replace == "```\ncode\n```\n"


# --------------------------------------------------------------------------------------------------
# diff


def block(name: str, search: str, replace: str, width: int = 7) -> str:
    return f"{name}\n{'<' * width} SEARCH\n{search}{'=' * width}\n{replace}{'>' * width} REPLACE\n"


@pytest.mark.parametrize("width", [5, 7, 9])
def test_diff_markers_of_5_to_9_characters(width: int) -> None:
    (edit,) = parse_diff(block("a.py", "x = 1\n", "x = 2\n", width))
    assert (edit.file, edit.search, edit.replace) == ("a.py", "x = 1\n", "x = 2\n")


@pytest.mark.parametrize("width", [4, 10])
def test_diff_markers_outside_5_to_9_are_not_blocks(width: int) -> None:
    with pytest.raises(MalformedResponseError):
        parse_diff(block("a.py", "x = 1\n", "x = 2\n", width))


def test_diff_file_names_above_fences_and_shared_by_consecutive_blocks() -> None:
    response = (
        "src/a.py\n```python\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n"
        "<<<<<<< SEARCH\ny = 1\n=======\ny = 2\n>>>>>>> REPLACE\n```\n\n"
        "b.py\n```\n<<<<<<< SEARCH\n=======\nz = 3\n>>>>>>> REPLACE\n```\n"
    )
    assert [(e.file, e.search) for e in parse_diff(response)] == [
        ("src/a.py", "x = 1\n"),
        ("src/a.py", "y = 1\n"),
        ("b.py", ""),
    ]


def test_broken_diff_blocks_say_what_is_wrong() -> None:
    with pytest.raises(MalformedResponseError, match="no ======="):
        parse_diff("a.py\n<<<<<<< SEARCH\nx\n>>>>>>> REPLACE\n")
    with pytest.raises(MalformedResponseError, match="no >>>>>>> REPLACE"):
        parse_diff("a.py\n<<<<<<< SEARCH\nx\n=======\ny\n")
    with pytest.raises(MalformedResponseError, match="no file name"):
        parse_diff("<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n")
    with pytest.raises(MalformedResponseError, match="outside a SEARCH block"):
        parse_diff("a.py\n=======\n")


def test_replace_first_exact_then_ignoring_leading_whitespace() -> None:
    text = "a = 1\nb = 2\na = 1\n"
    assert replace_first(text, "a = 1\n", "a = 9\n") == "a = 9\nb = 2\na = 1\n"  # first only
    code = "class A:\n    def f(self):\n        return 1\n"
    # quoted without the class's indentation: matched, and the replacement re-indented
    assert replace_first(code, "def f(self):\n    return 1\n", "def f(self):\n    return 2\n") == (
        "class A:\n    def f(self):\n        return 2\n"
    )
    # exact beats whitespace-insensitive even if the latter would match earlier
    assert replace_first("  x\nx\n", "x\n", "y\n") == "  y\nx\n"
    assert replace_first("no newline at end", "end\n", "END\n") == "no newline at END\n"
    assert replace_first(code, "return 3\n", "return 4\n") is None


def test_apply_response_in_order_and_its_malformed_cases() -> None:
    files = {"leap.py": "def leap_year(year):\n    pass\n"}
    two_steps = block("leap.py", "    pass\n", "    return step_1\n") + block(
        "leap.py", "    return step_1\n", "    return year % 4 == 0\n"
    )
    applied = apply_response(two_steps, "diff", files, ["leap_test.py"])
    assert applied.files == {"leap.py": "def leap_year(year):\n    return year % 4 == 0\n"}
    with pytest.raises(MalformedResponseError, match="was not found in the file") as error:
        apply_response(block("leap.py", "    return 0\n", "x\n"), "diff", files)
    assert "return 0" in error.value.reason
    with pytest.raises(MalformedResponseError, match="'../other.py', which is not one of"):
        apply_response(block("../other.py", "", "x\n"), "diff", files)
    # an edit of a test file is dropped, whatever the format
    edit_test = block("leap_test.py", "", "x\n") + block("leap.py", "    pass\n", "    return 1\n")
    applied = apply_response(edit_test, "diff", files, ["leap_test.py"])
    assert applied.ignored_files == ["leap_test.py"] and "return 1" in applied.files["leap.py"]
    assert apply_response("leap.py\n```\nX = 1\n```\n", "whole", files).files == {
        "leap.py": "X = 1\n"
    }
    with pytest.raises(ValueError, match="--edit-format 'udiff' unknown"):
        apply_response("", "udiff", files)


def test_a_base_name_finds_a_nested_solution_file() -> None:
    files = {"src/main/java/Leap.java": "class Leap {}\n"}
    applied = apply_response("Leap.java\n```java\nclass Leap { }\n```\n", "whole", files)
    assert applied.files == {"src/main/java/Leap.java": "class Leap { }\n"}


# --------------------------------------------------------------------------------------------------
# Output, prompts, metrics, samples files


def test_trim_output_drops_timings_paths_and_colour() -> None:
    raw = (
        "\x1b[31mFAILED\x1b[0m /tmp/hrm-polyglot-x/exercise/leap_test.py::test_a\n"
        "test result: FAILED. finished in 0.02s\nTime:        1.234 s\nok  leap\t0.003s\n"
        "Test run finished after 87 ms\n"
    )
    text = trim_output(raw, {"/tmp/hrm-polyglot-x/exercise": "."})
    assert text == (
        "FAILED ./leap_test.py::test_a\ntest result: FAILED. finished in <time>\n"
        "Time:        <time>\nok  leap\t<time>\nTest run finished after <time>"
    )
    long = trim_output("\n".join(f"line {i}" for i in range(5000)), limit=1000)
    assert len(long) < 1100 and "line 0\n" in long and long.endswith("line 4999")
    assert "characters cut" in long


def test_second_prompt_shows_the_output_and_the_current_files() -> None:
    (exercise,) = load_exercises(FIXTURES, languages=["python"])
    prompt = second_prompt(
        exercise, "whole", {"leap.py": "def leap_year(y):\n    return 1\n"}, "AssertionError: 1"
    )
    assert "AssertionError: 1" in prompt and "return 1" in prompt
    assert "tests are right" in prompt and prompt.endswith("# Response\n\n")


def _line(language: str, status: str, p1: bool, p2: bool, well_formed: bool = True) -> dict:
    return {
        "task_id": f"{language}/{status}{p1}{p2}{well_formed}", "language": language,
        "status": status, "passed_1": p1, "passed_2": p2, "well_formed": well_formed,
        "reason": "no toolchain" if status == "unavailable" else "", "tries": [],
    }  # fmt: skip


def test_rates_per_language_and_overall_leave_out_unavailable() -> None:
    lines = [
        _line("python", "passed", True, True),
        _line("python", "passed", False, True),
        _line("python", "failed", False, False, well_formed=False),
        _line("python", "failed", False, False),
        _line("go", "unavailable", False, False),
    ]
    summary = summarize(lines, {}, {})
    assert summary.pass_at_k == {
        "pass_rate_1": 0.25,
        "pass_rate_2": 0.5,
        "percent_well_formed": 0.75,
    }
    assert summary.per_language["go"] == {
        "pass_rate_1": 0.0, "pass_rate_2": 0.0, "percent_well_formed": 0.0, "exercises": 0,
        "unavailable": 1,
    }  # fmt: skip
    assert summary.counts == {"passed_1": 1, "passed_2": 1, "failed": 2, "unavailable": 1}
    assert summary.unavailable == {"go": "no toolchain"}
    assert summary.to_dict()["per_language"]["python"]["exercises"] == 4


def test_samples_files_of_responses(tmp_path: Path) -> None:
    path = tmp_path / "responses.jsonl"
    path.write_text('{"task_id": "python/leap", "response": "x"}\n')
    assert read_responses(path) == {("python/leap", 1): "x"}  # try defaults to 1
    path.write_text('{"task_id": "leap", "try": 1, "response": "x"}\n')
    with pytest.raises(ValueError, match="'<language>/<exercise>'"):
        read_responses(path)
    path.write_text('{"task_id": "python/leap", "try": 3, "response": "x"}\n')
    with pytest.raises(ValueError, match="try must be 1 or 2"):
        read_responses(path)
    path.write_text('{"task_id": "python/leap", "response": "x"}\n' * 2)
    with pytest.raises(ValueError, match="a second response for python/leap try 1"):
        read_responses(path)


def test_toolchain_setup_is_idempotent_and_names_a_missing_npm(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    (ready / "node_modules" / "jest" / "bin").mkdir(parents=True)
    (ready / "node_modules" / "jest" / "bin" / "jest.js").write_text("")
    assert install_polyglot_toolchains(ready, npm="no-such-npm") == ready  # nothing to do
    with pytest.raises(FileNotFoundError, match="no-such-npm not found"):
        install_polyglot_toolchains(tmp_path / "fresh", npm="no-such-npm")


def test_unknown_sandbox_and_edit_format_are_refused() -> None:
    with pytest.raises(ValueError, match="--sandbox 'docker' unknown"):
        resolve_sandbox("docker")
    (exercise,) = load_exercises(FIXTURES, languages=["python"])
    with pytest.raises(ValueError, match="--edit-format 'udiff' unknown"):
        evaluate_polyglot([exercise], edit_format="udiff", responses={})
