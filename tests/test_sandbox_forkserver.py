"""The fork-server mode: programs in one worker's sandbox cannot see or touch each other.

Sequences of programs run on one ForkServer, in order (run_programs makes no order promise),
and each program prints the inode of its PID namespace, so the tests first prove that two
programs really shared a sandbox before they check that the second saw nothing of the first.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest

from hrm_codegen.evaluation.sandbox import (
    SandboxProgram,
    SandboxWarning,
    bwrap_status,
    run_programs,
)
from hrm_codegen.evaluation.sandbox.forkserver import (
    MODE_ENV,
    ForkServer,
    ForkServerPool,
    resolve_mode,
)
from hrm_codegen.evaluation.sandbox.runner import ExecResult, judge, make_launcher, program_spec

pytestmark = pytest.mark.skipif(
    bwrap_status()[0] is None, reason=f"bubblewrap cannot run here: {bwrap_status()[1]}"
)

NAMESPACE = "import os\nprint('ns', os.readlink('/proc/self/ns/pid'), flush=True)\n"

PLANT = NAMESPACE + (
    "import builtins, ctypes, os, resource, subprocess, sys, time\n"
    "for path in ('/tmp/planted', 'planted-in-cwd', '/dev/shm/planted'):\n"
    "    open(path, 'w').write('x')\n"
    "os.mkdir('/tmp/locked'); open('/tmp/locked/f', 'w').close(); os.chmod('/tmp/locked', 0)\n"
    "os.chmod('/tmp', 0o500)\n"
    "sys.modules['json'] = 'planted'\n"
    "builtins.len = lambda x: 42\n"
    "os.environ['HRM_PLANTED'] = '1'\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "assert libc.shmget(4242, 4096, 0o1000 | 0o600) >= 0\n"  # IPC_CREAT
    "try:\n"
    "    resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (64, 1 << 20))\n"
    "except PermissionError:\n"
    "    pass\n"
    "subprocess.Popen(['sleep', '987.123'], start_new_session=True)\n"
    "if os.fork() == 0:\n"
    "    if os.fork() == 0:\n"
    "        os.setsid(); time.sleep(30)\n"
    "    os._exit(0)\n"
    "time.sleep(0.1)\n"
    # What the next program checks is visible here: its checks can fail.
    "assert os.path.exists('/dev/shm/planted') and os.path.exists('planted-in-cwd')\n"
    "assert len([]) == 42 and os.environ['HRM_PLANTED'] == '1'\n"
    "assert libc.shmget(4242, 0, 0) >= 0\n"
    "assert any(b'987.123' in open(f'/proc/{p}/cmdline', 'rb').read()\n"
    "           for p in os.listdir('/proc') if p.isdigit())\n"
)

CHECK = NAMESPACE + (
    "import builtins, ctypes, os, resource, sys\n"
    "assert os.listdir('/tmp') == ['program.py'], os.listdir('/tmp')\n"
    "assert os.listdir('/dev/shm') == [], os.listdir('/dev/shm')\n"
    "assert os.stat('/tmp').st_mode & 0o700 == 0o700, oct(os.stat('/tmp').st_mode)\n"
    "assert 'json' not in sys.modules and builtins.len([]) == 0\n"
    "assert 'HRM_PLANTED' not in os.environ\n"
    "assert ctypes.CDLL(None).shmget(4242, 0, 0) == -1\n"
    "assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] != 64\n"
    "me = {1, os.getpid(), os.getppid()}\n"
    "others = [p for p in os.listdir('/proc') if p.isdigit() and int(p) not in me]\n"
    "assert not others, [open(f'/proc/{p}/cmdline', 'rb').read() for p in others]\n"
)


def run_in_order(programs: list[str | SandboxProgram], timeout: float = 5.0) -> list[ExecResult]:
    """Run programs one after the other on one fork server (a fresh one after it goes bad)."""
    launcher = make_launcher("bwrap", 512, 1)
    server = ForkServer(launcher)
    results = []
    try:
        for program in programs:
            if not server.alive:
                server.close()
                server = ForkServer(launcher)
            seen = server.run(program_spec(program), launcher, timeout)
            text = program.text if isinstance(program, SandboxProgram) else program
            results.append(seen if isinstance(seen, ExecResult) else judge(text, seen, timeout))
    finally:
        server.close()
        if launcher.cgroups is not None:
            launcher.cgroups.close()
    return results


def namespace_of(result: ExecResult) -> str:
    lines = [line for line in result.stdout_tail.splitlines() if line.startswith("ns ")]
    assert lines, result
    return lines[0]


def test_the_next_program_sees_nothing_the_previous_one_left() -> None:
    plant, check, check_again = run_in_order([PLANT, CHECK, CHECK])
    assert plant.status == "passed", plant
    assert check.status == "passed", check
    assert check_again.status == "passed", check_again
    # The same sandbox all along: the sweep, not a fresh sandbox, cleaned up.
    assert namespace_of(plant) == namespace_of(check) == namespace_of(check_again)


def test_the_checks_fail_in_the_program_that_planted() -> None:
    (both,) = run_in_order([PLANT + CHECK.replace(NAMESPACE, "")])
    assert both.status == "failed", both
    assert "AssertionError" in both.detail


@pytest.mark.parametrize(
    "attack",
    [
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "import os, signal\nos.kill(1, signal.SIGSTOP)\n",
        "import os, signal\nfor sig in (2, 15, 10, 1):\n    os.kill(1, sig)\n",
        "import os, time\ntry:\n    os.kill(-1, 9)\nexcept ProcessLookupError:\n    pass\n"
        "time.sleep(0.2)\n",
        "import os\nif os.fork() == 0:\n    os.kill(1, 9)\n    os._exit(0)\nos.wait()\n",
    ],
    ids=["kill-server", "stop-server", "signal-server", "kill-everyone", "child-kills-server"],
)
def test_a_program_cannot_kill_or_stop_its_server(attack: str) -> None:
    attacker, after = run_in_order([NAMESPACE + attack + "import time\ntime.sleep(0.05)\n", CHECK])
    assert attacker.status == "passed", attacker  # it ran to its end; the server is pid 1
    assert after.status == "passed", after
    assert namespace_of(attacker) == namespace_of(after)  # the same server went on


def _server_host_pid(server: ForkServer) -> int:
    """The host pid of the server: the Python process under the sandbox's bwrap."""
    pending, seen = [server.proc.pid], []
    while pending:
        pid = pending.pop()
        seen.append(pid)
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pending += [int(child) for child in f.read().split()]
    for pid in seen:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"-I\0-S\0-c" in f.read():
                return pid
    raise AssertionError(f"no server under {seen}")


