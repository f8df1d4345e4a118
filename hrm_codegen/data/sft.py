"""Supervised fine-tuning data: `BOS + prompt + target + EOS`, loss on the target only.

Prompt and target are tokenized separately and concatenated, exactly as generation sees them
(the prompt alone, then sampled tokens), so no token straddles the boundary at training time
that could not appear at inference time. Sequences longer than `max_seq_len` are dropped and
counted, never truncated: a truncated program teaches the model to stop mid-function.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from hrm_codegen.data.augment import make_variants
from hrm_codegen.data.execution import check_programs
from hrm_codegen.data.prompts import format_prompt, format_target
from hrm_codegen.data.tasks import CodeTask, build_program

IGNORE_INDEX = -100
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SFTExample:
    """One training text pair and where it came from (variant 0 is the original solution)."""

    task_id: str
    variant: int
    prompt: str
    target: str


def build_sft_examples(
    tasks: list[CodeTask],
    augment: int = 0,
    seed: int = 0,
    timeout: int = 10,
    workers: int | None = None,
) -> list[SFTExample]:
    """The original example of every task, plus up to `augment` verified variants per MBPP task.

    Variants (renamed locals, shuffled tests) are executed against the task's tests here and
    kept only if they pass; HumanEval tasks are never augmented (their parameter names are
    fixed by the prompt).
    """
    if augment < 0:
        raise ValueError(f"augment={augment}: the number of variants per task must be >= 0")
    examples = [
        SFTExample(task.task_id, 0, format_prompt(task), format_target(task)) for task in tasks
    ]
    if augment == 0:
        return examples
    candidates = []
    for task in tasks:
        if task.is_function_completion:
            continue
        rng = random.Random(f"{seed}:{task.task_id}")  # per task, so subsets stay reproducible
        candidates.extend((task, variant) for variant in make_variants(task, augment, rng))
    programs = [build_program(task, variant.solution) for task, variant in candidates]
    passed = check_programs(programs, timeout=timeout, workers=workers) if programs else []
    counts: dict[str, int] = {}
    for (task, variant), ok in zip(candidates, passed):
        if ok:
            counts[task.task_id] = counts.get(task.task_id, 0) + 1
            examples.append(
                SFTExample(
                    task.task_id,
                    counts[task.task_id],
                    format_prompt(task, tests=variant.tests),
                    format_target(task, solution=variant.solution),
                )
            )
    failed = len(candidates) - sum(passed)
    logger.info(
        "augmentation: %d variants kept for %d tasks (%d failed their tests and were discarded)",
        sum(counts.values()),
        len(tasks),
        failed,
    )
    return examples


class SFTDataset(Dataset):
    """Items `{"input_ids", "labels"}`: `labels[t] = input_ids[t + 1]`, -100 on the prompt.

    `input_ids` is `BOS + prompt + target + EOS`; the last position has no next token and gets
    -100. `num_dropped` counts the examples longer than `max_seq_len` that were left out.
    """

    def __init__(
        self,
        tasks: list[CodeTask],
        tokenizer: PreTrainedTokenizerBase,
        max_seq_len: int,
        augment: int = 0,
        seed: int = 0,
        timeout: int = 10,
        workers: int | None = None,
        examples: list[SFTExample] | None = None,
    ) -> None:
        """`examples` (prompt/target pairs made elsewhere, e.g. the exec benchmark's) replace
        those built from `tasks`."""
        if max_seq_len < 3:
            raise ValueError(f"max_seq_len={max_seq_len} leaves no room for BOS, text and EOS")
        if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError(
                "tokenizer needs bos_token_id and eos_token_id; load it with "
                "hrm_codegen.tokenization.load_tokenizer"
            )
        self.max_seq_len = max_seq_len
        self.examples: list[SFTExample] = []
        self.items: list[dict[str, torch.Tensor]] = []
        self.num_dropped = 0
        if examples is None:
            examples = build_sft_examples(tasks, augment, seed, timeout, workers)
        prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
        targets = tokenizer([e.target for e in examples], add_special_tokens=False)["input_ids"]
        pairs = zip(examples, prompts, targets)
        for example, prompt_ids, target_ids in tqdm(
            pairs, total=len(examples), desc="sft examples", disable=len(examples) < 2000
        ):
            ids = [tokenizer.bos_token_id, *prompt_ids, *target_ids, tokenizer.eos_token_id]
            if len(ids) > max_seq_len:
                self.num_dropped += 1
                continue
            labels = ids[1:] + [IGNORE_INDEX]
            labels[: len(prompt_ids)] = [IGNORE_INDEX] * len(prompt_ids)
            self.examples.append(example)
            self.items.append(
                {
                    "input_ids": torch.tensor(ids, dtype=torch.long),
                    "labels": torch.tensor(labels, dtype=torch.long),
                }
            )
        if self.num_dropped:
            logger.warning(
                "SFTDataset: dropped %d of %d examples longer than max_seq_len=%d tokens "
                "(raise max_seq_len to keep them)",
                self.num_dropped,
                len(examples),
                max_seq_len,
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.items[index]


def prompt_length(labels: torch.Tensor) -> int:
    """Positions of an SFT item that are prompt: BOS + prompt tokens, i.e. every position before
    the first real label plus that one (the last prompt token, whose logits predict the first
    target token, as at generation, where the prompt is prefilled and its last position decodes).
    """
    real = (labels != IGNORE_INDEX).nonzero()
    if not len(real):
        raise ValueError("an SFT item without any label token has no target to tell the prompt by")
    return int(real[0]) + 1


class SFTCollator:
    """Right-pads a batch to its longest sequence (optionally to a multiple of 8 etc.).

    Padding positions get `pad_id` in `input_ids`, -100 in `labels` and 0 in `attention_mask`,
    so nothing downstream depends on which id pads. With `prefix_lm=True` the batch also carries
    `token_type_ids` (1 on the prompt, see `prompt_length`; 0 on the target and on padding), for
    models trained as PrefixLM; without it the key is absent, so other models never receive it.
    """

    def __init__(
        self, pad_id: int, pad_to_multiple_of: int | None = None, prefix_lm: bool = False
    ) -> None:
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of={pad_to_multiple_of}: use None or a value >= 1")
        self.pad_id = pad_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.prefix_lm = prefix_lm

    def __call__(self, batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if not batch:
            raise ValueError("SFTCollator got an empty batch")
        length = max(len(item["input_ids"]) for item in batch)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(batch), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), length), dtype=torch.long)
        token_type_ids = torch.zeros((len(batch), length), dtype=torch.long)
        for row, item in enumerate(batch):
            n = len(item["input_ids"])
            input_ids[row, :n] = item["input_ids"]
            labels[row, :n] = item["labels"]
            attention_mask[row, :n] = 1
            if self.prefix_lm:
                token_type_ids[row, : prompt_length(item["labels"])] = 1
        out = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        if self.prefix_lm:
            out["token_type_ids"] = token_type_ids
        return out
