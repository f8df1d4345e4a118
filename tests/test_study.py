"""The study machinery on a tiny study: protocol checks, equal FLOP budgets, lr selection, seeds,
fine-tuning, test-time compute, pass@k, the report, resuming, and `evaluate.py --metric bpb`."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from training_fixtures import copy_stdlib_modules, write_tiny_mbpp

from hrm_codegen.study import StudyConfigError, load_spec, run_study_from_config
from hrm_codegen.study.runner import RunKey, StudyRunner, final_metric, run_status
from hrm_codegen.study.spec import lr_tag

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
EVALUATE = Path(__file__).resolve().parents[1] / "scripts" / "evaluate.py"


def evaluate_main(argv: list[str]) -> int:
    """scripts/evaluate.py's main, in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("evaluate_script", EVALUATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def study_node(*overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("run_study", overrides=["study=smoke", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("study.lr_sweep=[1e-3,2e-3,3e-3]", "spans 3x"),
        ("study.lr_sweep=[1e-3,8e-3]", "at least 3"),
        ("study.select_metric=test/bpb", "never select on a test split"),
        ("study.pass_at_k.ks=[1,5]", "must lie in 1..num_samples=2"),
        ("study.seeds=[0,0]", "distinct"),
        ("study.test_time_multipliers=[2,4]", "include 1"),
    ],
)
def test_protocol_violations_are_refused_before_anything_runs(override, message):
    with pytest.raises(StudyConfigError, match=message):
        load_spec(study_node(override)["study"])


def test_every_shipped_study_config_is_a_valid_protocol():
    for name in ("smoke", "cpu_small", "a100", "cpu_exec", "cpu_exec_steps"):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("run_study", overrides=[f"study={name}"])
        spec = load_spec(OmegaConf.to_container(cfg, resolve=True)["study"])
        assert spec.lr_sweep[-1] / spec.lr_sweep[0] >= 4 and len(spec.lr_sweep) >= 3
        assert len(spec.seeds) >= 2


