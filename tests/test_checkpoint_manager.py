"""The checkpoint manager: latest and best pointers, pruning, restore, and crash safety.

The crash tests kill real child processes (forked, so they start in milliseconds) with SIGKILL:
once before every filesystem operation of a save, and at random moments of a save loop. After
every kill, the run dir must hold a complete checkpoint that `resume` finds and loads.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hrm_codegen.model import TransformerConfig, TransformerForCausalLM, load_model
from hrm_codegen.run_layout import (
    BEST_DIR,
    CHECKPOINT_DIR,
    CHECKPOINTS_DIR,
    TRAINER_STATE,
    CheckpointError,
    latest_checkpoint,
    resolve_checkpoint_dir,
)
from hrm_codegen.training.checkpoint_manager import CheckpointManager, infer_best_mode
from hrm_codegen.training.checkpointing import (
    load_model_weights,
    load_training_state,
    save_checkpoint,
    write_checkpoint_files,
)
from hrm_codegen.training.run_dir import find_resume_checkpoint


def tiny_model() -> TransformerForCausalLM:
    torch.manual_seed(0)
    return TransformerForCausalLM(
        TransformerConfig(vocab_size=32, hidden_size=16, num_heads=2, n_layers=1, max_seq_len=16)
    )


class RecordedOptimizer:
    """Just the state_dict interface the checkpoint writer uses (a real torch optimizer's first
    construction imports torch._dynamo, seconds this module does not need)."""

    def __init__(self, step: int) -> None:
        self.saved = {"state": {0: {"momentum_buffer": torch.full((3,), float(step))}}}

    def state_dict(self) -> dict:
        return self.saved

    def load_state_dict(self, state: dict) -> None:
        self.saved = state


def model_at(step: int) -> tuple[TransformerForCausalLM, RecordedOptimizer]:
    """A model whose every parameter equals `step`, and optimizer state that records it too."""
    model = tiny_model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(step))
    return model, RecordedOptimizer(step)


def assert_consistent(ckpt: Path) -> int:
    """Load `ckpt` as resume does; its weights must be the ones of the step it records."""
    state, optim = load_training_state(ckpt)
    model = tiny_model()
    load_model_weights(ckpt, model, raw=True)
    step = int(state["step"])
    assert all(torch.all(p == float(step)) for p in model.parameters()), ckpt
    assert torch.all(optim["optimizer"]["state"][0]["momentum_buffer"] == float(step))
    assert state["payload"] == f"state of step {step}"
    return step


def save_step(manager: CheckpointManager, step: int, **kwargs) -> Path | None:
    model, optimizer = model_at(step)
    return manager.save(step, model, optimizer, {"payload": f"state of step {step}"}, **kwargs)


# ----------------------------------------------------------------------------- layout and best


def test_saves_repoint_checkpoint_atomically_and_prune_what_nothing_names(tmp_path):
    manager = CheckpointManager(tmp_path, best_metric=None)
    assert manager.latest is None
    for step in (1, 2, 3):
        save_step(manager, step)
    pointer = tmp_path / CHECKPOINT_DIR
    assert pointer.is_symlink() and not os.path.isabs(os.readlink(pointer))
    assert sorted(p.name for p in (tmp_path / CHECKPOINTS_DIR).iterdir()) == ["step_0000003"]
    assert assert_consistent(manager.latest) == 3
    assert resolve_checkpoint_dir(tmp_path) == pointer
    assert load_model(tmp_path).config.hidden_size == 16  # a run dir is a model folder too
    moved = tmp_path.parent / "moved"  # relative links survive moving the run dir
    shutil.move(tmp_path, moved)
    assert assert_consistent(latest_checkpoint(moved)) == 3
    assert not (tmp_path / BEST_DIR).exists()


def test_best_follows_the_metric_and_a_restarted_manager_keeps_comparing_with_it(tmp_path):
    manager = CheckpointManager(tmp_path, best_metric="val/loss")
    assert manager.best_mode == "min"
    save_step(manager, 1, metrics={"val/loss": 3.0})
    save_step(manager, 2, metrics={"val/loss": 2.0})
    save_step(manager, 3, metrics={"val/loss": 2.5})  # latest moves, best stays at step 2
    assert assert_consistent(tmp_path / BEST_DIR) == 2
    assert assert_consistent(tmp_path / CHECKPOINT_DIR) == 3
    assert save_step(manager, 4, metrics={"val/loss": 2.2}, latest=False) is None  # no better
    save_step(manager, 5, metrics={"val/loss": 1.5}, latest=False)  # best only
    assert assert_consistent(tmp_path / BEST_DIR) == 5
    assert assert_consistent(tmp_path / CHECKPOINT_DIR) == 3
    assert len(list((tmp_path / CHECKPOINTS_DIR).iterdir())) == 2
    save_step(manager, 6, metrics={"val/loss": float("nan")})  # NaN never becomes the best
    assert assert_consistent(tmp_path / BEST_DIR) == 5

    restarted = CheckpointManager(tmp_path, best_metric="val/loss")
    assert (restarted.best_value, restarted.best_step) == (1.5, 5)
    assert not restarted.improves({"val/loss": 1.6}) and restarted.improves({"val/loss": 1.4})
    other = CheckpointManager(tmp_path, best_metric="val/pass@1")  # another metric: fresh start
    assert other.best_mode == "max" and other.best_value is None
    assert other.improves({"val/pass@1": 0.0}) and not other.improves({"val/loss": 0.1})
    best_state = json.loads((tmp_path / BEST_DIR / TRAINER_STATE).read_text())
    assert best_state["best"] == {"metric": "val/loss", "mode": "min", "value": 1.5, "step": 5}


def test_restore_loads_weights_and_optimizer_and_names_a_missing_checkpoint(tmp_path):
    manager = CheckpointManager(tmp_path, best_metric=None)
    with pytest.raises(CheckpointError, match="no checkpoint to restore"):
        manager.restore(tiny_model())
    save_step(manager, 7)
    model, optimizer = tiny_model(), RecordedOptimizer(0)
    state = manager.restore(model, optimizer)
    assert state["step"] == 7 and all(torch.all(p == 7.0) for p in model.parameters())
    assert torch.all(optimizer.saved["state"][0]["momentum_buffer"] == 7.0)


@pytest.mark.parametrize(
    "metric, mode, expected",
    [
        ("val/loss", None, "min"),
        ("val/bpb", None, "min"),
        ("val/mbpp_bpb", None, "min"),
        ("val/pass@1", None, "max"),
        ("reward/mean", None, "max"),
        ("val/loss", "max", "max"),
    ],
)
def test_the_best_mode_is_inferred_from_the_metric_name(metric, mode, expected):
    assert infer_best_mode(metric, mode) == expected


def test_an_unknown_metric_direction_or_mode_is_named():
    with pytest.raises(ValueError, match="train.best_mode=min or train.best_mode=max"):
        infer_best_mode("val/something")
    with pytest.raises(ValueError, match="train.best_mode='lowest'"):
        infer_best_mode("val/loss", "lowest")


def test_an_old_style_checkpoint_folder_and_a_left_over_old_folder_still_load(tmp_path):
    run = tmp_path / "run"
    model, optimizer = model_at(4)
    write_checkpoint_files(
        run / CHECKPOINT_DIR,  # a real directory, as earlier versions wrote it
        model=model,
        tokenizer=None,
        optimizer=optimizer,
        trainer_state={"step": 4, "payload": "state of step 4"},
        config_yaml="",
    )
    assert resolve_checkpoint_dir(run) == run / CHECKPOINT_DIR
    manager = CheckpointManager(run, best_metric=None)
    save_step(manager, 5)  # replaces the directory by a link
    assert (run / CHECKPOINT_DIR).is_symlink() and assert_consistent(manager.latest) == 5
    assert [p.name for p in (run / CHECKPOINTS_DIR).iterdir()] == ["step_0000005"]

    # The old writer killed between its two renames left only checkpoint.old (and a .tmp).
    crashed = tmp_path / "crashed"
    model, optimizer = model_at(9)
    write_checkpoint_files(
        crashed / "checkpoint.old",
        model=model,
        tokenizer=None,
        optimizer=optimizer,
        trainer_state={"step": 9, "payload": "state of step 9"},
        config_yaml="",
    )
    (crashed / "checkpoint.tmp").mkdir()
    assert find_resume_checkpoint(True, crashed, explicit=True) == crashed / "checkpoint.old"
    assert assert_consistent(resolve_checkpoint_dir(crashed)) == 9
    save_step(CheckpointManager(crashed, best_metric=None), 10)
    assert sorted(p.name for p in crashed.iterdir()) == [CHECKPOINT_DIR, CHECKPOINTS_DIR]


def test_save_checkpoint_keeps_its_old_signature_and_returns_the_pointer(tmp_path):
    model, optimizer = model_at(2)
    ckpt = save_checkpoint(
        tmp_path / CHECKPOINT_DIR,
        model=model,
        tokenizer=None,
        optimizer=optimizer,
        trainer_state={"step": 2, "payload": "state of step 2"},
        config_yaml="seed: 0\n",
    )
    assert ckpt == tmp_path / CHECKPOINT_DIR and assert_consistent(ckpt) == 2
    assert (ckpt / "config.yaml").read_text() == "seed: 0\n"


# ----------------------------------------------------------------------------- kill anywhere

FS_OPERATIONS = ("rename", "replace", "symlink", "unlink", "rmdir", "mkdir", "fsync")


def _fork(child) -> int:
    """Run `child()` in a forked process that never returns into pytest; returns its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            child()
        except BaseException:  # noqa: BLE001 - report any failure through the exit code
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    return pid


