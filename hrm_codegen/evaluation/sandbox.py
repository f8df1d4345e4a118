"""Run untrusted Python programs and judge whether they ran to the end.

Every generated program is treated as hostile. Each one runs in its own fresh interpreter
(`python -I -S`), with the `bwrap` backend inside bubblewrap: the root file system read-only,
$HOME and /run hidden, a private size-limited tmpfs as cwd, new user, PID, network, IPC and UTS
namespaces, no capabilities, `--die-with-parent`. For both backends: rlimits (address space,
CPU seconds, file size, processes), a pids, memory and cpu cgroup per program when this process
may create them (root; the cpu one shares the cores fairly between programs), a wall-clock
timeout that kills the whole process group, stdin closed, a fixed minimal environment, and
stdout/stderr read with a cap.

How a pass is recognised. The program text never contains the verdict secret: a small bootstrap
(`_BOOTSTRAP`, the only code on the command line) reads a per-program random key and sealed token,
the limits and the program from a pipe on stdin, replaces stdin by /dev/null, and `exec`s the
program as `__main__`. Only when `exec` returns (every statement, tests included, ran without an
exception) in the process that started it does it unseal the token and write it as the last
stdout line, then `os._exit(0)`. A pass needs exit status 0 *and* that token, so `exit(0)`,
`os._exit(0)`, `raise SystemExit`, `atexit` hooks, a killed parent, a replaced `sys.stdout` or a
forked child that reaches the end while its parent exits 0 can never fake one; the token is not
in the program file, argv, /proc/self/cmdline, the environment or stdin.

What this does not cover. A program written against this evaluator can still forge a pass from
inside the interpreter (walking frames to the bootstrap's locals and unsealing the token, or
`sys.settrace` jumps over failing asserts), as it can game tests with an object whose `__eq__`
is always true, by reading the tests from its own source, or by trying answers in forked copies
until one gets through them: the verdict means "the tests ran to the end", not "the tests are
honest". The rest of the file system stays readable, and Unix sockets on it outside /run, /tmp,
$HOME and /dev stay connectable. A program can stop the sandbox's own init (ptrace) and so turn
its pass into a timeout, never the reverse. Without a pids cgroup, root's processes are not
limited by RLIMIT_NPROC, so a fork bomb then lives until its timeout (a warning says so).

Backends: `bwrap` (fails if bubblewrap cannot run), `none-unsafe` (rlimits, timeout,
process-group kill and a parent-death signal only: files and network are NOT isolated, and as root
a program may raise its own rlimits), `auto` (bwrap when it runs, else `none-unsafe` with a loud
warning, once).

Evaluators killed outright (SIGKILL, OOM) take their programs with them (`--die-with-parent`, or
PR_SET_PDEATHSIG in the fallback); the cgroups they leave behind are removed by the next run.

Throughput: `workers` programs run at a time, and up to twice as many more start up or tear down
their sandbox meanwhile, so the ~30 ms of sandbox and interpreter start-up overlaps with work.
"""

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
import site
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

# HumanEval's harness uses 3 s per program; evalplus allows 4x each reference's own run time. The
# slowest reference solution (Mbpp/123) took 2.4-4.7 s on a busy 2-core VM, a hair under a 5 s
# limit; 10 s keeps every reference passing on a loaded machine and still ends an infinite loop
# quickly. The clock starts once the interpreter is up, not at queueing.
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 4096  # address space per process (RLIMIT_AS) and per program (memory cgroup)
MAX_PROCESSES = 64  # processes + threads per program (pids cgroup / RLIMIT_NPROC in the userns)
MAX_FILE_MB = 64  # largest file a program may write (RLIMIT_FSIZE)
TMPFS_MB = 256  # size of the private writable /tmp (bwrap backend)
SHM_MB = 64  # size of the private /dev/shm (bwrap backend; multiprocessing needs it)
# Per stream; a program that writes more is killed. Only a tail is kept in memory whatever the
# size, so the cap is about flooding (a reader thread busy for the whole timeout), and is set
# far above what a print loop can produce in a timeout: an honest chatty program still passes.
MAX_OUTPUT_BYTES = 128 << 20
TAIL_BYTES = 4096  # how much of the end of stdout / stderr is kept
STDERR_TAIL_LINES = 20
BACKENDS = ("auto", "bwrap", "none-unsafe")
STATUSES = ("passed", "failed", "timeout", "error")