def test_lr_tags_are_distinct_and_readable():
    assert lr_tag(5e-4) == "lr5e-04"
    assert lr_tag(2.5e-3) == "lr2.5e-03"
    assert len({lr_tag(x) for x in (1e-3, 2e-3, 4e-3, 1e-4)}) == 4


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    """study=smoke on the tiny MBPP fixture and a corpus of eight standard-library modules."""
    root = tmp_path_factory.mktemp("study")
    mbpp = write_tiny_mbpp(root / "mbpp.jsonl")
    sources = copy_stdlib_modules(root / "src")
    saved = os.environ.get("HRM_CODEGEN_HOME")
    os.environ["HRM_CODEGEN_HOME"] = str(root / "home")
    cfg = study_node(
        f"output_dir={root / 'out'}",
        f"publish_dir={root / 'published'}",
        f"study.mbpp_path={mbpp}",
        f"study.prepare.corpus.source_dirs=[{sources}]",
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        report = run_study_from_config(cfg, command="python scripts/run_study.py study=smoke")
    yield {"cfg": cfg, "root": root, "report": report, "stdout": out.getvalue(), "mbpp": mbpp}
    if saved is None:
        os.environ.pop("HRM_CODEGEN_HOME", None)
    else:
        os.environ["HRM_CODEGEN_HOME"] = saved


def _runs(results: dict, **where) -> list[dict]:
    return [r for r in results["runs"] if all(r[k] == v for k, v in where.items())]


def test_every_arm_gets_the_same_flop_budget_and_its_own_step_count(smoke_study):
    results = json.loads((smoke_study["root"] / "out" / "results.json").read_text())
    budget = smoke_study["cfg"]["study"]["pretrain"]["flop_budget"]
    pretrain = _runs(results, stage="pretrain")
    assert len(pretrain) == 2 * 3 + 2  # two arms x three lrs, plus the second seed of each
    for run in pretrain:
        assert run["status"] == "done"
        per_step = run["flops"] / run["steps"]
        assert abs(run["flops"] - budget) <= per_step  # the budget, to within one step
    steps = {r["arm"]: r["steps"] for r in pretrain}
    per_token = {r["arm"]: r["flops_per_token"] for r in pretrain}
    # the HRM costs more per token (12 block applications forward), so it gets fewer steps
    assert per_token["hrm"] > per_token["transformer_params"]
    assert steps["hrm"] < steps["transformer_params"]


def test_the_selected_lr_is_the_sweep_argmin_and_later_seeds_and_sft_use_it(smoke_study):
    root = smoke_study["root"] / "out"
    results = json.loads((root / "results.json").read_text())
    for arm, entry in results["arms"].items():
        if "pretrained" in entry:  # a fine-tuning-only arm: see the test below
            continue
        sweep = _runs(results, stage="pretrain", arm=arm, seed=0)
        best = min(sweep, key=lambda r: (r["final val/bpb"], r["lr"]))
        assert entry["selected_lr"] == best["lr"]
        assert [r["lr"] for r in _runs(results, stage="pretrain", arm=arm, seed=1)] == [best["lr"]]
        sft = _runs(results, stage="sft", arm=arm)
        assert sorted(r["seed"] for r in sft) == [0, 1]
        for run in sft:
            config = OmegaConf.load(Path(run["run_dir"]) / "config.yaml")
            assert config.train.lr == pytest.approx(best["lr"] * 0.5)
            assert Path(config.init_from).name == f"{lr_tag(best['lr'])}-seed{run['seed']}"
            assert config.eval.bpb_corpus  # fine-tuned models are scored on the corpus too
            assert math.isfinite(run["final val/bpb"]) and math.isfinite(run["final val/mbpp_bpb"])
            assert 0.0 <= run["pass_at_k"]["pass@1"] <= 1.0
            assert run["pass_at_k"]["num_samples"] == 2


def test_a_fine_tuning_only_arm_starts_from_its_pretraining_arms_selected_runs(smoke_study):
    results = json.loads((smoke_study["root"] / "out" / "results.json").read_text())
    entry, base = results["arms"]["hrm_prefix"], results["arms"]["hrm"]
    assert entry["pretrained"] == "hrm" and entry["selected_lr"] == base["selected_lr"]
    assert "pretrain" not in entry and not _runs(results, stage="pretrain", arm="hrm_prefix")
    runs = _runs(results, stage="sft", arm="hrm_prefix")
    assert sorted(r["seed"] for r in runs) == [0, 1]
    for run in runs:
        assert run["status"] == "done" and 0.0 <= run["pass_at_k"]["pass@1"] <= 1.0
        config = OmegaConf.load(Path(run["run_dir"]) / "config.yaml")
        source = RunKey("pretrain", "hrm", base["selected_lr"], run["seed"])
        assert Path(config.init_from) == source.path(smoke_study["root"] / "out")
        assert config.model.prefix_lm is True and config.model.type == "hrm"
        assert config.train.lr == pytest.approx(base["selected_lr"] * 0.5)
    # the same starting point, another fine-tuning: the two arms' runs differ
    plain = {r["seed"]: r["final val/mbpp_bpb"] for r in _runs(results, stage="sft", arm="hrm")}
    assert set(plain) == {0, 1}
    assert all(math.isfinite(r["final val/mbpp_bpb"]) for r in runs)
    assert all(r["final val/mbpp_bpb"] != plain[r["seed"]] for r in runs)
    assert results["protocol"]["sft_arms"] == {
        "hrm_prefix": {"pretrained": "hrm", "sft": ["model.prefix_lm=true"]}
    }
    report = smoke_study["report"].read_text()
    assert "`hrm_prefix` differs from `hrm` only at fine-tuning" in report
    assert "| hrm_prefix (from `hrm`) |" in report


@pytest.mark.parametrize(
    ("arm", "message"),
    [
        ({"pretrained": "nope", "sft": ["model.prefix_lm=true"]}, "not a pretraining arm"),
        ({"pretrained": "hrm_prefix"}, "not a pretraining arm"),  # no chains
        ({"sft": ["model.prefix_lm=true"]}, "fine-tuning-only arm is"),
    ],
)
def test_fine_tuning_only_arms_are_checked(arm, message):
    node = study_node()["study"]
    node["arms"]["extra"] = arm
    with pytest.raises(StudyConfigError, match=message):
        load_spec(node)
    node = study_node()["study"]
    node["sft"] = node["pass_at_k"] = None
    with pytest.raises(StudyConfigError, match="add a study.sft stage"):
        load_spec(node)


def test_test_time_compute_scales_the_recurrence_of_hrm_arms_only(smoke_study):
    results = json.loads((smoke_study["root"] / "out" / "results.json").read_text())
    hrm_runs = [r for r in _runs(results, stage="pretrain", arm="hrm") if "test_time" in r]
    assert len(hrm_runs) == 2  # both seeds at the selected lr
    for run in hrm_runs:
        assert set(run["test_time"]) == {"x1", "H_x2", "L_x2"}
        assert run["test_time"]["x1"] == pytest.approx(run["final val/bpb"], rel=1e-5)
        assert run["test_time"]["H_x2"] != run["test_time"]["x1"]
    assert not any("test_time" in r for r in _runs(results, arm="transformer_params"))


def test_the_report_and_its_published_copy_show_every_sweep_point_and_the_command(smoke_study):
    root = smoke_study["root"]
    report = smoke_study["report"].read_text()
    assert "python scripts/run_study.py study=smoke" in report
    assert "## Every sweep point" in report and report.count("| hrm | 0.00") >= 3
    assert "Equal tokens" in report and "Test-time compute" in report and "pass@1" in report
    published = root / "published" / "smoke.md"
    assert published.is_file()
    # the numbers travel with the page: the study's results.json in a folder named like it
    copied = json.loads((root / "published" / "smoke" / "results.json").read_text())
    assert copied == json.loads((root / "out" / "results.json").read_text())
    for name in ("bpb_vs_flops", "bpb_vs_time", "lr_sweep", "test_time"):
        assert (root / "out" / f"{name}.png").is_file()
        assert (root / "published" / f"smoke_{name}.png").is_file()
        assert f"smoke_{name}.png" in published.read_text()


def test_a_sequential_study_logs_each_run_as_it_finishes_with_an_eta(smoke_study):
    finished = [line for line in smoke_study["stdout"].splitlines() if "elapsed, ETA" in line]
    sweep = [line for line in finished if "train pretrain" in line][:6]
    assert [line.split("[")[1].split(",")[0] for line in sweep] == [f"{i}/6" for i in range(1, 7)]
    assert sweep[-1].endswith("ETA 0 s]")


def test_results_name_the_data_and_refuse_a_run_on_other_data(smoke_study, tmp_path):
    import shutil

    from hrm_codegen.data.corpus import read_manifest
    from hrm_codegen.study import StudyConfigError
    from hrm_codegen.study.report import write_report

    out = smoke_study["root"] / "out"
    results = json.loads((out / "results.json").read_text())
    fingerprint = read_manifest(out / "prepare" / "corpus")["fingerprint"]
    assert results["data"]["corpus_fingerprint"] == fingerprint
    for run in _runs(results, stage="pretrain"):
        assert run["provenance"]["corpus_fingerprint"] == fingerprint
        assert run["provenance"]["intra_op_threads"] >= 1
    assert fingerprint in smoke_study["report"].read_text()

    # a copy of the study in which one run claims another corpus
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, symlinks=True)
    run_dir = copy / Path(_runs(results, stage="pretrain")[0]["run_dir"]).relative_to(out)
    config = OmegaConf.load(run_dir / "config.yaml")
    config.provenance.corpus_fingerprint = "0" * 64
    OmegaConf.save(config, run_dir / "config.yaml")
    spec = load_spec(smoke_study["cfg"]["study"])
    runner = StudyRunner(spec, copy, log=lambda _: None)
    runner.prepare()
    with pytest.raises(StudyConfigError, match="0{64}.*cannot share one table"):
        write_report(runner)