def _kill_before_operation(k: int) -> None:
    """From now on, SIGKILL this process just before its k-th filesystem operation."""
    counter = {"n": 0}
    for name in FS_OPERATIONS:
        original = getattr(os, name)

        def wrapped(*args, _original=original, **kwargs):
            counter["n"] += 1
            if counter["n"] == k:
                os.kill(os.getpid(), signal.SIGKILL)
            return _original(*args, **kwargs)

        setattr(os, name, wrapped)


def _count_operations(run: Path, step: int, **save_kwargs) -> int:
    counts = {"n": 0}
    originals = {name: getattr(os, name) for name in FS_OPERATIONS}

    def counting(name):
        def wrapped(*args, **kwargs):
            counts["n"] += 1
            return originals[name](*args, **kwargs)

        return wrapped

    try:
        for name in FS_OPERATIONS:
            setattr(os, name, counting(name))
        save_step(CheckpointManager(run, best_metric="val/loss"), step, **save_kwargs)
    finally:
        for name, original in originals.items():
            setattr(os, name, original)
    return counts["n"]


@pytest.mark.parametrize(
    "legacy",
    [False, pytest.param(True, marks=pytest.mark.slow)],  # ~10 s each on 2 busy cores
    ids=["linked", "old-style-dir"],
)
def test_a_sigkill_before_any_filesystem_operation_of_a_save_leaves_a_loadable_checkpoint(
    tmp_path, legacy
):
    """Every instant of a save: the child dies just before its k-th rename/replace/symlink/
    unlink/rmdir/mkdir/fsync, for every k, and `resume` must then load a complete checkpoint of
    the old step or the new one (and the new one once the swap is done)."""

    def prepare(run: Path) -> None:
        if legacy:
            model, optimizer = model_at(1)
            write_checkpoint_files(
                run / CHECKPOINT_DIR,
                model=model,
                tokenizer=None,
                optimizer=optimizer,
                trainer_state={"step": 1, "payload": "state of step 1"},
                config_yaml="",
            )
        else:
            save_step(CheckpointManager(run, best_metric="val/loss"), 1, metrics={"val/loss": 2.0})

    template = tmp_path / "template"
    prepare(template)
    probe = tmp_path / "probe"
    shutil.copytree(template, probe, symlinks=True)
    total = _count_operations(probe, 2, metrics={"val/loss": 1.0})
    assert total > 10  # fsyncs, the rename into place, two pointer swaps, the pruning
    seen = set()
    for k in range(1, total + 1):
        run = tmp_path / f"k{k}"
        shutil.copytree(template, run, symlinks=True)

        def child(run=run, k=k):
            _kill_before_operation(k)
            save_step(CheckpointManager(run, best_metric="val/loss"), 2, metrics={"val/loss": 1.0})

        _, status = os.waitpid(_fork(child), 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, k
        ckpt = find_resume_checkpoint(True, run, explicit=True)
        step = assert_consistent(ckpt)
        assert step in (1, 2), (k, step)
        seen.add(step)
        if not legacy:
            assert assert_consistent(run / BEST_DIR) in (1, 2)
        # the next save after the crash cleans up and works
        save_step(CheckpointManager(run, best_metric="val/loss"), 3)
        assert assert_consistent(latest_checkpoint(run)) == 3
        leftovers = {p.name for p in (run / CHECKPOINTS_DIR).iterdir()}
        assert all(not name.startswith(".") for name in leftovers), (k, leftovers)
        assert len(leftovers) <= 2  # the latest, and best when elsewhere
    assert seen == {1, 2}


def test_sigkill_at_random_moments_of_a_save_loop_always_leaves_a_loadable_checkpoint(tmp_path):
    """A child saves steps in a loop as fast as it can; it is killed with SIGKILL at a random
    moment, several times, each round continuing from the checkpoint resume finds."""
    rng = random.Random(0)
    run = tmp_path / "run"
    steps_seen = []
    for _ in range(8):
        start = latest_checkpoint(run)
        first = (assert_consistent(start) if start is not None else 0) + 1
        ready_r, ready_w = os.pipe()

        def child(first=first, ready_w=ready_w):
            manager = CheckpointManager(run, best_metric="val/loss")
            step = first
            while True:
                save_step(manager, step, metrics={"val/loss": 1.0 / step})
                if step == first:
                    os.write(ready_w, b"x")
                step += 1

        pid = _fork(child)
        os.close(ready_w)
        assert os.read(ready_r, 1) == b"x"  # one complete save in this round
        os.close(ready_r)
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), "the saver exited by itself"
        step = assert_consistent(find_resume_checkpoint(True, run, explicit=True))
        assert step >= first
        assert assert_consistent(run / BEST_DIR) >= step - 1  # best: one of the latest two
        steps_seen.append(step)
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > 8


