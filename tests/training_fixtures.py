"""Small training fixtures shared by the test modules: a tiny MBPP file and a tiny code corpus.

The MBPP fixture is 48 small tasks in the original MBPP JSONL schema, task ids in the validation
and train ranges, so training tests need neither ../shared nor the hub.
"""

from __future__ import annotations

import json
import shutil
import sysconfig
from pathlib import Path

# (description, code, tests) templates; every code passes its tests.
TEMPLATES = [
    (
        "Write a function to add {k} to a number.",
        "def add_{k}(x):\r\n\treturn x + {k}",
        lambda k: [f"assert add_{k}(1) == {1 + k}", f"assert add_{k}(10) == {10 + k}"],
    ),
    (
        "Write a function to multiply a number by {k}.",
        "def times_{k}(x):\r\n\treturn x * {k}",
        lambda k: [f"assert times_{k}(3) == {3 * k}", f"assert times_{k}(0) == 0"],
    ),
    (
        "Write a function to check whether a number is divisible by {k}.",
        "def divisible_by_{k}(n):\r\n\treturn n % {k} == 0",
        lambda k: [
            f"assert divisible_by_{k}({3 * k}) == True",
            f"assert divisible_by_{k}({3 * k + 1}) == False",
        ],
    ),
    (
        "Write a function to repeat a string {k} times.",
        "def repeat_{k}(s):\r\n\treturn s * {k}",
        lambda k: [f"assert repeat_{k}('ab') == {'ab' * k!r}"],
    ),
]


def write_tiny_mbpp(path: Path) -> Path:
    """48 tasks: ids 511-518 (validation split), 601-640 (train split)."""
    rows = []
    for k in range(2, 14):
        for text, code, tests in TEMPLATES:
            n = len(rows)
            rows.append(
                {
                    "text": text.format(k=k),
                    "code": code.format(k=k),
                    "task_id": 511 + n if n < 8 else 593 + n,
                    "test_setup_code": "",
                    "test_list": tests(k),
                    "challenge_test_list": [],
                }
            )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


STDLIB_MODULES = ("bisect", "colorsys", "keyword", "textwrap", "string", "heapq", "glob", "fnmatch")


def copy_stdlib_modules(folder: Path) -> Path:
    """The eight small standard-library modules, copied into `folder` (a study's source dirs)."""
    folder.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_MODULES:
        shutil.copy(stdlib / f"{name}.py", folder / f"{name}.py")
    return folder


def build_tiny_corpus(root: Path, tokenizer_dir: Path, val_fraction: float = 0.5) -> Path:
    """Token shards of eight small standard-library modules (ASCII text), split half and half."""
    from hrm_codegen.data.corpus import build_corpus

    sources = root / "src"
    sources.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_MODULES:
        shutil.copy(stdlib / f"{name}.py", sources / f"{name}.py")
    corpus = root / "corpus"
    build_corpus(
        corpus,
        tokenizer=tokenizer_dir,
        source_dirs=[sources],
        decontaminate=False,
        val_fraction=val_fraction,
        workers=1,
        progress=False,
    )
    return corpus
