"""The four LCB scenarios from `scripts/evaluate.py` on the fixtures, and self-repair end to end
from a code generation output (from a samples file, and from a model)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from hrm_codegen.evaluation.cli import main

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "evaluate.py"
FIXTURES = REPO / "tests" / "fixtures" / "lcb"
CODEGEN = FIXTURES / "code_generation.jsonl"
SOLUTIONS = json.loads((FIXTURES / "solutions.json").read_text())


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def evaluate(capsys, monkeypatch):
    """`scripts/evaluate.py ARGS` run in this process (`cli.main`, what the script calls)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")

    def run(*args: str) -> Done:
        capsys.readouterr()
        code = main(["--no-progress", "--memory-mb", "512", *args])
        captured = capsys.readouterr()
        return Done(code, captured.out, captured.err)

    return run


@pytest.mark.slow
def test_the_script_is_a_thin_launcher_of_cli_main() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--benchmark", "lcb_selfrepair", "--samples", "x.jsonl"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and "needs --previous DIR" in done.stderr


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _results(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]


def test_codegeneration_then_selfrepair_from_its_output(evaluate, tmp_path: Path) -> None:
    samples = [
        {"task_id": "abc300_a", "completion": SOLUTIONS["abc300_a"]["reference"]},
        {"task_id": "abc300_a", "completion": SOLUTIONS["abc300_a"]["mutants"]["off by one"]["code"]},
        {"task_id": "3001", "completion": SOLUTIONS["3001"]["mutants"]["max twice"]["code"]},
        {"task_id": "3001", "completion": SOLUTIONS["3001"]["reference"]},
    ]  # fmt: skip
    first = tmp_path / "codegen"
    done = evaluate("--benchmark", "lcb_codegeneration", "--data", str(CODEGEN), "--samples",
                    str(write_jsonl(tmp_path / "s.jsonl", samples)), "--k", "1,2",
                    "--timeout", "2", "--output", str(first))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"\| pass@1 +\| +50\.00% \|", done.stdout)
    assert re.search(r"\| pass@2 +\| +100\.00% \|", done.stdout)
    assert "NOTE: 3 of the 5 selected problems have no samples" in done.stdout
    summary = json.loads((first / "summary.json").read_text())
    assert summary["num_tasks"] == 2 and summary["counts"]["wrong_answer"] == 2

    repairs = write_jsonl(
        tmp_path / "repairs.jsonl",
        [
            {"task_id": "abc300_a", "completion": SOLUTIONS["abc300_a"]["reference"]},
            {"task_id": "3001", "completion": SOLUTIONS["3001"]["mutants"]["undefined name"]["code"]},
        ],
    )  # fmt: skip
    second = tmp_path / "repair"
    done = evaluate("--benchmark", "lcb_selfrepair", "--data", str(CODEGEN), "--previous",
                    str(first), "--samples", str(repairs), "--k", "1", "--timeout", "2",
                    "--output", str(second))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"\| pass@1 +\| +75\.00% \|", done.stdout)  # 3 of 4 pass after repair
    prompts = [json.loads(x) for x in (second / "repair_prompts.jsonl").read_text().splitlines()]
    assert [(p["task_id"], p["sample_index"]) for p in prompts] == [("abc300_a", 1), ("3001", 0)]
    feedback = prompts[0]["feedback"]
    assert feedback.startswith("The above code is incorrect and got a wrong answer.")
    assert "Input: 1\n-5 5\n" in feedback and "Generated Output: 1" in feedback
    assert "Expected: 0" in feedback
    assert prompts[1]["prompt"].startswith("### Question\n")
    assert "### Feedback\n" in prompts[1]["prompt"] and prompts[1]["prompt"].endswith(
        "### Fixed Answer\n\n"
    )
    results = {(r["task_id"], r["sample_index"]): r for r in _results(second)}
    assert results[("abc300_a", 0)].get("carried_over") is True
    assert results[("abc300_a", 1)]["passed"] and not results[("abc300_a", 1)].get("carried_over")
    assert results[("3001", 0)]["failure_cause"] == "name_error"
    assert json.loads((second / "summary.json").read_text())["benchmark"] == "lcb_selfrepair"


