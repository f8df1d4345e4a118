"""Benchmark texts per benchmark (MBPP, HumanEval, Polyglot, LiveCodeBench) and their fingerprints,
as the corpus decontamination uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_corpus import benchmark_dir  # noqa: F401 (the shared benchmark fixture)

from hrm_codegen.data import load_benchmark
from hrm_codegen.data.corpus_filters import Decontaminator
from hrm_codegen.data.decontamination import (
    BENCHMARKS,
    benchmark_fingerprint,
    benchmark_texts_by_name,
    polyglot_exercise_files,
    polyglot_exercises,
)
from hrm_codegen.data.lcb import load_lcb_codegen
from hrm_codegen.data.prompts import format_prompt

FIXTURES = Path(__file__).parent / "fixtures"
REAL_POLYGLOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "polyglot-benchmark"
ENV_VARS = ("HRM_CODEGEN_POLYGLOT_DIR", "HRM_CODEGEN_DATA_DIR")

GO_EXAMPLE = """package wordcount

import (
\t"regexp"
\t"strings"
)

// Frequency maps each lower-cased word of the phrase to how often it occurs.
func WordCount(phrase string) Frequency {
\tcounts := Frequency{}
\tpattern := regexp.MustCompile(`[a-z0-9]+('[a-z0-9]+)?`)
\tfor _, word := range pattern.FindAllString(strings.ToLower(phrase), -1) {
\t\tcounts[word]++
\t}
\treturn counts
}
"""
GO_FILES = {
    ".meta/config.json": json.dumps(
        {
            "files": {
                "solution": ["word_count.go"],
                "test": ["word_count_test.go", "cases_test.go"],
                "example": [".meta/example.go"],
                "editor": ["go.mod"],
            }
        }
    ),
    ".meta/example.go": GO_EXAMPLE,
    "word_count.go": "package wordcount\n\ntype Frequency map[string]int\n\n"
    'func WordCount(phrase string) Frequency {\n\tpanic("Please implement WordCount")\n}\n',
    "word_count_test.go": 'package wordcount\n\nimport "testing"\n\nfunc TestWordCount(t '
    "*testing.T) {\n\tfor _, tc := range testCases {\n\t\tgot := WordCount(tc.input)\n"
    '\t\tif len(got) != len(tc.expected) {\n\t\t\tt.Fatalf("WordCount(%q) = %v, want %v", '
    "tc.input, got, tc.expected)\n\t\t}\n\t}\n}\n",
    "cases_test.go": "package wordcount\n\nvar testCases = []struct {\n\tinput string\n"
    '\texpected Frequency\n}{\n\t{"one fish two fish", Frequency{"one": 1, "fish": 2}},\n}\n',
    ".docs/instructions.md": "# Instructions\n\nCount how often every word occurs in a phrase, "
    "ignoring case and punctuation except apostrophes inside words.\n",
    "go.mod": "module wordcount\n\ngo 1.18\n",  # a build file: not a benchmark text
}
JAVA_FILES = {
    ".meta/config.json": json.dumps(
        {
            "files": {
                "solution": ["src/main/java/Anagram.java"],
                "test": ["src/test/java/AnagramTest.java"],
                "example": [".meta/src/reference/java/Anagram.java"],
            }
        }
    ),
    ".meta/src/reference/java/Anagram.java": "import java.util.Arrays;\n\nclass Anagram {\n"
    "    static boolean matches(String word, String candidate) {\n        char[] left = "
    "word.toLowerCase().toCharArray();\n        char[] right = candidate.toLowerCase()."
    "toCharArray();\n        Arrays.sort(left);\n        Arrays.sort(right);\n        return "
    "Arrays.equals(left, right) && !word.equalsIgnoreCase(candidate);\n    }\n}\n",
    "src/main/java/Anagram.java": "class Anagram {\n    static boolean matches(String word, "
    'String candidate) {\n        throw new UnsupportedOperationException("Delete this '
    'statement and write your own implementation.");\n    }\n}\n',
    "src/test/java/AnagramTest.java": "import org.junit.jupiter.api.Test;\n\nclass AnagramTest "
    '{\n    @Test\n    void detectsSimpleAnagram() {\n        assert Anagram.matches("listen", '
    '"silent");\n    }\n}\n',
    ".docs/instructions.md": "# Instructions\n\nGiven a target word and candidates, find the "
    "candidates that are anagrams of the target but not the word itself.\n",
    ".docs/instructions.append.md": "# Instructions append\n\nCompare words case-insensitively, "
    "so that Listen and Silent are anagrams of each other.\n",
}
# A corpus file that embeds the Go example's body in other code, re-spaced and re-indented.
GO_COPY = """package textstats

