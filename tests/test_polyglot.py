"""Polyglot end to end on the fixture exercises: real toolchains, real sandboxed test runs.

Every language whose toolchain is present here runs at least once in the default suite (its
example solution passes try 1); the two-try round trip runs by default for Python and, being
a few seconds per language, under `-m slow` for the compiled ones.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from hrm_codegen.evaluation.polyglot import (
    LANGUAGES,
    add_polyglot_arguments,
    evaluate_polyglot,
    first_prompt,
    load_exercises,
    model_responder,
    run_polyglot,
    solve_exercise,
    toolchain_status,
)
from hrm_codegen.evaluation.polyglot import benchmark as polyglot_benchmark
from hrm_codegen.evaluation.polyglot.benchmark import OutputDirMismatchError
from hrm_codegen.evaluation.polyglot.exercises import example_solution
from hrm_codegen.evaluation.polyglot.languages import exercise_toolchain_status
from hrm_codegen.evaluation.polyglot.prompts import format_files
from hrm_codegen.evaluation.polyglot.runner import Workspace
from hrm_codegen.evaluation.sandbox import bwrap_status

FIXTURES = Path(__file__).parent / "fixtures" / "polyglot"
SANDBOX = "bwrap" if bwrap_status()[0] is not None else "none-unsafe"

# A response that passes the first test of every fixture but not the rest (the tests behind
# xtest / #[ignore] / @Disabled / EXERCISM_RUN_ALL_TESTS), so it also proves they are enabled.
WRONG = {
    "python": {"leap.py": "def leap_year(year):\n    return year % 4 == 0\n"},
    "javascript": {"leap.js": "export const isLeap = (year) => year % 4 === 0;\n"},
    "cpp": {
        "leap.cpp": '#include "leap.h"\n\nnamespace leap {\n\n'
        "bool is_leap_year(int year) { return year % 4 == 0; }\n\n}  // namespace leap\n"
    },
    "rust": {"src/lib.rs": "pub fn is_leap_year(year: u64) -> bool {\n    year % 4 == 0\n}\n"},
    "go": {
        "leap.go": "package leap\n\nfunc IsLeapYear(year int) bool {\n\treturn year%4 == 0\n}\n"
    },
    "java": {
        "src/main/java/Leap.java": "class Leap {\n    boolean isLeapYear(int year) {\n"
        "        return year % 4 == 0;\n    }\n}\n"
    },
}


def exercise_of(language: str):
    (exercise,) = load_exercises(FIXTURES, languages=[language], exercises=["leap"])
    return exercise


def needs_toolchain(language: str) -> None:
    available, missing = toolchain_status(language)
    if not available:
        pytest.skip(f"{language} toolchain absent here: {missing}")


def whole(files: dict[str, str]) -> str:
    """A whole-file response holding `files`."""
    return "Here is the solution.\n\n" + format_files(files)


def answers(*responses: str | None):
    """A responder giving `responses` in order (try 1, try 2), recording the prompts."""
    prompts: list[str] = []

    def respond(exercise, number, prompt):
        prompts.append(prompt)
        return responses[number - 1] if number <= len(responses) else None

    respond.prompts = prompts
    return respond


@pytest.mark.parametrize("language", LANGUAGES)
def test_example_solution_passes_try_1(language: str) -> None:
    needs_toolchain(language)
    exercise = exercise_of(language)
    respond = answers(whole(example_solution(exercise)))
    line = solve_exercise(exercise, respond, edit_format="whole", sandbox=SANDBOX)
    assert line["tries"][0]["status"] == "passed", line["tries"][0]["output"]
    assert line["passed_1"] and line["passed_2"] and len(line["tries"]) == 1
    assert len(respond.prompts) == 1  # no try 2 after a pass


GUTTED_TESTS = {"leap_test.py": "def test_nothing():\n    assert True\n"}
FAILING_TESTS = {"leap_test.py": "def test_fails():\n    assert False\n"}


def _two_tries(language: str, test_edits: tuple[dict, dict] = ({}, {})) -> dict:
    needs_toolchain(language)
    exercise = exercise_of(language)
    respond = answers(
        whole({**WRONG[language], **test_edits[0]}),
        whole({**example_solution(exercise), **test_edits[1]}),
    )
    line = solve_exercise(exercise, respond, edit_format="whole", sandbox=SANDBOX)
    first, second = line["tries"]
    assert first["status"] == "failed" and not line["passed_1"], first["output"]
    assert second["status"] == "passed" and line["passed_2"], second["output"]
    # the try-2 prompt shows try 1's trimmed test output and the files as try 1 left them
    prompt_2 = respond.prompts[1]
    assert first["output"].strip() and first["output"].strip() in prompt_2
    assert next(iter(WRONG[language].values())).strip() in prompt_2
    assert str(exercise.path) not in first["output"] and "/tmp/" not in first["output"]
    return line


def test_python_wrong_then_right_passes_on_try_2_whatever_it_does_to_the_tests() -> None:
    # try 1 guts the tests (they would pass) and try 2 breaks them (they would fail): both
    # edits are dropped, the original tests run, and the verdicts are those of the solutions.
    line = _two_tries("python", (GUTTED_TESTS, FAILING_TESTS))
    assert [t["ignored_files"] for t in line["tries"]] == [["leap_test.py"], ["leap_test.py"]]
    assert all(t["well_formed"] for t in line["tries"])


@pytest.mark.slow
@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "python"])
def test_wrong_then_right_passes_on_try_2(language: str) -> None:
    _two_tries(language)


@pytest.mark.slow
def test_java_tests_written_with_assertj_run() -> None:
    (exercise,) = load_exercises(FIXTURES, exercises=["java/reverse-string"])
    available, missing = exercise_toolchain_status(exercise)
    if not available:
        pytest.skip(missing)
    stub = solve_exercise(
        exercise, answers(whole({n: exercise.read(n) for n in exercise.solution_files})),
        edit_format="whole", sandbox=SANDBOX,
    )  # fmt: skip
    assert stub["tries"][0]["status"] == "failed"
    assert "UnsupportedOperationException" in stub["tries"][0]["output"]
    line = solve_exercise(
        exercise, answers(whole(example_solution(exercise))), edit_format="whole", sandbox=SANDBOX
    )
    assert line["tries"][0]["status"] == "passed", line["tries"][0]["output"]
    assert "2 tests successful" in line["tries"][0]["output"]  # the @Disabled one ran too


def test_malformed_diffs_are_counted_with_their_reason(tmp_path: Path) -> None:
    exercise = exercise_of("python")
    not_found = "leap.py\n<<<<<<< SEARCH\ndef leap(year):\n=======\ndef f():\n>>>>>>> REPLACE\n"
    outside = "../helper.py\n<<<<<<< SEARCH\n=======\nX = 1\n>>>>>>> REPLACE\n"
    summary = evaluate_polyglot(
        [exercise],
        edit_format="diff",
        responses={("python/leap", 1): not_found, ("python/leap", 2): outside},
        sandbox=SANDBOX,
        output_dir=tmp_path,
        progress=False,
    )
    (line,) = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    first, second = line["tries"]
    assert first["status"] == second["status"] == "malformed"
    assert "was not found" in first["reason"] and "def leap(year):" in first["reason"]
    assert "'../helper.py'" in second["reason"] and "not one of the solution" in second["reason"]
    assert summary.errors["malformed_responses"] == 2
    assert summary.errors["malformed_search_not_found"] == 1
    assert summary.errors["malformed_file_outside_solution"] == 1
    assert summary.pass_at_k == {"pass_rate_1": 0.0, "pass_rate_2": 0.0, "percent_well_formed": 0.0}


def test_a_correct_diff_response_passes() -> None:
    needs_toolchain("python")
    exercise = exercise_of("python")
    diff = (
        "leap.py\n```python\n<<<<<<< SEARCH\n    pass\n=======\n"
        "    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n"
        ">>>>>>> REPLACE\n```\n"
    )
    line = solve_exercise(exercise, answers(diff), edit_format="diff", sandbox=SANDBOX)
    assert line["tries"][0]["status"] == "passed", line["tries"][0]["output"]


def test_a_hanging_solution_times_out() -> None:
    needs_toolchain("python")
    exercise = exercise_of("python")
    hang = whole({"leap.py": "import time\n\ndef leap_year(year):\n    time.sleep(60)\n"})
    line = solve_exercise(exercise, answers(hang), edit_format="whole", sandbox=SANDBOX, timeout=2)
    assert line["tries"][0]["status"] == "timeout"
    assert line["tries"][0]["duration"] < 15
    assert "time limit" in line["tries"][0]["output"]


@pytest.mark.skipif(SANDBOX != "bwrap", reason="bubblewrap is not usable here")
def test_responses_cannot_write_outside_their_copy(tmp_path: Path) -> None:
    exercise = exercise_of("python")
    target = tmp_path / "escaped.txt"
    source = exercise.path / "leap_test.py"
    before = source.read_text()
    sneaky = (
        "import pathlib\n\n"
        f"for path in ({str(target)!r}, {str(source)!r}):\n"
        "    try:\n        pathlib.Path(path).write_text('x')\n    except OSError:\n        pass\n\n"
        "def leap_year(year):\n    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)\n"
    )
    line = solve_exercise(
        exercise, answers(whole({"leap.py": sneaky})), edit_format="whole", sandbox="bwrap"
    )
    assert line["tries"][0]["status"] == "passed", line["tries"][0]["output"]
    assert not target.exists() and source.read_text() == before


def test_a_language_without_toolchain_is_unavailable_not_failed(monkeypatch) -> None:
    real = polyglot_benchmark.exercise_toolchain_status
    monkeypatch.setattr(
        polyglot_benchmark,
        "exercise_toolchain_status",
        lambda exercise: (
            (False, "rustc missing") if exercise.language == "rust" else real(exercise)
        ),
    )
    exercises = load_exercises(FIXTURES, languages=["python", "rust"])
    malformed = "no edits here"
    summary = evaluate_polyglot(
        exercises,
        responses={(e.task_id, 1): malformed for e in exercises},
        sandbox=SANDBOX,
        progress=False,
        workers=2,
    )
    assert summary.settings["workers"] == 2 and list(summary.per_task) == [
        "python/leap",
        "rust/leap",
    ]
    assert summary.counts["unavailable"] == 1 and summary.counts["failed"] == 1
    assert summary.unavailable == {"rust": "rustc missing"}
    assert summary.per_language["rust"]["exercises"] == 0
    assert summary.per_language["python"]["exercises"] == 1
    assert summary.pass_at_k["percent_well_formed"] == 0.0  # over python alone


def _options(tmp_path: Path, samples: Path | None, **overrides) -> argparse.Namespace:
    values = {
        "data": str(FIXTURES), "languages": "python", "exercises": None, "limit": None,
        "samples": samples and str(samples), "ckpt": None, "edit_format": "whole",
        "output": str(tmp_path / "out"), "test_timeout": 60.0, "sandbox": "auto",
        "no_progress": True,
    }  # fmt: skip
    return argparse.Namespace(**{**values, **overrides})


def test_run_polyglot_from_a_samples_file_writes_and_resumes(tmp_path: Path, monkeypatch) -> None:
    needs_toolchain("python")
    exercise = exercise_of("python")
    samples = tmp_path / "responses.jsonl"
    lines = [
        {"task_id": "python/leap", "try": 1, "response": "leap.py\n```\nbroken(\n```\n"},
        {"task_id": "python/leap", "try": 2, "response": whole(example_solution(exercise))},
    ]
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    summary = run_polyglot(_options(tmp_path, samples))
    out = tmp_path / "out"
    assert summary.pass_at_k == {"pass_rate_1": 0.0, "pass_rate_2": 1.0, "percent_well_formed": 1.0}
    assert summary.counts == {"passed_1": 0, "passed_2": 1, "failed": 0, "unavailable": 0}
    first = json.loads((out / "results.jsonl").read_text())["tries"][0]
    assert first["status"] == "failed" and "SyntaxError" in first["output"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["benchmark"] == "polyglot" and saved["per_language"]["python"]["pass_rate_2"] == 1
    assert [json.loads(x)["try"] for x in (out / "samples.jsonl").read_text().splitlines()] == [
        1,
        2,
    ]

    # a rerun runs no tests; other responses in the same folder are refused
    def no_runs(*args, **kwargs):
        raise AssertionError("a finished exercise was run again")

    monkeypatch.setattr(polyglot_benchmark, "run_tests", no_runs)
    again = run_polyglot(_options(tmp_path, samples))
    assert again.pass_at_k == summary.pass_at_k
    lines[0]["response"] = whole(example_solution(exercise))
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(OutputDirMismatchError, match="other responses"):
        run_polyglot(_options(tmp_path, samples))
    with pytest.raises(ValueError, match="either --samples"):
        run_polyglot(_options(tmp_path, samples, ckpt="x"))


def test_model_responses_are_generated_once_and_reused(tmp_path: Path) -> None:
    exercise = exercise_of("python")
    calls: list[int] = []

    def respond(exercise, number, prompt):
        calls.append(number)
        return "not an edit"

    for _ in range(2):
        summary = evaluate_polyglot(
            [exercise], respond=respond, output_dir=tmp_path, sandbox=SANDBOX, progress=False
        )
    assert calls == [1, 2] and summary.errors["malformed_responses"] == 2
    # a crash after generating: the responses in samples.jsonl are reused, not regenerated
    (tmp_path / "results.jsonl").unlink()
    evaluate_polyglot(
        [exercise], respond=respond, output_dir=tmp_path, sandbox=SANDBOX, progress=False
    )
    assert calls == [1, 2]
    with pytest.raises(OutputDirMismatchError, match="other settings"):
        evaluate_polyglot(
            [exercise], respond=respond, output_dir=tmp_path, edit_format="diff", progress=False
        )


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, gpt2_dir: Path) -> Path:
    """A random 1-layer transformer with the GPT-2 tokenizer (its prompts are long)."""
    import torch

    from hrm_codegen.model import TransformerConfig, TransformerForCausalLM
    from hrm_codegen.tokenization import load_tokenizer

    tokenizer = load_tokenizer(gpt2_dir)
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=len(tokenizer), max_seq_len=2048, hidden_size=32, num_heads=2, n_layers=1
    )
    folder = tmp_path_factory.mktemp("run") / "checkpoint"
    TransformerForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.mark.slow  # loading torch, a tokenizer and a model: seconds, for code the harness tests
def test_run_polyglot_with_a_model(tiny_checkpoint: Path, tmp_path: Path) -> None:
    options = _options(
        tmp_path, None, ckpt=str(tiny_checkpoint),
        model_type="transformer", max_new_tokens=4, device="cpu",
    )  # fmt: skip
    summary = run_polyglot(options)
    generated = [
        json.loads(x) for x in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()
    ]
    assert [(g["task_id"], g["try"]) for g in generated] == [("python/leap", 1), ("python/leap", 2)]
    assert summary.num_tasks == 1 and summary.settings["model_type"] == "transformer"
    assert summary.pass_at_k["pass_rate_2"] == 0.0  # random weights write no edits


def test_first_prompt_holds_instructions_stub_and_rules() -> None:
    exercise = exercise_of("python")
    files = {"leap.py": exercise.read("leap.py")}
    prompt = first_prompt(exercise, "diff", files)
    assert "divisible by 4" in prompt and "Return a `bool`." in prompt  # instructions.append
    assert "leap.py\n```\ndef leap_year(year):\n    pass\n```" in prompt
    assert "standard library" in prompt and "<<<<<<< SEARCH" in prompt
    assert "leap_test" not in prompt


def test_the_polyglot_flags_reach_run_polyglot(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_polyglot_arguments(parser)
    args = parser.parse_args(["--edit-format", "diff", "--languages", "python,go"])
    assert (args.edit_format, args.languages, args.test_timeout) == ("diff", "python,go", None)
    samples = tmp_path / "responses.jsonl"
    samples.write_text(json.dumps({"task_id": "python/leap", "response": "nothing"}) + "\n")
    options = _options(tmp_path, samples, **{**vars(args), "languages": "python"})
    summary = run_polyglot(options)
    assert summary.settings["edit_format"] == "diff" and summary.settings["test_timeout_s"] == 180
    assert summary.errors["missing_try_2"] == 1 and summary.counts["failed"] == 1
    with pytest.raises(ValueError, match="needs --data"):
        run_polyglot(_options(tmp_path, samples, data=None))


# --------------------------------------------------------------------------------------------------
# The runner itself (a shell, no toolchain)


def test_runner_caps_output_and_kills_the_whole_group_on_timeout() -> None:
    with Workspace(SANDBOX) as workspace:
        workspace.exercise.mkdir()
        flood = workspace.run("head -c 3000000 /dev/zero | tr '\\0' x", {}, output_limit=1000)
        assert flood.exit_code == 0 and flood.output_truncated and len(flood.output) == 1000
        start = time.monotonic()
        hung = workspace.run("sleep 30 & sleep 30; echo never", {}, timeout=1)
        assert hung.timed_out and hung.exit_code is None and "never" not in hung.output
        assert time.monotonic() - start < 10
        home = workspace.run('touch "$HOME/x" && echo "$HOME"', {"EXTRA": "1"})
        assert home.exit_code == 0 and home.output.strip().startswith(str(workspace.cache))


@pytest.mark.skipif(SANDBOX != "bwrap", reason="bubblewrap is not usable here")
def test_runner_sandbox_has_no_network_and_a_read_only_system() -> None:
    with Workspace("bwrap") as workspace:
        workspace.exercise.mkdir()
        seen = workspace.run(
            "sed -n '3,$p' /proc/net/dev | cut -d: -f1; "
            f"touch {FIXTURES}/x 2>/dev/null || echo read-only; touch ok && echo writable",
            {},
        )
    assert seen.output.split() == ["lo", "read-only", "writable"]  # loopback only
    assert not (FIXTURES / "x").exists()


def test_a_prompt_longer_than_the_model_context_fails_that_exercise_only() -> None:
    class Short:
        config = argparse.Namespace(max_seq_len=64)

    def tokenizer(text: str) -> dict:
        return {"input_ids": text.split()}

    exercise = exercise_of("python")
    respond = model_responder(Short(), tokenizer)
    summary = evaluate_polyglot([exercise], respond=respond, sandbox=SANDBOX, progress=False)
    assert summary.errors["exhausted_context_windows"] == 1
    assert summary.counts["failed"] == 1 and summary.pass_at_k["pass_rate_2"] == 0.0


def test_java_tests_keep_tiered_compilation_and_only_javac_runs_c1_alone() -> None:
    """C1-only JIT (-XX:TieredStopAtLevel=1) made a compute-heavy Java test take 2.3x the CPU
    time; it stays on javac (short-lived) and is gone from the JVM that runs the tests."""
    from hrm_codegen.evaluation.polyglot.languages import test_command, toolchain_status

    if not toolchain_status("java")[0]:
        pytest.skip(f"java toolchain unavailable: {toolchain_status('java')[1]}")
    (exercise,) = load_exercises(FIXTURES, exercises=["java/reverse-string"])
    with Workspace(SANDBOX, exercise.name) as workspace:
        workspace.exercise.mkdir()
        script = test_command(exercise, workspace).script
    javac, run = script.split(" && ")[1], script.split(" && ")[2]
    assert "javac" in javac and "-J-XX:TieredStopAtLevel=1" in javac
    assert "-jar" in run and "TieredStopAtLevel" not in run and "-XX:+UseSerialGC" in run
