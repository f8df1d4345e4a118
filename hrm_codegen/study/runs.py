"""One run of a study on disk: its key and folder, the files the study leaves in it, whether it
finished, its last metric, and its model with the facts the report and the records need.

Below the runner and the reports, which both read runs (report.py must not import runner.py:
the runner writes the report at the end of `run`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrm_codegen.run_layout import CHECKPOINT_DIR, CONFIG_SNAPSHOT, TRAINER_STATE
from hrm_codegen.study.spec import finite_or_inf, lr_tag

EVAL_FILE = "study_eval.json"
FAILED_FILE = "DIVERGED"


@dataclass(frozen=True)
class RunKey:
    """One run of the protocol. `lr` is the arm's pretraining lr (an sft run trains at
    lr x sft.lr_scale and starts from the pretraining run of the same lr and seed)."""

    stage: str
    arm: str
    lr: float
    seed: int

    def path(self, root: Path) -> Path:
        return root / "runs" / self.stage / self.arm / f"{lr_tag(self.lr)}-seed{self.seed}"


def run_status(run_dir: Path) -> str:
    """ "done", "diverged", "partial" (a checkpoint short of max_steps) or "new"."""
    if (run_dir / FAILED_FILE).is_file():
        return "diverged"
    state_file = run_dir / CHECKPOINT_DIR / TRAINER_STATE
    config_file = run_dir / CONFIG_SNAPSHOT
    if not (state_file.is_file() and config_file.is_file()):
        return "new"
    from omegaconf import OmegaConf

    step = int(json.loads(state_file.read_text())["step"])
    max_steps = int(OmegaConf.load(config_file).train.max_steps)
    return "done" if step >= max_steps else "partial"


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def final_metric(run_dir: Path, key: str) -> float:
    """The value of `key` at the run's last evaluation (+inf when diverged or never logged)."""
    if run_status(run_dir) == "diverged":
        return float("inf")
    from hrm_codegen.training.logging import read_metrics

    rows = [r for r in read_metrics(run_dir) if key in r] if run_dir.is_dir() else []
    if not rows:
        return float("inf")
    return finite_or_inf(max(rows, key=lambda r: r["step"])[key])


def model_facts(run_dir: Path) -> dict[str, Any]:
    """Parameters and training FLOPs per token of a run's model, with and without embedding and
    LM head (at 1-3M parameters the head dominates, and the choice moves fitted exponents: both
    are reported); for recurrent models also the parameters applied once (`params_once`) and
    reused (`params_shared`) and the mean applications per block (`reuse`) of the loop law."""
    from omegaconf import OmegaConf

    from hrm_codegen.model import load_model
    from hrm_codegen.model.registry import get_model_type
    from hrm_codegen.training.flops import flops_count

    model = load_model(run_dir / CHECKPOINT_DIR)
    seq_len = int(OmegaConf.load(run_dir / CONFIG_SNAPSHOT).data.max_seq_len)
    flops = flops_count(model)
    facts: dict[str, Any] = {
        "model_type": model.model_type,
        "params": model.num_parameters(),
        "params_body": model.num_parameters(exclude_embeddings=True),
        "flops_per_token": flops.training_flops_per_token(seq_len),
        "flops_per_token_body": flops.training_flops_per_token(seq_len, exclude_embeddings=True),
        "depth": getattr(model.config, "n_layers", None),
    }
    config = model.config
    h_cycles, l_cycles = getattr(config, "H_cycles", None), getattr(config, "L_cycles", None)
    h_layers, l_layers = getattr(config, "H_layers", None), getattr(config, "L_layers", None)
    # only a family that takes the cycle keys loops: the Llama adapter's config carries them
    # too (one config class for both transformers families) but applies each layer once
    fields = get_model_type(model.model_type).fields
    loops = fields is None or {"H_cycles", "L_cycles"} <= fields
    if loops and h_cycles and l_cycles and h_layers and l_layers:
        # per segment the H blocks run H_cycles times, the L blocks H_cycles x L_cycles times
        applications = h_cycles * h_layers + h_cycles * l_cycles * l_layers
        facts["reuse"] = applications / (h_layers + l_layers)
        facts["params_shared"] = facts["params_body"]
        facts["params_once"] = facts["params"] - facts["params_body"]
    return facts
