"""Where a study's runs execute (study/executors.py): local workers with a GPU each, Slurm jobs
through submitit (its local cluster here) and Ray tasks (a local instance) give the same runs and
numbers; a launcher killed mid-study and started again finishes without training a finished run
again."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from training_fixtures import copy_stdlib_modules, write_tiny_mbpp

from hrm_codegen.study import StudyConfigError, run_study_from_config
from hrm_codegen.study.executors import gpu_groups
from hrm_codegen.study.runner import CONFIG_DIR, run_status
from hrm_codegen.study.spec import load_executor_spec

ROOT = Path(__file__).resolve().parents[1]
# a lean smoke study: two arms, three lrs, two seeds, no fine-tuning
LEAN = [
    "~study.arms.hrm_prefix",
    "~study.sft",
    "~study.pass_at_k",
    "study.test_time_multipliers=[1]",
]


def lean_node(root: Path, out: str, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "run_study",
            overrides=[
                "study=smoke", *LEAN, f"output_dir={root / out}",
                f"study.prepare.corpus.source_dirs=[{root / 'src'}]",
                f"study.mbpp_path={root / 'mbpp.jsonl'}", *overrides,
            ],
        )  # fmt: skip
    return OmegaConf.to_container(cfg, resolve=True)


def finals(root: Path, out: str) -> dict[tuple, float]:
    results = json.loads((root / out / "results.json").read_text())
    return {(r["arm"], r["lr"], r["seed"]): r["final val/bpb"] for r in results["runs"]}


@pytest.fixture(scope="module")
def lean(tmp_path_factory):
    root = tmp_path_factory.mktemp("executors")
    copy_stdlib_modules(root / "src")
    write_tiny_mbpp(root / "mbpp.jsonl")
    saved = os.environ.get("HRM_CODEGEN_HOME")
    os.environ["HRM_CODEGEN_HOME"] = str(root / "home")
    with contextlib.redirect_stdout(io.StringIO()):
        run_study_from_config(lean_node(root, "local"))
    yield root
    if saved is None:
        os.environ.pop("HRM_CODEGEN_HOME", None)
    else:
        os.environ["HRM_CODEGEN_HOME"] = saved


def test_local_workers_get_their_own_gpus():
    assert gpu_groups([], 4) == []  # CPU: workers as before
    assert gpu_groups(["0", "1", "2", "3"], 2) == ["0,1", "2,3"]
    assert gpu_groups(["0", "1", "2", "3", "4", "5", "6", "7"], 8) == [str(i) for i in range(8)]
    with pytest.raises(StudyConfigError, match=r"study.jobs=3 local workers but 2 GPU\(s\)"):
        gpu_groups(["0", "1"], 3)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"kind": "kubernetes"}, "use one of local, slurm, ray"),
        ({"kind": "slurm", "partitions": "gpu"}, r"unknown key\(s\) \['partitions'\]"),
        ({"kind": "ray", "gpus_per_run": -1}, "gpus_per_run=-1 must be >= 0"),
    ],
)
def test_executor_mistakes_are_one_line(value, message):
    with pytest.raises(StudyConfigError, match=message):
        load_executor_spec(value)
    assert load_executor_spec(None).kind == load_executor_spec("local").kind == "local"


def test_submitit_runs_the_same_study_to_the_same_numbers(lean):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install submitit)")
    node = lean_node(lean, "slurm", "+study.executor={kind: slurm, cluster: local, timeout_min: 10}")  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        run_study_from_config(node)
    assert finals(lean, "slurm") == finals(lean, "local")
    ledger = json.loads((lean / "slurm" / "submitit" / "jobs.json").read_text())
    assert len([k for k in ledger if k.startswith("train/")]) == 8  # every run, submitted once
    assert all(entry["attempts"] == 1 for entry in ledger.values())


def test_ray_runs_the_same_study_to_the_same_numbers(lean):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray)")
    # one arm and one seed (three runs) keep Ray's start-up the larger part of this test
    node = lean_node(
        lean, "ray", "~study.arms.transformer_params", "study.seeds=[0]",
        "+study.executor={kind: ray, cpus_per_run: 1}",
    )  # fmt: skip
    # ray.init installs its own SIGTERM/SIGINT handlers in this process and leaves them there
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        except Exception as error:  # the machine cannot host a local Ray instance (not our code)
            pytest.skip(f"a local Ray instance cannot start here: {error}")
        with contextlib.redirect_stdout(io.StringIO()):
            run_study_from_config(node)
    finally:
        ray.shutdown()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    ours, local = finals(lean, "ray"), finals(lean, "local")
    assert len(ours) == 3 and ours == {k: local[k] for k in ours}


def test_a_killed_launcher_started_again_trains_nothing_twice(lean):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install submitit)")
    args = [
        sys.executable, str(ROOT / "scripts" / "run_study.py"), "study=smoke", *LEAN,
        f"output_dir={lean / 'relaunch'}", f"study.prepare.corpus.source_dirs=[{lean / 'src'}]",
        f"study.mbpp_path={lean / 'mbpp.jsonl'}",
        "+study.executor={kind: slurm, cluster: local, timeout_min: 10}",
    ]  # fmt: skip
    env = {**os.environ, "HRM_CODEGEN_HOME": str(lean / "home")}
    launcher = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = lean / "relaunch" / "runs" / "pretrain"

    def done_runs() -> list[Path]:
        return [r for r in runs.glob("*/*") if run_status(r) == "done"]

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not done_runs():
        time.sleep(0.5)
    launcher.send_signal(signal.SIGKILL)  # mid-study: some runs finished, others not
    launcher.wait()
    time.sleep(1.0)
    finished = {r: (r / "checkpoint" / "trainer_state.json").stat().st_mtime_ns for r in done_runs()}  # fmt: skip
    assert finished, "no run finished before the launcher was killed"
    assert len(finished) < 8, "every run finished before the launcher was killed"
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for run, mtime in finished.items():  # not trained again: its checkpoint is untouched
        state = run / "checkpoint" / "trainer_state.json"
        assert state.stat().st_mtime_ns == mtime, run
    assert finals(lean, "relaunch") == finals(lean, "local")
