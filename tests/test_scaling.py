"""study=smoke_scaling end to end: WSD long runs and their branches, records that resume the
study in a fresh folder, the lr edge extension, and the report's fits."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from training_fixtures import copy_stdlib_modules, write_tiny_mbpp

from hrm_codegen.study import StudyConfigError, run_study_from_config
from hrm_codegen.study.runner import CONFIG_DIR, run_status
from hrm_codegen.study.scaling import ScalingRunner
from hrm_codegen.study.scaling_report import reuse_fits
from hrm_codegen.study.scaling_spec import ScalingKey, budget_tag, load_scaling_spec
from hrm_codegen.training.repeat import compare_runs


def scaling_node(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("run_study", overrides=["study=smoke_scaling", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.fixture(scope="module")
def scaling_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaling")
    mbpp = write_tiny_mbpp(root / "mbpp.jsonl")
    sources = copy_stdlib_modules(root / "src")
    saved = os.environ.get("HRM_CODEGEN_HOME")
    os.environ["HRM_CODEGEN_HOME"] = str(root / "home")
    cfg = scaling_node(
        f"output_dir={root / 'out'}",
        f"study.mbpp_path={mbpp}",
        f"study.records_dir={root / 'records'}",
        f"study.prepare.corpus.source_dirs=[{sources}]",
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report = run_study_from_config(
            cfg, command="python scripts/run_study.py study=smoke_scaling"
        )
    yield {"cfg": cfg, "root": root, "report": report, "stdout": out.getvalue()}
    if saved is None:
        os.environ.pop("HRM_CODEGEN_HOME", None)
    else:
        os.environ["HRM_CODEGEN_HOME"] = saved


def test_every_budget_is_a_branch_of_one_long_wsd_run(scaling_study):
    spec = load_scaling_spec(scaling_study["cfg"]["study"])
    runner = ScalingRunner(spec, scaling_study["root"] / "out", log=lambda _: None)
    long = ScalingKey("hrm", "w16", spec.lr_sweep[0], 0)
    config = OmegaConf.load(long.path(runner.out) / "config.yaml")
    assert config.train.schedule == "wsd" and len(config.train.keep_checkpoints) == 2
    steps = {}
    for budget in spec.budgets[:-1]:
        branch = ScalingKey("hrm", "w16", spec.lr_sweep[0], 0, budget)
        state = json.loads(
            (branch.path(runner.out) / "checkpoint" / "trainer_state.json").read_text()
        )
        steps[budget] = state["step"]
        assert abs(state["flops_seen"] - budget) <= state["flops_seen"] / state["step"]
        branch_cfg = OmegaConf.load(branch.path(runner.out) / "config.yaml")
        assert "checkpoints/step_" in branch_cfg.branch_from
    assert steps[spec.budgets[0]] < steps[spec.budgets[1]] < config.train.max_steps
    assert "36 runs before any lr extension" in scaling_study["stdout"]
    assert "left to train now: 36 runs" in scaling_study["stdout"]


def test_records_alone_rebuild_the_report_and_a_long_run_is_retrained_bit_for_bit(
    scaling_study, tmp_path
):
    cfg = {**scaling_study["cfg"], "output_dir": str(tmp_path / "fresh")}
    before = json.loads((scaling_study["root"] / "out" / "results.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):
        run_study_from_config({**cfg, "report_only": True})
    after = json.loads((tmp_path / "fresh" / "results.json").read_text())
    assert [r["loss"] for r in after["runs"]] == [r["loss"] for r in before["runs"]]
    assert after["points"] == before["points"]
    # refitted from scratch in the fresh folder: the fits are a function of the points (the
    # premise on which a rebuild reuses them), and a second rebuild reuses them
    assert after["fits_key"] == before["fits_key"] and after["fits"] == before["fits"]
    rebuilt = io.StringIO()
    with contextlib.redirect_stdout(rebuilt):
        run_study_from_config({**cfg, "report_only": True})
    assert "fitting the laws" not in rebuilt.getvalue()
    key, reused = reuse_fits(tmp_path / "fresh" / "results.json", after["points"], {})
    assert reused is None and key != after["fits_key"]  # other fit settings: refit

    # a branch whose record is gone: its long run exists only as a record here
    spec = load_scaling_spec(cfg["study"])
    lines: list[str] = []
    runner = ScalingRunner(spec, tmp_path / "fresh", log=lines.append)
    branch = ScalingKey("transformer_params", "w32", spec.lr_sweep[1], 0, spec.budgets[0])
    shutil.rmtree(runner.record_dir(branch))
    with contextlib.redirect_stdout(io.StringIO()):
        runner.run()
    long = ScalingKey("transformer_params", "w32", spec.lr_sweep[1], 0)
    assert json.loads((long.path(runner.out) / "reproduced.json").read_text())["identical"]
    # restored only as far as the branch starts (its cooldown start), not to the long run's end
    config = OmegaConf.load(long.path(runner.out) / "config.yaml")
    state = json.loads((long.path(runner.out) / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == min(config.train.keep_checkpoints) < config.train.max_steps
    assert runner.status(long) == "done"  # the record is the finished run
    original = branch.path(scaling_study["root"] / "out")
    assert compare_runs(original, branch.path(runner.out)).identical
    assert run_status(ScalingKey("hrm", "w16", spec.lr_sweep[0], 0).path(runner.out)) == "new"
    trained = [line for line in lines if line.startswith("train ")]
    # the long run (restored for its checkpoint) and the branch, nothing else
    assert trained == [
        f"train long transformer_params/w32 lr={spec.lr_sweep[1]:g} seed=0",
        f"train {branch.stage} transformer_params/w32 lr={spec.lr_sweep[1]:g} seed=0",
    ]


def test_the_report_fits_every_arm_and_names_the_data(scaling_study):
    results = json.loads((scaling_study["root"] / "out" / "results.json").read_text())
    assert len(results["points"]) == 2 * 2 * 3  # arms x sizes x budgets, one lr each
    for convention in ("all", "no_embed"):
        arms = results["fits"][convention]["arms"]
        assert set(arms) == {"hrm", "transformer_params"}
        for entry in arms.values():
            assert entry["points"] == 6
            assert "law" in entry or "error" in entry
    report = scaling_study["report"].read_text()
    assert results["data"]["corpus_fingerprint"] in report
    assert "## Every run" in report and budget_tag(4e9) not in report
    for plot in ("isoflop.png", "frontiers.png", "crossover.png"):
        assert (scaling_study["root"] / "out" / plot).is_file(), plot
    for entry in results["fits"]["all"]["arms"].values():
        band = entry.get("frontier")
        if band:  # the law fitted: a band over the same C grid, ordered
            assert len(band["C"]) == len(band["L"]) == len(band["lo"]) == len(band["hi"]) == 40
            assert all(lo <= hi for lo, hi in zip(band["lo"], band["hi"]))
    cross = results["fits"]["all"].get("crossover")
    if cross:
        assert len(cross["draws"]) == cross["n_draws"]


def test_lr_extension_follows_the_edge_rule(scaling_study):
    spec = load_scaling_spec(scaling_study["cfg"]["study"])
    runner = ScalingRunner(spec, scaling_study["root"] / "out", log=lambda _: None)
    for arm in spec.arms:
        for size in spec.sizes:
            values = runner.lrs(arm, size)
            scores = {lr: runner.final(ScalingKey(arm, size, lr, 0)) for lr in spec.lr_sweep}
            best = min(spec.lr_sweep, key=lambda lr: (scores[lr], lr))
            if best == spec.lr_sweep[-1]:
                assert values[-1] == pytest.approx(spec.lr_sweep[-1] * 2)
            elif best == spec.lr_sweep[0]:
                assert values[0] == pytest.approx(spec.lr_sweep[0] / 2)
            else:
                assert values == list(spec.lr_sweep)


def test_the_estimate_takes_a_rate_per_size():
    node = scaling_node("study.estimate.flops_per_second_per_job={w16: 1e9, w32: 2e9}")["study"]
    spec = load_scaling_spec(node)
    one_rate = load_scaling_spec(scaling_node()["study"]).estimate()
    # half the grid's FLOPs run twice as fast: three quarters of the single-rate hours
    assert spec.estimate()["hours"] == pytest.approx(0.75 * one_rate["hours"])
    assert spec.estimate()["flops"] == one_rate["flops"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("study.budgets=[1e9]", "at least two distinct"),
        ("study.lr_sweep=[1e-3,2e-3]", "at least 3"),
        ("study.schedule.cooldown_fraction=1.5", "cooldown_fraction"),
        ("study.select_metric=val/test_bpb", "never select on a test split"),
        ("study.estimate.flops_per_second_per_job={w16: 1e9}", "for every size"),
    ],
)
def test_scaling_protocol_mistakes_are_one_line(override, message):
    with pytest.raises(StudyConfigError, match=message):
        load_scaling_spec(scaling_node(override)["study"])


def test_a_second_seed_trains_only_the_lrs_the_first_selects(scaling_study, tmp_path):
    # From the first seed's records alone (a fresh folder), study.seeds=[0, 1] trains seed 1 at
    # the lrs some budget selected on seed 0, with their branches, and nothing of seed 0; the
    # fits then hold both seeds at every selected point.
    cfg = {**scaling_study["cfg"], "output_dir": str(tmp_path / "two")}
    records = tmp_path / "records"  # a copy: the other tests read the fixture's records
    shutil.copytree(scaling_study["root"] / "records", records)
    cfg["study"] = {**cfg["study"], "seeds": [0, 1], "records_dir": str(records)}
    spec = load_scaling_spec(cfg["study"])
    before = json.loads((scaling_study["root"] / "out" / "results.json").read_text())
    chosen = {(p["arm"], p["size"]): set() for p in before["points"]}
    for point in before["points"]:
        chosen[point["arm"], point["size"]].add(point["lr"])
    lines: list[str] = []
    runner = ScalingRunner(spec, tmp_path / "two", log=lines.append)
    for arm, size in chosen:
        assert runner.selected_lrs(arm, size) == sorted(chosen[arm, size])
    with contextlib.redirect_stdout(io.StringIO()):
        runner.run()
    trained = sorted(line for line in lines if line.startswith("train "))
    expected = sorted(
        f"train {stage} {arm}/{size} lr={lr:g} seed=1"
        for (arm, size), lrs in chosen.items()
        for lr in lrs
        for stage in ["long"] + [ScalingKey(arm, size, lr, 1, b).stage for b in spec.budgets[:-1]]
    )
    assert trained == expected
    assert any(line.startswith(f"left to train now: {len(expected)} runs,") for line in lines)
    after = json.loads((tmp_path / "two" / "results.json").read_text())
    seeds = {(p["arm"], p["size"], p["budget"]): set() for p in after["points"]}
    for point in after["points"]:
        seeds[point["arm"], point["size"], point["budget"]].add(point["seed"])
    assert len(seeds) == len(before["points"]) and all(s == {0, 1} for s in seeds.values())
