"""study=smoke_exec end to end: the study builds the exec benchmark and its tokenizer, trains
arms from scratch (randomized depth, ACT, a transformer) at equal steps, and reports accuracy by
difficulty, against inference cycles, and the ACT segments against steps."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hrm_codegen.study import StudyConfigError, run_study_from_config
from hrm_codegen.study.runner import CONFIG_DIR
from hrm_codegen.study.spec import load_spec


def exec_node(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("run_study", overrides=["study=smoke_exec", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="module")
def exec_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("exec_study")
    saved = os.environ.get("HRM_CODEGEN_HOME")
    os.environ["HRM_CODEGEN_HOME"] = str(root / "home")  # the shared exec build goes here
    cfg = exec_node(f"output_dir={root / 'out'}", f"study.records_dir={root / 'records'}")
    with contextlib.redirect_stdout(io.StringIO()):
        report = run_study_from_config(cfg, command="python scripts/run_study.py study=smoke_exec")
    yield {"cfg": cfg, "root": root, "report": report}
    if saved is None:
        os.environ.pop("HRM_CODEGEN_HOME", None)
    else:
        os.environ["HRM_CODEGEN_HOME"] = saved


def test_every_selected_run_is_scored_by_difficulty_and_depth(exec_study):
    results = json.loads((exec_study["root"] / "out" / "results.json").read_text())
    data = results["data"]
    assert data["splits"]["test_hard"]["tasks"] == 8 and data["settings"]["train_max_steps"] == 32
    arms = {arm: e["pretrain"]["exec"] for arm, e in results["arms"].items()}
    assert sorted(arms) == ["hrm_act", "hrm_random_depth", "transformer_params"]
    for arm, block in arms.items():
        recurrent = arm != "transformer_params"
        assert sorted(k for k in block if k.startswith("x")) == (["x1", "x2"] if recurrent else ["x1"])  # fmt: skip
        for split in ("test", "test_hard"):
            buckets = block["x1"][split]["buckets"]
            assert sum(b["n"] for b in buckets.values()) == 8
            limit_ok = (lambda n: float(n.lstrip("<=>")) > 32) if split == "test_hard" else (lambda n: float(n.lstrip("<=>")) <= 32)  # fmt: skip
            assert all(limit_ok(name) for name in buckets), buckets
    act = arms["hrm_act"]["act"]["test_hard"]
    assert 1 <= act["mean_segments"]["mean"] <= 2
    assert "act" not in arms["hrm_random_depth"]
    depths = [
        r["train/depth"]
        for r in (exec_study["root"] / "out").glob("runs/pretrain/hrm_random_depth/*/metrics.jsonl")
        for r in map(json.loads, r.read_text().splitlines())
        if "train/depth" in r
    ]
    assert depths and len(set(depths)) > 1  # the random-depth arm did vary its depth
    page = exec_study["report"].read_text()
    for heading in ("## Data: the exec benchmark", "## Accuracy at the trained depth",
                    "## Test-time depth", "## Adaptive computation", "## Training at equal steps"):  # fmt: skip
        assert heading in page, heading
    assert data["exec_fingerprint"] in page
    assert sorted(data["baselines"]) == sorted(
        ["the argument", f"always {next(iter(data['baselines']))[7:]}"]
    )
    assert all(0 <= v <= 1 for b in data["baselines"].values() for v in b.values())
    assert "| *no model: the argument* |" in page
    assert (exec_study["root"] / "out" / "exec_by_steps.png").is_file()
    built = list((exec_study["root"] / "home" / "exec").glob("exec-*/meta.json"))
    assert len(built) == 1  # built once, under HRM_CODEGEN_HOME, for every study with its settings


def test_records_alone_rebuild_the_exec_report(exec_study, tmp_path):
    cfg = {**exec_study["cfg"], "output_dir": str(tmp_path / "fresh"), "report_only": True}
    with contextlib.redirect_stdout(io.StringIO()):
        run_study_from_config(cfg)
    before = json.loads((exec_study["root"] / "out" / "results.json").read_text())
    after = json.loads((tmp_path / "fresh" / "results.json").read_text())
    assert after["arms"] == before["arms"] and after["data"] == before["data"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+study.pretrain.flop_budget=1e9", "exactly one of flop_budget"),
        ("study.pretrain.max_steps=0", "max_steps=0 must be >= 1"),
        ("study.exec_eval.splits=[train]", "evaluate on validation, test or test_hard"),
        ("~study.prepare.exec", "add study.prepare.exec"),
    ],
)
def test_exec_study_mistakes_are_one_line(override, message):
    with pytest.raises(StudyConfigError, match=message):
        load_spec(exec_node(override)["study"])


def test_trivial_baselines_grade_answers_written_without_the_program():
    from hrm_codegen.data.exec_programs import ExecTask
    from hrm_codegen.evaluation.exec_score import trivial_baselines

    def task(i: int, call: str, output: str) -> ExecTask:
        return ExecTask(f"Exec/t/{i}", "def f(x):\n    return x\n", call, output, 3)

    train = [task(0, "f(1)", "0"), task(1, "f(2)", "0"), task(2, "f('a')", "'b'")]
    tests = [task(3, "f('ab')", "'ab'"), task(4, "f(5)", "0"), task(5, "f([1, 2])", "[1, 2]")]
    tests.append(task(6, "f(7)", "8"))
    baselines = trivial_baselines(train, {"test": tests}, edges=[8, 32])
    assert baselines == {"always 0": {"test": 0.25}, "the argument": {"test": 0.5}}
