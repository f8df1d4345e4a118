"""Generation: the KV cache against full recomputation, batching, sampling, stopping, HF wrapper."""

from __future__ import annotations

import pytest
import torch

from hrm_codegen.generation import (
    StopStringWatcher,
    filter_logits,
    generate,
    generate_hf,
    generate_ids,
    next_token_probs,
    sample_from_probs,
    truncate_at_stop,
)
from hrm_codegen.model import HRMConfig, HRMForCausalLM, TransformerConfig, TransformerForCausalLM

VOCAB = 61
MIXED_PROMPTS = [[1, 5, 7, 9, 11, 3, 40], [1, 4], [1, 8, 8, 2, 33], [1], [1, 20, 21]]


def tiny_model(kind: str, vocab_size: int = VOCAB, max_seq_len: int = 64, seed: int = 0):
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, max_seq_len=max_seq_len, hidden_size=32, num_heads=2)
    if kind == "transformer":
        return TransformerForCausalLM(TransformerConfig(**common, n_layers=2, expansion=2.0))
    if kind == "hrm":
        return HRMForCausalLM(HRMConfig(**common, H_layers=1, L_layers=1, expansion=2.0))
    if kind == "hrm_act":  # Q head and two segments at inference: twice the cache slots
        config = HRMConfig(
            **common, H_layers=1, L_layers=1, expansion=2.0, enable_q_head=True, halt_max_steps=2
        )
        return HRMForCausalLM(config)
    raise ValueError(kind)


@pytest.fixture(scope="module")
def gpt2_tokenizer(gpt2_dir):
    from hrm_codegen.tokenization import load_tokenizer

    return load_tokenizer(gpt2_dir)


# --------------------------------------------------------------------------- next-token choice


def test_filter_logits_top_k_keeps_the_k_largest():
    logits = torch.tensor([[0.3, 2.0, -1.0, 1.5, 0.9]])
    kept = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept.tolist() == [[False, True, False, True, False]]
    assert torch.isfinite(filter_logits(logits, top_k=0)).all()


def test_filter_logits_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])  # sorted: 0.5, 0.3, 0.15, 0.05
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, top_p=0.75)).tolist() == [
        [False, True, False, True]
    ]
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [
        [False, True, False, False]
    ]
    assert torch.isfinite(filter_logits(logits, top_p=0.9)).tolist() == [[True, True, False, True]]
    # the most likely token survives however small top_p is
    assert torch.isfinite(filter_logits(logits, top_p=1e-9)).tolist() == [
        [False, True, False, False]
    ]


def test_next_token_probs_applies_temperature_then_filters():
    logits = torch.tensor([[1.0, 3.0, 2.0]])
    assert torch.allclose(next_token_probs(logits, temperature=2.0), torch.softmax(logits / 2, -1))
    probs = next_token_probs(logits, temperature=0.5, top_k=2)
    assert probs[0, 0] == 0
    assert torch.allclose(probs[0, 1:], torch.softmax(torch.tensor([6.0, 4.0]), -1))


def test_sample_from_probs_matches_the_distribution_and_skips_zero_probability():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3, 0.0])
    generator = torch.Generator().manual_seed(0)
    uniforms = torch.rand(20000, generator=generator, dtype=torch.float64)
    tokens = sample_from_probs(probs.expand(20000, -1), uniforms)
    freq = torch.bincount(tokens, minlength=5).double() / 20000
    assert freq[1] == 0 and freq[4] == 0
    assert torch.allclose(freq, probs.double(), atol=0.015)
    # the ends of [0, 1): never a zero-probability token, never past the vocabulary
    edge = torch.tensor([[0.0, 0.5, 0.5, 0.0]] * 2)
    assert sample_from_probs(edge, torch.tensor([0.0, 1.0 - 1e-16])).tolist() == [1, 2]


# --------------------------------------------------------------------------- stop strings


def test_truncate_at_stop_cuts_at_the_earliest_stop():
    assert truncate_at_stop("a\nassert x\ndef g", ["\ndef", "\nassert"]) == "a"
    assert truncate_at_stop("abc", ["z"]) == "abc"
    assert truncate_at_stop("abc", None) == "abc"