def test_records_resume_a_study_on_a_fresh_machine_and_restore_what_a_stage_needs(
    smoke_study, tmp_path
):
    """A study's records (no weights) stand in for its runs in a new output folder; a
    fine-tuning run still to train retrains its pretraining start, which logs the same floats."""
    import dataclasses
    import shutil

    from hrm_codegen.study.report import write_report

    spec = dataclasses.replace(
        load_spec(smoke_study["cfg"]["study"]), records_dir=str(tmp_path / "records")
    )
    source = StudyRunner(spec, smoke_study["root"] / "out", log=lambda _: None)
    source.prepare()
    keys = source.keys()
    assert source.write_records() == len(keys["sweep"] + keys["seeds"] + keys["sft"])
    before = json.loads((smoke_study["root"] / "out" / "results.json").read_text())

    lines: list[str] = []
    fresh = StudyRunner(spec, tmp_path / "fresh", log=lines.append)
    fresh.prepare()
    assert all(fresh.status(k) == "done" for k in keys["sweep"] + keys["sft"])
    assert {a: fresh.selected_lr(a) for a in spec.arms} == {
        a: e["selected_lr"] for a, e in before["arms"].items() if a in spec.arms
    }
    write_report(fresh)
    after = json.loads((tmp_path / "fresh" / "results.json").read_text())
    for arm, entry in before["arms"].items():
        assert (
            after["arms"][arm]["pretrain" if arm in spec.arms else "sft"]
            == entry["pretrain" if arm in spec.arms else "sft"]
        )

    # one fine-tuning run lost its record: the study retrains it from a restored start
    sft = next(k for k in keys["sft"] if k.arm == "hrm" and k.seed == 0)
    shutil.rmtree(fresh.record_dir(sft))
    with contextlib.redirect_stdout(io.StringIO()):
        fresh.run()
    start = RunKey("pretrain", "hrm", sft.lr, 0)
    reproduced = json.loads((start.path(fresh.out) / "reproduced.json").read_text())
    assert reproduced == {"identical": True, "differing": 0}
    assert run_status(sft.path(fresh.out)) == "done"
    assert not (fresh.out / "runs" / "pretrain" / "transformer_params").exists()  # not needed
    assert any("restore pretrain hrm" in line for line in lines)


