"""Polyglot with one of our own models: prompts fitted to its context (cut or skipped by the
stated rule, and counted), end to end through `scripts/evaluate.py`'s command line on a folder of
two exercises in the real layout, with a tiny random HRM saved with a code BPE trained here."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from hrm_codegen.evaluation.polyglot import load_exercises, toolchain_status
from hrm_codegen.evaluation.polyglot.fitting import (
    CUT_MARKER,
    PromptFitter,
    response_reserve,
)
from hrm_codegen.evaluation.polyglot.prompts import first_prompt

FIXTURES = Path(__file__).parent / "fixtures" / "polyglot"
CONTEXT = 512  # the tiny model's max_seq_len
NEW_TOKENS = 8  # --max-new-tokens: prompts may take CONTEXT - 8 tokens
# Python's instructions made long (its stub stays short: cut, not skipped); Go's stub made long
# (a stub is never cut: skipped).
NOTES = "".join(
    f"Note {i}: the calendar rule above holds for every year {i}00.\n" for i in range(60)
)
LONG_STUB = "".join(f"// Line {i} of a long comment that the stub carries.\n" for i in range(120))


def words(text: str) -> int:
    """A tokenizer stand-in: one token per whitespace-separated word."""
    return len(text.split())


def stubs_of(exercise) -> dict[str, str]:
    return {name: exercise.read(name) for name in exercise.solution_files}


def bench(folder: Path, *, long_instructions: bool = True, long_stub: bool = True) -> Path:
    """python/leap and go/leap copied from the fixtures into `folder`, Python's instructions
    and Go's stub lengthened as asked."""
    for language in ("python", "go"):
        source = FIXTURES / language / "exercises" / "practice" / "leap"
        shutil.copytree(source, folder / language / "exercises" / "practice" / "leap")
    python = folder / "python" / "exercises" / "practice" / "leap"
    if long_instructions:
        with (python / ".docs" / "instructions.md").open("a") as f:
            f.write("\n" + NOTES)
    if long_stub:
        with (folder / "go" / "exercises" / "practice" / "leap" / "leap.go").open("a") as f:
            f.write("\n" + LONG_STUB)
    return folder


# --------------------------------------------------------------------------------------------------
# The rule, on a word-counting tokenizer


def test_reserve_is_max_new_tokens_up_to_half_the_context() -> None:
    assert response_reserve(512, 8) == 8
    assert response_reserve(512, 512) == 256 and response_reserve(512, 1024) == 256
    with pytest.raises(ValueError, match="no room"):
        response_reserve(1, 8)


def test_first_prompt_whole_then_instructions_tail_cut_then_skipped(tmp_path: Path) -> None:
    go, python = load_exercises(bench(tmp_path))  # sorted by language
    files = stubs_of(python)
    full = first_prompt(python, "whole", files)
    roomy = PromptFitter(words, words(full) + 1)
    assert roomy.first(python, "whole", files).fit == "whole"
    assert roomy.first(python, "whole", files).text == full

    budget = words(full) - 200  # the notes are ~700 words: the head of them stays
    fitted = PromptFitter(words, budget).first(python, "whole", files)
    assert fitted.fit == "truncated" and fitted.tokens <= budget and fitted.tokens > budget - 12
    assert fitted.text is not None and CUT_MARKER.strip() in fitted.text
    head, tail = NOTES.splitlines()[0], NOTES.splitlines()[-1]
    assert head in fitted.text and tail not in fitted.text  # the head kept, the tail cut
    assert files["leap.py"].rstrip() in fitted.text and "# Response" in fitted.text

    go_files = stubs_of(go)
    skipped = PromptFitter(words, 400).first(go, "whole", go_files)  # the stub alone: ~1300
    assert skipped.fit == "prompt_too_long" and skipped.text is None and skipped.tokens > 400


