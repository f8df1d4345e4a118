"""Running one program: the backend (and the probe that bubblewrap works here), the launcher,
the payload, pipes with a cap, verdicts. Many programs at a time: pool.py."""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hrm_codegen.evaluation.sandbox.bwrap import (
    BOOTSTRAP_CODE,
    bwrap_command,
    interpreter_command,
    site_packages,
)
from hrm_codegen.evaluation.sandbox.cgroups import (
    _WORKDIR_PREFIX,
    Cgroups,
    _remove_stale_workdirs,
)
from hrm_codegen.evaluation.sandbox.limits import (
    BACKENDS,
    DEFAULT_MEMORY_MB,
    MAX_FILE_MB,
    MAX_OUTPUT_BYTES,
    MAX_PROCESSES,
    SANDBOX_ENV,
    STARTED,
    STDERR_TAIL_LINES,
    TAIL_BYTES,
)
from hrm_codegen.evaluation.sandbox.trusted import TRUSTED_CONTAINER_MODULES, prepare_tests


class SandboxUnavailableError(RuntimeError):
    """The requested sandbox backend cannot run on this machine."""


class SandboxWarning(RuntimeWarning):
    """Programs run with weaker isolation than asked for."""


@dataclass(frozen=True)
class ExecResult:
    """What happened to one program.

    `status`: passed (exit 0 and the completion token), failed (the program ran and did not reach
    its end: exception, early exit, crash, memory or output limit, or an untrusted value met by
    the tests), timeout (wall clock or CPU limit), error (the evaluator could not run it:
    sandbox setup failure; never the program's fault). `exit_code` is the interpreter's status
    (128 + N when killed by signal N; None on timeout or error), `detail` a one-line reason.
    """

    status: str
    exit_code: int | None
    stderr_tail: str
    duration: float
    detail: str = ""
    stdout_tail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class SandboxProgram:
    """A program in two parts, so the tests can run against pristine built-ins and modules.

    `candidate` (untrusted: prompt + completion) runs first as `__main__`; `tests` (trusted)
    then run in a fresh namespace holding the candidate's names, with every comparison checked
    to be between exact built-in value types; `entry_point` names the candidate's function.
    The program file the sandbox shows in tracebacks is `candidate + "\\n" + tests`.
    """

    candidate: str
    tests: str
    entry_point: str | None = None

    def __post_init__(self) -> None:
        for field_name in ("candidate", "tests"):
            if not isinstance(getattr(self, field_name), str):
                raise TypeError(
                    f"SandboxProgram.{field_name} is {type(getattr(self, field_name)).__name__}; "
                    "give the source code as a str"
                )
        if self.entry_point is not None and not self.entry_point.isidentifier():
            raise ValueError(
                f"SandboxProgram.entry_point={self.entry_point!r} is not a Python identifier"
            )

    @property
    def text(self) -> str:
        """The whole program as one file: what line numbers in details refer to."""
        return f"{self.candidate}\n{self.tests}"


# --------------------------------------------------------------------------------------------------
# Backends


_bwrap_cache: dict[str, tuple[list[str] | None, str]] = {}
_bwrap_lock = threading.Lock()


def bwrap_status() -> tuple[list[str] | None, str]:
    """(command prefix, "") when bubblewrap runs a trivial program here, else (None, reason).

    Probed once per process by running a real, empty program through the full command line, so
    a missing binary, disabled user namespaces or a Python outside the visible tree all show up.
    """
    with _bwrap_lock:
        if sys.executable not in _bwrap_cache:
            _bwrap_cache[sys.executable] = _probe_bwrap()
        return _bwrap_cache[sys.executable]


def _probe_bwrap() -> tuple[list[str] | None, str]:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None, "bubblewrap is not installed (apt-get install bubblewrap)"
    try:
        help_text = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        command = bwrap_command(bwrap, help_text)
        launcher = Launcher("bwrap", command, DEFAULT_MEMORY_MB, 0, None)
        result = run_one("pass\n", launcher, timeout=30.0)
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"bubblewrap could not be started: {error}"
    if result.status != "passed":
        return None, (
            f"bubblewrap cannot run a program here ({result.detail}); "
            "check that unprivileged user namespaces are enabled"
        )
    return command, ""


_warned_unsafe = False