def test_a_rerun_trains_nothing_and_rewrites_the_same_numbers(smoke_study, monkeypatch):
    import hrm_codegen.training as training

    def no_training(cfg):
        raise AssertionError(f"trained again: {cfg.run_dir}")

    monkeypatch.setattr(training, "train", no_training)
    before = json.loads((smoke_study["root"] / "out" / "results.json").read_text())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_study_from_config(smoke_study["cfg"], command="rerun")
    after = json.loads((smoke_study["root"] / "out" / "results.json").read_text())
    assert after["arms"] == before["arms"]
    # finished runs are counted once, not as instant runs that would make an ETA of seconds
    trained = [line for line in out.getvalue().splitlines() if line.startswith("  train ")]
    assert not trained
    assert "runs done already (here or recorded)" in out.getvalue()
    assert len(after["sessions"]) == len(before["sessions"]) + 1


def test_an_interrupted_run_continues_where_it_stopped(smoke_study, tmp_path):
    spec = load_spec(smoke_study["cfg"]["study"])
    source = StudyRunner(spec, smoke_study["root"] / "out", log=lambda _: None)
    source.prepare()
    runner = StudyRunner(spec, tmp_path, log=lambda _: None)
    runner.tokenizer_dir, runner.corpus_dir = source.tokenizer_dir, source.corpus_dir
    key = RunKey("pretrain", "hrm", spec.lr_sweep[0], 0)
    plain = runner.compose
    runner.compose = lambda overrides: plain([*overrides, "train.stop_at_step=2"])  # a "crash"
    with contextlib.redirect_stdout(io.StringIO()):
        runner.train(key)
    assert run_status(key.path(tmp_path)) == "partial"
    runner.compose = plain
    with contextlib.redirect_stdout(io.StringIO()):
        assert runner.train(key) == "done"
    full = final_metric(RunKey("pretrain", "hrm", spec.lr_sweep[0], 0).path(source.out), "val/bpb")
    assert final_metric(key.path(tmp_path), "val/bpb") == pytest.approx(full, rel=1e-6)


