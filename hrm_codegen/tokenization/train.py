"""Train the code BPE: byte-level BPE over Python-aware pre-tokens, and measure its compression.

The pre-tokenizer keeps identifiers whole (`min_cost`, `__init__`, with an optional leading
space or dot: ` self`, `.append`), lets a run of operators absorb the line break and the next
line's indentation (`):\\n        `), and keeps runs of spaces and tabs together, so the merges
learned make indentation and line ends cheap. Byte-level, so every string round-trips.

The standard library is written in PEP 8 layout only (LF, 4 spaces), while benchmark code also
uses CRLF line endings and tabs; by default a fixed, seeded fraction of training files is shown
with CRLF endings or tab indentation so those layouts get merges too (the text is otherwise
unchanged, and benchmark data is never part of the training text).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm.auto import tqdm

from hrm_codegen.tokenization.load import (
    EOS_TOKEN,
    PAD_TOKEN,
    default_code_bpe_dir,
    tokenizer_fingerprint,
)

DEFAULT_VOCAB_SIZE = 16384
CODE_PRETOKENIZE_PATTERN = (
    r"[ .]?[\p{L}_][\p{L}\p{N}_]*"  # identifiers and keywords, optionally after a space or dot
    r"| ?\p{N}+"  # numbers
    r"| ?[^\s\p{L}\p{N}_]+(?:\r?\n)*[ \t]*"  # operators, then line break(s) and indentation
    r"|(?:\r?\n)+[ \t]*"  # line break(s) and the indentation that follows
    r"|[ \t]+"  # other runs of spaces and tabs
)
_LEADING_SPACES = re.compile(r"(?m)^((?:    )+)")


def new_code_bpe() -> Tokenizer:
    """An untrained tokenizer with the code pre-tokenizer and byte-level decoding."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CODE_PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def vary_layout(
    texts: Iterable[str], crlf_fraction: float = 0.125, tab_fraction: float = 0.0625, seed: int = 0
) -> Iterator[str]:
    """Show a seeded fraction of texts with CRLF line endings, another with tab indentation."""
    rng = random.Random(seed)
    for text in texts:
        if rng.random() < tab_fraction:
            text = _LEADING_SPACES.sub(lambda m: "\t" * (len(m.group(1)) // 4), text)
        if rng.random() < crlf_fraction:
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")
        yield text


def _names_a_file(item: str) -> bool:
    if "\n" in item or len(item) > 4096:
        return False
    try:
        return Path(item).is_file()
    except (OSError, ValueError):
        return False


def _as_texts(files_or_texts: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Paths (and strings naming existing files) are read; other strings are texts already."""
    for item in files_or_texts:
        if isinstance(item, os.PathLike) or _names_a_file(item):
            try:
                yield Path(item).read_text(encoding="utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"{item} is not UTF-8 ({error}); filter the files first"
                ) from error
        else:
            yield item


def train_code_bpe(
    files_or_iterator: Iterable[str | os.PathLike] | Iterable[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    output_dir: str | os.PathLike | None = None,
    vary_layouts: bool = True,
    seed: int = 0,
    progress: bool = True,
    manifest: dict | None = None,
) -> Path:
    """Train the code BPE and save `tokenizer.json` in `output_dir`; returns that folder.

    `files_or_iterator` is a list of file paths (`Path`s, or strings naming existing files) or
    an iterable of texts. Special tokens: `<|endoftext|>` (id 0, BOS/EOS) and `<|pad|>` (id 1).
    `output_dir` defaults to `default_code_bpe_dir()`, where `load_tokenizer("code-bpe")` looks.
    `manifest`: more to record in `training.json` (e.g. the bytes per language sampled).
    """
    if vocab_size < 300:
        raise ValueError(f"vocab_size={vocab_size} is below the 256 bytes + specials it needs")
    if isinstance(files_or_iterator, (str, os.PathLike)):
        raise TypeError("pass a list of files or an iterable of texts, not a single path/string")
    texts: Iterable[str] = _as_texts(files_or_iterator)
    if vary_layouts:
        texts = vary_layout(texts, seed=seed)
    counted = {"texts": 0, "chars": 0}

    def counting(stream: Iterable[str]) -> Iterator[str]:
        for text in tqdm(stream, desc="bpe corpus", unit="file", disable=not progress):
            counted["texts"] += 1
            counted["chars"] += len(text)
            yield text

    tokenizer = new_code_bpe()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tokenizer.train_from_iterator(counting(texts), trainer=trainer)
    if counted["texts"] == 0:
        raise ValueError("no training text: the file list or iterator was empty")
    output = Path(output_dir).expanduser() if output_dir is not None else default_code_bpe_dir()
    output.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(output / "tokenizer.json"))
    info = {
        "vocab_size": tokenizer.get_vocab_size(),
        "training_texts": counted["texts"],
        "training_chars": counted["chars"],
        "vary_layouts": vary_layouts,
        "seed": seed,
        "pretokenize_pattern": CODE_PRETOKENIZE_PATTERN,
        # what a corpus manifest and a run record as this tokenizer's identity
        "fingerprint": tokenizer_fingerprint(tokenizer),
        **(manifest or {}),
    }
    (output / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return output


def tokens_per_char(tokenizer, texts: list[str]) -> float:
    """Tokens per character over `texts` (batch-encoded, no special tokens)."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return sum(len(x) for x in ids) / max(1, sum(len(t) for t in texts))


def compression_table(tokenizers: dict, corpora: dict[str, list[str]], baseline: str) -> str:
    """Tokens per character of each tokenizer on each text set, and its ratio to `baseline`."""
    header = (
        f"{'texts':<24} {'tokenizer':<12} {'chars':>10} {'tokens':>10} {'tok/char':>9} {'ratio':>7}"
    )
    lines = [header, "-" * len(header)]
    for corpus_name, texts in corpora.items():
        chars = sum(len(t) for t in texts)
        rates = {name: tokens_per_char(tok, texts) for name, tok in tokenizers.items()}
        for name, rate in rates.items():
            ratio = rate / rates[baseline]
            lines.append(
                f"{corpus_name:<24} {name:<12} {chars:>10,} {round(rate * chars):>10,} "
                f"{rate:>9.4f} {ratio:>7.3f}"
            )
    return "\n".join(lines)


def tokens_per_byte(tokenizer, texts: list[str]) -> float:
    """Tokens per UTF-8 byte over `texts` (no special tokens): comparable across languages."""
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    num_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
    return sum(len(x) for x in ids) / max(1, num_bytes)


def language_table(tokenizers: dict, texts_by_language: dict[str, list[str]]) -> str:
    """One row per language: its bytes and each tokenizer's tokens per byte (lower is better)."""
    names = list(tokenizers)
    width = max(12, *(len(name) for name in names))
    header = f"{'language':<12} {'bytes':>12} " + " ".join(f"{n:>{width}}" for n in names)
    lines = ["tokens per byte", header, "-" * len(header)]
    for language in sorted(texts_by_language):
        texts = texts_by_language[language]
        num_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
        rates = [tokens_per_byte(tokenizers[name], texts) for name in names]
        lines.append(
            f"{language:<12} {num_bytes:>12,} " + " ".join(f"{r:>{width}.4f}" for r in rates)
        )
    return "\n".join(lines)
