"""scripts/train_codegen.py on a mistake: one `error:` line, exit 2, no folder left behind.

Config values are checked up front (hrm_codegen/training/config_checks.py); Hydra's output folder
is removed again when a failed run leaves nothing but Hydra's own files in it, and `run_dir=X`
keeps Hydra from creating a timestamped folder of its own (hrm_codegen/train_cli.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from hrm_codegen.train_cli import HydraOutput, run_dir_overrides
from hrm_codegen.training.config_checks import ConfigError, validate_config

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"
HYDRA_FILES = frozenset({".hydra", "train_codegen.log"})


def launch(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    """The launcher as a user runs it, from `cwd` (where Hydra's default runs/ folder goes)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env.update(OMP_NUM_THREADS="1", HRM_CODEGEN_HOME=str(cwd / "home"))
    command = [sys.executable, str(REPO / "scripts" / "train_codegen.py"), "experiment=smoke"]
    return subprocess.run(
        [*command, *overrides], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("codegen_base", overrides=list(overrides))


# ----------------------------------------------------------------------------- the launcher


def test_a_bad_number_is_one_error_line_exit_2_and_leaves_no_folder(tmp_path):
    result = launch(tmp_path, "train.lr=abc", "device=cpu", f"hydra.run.dir={tmp_path / 'x'}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "error: train.lr='abc' is not a number; pass e.g. train.lr=3e-4"
    ]
    assert not (tmp_path / "x").exists()


def test_the_default_run_folder_and_the_folders_made_for_it_are_removed(tmp_path):
    result = launch(tmp_path, "model.hidden_size=100", "model.num_heads=3")
    assert result.returncode == 2 and result.stderr.startswith("error: model.hidden_size=100")
    assert not (tmp_path / "runs").exists()  # not runs/smoke/<time>, nor runs/smoke, nor runs/


def test_a_run_dir_gets_hydra_files_and_no_timestamped_folder_is_made(tmp_path):
    result = launch(tmp_path, "train.lr=abc", f"run_dir={tmp_path / 'fresh'}")
    assert result.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither fresh/ nor runs/
    kept = tmp_path / "kept"  # an earlier run: Hydra writes into it, and nothing is removed
    kept.mkdir()
    (kept / "metrics.jsonl").write_text('{"step": 1}\n')
    result = launch(tmp_path, "train.lr=abc", f"run_dir={kept}")
    assert result.returncode == 2
    assert {p.name for p in kept.iterdir()} == {"metrics.jsonl", ".hydra", "train_codegen.log"}
    assert not (tmp_path / "runs").exists()


def test_a_folder_holding_a_run_survives_a_failed_run_in_it(tmp_path):
    old = tmp_path / "old"
    (old / "checkpoint").mkdir(parents=True)
    (old / "checkpoint" / "trainer_state.json").write_text("{}")
    result = launch(tmp_path, "train.micro_batch_size=0", f"hydra.run.dir={old}")
    assert result.returncode == 2
    assert "train.micro_batch_size must be >= 1, got 0" in result.stderr
    assert (old / "checkpoint" / "trainer_state.json").is_file()


# ----------------------------------------------------------------------------- the cleanup


def hydra_folder(folder: Path) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (folder / "train_codegen.log").write_text("")
    return folder


def test_only_a_folder_with_nothing_but_hydra_files_is_removed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "other").mkdir(parents=True)  # runs/ holds another experiment
    folder = hydra_folder(tmp_path / "runs" / "smoke" / "2025-01-01_00-00-00")
    seen = HydraOutput.seen_now(folder, HYDRA_FILES)
    assert seen is not None and seen.parents == (tmp_path / "runs" / "smoke",)
    (folder / "metrics.jsonl").write_text("{}\n")  # the run started writing
    assert not seen.remove() and (folder / "metrics.jsonl").is_file()
    (folder / "metrics.jsonl").unlink()
    assert seen.remove()
    assert not (tmp_path / "runs" / "smoke").exists() and (tmp_path / "runs" / "other").is_dir()


def test_a_folder_that_already_held_other_files_or_the_working_dir_is_never_ours(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    earlier = hydra_folder(tmp_path / "earlier")
    (earlier / "config.yaml").write_text("seed: 0\n")
    assert HydraOutput.seen_now(earlier, HYDRA_FILES) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)  # hydra.run.dir=. (dry runs): an empty working dir stays
    assert HydraOutput.seen_now(Path("."), HYDRA_FILES) is None
    assert HydraOutput.seen_now(tmp_path, HYDRA_FILES) is None  # a folder above the cwd


def test_run_dir_on_the_command_line_becomes_hydras_folder():
    assert run_dir_overrides(["experiment=smoke", "run_dir=runs/mine"]) == [
        "hydra.run.dir=${run_dir}"
    ]
    assert run_dir_overrides(["+run_dir=~/r"]) == [f"hydra.run.dir={Path.home() / 'r'}"]
    assert run_dir_overrides(["run_dir=x", "hydra.run.dir=/tmp/h"]) == []  # the user's choice
    assert run_dir_overrides(["run_dir=null"]) == run_dir_overrides(["experiment=smoke"]) == []


# ----------------------------------------------------------------------------- config values


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.lr=abc"], "train.lr='abc' is not a number; pass e.g. train.lr=3e-4"),
        (["train.lr='3e-4'"], "train.lr='3e-4' is quoted text, not a number"),
        (["train.lr=null"], "train.lr=null is not allowed; pass e.g. train.lr=3e-4"),
        (["train.lr=-1"], "train.lr must be > 0, got -1; pass e.g. train.lr=3e-4"),
        (["train.max_steps=2.5"], "train.max_steps=2.5 is not a whole number"),
        (["train.max_steps=1e3"], "train.max_steps=1000.0 is a float; write it as an integer"),
        (["train.max_steps=true"], "train.max_steps=true is not a number"),
        (["eval.timeout=inf"], "eval.timeout=inf is not a finite number"),
        (["train.beta2=1.0"], "train.beta2 must be in [0, 1), got 1.0"),
        (["train.ema_decay=1.0"], "train.ema_decay must be in (0, 1) or null, got 1.0"),
        (["eval.workers=0"], "eval.workers must be >= 1 or null, got 0"),
        (["data.max_seq_len=x"], "data.max_seq_len='x' is not a number"),
        (["model.expansion=wide"], "model.expansion='wide' is not a number"),
        (["seed=-1"], "seed must be >= 0, got -1; pass e.g. seed=0"),
    ],
)
def test_every_bad_number_is_one_line_naming_key_value_and_fix(overrides, message):
    with pytest.raises(ConfigError) as error:
        validate_config(compose_config("experiment=smoke", *overrides))
    text = str(error.value)
    assert message in text
    assert "\n" not in text and "e.g. " in text  # one line, with a value to pass instead