import (
    "regexp"
    "strings"
)

type Frequency map[string]int

// Summary reports word frequencies for a document.
func Summary(doc string) Frequency {
    return WordCount(doc)
}

func WordCount(phrase string) Frequency {
    counts := Frequency{}
    pattern := regexp.MustCompile(`[a-z0-9]+('[a-z0-9]+)?`)
    for _, word := range pattern.FindAllString(strings.ToLower(phrase), -1) { counts[word]++ }
    return counts
}
"""
GO_UNRELATED = """package geometry

import "math"

// Distance returns the Euclidean distance between two points of the plane.
func Distance(ax, ay, bx, by float64) float64 {
    return math.Hypot(bx-ax, by-ay)
}
"""


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def polyglot_dir(tmp_path: Path) -> Path:
    """A two-language, one-exercise-each Polyglot tree (Java's reference under .meta/src)."""
    root = tmp_path / "polyglot-benchmark"
    _write_tree(root / "go" / "exercises" / "practice" / "word-count", GO_FILES)
    _write_tree(root / "java" / "exercises" / "practice" / "anagram", JAVA_FILES)
    return root


@pytest.fixture
def no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No data-location variables, so each test sees only the paths it passes."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def test_polyglot_texts_hold_every_benchmark_file_and_flag_a_copy(polyglot_dir, no_data_env):
    texts = benchmark_texts_by_name(["polyglot"], polyglot_dir=str(polyglot_dir))["polyglot"]
    skipped = (".meta/config.json", "go.mod")
    expected = [text for name, text in GO_FILES.items() if name not in skipped]
    expected += [text for name, text in JAVA_FILES.items() if name != ".meta/config.json"]
    assert texts == sorted(expected)  # stubs, tests, examples, instructions; no config/build file
    decontaminator = Decontaminator(texts)
    assert decontaminator.is_contaminated(GO_COPY)
    assert not decontaminator.is_contaminated(GO_UNRELATED)


def test_polyglot_folder_comes_from_the_environment(polyglot_dir, monkeypatch, no_data_env):
    direct = benchmark_texts_by_name(["polyglot"], polyglot_dir=str(polyglot_dir))
    monkeypatch.setenv("HRM_CODEGEN_DATA_DIR", str(polyglot_dir.parent))
    assert benchmark_texts_by_name(["polyglot"]) == direct  # $DATA_DIR/polyglot-benchmark
    monkeypatch.setenv("HRM_CODEGEN_DATA_DIR", "/nonexistent")
    monkeypatch.setenv("HRM_CODEGEN_POLYGLOT_DIR", str(polyglot_dir))
    assert benchmark_texts_by_name(["polyglot"]) == direct  # the specific variable wins


def test_missing_polyglot_folder_says_where_it_looked_and_how_to_fix(tmp_path, no_data_env):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        benchmark_texts_by_name(["mbpp", "polyglot"], polyglot_dir=str(missing))
    message = str(error.value)
    assert "\n" not in message
    assert str(missing) in message
    assert "HRM_CODEGEN_POLYGLOT_DIR" in message and "drop polyglot" in message
    with pytest.raises(FileNotFoundError, match="neither .*HRM_CODEGEN_POLYGLOT_DIR"):
        benchmark_texts_by_name(["polyglot"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no <language>/exercises/practice"):
        benchmark_texts_by_name(["polyglot"], polyglot_dir=str(tmp_path / "empty"))


def test_a_file_named_in_the_config_must_exist_and_stay_inside(polyglot_dir, no_data_env):
    exercise = polyglot_dir / "go" / "exercises" / "practice" / "word-count"
    (exercise / "cases_test.go").unlink()
    with pytest.raises(FileNotFoundError, match="cases_test.go is named in"):
        benchmark_texts_by_name(["polyglot"], polyglot_dir=str(polyglot_dir))
    config = {"files": {"solution": ["../../secret.go"], "test": [], "example": []}}
    (exercise / ".meta" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="leaves the exercise"):
        polyglot_exercise_files(exercise)


def test_unknown_benchmark_lists_the_known_ones():
    with pytest.raises(ValueError) as error:
        benchmark_texts_by_name(["mbpp", "apps"])
    assert "'apps'" in str(error.value)
    assert all(name in str(error.value) for name in BENCHMARKS)
    with pytest.raises(TypeError, match="sequence of benchmark names"):
        benchmark_texts_by_name("mbpp")


def test_mbpp_and_humaneval_texts_are_prompts_and_solutions(benchmark_dir):
    names = ["mbpp", "mbpp_sanitized", "humaneval"]
    texts = benchmark_texts_by_name(names, data_path=str(benchmark_dir))
    assert list(texts) == names
    for name in names:
        tasks = load_benchmark(name, path=benchmark_dir)
        assert tasks
        expected = {format_prompt(task) for task in tasks} | {t.reference_solution for t in tasks}
        assert texts[name] == sorted(expected)
    # the request order does not change any benchmark's texts (nor, so, its fingerprint)
    again = benchmark_texts_by_name(names[::-1] + ["mbpp"], data_path=str(benchmark_dir))
    assert list(again) == names[::-1] and all(again[name] == texts[name] for name in names)


def test_livecodebench_texts_are_statements_and_starter_code(no_data_env, tmp_path):
    path = FIXTURES / "lcb" / "code_generation.jsonl"
    texts = benchmark_texts_by_name(["livecodebench"], lcb_path=str(path))["livecodebench"]
    problems = load_lcb_codegen(path)
    expected = {p.question_content for p in problems} | {p.starter_code for p in problems}
    assert texts == sorted(text for text in expected if text.strip())
    assert any(text.startswith("class Solution:") for text in texts)
    missing = tmp_path / "code_generation.jsonl"
    with pytest.raises(FileNotFoundError) as error:
        benchmark_texts_by_name(["livecodebench"], lcb_path=str(missing))
    message = str(error.value)
    assert "\n" not in message and str(missing) in message
    assert "drop livecodebench from decontaminate" in message


def test_fingerprint_is_per_benchmark_stable_and_sensitive():
    texts = {"mbpp": ["ab", "c"], "polyglot": ["x"]}
    fingerprint = benchmark_fingerprint(texts)
    assert list(fingerprint) == ["mbpp", "polyglot"]
    assert all(len(value) == 64 for value in fingerprint.values())
    assert benchmark_fingerprint({"mbpp": ["ab", "c"], "polyglot": ["x"]}) == fingerprint
    assert benchmark_fingerprint({"mbpp": ["a", "bc"]})["mbpp"] != fingerprint["mbpp"]
    assert benchmark_fingerprint({"mbpp": ["c", "ab"]})["mbpp"] != fingerprint["mbpp"]
    assert benchmark_fingerprint({"mbpp": ["ab", "c", "d"]})["mbpp"] != fingerprint["mbpp"]


def test_real_polyglot_benchmark_loads_all_225_exercises(no_data_env):
    root = REAL_POLYGLOT
    if not root.is_dir():
        pytest.skip(f"Polyglot benchmark not found at {root} (a checkout of aider's benchmark)")
    exercises = polyglot_exercises(root)
    assert len(exercises) == 225
    assert {folder.parents[2].name for folder in exercises} == {
        "cpp", "go", "java", "javascript", "python", "rust"
    }  # fmt: skip
    files = {folder: polyglot_exercise_files(folder) for folder in exercises}
    # every exercise gives a stub, a test, an example and its instructions
    assert all(len(paths) >= 4 for paths in files.values())
    texts = benchmark_texts_by_name(["polyglot"], polyglot_dir=str(root))["polyglot"]
    contents = {path.read_text(encoding="utf-8") for paths in files.values() for path in paths}
    assert len(texts) == len(contents)  # distinct texts: stubs repeat across some exercises
    instructions = {(folder / ".docs" / "instructions.md").read_text() for folder in exercises}
    assert instructions <= set(texts)
