"""The one definition of how a task becomes model input and what the model must produce.

Training (`BOS + format_prompt + format_target + EOS`) and evaluation (generate after
`format_prompt`, cut at `stop_sequences`, `extract_completion`, then `build_program`) both go
through these functions, so a template change can never make them disagree.

MBPP: a docstring holding the description, the test imports (sanitized variant) and the tests,
then the solution. HumanEval: the prompt (signature + docstring), then the body. Which of the two
a task takes is its benchmark's `function_completion` (`tasks.CODE_BENCHMARKS`), never its name. Line endings
are normalised to `\\n`; tabs are kept, since they are part of the program.
"""

from __future__ import annotations

from hrm_codegen.data.tasks import CodeTask

# Text form of the end-of-sequence token; generation may decode it when it does not stop on ids.
EOS_TEXT = "<|endoftext|>"
# None of these occur in any MBPP reference solution: each marks the start of test or driver
# code after the solution, or the next prompt.
MBPP_STOP = ('\n"""', "\nassert ", "\nif __name__", "\nprint(", EOS_TEXT)
# A HumanEval body ends at the first line back at column 0.
HUMANEVAL_STOP = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#", "\nassert ", EOS_TEXT)


def normalize_newlines(text: str) -> str:
    """`\\r\\n` and lone `\\r` become `\\n` (MBPP ships Windows line endings)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def format_prompt(task: CodeTask, tests: tuple[str, ...] | None = None) -> str:
    """The model input for `task`; `tests` overrides the order of tests shown (augmentation)."""
    if task.is_function_completion:
        return normalize_newlines(task.prompt)
    shown = task.tests if tests is None else tests
    lines = [normalize_newlines(task.prompt).strip(), *task.test_imports, *shown]
    body = "\n".join(normalize_newlines(line).rstrip() for line in lines)
    return f'"""\n{body}\n"""\n'


def format_target(task: CodeTask, solution: str | None = None) -> str:
    """What the model must produce after the prompt: the reference solution (or `solution`).

    Trailing whitespace at the very end is reduced to one newline, so every target ends the
    same way before EOS; nothing inside the code changes except line endings.
    """
    text = normalize_newlines(task.reference_solution if solution is None else solution)
    return text.rstrip() + "\n"


def stop_sequences(task: CodeTask) -> list[str]:
    """Strings that end a generation for this task (the EOS token also ends it)."""
    return list(HUMANEVAL_STOP if task.is_function_completion else MBPP_STOP)


def _truncate_at_stop(task: CodeTask, text: str) -> str:
    cut = len(text)
    for stop in stop_sequences(task):
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


def extract_completion(task: CodeTask, generated_text: str) -> str:
    """The completion `build_program` takes, from the text generated after the prompt.

    Stop sequences are applied again (generation may have run to its token limit). For
    HumanEval the body also ends at the first non-blank line that is not indented, which stop
    strings alone cannot express.
    """
    text = _truncate_at_stop(task, normalize_newlines(generated_text))
    if task.is_function_completion:
        lines = text.split("\n")
        for index, line in enumerate(lines):
            if index > 0 and line.strip() and not line[0].isspace():
                lines = lines[:index]
                break
        text = "\n".join(lines)
    return text.rstrip() + "\n"


# --------------------------------------------------------------------------------------------------
# LiveCodeBench, base-model templates: one worked example, then the problem, in LCB's
# `### Question / ### Starter Code / ### Answer` layout; the answer ends at the next `###`.

LCB_STOP = ("###", EOS_TEXT)
LCB_ANSWER_STOP = ("\n", "[/ANSWER]", "###", EOS_TEXT)  # one-line answers (prediction scenarios)

LCB_STDIN_EXAMPLE = {
    "question": (
        "You are given N integers A_1, ..., A_N. Print the sum of the even ones.\n\n"
        "Input\n\nThe input is given from Standard Input in the following format:\n"
        "N\nA_1 A_2 ... A_N\n\nOutput\n\nPrint the answer.\n\n"
        "Sample Input 1\n\n4\n1 2 3 4\n\nSample Output 1\n\n6"
    ),
    "starter_code": "",
    "answer": (
        "n = int(input())\nvalues = list(map(int, input().split()))\n"
        "print(sum(v for v in values[:n] if v % 2 == 0))"
    ),
}
LCB_FUNCTIONAL_EXAMPLE = {
    "question": (
        "You are given a string s of lowercase letters. Return the number of distinct letters "
        'that occur in s more than once.\n\nExample 1:\n\nInput: s = "abcab"\nOutput: 2'
    ),
    "starter_code": "class Solution:\n    def repeatedLetters(self, s: str) -> int:\n        ",
    "answer": (
        "class Solution:\n    def repeatedLetters(self, s: str) -> int:\n"
        "        return sum(1 for c in set(s) if s.count(c) > 1)"
    ),
}


def _lcb_block(question: str, starter_code: str, answer: str, with_starter: bool) -> str:
    text = f"### Question\n{question.strip()}\n\n"
    if with_starter:
        text += f"### Starter Code\n{starter_code.rstrip()}\n\n"
    text += "### Answer\n\n"
    return text + (f"{answer.strip()}\n\n" if answer else "")


def format_lcb_prompt(question: str, starter_code: str = "") -> str:
    """The base-model prompt of an LCB code generation problem (functional when it has starter
    code, stdin/stdout otherwise), with one example of the same kind first."""
    example = LCB_FUNCTIONAL_EXAMPLE if starter_code.strip() else LCB_STDIN_EXAMPLE
    with_starter = bool(starter_code.strip())
    shot = _lcb_block(example["question"], example["starter_code"], example["answer"], with_starter)
    return normalize_newlines(shot + _lcb_block(question, starter_code, "", with_starter))


def format_lcb_repair_prompt(
    question: str, starter_code: str, previous_code: str, feedback: str
) -> str:
    """Self-repair: the problem, the failed answer, the grader's feedback, then a new answer."""
    text = _lcb_block(question, starter_code, previous_code, bool(starter_code.strip()))
    text += f"### Feedback\n{feedback.strip()}\n\n### Fixed Answer\n\n"
    return normalize_newlines(text)


