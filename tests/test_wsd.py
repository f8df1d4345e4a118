"""Warmup-stable-decay: the schedule, kept checkpoints, cooldowns branched from a long run, and
FLOPs with and without the embedding and LM head.

The key property: a WSD run of S steps from scratch and a branch of a longer WSD run, taken at S's
cooldown start and continued to S steps, log bitwise the same floats. That is what lets one long
run serve every shorter budget (Hägele et al. 2024).
"""

from __future__ import annotations

import json
import math
import shutil

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_bit_exact import corpus_setup  # noqa: F401 (fixture)
from test_training_runs import CONFIG_DIR, fixture_env, run_quietly, smoke_config  # noqa: F401
from test_training_units import tiny_hrm, tiny_transformer

from hrm_codegen.model import load_model
from hrm_codegen.run_layout import CHECKPOINTS_DIR, TRAINER_STATE
from hrm_codegen.training.checkpoint_manager import CheckpointManager
from hrm_codegen.training.checkpointing import KEEP_FILE, kept_checkpoints, prune_checkpoints
from hrm_codegen.training.config_checks import ConfigError, validate_config
from hrm_codegen.training.flops import flops_count
from hrm_codegen.training.logging import read_metrics
from hrm_codegen.training.optim import cooldown_start, lr_at_step, lr_from_config
from hrm_codegen.training.repeat import compare_runs
from hrm_codegen.training.trainer import Trainer

# ----------------------------------------------------------------------------- the schedule


