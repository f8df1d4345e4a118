"""The benchmark texts a pretraining corpus is decontaminated against, per benchmark.

A model that saw a benchmark's prompt, tests or reference solution while pretraining can recall
rather than solve it, so every text it is graded on or could copy from is collected here:

- `mbpp`, `mbpp_sanitized`, `humaneval`: each task's prompt as the model sees it and its
  reference solution;
- `polyglot` (aider's Polyglot benchmark, 225 Exercism exercises in six languages): each
  exercise's stub (solution) files, test files, example (reference) solutions and instructions;
- `livecodebench`: the statement and starter code of every code generation problem.

The texts feed `corpus_filters.Decontaminator`; `benchmark_fingerprint` goes into the corpus
manifest so that a rebuild can tell whether it checked against the same benchmark text.
This module reads the Polyglot folder itself: `data/` must not depend on `evaluation/`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

BENCHMARKS = ("mbpp", "mbpp_sanitized", "humaneval", "polyglot", "livecodebench")
POLYGLOT_DIR_ENV = "HRM_CODEGEN_POLYGLOT_DIR"
DATA_DIR_ENV = "HRM_CODEGEN_DATA_DIR"
POLYGLOT_FOLDER = "polyglot-benchmark"
# Config keys of the files a model could have memorised: the stub it edits, the tests it is graded
# by and the reference solution. Build files and helpers (`editor`, `invalidator`) are left out.
POLYGLOT_FILE_KEYS = ("solution", "test", "example")
# The instructions the evaluation sends; the optional parts are included when present.
POLYGLOT_DOCS = ("introduction.md", "instructions.md", "instructions.append.md")


def _ordered(texts: Sequence[str]) -> list[str]:
    """Distinct non-blank texts, sorted: the order (and so the fingerprint) does not depend on
    file-system listing order or on which source a benchmark was loaded from."""
    return sorted({text for text in texts if text.strip()})


def _task_texts(name: str, data_path: str | None) -> list[str]:
    """MBPP/HumanEval prompts as the model sees them and reference solutions (the texts
    `corpus_filters.benchmark_texts` uses, per benchmark)."""
    from hrm_codegen.data import load_benchmark
    from hrm_codegen.data.prompts import format_prompt

    texts: list[str] = []
    for task in load_benchmark(name, path=data_path):
        texts += [format_prompt(task), task.reference_solution]
    return texts


def polyglot_root(polyglot_dir: str | os.PathLike | None = None) -> Path:
    """The Polyglot folder: `polyglot_dir`, else `$HRM_CODEGEN_POLYGLOT_DIR`, else
    `$HRM_CODEGEN_DATA_DIR/polyglot-benchmark`; the first one given must exist (a wrong explicit
    path is an error, not a silent fall-back to another copy)."""
    candidate: Path | None = None
    source = ""
    if polyglot_dir is not None:
        candidate, source = Path(polyglot_dir), "polyglot_dir"
    elif os.environ.get(POLYGLOT_DIR_ENV):
        candidate, source = Path(os.environ[POLYGLOT_DIR_ENV]), f"${POLYGLOT_DIR_ENV}"
    elif os.environ.get(DATA_DIR_ENV):
        candidate = Path(os.environ[DATA_DIR_ENV]) / POLYGLOT_FOLDER
        source = f"${DATA_DIR_ENV}/{POLYGLOT_FOLDER}"
    fix = (
        f"set {POLYGLOT_DIR_ENV} to the polyglot-benchmark checkout or drop polyglot from "
        "decontaminate"
    )
    if candidate is None:
        raise FileNotFoundError(
            f"Polyglot benchmark not found: no polyglot_dir given and neither ${POLYGLOT_DIR_ENV} "
            f"nor ${DATA_DIR_ENV} is set; {fix}"
        )
    candidate = candidate.expanduser()
    if not candidate.is_dir():
        raise FileNotFoundError(
            f"Polyglot benchmark not found: looked in {candidate} (from {source}); {fix}"
        )
    return candidate


def polyglot_exercises(root: str | os.PathLike) -> list[Path]:
    """Every exercise folder `<root>/<language>/exercises/practice/<slug>/`, sorted by language
    then slug; a root with none is an error (decontaminating against nothing checks nothing)."""
    root = Path(root)
    folders = sorted(
        folder
        for language in root.iterdir()
        if (language / "exercises" / "practice").is_dir()
        for folder in (language / "exercises" / "practice").iterdir()
        if folder.is_dir()
    )
    if not folders:
        raise FileNotFoundError(
            f"Polyglot benchmark not found: {root} holds no <language>/exercises/practice/<slug>/ "
            f"folders; set {POLYGLOT_DIR_ENV} to the polyglot-benchmark checkout (its top folder) "
            "or drop polyglot from decontaminate"
        )
    return folders


def polyglot_exercise_files(exercise: str | os.PathLike) -> list[Path]:
    """The stub, test and example files `.meta/config.json` names, then the instructions.

    A named file that is missing is an error: skipping it would leave that text unchecked.
    """
    exercise = Path(exercise)
    config_path = exercise / ".meta" / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{config_path} does not exist; is {exercise} a Polyglot (Exercism) exercise?"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_path} is not valid JSON ({error})") from None
    files = config.get("files") if isinstance(config, dict) else None
    if not isinstance(files, dict):
        raise ValueError(f"{config_path} needs a 'files' object (solution, test, example)")
    paths: list[Path] = []
    for key in POLYGLOT_FILE_KEYS:
        names = files.get(key, [])
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise ValueError(f"{config_path}: files.{key} must be a list of file names")
        for name in names:
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise ValueError(f"{config_path}: files.{key} entry {name!r} leaves the exercise")
            path = exercise / name
            if not path.is_file():
                raise FileNotFoundError(f"{path} is named in {config_path} but does not exist")
            paths.append(path)
    docs = exercise / ".docs"
    if not (docs / "instructions.md").is_file():
        raise FileNotFoundError(f"{docs / 'instructions.md'} does not exist")
    paths += [docs / doc for doc in POLYGLOT_DOCS if (docs / doc).is_file()]
    return paths


def _polyglot_texts(root: Path) -> list[str]:
    return [
        path.read_text(encoding="utf-8")
        for exercise in polyglot_exercises(root)
        for path in polyglot_exercise_files(exercise)
    ]


def _lcb_not_found(where: str, cause: str) -> FileNotFoundError:
    """One line saying where LCB data was looked for and how to fix it."""
    local = "$" + DATA_DIR_ENV + "/lcb/code_generation.jsonl"
    return FileNotFoundError(
        f"LiveCodeBench code generation data not found (looked in {where}: {cause}); pass "
        f"lcb_path, put it at {local} or drop livecodebench from decontaminate"
    )


def _livecodebench_texts(lcb_path: str | None) -> list[str]:
    """Statement and starter code of every LCB code generation problem (all releases' dates)."""
    from hrm_codegen.data.lcb import load_lcb_codegen

    try:
        problems = load_lcb_codegen(path=lcb_path)
    except FileNotFoundError as error:
        where = lcb_path or f"${DATA_DIR_ENV}/lcb and the hub"
        raise _lcb_not_found(where, str(error).replace("\n", " ")) from None
    texts: list[str] = []
    for problem in problems:
        texts += [problem.question_content, problem.starter_code]
    return texts


def benchmark_texts_by_name(
    names: Sequence[str],
    data_path: str | None = None,
    polyglot_dir: str | None = None,
    lcb_path: str | None = None,
) -> dict[str, list[str]]:
    """For each requested benchmark, the distinct texts a model could have memorised, sorted.

    `data_path` is where MBPP/HumanEval are read from (see `load_benchmark`); `polyglot_dir` and
    `lcb_path` locate Polyglot and LiveCodeBench. All names are checked before any data loads.
    """
    if isinstance(names, str):
        raise TypeError(f"names must be a sequence of benchmark names, not the string {names!r}")
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise ValueError(
            f"unknown benchmark(s) {', '.join(map(repr, unknown))} to decontaminate against; "
            f"use any of {', '.join(BENCHMARKS)}"
        )
    # A missing Polyglot folder or LCB file fails before the (slower) MBPP/HumanEval loads.
    root = polyglot_root(polyglot_dir) if "polyglot" in names else None
    if "livecodebench" in names and lcb_path is not None and not Path(lcb_path).exists():
        raise _lcb_not_found(lcb_path, "no such file or folder")
    texts_by_name: dict[str, list[str]] = {}
    for name in dict.fromkeys(names):
        if root is not None and name == "polyglot":
            texts = _polyglot_texts(root)
        elif name == "livecodebench":
            texts = _livecodebench_texts(lcb_path)
        else:
            texts = _task_texts(name, data_path)
        texts_by_name[name] = _ordered(texts)
    return texts_by_name


def benchmark_fingerprint(texts_by_name: dict[str, list[str]]) -> dict[str, str]:
    """Per benchmark a sha256 of its texts in order, each length-prefixed so that moving text
    from one entry to the next changes the hash."""
    fingerprints: dict[str, str] = {}
    for name, texts in texts_by_name.items():
        digest = hashlib.sha256()
        for text in texts:
            data = text.encode("utf-8")
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
        fingerprints[name] = digest.hexdigest()
    return fingerprints