_STARTED = b"\x01"  # the bootstrap's first stdout byte: the sandbox came up and Python started
_SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "HOME": "/tmp",
    "TMPDIR": "/tmp",
    # glibc reserves 64 MiB of address space per thread arena, so under RLIMIT_AS a program could
    # start only a dozen threads; two arenas cap that cost whatever the thread count.
    "MALLOC_ARENA_MAX": "2",
    # numpy's BLAS would start a thread per core at import: past the process limit on a big
    # machine, and pointless when every core already runs a program.
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# Runs as `python -I -S -c _BOOTSTRAP` inside the sandbox. Holds no secret itself: the key, the
# sealed token, the limits, extra sys.path entries and the program arrive on stdin, which is then
# replaced by /dev/null. The token exists in clear only after `exec` has returned.
_BOOTSTRAP = r"""
import os, sys
def _hrm_sandbox_main():
    import builtins, resource
    os.write(1, b"\x01")
    chunks = []
    while True:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    header, limits, paths, source = b"".join(chunks).split(b"\n", 3)
    del chunks
    key, sealed = (bytes.fromhex(part.decode()) for part in header.split())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    out = os.dup(1)
    address_space, cpu_s, file_size, processes, watcher = (int(v) for v in limits.split())
    if watcher:  # fallback backend: no --die-with-parent, so ask the kernel for the same
        try:
            import ctypes
            ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL (Linux only)
        except (ImportError, AttributeError, OSError):
            pass
        if os.getppid() != watcher:
            os._exit(125)
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if processes > 0:
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    sys.path.extend(p.decode() for p in paths.split(b"\0") if p)
    name = os.path.join(os.getcwd(), "program.py")
    with open(name, "wb") as f:
        f.write(source)
    code = compile(source, name, "exec")
    del source
    builtins.exit = builtins.quit = sys.exit
    main = type(sys)("__main__")
    main.__file__ = name
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.argv = [name]
    # Bound now, as the program may replace os.getpid & co. Only the process that started the
    # program may certify that it ran to the end: a forked copy that gets there (having taken
    # another branch) leaves quietly, so it can neither fake a pass nor write after the token.
    pid, getpid, write, leave = os.getpid(), os.getpid, os.write, os._exit
    set_blocking = os.set_blocking
    exec(code, main.__dict__)
    if getpid() != pid:
        leave(0)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            pass
    token = bytes(a ^ b for a, b in zip(key, sealed)).hex()
    set_blocking(out, True)
    write(out, b"\n" + token.encode() + b"\n")
    leave(0)
_hrm_sandbox_main()
"""


class SandboxUnavailableError(RuntimeError):
    """The requested sandbox backend cannot run on this machine."""


class SandboxWarning(RuntimeWarning):
    """Programs run with weaker isolation than asked for."""


