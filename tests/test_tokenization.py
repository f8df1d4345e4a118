"""load_tokenizer (GPT-2, code BPE, paths), train_code_bpe, and exact round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrm_codegen.data import load_benchmark
from hrm_codegen.data.corpus import stdlib_python_files
from hrm_codegen.data.prompts import format_prompt, format_target
from hrm_codegen.tokenization import load as load_module
from hrm_codegen.tokenization import load_tokenizer, train_code_bpe
from hrm_codegen.tokenization.train import (
    CODE_PRETOKENIZE_PATTERN,
    compression_table,
    tokens_per_char,
    vary_layout,
)

TRICKY = [
    "def f(a,\tb):\r\n\treturn a + b\r\n",
    "x = 'héllo wörld ✓ 你好 🐍'\n",
    "\t\t  \t mixed indentation \n\n\n",
    "",
    " leading space and trailing space ",
    "s = '<|endoftext|> inside a string'",
    "\r\rlone carriage returns\r",
]


def _small_training_texts() -> list[str]:
    """~150 standard-library modules: enough code for a few thousand merges in a second."""
    files = stdlib_python_files()
    return [p.read_text(encoding="utf-8", errors="replace") for p in files[:1500:10]]


@pytest.fixture(scope="module")
def small_bpe(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("bpe")
    return train_code_bpe(_small_training_texts(), 2000, output, progress=False)


def test_gpt2_from_folder_has_standard_ids(gpt2_dir, monkeypatch):
    tokenizer = load_tokenizer(gpt2_dir)
    assert len(tokenizer) == 50257
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == tokenizer.pad_token_id == 50256
    assert tokenizer("hello world", add_special_tokens=False)["input_ids"] == [31373, 995]
    monkeypatch.setenv("HRM_CODEGEN_GPT2_DIR", str(gpt2_dir))
    by_name = load_tokenizer("gpt2")
    assert (
        by_name("def f():\n    pass")["input_ids"] == tokenizer("def f():\n    pass")["input_ids"]
    )


def test_gpt2_resolution_errors_name_both_ways(tmp_path, monkeypatch):
    monkeypatch.setenv("HRM_CODEGEN_GPT2_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="HRM_CODEGEN_GPT2_DIR"):
        load_tokenizer("gpt2")
    monkeypatch.delenv("HRM_CODEGEN_GPT2_DIR")

    def offline(*args, **kwargs):
        raise OSError("we are offline")

    monkeypatch.setattr(load_module.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(OSError) as error:
        load_tokenizer("gpt2")
    assert "HRM_CODEGEN_GPT2_DIR" in str(error.value) and "hub" in str(error.value)
    assert "we are offline" in str(error.value)


def test_code_bpe_missing_names_the_training_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HRM_CODEGEN_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python scripts/train_tokenizer.py") as error:
        load_tokenizer("code-bpe")
    assert str(tmp_path / "tokenizers" / "code-bpe") in str(error.value)
    with pytest.raises(FileNotFoundError, match="unknown tokenizer"):
        load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="neither tokenizer.json"):
        load_tokenizer(tmp_path)


def test_code_bpe_special_tokens_and_default_location(small_bpe, tmp_path, monkeypatch):
    tokenizer = load_tokenizer(small_bpe)
    assert len(tokenizer) == 2000
    assert tokenizer.convert_ids_to_tokens([0, 1]) == ["<|endoftext|>", "<|pad|>"]
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == 0
    assert tokenizer.pad_token_id == 1
    # no BOS/EOS is added implicitly: the data code adds them where they belong
    assert 0 not in tokenizer("def f(): pass")["input_ids"]
    file_tokenizer = load_tokenizer(small_bpe / "tokenizer.json")
    assert file_tokenizer("x = 1")["input_ids"] == tokenizer("x = 1")["input_ids"]
    home = tmp_path / "home"
    (home / "tokenizers" / "code-bpe").mkdir(parents=True)
    (home / "tokenizers" / "code-bpe" / "tokenizer.json").write_bytes(
        (small_bpe / "tokenizer.json").read_bytes()
    )
    monkeypatch.setenv("HRM_CODEGEN_HOME", str(home))
    assert load_tokenizer("code-bpe")("x = 1")["input_ids"] == tokenizer("x = 1")["input_ids"]


def test_code_bpe_makes_indentation_and_line_ends_cheap(small_bpe):
    tokenizer = load_tokenizer(small_bpe)
    tokens = tokenizer.convert_ids_to_tokens(
        tokenizer("        ", add_special_tokens=False)["input_ids"]
    )
    assert len(tokens) == 1  # eight spaces, one token
    body = "def f(x):\n    if x:\n        return x\n"
    pieces = [tokenizer.decode([i]) for i in tokenizer(body, add_special_tokens=False)["input_ids"]]
    # each line end is one token together with the next line's indentation
    assert "):\n    " in pieces and ":\n        " in pieces
    assert len(pieces) <= 12


@pytest.mark.parametrize("text", TRICKY)
def test_round_trip_is_exact_on_tricky_text(small_bpe, gpt2_dir, text):
    for tokenizer in (load_tokenizer(small_bpe), load_tokenizer(gpt2_dir)):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_round_trip_on_every_benchmark_text(small_bpe, gpt2_dir, data_dir):
    texts = []
    for name in ("mbpp", "mbpp_sanitized", "humaneval"):
        for task in load_benchmark(name, path=data_dir):
            texts += [
                task.prompt,
                task.reference_solution,
                format_prompt(task),
                format_target(task),
            ]
            texts += [*task.tests, task.setup_code]
    assert any("\r\n" in t for t in texts) and any("\t" in t for t in texts)
    assert any(not t.isascii() for t in texts)
    for tokenizer in (load_tokenizer(small_bpe), load_tokenizer(gpt2_dir)):
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        decoded = tokenizer.batch_decode(ids)
        mismatched = [t for t, d in zip(texts, decoded) if t != d]
        assert mismatched == []


def test_train_code_bpe_accepts_files_and_iterators(tmp_path):
    files = stdlib_python_files()[:40]
    from_paths = train_code_bpe(files, 600, tmp_path / "paths", progress=False)
    from_strings = train_code_bpe(
        [str(f) for f in files], 600, tmp_path / "strings", progress=False
    )
    texts = (f.read_text(encoding="utf-8") for f in files)
    from_iterator = train_code_bpe(texts, 600, tmp_path / "iter", progress=False)
    saved = [(d / "tokenizer.json").read_text() for d in (from_paths, from_strings, from_iterator)]
    assert saved[0] == saved[1] == saved[2]  # same text, same seed: identical tokenizer
    assert CODE_PRETOKENIZE_PATTERN.replace("\\", "\\\\") in saved[0]
    with pytest.raises(ValueError, match="no training text"):
        train_code_bpe(iter([]), 600, tmp_path / "empty", progress=False)
    with pytest.raises(ValueError, match="vocab_size=100"):
        train_code_bpe(files, 100, tmp_path / "tiny", progress=False)


def test_vary_layout_is_seeded_and_changes_only_layout():
    text = "def f(x):\n    if x:\n        return x\n"
    varied = list(vary_layout([text] * 400, seed=3))
    assert varied == list(vary_layout([text] * 400, seed=3))
    crlf = sum("\r\n" in v for v in varied)
    tabs = sum("\t" in v for v in varied)
    assert 25 <= crlf <= 80 and 8 <= tabs <= 45  # 1/8 and 1/16 of 400
    for v in varied:
        assert v.replace("\r\n", "\n").replace("\t", "    ") == text


def test_compression_table_reports_ratio_to_baseline(small_bpe, gpt2_dir):
    tokenizers = {"gpt2": load_tokenizer(gpt2_dir), "code-bpe": load_tokenizer(small_bpe)}
    texts = ["def f(x):\n        return x\n"] * 3
    table = compression_table(tokenizers, {"snippets": texts}, baseline="gpt2")
    gpt2_rate = tokens_per_char(tokenizers["gpt2"], texts)
    code_rate = tokens_per_char(tokenizers["code-bpe"], texts)
    lines = table.splitlines()
    assert lines[2].split()[-1] == "1.000"
    assert lines[3].split()[-1] == f"{code_rate / gpt2_rate:.3f}"
    assert code_rate < gpt2_rate


@pytest.mark.slow
def test_stdlib_code_bpe_needs_at_most_072_of_gpt2_tokens_on_mbpp(gpt2_dir, data_dir, tmp_path):
    """The real training run (~1 min): decontaminated stdlib, 16384 merges."""
    from hrm_codegen.data.corpus import clean_python_texts

    texts, _ = clean_python_texts(
        stdlib_python_files(), benchmark_path=str(data_dir), progress=False
    )
    bpe = load_tokenizer(train_code_bpe(texts, output_dir=tmp_path, progress=False))
    gpt2 = load_tokenizer(gpt2_dir)
    tasks = load_benchmark("mbpp", path=data_dir)
    for codes in ([t.reference_solution for t in tasks], [format_target(t) for t in tasks]):
        assert tokens_per_char(bpe, codes) <= 0.72 * tokens_per_char(gpt2, codes)