def test_stop_watcher_fires_exactly_when_the_text_first_contains_a_stop(gpt2_tokenizer):
    text = "def f(x):\n    return 'héllo wörld ✓ 日本'\n\nassert f(1)\n"
    tokens = gpt2_tokenizer.encode(text, add_special_tokens=False)
    for stop in (["\nassert"], ["日本"], ["✓ 日"], ["wör", "zzz"], ["not there"]):
        watcher = StopStringWatcher(gpt2_tokenizer, stop)
        fired = next((t for t in range(1, len(tokens) + 1) if watcher.update(tokens[:t])), None)
        expected = next(
            (
                t
                for t in range(1, len(tokens) + 1)
                if any(s in gpt2_tokenizer.decode(tokens[:t]) for s in stop)
            ),
            None,
        )
        assert fired == expected, stop
    assert expected is None  # the last case never stops


def test_stop_watcher_rejects_empty_stop_strings(gpt2_tokenizer):
    with pytest.raises(ValueError, match="non-empty"):
        StopStringWatcher(gpt2_tokenizer, ["\n", ""])


# --------------------------------------------------------------------------- the cache


@pytest.mark.parametrize("kind", ["transformer", "hrm", "hrm_act"])
def test_cached_greedy_equals_full_recomputation(kind):
    model = tiny_model(kind)
    cached = generate_ids(model, MIXED_PROMPTS, max_new_tokens=12)
    full = generate_ids(model, MIXED_PROMPTS, max_new_tokens=12, use_cache=False)
    assert cached == full
    assert all(len(samples[0]) == 12 for samples in cached)


@pytest.mark.parametrize("kind", ["transformer", "hrm"])
def test_a_batch_gives_the_same_tokens_as_prompts_one_by_one(kind):
    model = tiny_model(kind)
    batched = generate_ids(model, MIXED_PROMPTS, max_new_tokens=10, batch_size=8)
    alone = [generate_ids(model, [p], max_new_tokens=10)[0] for p in MIXED_PROMPTS]
    assert batched == alone
    sampled = dict(max_new_tokens=8, do_sample=True, num_samples=3, seed=5, top_k=20)
    assert generate_ids(model, MIXED_PROMPTS, batch_size=16, **sampled) == [
        generate_ids(model, [p], batch_size=1, **sampled)[0] for p in MIXED_PROMPTS
    ]


def test_cached_sampling_equals_recomputed_sampling():
    model = tiny_model("hrm")
    options = dict(max_new_tokens=10, do_sample=True, num_samples=4, seed=3, top_p=0.9)
    assert generate_ids(model, MIXED_PROMPTS, **options) == generate_ids(
        model, MIXED_PROMPTS, use_cache=False, **options
    )


def test_num_samples_prefills_each_prompt_once():
    model = tiny_model("transformer")
    prefills = []

    def record(module, args, kwargs):
        input_ids = args[0] if args else kwargs["input_ids"]
        if input_ids.shape[1] > 1:
            prefills.append(tuple(input_ids.shape))

    model.register_forward_pre_hook(record, with_kwargs=True)
    prompts = [[1, 2, 3, 4], [1, 9, 8]]
    out = generate_ids(model, prompts, max_new_tokens=6, do_sample=True, num_samples=4, seed=0)
    assert prefills == [(2, 4)]  # both prompts in one prefill, expanded to 8 rows
    assert [len(samples) for samples in out] == [4, 4]
    assert len({tuple(s) for s in out[0]}) > 1  # the samples differ from each other

    prefills.clear()  # more samples than the batch holds: still one prefill per prompt
    split = generate_ids(
        model, prompts, max_new_tokens=6, do_sample=True, num_samples=5, seed=0, batch_size=2
    )
    assert prefills == [(1, 4), (1, 3)]
    assert split[0][:4] == out[0] and split[1][:4] == out[1]  # sample j depends on j, not batching


# --------------------------------------------------------------------------- sampling options


def test_seed_makes_sampling_reproducible():
    model = tiny_model("transformer")
    options = dict(max_new_tokens=10, do_sample=True, num_samples=3, temperature=1.5)
    first = generate_ids(model, MIXED_PROMPTS, seed=11, **options)
    assert generate_ids(model, MIXED_PROMPTS, seed=11, **options) == first
    assert generate_ids(model, MIXED_PROMPTS, seed=12, **options) != first
    # a prompt's samples do not depend on the other prompts or its position in the list
    assert generate_ids(model, MIXED_PROMPTS[::-1], seed=11, **options)[::-1] == first
    assert generate_ids(model, [MIXED_PROMPTS[2]], seed=11, **options)[0] == first[2]


