"""Polyglot exercises read from a local folder in the Exercism layout.

One exercise is `<data>/<language>/exercises/practice/<name>/` with `.docs/instructions.md`
(plus `introduction.md` and `instructions.append.md` when present), `.meta/config.json`
naming the solution, test and example files, the stub solution files, the tests and whatever
helpers the tests need (a build file, a test header). Nothing is fetched: the folder is the
benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LANGUAGES = ("cpp", "go", "java", "javascript", "python", "rust")


class ExerciseError(ValueError):
    """An exercise folder is missing a file or holds a malformed one (the message names it)."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: where it lives and which of its files are what.

    File names are relative to `path` with forward slashes, as `.meta/config.json` gives them.
    """

    language: str
    name: str
    path: Path
    instructions: str
    solution_files: tuple[str, ...]
    test_files: tuple[str, ...]
    example_files: tuple[str, ...]

    @property
    def task_id(self) -> str:
        return f"{self.language}/{self.name}"

    def read(self, name: str) -> str:
        return (self.path / name).read_text(encoding="utf-8")


def _file_list(config: dict, key: str, config_path: Path, *, required: bool) -> tuple[str, ...]:
    files = config.get("files", {}).get(key, [])
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise ExerciseError(f"{config_path}: files.{key} must be a list of file names")
    if required and not files:
        raise ExerciseError(f"{config_path}: files.{key} is empty; name the exercise's {key} files")
    for name in files:
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise ExerciseError(f"{config_path}: files.{key} entry {name!r} leaves the exercise")
    return tuple(files)


def load_exercise(path: str | Path, language: str) -> Exercise:
    """The exercise in `path`, checked: every file its config names must exist."""
    path = Path(path)
    config_path = path / ".meta" / "config.json"
    if not config_path.is_file():
        raise ExerciseError(f"{config_path} does not exist; is {path} an Exercism exercise?")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ExerciseError(f"{config_path} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("files"), dict):
        raise ExerciseError(f"{config_path} needs a 'files' object (solution, test, example)")
    solution = _file_list(config, "solution", config_path, required=True)
    tests = _file_list(config, "test", config_path, required=True)
    example = _file_list(config, "example", config_path, required=False)
    for name in (*solution, *tests, *example):
        if not (path / name).is_file():
            raise ExerciseError(f"{path / name} is named in {config_path} but does not exist")
    docs = path / ".docs"
    if not (docs / "instructions.md").is_file():
        raise ExerciseError(f"{docs / 'instructions.md'} does not exist")
    parts = [
        (docs / part).read_text(encoding="utf-8")
        for part in ("introduction.md", "instructions.md", "instructions.append.md")
        if (docs / part).is_file()
    ]
    return Exercise(
        language=language,
        name=path.name,
        path=path,
        instructions="\n\n".join(part.strip() for part in parts) + "\n",
        solution_files=solution,
        test_files=tests,
        example_files=example,
    )


def load_exercises(
    data_dir: str | Path,
    *,
    languages: Sequence[str] | None = None,
    exercises: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[Exercise]:
    """Exercises under `data_dir`, sorted by language then name.

    `languages` keeps those languages; `exercises` keeps those names (`two-fer`) or task ids
    (`python/two-fer`); `limit` keeps the first N after that. A selection that names something
    absent is an error, not an empty run.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--data {root} is not a folder of Polyglot exercises")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit {limit}: give a positive number of exercises")
    present = sorted(p.name for p in root.iterdir() if (p / "exercises" / "practice").is_dir())
    if not present:
        raise ExerciseError(
            f"{root} holds no <language>/exercises/practice/ folders; point --data at the "
            "polyglot-benchmark checkout (its top folder)"
        )
    chosen = list(languages) if languages else present
    unknown = [language for language in chosen if language not in present]
    if unknown:
        raise ValueError(
            f"--languages {','.join(unknown)}: not in {root} (it has {', '.join(present)})"
        )
    found: list[Exercise] = []
    for language in chosen:
        practice = root / language / "exercises" / "practice"
        for folder in sorted(p for p in practice.iterdir() if p.is_dir()):
            found.append(load_exercise(folder, language))
    if exercises:
        wanted = set(exercises)
        found = [e for e in found if e.name in wanted or e.task_id in wanted]
        matched = {e.name for e in found} | {e.task_id for e in found}
        missing = sorted(wanted - matched)
        if missing:
            raise ValueError(f"--exercises {','.join(missing)}: no such exercise under {root}")
    if not found:
        raise ValueError(f"no exercises selected under {root}; check --languages/--exercises")
    return found[:limit] if limit else found


def exercise_files(exercise: Exercise) -> tuple[str, ...]:
    """Every file of the exercise folder (relative, forward slashes), .meta and .docs included."""
    return tuple(
        sorted(
            p.relative_to(exercise.path).as_posix() for p in exercise.path.rglob("*") if p.is_file()
        )
    )


def example_solution(exercise: Exercise) -> dict[str, str]:
    """The files a reference response writes: the solution files with the example's text in
    place of the stubs', plus the example's extra files.

    An example file stands for the solution file of the same base name (Java's
    `.meta/src/reference/java/Leap.java`), else for the only remaining solution file with its
    extension (`.meta/example.py` -> `leap.py`). Any other example file (Java's `Frame.java`
    beside `BowlingGame.java`) is a new file at its own name beside the solution files of its
    kind, as aider lets a response create it; one that the exercise already has (a read-only
    "editor" file such as connect's `Winner.java`) keeps the exercise's own. Rust's
    `.meta/Cargo-example.toml` is the reference's Cargo.toml (the crates it uses).
    """
    files = {name: exercise.read(name) for name in exercise.solution_files}
    if not exercise.example_files:
        raise ExerciseError(f"{exercise.path}/.meta/config.json names no files.example")

    def base(name: str) -> str:
        return name.rsplit("/", 1)[-1]

    taken: set[str] = set()
    rest: list[str] = []
    for example in exercise.example_files:
        same_name = [f for f in exercise.solution_files if base(f) == base(example)]
        if len(same_name) == 1:
            files[same_name[0]] = exercise.read(example)
            taken.add(same_name[0])
        else:
            rest.append(example)
    existing = set(exercise_files(exercise))
    for example in rest:
        suffix = Path(example).suffix
        same_kind = [f for f in exercise.solution_files if Path(f).suffix == suffix]
        free = [f for f in same_kind if f not in taken]
        if len(free) == 1:
            files[free[0]] = exercise.read(example)
            taken.add(free[0])
            continue
        if len(free) > 1:
            raise ExerciseError(
                f"{exercise.path}: cannot tell which solution file {example} stands for "
                f"(candidates {free})"
            )
        if not same_kind:
            raise ExerciseError(
                f"{exercise.path}: cannot tell where example file {example} goes (no solution "
                f"file ends in {suffix or 'nothing'}: {list(exercise.solution_files)})"
            )
        folder = same_kind[0].rpartition("/")[0]
        target = f"{folder}/{base(example)}" if folder else base(example)
        if target not in existing:
            files[target] = exercise.read(example)
    cargo_example = exercise.path / ".meta" / "Cargo-example.toml"
    if "Cargo.toml" in files and cargo_example.is_file():
        files["Cargo.toml"] = cargo_example.read_text(encoding="utf-8")
    return files
