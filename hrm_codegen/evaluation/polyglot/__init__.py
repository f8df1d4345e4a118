"""aider's Polyglot benchmark on our harness: Exercism exercises in six languages, solved by
editing the stub files (`whole` files or search/replace `diff` blocks), with the test output
of a failed first try shown for a second. See docs/DESIGN.md (Evaluation, Polyglot)."""

from hrm_codegen.evaluation.polyglot.benchmark import (
    BENCHMARK,
    PolyglotSummary,
    TryResult,
    add_polyglot_arguments,
    evaluate_polyglot,
    model_responder,
    read_responses,
    run_polyglot,
    run_tests,
    solve_exercise,
)
from hrm_codegen.evaluation.polyglot.edits import (
    EDIT_FORMATS,
    MalformedResponseError,
    apply_response,
    parse_diff,
    parse_whole,
    replace_first,
)
from hrm_codegen.evaluation.polyglot.exercises import (
    LANGUAGES,
    Exercise,
    ExerciseError,
    load_exercise,
    load_exercises,
)
from hrm_codegen.evaluation.polyglot.fitting import FittedPrompt, PromptFitter
from hrm_codegen.evaluation.polyglot.languages import (
    install_polyglot_toolchains,
    toolchain_status,
)
from hrm_codegen.evaluation.polyglot.prompts import first_prompt, second_prompt
from hrm_codegen.evaluation.polyglot.runner import DEFAULT_TEST_TIMEOUT_S, trim_output

__all__ = [
    "BENCHMARK",
    "DEFAULT_TEST_TIMEOUT_S",
    "EDIT_FORMATS",
    "LANGUAGES",
    "Exercise",
    "ExerciseError",
    "FittedPrompt",
    "MalformedResponseError",
    "PolyglotSummary",
    "PromptFitter",
    "TryResult",
    "add_polyglot_arguments",
    "apply_response",
    "evaluate_polyglot",
    "first_prompt",
    "install_polyglot_toolchains",
    "load_exercise",
    "load_exercises",
    "model_responder",
    "parse_diff",
    "parse_whole",
    "read_responses",
    "replace_first",
    "run_polyglot",
    "run_tests",
    "second_prompt",
    "solve_exercise",
    "toolchain_status",
    "trim_output",
]
