"""The fork server: runs inside one long-lived bubblewrap sandbox, forks one child per program.

Never imported by the evaluator (its compiled code is sent on the sandbox's stdin, a Unix
socket, like the bootstrap's). It never runs untrusted code itself: it is the sandbox's pid 1, so
signals from inside cannot kill it, and non-dumpable, so no child can ptrace it or read its /proc
files, and it holds no secret (each child gets its key and
sealed token on its own stdin pipe from the evaluator, as in the per-program mode).

Protocol on the socket: the evaluator sends the bootstrap's code once (8-byte length, then the
marshalled code object); the server writes b"\\x01" on its stdout when ready. Then per program
one message `r` carrying three file descriptors (the child's stdin, stdout, stderr pipes); the
server forks a child that takes them as 0, 1, 2 and runs the bootstrap as a fresh interpreter
would, then answers `<exit code, 128+signal when killed> <clean, or what is left>\\n`
once the child is gone, every other process in the sandbox killed, /tmp and /dev/shm wiped,
SysV IPC objects removed and its own rlimits, affinity and nice value checked. Not clean: the
server exits after answering, and the evaluator starts a fresh sandbox. Stdlib only.
"""

# ruff: noqa: SIM105  (contextlib is not imported here: every import costs start-up time)
import os
import sys

_WIPED = ("/tmp", "/dev/shm")


def _hrm_fork_server() -> None:
    import ctypes
    import marshal
    import resource
    import signal
    import socket
    import time

    ctl = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    size = int.from_bytes(_read_exactly(ctl, 8), "big")
    bootstrap = {"__name__": "hrm_sandbox_bootstrap", "__builtins__": __builtins__}
    exec(marshal.loads(_read_exactly(ctl, size)), bootstrap)
    run_program = bootstrap["_hrm_sandbox_main"]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE 0: no ptrace, no /proc/<pid>/mem
        os._exit(126)
    # Once here rather than in every child: each forked program inherits the filter.
    bootstrap["_HRM_KEYRINGS_DENIED"] = bootstrap["_hrm_deny_keyrings"]()
    # What the bootstrap imports anyway, and what most benchmark programs import first (typing
    # brings re, collections, functools...), loaded once here instead of once per program. A
    # module loaded before the candidate is one the tests' guard records and puts back.
    # `array`: socket.recv_fds imports it at its first call, below.
    for module in ("builtins", "resource", "marshal", "_functools", "_operator", "typing", "math"):
        __import__(module)
    __import__("array")
    # Each program is a fork of this process, and every page of this process that a child
    # writes to (taking a reference to an object writes to it) is copied for it: a page fault
    # each, whose cost depends on the machine (a few us here, far more under nested
    # virtualisation). So the child writes to as few as it can: the tests' guard records
    # the loaded modules here once (_HRM_BASE) instead of in every child, the collector
    # never walks this process's objects in a child (frozen: out of its generations), and
    # no 2 MiB transparent huge page is ever shared with a child (PR_SET_THP_DISABLE,
    # inherited), so copy-on-write copies 4 KiB wherever the kernel's THP setting says.
    # The first compile() of a process builds the compiler's AST types (~1 ms, ~250 pages):
    # done once here, every child's compile of its program finds them built.
    compile("pass\n", "program.py", "exec")
    bootstrap["_HRM_BASE"] = bootstrap["_hrm_record_base"]()
    __import__("gc").freeze()
    libc.prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE; an older kernel may refuse: no matter
    me = os.getpid()  # 1: the sandbox's init (bwrap --as-pid-1), so it reaps every orphan
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the one signal Python handles: not for init
    limits = {
        number: resource.getrlimit(number)
        for name, number in vars(resource).items()
        if name.startswith("RLIMIT_")
    }
    affinity = os.sched_getaffinity(0)
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    modes = {path: os.stat(path).st_mode for path in _WIPED}
    os.write(1, b"\x01")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(ctl, 16, 3)
        except OSError:
            os._exit(0)
        if not message or len(fds) != 3:
            os._exit(0)
        child = os.fork()
        if child == 0:
            try:
                os.setpgid(0, 0)
                libc.prctl(4, 1, 0, 0, 0)  # the program is dumpable again, as a fresh process
                for target, fd in enumerate(fds):
                    os.dup2(fd, target)
                ctl.detach()
                os.closerange(3, 1 << 16)
                # POSIX message queues live in the IPC namespace all programs share, and
                # cannot be listed without mounting mqueue: programs may not create any.
                resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
                os.chdir("/tmp")
                signal.signal(signal.SIGINT, signal.default_int_handler)
            except BaseException:
                os._exit(125)
            # From here on the child is the program's interpreter: an exception leaves through
            # the interpreter's top level (traceback, atexit, exit status 1) as it would in a
            # fresh `python -c` process.
            run_program()
            os._exit(0)  # not reached: the bootstrap always ends the process itself
        for fd in fds:
            os.close(fd)
        while True:  # orphans the program leaves are reaped as they come
            pid, status = os.waitpid(-1, 0)
            if pid == child:
                break
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        dirty = _sweep(me, libc, signal, time, modes) or _restore(resource, limits, affinity, nice)
        try:
            ctl.sendall(f"{code} {dirty or 'clean'}\n".encode())
        except OSError:
            os._exit(0)
        if dirty:
            os._exit(0)


