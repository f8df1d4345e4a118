"""Hostile programs (tests/hostile/) are contained and never faked into a pass.

All programs of a backend run in one `run_programs` call, as a benchmark's samples would; the
ones with a `# ---- tests ----` line run as a SandboxProgram (candidate above the line, trusted
tests below, `# entry:` naming the function), as the harness runs benchmark samples. The
tests then check each verdict against the program's `# expect:` header and that nothing outside
the sandbox changed: files in the repository and $HOME, the network, this process's
environment, and no process left behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hrm_codegen.evaluation.sandbox import (
    STATUSES,
    ExecResult,
    SandboxProgram,
    bwrap_status,
    process_limit_in_force,
    run_programs,
)

HOSTILE_DIR = Path(__file__).parent / "hostile"
REPO = Path(__file__).resolve().parents[1]
SECRET_NAME = "HRM_HOSTILE_SECRET_CANARY"
TESTS_MARK = "# ---- tests ----\n"  # splits a fixture into candidate and trusted tests
SLEEPER_MARK = b"987.654321"  # argv of the sleeper escaped_sleeper.py leaves behind
TIMEOUT_S = 2.0
MEMORY_MB = 512


@dataclass(frozen=True)
class Hostile:
    name: str
    source: str
    expect: frozenset[str]
    needs: frozenset[str]

    def program(self, source: str) -> str | SandboxProgram:
        """The plain program, or candidate + trusted tests when the fixture has both parts."""
        if TESTS_MARK not in source:
            return source
        candidate, tests = source.split(TESTS_MARK)
        entry = next(iter(_header(source, "entry")), None)
        return SandboxProgram(candidate, tests, entry)


def _header(source: str, key: str) -> frozenset[str]:
    for line in source.splitlines():
        if line.startswith(f"# {key}:"):
            return frozenset(part.strip() for part in line.split(":", 1)[1].split(","))
    return frozenset()


def load_hostile() -> list[Hostile]:
    programs = []
    for path in sorted(HOSTILE_DIR.glob("*.py")):
        source = path.read_text()
        programs.append(
            Hostile(path.stem, source, _header(source, "expect"), _header(source, "needs"))
        )
    return programs


def test_hostile_fixtures_are_well_formed() -> None:
    programs = load_hostile()
    assert len(programs) >= 30
    for program in programs:
        assert program.expect and program.expect <= set(STATUSES), program.name
        assert program.needs <= {"bwrap", "process-limit"}, program.name
        if program.name.startswith("trusted_"):
            assert program.source.count(TESTS_MARK) == 1, program.name


def test_faked_pass_attacks_are_real() -> None:
    # Each trusted_* attack does fake a pass when candidate and tests run as one program: the
    # split (pristine built-ins and modules, trusted comparisons) is what stops it.
    attacks = [
        p for p in load_hostile() if p.name.startswith("trusted_") and "passed" not in p.expect
    ]
    assert len(attacks) >= 12
    joined = [p.program(p.source) for p in attacks]
    results = run_programs(
        [program.text for program in joined], timeout=TIMEOUT_S, memory_mb=MEMORY_MB, progress=False
    )
    assert {p.name: r.status for p, r in zip(attacks, results)} == {
        p.name: "passed" for p in attacks
    }


@dataclass
class HostileRun:
    backend: str
    results: dict[str, ExecResult]
    programs: dict[str, Hostile]
    seconds: float
    decoy_dir: Path
    home_decoy: Path
    listener: socket.socket


@pytest.fixture(scope="module", params=["bwrap", "none-unsafe"])
def hostile_run(request):
    backend = request.param
    if backend == "bwrap" and bwrap_status()[0] is None:
        pytest.skip(f"bubblewrap cannot run here: {bwrap_status()[1]}")
    decoy_dir = REPO / f".hostile-decoy-{os.getpid()}"
    decoy_dir.mkdir()
    (decoy_dir / "decoy.txt").write_text("original")
    home_decoy = Path.home() / f".hrm-hostile-decoy-{os.getpid()}"
    home_decoy.write_text("original")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    os.environ[SECRET_NAME] = "do-not-leak"
    limited = process_limit_in_force()
    chosen = {
        p.name: p
        for p in load_hostile()
        if (backend == "bwrap" or "bwrap" not in p.needs)
        and (limited or "process-limit" not in p.needs)
    }
    fill = {
        "__DECOY_DIR__": str(decoy_dir),
        "__HOME_DECOY__": str(home_decoy),
        "__PORT__": str(listener.getsockname()[1]),
        "__SECRET_NAME__": SECRET_NAME,
    }
    sources = []
    for program in chosen.values():
        source = program.source
        for placeholder, value in fill.items():
            source = source.replace(placeholder, value)
        sources.append(program.program(source))
    try:
        start = time.monotonic()
        results = run_programs(
            sources, timeout=TIMEOUT_S, memory_mb=MEMORY_MB, backend=backend, progress=False
        )
        seconds = time.monotonic() - start
        yield HostileRun(
            backend, dict(zip(chosen, results)), chosen, seconds, decoy_dir, home_decoy, listener
        )
    finally:
        del os.environ[SECRET_NAME]
        listener.close()
        shutil.rmtree(decoy_dir, ignore_errors=True)
        home_decoy.unlink(missing_ok=True)


def test_hostile_programs_get_their_expected_verdicts(hostile_run: HostileRun) -> None:
    wrong = {
        name: (result.status, result.detail, result.stderr_tail[-300:])
        for name, result in hostile_run.results.items()
        if result.status not in hostile_run.programs[name].expect
    }
    assert not wrong, f"{hostile_run.backend}: unexpected verdicts {wrong}"


def test_no_hostile_program_fakes_a_pass(hostile_run: HostileRun) -> None:
    faked = [
        name
        for name, result in hostile_run.results.items()
        if result.passed and "passed" not in hostile_run.programs[name].expect
    ]
    assert not faked


def test_the_evaluator_finishes_promptly(hostile_run: HostileRun) -> None:
    # Every timeout fires on time even with fork bombs and floods running next to it.
    slowest = max(result.duration for result in hostile_run.results.values())
    assert slowest < TIMEOUT_S + 1.0
    assert hostile_run.seconds < 60


def test_flood_and_timeout_details(hostile_run: HostileRun) -> None:
    results = hostile_run.results
    assert "more than" in results["stdout_flood"].detail
    assert results["infinite_loop"].detail.startswith("timed out after 2 s")
    assert "MemoryError" in results["memory_bomb"].detail
    assert "File too large" in results["huge_file"].detail
    assert results["exit_zero_before_failing_assert"].detail.startswith("exited with status 0")
    # The parent exits 0 and a forked child wrote a real token: only the first process counts.
    assert results["fork_child_reaches_end"].detail.startswith("exited with status 0")


def test_files_outside_the_sandbox_are_untouched(hostile_run: HostileRun) -> None:
    if hostile_run.backend != "bwrap":
        pytest.skip("the unisolated fallback does not protect files (it says so loudly)")
    assert "SUCCEEDED" not in hostile_run.results["write_outside"].stderr_tail
    assert sorted(p.name for p in hostile_run.decoy_dir.iterdir()) == ["decoy.txt"]
    assert (hostile_run.decoy_dir / "decoy.txt").read_text() == "original"
    assert hostile_run.home_decoy.read_text() == "original"


def test_no_connection_reached_the_host(hostile_run: HostileRun) -> None:
    if hostile_run.backend != "bwrap":
        pytest.skip("the unisolated fallback does not isolate the network (it says so loudly)")
    with pytest.raises(BlockingIOError):
        hostile_run.listener.accept()


def test_no_process_outlives_its_program(hostile_run: HostileRun) -> None:
    if "escaped_sleeper" not in hostile_run.results:
        pytest.skip("escaped_sleeper needs bwrap")
    assert hostile_run.results["escaped_sleeper"].passed
    survivors = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = (Path("/proc") / entry / "cmdline").read_bytes()
            except OSError:
                continue
            if SLEEPER_MARK in cmdline:
                survivors.append(entry)
    assert not survivors


# ------------------------------------------------------------------------------ kernel keyrings

# The invoking user's kernel keys are no namespace's: bubblewrap's sandbox inherits the session
# keyring, and the user's keyrings are listed in /proc/keys and reachable by serial with the
# user's permissions. A sandboxed program here knows everything an attacker could: the serials
# of the keys and of the keyrings holding them, and their descriptions.
KEYRING_SYSCALLS = {"x86_64": (248, 249, 250), "aarch64": (217, 218, 219)}  # add, request, ctl

KEYRING_PROBE = """
import ctypes, json
ADD_KEY, REQUEST_KEY, KEYCTL = __NUMBERS__
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def call(*args):
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    result = libc.syscall(*args)
    return result if result >= 0 else -ctypes.get_errno()


