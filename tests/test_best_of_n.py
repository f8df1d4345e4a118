"""Best-of-n selection: by mean token log-probability, and by the first test in the sandbox."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from gspo_fixtures import toy_tokenizer_dir

from hrm_codegen.data import load_benchmark
from hrm_codegen.data.prompts import format_prompt
from hrm_codegen.evaluation.best_of_n import (
    best_of_n_samples,
    mean_token_logprobs,
    metric_name,
    select_best_of_n,
    select_by_first_test,
    select_by_logprob,
)
from hrm_codegen.evaluation.sampling import SamplingSettings
from hrm_codegen.generation import encode_prompt
from hrm_codegen.model import TransformerConfig, TransformerForCausalLM
from hrm_codegen.tokenization import load_tokenizer


@pytest.fixture(scope="module")
def tiny_model():
    """A random 1-layer transformer and a byte-level BPE trained on the toy texts (seconds)."""
    tokenizer = load_tokenizer(toy_tokenizer_dir())
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_heads=2, n_layers=1, max_seq_len=160
    )
    return TransformerForCausalLM(config).eval(), tokenizer


def test_logprob_ranking_takes_the_most_confident_sample_per_task():
    samples = [
        {"task_id": "Toy/2", "completion": "a", "mean_logprob": -1.0},
        {"task_id": "Toy/1", "completion": "b", "mean_logprob": -3.0},
        {"task_id": "Toy/2", "completion": "c", "mean_logprob": -0.5},
        {"task_id": "Toy/1", "completion": "d", "mean_logprob": -3.0},  # tie: the earlier wins
        {"task_id": "Toy/2", "completion": "e", "mean_logprob": float("-inf")},
    ]
    chosen = select_by_logprob(samples)
    assert [(s["task_id"], s["completion"]) for s in chosen] == [("Toy/2", "c"), ("Toy/1", "b")]
    assert all(s["rank"] == "logprob" for s in chosen)
    assert select_best_of_n([], samples, "logprob") == chosen
    assert metric_name("logprob", 8) == "pass@1[best-of-8,logprob]"
    assert metric_name("first-test", 8) == "first-test@1[best-of-8]"
    with pytest.raises(ValueError, match="--rank"):
        metric_name("oracle", 8)


def test_first_test_ranking_runs_only_the_first_test():
    plus_2, times_2 = load_benchmark("toy", "train")[:2]  # first tests: x = 1
    only_first = "def plus_2(x):\n    return 3\n"  # passes assert plus_2(1) == 3 only
    samples = [
        {"task_id": plus_2.task_id, "completion": "def plus_2(x):\n    return 0\n",
         "mean_logprob": -0.1},
        {"task_id": plus_2.task_id, "completion": only_first, "mean_logprob": -2.0},
        {"task_id": times_2.task_id, "completion": "def times_2(x):\n    return 0\n",
         "mean_logprob": -5.0},
        {"task_id": times_2.task_id, "completion": "def times_2(x):\n    return -1\n",
         "mean_logprob": -4.0},
    ]  # fmt: skip
    chosen = select_by_first_test([plus_2, times_2], samples, timeout=10)
    assert chosen[0]["completion"] == only_first and chosen[0]["first_test_passed"]
    # nothing passes times_2's first test: fall back on the most confident sample
    assert chosen[1]["completion"].endswith("return -1\n") and not chosen[1]["first_test_passed"]
    humaneval_like = dataclasses.replace(plus_2, benchmark="humaneval", entry_point="plus_2")
    with pytest.raises(ValueError, match="rank logprob"):
        select_by_first_test([humaneval_like], samples[:1])


def test_mean_token_logprobs_match_a_manual_forward_whatever_the_batch(tiny_model):
    model, tokenizer = tiny_model
    task = load_benchmark("toy", "train")[0]
    prompt = format_prompt(task)
    texts = [task.reference_solution, "def f(x):\n    return x\n", ""]
    scores = mean_token_logprobs(model, tokenizer, [prompt], [texts], batch_size=3)
    one_by_one = mean_token_logprobs(model, tokenizer, [prompt], [texts], batch_size=1)
    assert scores[0][:2] == pytest.approx(one_by_one[0][:2], abs=1e-5)
    assert scores[0][2] == float("-inf")
    prompt_ids = encode_prompt(tokenizer, prompt)
    ids = prompt_ids + tokenizer.encode(texts[0], add_special_tokens=False)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    manual = [float(logp[t - 1, ids[t]]) for t in range(len(prompt_ids), len(ids))]
    assert scores[0][0] == pytest.approx(sum(manual) / len(manual), abs=1e-5)


def test_best_of_n_samples_returns_one_scored_submission_per_task(tiny_model):
    model, tokenizer = tiny_model
    tasks = load_benchmark("toy", "train")[:2]
    chosen = best_of_n_samples(
        model, tokenizer, tasks, n=3, rank="logprob", progress=False,
        sampling=SamplingSettings(temperature=0.8, max_new_tokens=12),
    )  # fmt: skip
    assert [s["task_id"] for s in chosen] == [t.task_id for t in tasks]
    for task, sample in zip(tasks, chosen):
        rescored = mean_token_logprobs(
            model, tokenizer, [format_prompt(task)], [[sample["completion"]]]
        )
        assert sample["mean_logprob"] == pytest.approx(rescored[0][0], abs=1e-5)
        assert 0 <= sample["sample_index"] < 3
    with pytest.raises(ValueError, match="temperature"):
        best_of_n_samples(model, tokenizer, tasks, n=2, sampling=SamplingSettings())


def test_evaluate_cli_best_of_reports_each_rank_under_its_own_name(tiny_model, tmp_path, capsys):
    import json

    from hrm_codegen.evaluation.cli import main

    model, tokenizer = tiny_model
    ckpt = tmp_path / "model"
    model.save_pretrained(ckpt)
    tokenizer.save_pretrained(str(ckpt))
    common = ["--benchmark", "toy", "--split", "train", "--limit", "2", "--model-type"]
    common += ["transformer", "--ckpt", str(ckpt), "--max-new-tokens", "8", "--no-progress"]
    for rank, name in (("logprob", "pass@1[best-of-3,logprob]"), ("first-test", None)):
        out = tmp_path / rank
        argv = [*common, "--best-of", "3", "--temperature", "0.8", "--rank", rank]
        assert main([*argv, "--output", str(out)]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert list(summary["pass_at_k"]) == [name or "first-test@1[best-of-3]"]
        assert summary["settings"]["best_of"] == 3 and summary["num_tasks"] == 2
        results = (out / "results.jsonl").read_text().splitlines()
        assert len(results) == 2  # one submission per task
    # refused with the reason: greedy best-of, pass@k on top, --rank alone
    for extra, message in (
        (["--best-of", "3"], "temperature"),
        (["--best-of", "3", "--temperature", "0.8", "--k", "1,2"], "one sample per task"),
        (["--rank", "first-test"], "give --best-of"),
    ):
        capsys.readouterr()
        assert main([*common, *extra, "--output", str(tmp_path / "x")]) == 2, extra
        assert message in capsys.readouterr().err