def test_evaluate_cli_scores_bpb_with_an_inference_schedule_and_refuses_it_for_a_transformer(
    smoke_study, tmp_path, capsys
):
    results = json.loads((smoke_study["root"] / "out" / "results.json").read_text())
    run = next(r for r in _runs(results, stage="pretrain", arm="hrm") if "test_time" in r)
    corpus = smoke_study["root"] / "out" / "prepare" / "corpus"
    common = ["--ckpt", run["run_dir"], "--metric", "bpb", "--data", "corpus"]
    common += ["--corpus-dir", str(corpus), "--seq-len", "64", "--batch-size", "4"]
    common += ["--max-batches", "2"]
    assert evaluate_main(["--model-type", "hrm", *common, "--output", str(tmp_path / "a")]) == 0
    plain = json.loads((tmp_path / "a" / "bpb.json").read_text())
    assert plain["bpb"] == pytest.approx(run["test_time"]["x1"], rel=1e-5)
    args = ["--model-type", "hrm", *common, "--h-cycles", "4", "--output", str(tmp_path / "b")]
    assert evaluate_main(args) == 0
    scaled = json.loads((tmp_path / "b" / "bpb.json").read_text())
    assert scaled["schedule"]["h_cycles"] == 4 and scaled["bpb"] != plain["bpb"]
    other = next(r for r in _runs(results, stage="pretrain", arm="transformer_params"))
    args = ["--model-type", "transformer", "--ckpt", other["run_dir"], "--metric", "bpb"]
    args += ["--corpus-dir", str(corpus), "--h-cycles", "4"]
    assert evaluate_main(args) == 2
    assert "--h-cycles only apply to an HRM" in capsys.readouterr().err


def test_runs_side_by_side_match_the_sequential_ones_and_log_to_files(smoke_study, tmp_path):
    """study.jobs=2: two spawned workers train the same runs to the same numbers (up to float
    rounding from the thread count) and write each run's output to <out>/logs/."""
    import dataclasses

    spec = dataclasses.replace(load_spec(smoke_study["cfg"]["study"]), jobs=2)
    source = StudyRunner(spec, smoke_study["root"] / "out", log=lambda _: None)
    source.prepare()
    lines: list[str] = []
    runner = StudyRunner(spec, tmp_path, log=lines.append)  # a lambda: pickling must drop it
    runner.tokenizer_dir, runner.corpus_dir = source.tokenizer_dir, source.corpus_dir
    keys = [RunKey("pretrain", arm, spec.lr_sweep[0], 0) for arm in ("hrm", "transformer_params")]
    runner.for_each("train", keys)
    for key in keys:
        assert run_status(key.path(tmp_path)) == "done"
        ours = final_metric(key.path(tmp_path), "val/bpb")
        assert ours == pytest.approx(final_metric(key.path(source.out), "val/bpb"), rel=1e-4)
        assert str(key.path(tmp_path)) in runner.log_path("train", key).read_text()
    assert "2 at a time" in lines[0]
    finished = [line for line in lines if "elapsed, ETA" in line]
    assert [line.split("[")[1].split(",")[0] for line in finished] == ["1/2", "2/2"]
    assert finished[-1].endswith("ETA 0 s]")


def test_a_failing_worker_stops_the_study_with_its_error(smoke_study, tmp_path):
    import dataclasses

    spec = dataclasses.replace(load_spec(smoke_study["cfg"]["study"]), jobs=2)
    runner = StudyRunner(spec, tmp_path, log=lambda _: None)
    with pytest.raises(KeyError, match="no_such_arm"):
        runner.for_each("train", [RunKey("pretrain", "no_such_arm", 1e-3, s) for s in (0, 1)])


def test_jobs_must_be_a_positive_int():
    for bad in (0, "two"):
        with pytest.raises(StudyConfigError, match="study.jobs"):
            load_spec(study_node(f"study.jobs={bad}")["study"])


def test_the_report_says_how_many_runs_trained_side_by_side(smoke_study):
    from hrm_codegen.study.report import render_markdown

    result = json.loads((smoke_study["root"] / "out" / "results.json").read_text())
    assert result["protocol"]["jobs"] == 1
    assert f"({result['machine']['torch_threads']} threads)" in render_markdown(result, "c", [])
    result["protocol"].update(jobs=2, threads_per_job=3)
    assert "2 runs side by side, 3 thread(s) each" in render_markdown(result, "c", [])


