"""`load_tokenizer`: GPT-2 or our code BPE as a `transformers` fast tokenizer with BOS/EOS/PAD set.

Every tokenizer leaves `clean_up_tokenization_spaces` off: decode(encode(x)) must give back the
program byte for byte, or generated code would be silently re-spaced.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

GPT2_DIR_ENV = "HRM_CODEGEN_GPT2_DIR"
HOME_ENV = "HRM_CODEGEN_HOME"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
TRAIN_COMMAND = "python scripts/train_tokenizer.py"


def hrm_codegen_home() -> Path:
    """Where trained artefacts live: `$HRM_CODEGEN_HOME`, default `~/.cache/hrm_codegen`."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "hrm_codegen").expanduser()


def default_code_bpe_dir() -> Path:
    """The folder `load_tokenizer("code-bpe")` reads and `train_tokenizer.py` writes by default."""
    return hrm_codegen_home() / "tokenizers" / "code-bpe"


def _finish(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Set BOS = EOS = `<|endoftext|>` and PAD = `<|pad|>` when the vocabulary has it, else EOS."""
    vocab = tokenizer.get_vocab()
    if EOS_TOKEN not in vocab:
        raise ValueError(
            f"tokenizer has no {EOS_TOKEN!r} token; hrm_codegen needs it as BOS/EOS. "
            f"Train one with `{TRAIN_COMMAND}` or use 'gpt2'."
        )
    tokenizer.bos_token = EOS_TOKEN
    tokenizer.eos_token = EOS_TOKEN
    tokenizer.pad_token = PAD_TOKEN if PAD_TOKEN in vocab else EOS_TOKEN
    tokenizer.clean_up_tokenization_spaces = False
    tokenizer.model_max_length = int(1e9)  # the model, not the tokenizer, bounds the length
    return tokenizer


def _from_folder(folder: Path) -> PreTrainedTokenizerFast:
    """A folder with `tokenizer.json`, or GPT-2 style `vocab.json` + `merges.txt`."""
    if (folder / "tokenizer.json").is_file():
        return _from_file(folder / "tokenizer.json")
    if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        return _finish(PreTrainedTokenizerFast(tokenizer_object=_gpt2_style_bpe(folder)))
    raise FileNotFoundError(
        f"{folder} holds neither tokenizer.json nor vocab.json + merges.txt; "
        f"pass a tokenizer folder, 'gpt2', or 'code-bpe' (trained by `{TRAIN_COMMAND}`)"
    )


def _gpt2_style_bpe(folder: Path) -> Tokenizer:
    """GPT-2's byte-level BPE built from `vocab.json` + `merges.txt` with the `tokenizers` API.

    Built by hand rather than via `GPT2TokenizerFast(vocab_file=...)` because that constructor
    changed between transformers 4 and 5; this works with both.
    """
    tokenizer = Tokenizer(
        models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"))
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([EOS_TOKEN])
    return tokenizer


def _from_file(path: Path) -> PreTrainedTokenizerFast:
    return _finish(
        PreTrainedTokenizerFast(tokenizer_file=str(path), clean_up_tokenization_spaces=False)
    )


def _load_gpt2() -> PreTrainedTokenizerFast:
    env_dir = os.environ.get(GPT2_DIR_ENV)
    if env_dir:
        folder = Path(env_dir).expanduser()
        if not (folder / "vocab.json").is_file():
            raise FileNotFoundError(
                f"${GPT2_DIR_ENV}={env_dir} has no vocab.json/merges.txt; point it at a folder "
                "with the GPT-2 tokenizer files or unset it to download 'gpt2' from the hub"
            )
        return _from_folder(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained("gpt2", clean_up_tokenization_spaces=False)
    except Exception as error:  # offline, no cache: name both ways to fix it
        raise OSError(
            f"cannot load the GPT-2 tokenizer: ${GPT2_DIR_ENV} is not set and the hub "
            f"failed ({error}). Set {GPT2_DIR_ENV} to a folder with vocab.json + merges.txt, "
            "or allow hub access (HF_HUB_OFFLINE unset, network or a populated HF cache)."
        ) from error
    return _finish(tokenizer)


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerFast:
    """`"gpt2"`, `"code-bpe"`, or a path to a tokenizer folder / `tokenizer.json`.

    Model vocabulary size is `len(tokenizer)` (50257 for GPT-2; PAD reuses EOS there).
    """
    name = os.fspath(name_or_path)
    if name == "gpt2":
        return _load_gpt2()
    if name == "code-bpe":
        folder = default_code_bpe_dir()
        if not (folder / "tokenizer.json").is_file():
            raise FileNotFoundError(
                f"the code BPE is not trained yet: {folder / 'tokenizer.json'} is missing. "
                f"Run `{TRAIN_COMMAND}` (writes there; ${HOME_ENV} moves it) or pass a "
                "path to a tokenizer.json"
            )
        return _from_folder(folder)
    path = Path(name).expanduser()
    if path.is_dir():
        return _from_folder(path)
    if path.is_file():
        if path.suffix != ".json":
            raise ValueError(f"{path} is not a tokenizer.json; pass the file or its folder")
        return _from_file(path)
    raise FileNotFoundError(
        f"unknown tokenizer {name!r}: not 'gpt2', 'code-bpe', nor an existing path to a "
        "folder with tokenizer.json (or vocab.json + merges.txt) or to a tokenizer.json"
    )


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of a tokenizer's canonical serialised form (a `transformers` fast tokenizer, a
    `tokenizers.Tokenizer`, or its JSON string): token ids are only comparable under equal ones."""
    import hashlib

    if hasattr(tokenizer, "backend_tokenizer"):
        tokenizer = tokenizer.backend_tokenizer
    text = tokenizer if isinstance(tokenizer, str) else tokenizer.to_str()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
