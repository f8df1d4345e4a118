"""scripts/gpu_check.py at toy sizes on the CPU: every step runs and reports numbers."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import time
from pathlib import Path

import pytest

from hrm_codegen.gpu_check import (
    JSON_FILE,
    MD_FILE,
    STEPS,
    TINY,
    CheckOptions,
    background,
    benchmark_dir,
    main,
    plan_run,
    prepare_data,
    run_check,
)

FIXTURES = Path(__file__).parent / "fixtures"

# (function name, body, input, expected): small real tasks, so solutions and tests are valid Python.
_TASKS = [
    ("add_nums", "return a + b", (2, 3), 5),
    ("sub_nums", "return a - b", (7, 4), 3),
    ("mul_nums", "return a * b", (3, 4), 12),
    ("max_of_two", "return a if a > b else b", (3, 9), 9),
    ("min_of_two", "return a if a < b else b", (3, 9), 3),
    ("int_div", "return a // b", (9, 2), 4),
    ("remainder", "return a % b", (9, 4), 1),
    ("power_of", "return a ** b", (2, 5), 32),
    ("avg_two", "return (a + b) / 2", (2, 4), 3.0),
    ("same_sign", "return (a >= 0) == (b >= 0)", (-1, 5), False),
]


def _mbpp_row(task_id: int, index: int) -> dict:
    name, body, args, expected = _TASKS[index % len(_TASKS)]
    return {
        "text": f"Write a function {name} of two numbers a and b.",
        "code": f"def {name}(a, b):\n    {body}",
        "task_id": task_id,
        "test_setup_code": "",
        "test_list": [f"assert {name}{args!r} == {expected!r}"],
        "challenge_test_list": [],
    }


def write_data_dir(folder: Path, decontamination_files: bool = True) -> Path:
    """MBPP rows for the test split (11-20), validation (511-513) and train (601-606); with the
    sanitized MBPP and HumanEval fixtures beside it, the corpus can be decontaminated."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = [*range(11, 21), *range(511, 514), *range(601, 607)]
    rows = [_mbpp_row(task_id, i) for i, task_id in enumerate(ids)]
    (folder / "mbpp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if decontamination_files:
        shutil.copy(FIXTURES / "sanitized_mbpp_tiny.json", folder / "sanitized-mbpp.json")
        with gzip.open(folder / "HumanEval.jsonl.gz", "wb") as handle:
            handle.write((FIXTURES / "humaneval_tiny.jsonl").read_bytes())
    return folder


def test_tiny_check_runs_every_step_with_numbers(tmp_path, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # main() sets them; restore after
        monkeypatch.setenv(name, "1")
    out = tmp_path / "out"
    data = main(
        [
            "--device",
            "cpu",
            "--tiny",
            "--out",
            str(out),
            "--data-dir",
            str(write_data_dir(tmp_path / "data")),
            "--work-dir",
            str(tmp_path / "work"),
        ]
    )
    on_disk = json.loads((out / JSON_FILE).read_text())
    assert on_disk["finished"] is True and on_disk["total_seconds"] > 0
    steps = on_disk["steps"]
    assert list(steps) == list(STEPS)
    for name in STEPS:
        assert steps[name]["status"] == "ok", (name, steps[name])
        assert steps[name]["seconds"] >= 0

    env = steps["environment"]["data"]
    assert env["cpu_count"] >= 1 and env["torch"] and isinstance(env["bwrap_works"], bool)

    rows = steps["train_throughput"]["rows"]
    assert {(r["model"], r["compiled"]) for r in rows} == {
        (m, c) for m in ("hrm", "transformer", "transformer_deep") for c in (False, True)
    }
    assert all(r["tokens_per_second"] > 0 and r["flops_per_token"] > 0 for r in rows)
    assert all(r["compile_seconds"] >= 0 for r in rows if r["compiled"])

    rows = steps["decode"]["rows"]
    assert len(rows) == 2 * 2 * 2  # two models, batch 1 and 4, eager and compiled
    assert all(r["new_tokens_per_s"] > 0 for r in rows)

    pretrain = steps["pretrain"]
    assert pretrain["prepare"]["decontaminated"] is True
    assert pretrain["prepare"]["tokens"]["train"] > 0
    runs = {r["model"]: r for r in pretrain["runs"]}
    assert set(runs) == {"hrm", "transformer"}
    for run in runs.values():
        assert 1 <= run["steps"] <= TINY.max_steps_cap
        assert math.isfinite(run["val/bpb"]) and run["val/bpb"] > 0
        assert math.isfinite(run["val/mbpp_bpb"]) and run["val/mbpp_bpb"] > 0
        assert run["train_tok_s"] > 0
        assert Path(run["run_dir"], "checkpoint", "model.safetensors").is_file()

    passk = steps["pass_at_1"]
    assert passk["sandbox"] in ("bwrap", "none-unsafe")
    assert passk["sandbox"] == ("bwrap" if env["bwrap_works"] else "none-unsafe")
    for row in passk["rows"]:
        assert 0.0 <= row["pass@1"] <= 1.0
        assert row["tasks"] == 5 and sum(row["counts"].values()) == 5

    markdown = (out / MD_FILE).read_text()
    for heading in ("1. Environment", "2. Training", "3. Decoding", "4. Pretraining", "5. MBPP"):
        assert f"## {heading}" in markdown
    assert "| hrm |" in markdown and "total wall time" in markdown
    assert data["steps"]["pass_at_1"]["rows"] == passk["rows"]


def test_exhausted_budget_skips_work_but_still_writes_both_files(tmp_path):
    out = tmp_path / "out"
    data = run_check(
        CheckOptions(
            out=out,
            device="cpu",
            tiny=True,
            budget_seconds=0.0,
            data_dir=write_data_dir(tmp_path / "data"),
            work_dir=tmp_path / "work",
        )
    )
    steps = data["steps"]
    assert steps["environment"]["status"] == "ok"
    assert steps["pretrain"]["status"] == "skipped"
    assert all("skipped" in row for row in steps["train_throughput"]["rows"])
    assert all("skipped" in row for row in steps["decode"]["rows"])
    assert all("skipped" in row for row in steps["pass_at_1"]["rows"])
    assert "skipped" in (out / MD_FILE).read_text()
    assert json.loads((out / JSON_FILE).read_text())["finished"] is True


def test_without_mbpp_the_corpus_is_built_undecontaminated_and_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("HRM_CODEGEN_DATA_DIR", raising=False)
    info = prepare_data(tmp_path / "work", None, TINY)
    assert info["decontaminated"] is False
    assert any("NOT decontaminated" in note for note in info["notes"])
    assert info["tokens"]["train"] > 0 and info["tokens"]["validation"] > 0
    assert (Path(info["tokenizer_dir"]) / "tokenizer.json").is_file()


def test_plan_run_compiles_only_when_the_compile_pays_for_itself():
    common = dict(overhead=10.0, tokens_per_step=1000, eager_tok_s=1000.0, compiled_tok_s=2000.0)
    long = plan_run(120.0, compile_seconds=30.0, **common)
    assert long["compile"] is True
    assert long["max_steps"] == int(0.85 * (120 - 10 - 30) * 2000 / 1000)
    short = plan_run(40.0, compile_seconds=25.0, **common)  # 5 s compiled < 30 s eager
    assert short["compile"] is False
    assert short["max_steps"] == int(0.85 * 30 * 1000 / 1000)
    assert plan_run(120.0, compile_seconds=0.0, max_steps_cap=3, **common)["max_steps"] == 3
    with pytest.raises(ValueError, match="no training throughput"):
        plan_run(60.0, 5.0, 1000, None, None, None)


def test_background_returns_the_result_raises_its_error_and_never_waits_unasked(tmp_path):
    write_data_dir(tmp_path / "data", decontamination_files=False)
    with background(True, benchmark_dir, tmp_path / "data") as result:
        assert result() == (tmp_path / "data", False)
    with background(True, json.loads, "{not json") as result, pytest.raises(RuntimeError):
        result()
    start = time.perf_counter()
    with background(True, time.sleep, 60):
        pass  # the step that needed it was skipped
    assert time.perf_counter() - start < 30
