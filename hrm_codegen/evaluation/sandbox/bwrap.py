"""The bubblewrap command line every program runs under (the probe that it works here is
`runner.bwrap_status`: it runs a program, so it sits above this module)."""

from __future__ import annotations

import marshal
import os
import site
import subprocess
import sys
import threading
from pathlib import Path

from hrm_codegen.evaluation.sandbox.limits import SANDBOX_ENV, SHM_MB, TMPFS_MB

BOOTSTRAP_SOURCE = (Path(__file__).with_name("bootstrap.py")).read_text(encoding="utf-8")
# Compiling the bootstrap costs more than starting the interpreter does, so it is compiled once
# here and its code object goes first on the sandbox's stdin; the command line holds a stub
# that reads and runs it (same interpreter inside and out, so marshal's format matches).
BOOTSTRAP_CODE = marshal.dumps(
    compile(BOOTSTRAP_SOURCE, "bootstrap.py", "exec", dont_inherit=True, optimize=2)
)
FORK_SERVER_SOURCE = (Path(__file__).with_name("forkserver_main.py")).read_text(encoding="utf-8")
FORK_SERVER_CODE = marshal.dumps(
    compile(FORK_SERVER_SOURCE, "forkserver_main.py", "exec", dont_inherit=True, optimize=2)
)


def _stub(size: int) -> str:
    """Python that reads `size` bytes of marshalled code from stdin and runs it."""
    return (
        "import os, marshal\n"
        f"_n, _b = {size}, b''\n"
        "while len(_b) < _n:\n"
        "    _c = os.read(0, _n - len(_b))\n"
        "    if not _c:\n"
        "        os._exit(125)\n"
        "    _b += _c\n"
        "_c = marshal.loads(_b)\n"
        "del _n, _b\n"
        "exec(_c)\n"
    )


def server_command(command: list[str]) -> list[str]:
    """`command` (a bubblewrap command line ending in the interpreter) running the fork server.

    The server is the sandbox's pid 1 (`--as-pid-1`): signals from inside the sandbox cannot
    kill it, and no other process (one a program could ptrace and take over) outlives a program.
    """
    interpreter = interpreter_command()
    if command[-len(interpreter) - 1 :] != ["--", *interpreter]:
        raise ValueError("not a bubblewrap command line: the fork server needs bwrap")
    if "--as-pid-1" not in _help_flags(command[0]):
        raise ValueError(f"{command[0]} has no --as-pid-1 (bubblewrap 0.3+ needed)")
    prefix = command[: -len(interpreter) - 1]
    return [*prefix, "--as-pid-1", "--", *interpreter[:-1], _stub(len(FORK_SERVER_CODE))]


_help_cache: dict[str, set[str]] = {}
_help_lock = threading.Lock()


def _help_flags(bwrap: str) -> set[str]:
    with _help_lock:
        if bwrap not in _help_cache:
            help_text = subprocess.run(
                [bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False
            ).stdout
            _help_cache[bwrap] = set(help_text.split())
        return _help_cache[bwrap]


_STUB = _stub(len(BOOTSTRAP_CODE))


def interpreter_command() -> list[str]:
    """The interpreter and bootstrap stub that start inside the sandbox (isolated, no `site`)."""
    return [sys.executable, "-I", "-S", "-c", _STUB]


def _python_dirs() -> list[str]:
    """Folders the interpreter needs: its own, the standard library and site-packages."""
    candidates = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        os.path.dirname(sys.executable),
        *site_packages(),
    ]
    dirs: list[str] = []
    for path in sorted({os.path.realpath(p) for p in candidates if os.path.isdir(p)}, key=len):
        if not any(path == d or path.startswith(d + os.sep) for d in dirs):
            dirs.append(path)
    return dirs


def site_packages() -> list[str]:
    """Site-packages of this interpreter; -S skips `site`, so the bootstrap adds them itself."""
    try:
        paths = site.getsitepackages()
    except AttributeError:  # some virtualenv versions ship an old site.py
        paths = [p for p in sys.path if p.endswith("site-packages")]
    return [p for p in paths if os.path.isdir(p)]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def bwrap_command(bwrap: str, help_text: str) -> list[str]:
    """The bubblewrap command line that wraps every program (everything but the payload).

    Writable: only /tmp (the cwd) and /dev/shm, both private tmpfs mounts, size-limited where
    bwrap supports `--size` (0.8+). $HOME and /run are replaced by empty read-only tmpfs mounts,
    so dotfiles, credentials and host sockets are out of sight; the interpreter's own folders
    are bound back read-only. /proc/keys and /proc/key-users, which list the invoking user's
    kernel keys whatever the namespace, are covered by /dev/null (unreadable: no devices in a
    user namespace); the keyring system calls themselves are refused by the bootstrap's seccomp
    filter.
    """
    flags = set(help_text.split())
    sized = "--size" in flags

    def tmpfs(path: str, megabytes: int) -> list[str]:
        return (["--size", str(megabytes << 20)] if sized else []) + ["--tmpfs", path]

    home = os.path.realpath(os.path.expanduser("~"))
    hide_home = os.path.isdir(home) and home != "/" and not _under(home, "/tmp")
    command = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    for listing in ("/proc/keys", "/proc/key-users"):  # absent without CONFIG_KEYS
        if os.path.exists(listing):
            command += ["--ro-bind", "/dev/null", listing]
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
    for name, value in SANDBOX_ENV.items():
        command += ["--setenv", name, value]
    return command + ["--", *interpreter_command()]
