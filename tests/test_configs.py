"""The Hydra configs compose, build the models they promise, and reject what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from hrm_codegen.training.trainer import ConfigError, build_model, validate_config

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("codegen_base", overrides=list(overrides))


def test_every_required_group_option_exists():
    for group, options in {
        "model": {"hrm", "transformer", "transformer_deep", "hrm_text", "llama", "llama_compute"},
        "data": {"mbpp", "corpus"},
        "experiment": {"smoke", "quickstart", "a100"},
        "logger": {"console", "jsonl", "wandb"},
    }.items():
        present = {p.stem for p in (CONFIG_DIR / group).glob("*.yaml")}
        assert options <= present, f"configs/{group} lacks {options - present}"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_passes_validation(experiment):
    overrides = [f"experiment={experiment}"]
    if experiment == "a100_sft":
        overrides.append("init_from=runs/a100/some-run")
    cfg = compose_config(*overrides)
    assert cfg.experiment_name == experiment
    if cfg.device == "cuda":
        cfg.device = "auto"  # validation checks that CUDA exists; this machine may have none
    validate_config(cfg)
    OmegaConf.to_yaml(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize(
    "model, body_millions, layers",
    [("hrm", 27.3, 8), ("transformer", 27.3, 8), ("transformer_deep", 81.8, 24)],
)
def test_model_groups_build_the_reference_sizes(model, body_millions, layers):
    cfg = compose_config(f"model={model}")
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        built = build_model(OmegaConf.to_container(cfg.model), vocab_size=128)
    assert built.model_type == cfg.model.type
    assert built.num_parameters(exclude_embeddings=True) / 1e6 == pytest.approx(
        body_millions, abs=0.05
    )
    depth = cfg.model.get("n_layers") or cfg.model.H_layers + cfg.model.L_layers
    assert depth == layers


def test_smoke_is_a_tiny_cpu_run_and_a100_the_reference_hrm_in_bf16():
    smoke = compose_config("experiment=smoke")
    assert smoke.device == "cpu" and smoke.train.max_steps <= 100
    assert build_model(OmegaConf.to_container(smoke.model), 512).num_parameters() < 1_000_000
    a100 = compose_config("experiment=a100")
    assert a100.mixed_precision == "bf16" and a100.data.stage == "pretrain"
    reference = compose_config("model=hrm").model
    for key in ("hidden_size", "num_heads", "H_layers", "L_layers", "H_cycles", "L_cycles"):
        assert a100.model[key] == reference[key]


def test_unknown_keys_are_rejected_by_name():
    with pytest.raises(ConfigCompositionException, match="train.lrr"):
        compose_config("train.lrr=0.1")
    with pytest.raises(ConfigCompositionException, match="experiment"):
        compose_config("experiment=nonexistent")
    cfg = compose_config("+model.hidden_sise=64")  # `+` adds it; the model config rejects it
    with pytest.raises(ConfigError, match=r"unknown HRMConfig fields \['hidden_sise'\]"):
        build_model(OmegaConf.to_container(cfg.model), vocab_size=64)


@pytest.mark.parametrize(
    "override, message",
    [
        ("mixed_precision=fp8", "mixed_precision='fp8' is not one of"),
        ("data.max_seq_len=4096", "exceeds model.max_seq_len=2048"),
        ("train.micro_batch_size=0", "train.micro_batch_size must be >= 1"),
        ("train.stop_at_step=99999", "stop_at_step=99999 must lie in"),
        ("model.type=rnn", None),
    ],
)
def test_values_that_cannot_work_are_named(override, message):
    cfg = compose_config(override)
    if message is None:
        with pytest.raises(ConfigError, match="model.type='rnn' is not one of"):
            build_model(OmegaConf.to_container(cfg.model), vocab_size=64)
        return
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


@pytest.mark.parametrize(
    "model, layers",
    [("transformer", 4), ("transformer_deep", 12)],  # quickstart's HRM: 2+2 layers, 2x2 cycles
)
def test_a_baseline_run_of_an_hrm_experiment_is_matched_to_that_hrm(model, layers):
    cfg = compose_config("experiment=quickstart", f"model={model}")
    hrm = compose_config("experiment=quickstart")
    with torch.device("meta"):
        baseline = build_model(OmegaConf.to_container(cfg.model), vocab_size=128)
        reference = build_model(OmegaConf.to_container(hrm.model), vocab_size=128)
    assert baseline.config.n_layers == layers
    assert baseline.config.hidden_size == reference.config.hidden_size
    if model == "transformer":
        assert baseline.num_parameters() == reference.num_parameters()


def test_match_null_keeps_n_layers_and_a_bad_match_is_named():
    cfg = compose_config("experiment=quickstart", "model=transformer", "model.match=null")
    assert build_model(OmegaConf.to_container(cfg.model), 64).config.n_layers == 8
    cfg = compose_config("model=transformer", "model.match=flops")
    with pytest.raises(ConfigError, match="model.match='flops'"):
        build_model(OmegaConf.to_container(cfg.model), vocab_size=64)
