"""`hrm_codegen.model.load_model`: one entry point for a saved model folder, a training run folder
(its latest checkpoint, or `best`), a folder of runs, and a Hugging Face export; each gives the
logits of the model that was saved. And the run-folder names have one spelling
(`hrm_codegen.run_layout`)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from hrm_codegen import run_layout
from hrm_codegen.export import export_hf
from hrm_codegen.model import (
    HRMConfig,
    HRMForCausalLM,
    TransformerConfig,
    TransformerForCausalLM,
    load_model,
)
from hrm_codegen.model.checkpoint import CONFIG_NAME
from hrm_codegen.tokenization import load_tokenizer
from hrm_codegen.tokenization.train import train_code_bpe
from hrm_codegen.training.checkpointing import save_checkpoint

PACKAGE = Path(__file__).resolve().parents[1] / "hrm_codegen"
IDS = torch.tensor([[1, 5, 9, 3, 7, 2, 4, 8]])


def tiny_transformer(seed: int, vocab_size: int = 64) -> TransformerForCausalLM:
    torch.manual_seed(seed)
    config = TransformerConfig(
        vocab_size=vocab_size, max_seq_len=32, hidden_size=16, num_heads=2, n_layers=2
    )
    return TransformerForCausalLM(config).eval()


def tiny_hrm(seed: int, vocab_size: int = 64) -> HRMForCausalLM:
    torch.manual_seed(seed)
    config = HRMConfig(
        vocab_size=vocab_size, max_seq_len=32, hidden_size=16, num_heads=2, H_layers=1,
        L_layers=1, H_cycles=2, L_cycles=2,
    )  # fmt: skip
    return HRMForCausalLM(config).eval()


def logits(model: torch.nn.Module, **kwargs: bool) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(IDS, **kwargs).logits


@pytest.mark.parametrize("build", [tiny_transformer, tiny_hrm])
def test_a_saved_model_folder_loads_as_saved(tmp_path, build):
    model = build(0)
    model.save_pretrained(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert type(loaded) is type(model)
    assert torch.equal(logits(loaded), logits(model))


def test_a_run_folder_loads_its_latest_checkpoint_and_best_by_name(tmp_path):
    run = tmp_path / "runs" / "2026-01-01_00-00-00"
    first, second = tiny_transformer(1), tiny_transformer(2)
    for step, model, pointers in ((1, first, [run_layout.BEST_DIR]), (2, second, [])):
        save_checkpoint(
            run / run_layout.CHECKPOINT_DIR,
            model=model,
            tokenizer=None,
            optimizer=None,
            trainer_state={"step": step},
            config_yaml=None,
            also_point=pointers,
        )
    assert (run / run_layout.CHECKPOINT_DIR).is_symlink()
    assert torch.equal(logits(load_model(run)), logits(second))  # the latest
    assert torch.equal(logits(load_model(run / run_layout.BEST_DIR)), logits(first))
    assert torch.equal(logits(load_model(tmp_path / "runs")), logits(second))  # runs: latest run


def test_a_hugging_face_export_loads_with_the_saved_logits(tmp_path):
    texts = ["def add(a, b):\n    return a + b\n", "for i in range(3):\n    print(i)\n"]
    tokenizer_dir = train_code_bpe(texts * 4, vocab_size=300, output_dir=tmp_path / "tok",
                                   progress=False)  # fmt: skip
    model = tiny_transformer(3, vocab_size=len(load_tokenizer(tokenizer_dir)))
    ckpt = model.save_pretrained(tmp_path / "run" / run_layout.CHECKPOINT_DIR)
    shutil.copy(tokenizer_dir / "tokenizer.json", ckpt / "tokenizer.json")
    out = export_hf(tmp_path / "run", tmp_path / "hf")
    exported = load_model(out)
    assert type(exported).__name__ == "HRMCodegenForCausalLM"  # transformers' remote code
    torch.testing.assert_close(logits(exported, use_cache=False), logits(model), rtol=0, atol=1e-6)


def test_dtype_casts_after_loading_and_family_is_checked(tmp_path):
    tiny_transformer(0).save_pretrained(tmp_path / "t")
    cast = load_model(tmp_path / "t", dtype="bf16")
    assert {p.dtype for p in cast.parameters()} == {torch.bfloat16}
    with pytest.raises(ValueError, match="does not hold a 'hrm' model: .*model_type='transformer'"):
        load_model(tmp_path / "t", family="hrm")


def test_a_path_that_is_no_model_gets_a_one_line_error(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model\n")
    with pytest.raises(ValueError) as error:
        load_model(tmp_path / "notes")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'notes'} is not a model: expected")
    assert f"{run_layout.CHECKPOINT_DIR}/{CONFIG_NAME}" in message
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing")


def test_the_layout_names_agree_with_the_model_folder_format():
    assert run_layout.MODEL_CONFIG == CONFIG_NAME


LAYOUT_LITERALS = {
    name: getattr(run_layout, name)
    for name in (
        "CHECKPOINT_DIR",
        "BEST_DIR",
        "CHECKPOINTS_DIR",
        "TRAINER_STATE",
        "CONFIG_SNAPSHOT",
        "METRICS_FILE",
    )
}


def test_run_folder_names_are_spelled_only_in_the_layout_module():
    """Every reader of a run folder names its parts through hrm_codegen.run_layout: a path joined
    with one of those names as a string literal (`run_dir / "checkpoint"`), outside the layout
    module, is a second spelling. Prose in docstrings and messages, and the same word used for
    something else (a "best" record field), are not paths and do not count."""
    names = "|".join(sorted(re.escape(value) for value in LAYOUT_LITERALS.values()))
    literal = re.compile(rf"""/\s*(["'])({names})\1|(["'])({names})\3\s*/""")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "run_layout.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if literal.search(line):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert found == []
