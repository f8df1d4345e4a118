"""Randomized-depth training (training/depth.py) and depth schedules for both recurrent families:
draws that are a pure function of (seed, step), FLOPs counted at the depth each step ran, a FLOP
budget met exactly, bit-exact resume, and HRM-Text run deeper than trained (with its KV cache)."""

from __future__ import annotations

import statistics

import pytest
import torch
from omegaconf import OmegaConf
from test_bit_exact import corpus_setup  # noqa: F401 (fixture)
from test_training_runs import fixture_env, run_quietly, smoke_config  # noqa: F401
from test_training_units import tiny_hrm, tiny_transformer

from hrm_codegen.evaluation.likelihood import apply_inference_schedule
from hrm_codegen.model.registry import build_model
from hrm_codegen.training.depth import DepthConfigError, depth_sampler
from hrm_codegen.training.flops import flops_count
from hrm_codegen.training.logging import read_metrics
from hrm_codegen.training.repeat import compare_runs

POISSON = {"distribution": "poisson_lognormal", "sigma": 0.5, "max": 8}


def train_cfg(**spec):
    return OmegaConf.create({"random_depth": spec or None})


def tiny_hrm_text(**overrides):
    fields = {"type": "hrm_text", "hidden_size": 32, "num_heads": 2, "H_layers": 1}
    fields.update(L_layers=1, H_cycles=2, L_cycles=2, max_seq_len=64, **overrides)
    return build_model(fields, vocab_size=100, bos_token_id=0, eos_token_id=0, pad_token_id=1)


def test_draws_are_a_pure_function_of_seed_and_step_with_the_configured_mean():
    model = tiny_hrm(H_cycles=3)
    sampler = depth_sampler(train_cfg(**POISSON), model, seed=5)
    draws = [sampler.draw(s) for s in range(4000)]
    assert draws == [sampler.draw(s) for s in range(4000)]  # any order, any resume
    assert draws != [depth_sampler(train_cfg(**POISSON), model, seed=6).draw(s) for s in range(4000)]  # fmt: skip
    assert min(draws) == 1 and max(draws) <= 8 and len(set(draws)) >= 5
    assert statistics.mean(draws) == pytest.approx(3.0, abs=0.1)  # E[1 + Poisson(e^tau)] = 3
    uniform = depth_sampler(train_cfg(distribution="uniform"), model, seed=0)
    values = [uniform.draw(s) for s in range(3000)]
    assert set(values) == {1, 2, 3, 4, 5} and statistics.mean(values) == pytest.approx(3, abs=0.1)
    level_l = depth_sampler(train_cfg(distribution="uniform", level="L"), tiny_hrm(L_cycles=2), 0)
    assert level_l.level == "L" and level_l.mean == 2
    assert depth_sampler(train_cfg(), model, seed=0) is None


@pytest.mark.parametrize(
    ("model", "spec", "message"),
    [
        (tiny_transformer, POISSON, "needs a recurrent model"),
        (lambda: tiny_hrm(H_cycles=1), POISSON, "must be >= 2"),
        (tiny_hrm, {**POISSON, "distribution": "geometric"}, "use one of"),
        (tiny_hrm, {**POISSON, "level": "Q"}, "use H or L"),
        (tiny_hrm, {**POISSON, "max": 1}, "below the mean depth"),
        (tiny_hrm, {**POISSON, "sigma": 0}, "must be > 0"),
    ],
)
def test_bad_random_depth_settings_are_one_line_errors(model, spec, message):
    with pytest.raises(DepthConfigError, match=message):
        depth_sampler(train_cfg(**spec), model(), seed=0)


def test_flops_follow_the_training_depth_and_evaluation_runs_the_mean():
    for model in (tiny_hrm(), tiny_hrm_text()):
        configured = flops_count(model)
        model.train()
        model.set_training_cycles(h_cycles=4)  # twice the configured H cycles
        deeper = flops_count(model)
        assert deeper.forward_blocks == 2 * configured.forward_blocks
        assert deeper.training_flops_per_token(64) > configured.training_flops_per_token(64)
        model.eval()  # evaluation ignores the training depth
        assert model.h_cycles == model.config.H_cycles
        model.train()
        assert model.h_cycles == 4
        model.set_training_cycles()
        assert flops_count(model) == configured