@dataclass(frozen=True)
class ExecResult:
    """What happened to one program.

    `status`: passed (exit 0 and the completion token), failed (the program ran and did not reach
    its end: exception, early exit, crash, memory or output limit), timeout (wall clock or CPU
    limit), error (the evaluator could not run it: sandbox setup failure; never the program's
    fault). `exit_code` is the interpreter's status (128 + N when killed by signal N; None on
    timeout or error), `detail` a one-line reason.
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


# --------------------------------------------------------------------------------------------------
# Backends


def _python_dirs() -> list[str]:
    """Folders the interpreter needs: its own, the standard library and site-packages."""
    candidates = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        os.path.dirname(sys.executable),
        *_site_packages(),
    ]
    dirs: list[str] = []
    for path in sorted({os.path.realpath(p) for p in candidates if os.path.isdir(p)}, key=len):
        if not any(path == d or path.startswith(d + os.sep) for d in dirs):
            dirs.append(path)
    return dirs


def _site_packages() -> list[str]:
    """Site-packages of this interpreter; -S skips `site`, so the bootstrap adds them itself."""
    try:
        paths = site.getsitepackages()
    except AttributeError:  # some virtualenv versions ship an old site.py
        paths = [p for p in sys.path if p.endswith("site-packages")]
    return [p for p in paths if os.path.isdir(p)]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _bwrap_command(bwrap: str, help_text: str) -> list[str]:
    """The bubblewrap command line that wraps every program (everything but the payload).

    Writable: only /tmp (the cwd) and /dev/shm, both private tmpfs mounts, size-limited where
    bwrap supports `--size` (0.8+). $HOME and /run are replaced by empty read-only tmpfs mounts,
    so dotfiles, credentials and host sockets are out of sight; the interpreter's own folders
    are bound back read-only.
    """
    flags = set(help_text.split())
    sized = "--size" in flags

    def tmpfs(path: str, megabytes: int) -> list[str]:
        return (["--size", str(megabytes << 20)] if sized else []) + ["--tmpfs", path]

    home = os.path.realpath(os.path.expanduser("~"))
    hide_home = os.path.isdir(home) and home != "/" and not _under(home, "/tmp")
    command = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    command += tmpfs("/dev/shm", SHM_MB) + ["--remount-ro", "/dev"] + tmpfs("/tmp", TMPFS_MB)
    # Unix sockets in /run (docker, dbus, ...) stay connectable on a read-only mount: hide them.
    if os.path.isdir("/run"):
        command += tmpfs("/run", 1) + ["--remount-ro", "/run"]
    if hide_home:
        command += tmpfs(home, 1)
    # The interpreter may live under a hidden folder: $HOME (pyenv), /tmp (a throwaway venv).
    for path in _python_dirs():
        if (hide_home and _under(path, home)) or _under(path, "/tmp") or _under(path, "/run"):
            command += ["--ro-bind", path, path]
    if hide_home:
        command += ["--remount-ro", home]
    command += ["--chdir", "/tmp", "--unshare-user", "--unshare-pid", "--unshare-net"]
    command += ["--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if "--disable-userns" in flags:
        command += ["--disable-userns"]
    command += ["--die-with-parent", "--new-session"]
    if os.geteuid() == 0:  # as root bwrap keeps capabilities inside the userns unless told
        command += ["--cap-drop", "ALL"]
    command += ["--clearenv"]
    for name, value in _SANDBOX_ENV.items():
        command += ["--setenv", name, value]
    return command + ["--", sys.executable, "-I", "-S", "-c", _BOOTSTRAP]


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
        command = _bwrap_command(bwrap, help_text)
        launcher = _Launcher("bwrap", command, DEFAULT_MEMORY_MB, 0, None)
        result = _run_one("pass\n", launcher, timeout=30.0)
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


# --------------------------------------------------------------------------------------------------
# Per-program cgroups (pids, memory, cpu), when this process may create them


_CGROUP_PREFIX = "hrm-codegen-sandbox-"  # then the evaluator's pid and a random suffix
_WORKDIR_PREFIX = "hrm-sandbox-"  # fallback backend's temp folders: the same


def _owner_is_gone(name: str, prefix: str) -> bool:
    """Whether the evaluator whose pid follows `prefix` in `name` has exited."""
    try:
        os.kill(int(name[len(prefix) :].split("-")[0]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, OSError):  # not our naming, or alive under another user
        pass
    return False


def _remove_stale_workdirs() -> None:
    """Temp folders of fallback programs whose evaluator was killed before it could clean up."""
    for path in Path(tempfile.gettempdir()).glob(f"{_WORKDIR_PREFIX}*"):
        if _owner_is_gone(path.name, _WORKDIR_PREFIX):
            shutil.rmtree(path, ignore_errors=True)


# Limit files that prove a controller is usable in a cgroup folder, per hierarchy kind.
_LIMIT_FILES = {
    "pids": ("pids.max",),
    "memory": ("memory.limit_in_bytes",),
    "cpu": ("cpu.shares",),
    "v2": ("pids.max",),
}
_KIND_OF_LIMIT_FILE = {"pids.max": "pids", "memory.limit_in_bytes": "memory", "cpu.shares": "cpu"}


def _cgroup_dirs() -> list[tuple[Path, tuple[str, ...]]]:
    """(this process's cgroup folder, limit files) for each pids, memory, cpu or v2 hierarchy."""
    mounts: dict[str, tuple[str, str]] = {}  # hierarchy kind -> (mount root, mount point)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, (fstype, _source, options) = left.split(), right.split()[:3]
                kinds = ["v2"] if fstype == "cgroup2" else options.split(",")
                for kind in kinds if fstype in ("cgroup", "cgroup2") else []:
                    mounts.setdefault(kind, (fields[3], fields[4]))
        with open("/proc/self/cgroup") as f:
            membership = [line.rstrip("\n").split(":", 2) for line in f]
    except (OSError, ValueError):
        return []
    found = []
    for _, controllers, path in membership:
        for kind in controllers.split(",") if controllers else ["v2"]:
            if kind not in _LIMIT_FILES or kind not in mounts:
                continue
            root, mount_point = mounts[kind]
            relative = path[len(root) :] if root != "/" and path.startswith(root) else path
            found.append((Path(mount_point + relative.rstrip("/")), _LIMIT_FILES[kind]))
    return found


class _Cgroups:
    """One child cgroup per program under a parent made for this run; cleaned up on close.

    The pids limit is what stops a fork bomb when we run as root (RLIMIT_NPROC is not enforced
    for uid 0), and the memory limit bounds a program's whole process tree, not each process.
    A cpu cgroup per program (equal weights, no limit) shares the cores between programs, not
    between processes: without it a program whose children each start a session (and so a
    scheduler autogroup) of their own takes the cores from the honest programs next to it and
    makes them time out. Joining it is best effort; pids and memory are required. The parent
    weighs as much as `workers` plain processes against the rest of the machine, as the
    programs' sessions did before they were grouped.
    """

    def __init__(self, memory_mb: int, max_processes: int = MAX_PROCESSES, workers: int = 1):
        self.limits = {
            "pids.max": str(max_processes),
            "memory.limit_in_bytes": str(memory_mb << 20),
            "memory.memsw.limit_in_bytes": str(memory_mb << 20),
            "memory.max": str(memory_mb << 20),
            "memory.swap.max": "0",
        }
        self.parents: list[Path] = []
        self.kinds: set[str] = set()
        self.best_effort: set[Path] = set()  # parents whose children a program may fail to join
        self._count = 0
        self._lock = threading.Lock()
        self._made: list[Path] = []
        for folder, limit_files in _cgroup_dirs():
            self._remove_stale(folder)
            parent = folder / f"{_CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
            try:
                parent.mkdir()
                self._made.append(parent)
                if not all((parent / name).exists() for name in limit_files):
                    # cgroup v2: controllers reach our children only if enabled in the parent;
                    # one at a time, as a write naming an unavailable controller fails whole.
                    for controller in ("pids", "memory", "cpu"):
                        with contextlib.suppress(OSError):
                            (parent / "cgroup.subtree_control").write_text(f"+{controller}")
                probe = parent / "probe"
                probe.mkdir()
                usable = all((probe / name).exists() for name in limit_files)
                probe.rmdir()
            except OSError:
                continue
            if usable:
                self.parents.append(parent)
                weights = {"cpu.shares": 1024 * workers, "cpu.weight": min(10000, 100 * workers)}
                for name, weight in weights.items():
                    with contextlib.suppress(OSError):
                        if (parent / name).exists():
                            (parent / name).write_text(str(min(weight, 262144)))
                kind = _KIND_OF_LIMIT_FILE[limit_files[0]]
                self.kinds.add(kind)
                if kind == "cpu":
                    self.best_effort.add(parent)
        atexit.register(self.close)

    @classmethod
    def _remove_stale(cls, folder: Path) -> None:
        """Remove cgroups left by evaluators that were killed (atexit never ran for them)."""
        try:
            stale = list(folder.glob(f"{_CGROUP_PREFIX}*"))
        except OSError:
            return
        for parent in stale:
            if not _owner_is_gone(parent.name, _CGROUP_PREFIX):
                continue
            with contextlib.suppress(OSError):
                children = [child for child in parent.iterdir() if child.is_dir()]
                cls.kill(children)
                cls.remove([*children, parent])

    @property
    def limits_processes(self) -> bool:
        return "pids" in self.kinds

    def create(self) -> list[Path]:
        """Fresh child cgroups for one program, limits written; [] when none could be made."""
        with self._lock:
            self._count += 1
            name = f"p{self._count}"
        children = []
        for parent in self.parents:
            child = parent / name
            try:
                child.mkdir()
                for limit_file, value in self.limits.items():
                    if (child / limit_file).exists():
                        (child / limit_file).write_text(value)
            except OSError:
                self.remove([child])
                continue
            children.append(child)
        return children

    @staticmethod
    def kill(children: list[Path]) -> None:
        """SIGKILL every process still in the program's cgroups (escaped daemons included)."""
        for child in children:
            kill_file = child / "cgroup.kill"
            for _ in range(50):
                try:
                    if kill_file.exists():
                        kill_file.write_text("1")
                    pids = [int(p) for p in (child / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.002)

    @staticmethod
    def out_of_memory(children: list[Path]) -> bool:
        """Whether the kernel OOM-killed something in the program's memory cgroup."""
        for child in children:
            for events in ("memory.events", "memory.oom_control"):
                try:
                    for line in (child / events).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value) > 0:
                            return True
                except (OSError, ValueError):
                    continue
        return False

    @staticmethod
    def remove(children: list[Path]) -> None:
        for child in children:
            for _ in range(100):  # processes may take a moment to leave after SIGKILL
                try:
                    child.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.005)

    def close(self) -> None:
        for parent in self._made:
            if parent.exists():
                self.remove([p for p in parent.iterdir() if p.is_dir()])
                self.remove([parent])
        self.parents, self._made = [], []