def test_a_server_killed_under_its_program_gives_no_pass() -> None:
    launcher = make_launcher("bwrap", 512, 1)
    server = ForkServer(launcher)
    try:
        killer = threading.Timer(0.3, os.kill, (_server_host_pid(server), signal.SIGKILL))
        killer.start()
        program = "import time\ntime.sleep(1.0)\n"
        seen = server.run(program_spec(program), launcher, 5.0)
        result = seen if isinstance(seen, ExecResult) else judge(program, seen, 5.0)
        killer.join()
        assert result.status == "failed", result
        assert "fork server died" in result.detail
        assert not server.alive
    finally:
        server.close()
        if launcher.cgroups is not None:
            launcher.cgroups.close()


def test_a_program_cannot_ptrace_or_read_its_server() -> None:
    attach = (
        "import ctypes, os\n"
        "server = os.getppid()\n"
        "assert ctypes.CDLL(None).ptrace(16, server, 0, 0) == 0, 'ptrace attach refused'\n"
    )
    memory = "import os\nopen(f'/proc/{os.getppid()}/mem', 'rb')\n"
    fds = "import os\nos.readlink(f'/proc/{os.getppid()}/fd/0')\n"
    results = run_in_order([attach, memory, fds, "pass\n"])
    assert [r.status for r in results] == ["failed", "failed", "failed", "passed"], results
    assert "ptrace attach refused" in results[0].detail
    assert "PermissionError" in results[1].detail and "PermissionError" in results[2].detail