def read(key):
    buf = ctypes.create_string_buffer(4096)
    n = call(KEYCTL, 11, key, buf, 4096)  # KEYCTL_READ
    return buf.raw[:n].decode(errors="replace") if n >= 0 else n


seen = {}
for name in ("/proc/keys", "/proc/key-users"):
    try:
        seen[name] = open(name).read()
    except OSError as error:
        seen[name] = repr(error)
for ring in __RINGS__ + [-3, -4, -5]:  # possess the host's keyrings: link them into @s
    seen[f"link {ring}"] = call(KEYCTL, 8, ring, -3)
for key in __KEYS__:
    seen[f"read {key}"] = read(key)
for description in __DESCRIPTIONS__:
    for ring in (-3, -4, -5):
        found = call(KEYCTL, 10, ring, b"user", description.encode(), 0)  # KEYCTL_SEARCH
        seen[f"search {ring} {description}"] = read(found) if found > 0 else found
    found = call(REQUEST_KEY, b"user", description.encode(), None, 0)
    seen[f"request {description}"] = read(found) if found > 0 else found
for ring in __PLANT_IN__:  # leave a key for the host, or for the next program
    seen[f"add {ring}"] = call(ADD_KEY, b"user", b"hrm-planted", b"x", 1, ring)
print(json.dumps(seen))
"""

# Runs in its own process, so that the session keyring it joins, and the keys it adds to it,
# go when it exits; the key it adds to the user's keyring is unlinked, and expires anyway.
KEYRING_HOST = """
import ctypes, io, json, os, sys
from hrm_codegen.evaluation.sandbox import run_programs
ADD_KEY, REQUEST_KEY, KEYCTL = __NUMBERS__
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def call(*args):
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    result = libc.syscall(*args)
    return result if result >= 0 else -ctypes.get_errno()


