"""Pieces of the trainer on their own: schedule, optimiser, EMA, FLOPs, checkpoints, data order."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from hrm_codegen.model import HRMConfig, HRMForCausalLM, TransformerConfig, TransformerForCausalLM
from hrm_codegen.model.flops import hrm_module_schedule
from hrm_codegen.run_layout import CheckpointError, resolve_checkpoint_dir
from hrm_codegen.training.checkpointing import (
    check_architecture,
    load_model_weights,
    rng_state,
    set_rng_state,
)
from hrm_codegen.training.data import BatchOrder
from hrm_codegen.training.ema import EMA
from hrm_codegen.training.flops import cpu_peak_flops, flops_count
from hrm_codegen.training.launch import extra_hydra_overrides
from hrm_codegen.training.logging import RunLogger, read_metrics
from hrm_codegen.training.optim import build_optimizer, lr_at_step


def tiny_hrm(**overrides) -> HRMForCausalLM:
    fields = dict(vocab_size=97, hidden_size=32, num_heads=2, H_layers=1, L_layers=2)
    fields.update(H_cycles=2, L_cycles=2, max_seq_len=64)
    fields.update(overrides)
    return HRMForCausalLM(HRMConfig(**fields))


def tiny_transformer(**overrides) -> TransformerForCausalLM:
    fields = dict(vocab_size=97, hidden_size=32, num_heads=2, n_layers=3, max_seq_len=64)
    fields.update(overrides)
    return TransformerForCausalLM(TransformerConfig(**fields))


# ----------------------------------------------------------------------------- schedule, AdamW


def test_lr_warms_up_linearly_then_follows_the_cosine_to_the_floor():
    kw = dict(base_lr=1e-3, warmup_steps=10, max_steps=110, min_ratio=0.1)
    assert lr_at_step(0, **kw) == pytest.approx(1e-4)
    assert lr_at_step(4, **kw) == pytest.approx(5e-4)
    assert lr_at_step(9, **kw) == pytest.approx(1e-3)
    assert lr_at_step(10, **kw) == pytest.approx(1e-3)
    assert lr_at_step(60, **kw) == pytest.approx(1e-4 + 0.9e-3 * 0.5)  # half way: cos = 0
    assert lr_at_step(110, **kw) == pytest.approx(1e-4)
    assert lr_at_step(500, **kw) == pytest.approx(1e-4)  # stays at the floor past max_steps
    after_warmup = [lr_at_step(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(after_warmup, after_warmup[1:]))


def test_adamw_decays_matrices_but_not_biases_and_decouples_decay_from_the_gradient():
    layer = torch.nn.Linear(4, 3, bias=True)
    optimizer = build_optimizer(layer, lr=0.1, weight_decay=0.5, betas=(0.9, 0.95))
    decay_group, plain_group = optimizer.param_groups
    assert [p.shape for p in decay_group["params"]] == [torch.Size([3, 4])]
    assert [p.shape for p in plain_group["params"]] == [torch.Size([3])]
    assert plain_group["weight_decay"] == 0.0
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    layer.weight.grad = torch.zeros_like(layer.weight)  # zero gradient: Adam's step is 0
    layer.bias.grad = torch.zeros_like(layer.bias)
    optimizer.step()
    torch.testing.assert_close(layer.weight.detach(), weight * (1 - 0.1 * 0.5))
    torch.testing.assert_close(layer.bias.detach(), bias)


# ----------------------------------------------------------------------------- EMA


def test_ema_follows_the_warmed_up_decay_and_swaps_weights_in_and_out():
    layer = torch.nn.Linear(2, 2, bias=False)
    start = layer.weight.detach().clone()
    ema = EMA(layer, decay=0.9)
    expected = start.clone()
    for step in range(5):
        with torch.no_grad():
            layer.weight.add_(1.0)
        decay = min(0.9, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * layer.weight.detach()
        ema.update(layer)
    torch.testing.assert_close(ema.state_dict()["weight"], expected)
    trained = layer.weight.detach().clone()
    with ema.applied_to(layer):
        torch.testing.assert_close(layer.weight.detach(), expected)
    torch.testing.assert_close(layer.weight.detach(), trained)
    with pytest.raises(ValueError, match="ema_decay must be in"):
        EMA(layer, decay=1.0)


# ----------------------------------------------------------------------------- FLOPs


def test_transformer_flops_are_six_n_plus_the_palm_attention_term():
    model = tiny_transformer()
    count = flops_count(model)
    head = 32 * 97
    body = model.num_parameters(exclude_embeddings=True)
    assert count.block_params * 3 == body
    n = body + head  # the embedding lookup costs nothing
    assert count.training_flops_per_token(16) == pytest.approx(6 * n + 12 * 3 * 32 * 16)


@pytest.mark.parametrize("bp_steps, backward_blocks", [(2, 1 + 2), (3, 2 + 2 + 1), (6, 10)])
def test_hrm_flops_count_every_block_application_forward_and_only_the_gradient_part_backward(
    bp_steps, backward_blocks
):
    model = tiny_hrm(bp_steps=bp_steps)  # schedule L L H L L H with L_layers=2, H_layers=1
    assert hrm_module_schedule(2, 2) == ["L", "L", "H", "L", "L", "H"]
    count = flops_count(model)
    assert count.forward_blocks == 2 * (2 * 2 + 1)
    assert count.backward_blocks == backward_blocks
    block = model.num_parameters(exclude_embeddings=True) // 3
    assert count.block_params == block
    seq, head = 8, 32 * 97
    expected = (2 * block + 4 * seq * 32) * 10 + 2 * head
    expected += (4 * block + 8 * seq * 32) * backward_blocks + 4 * head
    assert count.training_flops_per_token(seq) == pytest.approx(expected)


def test_hrm_flops_with_act_count_every_segment_and_the_gradient_free_bootstrap_segment():
    plain = flops_count(tiny_hrm()).training_flops_per_token(8)
    single = flops_count(tiny_hrm(enable_q_head=True, halt_max_steps=1))
    assert (single.segments, single.bootstrap_segments) == (1, 0)
    act = flops_count(tiny_hrm(enable_q_head=True, halt_max_steps=3))
    assert (act.segments, act.bootstrap_segments) == (3, 1)
    # the q head (2 x hidden weights) is left out of the count, as the embedding is
    block = tiny_hrm().num_parameters(exclude_embeddings=True) // 3
    blocks_forward = (2 * block + 4 * 8 * 32) * 10  # 10 block applications
    head = 2 * 32 * 97  # the loss_plateau look ahead also runs the LM head forward
    assert act.segment_flops_per_token(8) == pytest.approx(plain)
    assert act.lookahead_flops_per_token(8) == pytest.approx(blocks_forward + head)
    assert act.training_flops_per_token(8) == pytest.approx(3 * plain + blocks_forward + head)
    exact = flops_count(tiny_hrm(enable_q_head=True, halt_max_steps=3, halt_target="exact"))
    assert exact.lookahead_flops_per_token(8) == pytest.approx(blocks_forward)  # Q head only
    assert single.lookahead_flops_per_token(8) == 0


def test_cpu_peak_estimate_reads_vector_width_and_clock_from_cpuinfo():
    avx512 = "model name\t: Some CPU @ 2.00GHz\nflags\t\t: fpu avx2 fma avx512f\n"
    assert cpu_peak_flops(avx512, threads=4) == pytest.approx(4 * 2.0e9 * 64)
    avx2 = "model name\t: AMD EPYC\ncpu MHz\t\t: 2500.000\nflags\t\t: avx2 fma\n"
    assert cpu_peak_flops(avx2, threads=2) == pytest.approx(2 * 2.5e9 * 32)
    assert cpu_peak_flops("flags: sse2\n", threads=1) is None  # no clock: unknown


# ----------------------------------------------------------------------------- checkpoints


def test_rng_states_round_trip_through_json():
    state = json.loads(json.dumps(rng_state()))
    first = (random.random(), float(np.random.rand()), torch.rand(3).tolist())
    set_rng_state(state)
    assert (random.random(), float(np.random.rand()), torch.rand(3).tolist()) == first


def test_weights_from_another_architecture_are_refused_with_the_differences(tmp_path):
    hrm = tiny_hrm()
    hrm.save_pretrained(tmp_path / "hrm")
    with pytest.raises(
        CheckpointError, match="holds a 'hrm' model but this run builds a 'transformer'"
    ):
        load_model_weights(tmp_path / "hrm", tiny_transformer(), raw=False)
    with pytest.raises(CheckpointError, match="hidden_size: checkpoint 32, config 64"):
        check_architecture(tmp_path / "hrm", tiny_hrm(hidden_size=64))
    other = tiny_hrm(attn_impl="sdpa", bp_steps=3)  # runtime-only fields may differ
    load_model_weights(tmp_path / "hrm", other, raw=False)
    for name, tensor in hrm.state_dict().items():
        torch.testing.assert_close(other.state_dict()[name], tensor)


def test_checkpoint_paths_accept_run_dirs_and_name_what_is_missing(tmp_path):
    tiny_hrm().save_pretrained(tmp_path / "run" / "checkpoint")
    assert resolve_checkpoint_dir(tmp_path / "run") == tmp_path / "run" / "checkpoint"
    assert (
        resolve_checkpoint_dir(tmp_path / "run" / "checkpoint") == tmp_path / "run" / "checkpoint"
    )
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        resolve_checkpoint_dir(tmp_path)


def test_a_folder_of_runs_resolves_to_its_most_recently_saved_run(tmp_path):
    import os

    runs = tmp_path / "quickstart"
    for age, name in [(100, "2026-01-02_00-00-00"), (200, "2026-01-01_00-00-00")]:
        ckpt = runs / name / "checkpoint"
        tiny_hrm().save_pretrained(ckpt)
        (ckpt / "trainer_state.json").write_text("{}")
        stamp = 1_700_000_000 - age
        os.utime(ckpt / "trainer_state.json", (stamp, stamp))
    (runs / "2026-01-03_00-00-00").mkdir()  # a later run that never saved: not a candidate
    assert resolve_checkpoint_dir(runs) == runs / "2026-01-02_00-00-00" / "checkpoint"


# ----------------------------------------------------------------------------- data order


def test_batch_order_visits_every_sample_once_per_epoch_and_resumes_exactly():
    order = BatchOrder(10, seed=3)
    first_epoch = order.take(4) + order.take(4) + order.take(2)
    assert sorted(first_epoch) == list(range(10))
    straight = BatchOrder(10, seed=3)
    straight.take(7)
    expected = straight.take(9)  # runs over the epoch boundary
    paused = BatchOrder(10, seed=3)
    paused.take(7)
    state = paused.state_dict()
    resumed = BatchOrder(10, seed=3, epoch=state["epoch"], offset=state["offset"])
    assert resumed.take(9) == expected
    assert BatchOrder(10, seed=4).take(10) != first_epoch


# ----------------------------------------------------------------------------- launcher, logging


def test_dry_runs_and_worker_ranks_keep_hydra_from_creating_run_dirs():
    assert extra_hydra_overrides(["experiment=smoke"], env={}) == []
    dry = extra_hydra_overrides(["experiment=smoke", "dry_run=true"], env={})
    assert "hydra.output_subdir=null" in dry and "hydra.run.dir=." in dry
    worker = extra_hydra_overrides(["hydra.run.dir=/tmp/x"], env={"RANK": "1"})
    assert "hydra.output_subdir=null" in worker
    assert not any(o.startswith("hydra.run.dir=") for o in worker)  # the user's choice stays
    assert extra_hydra_overrides([], env={"RANK": "0"}) == []


def test_metrics_are_appended_as_json_lines_with_non_finite_values_spelled_out(tmp_path):
    logger = RunLogger(
        tmp_path,
        {"name": "jsonl", "progress_bar": False},
        config={},
        is_main=True,
        total_steps=2,
        initial_step=0,
        run_name="t",
    )
    logger.log({"train/loss": torch.tensor(2.5), "tokens_seen": 10}, step=1)
    logger.log({"train/loss": math.nan, "tokens_seen": 20}, step=2)
    logger.close()
    rows = read_metrics(tmp_path)
    assert rows == [
        {"step": 1, "train/loss": 2.5, "tokens_seen": 10},
        {"step": 2, "train/loss": "nan", "tokens_seen": 20},
    ]
    with pytest.raises(FileNotFoundError, match="not a training run dir"):
        read_metrics(tmp_path / "missing")
    with pytest.raises(ValueError, match="logger.name='tensorboard'"):
        RunLogger(
            tmp_path,
            {"name": "tensorboard"},
            config={},
            is_main=True,
            total_steps=1,
            initial_step=0,
            run_name="t",
        )


def test_train_settings_read_the_train_block_once_and_give_the_configs_learning_rates():
    from omegaconf import OmegaConf

    from hrm_codegen.training.optim import lr_from_config
    from hrm_codegen.training.settings import TrainSettings

    block = OmegaConf.create(
        {"max_steps": 40, "micro_batch_size": 4, "grad_accum_steps": 2, "lr": 1e-3,
         "lr_min_ratio": 0.1, "warmup_steps": 5, "grad_clip": None, "ema_decay": 0.99,
         "stop_at_step": None, "keep_checkpoints": [8, 16], "best_metric": "val/bpb"}
    )  # fmt: skip
    for schedule in ("cosine", "wsd"):
        block.schedule = schedule
        settings = TrainSettings.from_config(block)
        assert [settings.lr(step) for step in range(40)] == [
            lr_from_config(step, block) for step in range(40)
        ]
    assert settings.stop_at == 40 and settings.grad_clip is None and settings.ema_decay == 0.99
    assert settings.keep_checkpoints == (8, 16) and settings.micro_batch_size == 4
    block.stop_at_step = 12
    assert TrainSettings.from_config(block).stop_at == 12


def test_one_process_distributed_is_rank_0_of_1_and_its_collectives_are_identities():
    from hrm_codegen.training.distributed import Distributed, DistributedConfigError

    dist = Distributed("cpu")
    assert (dist.rank, dist.world, dist.is_main) == (0, 1, True)
    assert dist.device.type == "cpu"
    assert dist.sum([1, 2.5, torch.tensor(3.0)]) == [1.0, 2.5, 3.0]
    assert dist.agreed_signal(None) is None and dist.agreed_signal(15) == 15
    assert dist.broadcast(["run", None]) == ["run", None] and dist.gather({"a": 1}) == [{"a": 1}]
    model = torch.nn.Linear(2, 1)
    model(torch.ones(1, 2)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    dist.sum_gradients(model.parameters())
    dist.average_gradients(model.parameters())
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    with pytest.raises(DistributedConfigError, match="not one of auto, cpu, cuda"):
        Distributed("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DistributedConfigError, match="no CUDA device is visible"):
            Distributed("cuda")