@pytest.mark.parametrize(
    ("program", "status"),
    [
        ("import os\nos._exit(0)\nassert False\n", "failed"),
        ("import sys\nsys.exit(0)\n", "failed"),
        ("while True:\n    pass\n", "timeout"),
        ("import os\nif os.fork():\n    os._exit(0)\n", "failed"),
    ],
    ids=["os-exit-0", "sys-exit-0", "loop", "parent-exits-0"],
)
def test_no_early_exit_or_stalled_server_passes(program: str, status: str) -> None:
    result, after = run_in_order([program, "pass\n"], timeout=1.5)
    assert result.status == status, result
    assert after.status == "passed", after


def test_memory_and_output_limits_hold_in_a_child() -> None:
    hog = "x = bytearray(700 << 20)\n"  # above the 512 MiB of run_in_order
    flood = "import os\nwhile True:\n    os.write(1, b'x' * 65536)\n"
    hog_result, flood_result, after = run_in_order([hog, flood, "pass\n"])
    assert hog_result.status == "failed" and "MemoryError" in hog_result.detail, hog_result
    assert flood_result.status == "failed" and "more than" in flood_result.detail, flood_result
    assert after.status == "passed", after


def test_run_programs_in_fork_mode_keeps_verdicts_and_order() -> None:
    honest = SandboxProgram("def f(x):\n    return x + 1\n", "assert f(1) == 2\n", "f")
    wrong = SandboxProgram("def f(x):\n    return x\n", "assert f(1) == 2\n", "f")
    programs = [honest, wrong, "raise ValueError('boom')\n", "print('hi')\n"] * 3
    results = run_programs(programs, timeout=5.0, workers=2, progress=False, mode="fork")
    assert [r.status for r in results] == ["passed", "failed", "failed", "passed"] * 3
    assert "ValueError: boom" in results[2].detail
    assert results[3].stdout_tail == "hi\n"


def test_mode_comes_from_the_parameter_then_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(MODE_ENV, raising=False)
    assert resolve_mode(None) == "auto"
    monkeypatch.setenv(MODE_ENV, "fork")
    assert resolve_mode(None) == "fork"
    monkeypatch.setenv(MODE_ENV, "process")
    assert resolve_mode(None) == "process"
    assert resolve_mode("fork") == "fork"
    monkeypatch.setenv(MODE_ENV, "threads")
    with pytest.raises(ValueError, match="HRM_CODEGEN_SANDBOX_MODE"):
        resolve_mode(None)
    with pytest.raises(ValueError, match="mode='forks'"):
        run_programs(["pass\n"], mode="forks")


def test_a_server_that_cannot_start_falls_back_to_a_sandbox_per_program(monkeypatch) -> None:
    import hrm_codegen.evaluation.sandbox.forkserver as forkserver

    broken = lambda command: [*command[:-5], "/bin/false"]  # noqa: E731  bwrap runs, no server
    monkeypatch.setattr(forkserver, "server_command", broken)
    with pytest.warns(SandboxWarning, match="fork server did not start"):
        results = run_programs(["pass\n", "assert False\n"], workers=1, progress=False, mode="fork")
    assert [r.status for r in results] == ["passed", "failed"]


