"""Shared fixtures: where the optional benchmark data and tokenizer files live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


def _dir_from_env(var: str, fallback: Path) -> Path | None:
    value = os.environ.get(var)
    path = Path(value) if value else fallback
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder with mbpp.jsonl, sanitized-mbpp.json and HumanEval.jsonl.gz; skips when absent."""
    path = _dir_from_env("HRM_CODEGEN_DATA_DIR", SHARED / "data")
    if path is None:
        pytest.skip(
            "benchmark data not found: set HRM_CODEGEN_DATA_DIR to a folder with mbpp.jsonl"
        )
    return path


@pytest.fixture(scope="session")
def gpt2_dir() -> Path:
    """Folder with GPT-2 vocab.json and merges.txt; skips when absent."""
    path = _dir_from_env("HRM_CODEGEN_GPT2_DIR", SHARED / "tokenizers" / "gpt2")
    if path is None or not (path / "vocab.json").exists():
        pytest.skip("GPT-2 tokenizer files not found: set HRM_CODEGEN_GPT2_DIR")
    return path