def _warn_unsafe(reason: str) -> None:
    """Say loudly, once per process, that programs are not isolated from files and network."""
    global _warned_unsafe
    if _warned_unsafe:
        return
    _warned_unsafe = True
    warnings.warn(
        "\n" + "!" * 78 + "\n"
        f"UNSAFE SANDBOX: {reason}.\n"
        "Generated programs run with rlimits, timeouts and a process-group kill only: they CAN\n"
        "read and write your files and use the network. Install bubblewrap, or pass\n"
        "--sandbox bwrap to make this an error.\n" + "!" * 78,
        SandboxWarning,
        stacklevel=3,
    )


def resolve_backend(backend: str = "auto") -> str:
    """The backend that will actually run: `bwrap` or `none-unsafe`.

    `bwrap` raises SandboxUnavailableError when bubblewrap cannot run; `auto` falls back to
    `none-unsafe` and warns loudly; `none-unsafe` always warns.
    """
    if backend not in BACKENDS:
        raise ValueError(f"sandbox backend {backend!r} unknown; use one of {BACKENDS}")
    if backend == "none-unsafe":
        _warn_unsafe("the sandbox was disabled with --sandbox none-unsafe")
        return backend
    command, reason = bwrap_status()
    if command is not None:
        return "bwrap"
    if backend == "bwrap":
        raise SandboxUnavailableError(
            f"--sandbox bwrap was requested but {reason}. Install bubblewrap and enable user "
            "namespaces, or pass --sandbox auto to fall back to an unisolated run (not advised)."
        )
    _warn_unsafe(f"bubblewrap is unavailable: {reason}")
    return "none-unsafe"


class ProgramServers(Protocol):
    """Where `run_one` sends a program instead of a fresh sandbox: the fork-server pool
    (forkserver.ForkServerPool, which builds on this module and so is named here only by shape)."""

    def execute(
        self, spec: tuple[bytes, list[bytes]], timeout: float
    ) -> Observation | ExecResult: ...


@dataclass
class Launcher:
    """Everything needed to start programs on one backend, built once per `run_programs` call."""

    backend: str
    command: list[str]
    memory_mb: int
    max_processes: int  # RLIMIT_NPROC for the bootstrap; 0 = leave unset
    cgroups: Cgroups | None
    fork_servers: ProgramServers | None = None  # set by run_in_pool in the fork-server mode

    def argv(self, cgroups: list[Path], command: list[str] | None = None) -> list[str]:
        command = self.command if command is None else command
        if not cgroups:
            return command
        # A shell joins the cgroups, then execs the sandbox, so every descendant is counted.
        # Failing to join a required one is an error; a best-effort one is skipped.
        best_effort = self.cgroups.best_effort if self.cgroups else set()
        required = [str(c / "cgroup.procs") for c in cgroups if c.parent not in best_effort]
        optional = [str(c / "cgroup.procs") for c in cgroups if c.parent in best_effort]
        script = (
            'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; '
            'while [ "$1" != -- ]; do { echo $$ > "$1"; } 2>/dev/null; shift; done; shift; '
            'exec "$@"'
        )
        return ["/bin/sh", "-c", script, "hrm-sandbox", *required, "--", *optional, "--"] + [
            *command
        ]


def make_launcher(backend: str, memory_mb: int, workers: int) -> Launcher:
    cgroups = Cgroups(memory_mb, workers=workers)
    if not cgroups.parents:
        atexit.unregister(cgroups.close)
        cgroups = None
    if backend == "bwrap":
        command, _ = bwrap_status()
        assert command is not None  # resolve_backend checked
        # Inside a fresh user namespace RLIMIT_NPROC counts only this program's processes.
        return Launcher(backend, command, memory_mb, MAX_PROCESSES, cgroups)
    _remove_stale_workdirs()
    command = interpreter_command()
    # Without a user namespace RLIMIT_NPROC counts every process of our uid, and root ignores it.
    processes = 0 if os.geteuid() == 0 else _tasks_of_uid(os.getuid()) + MAX_PROCESSES * workers
    return Launcher(backend, command, memory_mb, processes, cgroups)


