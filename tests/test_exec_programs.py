"""The `exec` benchmark: a seeded program generator, answers and step counts from the sandbox,
every dropped program counted, deterministic splits by difficulty, and its grading by bucket."""

from __future__ import annotations

import ast
import json
import random

import pytest

from hrm_codegen.data.exec_programs import (
    ExecProgram,
    bucket_of,
    generate_program,
    generate_programs,
    load_exec_problems,
    load_exec_tasks,
)
from hrm_codegen.evaluation.exec_build import (
    build_exec_benchmark,
    measure_programs,
)
from hrm_codegen.evaluation.sandbox import bwrap_status, run_programs

SANDBOX = "bwrap" if bwrap_status()[0] is not None else "none-unsafe"
SIZES = {"train": 40, "validation": 4, "test": 4, "test_hard": 8}


def test_generation_is_a_pure_function_of_the_seed():
    first = list(generate_programs(7, 300))
    assert first == list(generate_programs(7, 300))
    assert first != list(generate_programs(8, 300))
    assert len({p.text for p in first}) > 290  # almost never the same program twice
    for program in first:
        tree = ast.parse(program.text)  # every program is valid Python
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert "f" in names and names <= {"f", "g"}
        assert program.call.startswith("f(") and "import" not in program.code
        ast.literal_eval(program.call[2:-1])  # the input is a literal


def test_the_answer_is_a_variable_the_body_changed():
    rng = random.Random(3)
    for _ in range(200):
        program = generate_program(rng)
        returned = program.code.rstrip().splitlines()[-1].strip()
        assert returned.startswith("return ") and returned != "return x"


def test_steps_and_drops_are_what_the_sandbox_saw():
    counting = "def f(x):\n    v0 = 0\n    for i in range(x):\n        v0 += i\n    return v0\n"
    helper = "def g(a):\n    return [a * y for y in range(2)]\ndef f(x):\n    return g(x)\n"
    programs = [
        ExecProgram(counting, "f(3)"),  # v0 = 0; for x4; v0 += i x3; return: 9 line events
        ExecProgram(counting, "f(0)"),  # v0 = 0; for; return: 3
        ExecProgram(helper, "f(2)"),  # f's return, g's return, the comprehension's 3 lines: 5
        ExecProgram("def f(x):\n    return 1 // x\n", "f(0)"),
        ExecProgram("def f(x):\n    while True:\n        x += 1\n", "f(0)"),
        ExecProgram("def f(x):\n    return {str(i) * 3 for i in range(60)}\n", "f(0)"),
        ExecProgram(
            "class C:\n    def __repr__(s):\n        return 'C()'\ndef f(x):\n    return C()\n",
            "f(0)",
        ),  # fmt: skip
        ExecProgram("def f(x):\n    return list(range(x))\n", "f(100)"),
    ]
    got = measure_programs(programs, timeout=2, backend=SANDBOX, progress=False)
    assert [(m.steps, m.output) for m in got[:3]] == [(9, "3"), (3, "0"), (5, "[0, 2]")]
    # set order follows the hash seed, which differs between the two runs' interpreters
    assert [m.drop for m in got[3:]] == [
        "raised",
        "timeout",
        "nondeterministic",
        "not_a_literal",
        "output_too_long",
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("exec") / "bench"
    manifest = build_exec_benchmark(
        out, seed=1, sizes=SIZES, train_max_steps=32, max_steps=256, batch=150,
        backend=SANDBOX, log=lambda _: None,
    )  # fmt: skip
    return out, manifest


def test_the_build_fills_every_split_by_its_step_rule(built):
    out, manifest = built
    for split, size in SIZES.items():
        tasks = load_exec_tasks(out, split)
        assert len(tasks) == size == manifest["splits"][split]["tasks"]
        for task in tasks:
            assert (task.steps > 32) == (split == "test_hard") and task.steps <= 256
    texts = [t.code + t.call for s in SIZES for t in load_exec_tasks(out, s)]
    assert len(set(texts)) == len(texts)  # no program in two splits
    kept = sum(SIZES.values())
    assert manifest["generated"] == kept + sum(manifest["dropped"].values())
    assert manifest["settings"]["generator"] == "exec-gen-1"


def test_every_answer_is_what_python_prints_for_the_call(built):
    out, _ = built
    tasks = load_exec_tasks(out, "test_hard") + load_exec_tasks(out, "test")
    programs = [f"{t.code}\nprint(repr({t.call}))\n" for t in tasks]
    results = run_programs(programs, backend=SANDBOX, progress=False)
    assert [r.stdout_tail.splitlines()[0] for r in results] == [t.output for t in tasks]


def test_the_same_arguments_build_the_same_bytes(built, tmp_path):
    out, manifest = built
    again = build_exec_benchmark(
        tmp_path / "again", seed=1, sizes=SIZES, train_max_steps=32, max_steps=256, batch=150,
        backend=SANDBOX, log=lambda _: None,
    )  # fmt: skip
    assert again["fingerprint"] == manifest["fingerprint"]
    assert (tmp_path / "again" / "train.jsonl").read_bytes() == (out / "train.jsonl").read_bytes()


def test_bad_sizes_and_step_limits_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="name splits among"):
        build_exec_benchmark(tmp_path / "x", sizes={"dev": 3})
    with pytest.raises(ValueError, match="0 < train_max_steps < max_steps"):
        build_exec_benchmark(tmp_path / "x", sizes={"train": 3}, train_max_steps=64, max_steps=8)
    with pytest.raises(FileNotFoundError, match="build_exec_benchmark.py"):
        load_exec_problems(tmp_path, "test")