def _read_exactly(ctl, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = ctl.recv(size - len(data))
        if not chunk:
            os._exit(125)
        data += chunk
    return data


def _others(me: int) -> list:
    """Processes of the sandbox but this server (its init) and pid 1 (the same)."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]


def _sweep(me: int, libc, signal, time, modes: dict) -> str:
    """Kill every other process, wipe the writable mounts and SysV IPC; '' or what is left."""
    deadline = time.monotonic() + 5.0
    while _others(me):
        try:
            os.kill(-1, signal.SIGKILL)  # every process we may signal: the whole namespace
        except ProcessLookupError:
            pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        if time.monotonic() > deadline:
            return "processes"
        time.sleep(0.0002)
    for root, mode in modes.items():
        try:
            if os.stat(root).st_mode != mode:
                os.chmod(root, mode)
            _wipe(root)
            if os.stat(root).st_mode != mode:
                return "mode:" + root
            if os.listdir(root):
                return "files:" + root
        except (OSError, RecursionError):
            return "files:" + root
    for kind, remove in (("shm", libc.shmctl), ("msg", libc.msgctl), ("sem", libc.semctl)):
        try:
            with open(f"/proc/sysvipc/{kind}") as table:
                ids = [int(line.split()[1]) for line in table.readlines()[1:] if line.strip()]
        except (OSError, ValueError, IndexError):
            return "ipc"
        for ipc_id in ids:
            if remove(ipc_id, 0, None) != 0:  # IPC_RMID
                return "ipc"
    return ""


def _wipe(root: str) -> None:
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False):
            os.chmod(entry.path, 0o700)
            _wipe(entry.path)
            os.rmdir(entry.path)
        else:
            os.unlink(entry.path)


def _restore(resource, limits: dict, affinity, nice: int) -> str:
    """Put back what a child may change in this process from outside (prlimit, renice...)."""
    try:
        for number, recorded in limits.items():
            if resource.getrlimit(number) != recorded:
                resource.setrlimit(number, recorded)
        if os.sched_getaffinity(0) != affinity:
            os.sched_setaffinity(0, affinity)
        if os.getpriority(os.PRIO_PROCESS, 0) != nice:
            return "nice"  # a raised nice value cannot be lowered again without privileges
    except (OSError, ValueError):
        return "limits"
    return ""


if __name__ == "__main__":
    _hrm_fork_server()
    sys.exit(0)