def cosine_before_wsd(step: int, base_lr: float, warmup: int, max_steps: int, ratio: float):
    """lr_at_step as it was before `train.schedule` existed, kept here as the reference."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return base_lr * (ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def test_the_cosine_default_is_unchanged_bit_for_bit():
    kw = dict(base_lr=3e-4, warmup_steps=100, max_steps=2000, min_ratio=0.1)
    table = {0: 3e-6, 49: 1.5e-4, 99: 3e-4, 100: 3e-4, 1050: 1.65e-4, 2000: 3e-5, 5000: 3e-5}
    for step, expected in table.items():
        assert lr_at_step(step, **kw) == pytest.approx(expected, rel=1e-12)
    for step in range(0, 2100, 7):
        reference = cosine_before_wsd(step, 3e-4, 100, 2000, 0.1)
        assert lr_at_step(step, **kw) == reference  # every bit
        assert lr_at_step(step, **kw, schedule="cosine") == reference
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        base = compose("codegen_base")
    assert base.train.schedule == "cosine" and list(base.train.keep_checkpoints) == []
    assert base.branch_from is None
    old_config = OmegaConf.create(
        {"lr": 3e-4, "warmup_steps": 100, "max_steps": 2000, "lr_min_ratio": 0.1}
    )
    assert lr_from_config(1234, base.train) == lr_from_config(1234, old_config)  # no WSD keys


def test_wsd_holds_the_peak_then_cools_down_over_the_last_fraction():
    kw = dict(base_lr=1e-3, warmup_steps=10, max_steps=100, min_ratio=0.1, schedule="wsd")
    assert cooldown_start(100, 0.2) == 80
    assert cooldown_start(8, 0.25) == 6 and cooldown_start(10, 0.25) == 8  # round() of 2.5 is 2
    assert lr_at_step(0, **kw) == pytest.approx(1e-4)  # the same linear warm-up
    assert lr_at_step(9, **kw) == pytest.approx(1e-3)
    assert all(lr_at_step(s, **kw) == 1e-3 for s in range(10, 81))  # exactly the peak
    # 1 - sqrt (the default shape): a quarter of the way down the cooldown, half of the drop
    assert lr_at_step(85, **kw) == pytest.approx(1e-3 * (1 - 0.9 * 0.5))
    assert lr_at_step(85, **kw, cooldown_shape="linear") == pytest.approx(1e-3 * (1 - 0.9 * 0.25))
    assert lr_at_step(99, **kw) == pytest.approx(1e-3 * (1 - 0.9 * math.sqrt(0.95)))
    assert lr_at_step(100, **kw) == pytest.approx(1e-4) == lr_at_step(500, **kw)
    for shape in ("sqrt", "linear"):
        rates = [lr_at_step(s, **kw, cooldown_shape=shape) for s in range(9, 120)]
        assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert all(lr_at_step(s, **kw, cooldown_fraction=0.0) == 1e-3 for s in range(10, 100))
    longer = dict(kw, max_steps=1000)  # the stable phase does not depend on the run's length
    assert all(lr_at_step(s, **kw) == lr_at_step(s, **longer) for s in range(81))


def compose_base(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("codegen_base", overrides=["experiment=smoke", *overrides])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.schedule=linear"], "train.schedule='linear' is not one of"),
        (["train.cooldown_shape=cosine"], "train.cooldown_shape='cosine' is not one of"),
        (["train.cooldown_fraction=1.5"], "train.cooldown_fraction must be in"),
        (["train.keep_checkpoints=[10,99]"], r"names steps \[99\] past train.max_steps=30"),
        (["train.keep_checkpoints=[0]"], r"train.keep_checkpoints\[0\] must be >= 1"),
        (["train.keep_checkpoints=5"], "is not a list of steps"),
        (["train.schedule=wsd", "branch_from=x", "resume=true"], "set branch_from or resume"),
        (["train.schedule=wsd", "branch_from=x", "init_from=y"], "set branch_from or init_from"),
        (["branch_from=x"], "pass train.schedule=wsd"),
    ],
)
def test_schedule_settings_that_cannot_work_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_base(*overrides))


# ----------------------------------------------------------------------------- kept checkpoints


def test_kept_checkpoints_survive_pruning_and_later_managers(tmp_path):
    model = tiny_transformer()
    manager = CheckpointManager(tmp_path, best_metric=None, keep_steps=[2, 4])
    assert manager.keeps(2) and not manager.keeps(3)
    for step in range(1, 6):
        manager.save(step, model, None, {"tokens_seen": step})
    store = tmp_path / CHECKPOINTS_DIR
    names = sorted(p.name for p in store.iterdir())
    assert names == ["step_0000002", "step_0000004", "step_0000005"]
    assert [p.name for p in manager.kept] == ["step_0000002", "step_0000004"]
    assert (store / "step_0000004" / KEEP_FILE).is_file()
    assert manager.latest is not None
    assert manager.latest.resolve() == (store / "step_0000005").resolve()
    # A later manager (a resumed run without keep_checkpoints) and a bare prune keep them too.
    CheckpointManager(tmp_path, best_metric=None).save(6, model, None, {})
    prune_checkpoints(tmp_path)
    assert [p.name for p in kept_checkpoints(tmp_path)] == ["step_0000002", "step_0000004"]
    assert sorted(p.name for p in store.iterdir()) == [
        "step_0000002",
        "step_0000004",
        "step_0000006",
    ]
    # A kept-only save (not the latest) is written and kept; the latest stays where it was.
    kept_only = CheckpointManager(tmp_path, best_metric=None, keep_steps=[7])
    assert kept_only.save(7, model, None, {}, latest=False) == store / "step_0000007"
    assert manager.latest.resolve() == (store / "step_0000006").resolve()


# ----------------------------------------------------------------------------- FLOPs


def test_non_embedding_flops_leave_out_the_lm_head_forward_and_backward():
    model = tiny_transformer()  # d = 32, V = 97, 3 layers
    count = flops_count(model)
    d, vocab = 32, 97
    assert count.head_params == d * vocab  # no bias
    for seq in (8, 16, 64):
        total = count.training_flops_per_token(seq)
        body = count.training_flops_per_token(seq, exclude_embeddings=True)
        assert total - body == pytest.approx(2 * d * vocab * 3)  # forward 1 + backward 2
        n_body = model.num_parameters(exclude_embeddings=True)
        assert body == pytest.approx(6 * n_body + 12 * 3 * d * seq)
    # unchanged: 6·N + the attention term, N counting the head but not the embedding (a lookup)
    n_with_head = model.num_parameters(exclude_embeddings=True) + d * vocab
    assert count.training_flops_per_token(16) == pytest.approx(6 * n_with_head + 12 * 3 * d * 16)
    assert count.non_embedding_flops(1e9, 1000) == pytest.approx(1e9 - 1000 * 6 * d * vocab)
    act = flops_count(tiny_hrm(enable_q_head=True, halt_max_steps=3))
    gap = act.training_flops_per_token(8) - act.training_flops_per_token(8, exclude_embeddings=True)
    assert gap == pytest.approx(act.head_flops_per_token(segments=3))  # every segment + look-ahead
    assert act.head_flops_per_token(1) == pytest.approx(6 * d * 97 + 2 * d * 97)


# ----------------------------------------------------------------------------- branching


def wsd_overrides(corpus_setup, max_steps: int, *extra: str) -> list[str]:  # noqa: F811
    """The bit-exact corpus runs (one thread, absolute warm-up) as WSD runs of `max_steps`."""
    base = [o for o in corpus_setup["overrides"] if not o.startswith("train.max_steps=")]
    return [
        *base,
        f"train.max_steps={max_steps}",
        "train.schedule=wsd",
        "train.cooldown_fraction=0.25",
        "train.best_metric=null",  # pruning then depends on keep_checkpoints alone
        *extra,
    ]


@pytest.fixture(scope="module")
def branched(fixture_env, corpus_setup, tmp_path_factory):  # noqa: F811
    """S = 8 steps from scratch (cooldown from step 6); a 12-step run (cooldown from step 9)
    keeping step 6 and stopped at 7; S as a branch of it at 6."""
    root = tmp_path_factory.mktemp("wsd")
    parent, _ = run_quietly(
        smoke_config(
            fixture_env,
            root / "parent",
            *wsd_overrides(corpus_setup, 12, "train.keep_checkpoints=[6]", "train.stop_at_step=7"),
        )
    )
    scratch, _ = run_quietly(
        smoke_config(fixture_env, root / "scratch", *wsd_overrides(corpus_setup, 8))
    )
    kept = parent / CHECKPOINTS_DIR / "step_0000006"
    branch, stdout = run_quietly(
        smoke_config(
            fixture_env, root / "branch", *wsd_overrides(corpus_setup, 8, f"branch_from={kept}")
        )
    )
    return {"parent": parent, "scratch": scratch, "branch": branch, "kept": kept, "out": stdout}


def test_a_branch_at_the_cooldown_start_logs_what_a_run_from_scratch_logs(branched):
    scratch, branch = branched["scratch"], branched["branch"]
    result = compare_runs(scratch, branch)
    assert result.identical, result.first_difference or result.only_in_one
    assert result.compared > 50
    rows = {row["step"]: row for row in read_metrics(branch) if "train/lr" in row}
    assert sorted(rows) == list(range(1, 9))  # steps 1-6 copied from the parent, 7-8 its own
    assert rows[6]["train/lr"] == rows[7]["train/lr"] == 3e-3  # peak until the cooldown start
    assert rows[8]["train/lr"] < 3e-3  # the cooldown ran
    assert "flops_no_embed" in rows[8] and rows[8]["flops_no_embed"] < rows[8]["flops"]
    assert "branched from" in branched["out"] and "up to step 6 copied" in branched["out"]
    first = read_metrics(branch)[0]  # the parent's first record (its provenance) heads the branch
    assert first["step"] == 0 and "provenance/corpus_fingerprint" in first


def test_the_long_run_kept_its_checkpoint_and_pruned_the_others(branched):
    names = sorted(p.name for p in (branched["parent"] / CHECKPOINTS_DIR).iterdir())
    assert names == ["step_0000006", "step_0000007"]  # step 4 was pruned, 6 kept, 7 latest
    assert [p.name for p in kept_checkpoints(branched["parent"])] == ["step_0000006"]


def test_both_flop_counters_are_checkpointed_and_continue_on_resume(
    fixture_env,  # noqa: F811
    corpus_setup,  # noqa: F811
    branched,
    tmp_path,
):
    scratch = branched["scratch"]
    parent = tmp_path / "parent"  # a copy: the other tests see the long run as it was
    shutil.copytree(branched["parent"], parent, symlinks=True)
    state = json.loads((scratch / "checkpoint" / TRAINER_STATE).read_text())
    head = flops_count(load_model(scratch / "checkpoint")).head_params
    expected = state["flops_seen"] - state["tokens_seen"] * 6 * head
    assert state["flops_no_embed_seen"] == pytest.approx(expected, rel=1e-12)
    # The parent resumed for one step spent that step's FLOPs on the same batch as the run from
    # scratch (the learning rate differs, not the data): the counters agree bit for bit.
    run_quietly(
        smoke_config(
            fixture_env,
            parent,
            *wsd_overrides(corpus_setup, 12, "resume=true", "train.stop_at_step=8"),
        )
    )
    resumed = {row["step"]: row for row in read_metrics(parent) if "train/loss" in row}
    fresh = {row["step"]: row for row in read_metrics(scratch) if "train/loss" in row}
    for key in ("flops", "flops_no_embed", "tokens_seen"):
        assert resumed[8][key] == fresh[8][key]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["train.max_steps=6"], "past this run's cooldown start 4"),
        (["model.hidden_size=32"], "another architecture"),
        (["data.max_seq_len=32"], "same data"),
        (["train.lr=1e-3"], "its run trained step 0 at lr=0.001"),
        (["train.warmup_steps=2"], "its run trained step 0 at lr"),
        (["seed=1"], "pass seed=0"),
    ],
)
def test_a_branch_that_would_not_be_its_own_history_is_refused(
    fixture_env,  # noqa: F811
    corpus_setup,  # noqa: F811
    branched,
    tmp_path,
    extra,
    message,
):
    overrides = wsd_overrides(corpus_setup, 8, f"branch_from={branched['kept']}", *extra)
    overrides = [o for o in overrides if o.split("=")[0] not in {e.split("=")[0] for e in extra}]
    overrides += extra
    with pytest.raises(ConfigError, match=message):
        Trainer(smoke_config(fixture_env, tmp_path / "refused", *overrides))
    assert not (tmp_path / "refused" / "metrics.jsonl").exists()


def test_a_branch_never_writes_into_an_existing_run(fixture_env, corpus_setup, branched):  # noqa: F811
    kept = branched["kept"]
    for run_dir in (branched["parent"], branched["scratch"]):
        cfg = smoke_config(
            fixture_env, run_dir, *wsd_overrides(corpus_setup, 8, f"branch_from={kept}")
        )
        with pytest.raises(ConfigError, match="a branch"):
            Trainer(cfg)