def _table_rows_widths(markdown: str) -> list[set[int]]:
    """For every Markdown table in the text, the set of cell counts of its rows."""
    tables: list[list[str]] = []
    previous = ""
    for line in markdown.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    return [{row.count("|") - 1 for row in table} for table in tables]


def test_every_report_table_is_well_formed_before_and_after_pass_at_k(smoke_study):
    from hrm_codegen.study.report import render_markdown

    result = json.loads((smoke_study["root"] / "out" / "results.json").read_text())
    full = render_markdown(result, "c", [])
    assert "pass@1" in full
    for entry in result["arms"].values():  # as written while the fine-tuned runs await pass@k
        entry.get("sft", {}).pop("pass_at_k", None)
        entry.get("sft", {}).pop("pass_at_k_setup", None)
    partial = render_markdown(result, "c", [])
    assert "## After fine-tuning on MBPP" in partial and "pass@1" not in partial
    for report in (full, partial):
        widths = _table_rows_widths(report)
        assert len(widths) >= 4 and all(len(w) == 1 for w in widths), widths


def test_the_page_names_the_command_any_checkout_runs(tmp_path, monkeypatch):
    """A study run from another worktree passes absolute paths that only restate defaults: the
    page drops them, and makes other paths inside the checkout relative."""
    import types

    from hrm_codegen.study.report import portable_command

    monkeypatch.chdir(tmp_path)
    spec = types.SimpleNamespace(name="cpu_x", records_dir="docs/results/cpu_x")
    ran = (
        f"python scripts/run_study.py study=cpu_x output_dir={tmp_path}/studies/cpu_x "
        f"study.records_dir={tmp_path}/docs/results/cpu_x publish_dir={tmp_path}/docs/results"
    )
    assert portable_command(ran, spec) == (
        "python scripts/run_study.py study=cpu_x publish_dir=docs/results"
    )
    kept = "python scripts/run_study.py study=cpu_x output_dir=/elsewhere '+a.b={c:1}'"
    assert portable_command(kept, spec) == kept


def test_a_tokenizer_path_under_home_reaches_training_expanded(monkeypatch, tmp_path):
    """`prepare.tokenizer_path: ~/...` (as configs/study/cpu_polyglot.yaml writes it) becomes
    an absolute path: Hydra's override grammar cannot parse a value starting with `~`."""
    from hrm_codegen.study.runner import compose_training_config, prepare_study_data

    monkeypatch.setenv("HOME", str(tmp_path))
    prepare = {"tokenizer_path": "~/tokenizers/six", "corpus_dir": str(tmp_path / "corpus")}
    tokenizer_dir, corpus_dir = prepare_study_data(prepare, tmp_path, None, print)
    assert tokenizer_dir == str(tmp_path / "tokenizers" / "six")
    assert corpus_dir == tmp_path / "corpus"
    config = compose_training_config(["data=corpus", f"tokenizer.path={tokenizer_dir}"])
    assert config.tokenizer.path == tokenizer_dir


class _NeedsTwoArguments(Exception):
    def __init__(self, what: str, where: str):
        super().__init__(f"{what} at {where}")


def test_a_worker_error_that_cannot_be_pickled_arrives_with_its_message(tmp_path):
    """A process pool rebuilds a worker's exception by calling its class with `args`; one whose
    constructor wants more (Hydra's OverrideParseException) broke the pool and hid the message."""
    import types

    from hrm_codegen.study.runner import _run_in_worker
    from hrm_codegen.study.runs import RunKey

    def fails(key):
        raise _NeedsTwoArguments("bad override", "position 3")

    runner = types.SimpleNamespace(
        log_path=lambda method, key: tmp_path / "logs" / f"{method}.log", train=fails
    )
    key = RunKey(stage="pretrain", arm="a", lr=1e-3, seed=0)
    with pytest.raises(RuntimeError, match="_NeedsTwoArguments: bad override at position 3"):
        _run_in_worker(runner, "train", key)

    def fails_plainly(key):
        raise ValueError("plain")

    runner.train = fails_plainly
    with pytest.raises(ValueError, match="plain"):  # a picklable error passes unchanged
        _run_in_worker(runner, "train", key)
