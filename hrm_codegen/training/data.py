"""The stage's data from the config: tokenizer, datasets, and a resumable batch order.

Two stages share the loop. `data.stage=sft` fine-tunes on MBPP (prompt tokens masked, loss on the
solution); `data.stage=pretrain` reads packed windows from a token-shard corpus. Either way the loop
sees a dataset of `{"input_ids", "labels"}` items, a collate function, and a `BatchOrder`, which is a
pure function of (seed, position) so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

STAGES = ("sft", "pretrain")


class DataConfigError(ValueError):
    """Missing or inconsistent data settings, with the setting to change in the message."""


@dataclass
class StageData:
    train: Any  # a map-style dataset of {"input_ids", "labels"} items
    val: Any | None
    collate: Callable[[list[dict[str, torch.Tensor]]], dict[str, torch.Tensor]]
    eval_tasks: list[Any] = field(default_factory=list)  # CodeTasks for pass@1 (SFT only)
    max_seq_len: int = 0
    description: str = ""
    # What exactly the run reads: the corpus manifest's fingerprint (pretraining); recorded in the
    # run's config and first metrics record, and compared across a study's runs.
    fingerprints: dict[str, str] = field(default_factory=dict)


class BatchOrder:
    """Sample indices for each global batch: a fresh seeded permutation per epoch, read in order.

    The state is (epoch, offset); a batch that runs past the end of an epoch continues into the next
    epoch's permutation, so every batch is full and no sample is skipped.
    """

    def __init__(self, num_samples: int, seed: int, epoch: int = 0, offset: int = 0) -> None:
        if num_samples < 1:
            raise DataConfigError("the training set is empty: nothing to train on")
        self.num_samples, self.seed = num_samples, seed
        self.epoch, self.offset = epoch, offset
        self._perm = self._permutation(epoch)

    def _permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=generator).tolist()

    def take(self, count: int) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            room = min(count - len(out), self.num_samples - self.offset)
            out += self._perm[self.offset : self.offset + room]
            self.offset += room
            if self.offset == self.num_samples:
                self.epoch, self.offset = self.epoch + 1, 0
                self._perm = self._permutation(self.epoch)
        return out

    def taken_in_epoch(self) -> list[int]:
        """The indices of the current epoch handed out so far."""
        return self._perm[: self.offset]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset, "num_samples": self.num_samples}


def build_stage_data(
    data_cfg: dict[str, Any], tokenizer: Any, *, prefix_lm: bool = False
) -> StageData:
    """Datasets for `data.stage` (sft on MBPP, or pretrain on corpus shards).

    `prefix_lm` (the model's): SFT batches then mark the prompt (`token_type_ids`), which the
    model reads bidirectionally; pretraining text has no prompt and stays causal."""
    stage = data_cfg.get("stage")
    if stage == "sft":
        return _sft_data(data_cfg, tokenizer, prefix_lm)
    if stage == "pretrain":
        return _pretrain_data(data_cfg, tokenizer)
    raise DataConfigError(
        f"data.stage={stage!r} is not one of {STAGES} (pick data=mbpp or data=corpus)"
    )


def load_tasks(data_cfg: dict[str, Any], split: str, limit: int | None) -> list[Any]:
    """The split's `CodeTask`s, or `ExecTask`s for `data.benchmark=exec` (`data.path`: the
    folder `scripts/build_exec_benchmark.py` wrote)."""
    from hrm_codegen.data import load_benchmark

    if data_cfg["benchmark"] == "exec":
        from hrm_codegen.data.exec_programs import load_exec_tasks

        if not data_cfg.get("path"):
            raise DataConfigError(
                "data.benchmark=exec needs data.path=FOLDER (build it with "
                "`python scripts/build_exec_benchmark.py --out FOLDER`)"
            )
        try:
            tasks = load_exec_tasks(data_cfg["path"], split)
        except FileNotFoundError as error:
            raise DataConfigError(str(error)) from error
        return tasks[:limit] if limit else tasks
    tasks = load_benchmark(data_cfg["benchmark"], split=split, path=data_cfg.get("path"))
    if not tasks:
        raise DataConfigError(
            f"{data_cfg['benchmark']} split {split!r} has no tasks (data.path={data_cfg.get('path')})"
        )
    return tasks[:limit] if limit else tasks


def _sft_data(data_cfg: dict[str, Any], tokenizer: Any, prefix_lm: bool = False) -> StageData:
    from hrm_codegen.data.sft import SFTCollator, SFTDataset

    max_len = int(data_cfg["max_seq_len"])
    train_tasks = load_tasks(data_cfg, data_cfg["train_split"], data_cfg.get("train_limit"))
    val_tasks = load_tasks(data_cfg, data_cfg["val_split"], data_cfg.get("val_limit"))
    if data_cfg["benchmark"] == "exec":  # prompt and answer come with the generated tasks
        if data_cfg.get("augment"):
            raise DataConfigError("data.augment rewrites MBPP solutions; exec has none (use 0)")
        train = SFTDataset([], tokenizer, max_len, examples=exec_examples(train_tasks))
        val = SFTDataset([], tokenizer, max_len, examples=exec_examples(val_tasks))
    else:
        augment = int(data_cfg.get("augment") or 0)
        train = SFTDataset(train_tasks, tokenizer, max_len, augment=augment)
        val = SFTDataset(val_tasks, tokenizer, max_len)
    if len(train) == 0:
        raise DataConfigError(
            f"every one of the {len(train_tasks)} training tasks is longer than "
            f"data.max_seq_len={max_len} tokens; raise data.max_seq_len"
        )
    collate = SFTCollator(
        tokenizer.pad_token_id,
        pad_to_multiple_of=data_cfg.get("pad_to_multiple_of"),
        prefix_lm=prefix_lm,
    )
    fingerprints = {}
    if data_cfg["benchmark"] == "exec":  # the built benchmark's identity (its meta.json)
        meta = json.loads((Path(str(data_cfg["path"])) / "meta.json").read_text())
        fingerprints["exec"] = str(meta["fingerprint"])
    return StageData(
        train=train,
        val=val,
        collate=collate,
        eval_tasks=val_tasks,
        fingerprints=fingerprints,
        max_seq_len=max_len,
        description=(
            f"{data_cfg['benchmark']} SFT: {len(train)} train examples from {len(train_tasks)} tasks, "
            f"{len(val)} validation examples"
        ),
    )


def exec_examples(tasks: list[Any]) -> list[Any]:
    """SFT pairs of exec tasks: the program with its open assertion, then the answer."""
    from hrm_codegen.data.sft import SFTExample

    return [SFTExample(t.task_id, 0, t.prompt(), t.target()) for t in tasks]


def _pretrain_data(data_cfg: dict[str, Any], tokenizer: Any) -> StageData:
    from hrm_codegen.data.corpus import (
        PackedDataset,
        read_manifest,
        stack_windows,
        tokenizer_fingerprint,
    )
    from hrm_codegen.tokenization import hrm_codegen_home

    if data_cfg.get("mix"):
        return _mixed_pretrain_data(data_cfg, tokenizer)
    source = data_cfg.get("source")
    default = (
        hrm_codegen_home() / "corpus" / str(source) if source else hrm_codegen_home() / "corpus"
    )
    shard_dir = Path(str(data_cfg.get("shard_dir") or default)).expanduser()
    if not (shard_dir / "meta.json").is_file():
        build = f"--source {source}" if source else "--source stdlib"
        raise DataConfigError(
            f"no corpus at data.shard_dir={shard_dir} (meta.json missing): build it with "
            f"`python scripts/build_corpus.py {build} --output {shard_dir}` or set data.shard_dir"
        )
    seq_len = int(data_cfg["max_seq_len"])
    try:
        train = PackedDataset(shard_dir, data_cfg["train_split"], seq_len)
    except ValueError as error:  # a split too small for one window, or not in the corpus
        raise DataConfigError(f"{error} (data.max_seq_len={seq_len})") from error
    try:
        val = PackedDataset(shard_dir, data_cfg["val_split"], seq_len)
        val_text = f"{len(val)} val windows"
    except ValueError as error:  # e.g. built with --val-fraction 0: train without val loss
        val, val_text = None, f"no validation loss ({error})"
    ours = tokenizer_fingerprint(tokenizer.backend_tokenizer.to_str())
    if train.meta.get("tokenizer_hash") != ours:
        built_with = train.meta.get("tokenizer", {}).get("name")
        raise DataConfigError(
            f"{shard_dir} was tokenized with another tokenizer ({built_with!r}) than this run's; "
            "set tokenizer.path to the one the corpus was built with, or rebuild the corpus"
        )
    return StageData(
        train=train,
        val=val,
        collate=stack_windows,
        max_seq_len=seq_len,
        description=f"corpus {shard_dir}: {len(train)} train windows of {seq_len}, {val_text}",
        fingerprints={"corpus": read_manifest(shard_dir)["fingerprint"]},
    )


def _mixed_pretrain_data(data_cfg: dict[str, Any], tokenizer: Any) -> StageData:
    """Several corpora (`data.mix.sources`: configs/corpus names or folders; default the one
    corpus `data.shard_dir`/`data.source` names), their languages mixed by `data.mix.weights`
    or temperature sampling (`data.mix.temperature`: p_l proportional to n_l^(1/T) over
    training tokens); validation: every source's split, whole, whatever the weights (a
    language with weight 0 is still scored), or the first `data.mix.val_windows_per_language`
    windows of each language's validation documents."""
    from hrm_codegen.data.corpus import (
        PackedDataset,
        read_manifest,
        stack_windows,
        tokenizer_fingerprint,
    )
    from hrm_codegen.data.corpus.languages import MixedWindows, language_probabilities
    from hrm_codegen.data.corpus.packed import ConcatWindows, LanguageWindows
    from hrm_codegen.tokenization import hrm_codegen_home

    mix = dict(data_cfg["mix"])
    sources = [str(name) for name in mix.get("sources") or []]
    if not sources:  # the languages of the stage's one corpus
        source = data_cfg.get("source")
        default = hrm_codegen_home() / "corpus" / (str(source) if source else "")
        sources = [str(data_cfg.get("shard_dir") or default)]
    seq_len = int(data_cfg["max_seq_len"])
    ours = tokenizer_fingerprint(tokenizer.backend_tokenizer.to_str())
    trains, vals, fingerprints = [], [], {}
    for name in sources:
        folder = Path(name).expanduser()
        if not folder.is_dir():
            folder = hrm_codegen_home() / "corpus" / name
        if not (folder / "meta.json").is_file():
            raise DataConfigError(
                f"data.mix.sources: no corpus {name!r} at {folder}: build it with "
                f"`python scripts/build_corpus.py --source {name} --output {folder}`"
            )
        try:
            train = PackedDataset(folder, data_cfg["train_split"], seq_len)
        except ValueError as error:
            raise DataConfigError(f"{error} (data.max_seq_len={seq_len})") from error
        if train.meta.get("tokenizer_hash") != ours:
            raise DataConfigError(
                f"{folder} was tokenized with another tokenizer than this run's; build every "
                "corpus of data.mix.sources with tokenizer.path"
            )
        trains.append(train)
        # too small or no split: the other sources' validation still counts
        with contextlib.suppress(ValueError):
            vals.append(PackedDataset(folder, data_cfg["val_split"], seq_len))
        fingerprints[f"corpus_{Path(name).name}"] = read_manifest(folder)["fingerprint"]
    languages = sorted({lang for part in trains for lang in part.language_names})
    try:
        windows = {lang: LanguageWindows(trains, lang, seq_len) for lang in languages}
        weights = mix.get("weights")
        probabilities = language_probabilities(
            {lang: w.tokens for lang, w in windows.items()},
            float(mix.get("temperature") or 1.0),
            dict(weights) if weights else None,
        )
        train_set = MixedWindows(windows, probabilities)
    except ValueError as error:
        raise DataConfigError(f"data.mix: {error}") from error
    per_language = mix.get("val_windows_per_language")
    if per_language:  # the first N validation windows of each language: every one scored
        val = ConcatWindows(
            [LanguageWindows(vals, lang, seq_len, int(per_language)) for lang in languages]
        )
    else:
        val = ConcatWindows(vals)
    val = val if len(val) else None
    shares = ", ".join(f"{lang} {p:.3f}" for lang, p in probabilities.items())
    if len(fingerprints) == 1:  # one corpus: the run reads its shards, as without a mix
        fingerprints = {"corpus": next(iter(fingerprints.values()))}
    else:
        combined = json.dumps(sorted(fingerprints.items())).encode()
        fingerprints = {"corpus": hashlib.sha256(combined).hexdigest(), **fingerprints}
    return StageData(
        train=train_set,
        val=val,
        collate=stack_windows,
        max_seq_len=seq_len,
        description=(
            f"mixed corpora {sources}: {len(train_set)} train windows of {seq_len} "
            f"(languages: {shares}), {len(val) if val is not None else 0} val windows"
        ),
        fingerprints=fingerprints,
    )