# ----------------------------------------------------------------------------- foreign layouts


@dataclasses.dataclass
class ForeignConfig:
    width: int = 4
    prefix_lm: bool = False  # a runtime field: may differ between checkpoint and run


class ForeignLayoutModel(nn.Module):
    """A family whose saved folder uses another library's names and config.json (as the
    transformers-backed families do): `hrm_codegen.json` describes it, `load_weights` reads it."""

    model_type = "foreign"

    def __init__(self, config: ForeignConfig) -> None:
        super().__init__()
        self.config = config
        self.inner = nn.Linear(config.width, config.width)

    def save_pretrained(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps({"model_type": "foreign", "d": 1}))
        spec = {"model_type": "foreign", **dataclasses.asdict(self.config)}
        (folder / "hrm_codegen.json").write_text(json.dumps(spec))
        renamed = {f"lib.{k}": v.contiguous() for k, v in self.state_dict().items()}
        save_file(renamed, str(folder / "model.safetensors"))

    def load_weights(self, folder: Path) -> None:
        tensors = load_file(str(folder / "model.safetensors"))
        self.load_state_dict({k.removeprefix("lib."): v for k, v in tensors.items()})


def test_a_family_with_its_own_layout_is_checked_by_its_spec_and_loads_its_own_weights(tmp_path):
    from hrm_codegen.training.ema import EMA

    torch.manual_seed(0)
    model = ForeignLayoutModel(ForeignConfig())
    ema = EMA(model, 0.5)
    with torch.no_grad():
        model.inner.weight.add_(1.0)  # raw weights now differ from the EMA shadow
    ema.update(model)
    manager = CheckpointManager(tmp_path, best_metric=None)
    manager.save(3, model, RecordedOptimizer(3), {"ema_updates": 1}, ema=ema)

    resumed = ForeignLayoutModel(ForeignConfig(prefix_lm=True))  # runtime field differs: fine
    resumed_ema = EMA(resumed, 0.5)
    manager.restore(resumed, RecordedOptimizer(0), ema=resumed_ema)
    assert torch.equal(resumed.inner.weight, model.inner.weight)  # raw weights, our names
    with ema.applied_to(model), resumed_ema.applied_to(resumed):
        assert torch.equal(resumed.inner.weight, model.inner.weight)  # the shadow, via load_weights
    fresh = ForeignLayoutModel(ForeignConfig())
    load_model_weights(tmp_path / CHECKPOINT_DIR, fresh, raw=False)  # init_from: the EMA weights
    with ema.applied_to(model):
        assert torch.equal(fresh.inner.weight, model.inner.weight)
    with pytest.raises(CheckpointError, match="width: checkpoint 4, config 8"):
        load_model_weights(
            tmp_path / CHECKPOINT_DIR, ForeignLayoutModel(ForeignConfig(8)), raw=True
        )
