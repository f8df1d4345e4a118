"""SFT examples: layout of ids and labels, length dropping, collation, verified augmentation."""

from __future__ import annotations

import ast
import logging
import random
from pathlib import Path

import pytest
import torch

from hrm_codegen.data import CodeTask, build_program, load_benchmark
from hrm_codegen.data.augment import make_variants, renamable_names, rename_locals
from hrm_codegen.data.corpus import stdlib_python_files
from hrm_codegen.data.execution import check_programs
from hrm_codegen.data.prompts import format_prompt, format_target
from hrm_codegen.data.sft import SFTCollator, SFTDataset, build_sft_examples
from hrm_codegen.tokenization import load_tokenizer, train_code_bpe

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A small code BPE trained here, so these tests need no downloaded files."""
    texts = [p.read_text(encoding="utf-8") for p in stdlib_python_files()[:60]]
    return load_tokenizer(
        train_code_bpe(texts, 1000, tmp_path_factory.mktemp("bpe"), progress=False)
    )


@pytest.fixture(scope="module")
def tasks():
    return load_benchmark("mbpp", path=FIXTURES / "mbpp_tiny.jsonl")


def test_item_is_bos_prompt_target_eos_with_shifted_labels(tokenizer, tasks):
    dataset = SFTDataset(tasks, tokenizer, max_seq_len=512)
    assert len(dataset) == len(tasks) and dataset.num_dropped == 0
    task, item = tasks[0], dataset[0]
    prompt = tokenizer(format_prompt(task), add_special_tokens=False)["input_ids"]
    target = tokenizer(format_target(task), add_special_tokens=False)["input_ids"]
    expected = [tokenizer.bos_token_id, *prompt, *target, tokenizer.eos_token_id]
    assert item["input_ids"].tolist() == expected
    labels = item["labels"].tolist()
    assert len(labels) == len(expected)
    assert labels[: len(prompt)] == [-100] * len(prompt)  # BOS..second-to-last prompt token
    assert labels[len(prompt) : -1] == [*target, tokenizer.eos_token_id]
    assert labels[-1] == -100  # EOS predicts nothing
    ids = item["input_ids"]
    real = item["labels"] != -100
    assert torch.equal(item["labels"][:-1][real[:-1]], ids[1:][real[:-1]])
    assert (
        tokenizer.decode([i for i in labels if i != -100]) == format_target(task) + "<|endoftext|>"
    )


def test_too_long_examples_are_dropped_counted_and_logged(tokenizer, tasks, caplog):
    lengths = [len(SFTDataset([t], tokenizer, 4096)[0]["input_ids"]) for t in tasks]
    limit = sorted(lengths)[2]
    with caplog.at_level(logging.WARNING, logger="hrm_codegen.data.sft"):
        dataset = SFTDataset(tasks, tokenizer, max_seq_len=limit)
    assert dataset.num_dropped == sum(n > limit for n in lengths) == 2
    assert len(dataset) == 3
    assert all(len(item["input_ids"]) <= limit for item in dataset)
    assert f"dropped 2 of 5 examples longer than max_seq_len={limit}" in caplog.text
    with pytest.raises(ValueError, match="max_seq_len=2"):
        SFTDataset(tasks, tokenizer, max_seq_len=2)


def test_collator_pads_right_with_ignored_labels(tokenizer, tasks):
    dataset = SFTDataset(tasks, tokenizer, max_seq_len=512)
    items = [dataset[0], dataset[2]]
    longest = max(len(i["input_ids"]) for i in items)
    batch = SFTCollator(pad_id=tokenizer.pad_token_id)(items)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, longest)
    for row, item in enumerate(items):
        n = len(item["input_ids"])
        assert torch.equal(batch["input_ids"][row, :n], item["input_ids"])
        assert torch.equal(batch["labels"][row, :n], item["labels"])
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (longest - n)
        assert (batch["labels"][row, n:] == -100).all()
        assert (batch["input_ids"][row, n:] == tokenizer.pad_token_id).all()
    padded = SFTCollator(pad_id=7, pad_to_multiple_of=8)(items)
    assert padded["input_ids"].shape[1] % 8 == 0 and padded["input_ids"].shape[1] - longest < 8
    with pytest.raises(ValueError, match="pad_to_multiple_of=0"):
        SFTCollator(0, pad_to_multiple_of=0)


def test_prefix_lm_collator_marks_bos_and_prompt_as_type_1(tokenizer, tasks):
    dataset = SFTDataset(tasks, tokenizer, max_seq_len=512)
    items = [dataset[0], dataset[2]]
    assert "token_type_ids" not in SFTCollator(pad_id=0)(items)  # only when asked
    batch = SFTCollator(pad_id=0, prefix_lm=True)(items)
    longest = batch["input_ids"].shape[1]
    for row, index in enumerate([0, 2]):
        prompt = tokenizer(format_prompt(tasks[index]), add_special_tokens=False)["input_ids"]
        n = len(items[row]["input_ids"])
        prompt_positions = 1 + len(prompt)  # BOS + prompt: what generation prefills
        assert batch["token_type_ids"][row].tolist() == [1] * prompt_positions + [0] * (
            longest - prompt_positions
        )
        assert n > prompt_positions  # the target and padding are causal
        # the last prompt position predicts the first target token
        target = tokenizer(format_target(tasks[index]), add_special_tokens=False)["input_ids"]
        assert int(batch["labels"][row, prompt_positions - 1]) == target[0]
        assert int(batch["labels"][row, prompt_positions - 2]) == -100


def _task(code: str, tests: tuple[str, ...], setup: str = "") -> CodeTask:
    from hrm_codegen.data.mbpp import find_entry_point

    return CodeTask("Mbpp/700", "mbpp", "Do it.", code, tests, find_entry_point(code, tests), setup)


def test_renaming_touches_locals_and_parameters_only():
    code = (
        "import math\n"
        "LIMIT = 10\n"
        "def helper(value, scale=2):\n"
        "    return value * scale\n"
        "def solve(items, k):\n"
        "\ttotal = 0\n"
        "\tfor i, item in enumerate(items):\n"
        "\t\tif i < k:  # keep comments\n"
        "\t\t\ttotal += helper(item, scale=LIMIT) + math.floor(0.5)\n"
        "\tsquares = [x * x for x in items]\n"
        "\treturn total + len(squares)\n"
    )
    task = _task(code, ("assert solve([1, 2, 3], 2) == 33",))
    names, _ = renamable_names(task)
    # scale is passed by keyword, LIMIT/math/helper/solve are global: all kept
    assert names == ["i", "item", "items", "k", "squares", "total", "value", "x"]
    mapping = {name: f"n{j}" for j, name in enumerate(names)}
    renamed = rename_locals(code, mapping)
    assert "# keep comments" in renamed and "\t\tif n0 < n3:" in renamed
    assert "helper(n1, scale=LIMIT)" in renamed and "def helper(n6, scale=2):" in renamed
    assert renamed.count("\n") == code.count("\n")
    tree = ast.parse(renamed)
    assert {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} >= {"LIMIT", "math", "helper"}
    assert check_programs([build_program(task, renamed)]) == [True]


def test_introspection_and_protected_names_are_left_alone():
    assert (
        renamable_names(_task("def f(a):\n    return locals()['a']\n", ("assert f(1) == 1",)))
        is None
    )
    class_code = (
        "class Node:\n"
        "    size = 0\n"
        "    def __init__(self, data):\n"
        "        self.data = data\n"
        "def depth(node):\n"
        "    try:\n"
        "        return 1 + depth(node.next)\n"
        "    except AttributeError as err:\n"
        "        return 1\n"
    )
    task = _task(class_code, ("assert depth(root) == 1",), setup="root = Node(3)")
    names, _ = renamable_names(task)
    assert names == ["data", "node"]  # not Node, size, self, err, root, depth


def test_variants_are_distinct_seeded_and_keep_tests(tasks):
    task = next(t for t in tasks if t.task_id == "Mbpp/601")
    variants = make_variants(task, 3, random.Random(0))
    assert len(variants) == 3
    assert variants == make_variants(task, 3, random.Random(0))
    original = format_target(task)
    for variant in variants:
        assert sorted(variant.tests) == sorted(task.tests)
        assert format_target(task, variant.solution) != original
        assert "def largest(" in variant.solution  # entry point kept
        assert "\t" in variant.solution  # formatting kept
    assert len({(v.solution, v.tests) for v in variants}) == 3
    with pytest.raises(ValueError, match="HumanEval"):
        make_variants(
            load_benchmark("humaneval", path=FIXTURES / "humaneval_tiny.jsonl")[0],
            1,
            random.Random(0),
        )


def test_augmentation_keeps_only_variants_that_pass(tokenizer, tasks, monkeypatch):
    from hrm_codegen.data import sft

    examples = build_sft_examples(tasks, augment=2, seed=1, workers=2)
    originals = [e for e in examples if e.variant == 0]
    variants = [e for e in examples if e.variant > 0]
    assert [e.task_id for e in originals] == [t.task_id for t in tasks]
    assert 1 <= len(variants) <= 2 * len(tasks)
    by_id = {t.task_id: t for t in tasks}
    programs = [build_program(by_id[e.task_id], e.target) for e in variants]
    assert check_programs(programs, workers=2) == [True] * len(variants)

    # a checker that rejects everything leaves only the originals
    monkeypatch.setattr(sft, "check_programs", lambda programs, **kw: [False] * len(programs))
    assert build_sft_examples(tasks, augment=2, seed=1) == originals
    dataset = SFTDataset(tasks, tokenizer, max_seq_len=512, augment=2, seed=1)
    assert len(dataset) == len(tasks)


def test_augmented_dataset_is_reproducible(tokenizer, tasks):
    first = SFTDataset(tasks, tokenizer, max_seq_len=512, augment=2, seed=5, workers=2)
    second = SFTDataset(tasks, tokenizer, max_seq_len=512, augment=2, seed=5, workers=2)
    assert len(first) == len(second) > len(tasks)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, second))
    assert [e.variant for e in first.examples] == [e.variant for e in second.examples]


def test_augmenting_all_mbpp_training_tasks(data_dir, caplog):
    train = load_benchmark("mbpp", split="train", path=data_dir)
    with caplog.at_level(logging.INFO, logger="hrm_codegen.data.sft"):
        examples = build_sft_examples(train, augment=2, seed=0, workers=2)
    assert len(examples) > 2.9 * len(train)  # nearly every task yields two passing variants
    assert "variants kept for 374 tasks" in caplog.text
    by_id = {t.task_id: t for t in train}
    variants = [e for e in examples if e.variant > 0]
    renamed = sum(e.target != format_target(by_id[e.task_id]) for e in variants)
    assert renamed > 0.9 * len(variants)