def test_hrm_text_runs_deeper_than_trained_with_its_kv_cache():
    torch.manual_seed(0)
    model = tiny_hrm_text().eval()
    x = torch.randint(2, 100, (2, 11))
    trained = model(x).logits
    assert apply_inference_schedule(model, h_cycles=4) == {"h_cycles": 4, "l_cycles": 2, "segments": 1}  # fmt: skip
    deeper = model(x).logits
    assert not torch.allclose(trained, deeper)
    cache = model.allocate_cache(2, 32)
    model(x[:, :10], cache=cache)
    step = model(x[:, 10:], cache=cache).logits
    torch.testing.assert_close(step[:, -1], deeper[:, -1], rtol=1e-5, atol=1e-5)
    assert len(cache.inner.layers) == 4 * 3  # one slot per stack application run
    apply_inference_schedule(model)
    torch.testing.assert_close(model(x).logits, trained, rtol=0, atol=0)
    assert model.hf.model.config.H_cycles == 2  # the saved config is never changed
    llama = build_model(
        {"type": "llama", "hidden_size": 32, "num_heads": 2, "n_layers": 2, "max_seq_len": 64},
        vocab_size=100, bos_token_id=0, eos_token_id=0, pad_token_id=1,
    )  # fmt: skip
    with pytest.raises(ValueError, match="only apply to an HRM or HRM-Text"):
        apply_inference_schedule(llama, h_cycles=4)
    assert apply_inference_schedule(llama) == {}
    with pytest.raises(ValueError, match="one segment"):
        model.set_inference_schedule(segments=2)


@pytest.mark.parametrize("family", ["hrm", "hrm_text"])
def test_a_random_depth_run_counts_each_steps_flops_and_resumes_bit_for_bit(
    family,
    fixture_env,
    corpus_setup,
    tmp_path,  # noqa: F811
):
    overrides = [
        *corpus_setup["overrides"], f"model={family}", "model.hidden_size=32",
        "++model.H_cycles=2", "train.random_depth.distribution=poisson_lognormal",
        "train.random_depth.max=6",
    ]  # fmt: skip
    straight, _ = run_quietly(smoke_config(fixture_env, tmp_path / "a", *overrides))
    rows = [r for r in read_metrics(straight) if "train/depth" in r]
    assert len(rows) == 8 and len({r["train/depth"] for r in rows}) > 1
    # every step's FLOPs are those of its depth: tokens per step are fixed (packed windows)
    from hrm_codegen.model import load_model

    model = load_model(straight / "checkpoint").train()
    sampler = depth_sampler(
        OmegaConf.create({"random_depth": {"distribution": "poisson_lognormal", "max": 6}}),
        model, seed=0,
    )  # fmt: skip
    expected = 0.0
    for step, row in enumerate(rows):
        depth = sampler.draw(step)
        assert row["train/depth"] == depth
        sampler.set_depth(model, depth)
        expected += 8 * 64 * flops_count(model).training_flops_per_token(64)
    assert rows[-1]["flops"] == pytest.approx(expected, rel=1e-12)

    stopped, _ = run_quietly(
        smoke_config(fixture_env, tmp_path / "b", *overrides, "train.stop_at_step=4")
    )
    resumed, _ = run_quietly(smoke_config(fixture_env, tmp_path / "b", *overrides, "resume=true"))
    assert compare_runs(straight, resumed).identical


def test_a_flop_budget_is_met_by_the_drawn_depths(fixture_env, corpus_setup, tmp_path):  # noqa: F811
    overrides = [o for o in corpus_setup["overrides"] if not o.startswith("train.max_steps=")] + [
        "train.random_depth.distribution=uniform",
        "train.flop_budget=1e10",
        "eval.interval=100",
    ]
    run, _ = run_quietly(smoke_config(fixture_env, tmp_path / "a", *overrides))
    rows = [r for r in read_metrics(run) if "train/depth" in r]
    per_step = [b["flops"] - a["flops"] for a, b in zip(rows, rows[1:])]
    spent = rows[-1]["flops"]
    assert abs(spent - 1e10) <= max(per_step) / 2
    assert len(set(per_step)) > 1  # the steps did differ in cost
