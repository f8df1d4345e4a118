"""Tokenizers: GPT-2's byte-level BPE and a code BPE trained on Python source."""

from hrm_codegen.tokenization.load import default_code_bpe_dir, hrm_codegen_home, load_tokenizer

__all__ = ["default_code_bpe_dir", "hrm_codegen_home", "load_tokenizer", "train_code_bpe"]


def __getattr__(name: str):
    # Training pulls in corpus code; import it only when asked for.
    if name == "train_code_bpe":
        from hrm_codegen.tokenization.train import train_code_bpe

        return train_code_bpe
    raise AttributeError(f"module 'hrm_codegen.tokenization' has no attribute {name!r}")