def test_second_prompt_drops_the_history_then_cuts_the_test_output() -> None:
    (exercise,) = load_exercises(FIXTURES, exercises=["python/leap"])
    files = stubs_of(exercise)
    first = first_prompt(exercise, "whole", files)
    output = "".join(f"FAILED test_{i} - assert False\n" for i in range(100))
    history = {"first": first, "first_response": "no edit"}
    whole = PromptFitter(words, 10_000).second(exercise, "whole", files, output, **history)
    assert whole.fit == "whole" and whole.text is not None and whole.text.startswith(first)
    alone_tokens = words(whole.text) - words(first) - 2  # without the prompt and "no edit"
    dropped = PromptFitter(words, alone_tokens + 1).second(
        exercise, "whole", files, output, **history
    )
    assert dropped.fit == "history_dropped" and "# Instructions" not in (dropped.text or "")
    cut = PromptFitter(words, alone_tokens - 100).second(
        exercise, "whole", files, output, **history
    )
    assert cut.fit == "truncated" and cut.tokens <= alone_tokens - 100
    assert "test_0 " in (cut.text or "") and "test_99 " not in (cut.text or "")
    too_long = PromptFitter(words, 50).second(exercise, "whole", files, output, **history)
    assert too_long.fit == "prompt_too_long" and too_long.text is None


# --------------------------------------------------------------------------------------------------
# A tiny HRM with our code BPE, end to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A training-run folder holding a random 1-layer HRM (max_seq_len 512) and a code BPE
    trained on the fixture exercises' files."""
    import torch

    from hrm_codegen.model import HRMConfig, HRMForCausalLM
    from hrm_codegen.tokenization import load_tokenizer, train_code_bpe

    texts = [p.read_text() for p in sorted(FIXTURES.rglob("*")) if p.is_file()]
    tokenizer = load_tokenizer(
        train_code_bpe(texts * 4, 400, tmp_path_factory.mktemp("bpe"), progress=False)
    )
    torch.manual_seed(0)
    config = HRMConfig(
        vocab_size=len(tokenizer), max_seq_len=CONTEXT, hidden_size=32, num_heads=2,
        H_layers=1, L_layers=1, H_cycles=1, L_cycles=1, bp_steps=2,
    )  # fmt: skip
    run = tmp_path_factory.mktemp("run")
    HRMForCausalLM(config).save_pretrained(run / "checkpoint")
    tokenizer.save_pretrained(str(run / "checkpoint"))
    return run


def needs_toolchains(*languages: str) -> None:
    for language in languages:
        available, missing = toolchain_status(language)
        if not available:
            pytest.skip(f"{language} toolchain absent here: {missing}")