def extract_lcb_code(generated_text: str) -> str:
    """The program in a generated LCB answer: cut at `###`, and the inside of the first
    ```python fence when the model wrote one (LCB's extraction for base models: the text)."""
    text = normalize_newlines(generated_text)
    for stop in LCB_STOP:
        index = text.find(stop)
        if index != -1:
            text = text[:index]
    lines = text.split("\n")
    fences = [i for i, line in enumerate(lines) if line.strip().startswith("```")]
    if len(fences) >= 2:
        lines = lines[fences[0] + 1 : fences[1]]
    elif len(fences) == 1:
        lines = lines[fences[0] + 1 :] if fences[0] == 0 else lines[: fences[0]]
    return "\n".join(lines).strip() + "\n"


def format_lcb_call(function_name: str, input_lines: str) -> str:
    """`f(a, b)` from LCB's functional input (one JSON argument per line)."""
    return f"{function_name}({', '.join(normalize_newlines(input_lines).split(chr(10)))})"


_TESTOUTPUT_EXAMPLE = (
    "### Question\nReturn the largest of the numbers in nums.\n\n"
    "### Function\nclass Solution:\n    def largest(self, nums: List[int]) -> int:\n        \n\n"
    "### Test\nassert largest([3, 9, 4]) == 9\n\n"
)


def format_lcb_testoutput_prompt(
    question: str, starter_code: str, function_name: str, input_lines: str
) -> str:
    """Test output prediction: complete `assert f(args) == ` with the expected value."""
    call = format_lcb_call(function_name, input_lines)
    text = f"### Question\n{question.strip()}\n\n### Function\n{starter_code.rstrip()}\n\n"
    return normalize_newlines(_TESTOUTPUT_EXAMPLE + text + f"### Test\nassert {call} == ")


_EXECUTION_EXAMPLE = (
    "[PYTHON]\ndef twice(word: str) -> str:\n    return word + word\n"
    'assert twice(word = "ab") == ??\n[/PYTHON]\n[ANSWER]\nassert twice(word = "ab") == "abab"\n'
    "[/ANSWER]\n\n"
)


def format_exec_prompt(code: str, call: str) -> str:
    """The `exec` benchmark's prompt: the program and the open assertion, nothing else (its
    models are trained from scratch on exactly this format; the answer ends at a newline)."""
    return normalize_newlines(f"{code.rstrip()}\nassert {call} == ")


EXEC_ANSWER_STOP = ("\n", EOS_TEXT)


def format_lcb_execution_prompt(code: str, call: str) -> str:
    """Code execution: the program and a call; the answer is the returned value as a literal."""
    intro = (
        "Complete each assertion with the literal value the call returns when the code runs "
        "(no expressions, no function calls), even if the function looks wrong.\n\n"
    )
    task = f"[PYTHON]\n{code.rstrip()}\nassert {call} == ??\n[/PYTHON]\n[ANSWER]\nassert {call} == "
    return normalize_newlines(intro + _EXECUTION_EXAMPLE + task)
