"""Several languages in one corpus: a language-balanced text sample for the tokenizer, the
per-language probabilities a mixed pretraining run samples windows with, and its windows
(`MixedWindows`).

The tokenizer must not learn its merges mostly from whichever language has the most source, so
`balanced_sample` gives every language the same byte budget (a language with less gives all it
has, and the sample records it). Training mixes languages by `language_probabilities`:
p_l proportional to n_l^(1/T) over the languages' training tokens (T=1: as found; larger T
flattens towards uniform), or explicit weights.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hrm_codegen.data.corpus.packed import LanguageWindows
from hrm_codegen.data.corpus.sources import Document, read_document, source_from_config
from hrm_codegen.data.corpus_filters import (
    Decontaminator,
    FilterConfig,
    content_hash,
    decode_source,
    is_validation,
    quality_drop_reason,
)


@dataclass
class LanguageTexts:
    """The usable training-split texts of one language, in source order, with why others went."""

    texts: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def num_bytes(self) -> int:
        return sum(len(text.encode("utf-8", "surrogatepass")) for text in self.texts)


def texts_by_language(
    documents: Iterable[Document],
    *,
    val_fraction: float,
    decontaminator: Decontaminator | None = None,
    filters: FilterConfig | None = None,
) -> dict[str, LanguageTexts]:
    """Each language's documents that pass the corpus build's filters, duplicates and
    decontamination removed, leaving out the ones the build puts in the validation split (so
    the tokenizer never sees the text its compression is measured on)."""
    filters = filters or FilterConfig()
    found: dict[str, LanguageTexts] = {}
    hashes: set[str] = set()
    for document in documents:
        entry = found.setdefault(document.language, LanguageTexts())
        content = read_document(document)
        text = decode_source(content) if isinstance(content, bytes) else content
        reason = "non_utf8" if text is None else quality_drop_reason(text, filters)
        if reason is None and decontaminator is not None and decontaminator.is_contaminated(text):
            reason = "contaminated"
        digest = content_hash(text) if reason is None else ""
        if reason is None and digest in hashes:
            reason = "duplicate"
        if reason is None and is_validation(digest, val_fraction):
            reason = "validation"
        if reason is not None:
            entry.dropped[reason] = entry.dropped.get(reason, 0) + 1
            continue
        hashes.add(digest)
        entry.texts.append(text)
    return found


def validation_texts_by_language(
    documents: Iterable[Document], *, val_fraction: float
) -> dict[str, list[str]]:
    """The documents the corpus build puts in its validation split, by language (quality
    filters applied; the build's decontamination dropped nothing a benchmark shares)."""
    found: dict[str, list[str]] = {}
    for document in documents:
        content = read_document(document)
        text = decode_source(content) if isinstance(content, bytes) else content
        if text is None or quality_drop_reason(text, FilterConfig()) is not None:
            continue
        if is_validation(content_hash(text), val_fraction):
            found.setdefault(document.language, []).append(text)
    return found


def named_corpus_documents(names: Iterable[str]) -> tuple[list[Document], dict[str, float]]:
    """The documents of `configs/corpus/<name>` sources, in order, and each source's
    validation fraction (by name)."""
    from hrm_codegen.data.corpus.sources import named_source_config

    documents: list[Document] = []
    fractions: dict[str, float] = {}
    for name in names:
        config = named_source_config(name)
        fractions[config["name"]] = float(config.get("val_fraction", 0.01))
        documents += source_from_config(config).documents()
    return documents, fractions


def balanced_sample(
    by_language: Mapping[str, LanguageTexts], bytes_per_language: int | None, seed: int = 0
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """An equal byte budget of text per language (None: the smallest language's bytes), whole
    documents in a seeded order; returns the texts (languages interleaved by a seeded shuffle)
    and, per language, the documents and bytes taken and available."""
    if not by_language:
        raise ValueError("no documents to sample from")
    available = {lang: entry.num_bytes for lang, entry in by_language.items()}
    budget = min(available.values()) if bytes_per_language is None else int(bytes_per_language)
    if budget <= 0:
        raise ValueError(f"bytes_per_language={bytes_per_language} must be positive")
    rng = random.Random(seed)
    sample: list[str] = []
    counts: dict[str, dict[str, Any]] = {}
    for language in sorted(by_language):
        texts = list(by_language[language].texts)
        rng.shuffle(texts)
        taken_bytes, taken = 0, 0
        for text in texts:
            if taken_bytes >= budget:
                break
            sample.append(text)
            taken_bytes += len(text.encode("utf-8", "surrogatepass"))
            taken += 1
        counts[language] = {
            "documents": taken,
            "bytes": taken_bytes,
            "available_documents": len(texts),
            "available_bytes": available[language],
            "dropped": dict(sorted(by_language[language].dropped.items())),
        }
    rng.shuffle(sample)
    return sample, counts


def language_probabilities(
    token_counts: Mapping[str, int],
    temperature: float = 1.0,
    weights: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Sampling probability per language: the given `weights` normalised, else p_l proportional
    to n_l^(1/temperature) over the languages' token counts. A zero weight leaves a language
    out of training (its validation text is still scored)."""
    if weights:
        unknown = set(weights) - set(token_counts)
        if unknown:
            raise ValueError(
                f"weights for {sorted(unknown)}, which the corpora do not hold "
                f"(they hold {sorted(token_counts)})"
            )
        raw = {lang: float(weights.get(lang, 0.0)) for lang in token_counts}
    else:
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be positive")
        raw = {lang: float(n) ** (1.0 / temperature) for lang, n in token_counts.items()}
    if any(value < 0 for value in raw.values()):
        raise ValueError(f"negative language weight in {raw}")
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(f"every language has weight 0 ({raw}): nothing to train on")
    return {lang: value / total for lang, value in sorted(raw.items())}


def allocate(total: int, probabilities: Mapping[str, float]) -> dict[str, int]:
    """`total` items split by `probabilities` (largest remainder: the parts sum to `total`)."""
    exact = {lang: total * p for lang, p in probabilities.items()}
    parts = {lang: int(value) for lang, value in exact.items()}
    order = sorted(exact, key=lambda lang: (parts[lang] - exact[lang], lang))
    for lang in order[: total - sum(parts.values())]:
        parts[lang] += 1
    return parts


class MixedWindows(Dataset):
    """Training windows of several languages in fixed proportions: of its `len` items,
    `allocate(len, probabilities)` are each language's (that language's windows spread evenly
    over its share, repeated when the share is larger than the windows it has), so any
    permutation of the items, one per epoch, sees every language in exactly its proportion."""

    def __init__(
        self, windows: Mapping[str, LanguageWindows], probabilities: Mapping[str, float]
    ) -> None:
        self.windows = {lang: windows[lang] for lang in sorted(windows) if probabilities.get(lang)}
        empty = [lang for lang, w in self.windows.items() if len(w) == 0]
        if empty:
            raise ValueError(f"no full training window of {empty}: shorten data.max_seq_len")
        if not self.windows:
            raise ValueError("no language with a positive weight has training text")
        self.probabilities = {lang: float(probabilities[lang]) for lang in self.windows}
        total = sum(len(w) for w in self.windows.values())
        self.counts = allocate(total, _normalised(self.probabilities))
        self.languages = list(self.windows)
        self.starts = np.cumsum([0] + [self.counts[lang] for lang in self.languages])
        self.language_codes = np.repeat(
            np.arange(len(self.languages)), [self.counts[lang] for lang in self.languages]
        )
        self.seq_len = next(iter(self.windows.values())).seq_len

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        index %= len(self)
        code = int(self.language_codes[index])
        language = self.languages[code]
        local, share = index - int(self.starts[code]), self.counts[language]
        available = len(self.windows[language])
        window = local * available // share if share <= available else local % available
        return self.windows[language][window]

    def tokens_by_language(self, epoch: int, taken: list[int]) -> dict[str, int]:
        """Label tokens of each language a run has trained on after `epoch` whole epochs and
        the items `taken` of the current one (each window: `seq_len` label tokens)."""
        partial = np.bincount(
            self.language_codes[np.asarray(taken, dtype=np.int64)], minlength=len(self.languages)
        )
        return {
            lang: (epoch * self.counts[lang] + int(partial[code])) * self.seq_len
            for code, lang in enumerate(self.languages)
        }


def _normalised(weights: Mapping[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {lang: value / total for lang, value in weights.items()}
