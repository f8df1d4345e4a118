"""The thread policy: `auto` takes the free cores, a number pins them, bad values are one line;
the choice is recorded with the library versions."""

from __future__ import annotations

import pytest
import torch

from hrm_codegen import runtime
from hrm_codegen.runtime import apply_threads, auto_threads, resolve_threads, runtime_record


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("busy", "cores", "expected"),
    [(2.0, 2, 1), (1.6, 2, 1), (0.3, 2, 2), (5.0, 16, 11), (None, 4, 4), (0.0, 1, 1)],
)
def test_auto_takes_the_cores_other_work_leaves_free(monkeypatch, busy, cores, expected):
    monkeypatch.setattr(runtime, "busy_cores", lambda sample_seconds=0.25: busy)
    monkeypatch.setattr(runtime, "usable_cores", lambda: cores)
    assert auto_threads() == expected


def test_busy_cores_is_measured_from_proc_stat():
    busy = runtime.busy_cores(0.05)
    if busy is None:
        pytest.skip("no /proc/stat on this system")
    import os

    assert 0.0 <= busy <= (os.cpu_count() or 1)


@pytest.mark.parametrize("bad", ["abc", "0", -1, 1.5, "many"])
def test_bad_thread_settings_name_the_value_and_the_choices(bad):
    with pytest.raises(ValueError, match=r"threads\.intra_op=.* positive integer, 'auto'"):
        resolve_threads(bad)


def test_a_pinned_count_is_applied_and_recorded(restore_threads):
    assert resolve_threads(None) is None and resolve_threads("3") == 3
    apply_threads(1)
    record = runtime_record()
    assert torch.get_num_threads() == 1 == record["intra_op_threads"]
    assert record["threads_setting"] == "1"
    apply_threads("auto")
    assert runtime_record()["threads_setting"] == "auto" and torch.get_num_threads() >= 1


def test_evaluate_and_generate_refuse_bad_threads_in_one_line(capsys):
    from hrm_codegen.evaluation.cli import main as evaluate_main
    from hrm_codegen.generate_cli import main as generate_main

    assert evaluate_main(["--threads", "zero", "--samples", "x.jsonl", "--benchmark", "mbpp"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "threads.intra_op='zero'" in err[0]
    argv = ["--threads", "0", "--prompt", "def f():", "--model-type", "hrm", "--ckpt", "none"]
    assert generate_main(argv) == 2
    assert "threads.intra_op='0'" in capsys.readouterr().err


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_package_makes_idle_openmp_threads_sleep_unless_told_otherwise(given, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import hrm_codegen.runtime, os; print(os.environ['OMP_WAIT_POLICY'])"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == expected, result.stderr
