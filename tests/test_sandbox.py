"""The sandbox's verdicts on ordinary programs, the completion token, limits and backends."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

from hrm_codegen.evaluation import sandbox
from hrm_codegen.evaluation.sandbox import (
    SandboxUnavailableError,
    SandboxWarning,
    bwrap_status,
    resolve_backend,
    run_program,
    run_programs,
)
from hrm_codegen.evaluation.sandbox import limits as sandbox_limits
from hrm_codegen.evaluation.sandbox import pool as sandbox_pool
from hrm_codegen.evaluation.sandbox import runner as sandbox_runner

BACKENDS = [
    pytest.param(
        "bwrap",
        marks=pytest.mark.skipif(bwrap_status()[0] is None, reason="bubblewrap cannot run here"),
    ),
    "none-unsafe",
]

# (program, expected status, substring of the detail)
CASES = {
    "passes": ("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n", "passed", ""),
    "assertion": ("def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5\n", "failed",
                  "AssertionError at line 4: assert add(2, 3) == 5"),
    "exception": ("x = {}\nx['missing']\n", "failed", "KeyError: 'missing' at line 2"),
    "syntax": ("def broken(:\n    pass\n", "failed", "SyntaxError"),
    "name_error": ("assert undefined_function(1) == 1\n", "failed", "NameError"),
    "sys_exit_0": ("import sys\nsys.exit(0)\n", "failed", "exited with status 0 before the end"),
    "exit_3": ("import sys\nsys.exit(3)\n", "failed", "exit status 3"),
    "segfault": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", "failed",
                 "killed by SIGSEGV"),
    "memory": ("blob = bytearray(2 << 30)\n", "failed", "MemoryError"),
    "main_guard": ("ran = []\nif __name__ == '__main__':\n    ran.append(1)\nassert ran == [1]\n",
                   "passed", ""),
    "unicode": ("print('héllo ✓ 世界')\nassert 'é'.upper() == 'É'\n", "passed", ""),
    "subprocess": ("import subprocess\nout = subprocess.run(['echo', 'hi'], capture_output=True)\n"
                   "assert out.stdout == b'hi\\n'\n", "passed", ""),
    "own_tmp_a": ("import os\nassert not os.path.exists('/tmp/marker')\n"
                  "open('marker', 'w').write('a')\n", "passed", ""),
    "own_tmp_b": ("import os\nassert not os.path.exists('/tmp/marker')\n"
                  "open('marker', 'w').write('b')\n", "passed", ""),
    "stdin_empty": ("import sys\nassert sys.stdin.read() == ''\n", "passed", ""),
}  # fmt: skip


@pytest.fixture(scope="module", params=BACKENDS)
def verdicts(request):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)
        results = run_programs(
            [program for program, _, _ in CASES.values()],
            timeout=10.0,
            memory_mb=512,
            backend=request.param,
            progress=False,
        )
    return dict(zip(CASES, results))


@pytest.mark.parametrize("name", list(CASES))
def test_verdicts_on_ordinary_programs(verdicts, name: str) -> None:
    _, status, detail = CASES[name]
    result = verdicts[name]
    assert result.status == status, (result.detail, result.stderr_tail)
    assert detail in result.detail
    assert result.passed == (status == "passed")
    assert result.duration > 0


def test_output_and_exit_code_are_reported(verdicts) -> None:
    assert verdicts["unicode"].stdout_tail == "héllo ✓ 世界\n"  # the token line is not shown
    assert verdicts["passes"].exit_code == 0
    assert verdicts["exit_3"].exit_code == 3
    assert verdicts["segfault"].exit_code == 128 + 11
    assert "Traceback" in verdicts["exception"].stderr_tail


def test_timeout_kills_and_reports() -> None:
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", timeout=1.0, memory_mb=256)
    assert result.status == "timeout"
    assert result.exit_code is None
    assert result.detail == "timed out after 1 s (wall clock)"
    assert 1.0 <= result.duration < 2.0
    assert time.monotonic() - start < 10


def test_timeout_counts_the_programs_own_time_not_the_queue() -> None:
    # Four 0.6 s programs through one worker take 2.4 s in all, but each is within its 1 s.
    programs = ["import time\ntime.sleep(0.6)\n"] * 4
    results = run_programs(programs, timeout=1.0, memory_mb=256, workers=1, progress=False)
    assert [r.status for r in results] == ["passed"] * 4


def test_results_come_back_in_order_and_through_the_callback() -> None:
    programs = [f"import time\ntime.sleep({0.3 - 0.1 * i})\nassert {i} != 1\n" for i in range(3)]
    seen = []
    results = run_programs(
        programs,
        memory_mb=256,
        workers=3,
        progress=False,
        on_result=lambda index, result: seen.append((index, result.status)),
    )
    assert [r.status for r in results] == ["passed", "failed", "passed"]
    assert sorted(seen) == [(0, "passed"), (1, "failed"), (2, "passed")]


def test_a_sandbox_that_did_not_start_is_retried_not_scored(monkeypatch) -> None:
    # The first start of program 0 and every start of program 1 fail on the evaluator's side
    # (as a start-up lost to a loaded machine would): program 0 is judged on its rerun,
    # program 1 stays an `error` after ERROR_ATTEMPTS runs and is not called a failure.
    real_run_one = sandbox_pool.run_one
    starts = {0: 0, 1: 0}

    def flaky(program, launcher, timeout, running=None):
        index = 0 if "first" in program else 1
        starts[index] += 1
        if index == 1 or starts[index] == 1:
            raise OSError("[Errno 11] Resource temporarily unavailable")
        return real_run_one(program, launcher, timeout, running)

    monkeypatch.setattr(sandbox_pool, "run_one", flaky)
    seen = []
    results = run_programs(
        ["# first\nassert 1 + 1 == 2\n", "# second\n"],
        memory_mb=256,
        workers=2,
        progress=False,
        mode="process",
        on_result=lambda index, result: seen.append(index),
    )
    assert [r.status for r in results] == ["passed", "error"]
    assert "Resource temporarily unavailable" in results[1].detail
    assert starts == {0: 2, 1: sandbox_pool.ERROR_ATTEMPTS}
    assert sorted(seen) == [0, 1]  # each reported once, with its final result


def test_large_programs_and_output_tails() -> None:
    filler = "".join(f"value_{i} = {i}\n" for i in range(20000))  # ~300 kB, far over a pipe buffer
    program = filler + "import sys\nfor i in range(50):\n    print(i, file=sys.stderr)\nassert 0\n"
    result = run_program(program, memory_mb=256)
    assert result.status == "failed"
    assert result.detail == "AssertionError at line 20004: assert 0"
    assert len(result.stderr_tail.splitlines()) == sandbox_limits.STDERR_TAIL_LINES
    assert result.stderr_tail.endswith("AssertionError")


def test_the_token_is_nowhere_the_program_can_read(monkeypatch) -> None:
    # Fix the random key and token so the test knows what must not leak.
    fixed = (bytes(range(16)), bytes(range(100, 116)))
    monkeypatch.setattr(sandbox_runner, "_new_key_and_token", lambda: fixed)
    token = bytes(range(100, 116)).hex()
    hunter = (
        "import os, sys\n"
        "seen = ' '.join(sys.argv) + str(os.environ) + sys.stdin.read()\n"
        "for path in ['/proc/self/cmdline', '/proc/self/environ', 'program.py']:\n"
        "    seen += open(path, 'rb').read().decode(errors='replace')\n"
        "print(seen, flush=True)\n"
        "os._exit(0)\n"
    )
    result = run_program(hunter, memory_mb=256)
    assert result.status == "failed"
    assert "PATH=" in result.stdout_tail and "os._exit(0)" in result.stdout_tail
    assert token not in result.stdout_tail
    # The same fixed token does pass an honest program: the check above is not vacuous.
    assert run_program("assert True\n", memory_mb=256).status == "passed"


def test_invalid_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="timeout=0"):
        run_programs(["pass"], timeout=0)
    with pytest.raises(ValueError, match="memory_mb=1"):
        run_programs(["pass"], memory_mb=1)
    with pytest.raises(ValueError, match="workers=0"):
        run_programs(["pass"], workers=0)
    with pytest.raises(TypeError, match=r"programs\[1\] is bytes"):
        run_programs(["pass", b"pass"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="not a single string"):
        run_programs("pass")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sandbox backend 'docker' unknown"):
        resolve_backend("docker")
    assert run_programs([], progress=False) == []


def test_missing_bubblewrap_fails_loudly_or_falls_back_once(monkeypatch) -> None:
    monkeypatch.setattr(sandbox_runner, "_bwrap_cache", {})
    monkeypatch.setattr(sandbox_runner, "_warned_unsafe", False)
    monkeypatch.setattr(sandbox_runner.shutil, "which", lambda name: None)
    with pytest.raises(SandboxUnavailableError, match="bubblewrap is not installed"):
        resolve_backend("bwrap")
    with pytest.warns(SandboxWarning, match="UNSAFE SANDBOX: bubblewrap is unavailable"):
        assert resolve_backend("auto") == "none-unsafe"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SandboxWarning)  # said once, not on every call
        assert resolve_backend("auto") == "none-unsafe"
        assert run_program("assert 1\n", memory_mb=256).passed


KILL_MARK = "55.4321"  # argv of the sleep the orphan test's program becomes


def _marked_pids() -> list[str]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = (Path("/proc") / entry / "cmdline").read_bytes()
            except OSError:
                continue
            if cmdline.split(b"\0")[:2] == [b"sleep", KILL_MARK.encode()]:
                pids.append(entry)
    return pids


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize("backend", BACKENDS)
def test_programs_die_with_a_killed_evaluator(backend: str) -> None:
    # An evaluator killed outright (SIGKILL, OOM killer) runs no cleanup: its programs must go
    # with it rather than sleep on, and the cgroups it leaves are swept by the next run.
    script = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "from hrm_codegen.evaluation.sandbox import run_programs\n"
        f'program = \'import os\\nos.execv("/bin/sleep", ["sleep", "{KILL_MARK}"])\\n\'\n'
        f"run_programs([program], timeout=60, memory_mb=256, backend={backend!r}, "
        "progress=False)\n"
    )
    evaluator = subprocess.Popen([sys.executable, "-c", script])
    try:
        assert _wait_for(lambda: _marked_pids(), 30), "the program never started"
    finally:
        evaluator.kill()
        evaluator.wait()
    assert _wait_for(lambda: not _marked_pids(), 10), f"survivors: {_marked_pids()}"
    # A later run sweeps what the killed one left: its cgroups, and the fallback's temp folder.
    prefix = f"{sandbox._CGROUP_PREFIX}{evaluator.pid}-"
    sandbox._Cgroups(256).close()
    left = [p for folder, _ in sandbox._cgroup_dirs() for p in folder.glob(prefix + "*")]
    assert not left
    workdirs = Path(tempfile.gettempdir()).glob(f"{sandbox._WORKDIR_PREFIX}{evaluator.pid}-*")
    assert len(list(workdirs)) == (backend == "none-unsafe")
    sandbox._remove_stale_workdirs()
    assert not list(Path(tempfile.gettempdir()).glob(f"{sandbox._WORKDIR_PREFIX}{evaluator.pid}-*"))


def test_stale_cgroups_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"{sandbox._CGROUP_PREFIX}{dead.pid}-0123abcd"
    live = tmp_path / f"{sandbox._CGROUP_PREFIX}{os.getpid()}-0123abcd"
    for parent in (stale, live):
        (parent / "p1").mkdir(parents=True)
    sandbox._Cgroups._remove_stale(tmp_path)
    assert not stale.exists()
    assert (live / "p1").is_dir()


def _cpu_cgroups_in_force() -> bool:
    cgroups = sandbox._Cgroups(256)
    try:
        return "cpu" in cgroups.kinds
    finally:
        cgroups.close()


@pytest.mark.skipif(not _cpu_cgroups_in_force(), reason="needs a writable cpu cgroup (root)")
def test_a_cpu_hog_cannot_starve_the_program_next_to_it() -> None:
    # 40 spinning children, each in a session (so a scheduler autogroup) of its own, would leave
    # a neighbour 1/20 of a core and time it out; one cpu cgroup per program keeps it fair.
    hog = (
        "import os\nfor _ in range(40):\n    if os.fork() == 0:\n        os.setsid()\n"
        "        break\nwhile True:\n    pass\n"
    )
    honest = (
        "import time\ntime.sleep(0.5)\nstart = time.process_time()\n"
        "while time.process_time() - start < 0.5:\n    pass\n"
    )
    hogged, result = run_programs([hog, honest], timeout=3.0, workers=2, progress=False)
    assert hogged.status == "timeout"
    assert result.status == "passed", result.detail
    assert result.duration < 2.0