def test_evaluate_polyglot_with_our_model_fits_prompts_and_counts_them(
    tiny_run: Path, tmp_path: Path, capsys
) -> None:
    from hrm_codegen.evaluation.cli import main
    from hrm_codegen.tokenization import load_tokenizer

    needs_toolchains("python", "go")
    data, out = bench(tmp_path / "bench"), tmp_path / "out"
    argv = ["--benchmark", "polyglot", "--model-type", "hrm", "--ckpt", str(tiny_run),
            "--data", str(data), "--max-new-tokens", str(NEW_TOKENS), "--device", "cpu",
            "--test-timeout", "60", "--output", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_tasks"] == 2 and summary["settings"]["max_prompt_tokens"] == 504
    assert summary["pass_at_k"]["pass_rate_2"] == 0.0  # random weights write no solution
    python, go = summary["per_language"]["python"], summary["per_language"]["go"]
    assert python["prompt_fit"]["try_1"] == {"whole": 0, "truncated": 1, "prompt_too_long": 0}
    assert go["prompt_fit"]["try_1"] == {"whole": 0, "truncated": 0, "prompt_too_long": 1}
    assert summary["breakdown"]["prompt_fit"]["try_1"]["prompt_too_long"] == 1
    assert (python["prompt_fit"]["answered"], go["prompt_fit"]["answered"]) == (1, 0)
    assert go["percent_well_formed"] == 1.0  # no response is not a malformed one (as aider)
    assert summary["errors"]["exhausted_context_windows"] >= 1
    results = {
        line["task_id"]: line
        for line in map(json.loads, (out / "results.jsonl").read_text().splitlines())
    }
    (skipped,) = results["go/leap"]["tries"]
    assert skipped["status"] == "context_exceeded" and "prompt_too_long" in skipped["reason"]
    assert results["go/leap"]["prompt_fit"] == {"try_1": "prompt_too_long"}
    assert results["python/leap"]["tries"][0]["status"] != "context_exceeded"  # it was asked
    asked = [json.loads(x)["task_id"] for x in (out / "samples.jsonl").read_text().splitlines()]
    assert set(asked) == {"python/leap"}  # the model never saw the skipped exercise
    assert "prompts fitted to 504 tokens" in capsys.readouterr().out

    # the prompt the model read: within the budget, stub whole, the instructions' tail cut
    tokenizer = load_tokenizer(tiny_run / "checkpoint")
    (exercise,) = load_exercises(data, exercises=["python/leap"])
    files = stubs_of(exercise)
    assert 1 + len(tokenizer.encode(first_prompt(exercise, "whole", files))) > 504
    fitted = PromptFitter(
        lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"]), 504
    ).first(exercise, "whole", files)
    assert fitted.text is not None and fitted.tokens <= 504
    assert "leap_year" in fitted.text and NOTES.splitlines()[-1] not in fitted.text


def test_a_samples_file_run_has_no_prompt_fit(tmp_path: Path) -> None:
    """Fitting is for a model's context: a samples file's run reports as before."""
    from hrm_codegen.evaluation.polyglot import run_polyglot

    needs_toolchains("python")
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "python/leap", "response": "nothing"}) + "\n")
    options = argparse.Namespace(
        data=str(FIXTURES), languages="python", samples=str(samples), ckpt=None,
        output=str(tmp_path / "out"), test_timeout=60.0, no_progress=True,
    )  # fmt: skip
    summary = run_polyglot(options)
    assert summary.breakdown == {} and "prompt_fit" not in summary.per_language["python"]
    line = json.loads((tmp_path / "out" / "results.jsonl").read_text())
    assert "prompt_fit" not in line


# --------------------------------------------------------------------------------------------------
# Bits per byte of the example solutions given their prompts


def test_scoring_windows_score_each_answer_token_once_with_enough_context() -> None:
    from hrm_codegen.evaluation.polyglot.likelihood import scoring_windows

    assert scoring_windows(10, 30, 64, 8) == [(0, 30, 10)]  # it all fits: one window
    prompt, total, limit, stride = 40, 200, 64, 16
    windows = scoring_windows(prompt, total, limit, stride)
    scored = [p for _, end, first in windows for p in range(first, end)]
    assert scored == list(range(prompt, total))
    assert windows[0] == (0, limit, prompt)
    for start, end, first in windows:
        assert 0 <= start < first < end <= total and end - start <= limit
        assert first - start >= limit - stride or start == 0  # L - R tokens before each
    with pytest.raises(ValueError, match="leaves fewer"):
        scoring_windows(60, 200, 64, 16)


class Uniform:
    """A model that gives every token the same probability: bpb = tokens x log2(V) / bytes."""

    def __init__(self, vocab_size: int, max_seq_len: int) -> None:
        import torch

        self.config = argparse.Namespace(max_seq_len=max_seq_len, loss="softmax")
        self.vocab_size = vocab_size
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.training = False

    def parameters(self):
        yield self.weight

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def __call__(self, input_ids, **_):
        import torch

        return argparse.Namespace(logits=torch.zeros(*input_ids.shape, self.vocab_size))