def contents(ring):
    buf = ctypes.create_string_buffer(4096)
    n = call(KEYCTL, 11, ring, buf, 4096)
    return sorted(buf.raw[i : i + 4] for i in range(0, max(n, 0), 4))


session = call(KEYCTL, 1, None)  # KEYCTL_JOIN_SESSION_KEYRING: a fresh anonymous one
user_ring = call(KEYCTL, 0, -4, 1)  # KEYCTL_GET_KEYRING_ID
if session < 0 or user_ring < 0:
    print(json.dumps({"skip": f"no kernel keyrings here: {os.strerror(-min(session, user_ring))}"}))
    sys.exit(0)
call(KEYCTL, 8, -4, -3)  # the user keyring in the session, as pam_keyinit links it at login
secrets = {"hrm-canary-session": "canary-in-session-keyring", "hrm-canary-user": "canary-in-user"}
keys = [
    call(ADD_KEY, b"user", name.encode(), value.encode(), len(value), ring)
    for (name, value), ring in zip(secrets.items(), (-3, -4))
]
call(KEYCTL, 15, keys[1], 300)  # KEYCTL_SET_TIMEOUT: gone in 5 minutes whatever happens
try:
    probe = (
        __PROBE__.replace("__RINGS__", repr([session, user_ring]))
        .replace("__KEYS__", repr(keys))
        .replace("__DESCRIPTIONS__", repr(list(secrets)))
    )
    before = {ring: contents(ring) for ring in (session, user_ring)}
    out = {"secrets": secrets, "keys": keys}
    attack = probe.replace("__PLANT_IN__", "(-3, -4, -5)")
    for mode in ("fork", "process"):
        (result,) = run_programs(
            [attack], timeout=10, memory_mb=512, backend="bwrap", progress=False, mode=mode
        )
        out[mode] = [result.status, result.detail, result.stdout_tail]
    out["unchanged"] = before == {ring: contents(ring) for ring in (session, user_ring)}
    control = io.StringIO()
    stdout, sys.stdout = sys.stdout, control
    try:
        exec(probe.replace("__PLANT_IN__", "()"), {"__name__": "__main__"})  # unsandboxed
    finally:
        sys.stdout = stdout
    out["control"] = control.getvalue()
finally:
    call(KEYCTL, 9, keys[1], -4)  # KEYCTL_UNLINK from the user keyring
print(json.dumps(out))
"""


@pytest.mark.skipif(
    os.uname().machine not in KEYRING_SYSCALLS, reason="keyring system call numbers unknown"
)
def test_a_sandboxed_program_cannot_reach_the_invoking_users_keyrings() -> None:
    if bwrap_status()[0] is None:
        pytest.skip(f"bubblewrap cannot run here: {bwrap_status()[1]}")
    numbers = repr(KEYRING_SYSCALLS[os.uname().machine])
    probe = KEYRING_PROBE.replace("__NUMBERS__", numbers)
    host = KEYRING_HOST.replace("__NUMBERS__", numbers).replace("__PROBE__", repr(probe))
    done = subprocess.run(
        [sys.executable, "-c", host], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    if "skip" in out:
        pytest.skip(out["skip"])
    secrets = out["secrets"]
    # The probe is a real attack: run unsandboxed it reads both keys.
    control = json.loads(out["control"])
    for key, value in zip(out["keys"], secrets.values()):
        assert control[f"read {key}"] == value
    for mode in ("fork", "process"):
        status, detail, stdout = out[mode]
        assert status == "passed", (mode, detail)  # it ran to its end
        seen = json.loads(stdout.strip().splitlines()[-1])
        leaked = [
            (what, value)
            for what, value in seen.items()
            if any(text in str(value) for text in [*secrets, *secrets.values()])
        ]
        assert not leaked, (mode, leaked)
        calls = {what: value for what, value in seen.items() if not what.startswith("/proc")}
        assert all(value == -errno.EPERM for value in calls.values()), (mode, calls)
    assert out["unchanged"], "a sandboxed program changed the host's keyrings"