def test_unseeded_sampling_follows_torch_manual_seed():
    model = tiny_model("transformer")
    options = dict(max_new_tokens=8, do_sample=True, num_samples=2)
    torch.manual_seed(4)
    first = generate_ids(model, MIXED_PROMPTS, **options)
    torch.manual_seed(4)
    assert generate_ids(model, MIXED_PROMPTS, **options) == first


def test_top_k_one_and_zero_temperature_are_greedy():
    model = tiny_model("hrm")
    greedy = generate_ids(model, MIXED_PROMPTS, max_new_tokens=10)
    top1 = generate_ids(
        model, MIXED_PROMPTS, max_new_tokens=10, do_sample=True, top_k=1, temperature=0.7, seed=1
    )
    assert top1 == greedy
    cold = generate_ids(model, MIXED_PROMPTS, max_new_tokens=10, do_sample=True, temperature=0.0)
    assert cold == greedy
    repeated = generate_ids(model, MIXED_PROMPTS, max_new_tokens=10, num_samples=3)
    assert repeated == [samples * 3 for samples in greedy]


def test_sampling_never_picks_a_filtered_token():
    model = tiny_model("transformer")
    prompt = [[1, 7, 3]]
    greedy = generate_ids(model, prompt, max_new_tokens=1)[0][0][0]
    # top_k=2 at the first step: every sample starts with one of the two most likely tokens
    with torch.inference_mode():
        first_logits = model(torch.tensor(prompt)).logits[0, -1]
    allowed = set(torch.topk(first_logits, 2).indices.tolist())
    out = generate_ids(
        model, prompt, max_new_tokens=1, do_sample=True, top_k=2, num_samples=64, seed=0
    )
    firsts = {sample[0] for sample in out[0]}
    assert firsts <= allowed and greedy in firsts


# --------------------------------------------------------------------------- stopping


def test_eos_ends_a_row_and_is_not_returned():
    model = tiny_model("transformer")
    free = generate_ids(model, MIXED_PROMPTS, max_new_tokens=12)
    tokens = free[2][0]
    eos = tokens[5]
    cut = tokens.index(eos)
    stopped = generate_ids(model, MIXED_PROMPTS, max_new_tokens=12, eos_token_id=eos)
    for free_samples, stopped_samples in zip(free, stopped):
        row = free_samples[0]
        expected = row[: row.index(eos)] if eos in row else row
        assert stopped_samples == [expected]
    assert stopped[2][0] == tokens[:cut]


def test_stop_strings_end_generation_and_are_cut_from_the_text(gpt2_tokenizer):
    model = tiny_model("transformer", vocab_size=len(gpt2_tokenizer), max_seq_len=128)
    prompts = ["def add(a, b):\n", "x = 1"]
    free_ids = generate_ids(
        model,
        [[gpt2_tokenizer.bos_token_id, *gpt2_tokenizer.encode(p)] for p in prompts],
        max_new_tokens=30,
        eos_token_id=gpt2_tokenizer.eos_token_id,
    )
    free_text = generate(model, gpt2_tokenizer, prompts, max_new_tokens=30)
    assert free_text == [
        [gpt2_tokenizer.decode(samples[0])] for samples in free_ids
    ]  # BOS + prompt
    # a stop string taken from the middle of the first continuation
    text = free_text[0][0]
    stop = [text[len(text) // 2 : len(text) // 2 + 3]]
    stopped_ids = generate_ids(
        model,
        [[gpt2_tokenizer.bos_token_id, *gpt2_tokenizer.encode(prompts[0])]],
        max_new_tokens=30,
        eos_token_id=gpt2_tokenizer.eos_token_id,
        stop=stop,
        tokenizer=gpt2_tokenizer,
    )[0][0]
    # it stopped on the token that completed the stop string, not later
    assert stopped_ids == free_ids[0][0][: len(stopped_ids)] and len(stopped_ids) < 30
    assert stop[0] in gpt2_tokenizer.decode(stopped_ids)
    assert stop[0] not in gpt2_tokenizer.decode(stopped_ids[:-1])
    stopped_text = generate(model, gpt2_tokenizer, prompts, max_new_tokens=30, stop=stop)
    assert stopped_text[0] == [truncate_at_stop(text, stop)]
    assert stop[0] not in stopped_text[0][0]
    assert stopped_text[1] == [truncate_at_stop(free_text[1][0], stop)]


def test_rows_are_capped_at_max_seq_len_with_a_warning():
    model = tiny_model("transformer", max_seq_len=16)
    long_prompt, short_prompt = list(range(1, 11)), [1, 2, 3]
    with pytest.warns(UserWarning, match=r"prompt 0 \(10 tokens\) at 6"):
        out = generate_ids(model, [long_prompt, short_prompt], max_new_tokens=12)
    assert [len(samples[0]) for samples in out] == [6, 12]
    assert out[1] == generate_ids(model, [short_prompt], max_new_tokens=12)[0]
    with pytest.raises(ValueError, match="max_seq_len is 16"):
        generate_ids(model, [list(range(16))], max_new_tokens=1)


@pytest.mark.parametrize(
    "option, message",
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(num_samples=0), "num_samples"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(batch_size=0), "batch_size"),
        (dict(stop=["\n"]), "tokenizer"),
    ],
)
def test_bad_options_raise_clear_errors(option, message):
    model = tiny_model("transformer")
    kwargs = {"max_new_tokens": 4, **option}
    with pytest.raises(ValueError, match=message):
        generate_ids(model, [[1, 2]], **kwargs)


