"""Near-duplicate removal with MinHash LSH (datasketch), across the corpus and against benchmarks.

Exact de-duplication (a whitespace-free content hash) misses forks, vendored copies and files that
differ by a header or a renamed variable; code corpora are full of them (Lee et al. 2022; Allal et
al. 2023 used MinHash on 5-grams at Jaccard 0.85 for The Stack). Signatures are computed in the
tokenizing workers (`signature`), and the main process queries and fills one `MinHashLSH` index in
document order, so the first copy of a cluster is kept and the result does not depend on the
number of workers. Candidates from the index are confirmed by their estimated Jaccard similarity.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hrm_codegen.data.corpus_filters import normalized_tokens

BENCHMARK_KEY_PREFIX = "benchmark:"


@dataclass(frozen=True)
class NearDedupConfig:
    """MinHash settings: `num_perm` permutations over word `shingle`-grams; pairs at estimated
    Jaccard >= `threshold` are near-duplicates."""

    threshold: float = 0.85
    num_perm: int = 128
    shingle: int = 5
    seed: int = 1
    scheme: str = "affine32"  # datasketch's permutation scheme, named so signatures stay comparable

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"near_dedup.threshold={self.threshold} must be in (0, 1]")
        if self.num_perm < 16 or self.shingle < 1:
            raise ValueError(
                f"near_dedup.num_perm={self.num_perm} must be >= 16 and shingle={self.shingle} >= 1"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def shingles(text: str, size: int) -> set[bytes]:
    """The set of word `size`-grams of the normalised text (the whole text when shorter)."""
    tokens = normalized_tokens(text)
    if len(tokens) <= size:
        return {" ".join(tokens).encode()}
    return {" ".join(tokens[i : i + size]).encode() for i in range(len(tokens) - size + 1)}


def signature(text: str, config: NearDedupConfig) -> np.ndarray:
    """The MinHash signature (num_perm hash values) of a text; cheap to send between processes."""
    from datasketch import MinHash

    minhash = MinHash(num_perm=config.num_perm, seed=config.seed, scheme=config.scheme)
    minhash.update_batch(sorted(shingles(text, config.shingle)))
    return minhash.hashvalues.copy()


class NearDuplicateIndex:
    """An LSH index filled in document order; `check_and_add` answers "near-duplicate of what?"."""

    def __init__(self, config: NearDedupConfig) -> None:
        from datasketch import MinHashLSH

        self.config = config
        self.lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
        self._signatures: dict[str, np.ndarray] = {}

    def _minhash(self, hashvalues: np.ndarray):  # noqa: ANN202 (datasketch's LeanMinHash)
        from datasketch import LeanMinHash

        return LeanMinHash(seed=self.config.seed, hashvalues=hashvalues, scheme=self.config.scheme)

    def add_reference(self, key: str, hashvalues: np.ndarray) -> None:
        """A benchmark text: corpus documents near it are dropped, it is never kept itself."""
        key = BENCHMARK_KEY_PREFIX + key
        if key not in self._signatures:
            self.lsh.insert(key, self._minhash(hashvalues))
            self._signatures[key] = hashvalues

    def check_and_add(self, key: str, hashvalues: np.ndarray) -> str | None:
        """An indexed document it near-duplicates (Jaccard estimate >= threshold; benchmark texts
        first, then the smallest key), else None after adding it to the index."""
        minhash = self._minhash(hashvalues)
        matches = []
        for other in self.lsh.query(minhash):
            similarity = float(np.mean(self._signatures[other] == hashvalues))
            if similarity >= self.config.threshold:
                matches.append(other)
        if matches:
            return min(matches, key=lambda k: (not k.startswith(BENCHMARK_KEY_PREFIX), k))
        self.lsh.insert(key, minhash)
        self._signatures[key] = hashvalues
        return None
