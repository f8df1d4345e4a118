"""What the model is asked on try 1 and, after failing tests, on try 2.

Try 1 gives the instructions and the current solution files, with an addendum: keep the
names the tests use, standard library only, and how to write the edits. Try 2 shows the
trimmed test output of try 1 and the files as they stand, and asks for a fix without touching
the tests. Both are plain text, so that any causal LM (ours or a Hugging Face one) can
continue them; the samples file route takes responses written against the same prompts.
"""

from __future__ import annotations

from collections.abc import Mapping

from hrm_codegen.evaluation.polyglot.edits import EDIT_FORMATS
from hrm_codegen.evaluation.polyglot.exercises import Exercise

_FORMAT_RULES = {
    "whole": (
        "Answer with every file you change written out in full: a line holding the file's "
        "name, then a fenced code block with the complete new contents of that file."
    ),
    "diff": (
        "Answer with search/replace blocks: a line holding the file's name, then\n"
        "<<<<<<< SEARCH\n"
        "(lines copied exactly from the current file)\n"
        "=======\n"
        "(the lines that take their place)\n"
        ">>>>>>> REPLACE\n"
        "The first place where the SEARCH lines occur is replaced. Use as many blocks as needed."
    ),
}


def fence_for(text: str) -> str:
    """A backtick fence longer than any line of backticks in `text` (at least three), so that
    a file holding Markdown fences (a doc comment, a string) is one block, not cut short."""
    longest = max(
        (len(line) - len(line.lstrip("`")) for line in map(str.strip, text.splitlines())), default=0
    )
    return "`" * max(3, longest + 1)


def format_files(files: Mapping[str, str]) -> str:
    """Each file as its name on a line of its own, then its text in a fenced block."""
    blocks = []
    for name, text in files.items():
        fence = fence_for(text)
        blocks.append(f"{name}\n{fence}\n{text.rstrip()}\n{fence}\n")
    return "\n".join(blocks)


def _rules(edit_format: str) -> str:
    if edit_format not in EDIT_FORMATS:
        raise ValueError(f"--edit-format {edit_format!r} unknown; use one of {EDIT_FORMATS}")
    return _FORMAT_RULES[edit_format]


def first_prompt(exercise: Exercise, edit_format: str, files: Mapping[str, str]) -> str:
    """Try 1: the task, the stub files, and the rules of the answer."""
    names = ", ".join(exercise.solution_files)
    return (
        f"# Instructions\n\n{exercise.instructions.strip()}\n\n"
        f"# Files\n\n{format_files(files)}\n"
        f"Change the files above ({names}) so that they do what the instructions ask. Keep "
        "the names of the existing functions, classes and files: the tests call them by "
        "those names. Use the language's standard library only; no packages can be installed.\n"
        f"{_rules(edit_format)}\n\n# Response\n\n"
    )


def second_prompt(
    exercise: Exercise,
    edit_format: str,
    files: Mapping[str, str],
    test_output: str,
    *,
    first: str = "",
    first_response: str = "",
) -> str:
    """Try 2: the test output of try 1 and the files as try 1 left them.

    With `first`/`first_response` (try 1's prompt and answer) the conversation so far is
    kept in front, so a model sees what it already tried.
    """
    names = ", ".join(exercise.solution_files)
    history = f"{first}{first_response.rstrip()}\n\n" if first else ""
    return (
        f"{history}# Test results\n\n```\n{test_output.strip()}\n```\n\n"
        f"# Files now\n\n{format_files(files)}\n"
        f"The tests above failed. The tests are right and must stay as they are: fix the code "
        f"in {names} so that they pass.\n{_rules(edit_format)}\n\n# Response\n\n"
    )