def test_buckets_and_grading_by_difficulty(built, tmp_path):
    from hrm_codegen.evaluation.cli import main

    assert [bucket_of(s, (8, 16)) for s in (1, 8, 9, 16, 17)] == ["<=8", "<=8", "<=16", "<=16", ">16"]  # fmt: skip
    out, manifest = built
    problems = load_exec_problems(out, "test_hard")
    assert {p.difficulty for p in problems} <= set(manifest["splits"]["test_hard"]["buckets"])
    samples = tmp_path / "samples.jsonl"
    with samples.open("w") as f:
        for i, p in enumerate(problems):  # right, wrong, a repeated call, not a literal
            answer = [p.output, "'no'" if p.output != "'no'" else "1", p.input, "[0] * 3"][i % 4]
            f.write(json.dumps({"task_id": p.task_id, "completion": answer + "\nmore"}) + "\n")
    code = main(
        ["--benchmark", "exec", "--data", str(out), "--split", "test_hard",
         "--samples", str(samples), "--output", str(tmp_path / "eval")]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "eval" / "results.jsonl").open()]
    statuses = [r["status"] for r in sorted(rows, key=lambda r: int(r["task_id"].split("/")[-1]))]
    assert statuses == [
        ["passed", "wrong_answer", "invalid_answer", "invalid_answer"][i % 4]
        for i in range(len(problems))
    ]
    assert summary["counts"]["passed"] == len(range(0, len(problems), 4))
    assert main(["--benchmark", "exec", "--samples", str(samples)]) == 2  # no --data


def test_no_program_shares_a_13_gram_with_mbpp_or_humaneval(data_dir):
    from hrm_codegen.data.corpus_filters import Decontaminator, benchmark_texts

    check = Decontaminator(benchmark_texts(str(data_dir)), n=13)
    hits = [p.text for p in generate_programs(0, 2000) if check.is_contaminated(p.text)]
    assert hits == []


def test_a_model_trains_on_exec_and_reports_accuracy(built, tmp_path, monkeypatch):
    import contextlib
    import io

    from hydra import compose, initialize_config_dir

    from hrm_codegen.study.runner import CONFIG_DIR
    from hrm_codegen.train_cli import run_training as train

    out, _ = built
    monkeypatch.setenv("HRM_CODEGEN_HOME", str(tmp_path / "home"))
    overrides = [
        "experiment=smoke", "logger=jsonl", "data=exec", f"data.path={out}",
        f"run_dir={tmp_path / 'run'}", "train.max_steps=6", "eval.interval=6",
        "eval.pass_at_1=true", "eval.limit=4", "eval.mbpp_bpb=false", "threads.intra_op=1",
    ]  # fmt: skip
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("codegen_base", overrides=overrides)
    with contextlib.redirect_stdout(io.StringIO()):
        run_dir = train(cfg)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").open()]
    evals = [r for r in rows if "val/exec_acc" in r]
    assert evals and evals[-1]["val/exec_acc_tasks"] == 4 and 0 <= evals[-1]["val/exec_acc"] <= 1
    assert "val/exec_bpb" in evals[-1] and "val/mbpp_bpb" not in evals[-1]

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        bad = compose("codegen_base", overrides=[*overrides, "data.path=null"])
    with pytest.raises(ValueError, match="data.benchmark=exec needs data.path"):
        train(bad)
