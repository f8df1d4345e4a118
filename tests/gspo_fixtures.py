"""A tiny toy-task checkpoint for the GSPO tests, and the config they compose.

The checkpoint is a 1-layer transformer given a few seconds of supervised training on the toy
tasks, so its samples are a mix of right, wrong and malformed programs (rewards that vary within a
group); a random model would earn 0 everywhere and never update.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from hrm_codegen.data import load_benchmark
from hrm_codegen.data.prompts import format_prompt, format_target
from hrm_codegen.generation import encode_prompt
from hrm_codegen.model import HRMConfig, HRMForCausalLM, TransformerConfig, TransformerForCausalLM
from hrm_codegen.tokenization import load_tokenizer, train_code_bpe

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "configs"


@functools.cache
def toy_tokenizer_dir() -> Path:
    """A 300-token byte-level BPE of the toy texts, trained once per test process."""
    folder = Path(tempfile.mkdtemp(prefix="toy_tokenizer_"))
    texts = [format_prompt(t) + format_target(t) for t in load_benchmark("toy")]
    return train_code_bpe(iter(texts), 300, folder, progress=False)


def _copy_toy_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (toy_tokenizer_dir() / name).is_file():
            shutil.copy(toy_tokenizer_dir() / name, folder / name)


def make_toy_act_hrm_checkpoint(folder: Path, seed: int = 0, halt_max_steps: int = 3) -> Path:
    """An untrained tiny HRM with ACT halting (Q head, `halt_max_steps` segments) + tokenizer.

    The Q head starts at "always continue" (zero weight, bias -5): every prompt would get
    `halt_max_steps` segments. Random weights, with the halt bias set to the median of
    q_continue - q_halt after one segment over the toy prompts, make half of them halt after the
    first segment and the others go on: a GSPO step has prompts at different segment counts.
    """
    _copy_toy_tokenizer(folder)
    tokenizer = load_tokenizer(folder)
    torch.manual_seed(seed)
    config = HRMConfig(
        vocab_size=len(tokenizer),
        max_seq_len=192,
        hidden_size=32,
        num_heads=2,
        expansion=2.0,
        H_layers=1,
        L_layers=1,
        H_cycles=1,
        L_cycles=2,
        enable_q_head=True,
        halt_max_steps=halt_max_steps,
    )
    model = HRMForCausalLM(config).eval()
    with torch.no_grad():
        model.q_head.weight.normal_(0.0, 1.0)
        model.q_head.bias.zero_()
        model.set_inference_schedule(segments=1)
        margins = []
        for task in load_benchmark("toy"):
            out = model(torch.tensor([encode_prompt(tokenizer, format_prompt(task))]))
            margins.append(float(out.q_continue_logits[0] - out.q_halt_logits[0]))
        model.set_inference_schedule()
        model.q_head.bias[0] = torch.tensor(margins).median()
    model.save_pretrained(folder)
    return folder


def make_toy_checkpoint(folder: Path, steps: int = 60, seed: int = 0) -> Path:
    """Train a tiny model on the toy train split for `steps` full-batch steps; save it + tokenizer."""
    tasks = load_benchmark("toy", "train")
    _copy_toy_tokenizer(folder)
    tokenizer = load_tokenizer(folder)
    torch.manual_seed(seed)
    config = TransformerConfig(
        vocab_size=len(tokenizer), hidden_size=48, num_heads=2, n_layers=1, max_seq_len=192
    )
    model = TransformerForCausalLM(config)
    rows = []
    for task in tasks:
        prompt = encode_prompt(tokenizer, format_prompt(task))
        target = tokenizer.encode(format_target(task), add_special_tokens=False)
        rows.append((prompt, target + [tokenizer.eos_token_id]))
    width = max(len(p) + len(t) for p, t in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, (prompt, target) in enumerate(rows):
        full = torch.tensor(prompt + target)
        input_ids[r, : len(full)] = full
        labels[r, len(prompt) - 1 : len(full) - 1] = full[len(prompt) :]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = model(input_ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(folder)
    return folder


def gspo_config(init_from: Path, run_dir: Path, *overrides: str):
    """experiment=gspo_toy shrunk to seconds: few tasks, short completions, no evaluation."""
    base = [
        "experiment=gspo_toy",
        f"init_from={init_from}",
        f"run_dir={run_dir}",
        "logger=jsonl",
        "train.max_steps=2",
        "gspo.tasks_per_step=2",
        "gspo.group_size=4",
        "gspo.max_new_tokens=32",
        "gspo.eval.interval=0",
        "gspo.reward.format_penalty=0.5",
        "gspo.reward.workers=2",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("codegen_base", overrides=base + list(overrides))