def _tasks_of_uid(uid: int) -> int:
    """Threads currently owned by `uid` (what RLIMIT_NPROC counts)."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue
    return count


def _encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


def program_spec(program: str | SandboxProgram) -> tuple[bytes, list[bytes]]:
    """The payload's mode line and parts for one program (see bootstrap.py)."""
    if isinstance(program, SandboxProgram):
        prepared = prepare_tests(program.tests, program.candidate.count("\n") + 2)
        if prepared is not None:
            code, modules = prepared
            # Loaded before the candidate so that their containers count as trusted values.
            modules += tuple(m for m in TRUSTED_CONTAINER_MODULES if m in program.candidate)
            entry = program.entry_point or "-"
            return f"split {entry}".encode(), [
                _encode(program.candidate),
                _encode(program.tests),
                code,
                " ".join(modules).encode(),
            ]
        program = program.text  # tests that do not parse fail as they would in one file
    return b"plain -", [_encode(program)]


def payload(
    spec: tuple[bytes, list[bytes]], key: bytes, sealed: bytes, launcher: Launcher, timeout: float
) -> bytes:
    """Everything the bootstrap reads from stdin: secret, limits, paths, mode line, parts."""
    limits = (
        launcher.memory_mb << 20,
        math.ceil(timeout) + 1,
        MAX_FILE_MB << 20,
        launcher.max_processes,
        # The fallback's programs die with this process (bwrap has --die-with-parent for that).
        0 if launcher.backend == "bwrap" else os.getpid(),
    )
    paths = "\0".join(site_packages())
    mode, parts = spec
    sizes = " ".join(str(len(part)) for part in parts)
    header = f"{key.hex()} {sealed.hex()}\n{' '.join(map(str, limits))}\n{paths}\n"
    return header.encode() + mode + b" " + sizes.encode() + b"\n" + b"".join(parts)


class _Tail:
    """Keeps the first byte and the last TAIL_BYTES of a stream, and counts the rest."""

    def __init__(self) -> None:
        self.first = b""
        self.buffer = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        if not self.first:
            self.first = data[:1]
        self.total += len(data)
        self.buffer += data
        if len(self.buffer) > 2 * TAIL_BYTES:
            del self.buffer[:-TAIL_BYTES]


class _Pipes:
    """A started sandbox's stdin, stdout and stderr (and exit), multiplexed with a cap on output."""

    def __init__(self, proc: subprocess.Popen, stdout: _Tail | None = None):
        self.proc = proc
        self.stdout, self.stderr = stdout if stdout is not None else _Tail(), _Tail()
        self.payload = memoryview(b"")
        self.readers = 2
        self.exited = self.overflow = False
        self.selector = selectors.DefaultSelector()
        self.selector.register(proc.stdout, selectors.EVENT_READ, self.stdout)
        self.selector.register(proc.stderr, selectors.EVENT_READ, self.stderr)
        try:
            self.pidfd: int | None = os.pidfd_open(proc.pid)
            self.selector.register(self.pidfd, selectors.EVENT_READ, "exit")
        except (AttributeError, OSError):  # old kernel or Python: poll the process instead
            self.pidfd = None

    def send(self, payload: bytes) -> None:
        """Queue the payload on stdin; it is written as the program reads, then stdin is closed."""
        self.payload = memoryview(payload)
        os.set_blocking(self.proc.stdin.fileno(), False)
        self.selector.register(self.proc.stdin, selectors.EVENT_WRITE)

    def pump(self, deadline: float, done: Callable[[], bool]) -> bool:
        """Move data until `done()` or the deadline; True when done in time."""
        while not done():
            now = time.monotonic()
            if now >= deadline:
                return False
            wait = deadline - now if self.pidfd is not None else min(0.01, deadline - now)
            for selected, _ in self.selector.select(wait):
                if selected.fileobj is self.proc.stdin:
                    try:
                        sent = os.write(self.proc.stdin.fileno(), self.payload[:65536])
                        self.payload = self.payload[sent:]
                    except BrokenPipeError:  # the program is gone before reading it all
                        self.payload = self.payload[:0]
                    if not self.payload:
                        self.selector.unregister(self.proc.stdin)
                        self.proc.stdin.close()
                elif selected.data == "exit":
                    self.selector.unregister(self.pidfd)
                    self.exited = True
                elif data := os.read(selected.fileobj.fileno(), 65536):
                    selected.data.add(data)
                    self.overflow |= selected.data.total > MAX_OUTPUT_BYTES
                else:
                    self.selector.unregister(selected.fileobj)
                    self.readers -= 1
            if self.pidfd is None and not self.exited:
                self.exited = self.proc.poll() is not None
        return True

    def close(self) -> None:
        self.selector.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if not stream.closed:
                stream.close()


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)