def test_good_numbers_and_nulls_pass():
    validate_config(
        compose_config(
            "experiment=smoke", "train.grad_clip=null", "train.lr=1", "eval.limit=0", "seed=3"
        )
    )


def test_heads_that_do_not_divide_the_width_are_named_before_head_dim_parity():
    with pytest.raises(ConfigError) as error:
        validate_config(compose_config("model.hidden_size=100", "model.num_heads=3"))
    message = str(error.value)
    assert "model.hidden_size=100 is not divisible by model.num_heads=3" in message
    assert "even" not in message
    assert message.endswith("pass e.g. model.num_heads=2 or model.hidden_size=102")
    with pytest.raises(ConfigError, match="gives head_dim=3, but rotary position embeddings need"):
        validate_config(compose_config("model.hidden_size=96", "model.num_heads=32"))
    with pytest.raises(ConfigError, match="model.num_key_value_heads=3; pass e.g."):
        validate_config(compose_config("model=llama", "model.num_key_value_heads=3"))
    validate_config(compose_config("model.hidden_size=96", "model.num_heads=3"))  # head_dim 32


def test_gspo_checks_numbers_and_its_schedule_up_front():
    from omegaconf import OmegaConf

    from hrm_codegen.rl.loop import GSPOConfigError, GSPOLoop
    from hrm_codegen.training.config_checks import ConfigError

    cfg = OmegaConf.create({"train": {"lr": "abc", "schedule": "cosine"}, "gspo": {}})
    with pytest.raises(ConfigError, match=r"train\.lr='abc' is not a number"):
        GSPOLoop(cfg)
    cfg = OmegaConf.create({"train": {"lr": 1e-5, "schedule": "wsd"}, "gspo": {}})
    with pytest.raises(GSPOConfigError, match="cosine only"):
        GSPOLoop(cfg)