# --------------------------------------------------------------------------------------------------
# Running one program


@dataclass
class _Launcher:
    """Everything needed to start programs on one backend, built once per `run_programs` call."""

    backend: str
    command: list[str]
    memory_mb: int
    max_processes: int  # RLIMIT_NPROC for the bootstrap; 0 = leave unset
    cgroups: _Cgroups | None

    def argv(self, cgroups: list[Path]) -> list[str]:
        if not cgroups:
            return self.command
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
            *self.command
        ]


def _make_launcher(backend: str, memory_mb: int, workers: int) -> _Launcher:
    cgroups = _Cgroups(memory_mb, workers=workers)
    if not cgroups.parents:
        atexit.unregister(cgroups.close)
        cgroups = None
    if backend == "bwrap":
        command, _ = bwrap_status()
        assert command is not None  # resolve_backend checked
        # Inside a fresh user namespace RLIMIT_NPROC counts only this program's processes.
        return _Launcher(backend, command, memory_mb, MAX_PROCESSES, cgroups)
    _remove_stale_workdirs()
    command = [sys.executable, "-I", "-S", "-c", _BOOTSTRAP]
    # Without a user namespace RLIMIT_NPROC counts every process of our uid, and root ignores it.
    processes = 0 if os.geteuid() == 0 else _tasks_of_uid(os.getuid()) + MAX_PROCESSES * workers
    return _Launcher(backend, command, memory_mb, processes, cgroups)


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


