"""The GSPO loop end to end on the toy benchmark: run dir, checkpoint, DDP, and the reward rise."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from gspo_fixtures import (
    CONFIG_DIR,
    gspo_config,
    make_toy_act_hrm_checkpoint,
    make_toy_checkpoint,
)
from hydra import compose, initialize_config_dir
from preemption import preempt_launcher
from safetensors.torch import load_file

from hrm_codegen.data.prompts import format_prompt
from hrm_codegen.generation import encode_prompt, generate_ids
from hrm_codegen.model import load_model
from hrm_codegen.rl import GSPOLoop, train_gspo
from hrm_codegen.rl import loop as loop_module
from hrm_codegen.rl.gspo import token_log_probs
from hrm_codegen.rl.loop import GSPOConfigError, forced_segments
from hrm_codegen.rl.rewards import Reward
from hrm_codegen.training.checkpointing import CheckpointError
from hrm_codegen.training.logging import read_metrics
from hrm_codegen.training.plot import plot_runs

LOGGED = (
    "train/reward_mean",
    "train/reward_std",
    "train/groups_with_signal",
    "train/clip_fraction",
    "train/kl",
    "train/completion_len",
    "train/gen_samples_per_s",
    "train/exec_samples_per_s",
    "train/update_samples_per_s",
    "tokens_seen",
)


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    return make_toy_checkpoint(tmp_path_factory.mktemp("toy_ckpt"))


def run_quietly(cfg) -> Path:
    with contextlib.redirect_stdout(io.StringIO()):
        return train_gspo(cfg)


def test_loop_writes_a_run_dir_that_plots_and_loads(toy_checkpoint, tmp_path):
    run_dir = run_quietly(gspo_config(toy_checkpoint, tmp_path / "run"))
    rows = [row for row in read_metrics(run_dir) if "train/reward_mean" in row]
    assert [row["step"] for row in rows] == [1, 2]
    for key in LOGGED:
        assert all(key in row for row in rows), key
    assert all(0 <= row["train/groups_with_signal"] <= 1 for row in rows)
    assert rows[1]["tokens_seen"] > rows[0]["tokens_seen"] > 0
    model = load_model(run_dir / "checkpoint")
    state = json.loads((run_dir / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["loop"] == "gspo"
    assert (run_dir / "checkpoint" / "tokenizer.json").is_file()
    assert "type: transformer" in (run_dir / "config.yaml").read_text()
    changed = any(
        not torch.equal(p, q)
        for p, q in zip(model.parameters(), load_model(toy_checkpoint).parameters())
    )
    assert any(row["train/updates_skipped"] == 0 for row in rows)  # the fixture gives signal
    assert changed
    assert plot_runs([run_dir], tmp_path / "plot.png").is_file()


def test_rank_shares_cover_each_step_once(toy_checkpoint, tmp_path):
    cfg = gspo_config(toy_checkpoint, tmp_path / "run", "gspo.tasks_per_step=4")
    loop = GSPOLoop(cfg)
    loop.world = 2
    shares = []
    for rank in (0, 1):
        loop.rank = rank
        shares.append([[t.task_id for t in loop.step_tasks(step)] for step in range(8)])
    for step in range(8):
        ids = shares[0][step] + shares[1][step]
        assert len(ids) == 4 and len(set(ids)) == 4
    # the first 5 steps (20 of the 23 tasks) read one seeded permutation: no task twice
    first_epoch = [i for step in range(5) for i in shares[0][step] + shares[1][step]]
    assert len(set(first_epoch)) == 20


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gspo.group_size=1", "at least 2"),
        ("gspo.eps_low=1.5", "eps_low"),
        ("gspo.temperature=0", "temperature"),
        ("gspo.tasks_per_step=0", "tasks_per_step"),
    ],
)
def test_bad_settings_are_named(toy_checkpoint, tmp_path, override, message):
    with pytest.raises(GSPOConfigError, match=message):
        GSPOLoop(gspo_config(toy_checkpoint, tmp_path / "run", override))


def test_missing_init_from_is_named(tmp_path):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "codegen_base",
            overrides=["experiment=gspo_toy", f"run_dir={tmp_path}", "init_from=null"],
        )
    with pytest.raises(GSPOConfigError, match="init_from"):
        GSPOLoop(cfg)


# ------------------------------------------------------------------------------ ACT halting


def test_an_act_hrm_samples_and_scores_each_prompt_at_the_segments_generation_decides(
    tmp_path, monkeypatch
):
    (tmp_path / "act").mkdir()
    ckpt = make_toy_act_hrm_checkpoint(tmp_path / "act")
    overrides = ("gspo.tasks_per_step=4", "gspo.steps_per_generation=2", "gspo.max_new_tokens=12")
    loop = GSPOLoop(gspo_config(ckpt, tmp_path / "run", *overrides))
    assert loop.act
    # Rewards 1, 0, 1, 0 in every group: each has signal, whatever the untrained model writes.
    monkeypatch.setattr(
        loop_module,
        "compute_rewards",
        lambda tasks, completions, config, truncated=None: [
            Reward(float(i % 2), bool(i % 2), "stub") for i in range(len(tasks))
        ],
    )
    calls, batches = [], []
    objective, sample = loop_module.gspo_objective, loop.sample

    def spy_objective(logp_new, logp_old, *args, **kwargs):
        out = objective(logp_new, logp_old, *args, **kwargs)
        calls.append((logp_old, out))
        return out

    monkeypatch.setattr(loop_module, "gspo_objective", spy_objective)
    monkeypatch.setattr(
        loop, "sample", lambda *a, **k: batches.append(sample(*a, **k)) or batches[-1]
    )
    before = load_model(ckpt).eval()
    metrics = loop.step_once()
    (batch,) = batches
    group = loop.settings.group_size

    # Sampling: each prompt's count is the one generate_ids decides for that prompt alone, and its
    # rows are the tokens generate_ids samples for it (rows are seeded by prompt and sample).
    counts = batch.segments[::group].tolist()
    assert len(set(counts)) > 1, counts  # the fixture's Q head splits the prompts
    decided = []
    prepare = before.prepare_for_decoding
    monkeypatch.setattr(
        before, "prepare_for_decoding", lambda *a: decided.append(prepare(*a)) or decided[-1]
    )
    tok = loop.tokenizer
    for p, task in enumerate(batch.tasks[::group]):
        prompt = encode_prompt(tok, format_prompt(task))
        (alone,) = generate_ids(
            before,
            [prompt],
            max_new_tokens=loop.settings.max_new_tokens,
            num_samples=group,
            do_sample=True,
            temperature=loop.settings.temperature,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            stop=loop.stop,
            tokenizer=tok,
            seed=int(loop.cfg.seed) * 7919,
            batch_size=loop.settings.generation_batch_size,
        )
        assert decided[-1] == counts[p]
        for j, tokens in enumerate(alone):
            row = p * group + j
            start = len(prompt) - 1
            sampled = batch.targets[row, start : start + len(tokens)].tolist()
            assert sampled == tokens
    assert metrics["train/act_segments"] == pytest.approx(sum(counts) / len(counts))

    # Scoring: the old policy's log-probs are each row's at its own count, not at another one.
    (first_old, first), (_, second) = calls  # one micro-batch, two updates
    for row in range(batch.input_ids.shape[0]):
        n = int(batch.mask[row].sum())
        start = int(batch.mask[row].nonzero()[0])
        ids, targets = batch.input_ids[row : row + 1], batch.targets[row : row + 1]
        at = {}
        for count in (1, 2):
            with torch.no_grad(), forced_segments(before, count):
                logits = before(ids).logits
            at[count] = token_log_probs(logits, targets)[0, start : start + n]
        own = int(batch.segments[row])
        other = 1 if own == 2 else 2
        torch.testing.assert_close(first_old[row, start : start + n], at[own], atol=1e-5, rtol=0)
        assert (first_old[row, start : start + n] - at[other]).abs().max() > 1e-3
    # ... and the policy's are taken the same way: the first update is exactly on policy.
    assert torch.equal(first.ratio, torch.ones_like(first.ratio))
    assert not torch.equal(second.ratio, torch.ones_like(second.ratio))  # the first step moved it
    assert metrics["train/updates_skipped"] == 0 and math.isfinite(metrics["train/loss"])
    changed = [
        name
        for name, param in loop.model.named_parameters()
        if not torch.equal(param, before.get_parameter(name))
    ]
    assert any(name.startswith("lm_head") for name in changed), changed


# ------------------------------------------------------------------------------ resume, SIGTERM, best/

# beta > 0: the KL term's reference must stay the starting model across a resume
RESUME = ("train.max_steps=3", "gspo.beta=0.1", "log_interval=1")


def test_a_sigterm_saves_that_step_and_resume_gives_the_uninterrupted_weights(
    toy_checkpoint, tmp_path, monkeypatch
):
    """In process: the sandbox call of step 2 sends this process SIGTERM; the run finishes step
    2, checkpoints it and raises TrainingInterrupted; resume=true then ends on bitwise the
    weights and AdamW state of a run never interrupted."""
    from hrm_codegen.training.preemption import TrainingInterrupted

    straight = run_quietly(gspo_config(toy_checkpoint, tmp_path / "straight", *RESUME))

    calls = []
    rewards = loop_module.compute_rewards

    def preempt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return rewards(*args, **kwargs)

    run_dir = tmp_path / "split"
    with monkeypatch.context() as patch:
        patch.setattr(loop_module, "compute_rewards", preempt)
        with pytest.raises(TrainingInterrupted) as info:
            run_quietly(gspo_config(toy_checkpoint, run_dir, *RESUME))
    assert info.value.step == 2 and info.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again
    state = json.loads((run_dir / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["loop"] == "gspo" and len(state["rng"]) == 1
    at_two = load_file(run_dir / "checkpoint" / "model.safetensors")

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        train_gspo(gspo_config(toy_checkpoint, run_dir, *RESUME, "resume=true"))
    assert f"resumed {run_dir / 'checkpoint'} at step 2" in out.getvalue()
    assert [row["step"] for row in read_metrics(run_dir) if "train/reward_mean" in row] == [1, 2, 3]
    a = load_file(straight / "checkpoint" / "model.safetensors")
    b = load_file(run_dir / "checkpoint" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(b[key], at_two[key]) for key in b)  # step 3 did update
    opt_a = torch.load(straight / "checkpoint" / "optimizer.pt", weights_only=False)["optimizer"]
    opt_b = torch.load(run_dir / "checkpoint" / "optimizer.pt", weights_only=False)["optimizer"]
    for index, moments in opt_a["state"].items():
        assert torch.equal(moments["exp_avg_sq"], opt_b["state"][index]["exp_avg_sq"])

    # a resume that would read another task stream is refused
    with pytest.raises(CheckpointError, match="another task stream"):
        GSPOLoop(gspo_config(toy_checkpoint, run_dir, *RESUME, "resume=true", "gspo.limit=10"))


def test_best_keeps_the_step_with_the_best_metric_beside_the_latest(toy_checkpoint, tmp_path):
    run_dir = tmp_path / "best"
    overrides = ("train.max_steps=3", "train.best_metric=train/reward_mean", "log_interval=1")
    run_quietly(gspo_config(toy_checkpoint, run_dir, *overrides))
    rows = [row for row in read_metrics(run_dir) if "train/reward_mean" in row]
    best_row = max(rows, key=lambda row: row["train/reward_mean"])  # the first of equal ones
    best = json.loads((run_dir / "best" / "trainer_state.json").read_text())
    assert best["step"] == best_row["step"]
    assert best["best"]["mode"] == "max"
    assert best["best"]["value"] == pytest.approx(best_row["train/reward_mean"])
    assert json.loads((run_dir / "checkpoint" / "trainer_state.json").read_text())["step"] == 3
    folders = {p.name for p in (run_dir / "checkpoints").iterdir()}
    assert folders == {f"step_{best_row['step']:07d}", "step_0000003"}
    assert load_model(run_dir / "best").config.hidden_size == 48  # every loader takes it


def test_experiment_gspo_keeps_best_by_pass_at_1_and_says_when_nothing_reported_it(
    toy_checkpoint, tmp_path
):
    cfg = gspo_config(toy_checkpoint, tmp_path / "run", "train.max_steps=1")
    assert cfg.train.best_metric == "val/pass@1"  # gspo.eval is off in these tests
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_dir = train_gspo(cfg)
    assert "no evaluation reported train.best_metric=val/pass@1" in out.getvalue()
    assert not (run_dir / "best").exists() and (run_dir / "checkpoint").is_dir()


@pytest.mark.slow  # a real launcher process: ~30 s on 2 busy cores
def test_sigterm_to_a_gspo_process_exits_143_and_resume_continues(toy_checkpoint, tmp_path):
    """As a scheduler preempts: the launcher finishes the step, checkpoints it, exits 128 + 15,
    and `resume=true` continues from exactly that step."""
    run_dir = tmp_path / "preempted"
    overrides = [
        "experiment=gspo_toy",
        f"init_from={toy_checkpoint}",
        f"run_dir={run_dir}",
        "logger=jsonl",
        "train.max_steps=1000",  # never reached: the signal stops it
        "gspo.tasks_per_step=2",
        "gspo.group_size=4",
        "gspo.max_new_tokens=16",
        "gspo.eval.interval=0",
        "gspo.reward.workers=1",
        "checkpoint_interval=1000",
    ]
    preempt_launcher(overrides, run_dir, "GSPO")
    last_logged = [row["step"] for row in read_metrics(run_dir) if "train/reward_mean" in row][-1]
    state = json.loads((run_dir / "checkpoint" / "trainer_state.json").read_text())
    assert 2 <= state["step"] == last_logged < 1000
    step = state["step"]
    resumed = gspo_config(
        toy_checkpoint,
        run_dir,
        "train.max_steps=1000",
        f"train.stop_at_step={step + 1}",
        "gspo.max_new_tokens=16",
        "gspo.reward.workers=1",
        "checkpoint_interval=1000",
        "resume=true",
    )
    run_quietly(resumed)
    assert (
        json.loads((run_dir / "checkpoint" / "trainer_state.json").read_text())["step"] == step + 1
    )


# ------------------------------------------------------------------------------ DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, ckpt: str, run_dir: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        loop = GSPOLoop(gspo_config(Path(ckpt), Path(run_dir), "gspo.tasks_per_step=4"))
        with contextlib.redirect_stdout(io.StringIO()):
            loop.run()
        params = {n: p.detach().clone() for n, p in loop.model.named_parameters()}
        torch.save({"params": params, "seen": loop.seen_task_ids}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned ranks plus a one-process reference run, ~40 s on 2 busy cores
def test_ddp_two_ranks_split_tasks_agree_and_match_one_process(toy_checkpoint, tmp_path):
    port = _free_port()
    mp.spawn(
        _ddp_worker,
        args=(port, str(toy_checkpoint), str(tmp_path / "ddp"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for step in range(2):
        first, second = ranks[0]["seen"][step], ranks[1]["seen"][step]
        assert len(first) == len(second) == 2 and not set(first) & set(second)
    for name, tensor in ranks[0]["params"].items():
        assert torch.equal(tensor, ranks[1]["params"][name]), name
    # One process taking the same 4 tasks per step: samples are seeded per (prompt, sample), so it
    # draws the same groups, and the summed per-rank gradients equal its global mean.
    single = run_quietly(gspo_config(toy_checkpoint, tmp_path / "single", "gspo.tasks_per_step=4"))
    reference = load_file(single / "checkpoint" / "model.safetensors")
    ddp_saved = load_file(tmp_path / "ddp" / "checkpoint" / "model.safetensors")
    moved = False
    initial = load_model(toy_checkpoint).state_dict()
    for name, tensor in reference.items():
        # Adam divides by sqrt(v): a gradient near 0 turns float-order noise into ~1e-5 moves
        torch.testing.assert_close(ddp_saved[name], tensor, atol=1e-4, rtol=0)
        moved |= not torch.equal(tensor, initial[name])
    assert moved, "no update happened: the test would pass trivially"


# ------------------------------------------------------------------------------ the toy run


@pytest.mark.slow  # SFT (trainer) then 30 GSPO steps: ~2-4 minutes on 2 cores
def test_toy_sft_then_gspo_raises_the_reward(tmp_path, monkeypatch):
    from hrm_codegen.training import train

    monkeypatch.setenv("HRM_CODEGEN_HOME", str(tmp_path / "home"))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        sft_cfg = compose(
            "codegen_base",
            overrides=["experiment=gspo_toy_sft", f"run_dir={tmp_path / 'sft'}", "logger=jsonl"],
        )
    with contextlib.redirect_stdout(io.StringIO()):
        sft_dir = train(sft_cfg)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "codegen_base",
            overrides=[
                "experiment=gspo_toy",
                f"init_from={sft_dir}",
                f"run_dir={tmp_path / 'gspo'}",
                "logger=jsonl",
                "gspo.eval.interval=0",
            ],
        )
    run_dir = run_quietly(cfg)
    rewards = [
        row["train/reward_mean"] for row in read_metrics(run_dir) if "train/reward_mean" in row
    ]
    assert len(rewards) == 30
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.15, rewards