def test_example_bpb_per_language_matches_a_direct_computation(tiny_run: Path, tmp_path) -> None:
    import torch

    from hrm_codegen.evaluation.harness import load_model_and_tokenizer
    from hrm_codegen.evaluation.polyglot.likelihood import example_answer, polyglot_bpb
    from hrm_codegen.model import HRMForCausalLM

    small, tokenizer = load_model_and_tokenizer("hrm", tiny_run, device="cpu")
    torch.manual_seed(1)  # the same model with a context where prompt and answer fit together
    model = HRMForCausalLM(replace(small.config, max_seq_len=1024)).eval()
    exercises = load_exercises(bench(tmp_path / "bench", long_instructions=False, long_stub=False))
    result = polyglot_bpb(model, tokenizer, exercises, max_new_tokens=NEW_TOKENS, progress=False)
    assert set(result["per_language"]) == {"go", "python"}
    assert all(
        values["whole"] == values["scored"] == 1 for values in result["per_language"].values()
    )
    fitter = PromptFitter.for_model(model, tokenizer, NEW_TOKENS)
    assert fitter is not None and result["max_prompt_tokens"] == fitter.max_prompt_tokens == 1016
    nats, size = 0.0, 0
    for exercise in exercises:
        # both fit in one window here: one forward over BOS + fitted prompt + answer
        prompt = fitter.first(exercise, "whole", stubs_of(exercise)).text
        assert prompt is not None
        answer = example_answer(exercise)
        prompt_ids = [tokenizer.bos_token_id, *tokenizer.encode(prompt, add_special_tokens=False)]
        ids = prompt_ids + tokenizer.encode(answer, add_special_tokens=False)
        assert len(ids) <= 1024
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        own = -sum(float(logp[p - 1, ids[p]]) for p in range(len(prompt_ids), len(ids)))
        language = result["per_language"][exercise.language]
        assert language["bytes"] == len(answer.encode("utf-8"))
        assert language["bpb"] == pytest.approx(own / math.log(2) / language["bytes"], rel=1e-4)
        nats, size = nats + own, size + language["bytes"]
    assert result["bpb"] == pytest.approx(nats / math.log(2) / size, rel=1e-4)
    assert result["bytes"] == size

    # many windows (a 400-token context): tokens and bytes add up, each token counted once
    uniform = Uniform(len(tokenizer), 400)
    spread = polyglot_bpb(uniform, tokenizer, exercises, max_new_tokens=NEW_TOKENS, progress=False)
    assert spread["window_stride"] == NEW_TOKENS and spread["max_prompt_tokens"] == 392
    for values in spread["per_language"].values():
        if values["scored"]:
            expected = values["tokens"] * math.log2(len(tokenizer)) / values["bytes"]
            assert values["bpb"] == pytest.approx(expected, rel=1e-6)  # float32 logits
    assert spread["per_language"]["python"]["tokens"] == result["per_language"]["python"]["tokens"]
    assert spread["per_exercise"]["python/leap"]["fit"] == "truncated"
    assert spread["per_exercise"]["python/leap"]["windows"] > 1
    assert result["per_exercise"]["python/leap"]["windows"] == 1


def test_evaluate_metric_bpb_on_polyglot_writes_per_language_bpb(tiny_run: Path, tmp_path) -> None:
    from hrm_codegen.evaluation.cli import main

    data, out = bench(tmp_path / "bench"), tmp_path / "out"
    argv = ["--benchmark", "polyglot", "--metric", "bpb", "--model-type", "hrm",
            "--ckpt", str(tiny_run), "--data", str(data), "--max-new-tokens", str(NEW_TOKENS),
            "--device", "cpu", "--output", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((out / "bpb.json").read_text())
    assert saved["data"] == "polyglot" and saved["per_language"]["go"]["prompt_too_long"] == 1
    assert saved["per_language"]["go"]["scored"] == 0 and math.isnan(
        saved["per_language"]["go"]["bpb"]
    )
    assert saved["per_language"]["python"]["scored"] == 1 and saved["bpb"] > 0
    assert saved["bpb"] == saved["per_language"]["python"]["bpb"]  # python is all that was scored
    assert main([*argv, "--edit-format", "diff"]) == 2  # bpb scores whole-file answers