def _payload(program: str, key: bytes, sealed: bytes, launcher: _Launcher, timeout: float) -> bytes:
    limits = (
        launcher.memory_mb << 20,
        math.ceil(timeout) + 1,
        MAX_FILE_MB << 20,
        launcher.max_processes,
        # The fallback's programs die with this process (bwrap has --die-with-parent for that).
        0 if launcher.backend == "bwrap" else os.getpid(),
    )
    paths = "\0".join(_site_packages())
    header = f"{key.hex()} {sealed.hex()}\n{' '.join(map(str, limits))}\n{paths}\n"
    return header.encode() + program.encode("utf-8", errors="surrogatepass")


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

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.stdout, self.stderr = _Tail(), _Tail()
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


def _run_one(
    program: str,
    launcher: _Launcher,
    timeout: float,
    running: threading.Semaphore | None = None,
) -> ExecResult:
    """Start a sandbox, then (holding one of `running`) feed it the program and judge it.

    The sandbox and interpreter start before a `running` slot is taken and the program's clock
    starts, so start-up and tear-down of one program overlap with other programs' execution.
    """
    key, token = _new_key_and_token()
    sealed = bytes(a ^ b for a, b in zip(key, token))
    cgroups = launcher.cgroups.create() if launcher.cgroups else []
    prefix = f"{_WORKDIR_PREFIX}{os.getpid()}-"
    workdir = None if launcher.backend == "bwrap" else tempfile.mkdtemp(prefix=prefix)
    env = dict(_SANDBOX_ENV, HOME=workdir or "/tmp", TMPDIR=workdir or "/tmp")
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
        _Cgroups.remove(cgroups)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        return ExecResult("error", None, "", 0.0, f"could not start the sandbox: {error}")
    pipes = _Pipes(proc)
    killed_for = ""  # "timeout" or "output" when we had to stop the program
    try:
        ended = lambda: pipes.readers == 0 or pipes.exited  # noqa: E731
        started = pipes.pump(
            time.monotonic() + STARTUP_TIMEOUT_S, lambda: bool(pipes.stdout.first) or ended()
        )
        with running if running is not None else contextlib.nullcontext():
            start = time.monotonic()
            if started and pipes.stdout.first == _STARTED:
                pipes.send(_payload(program, key, sealed, launcher, timeout))
                if not pipes.pump(start + timeout, lambda: ended() or pipes.overflow):
                    killed_for = "timeout"
                killed_for = killed_for or ("output" if pipes.overflow else "")
            end = time.monotonic()
            if killed_for or not started:
                _kill_group(proc)
                _Cgroups.kill(cgroups)
        # The program is done and another one already runs in the freed slot. What is still
        # buffered in the pipes is read; whatever still holds them (a daemon the program left
        # behind, in the fallback backend) is killed. bwrap itself may take a while to tear
        # its namespaces down on a loaded machine: that is waited for, not killed.
        if not pipes.pump(end + EXIT_GRACE_S, lambda: pipes.readers == 0):
            _kill_group(proc)
            _Cgroups.kill(cgroups)
            pipes.pump(time.monotonic() + EXIT_GRACE_S, lambda: pipes.readers == 0)
        try:
            returncode = proc.wait(timeout=TEARDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            returncode = proc.wait()
        oom = _Cgroups.out_of_memory(cgroups)
    finally:
        _kill_group(proc)
        pipes.close()
        _Cgroups.kill(cgroups)
        _Cgroups.remove(cgroups)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return _judge(
        program=program,
        returncode=128 + -returncode if returncode < 0 else returncode,
        stdout=pipes.stdout,
        stderr=pipes.stderr,
        token=token.hex().encode(),
        duration=end - start,
        timeout=timeout,
        killed_for=killed_for,
        oom=oom,
    )


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


def _judge(
    *,
    program: str,
    returncode: int,
    stdout: _Tail,
    stderr: _Tail,
    token: bytes,
    duration: float,
    timeout: float,
    killed_for: str,
    oom: bool,
) -> ExecResult:
    """Turn what was observed into a verdict; a pass needs exit 0 and the token as last line."""
    err_text = bytes(stderr.buffer).decode("utf-8", errors="replace")
    err_lines = err_text.splitlines()[-STDERR_TAIL_LINES:]
    stderr_tail = "\n".join(err_lines)
    out = bytes(stdout.buffer)
    token_line = b"\n" + token + b"\n"
    has_token = out.endswith(token_line)
    if has_token:
        out = out[: -len(token_line)]
    if stdout.total <= len(stdout.buffer):
        out = out.removeprefix(_STARTED)
    stdout_tail = out.decode("utf-8", errors="replace")[-TAIL_BYTES:]
    last_error = next((line.strip() for line in reversed(err_lines) if line.strip()), "")

    def result(status: str, detail: str, code: int | None = returncode) -> ExecResult:
        return ExecResult(status, code, stderr_tail, duration, detail, stdout_tail)

    if killed_for == "timeout":
        return result("timeout", f"timed out after {timeout:g} s (wall clock)", None)
    if killed_for == "output":
        return result("failed", f"killed: wrote more than {MAX_OUTPUT_BYTES} bytes to a stream")
    if stdout.first != _STARTED:
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
        if oom:
            return result("failed", "killed: out of memory (memory cgroup limit)")
        return result("failed", f"killed by {_signal_name(number)}")
    return result("failed", _failure_detail(program, last_error, err_text, returncode))


# --------------------------------------------------------------------------------------------------
# Public entry points


def process_limit_in_force() -> bool:
    """Whether a fork bomb is stopped by a process limit (not only by the timeout).

    RLIMIT_NPROC works for any uid but root; as root only a pids cgroup limits processes.
    """
    if os.geteuid() != 0:
        return True
    cgroups = _Cgroups(DEFAULT_MEMORY_MB)
    try:
        return cgroups.limits_processes
    finally:
        cgroups.close()
        atexit.unregister(cgroups.close)


def default_workers() -> int:
    """One program per available core."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_programs(
    programs: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    workers: int | None = None,
    backend: str = "auto",
    *,
    on_result: Callable[[int, ExecResult], None] | None = None,
    progress: bool = True,
    desc: str = "executing",
) -> list[ExecResult]:
    """Run each program in its own sandboxed interpreter, `workers` at a time.

    Returns one ExecResult per program, in order. `on_result(index, result)` is called in the
    calling thread as each program finishes, so callers can persist results as they come.
    `timeout` is the wall-clock time of one program (from its start, not its queueing).
    """
    if not isinstance(programs, Sequence) or isinstance(programs, str):
        raise TypeError("programs must be a sequence of program strings, not a single string")
    for index, program in enumerate(programs):
        if not isinstance(program, str):
            raise TypeError(f"programs[{index}] is {type(program).__name__}, expected str")
    if not timeout > 0:
        raise ValueError(f"timeout={timeout}: give the wall-clock limit in seconds, > 0")
    if not isinstance(memory_mb, int) or memory_mb < 64:
        raise ValueError(f"memory_mb={memory_mb}: give at least 64 MiB (default 4096)")
    workers = default_workers() if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers}: give a positive number of parallel programs")
    backend = resolve_backend(backend)
    if not programs:
        return []
    launcher = _make_launcher(backend, memory_mb, workers)
    if os.geteuid() == 0 and not (launcher.cgroups and launcher.cgroups.limits_processes):
        warnings.warn(
            "running as root without a writable pids cgroup: RLIMIT_NPROC does not apply to "
            "root, so a fork bomb is only stopped by the timeout",
            SandboxWarning,
            stacklevel=2,
        )
    results: list[ExecResult | None] = [None] * len(programs)
    # While `workers` programs run, up to 2 x workers others start their sandbox or tear it down
    # (mostly waiting on the kernel): start-up latency hides behind other programs' execution.
    running = threading.BoundedSemaphore(workers)
    pool = ThreadPoolExecutor(max_workers=3 * workers, thread_name_prefix="sandbox")
    bar = tqdm(total=len(programs), desc=desc, unit="prog", disable=not progress)
    try:
        futures = {
            pool.submit(_run_one, program, launcher, timeout, running): index
            for index, program in enumerate(programs)
        }
        for future in as_completed(futures):
            index = futures[future]
            try:
                result = future.result()
            except Exception as error:  # an evaluator bug must not lose the other results
                result = ExecResult("error", None, "", 0.0, f"evaluator error: {error!r}")
            results[index] = result
            if on_result is not None:
                on_result(index, result)
            bar.update(1)
    finally:
        # On Ctrl-C or a failing callback, programs not started yet are dropped; running ones
        # end within their timeout.
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        if launcher.cgroups is not None:
            launcher.cgroups.close()
            atexit.unregister(launcher.cgroups.close)
    return [r for r in results if r is not None]


def run_program(
    program: str,
    timeout: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    backend: str = "auto",
) -> ExecResult:
    """One program; see `run_programs`."""
    return run_programs([program], timeout, memory_mb, 1, backend, progress=False)[0]
