"""The one definition of how a task becomes model input and what the model must produce.

Training (`BOS + format_prompt + format_target + EOS`) and evaluation (generate after
`format_prompt`, cut at `stop_sequences`, `extract_completion`, then `build_program`) both go
through these functions, so a template change can never make them disagree.

MBPP: a docstring holding the description, the test imports (sanitized variant) and the tests,
then the solution. HumanEval: the prompt (signature + docstring), then the body. Line endings
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
    if task.benchmark == "humaneval":
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
    return list(HUMANEVAL_STOP if task.benchmark == "humaneval" else MBPP_STOP)


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
    if task.benchmark == "humaneval":
        lines = text.split("\n")
        for index, line in enumerate(lines):
            if index > 0 and line.strip() and not line[0].isspace():
                lines = lines[:index]
                break
        text = "\n".join(lines)
    return text.rstrip() + "\n"
