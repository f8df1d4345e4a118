"""The model facts a study records per run (hrm_codegen/study/runs.py: model_facts): only a
family that loops gets the loop law's reuse and shared parameters."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from hrm_codegen.model.registry import build_model
from hrm_codegen.study.runs import model_facts

TINY = {"hidden_size": 32, "num_heads": 2, "max_seq_len": 64}
STACKS = {"H_layers": 1, "L_layers": 1, "H_cycles": 2, "L_cycles": 2}


@pytest.mark.parametrize(
    ("family", "extra", "reuse"),
    [
        ("llama", {"n_layers": 2}, None),
        ("transformer", {"n_layers": 2}, None),
        # H once per H cycle, L L_cycles times per H cycle: (2*1 + 2*2*1) / 2 blocks
        ("hrm_text", STACKS, 3.0),
        ("hrm", STACKS, 3.0),
    ],
)
def test_only_a_looping_family_records_reuse(tmp_path, family, extra, reuse):
    model = build_model(
        {"type": family, **TINY, **extra},
        vocab_size=100, bos_token_id=0, eos_token_id=0, pad_token_id=1,
    )  # fmt: skip
    model.save_pretrained(tmp_path / "checkpoint")
    OmegaConf.save({"data": {"max_seq_len": 64}}, tmp_path / "config.yaml")
    facts = model_facts(tmp_path)
    assert facts["model_type"] == family and facts["params"] == model.num_parameters()
    if reuse is None:  # a Llama config carries H_cycles too, yet applies each layer once
        assert not {"reuse", "params_shared", "params_once"} & set(facts)
    else:
        assert facts["reuse"] == reuse
        assert facts["params_shared"] + facts["params_once"] == facts["params"]