def test_a_program_whose_servers_die_before_it_starts_runs_in_a_sandbox_of_its_own(
    monkeypatch,
) -> None:
    """Nothing of the program ran on either server, so it is run, not reported as an error."""
    import hrm_codegen.evaluation.sandbox.forkserver as forkserver

    tries = []

    def gone(self, spec, launcher, timeout):
        tries.append(self)
        self.alive = False
        return ExecResult("error", None, "", 0.0, forkserver._GONE_BEFORE_START)

    monkeypatch.setattr(forkserver.ForkServer, "run", gone)
    with pytest.warns(SandboxWarning, match="two fork servers were gone"):
        results = run_programs(["pass\n", "assert False\n"], workers=1, progress=False, mode="fork")
    assert [r.status for r in results] == ["passed", "failed"]
    assert len(tries) == 4 and len(set(map(id, tries))) == 4  # two fresh servers per program


def test_an_idle_server_that_died_is_replaced_without_failing_the_program() -> None:
    launcher = make_launcher("bwrap", 512, 1)
    pool = ForkServerPool(launcher, 1)
    try:
        first = pool.execute(program_spec(NAMESPACE), 5.0)
        (server,) = pool.all
        os.kill(_server_host_pid(server), signal.SIGKILL)
        server.proc.wait(timeout=10)
        second = pool.execute(program_spec(NAMESPACE), 5.0)
        results = [judge(NAMESPACE, seen, 5.0) for seen in (first, second)]
        assert [r.status for r in results] == ["passed", "passed"], results
        assert namespace_of(results[0]) != namespace_of(results[1])
    finally:
        pool.close()
        if launcher.cgroups is not None:
            launcher.cgroups.close()


# What a program inherits from its fork server so that it writes to few of the server's pages:
# no transparent huge page shared with it, and the server's objects out of the collector's
# generations (a collection in the child does not walk them).
SHARING = (
    "import ctypes, gc\n"
    "print('thp_disabled', ctypes.CDLL(None).prctl(42, 0, 0, 0, 0))\n"  # PR_GET_THP_DISABLE
    "print('frozen', gc.get_freeze_count())\n"
)


def _values(result: ExecResult) -> dict[str, int]:
    assert result.status == "passed", result
    return {
        key: int(value) for key, value in (line.split() for line in result.stdout_tail.splitlines())
    }


def test_a_forked_program_shares_no_huge_page_and_no_collected_object_with_its_server() -> None:
    forked, fresh = (
        run_programs([SHARING], timeout=10.0, workers=1, progress=False, mode=mode)[0]
        for mode in ("fork", "process")
    )
    assert _values(forked)["thp_disabled"] == 1
    assert _values(forked)["frozen"] > 1000  # the server's modules and its record of them
    assert _values(fresh)["frozen"] == 0


def test_the_default_mode_is_the_one_timed_faster_here(monkeypatch) -> None:
    from hrm_codegen.evaluation.sandbox import forkserver

    choice = forkserver.choose_mode("bwrap")
    assert choice.mode in forkserver.MODES and choice.reason == "timed"
    assert choice.fork_ms > 0 and choice.process_ms > 0
    assert choice.mode == ("fork" if choice.fork_ms <= choice.process_ms else "process")
    assert forkserver.choose_mode("bwrap") is choice  # timed once per process
    assert forkserver.choose_mode("none-unsafe").mode == "process"
    # run_programs without a mode uses it; a stub shows which mode ran.
    monkeypatch.delenv(MODE_ENV, raising=False)
    monkeypatch.setitem(
        forkserver._choices, ("bwrap", 512), forkserver.ModeChoice("process", 1.0, 0.5, "stub")
    )
    results = run_programs([NAMESPACE, NAMESPACE], memory_mb=512, workers=1, progress=False)
    assert namespace_of(results[0]) != namespace_of(results[1])  # a sandbox per program
    monkeypatch.setitem(
        forkserver._choices, ("bwrap", 512), forkserver.ModeChoice("fork", 0.5, 1.0, "stub")
    )
    results = run_programs([NAMESPACE, NAMESPACE], memory_mb=512, workers=1, progress=False)
    assert namespace_of(results[0]) == namespace_of(results[1])  # one server's children