def count_label_tokens(batch: dict[str, torch.Tensor]) -> int:
    return int((batch["labels"] != -100).sum())


# ----------------------------------------------------------------------------- tokenizer


def build_tokenizer(tok_cfg: dict[str, Any], data_cfg: dict[str, Any], cache_root: Path) -> Any:
    """The configured tokenizer, or a small code BPE trained (once, cached) for this data.

    The trained BPE sees the MBPP *training* text (prompts and solutions, never validation or test)
    plus `stdlib_mb` MB of the interpreter's standard library, in a fixed order, so the same config
    always yields the same tokenizer and the cache key is a hash of exactly what it was trained on.
    """
    from hrm_codegen.tokenization import load_tokenizer

    if tok_cfg.get("path"):
        return load_tokenizer(str(tok_cfg["path"]))
    if data_cfg.get("stage") != "sft":
        raise DataConfigError(
            "pretraining needs the tokenizer its corpus was built with: set tokenizer.path "
            "(e.g. tokenizer.path=code-bpe)"
        )
    return load_tokenizer(auto_tokenizer_dir(tok_cfg, data_cfg, cache_root))


def auto_tokenizer_dir(tok_cfg: dict[str, Any], data_cfg: dict[str, Any], cache_root: Path) -> Path:
    """The folder of the small code BPE `build_tokenizer` trains for this data (trained once)."""
    from hrm_codegen.data.prompts import format_prompt, format_target

    train_tasks = load_tasks(data_cfg, data_cfg["train_split"], None)
    if data_cfg["benchmark"] == "exec":
        texts = [task.prompt() + task.target() for task in train_tasks]
    else:
        texts = [format_prompt(task) + format_target(task) for task in train_tasks]
    texts += list(stdlib_texts(float(tok_cfg.get("stdlib_mb") or 0)))
    vocab_size = int(tok_cfg["vocab_size"])
    digest = hashlib.sha256(str(vocab_size).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    folder = cache_root / "tokenizers" / f"auto-{digest.hexdigest()[:16]}"
    if not (folder / "tokenizer.json").is_file():
        from hrm_codegen.tokenization import train_code_bpe

        # Train into a private folder and rename it into place: a concurrent run never reads a
        # half-written tokenizer.
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        train_code_bpe(iter(texts), vocab_size, tmp)
        if folder.exists():  # another process finished first: keep its copy
            shutil.rmtree(tmp)
        else:
            tmp.rename(folder)
    return folder


def stdlib_texts(megabytes: float) -> Iterator[str]:
    """Up to `megabytes` MB of standard-library source, files in sorted order (deterministic)."""
    budget = int(megabytes * 1_000_000)
    if budget <= 0:
        return
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "test" in path.parts or "tests" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        yield text
        budget -= len(text)
        if budget <= 0:
            return