def test_prediction_scenarios_from_the_command_line(evaluate, tmp_path: Path) -> None:
    answers = write_jsonl(
        tmp_path / "to.jsonl",
        [{"task_id": "3001/0", "completion": "8"}, {"task_id": "3100/1", "completion": "[0, 11]"}],
    )
    done = evaluate("--benchmark", "lcb_testoutput", "--data", str(FIXTURES / "test_output.jsonl"),
                    "--samples", str(answers), "--output", str(tmp_path / "to"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"\| pass@1 +\| +50\.00% \|", done.stdout)
    assert [r["status"] for r in _results(tmp_path / "to")] == ["passed", "wrong_answer"]

    answers = write_jsonl(
        tmp_path / "ex.jsonl",
        [
            {"task_id": "sample_0", "completion": "'<abab>'\n[/ANSWER]"},
            {"task_id": "sample_1", "completion": "[2 ** 100, 2, 25.0]"},
        ],
    )
    done = evaluate("--benchmark", "lcb_execution", "--data", str(FIXTURES / "execution.jsonl"),
                    "--samples", str(answers), "--output", str(tmp_path / "ex"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    statuses = [r["status"] for r in _results(tmp_path / "ex")]
    assert statuses == ["passed", "invalid_answer"]
    summary = json.loads((tmp_path / "ex" / "summary.json").read_text())
    assert summary["counts"] == {"passed": 1, "wrong_answer": 0, "invalid_answer": 1}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--benchmark", "lcb_selfrepair", "--samples", "x.jsonl"], "needs --previous DIR"),
        (["--benchmark", "mbpp", "--samples", "x.jsonl", "--compare", "tolerant"], "lcb_* only"),
        (["--benchmark", "lcb_codegeneration", "--samples", "x.jsonl", "--split", "test"], "--split is for MBPP"),
        (["--benchmark", "lcb_codegeneration", "--samples", "x.jsonl", "--release", "v9",
          "--data", str(CODEGEN)], "--release 'v9' unknown"),
        (["--metric", "bpb", "--model-type", "hrm", "--ckpt", ".", "--data", "lcb.jsonl"], "use one of"),
    ],
)  # fmt: skip
def test_bad_lcb_flags_exit_with_a_clear_error(evaluate, args: list[str], message: str) -> None:
    done = evaluate(*args)
    assert done.returncode == 2 and message in done.stderr, done.stderr


@pytest.mark.slow
def test_model_generation_and_selfrepair_end_to_end(tmp_path: Path, gpt2_dir: Path) -> None:
    """A tiny random HRM writes (wrong) programs; self-repair builds prompts from their
    verdicts and generates one repair per failed sample."""
    import torch

    from hrm_codegen.evaluation.cli import run_lcb_evaluation
    from hrm_codegen.model import HRMConfig, HRMForCausalLM
    from hrm_codegen.tokenization import load_tokenizer

    tokenizer = load_tokenizer(gpt2_dir)
    torch.manual_seed(0)
    config = HRMConfig(
        vocab_size=len(tokenizer), max_seq_len=1024, hidden_size=32, num_heads=2,
        H_layers=1, L_layers=1, H_cycles=1, L_cycles=1, bp_steps=2,
    )  # fmt: skip
    ckpt = tmp_path / "model"
    HRMForCausalLM(config).save_pretrained(ckpt)
    tokenizer.save_pretrained(str(ckpt))
    common = {"data": CODEGEN, "model_type": "hrm", "ckpt": ckpt, "limit": 2,
              "max_new_tokens": 4, "progress": False, "timeout": 2.0, "memory_mb": 512}  # fmt: skip
    first = run_lcb_evaluation(benchmark="lcb_codegeneration", output=tmp_path / "a", **common)
    assert first.num_tasks == 2 and first.counts["passed"] == 0
    generations = (tmp_path / "a" / "generations.jsonl").read_text().splitlines()
    assert len(generations) == 2
    repaired = run_lcb_evaluation(
        benchmark="lcb_selfrepair", output=tmp_path / "b", previous=tmp_path / "a", **common
    )
    assert repaired.num_tasks == 2 and sum(repaired.counts.values()) == 2
    prompts = (tmp_path / "b" / "repair_prompts.jsonl").read_text().splitlines()
    assert len(prompts) == 2 and repaired.settings["model_type"] == "hrm"
