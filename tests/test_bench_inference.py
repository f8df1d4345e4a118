"""scripts/bench_inference.py --quick: one fresh process per configuration, one table out."""

from __future__ import annotations

import pytest
from bench_scripts import load_script


def test_quick_run_writes_a_row_per_backend(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    bench = load_script("bench_inference")
    output = tmp_path / "inference.md"
    assert bench.main(["--quick", "--output", str(output)]) == 0
    text = output.read_text()
    assert "python scripts/bench_inference.py --quick" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| tiny ")]
    assert [row[2] for row in rows] == ["torch", "onnx", "speculative"]
    for row in rows:
        median, p90, ttft, rate, rss = (float(cell) for cell in row[4:9])
        assert 0 < ttft < median <= p90 and rate > 0 and rss > 50
        compute, memory = (float(x) for x in row[9].split(" / "))
        assert 0 < compute < median and 0 < memory < median  # a floor is below the time
    assert "acceptance" in rows[2][10]
    assert "GFLOP/s" in text and "GB/s" in text


def test_weights_applied_per_token_count_every_block_application():
    bench = load_script("bench_inference")
    hrm = bench.build_model("hrm", "tiny")
    applied, head = bench.applied_weights(hrm)
    level = sum(p.numel() for p in hrm.L_level.parameters())  # H and L alike at this size
    assert head == hrm.lm_head.weight.numel()
    assert applied - head == 2 * (2 * level + level)  # H_cycles x (L_cycles x L + H)
    compute = bench.build_model("transformer-compute", "tiny")
    assert bench.applied_weights(compute)[0] == applied  # compute-matched: same arithmetic


def test_unserved_pairs_are_named_not_run(monkeypatch):
    bench = load_script("bench_inference")
    assert bench.not_served("hrm", "llamacpp-q4_K") == "llama.cpp has no architecture for it"
    assert "drafts for the HRM" in bench.not_served("llama", "speculative")
    assert bench.not_served("hrm", "onnx-int8") is None
    from hrm_codegen.inference import backends

    monkeypatch.setattr(backends, "llama_cpp_missing", lambda: "missing")
    assert "not installed" in bench.not_served("llama", "llamacpp-f16")