STARTUP_TIMEOUT_S = 60.0  # sandbox + interpreter start-up, before the program's clock starts
EXIT_GRACE_S = 1.0  # after the program ends, for its pipes to drain
TEARDOWN_TIMEOUT_S = 60.0  # for bwrap to exit once the program is gone


def _new_key_and_token() -> tuple[bytes, bytes]:
    """Fresh random bytes per program: the bootstrap gets key and key XOR token, never token."""
    return secrets.token_bytes(16), secrets.token_bytes(16)


@dataclass
class Observation:
    """What was seen of one sandboxed run, before it is turned into a verdict."""

    returncode: int
    stdout: _Tail
    stderr: _Tail
    token: bytes
    duration: float
    killed_for: str  # "timeout", "output", "stopped" or ""
    oom: bool


def execute(
    spec: tuple[bytes, list[bytes]],
    launcher: Launcher,
    timeout: float,
    running: threading.Semaphore | None = None,
    stdout: _Tail | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Observation | ExecResult:
    """Start a sandbox, then (holding one of `running`) feed it the program and watch it.

    The sandbox and interpreter start before a `running` slot is taken and the program's clock
    starts, so start-up and tear-down of one program overlap with other programs' execution.
    `stdout` may be a sink that parses output as it comes; `stop()` true ends the run early.
    Returns an ExecResult only when the sandbox could not even be started.
    """
    key, token = _new_key_and_token()
    sealed = bytes(a ^ b for a, b in zip(key, token))
    cgroups = launcher.cgroups.create() if launcher.cgroups else []
    prefix = f"{_WORKDIR_PREFIX}{os.getpid()}-"
    workdir = None if launcher.backend == "bwrap" else tempfile.mkdtemp(prefix=prefix)
    env = dict(SANDBOX_ENV, HOME=workdir or "/tmp", TMPDIR=workdir or "/tmp")
    try:
        proc = subprocess.Popen(
            launcher.argv(cgroups),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir or "/",  # the shell exports PWD: do not leak our cwd
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as error:
        Cgroups.remove(cgroups)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        return ExecResult("error", None, "", 0.0, f"could not start the sandbox: {error}")
    # The bootstrap's code first (it fits in the pipe buffer, so this never blocks); the
    # program follows once the bootstrap says it is up.
    with contextlib.suppress(OSError):
        os.write(proc.stdin.fileno(), BOOTSTRAP_CODE)
    pipes = _Pipes(proc, stdout)
    killed_for = ""
    try:
        ended = lambda: pipes.readers == 0 or pipes.exited  # noqa: E731
        started = pipes.pump(
            time.monotonic() + STARTUP_TIMEOUT_S, lambda: bool(pipes.stdout.first) or ended()
        )
        with running if running is not None else contextlib.nullcontext():
            start = time.monotonic()
            if started and pipes.stdout.first == STARTED:
                pipes.send(payload(spec, key, sealed, launcher, timeout))
                if not pipes.pump(start + timeout, lambda: ended() or pipes.overflow or stop()):
                    killed_for = "timeout"
                killed_for = killed_for or ("output" if pipes.overflow else "")
                killed_for = killed_for or ("stopped" if stop() and not pipes.exited else "")
            end = time.monotonic()
            if killed_for or not started:
                _kill_group(proc)
                Cgroups.kill(cgroups)
        # The program is done and another one already runs in the freed slot. What is still
        # buffered in the pipes is read; whatever still holds them (a daemon the program left
        # behind, in the fallback backend) is killed. bwrap itself may take a while to tear
        # its namespaces down on a loaded machine: that is waited for, not killed.
        if not pipes.pump(end + EXIT_GRACE_S, lambda: pipes.readers == 0):
            _kill_group(proc)
            Cgroups.kill(cgroups)
            pipes.pump(time.monotonic() + EXIT_GRACE_S, lambda: pipes.readers == 0)
        try:
            returncode = proc.wait(timeout=TEARDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            returncode = proc.wait()
        oom = Cgroups.out_of_memory(cgroups)
    finally:
        _kill_group(proc)
        pipes.close()
        Cgroups.kill(cgroups)
        Cgroups.remove(cgroups)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return Observation(
        returncode=128 + -returncode if returncode < 0 else returncode,
        stdout=pipes.stdout,
        stderr=pipes.stderr,
        token=token.hex().encode(),
        duration=end - start,
        killed_for=killed_for,
        oom=oom,
    )


def run_one(
    program: str | SandboxProgram,
    launcher: Launcher,
    timeout: float,
    running: threading.Semaphore | None = None,
) -> ExecResult:
    """Run one program in a fresh sandbox (or a fresh child of a fork server) and judge it."""
    if launcher.fork_servers is not None:
        seen = launcher.fork_servers.execute(program_spec(program), timeout)
    else:
        seen = execute(program_spec(program), launcher, timeout, running)
    if isinstance(seen, ExecResult):
        return seen
    text = program.text if isinstance(program, SandboxProgram) else program
    return judge(text, seen, timeout)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_PROGRAM_LINE = re.compile(r'File "[^"]*program\.py", line (\d+)')


def _failure_detail(program: str, last_error: str, stderr: str, returncode: int) -> str:
    """`AssertionError at line 12: assert f(3) == 4`: the error and the program line raising it."""
    detail = last_error or f"exit status {returncode}"
    lines = _PROGRAM_LINE.findall(stderr)
    if lines:
        number = int(lines[-1])
        source = program.splitlines()
        if 1 <= number <= len(source):
            detail += f" at line {number}: {source[number - 1].strip()[:200]}"
    return detail


def judge(program: str, seen: Observation, timeout: float) -> ExecResult:
    """Turn what was observed into a verdict; a pass needs exit 0 and the token as last line."""
    returncode, stdout, stderr, token = seen.returncode, seen.stdout, seen.stderr, seen.token
    killed_for, duration = seen.killed_for, seen.duration
    err_text = bytes(stderr.buffer).decode("utf-8", errors="replace")
    err_lines = err_text.splitlines()[-STDERR_TAIL_LINES:]
    stderr_tail = "\n".join(err_lines)
    out = bytes(stdout.buffer)
    token_line = b"\n" + token + b"\n"
    has_token = out.endswith(token_line)
    if has_token:
        out = out[: -len(token_line)]
    if stdout.total <= len(stdout.buffer):
        out = out.removeprefix(STARTED)
    stdout_tail = out.decode("utf-8", errors="replace")[-TAIL_BYTES:]
    last_error = next((line.strip() for line in reversed(err_lines) if line.strip()), "")

    def result(status: str, detail: str, code: int | None = returncode) -> ExecResult:
        return ExecResult(status, code, stderr_tail, duration, detail, stdout_tail)

    if killed_for == "timeout":
        return result("timeout", f"timed out after {timeout:g} s (wall clock)", None)
    if killed_for == "output":
        return result("failed", f"killed: wrote more than {MAX_OUTPUT_BYTES} bytes to a stream")
    if stdout.first != STARTED:
        reason = last_error or f"exit status {returncode}"
        return result("error", f"the sandbox did not start: {reason}", None)
    if returncode == 0 and has_token:
        return result("passed", "")
    if returncode == 0:
        return result("failed", "exited with status 0 before the end of the program")
    if returncode > 128:
        number = returncode - 128
        if number == signal.SIGXCPU:
            return result("timeout", f"CPU time limit ({math.ceil(timeout) + 1} s) exceeded")
        if seen.oom:
            return result("failed", "killed: out of memory (memory cgroup limit)")
        return result("failed", f"killed by {_signal_name(number)}")
    return result("failed", _failure_detail(program, last_error, err_text, returncode))


def process_limit_in_force() -> bool:
    """Whether a fork bomb is stopped by a process limit (not only by the timeout).

    RLIMIT_NPROC works for any uid but root; as root only a pids cgroup limits processes.
    """
    if os.geteuid() != 0:
        return True
    cgroups = Cgroups(DEFAULT_MEMORY_MB)
    try:
        return cgroups.limits_processes
    finally:
        cgroups.close()
        atexit.unregister(cgroups.close)