def test_generation_runs_in_eval_mode_and_restores_training_mode(capsys):
    model = tiny_model("hrm_act")  # in training mode its ACT forward refuses a KV cache
    model.train()
    out = generate_ids(model, [[1, 2, 3]], max_new_tokens=3, progress=True)
    assert model.training and len(out[0][0]) == 3
    assert "generate" in capsys.readouterr().err


def test_empty_prompt_is_rejected():
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate_ids(tiny_model("transformer"), [[1], []], max_new_tokens=2)


# --------------------------------------------------------------------------- Hugging Face models


@pytest.fixture(scope="module")
def hf_model_and_tokenizer(gpt2_tokenizer, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=128, vocab_size=50257)
    GPT2LMHeadModel(config).save_pretrained(folder)
    gpt2_tokenizer.save_pretrained(folder)
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def test_generate_hf_greedy_matches_a_plain_argmax_loop(hf_model_and_tokenizer):
    model, tokenizer = hf_model_and_tokenizer
    prompts = ["def add(a, b):\n    return", "x ="]
    out = generate_hf(model, tokenizer, prompts, max_new_tokens=8, num_samples=2)
    for prompt, samples in zip(prompts, out):
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        new = []
        with torch.inference_mode():
            for _ in range(8):
                token = int(model(ids).logits[0, -1].argmax())
                if token == tokenizer.eos_token_id:
                    break
                new.append(token)
                ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        assert samples == [tokenizer.decode(new)] * 2
    # a tokenizer without a pad token (GPT-2 from the hub) pads with EOS
    pad_token, tokenizer.pad_token = tokenizer.pad_token, None
    try:
        assert tokenizer.pad_token_id is None
        assert generate_hf(model, tokenizer, prompts, max_new_tokens=8, num_samples=2) == out
    finally:
        tokenizer.pad_token = pad_token


def test_generate_hf_sampling_is_seeded_and_stop_strings_cut(hf_model_and_tokenizer):
    model, tokenizer = hf_model_and_tokenizer
    prompts = ["def add(a, b):", "import os"]
    options = dict(max_new_tokens=10, do_sample=True, num_samples=3, top_p=0.95, top_k=50)
    first = generate_hf(model, tokenizer, prompts, seed=1, **options)
    assert [len(samples) for samples in first] == [3, 3]
    assert generate_hf(model, tokenizer, prompts, seed=1, **options) == first
    assert generate_hf(model, tokenizer, prompts, seed=2, **options) != first

    free = generate_hf(model, tokenizer, prompts, max_new_tokens=12)
    stop = [free[0][0][4:7]]
    stopped = generate_hf(model, tokenizer, prompts, max_new_tokens=12, stop=stop)
    assert stopped == [[truncate_at_stop(free[0][0], stop)], [truncate_at_stop(free[1][0], stop)]]


def test_generate_hf_rejects_a_prompt_that_encodes_to_nothing(hf_model_and_tokenizer):
    model, tokenizer = hf_model_and_tokenizer
    with pytest.raises(ValueError, match=r"prompts \[1\] encode to no tokens"):
        generate_hf(model, tokenizer, ["def f(x):", ""], max_new_tokens=4)
