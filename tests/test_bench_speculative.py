"""scripts/bench_speculative.py: trained-style pair on exec prompts, one table, outputs unchanged."""

from __future__ import annotations

import pytest
import torch
from bench_scripts import load_script

from hrm_codegen.data.exec_programs import ExecTask, write_tasks


def test_table_reports_acceptance_and_unchanged_outputs(tmp_path, gpt2_dir, capsys):
    from hrm_codegen.model import (
        HRMConfig,
        HRMForCausalLM,
        TransformerConfig,
        TransformerForCausalLM,
    )
    from hrm_codegen.tokenization import load_tokenizer

    tokenizer = load_tokenizer(gpt2_dir)
    common = dict(vocab_size=len(tokenizer), max_seq_len=160, hidden_size=32, num_heads=2)
    torch.manual_seed(0)
    models = {
        "hrm": HRMForCausalLM(HRMConfig(H_layers=1, L_layers=1, **common)),
        "draft": TransformerForCausalLM(TransformerConfig(n_layers=1, **common)),
    }
    for name, model in models.items():
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(str(tmp_path / name))
    code = "def f(x):\n    v0 = x * 2\n    return v0 + 1\n"
    tasks = [ExecTask(f"Exec/test/{i}", code, f"f({i})", str(2 * i + 1), 3) for i in range(3)]
    write_tasks(tmp_path / "exec" / "test.jsonl", tasks)
    bench = load_script("bench_speculative")
    argv = ["--target", str(tmp_path / "hrm"), "--draft", str(tmp_path / "draft"),
            "--exec-dir", str(tmp_path / "exec"), "--problems", "3", "--draft-tokens", "1,3",
            "--max-new-tokens", "6"]  # fmt: skip
    assert bench.main(argv) == 0
    rows = [
        line.split(" | ")
        for line in capsys.readouterr().out.splitlines()
        if line[:3] in ("| 1", "| 3")
    ]
    assert [row[0] for row in rows] == ["| 1", "| 3"]
    for row in rows:
        assert row[-1] == "3/3 |"  # speculative decoding changed no output
        assert 1.0 <= float(row[2]) <= int(row[0][2:]) + 1  # tokens per target forward


def test_draft_tokens_must_be_integers():
    bench = load_script("bench_speculative")
    with pytest.raises(SystemExit):
        bench.parse_args(
            ["--target", "a", "--draft", "b", "--exec-dir", "c", "--draft-tokens", "x"]
        )
