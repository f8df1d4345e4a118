"""Tokenizers: GPT-2's byte-level BPE and a code BPE trained on Python source."""

from hrm_codegen.tokenization.load import (
    default_code_bpe_dir,
    hrm_codegen_home,
    load_tokenizer,
    tokenizer_fingerprint,
)
from hrm_codegen.tokenization.train import train_code_bpe

__all__ = [
    "default_code_bpe_dir",
    "hrm_codegen_home",
    "load_tokenizer",
    "tokenizer_fingerprint",
    "train_code_bpe",
]
